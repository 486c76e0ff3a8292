"""`dfm lsp`, driven as an editor drives it: a real server process (`python -m dfm lsp`) over stdio,
JSON-RPC messages in and out. Plus the pure pieces it is made of (positions, the completion context,
the fixes) tested directly, and the VS Code extension's files.

One server serves the whole module; every test opens its own document. Timeouts are generous and
nothing asserts on time, so a slow machine makes the tests slower, not red.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lsprotocol import types as lsp

from dfm.api import check_text
from dfm.app.lsp import completion, describe, features
from dfm.app.lsp.client import StdioClient, apply_edits
from dfm.app.lsp.hover import hover as hover_at
from dfm.app.lsp.positions import LineIndex, units
from dfm.compiler import catalogue as cat
from dfm.dsl.formatter import format_source

ROOT = Path(__file__).resolve().parent.parent
VSCODE = ROOT / "editors" / "vscode"
HEAVY = ("torch", "diffusers", "transformers", "matplotlib", "cv2")  # as benchmarks/bench_check.py
TIMEOUT = 60.0
OPTIONS = {"tabSize": 4, "insertSpaces": True}  # what every editor sends with a formatting request

SCENE = '''dfm 1
mode 2d
fps 15
frames 120
prompt 0 "a lighthouse on a cliff at dawn"
prompt 4s "the same lighthouse at night"
zoom 0:(1,04)
angle 0:(0), 4s:(1) ease_in, 7s:(0)
'''


@pytest.fixture(scope="module")
def client():
    c = StdioClient(timeout=TIMEOUT).start()
    try:
        c.init_result = c.initialize()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("scenes")


def uri_for(folder: Path, name: str) -> str:
    return (folder / name).as_uri()


def open_doc(client: StdioClient, folder: Path, name: str, text: str) -> tuple[str, list[dict]]:
    uri = uri_for(folder, name)
    mark = client.open(uri, text)
    return uri, client.diagnostics(uri, after=mark)


def codes(diags: list[dict]) -> list[str]:
    return [d.get("code") for d in diags]


def whole_range(text: str) -> dict:
    index = LineIndex(text)
    end = index.position(len(text))
    return {"start": {"line": 0, "character": 0}, "end": {"line": end.line, "character": end.character}}


# ---- the protocol, end to end ----------------------------------------------------------------------


def test_initialize_advertises_the_features(client):
    assert client.init_result["serverInfo"]["name"] == "dfm"
    caps = client.init_result["capabilities"]
    assert caps["positionEncoding"] == "utf-16"
    assert caps["textDocumentSync"]["change"] == lsp.TextDocumentSyncKind.Incremental.value
    assert set(caps["completionProvider"]["triggerCharacters"]) >= {" ", "("}
    for key in ("hoverProvider", "documentFormattingProvider", "documentSymbolProvider", "codeActionProvider",
                "inlayHintProvider"):
        assert caps.get(key), key


def test_decimal_comma_is_reported_then_cleared(client, folder):
    uri, diags = open_doc(client, folder, "comma.dfm", SCENE)
    (d,) = [d for d in diags if d["code"] == "DFM011"]
    line = SCENE.splitlines().index("zoom 0:(1,04)")
    assert d["range"] == {"start": {"line": line, "character": 8}, "end": {"line": line, "character": 12}}
    assert d["severity"] == lsp.DiagnosticSeverity.Error.value and d["source"] == "dfm"
    assert "decimal comma" in d["message"] and "help: use a dot: 1.04" in d["message"]
    # the fix, typed as an editor sends it: one character replaced
    mark = client.change(uri, range_={"start": {"line": line, "character": 9}, "end": {"line": line, "character": 10}},
                         new_text=".")
    assert client.diagnostics(uri, after=mark) == []
    client.close(uri)


def test_diagnostics_are_those_of_dfm_check(client, folder):
    text = SCENE + "fps 12\nsampler eulr\nstrength 0:(foo)\n"
    uri, diags = open_doc(client, folder, "many.dfm", text)
    expected = check_text(text, str(folder / "many.dfm"), base_dir=folder)
    assert codes(diags) == [d.code for d in expected]
    assert [d["range"]["start"]["line"] + 1 for d in diags] == [d.span.line for d in expected]
    twice = next(d for d in diags if d["code"] == "DFM106")  # `fps` is set twice: the first one is linked
    (related,) = twice["relatedInformation"]
    assert related["location"]["uri"] == uri
    assert related["location"]["range"]["start"]["line"] == text.splitlines().index("fps 15")
    assert "first set on line 3" in related["message"] and "note: first set on line 3" in twice["message"]


def test_a_prompt_edit_that_never_switches_is_published_at_its_bracket(client, folder):
    # img2img frames run int(0.2 × 10) = 1 step: `[cat:dog:5]` never switches (DFM504, which compile finds
    # in the FrameTable; the server publishes what check gives, and check says it too)
    line = 'prompt "a [cat:dog:5] in a field"'
    text = f"dfm 1\nmode 2d\nframes 10\nsteps 10\nstrength 0.8\n{line}\n"
    uri, diags = open_doc(client, folder, "edit.dfm", text)
    (d,) = [d for d in diags if d["code"] == "DFM504"]
    start = line.index("[")
    assert d["range"] == {"start": {"line": 5, "character": start},
                          "end": {"line": 5, "character": start + len("[cat:dog:5]")}}
    assert d["severity"] == lsp.DiagnosticSeverity.Warning.value and "never switches" in d["message"]
    client.close(uri)


def test_columns_are_utf16_after_non_ascii_text(client, folder):
    line = 'model "😀é.safetensors" sha256 "abc"'
    text = f'dfm 1\nprompt "x"\n{line}\n'
    uri, diags = open_doc(client, folder, "emoji.dfm", text)
    (d,) = [d for d in diags if d["code"] == "DFM104"]
    start = line.index('"abc"') + 1  # the emoji is two UTF-16 code units
    assert d["range"]["start"] == {"line": 2, "character": start}
    assert d["range"]["end"] == {"line": 2, "character": start + 5}


def test_utf8_columns_when_the_client_prefers_them():
    line = 'model "😀é.safetensors" sha256 "abc"'
    with StdioClient(timeout=TIMEOUT) as c:
        assert c.initialize({"general": {"positionEncodings": ["utf-8", "utf-16"]}})["capabilities"][
            "positionEncoding"] == "utf-8"
        uri = "untitled:Untitled-1"  # an unsaved buffer: no file checks
        mark = c.open(uri, f'dfm 1\nprompt "x"\n{line}\n')
        (d,) = c.diagnostics(uri, after=mark)
    start = len(line[:line.index('"abc"')].encode("utf-8"))
    assert d["code"] == "DFM104" and d["range"]["start"] == {"line": 2, "character": start}


def test_rapid_changes_publish_the_last_version(client, folder):
    uri, _ = open_doc(client, folder, "rapid.dfm", SCENE)
    for n in range(5):  # faster than the debounce: only the last text matters
        mark = client.change(uri, SCENE.replace("1,04", f"1.0{n}") + ("zom 1\n" if n == 4 else ""))
    diags = client.diagnostics(uri, after=mark)
    assert codes(diags) == ["DFM101"]
    assert "did you mean `zoom`?" in diags[0]["message"]


def test_completion_of_a_statement_name(client, folder):
    text = 'dfm 1\nprompt "x"\nzo'
    uri, _ = open_doc(client, folder, "complete.dfm", text)
    items = client.at("textDocument/completion", uri, 2, 2)["items"]
    zoom = next(i for i in items if i["label"] == "zoom")
    assert apply_edits(text, [zoom["textEdit"]]) == 'dfm 1\nprompt "x"\nzoom'
    assert "×/frame" in zoom["detail"] and "2D scale per frame" in zoom["documentation"]["value"]
    alias = next(i for i in items if i["label"] == "max_frames")
    assert alias["detail"] == "alias of frames" and alias["textEdit"]["newText"] == "frames"
    assert "dfm" not in [i["label"] for i in items]  # the version line is there already
    snippet = next(i for i in items if i["label"] == "prompt …")
    assert snippet["insertTextFormat"] == lsp.InsertTextFormat.Snippet.value
    assert snippet["textEdit"]["newText"].startswith("prompt ${1:0}")


@pytest.mark.parametrize(("line", "expected", "absent"), [
    ("sampler ", {"euler_a", "dpmpp_2m_karras"}, {"zoom"}),
    ("mode ", set(cat.MODES), set()),
    ("border r", {"replicate", "reflect"}, set()),
    ("perspective_flip ", {"on", "off"}, set()),
    ("seed 42 ", set(cat.SEED_BEHAVIOURS), set()),
    ("zoom 0:(1) ", {"linear", "ease_in_out", "cubic"}, {"sin"}),
    ("zoom 0:(1 + si", {"sin", "t", "max_f", "fps", "bpm", "pi"}, {"linear"}),
    ("zoom ", {"sin", "t", "keyframes …"}, set()),
    ('prompt 0 "a li', set(), {"zoom", "sin"}),
])
def test_completion_of_values(client, folder, line, expected, absent):
    text = f'dfm 1\nprompt "x"\n{line}'
    uri, _ = open_doc(client, folder, f"values{abs(hash(line))}.dfm", text)
    labels = {i["label"] for i in client.at("textDocument/completion", uri, 2, len(line))["items"]}
    assert expected <= labels and not (absent & labels)


def test_hover_on_a_parameter(client, folder):
    uri, _ = open_doc(client, folder, "hover.dfm", SCENE.replace("1,04", "1.04"))
    line = SCENE.splitlines().index("zoom 0:(1,04)")
    hover = client.at("textDocument/hover", uri, line, 1)
    text = hover["contents"]["value"]
    for part in ("**zoom**", "2D scale per frame", "unit: ×/frame", "default: `1`", "range: ≠ 0",
                 "Deforum: `zoom`", "In this scene: `1.04`"):
        assert part in text, part
    assert hover["range"] == {"start": {"line": line, "character": 0}, "end": {"line": line, "character": 4}}


def test_hover_on_a_key_gives_its_frame_time_and_value(client, folder):
    text = SCENE.replace("1,04", "1.04")
    uri, _ = open_doc(client, folder, "hover_key.dfm", text)
    line = text.splitlines().index("angle 0:(0), 4s:(1) ease_in, 7s:(0)")
    value = client.at("textDocument/hover", uri, line, 14)["contents"]["value"]
    assert "key `4s`: frame 60 · 4 s" in value and "value at frame 60: `1`" in value and "ease_in" in value


def test_hover_on_a_function_a_variable_and_a_prompt_time(client, folder):
    text = 'dfm 1\nfps 15\nprompt 4s "a"\nangle 0:(sin(t/max_f))\n'
    uri, _ = open_doc(client, folder, "hover_expr.dfm", text)
    assert "sine (radians)" in client.at("textDocument/hover", uri, 3, 9)["contents"]["value"]
    variable = client.at("textDocument/hover", uri, 3, 16)["contents"]["value"]
    assert "**max_f**" in variable and "In this scene: `119`" in variable
    assert "frame 60 · 4 s" in client.at("textDocument/hover", uri, 2, 8)["contents"]["value"]
    assert client.at("textDocument/hover", uri, 2, 11) is None  # inside the prompt text: nothing to say


def test_formatting_a_messy_document(client, folder):
    messy = 'dfm 1\nmode    2d\nfps 15\nprompt 0 "a"\nzoom_schedule   0:(1),10:(1.02)\nangle 0:( 1+2*sin(t) )\n'
    uri, _ = open_doc(client, folder, "messy.dfm", messy)
    edits = client.request("textDocument/formatting", {"textDocument": {"uri": uri},
                                                       "options": OPTIONS})
    formatted = apply_edits(messy, edits)
    assert formatted == format_source(messy, cat.ALIASES)
    assert "zoom   0:(1), 10:(1.02)\nangle  0:(1 + 2*sin(t))\n" in formatted
    mark = client.change(uri, formatted)
    client.diagnostics(uri, after=mark)
    again = client.request("textDocument/formatting", {"textDocument": {"uri": uri},
                                                       "options": OPTIONS})
    assert again == []  # idempotent


def test_formatting_keeps_crlf_and_refuses_syntax_errors(client, folder):
    text = 'dfm 1\r\nfps   15\r\nprompt "a"\r\n'
    uri, _ = open_doc(client, folder, "crlf.dfm", text)
    edits = client.request("textDocument/formatting", {"textDocument": {"uri": uri}, "options": OPTIONS})
    assert apply_edits(text, edits) == 'dfm 1\r\nfps    15\r\nprompt "a"\r\n'
    uri, _ = open_doc(client, folder, "broken.dfm", SCENE)
    assert client.request("textDocument/formatting", {"textDocument": {"uri": uri}, "options": OPTIONS}) is None


@pytest.mark.parametrize(("bad", "good", "code"), [
    ("zoom 0:(1,04)", "zoom 0:(1.04)", "DFM011"),
    ("zom 0:(1.04)", "zoom 0:(1.04)", "DFM101"),
    ("sampler eulr", "sampler euler", "DFM102"),
    ("angle 0:(sinn(t))", "angle 0:(sin(t))", "DFM201"),
    ("angle 0:(0) 10:(1)", "angle 0:(0), 10:(1)", "DFM012"),
    ("angle 0:(2^2)", "angle 0:(2**2)", "DFM013"),
    ("angle 0:1", "angle 0:(1)", "DFM014"),
])
def test_code_action_applies_the_fix(client, folder, bad, good, code):
    text = f'dfm 1\nprompt "x"\n{bad}\n'
    uri, diags = open_doc(client, folder, f"fix_{code}.dfm", text)
    (d,) = [d for d in diags if d["code"] == code]
    actions = client.request("textDocument/codeAction", {
        "textDocument": {"uri": uri}, "range": d["range"], "context": {"diagnostics": [d], "only": ["quickfix"]}})
    (action,) = actions
    assert action["kind"] == "quickfix" and action["diagnostics"][0]["code"] == code
    fixed = apply_edits(text, action["edit"]["changes"][uri])
    assert fixed == f'dfm 1\nprompt "x"\n{good}\n'
    mark = client.change(uri, fixed)
    assert code not in codes(client.diagnostics(uri, after=mark))


def test_fix_all_and_a_missing_version_line(client, folder):
    text = 'prompt "x"\nzoom 0:(1,04)\nangle 0:(2^2)\n'
    uri, _ = open_doc(client, folder, "fixall.dfm", text)
    actions = client.request("textDocument/codeAction", {
        "textDocument": {"uri": uri}, "range": whole_range(text), "context": {"diagnostics": [],
                                                                               "only": ["source.fixAll"]}})
    (action,) = actions
    fixed = apply_edits(text, action["edit"]["changes"][uri])
    assert fixed == 'dfm 1\nprompt "x"\nzoom 0:(1.04)\nangle 0:(2**2)\n'
    mark = client.change(uri, fixed)
    assert client.diagnostics(uri, after=mark) == []


def test_inlay_hints_give_the_frame_of_seconds_and_beats(client, folder):
    text = 'dfm 1\nfps 15\nbpm 120\nduration 8s\nprompt 4s "b"\nangle 0:(0), 2s:(1), 8b:(2)\n'
    uri, _ = open_doc(client, folder, "hints.dfm", text)
    hints = client.request("textDocument/inlayHint", {"textDocument": {"uri": uri}, "range": whole_range(text)})
    got = {(h["position"]["line"], h["position"]["character"], h["label"]) for h in hints}
    assert got == {(3, 11, "= 120 frames"), (4, 9, "= frame 60"), (5, 15, "= frame 30"), (5, 23, "= frame 60")}


def test_document_symbols_outline_prompts_and_schedules(client, folder):
    text = SCENE.replace("1,04", "1.04")
    uri, _ = open_doc(client, folder, "outline.dfm", text)
    symbols = client.request("textDocument/documentSymbol", {"textDocument": {"uri": uri}})
    by_name = {s["name"]: s for s in symbols}
    assert by_name["the same lighthouse at night"]["detail"] == "prompt at 4s (frame 60)"
    angle = by_name["angle"]
    assert angle["detail"] == "3 keys" and [c["name"] for c in angle["children"]] == \
        ["0", "4s (frame 60)", "7s (frame 105)"]
    assert by_name["fps"]["detail"] == "15"


def test_closing_clears_the_diagnostics(client, folder):
    uri, diags = open_doc(client, folder, "close.dfm", SCENE)
    assert diags
    mark = len(client.notifications)
    client.close(uri)
    n = client.wait_for(lambda n: n.get("method") == "textDocument/publishDiagnostics"
                        and n["params"]["uri"] == uri, after=mark)
    assert n["params"]["diagnostics"] == []


def test_the_server_never_imports_torch(folder):
    """A whole session under `python -X importtime`: every module the server loaded is listed."""
    text = SCENE + "zom 1\n"
    with StdioClient([sys.executable, "-X", "importtime", "-m", "dfm", "lsp"], timeout=TIMEOUT) as c:
        c.initialize()
        uri, diags = open_doc(c, folder, "imports.dfm", text)
        assert "DFM011" in codes(diags)
        c.at("textDocument/hover", uri, 7, 1)
        c.at("textDocument/completion", uri, 7, 2)
        c.request("textDocument/codeAction", {"textDocument": {"uri": uri}, "range": whole_range(text),
                                               "context": {"diagnostics": []}})
        c.request("textDocument/inlayHint", {"textDocument": {"uri": uri}, "range": whole_range(text)})
        c.request("textDocument/documentSymbol", {"textDocument": {"uri": uri}})
        mark = c.change(uri, SCENE.replace("1,04", "1.04"))
        c.diagnostics(uri, after=mark)
        c.request("textDocument/formatting", {"textDocument": {"uri": uri}, "options": OPTIONS})
    log = c.stderr.decode(errors="replace")
    loaded = {line.rsplit("|", 1)[-1].strip() for line in log.splitlines() if line.startswith("import time:")}
    assert "dfm.app.lsp.features" in loaded and "dfm.compiler.compile" in loaded
    assert sorted(m for m in loaded if m.split(".")[0] in HEAVY) == []


# ---- the pieces --------------------------------------------------------------------------------------


def test_positions_count_utf16_units_and_lsp_line_breaks():
    text = "a😀b\r\nc\rd\n\x0ce\u2028f"
    index = LineIndex(text)
    assert index.line_count == 4  # \r\n, \r and \n break lines; \x0c and U+2028 do not
    assert index.position(text.index("b")) == lsp.Position(0, 3)
    assert index.offset(lsp.Position(0, 3)) == text.index("b")
    assert index.position(text.index("d")) == lsp.Position(2, 0)
    assert index.position(text.index("f")) == lsp.Position(3, 3)
    assert index.position(text.index("\n")) == lsp.Position(0, 4)  # never between \r and \n
    assert units("😀é", "utf-8") == 6 and units("😀é", "utf-32") == 2 and units("😀é") == 3
    utf8 = LineIndex(text, "utf-8")
    assert utf8.position(text.index("b")) == lsp.Position(0, 5)
    assert utf8.offset(lsp.Position(0, 5)) == text.index("b")


def test_spans_on_the_first_line_count_after_a_byte_order_mark():
    text = "\ufeffzom 1\n"
    (d,) = [d for d in check_text(text) if d.code == "DFM101"]
    rng = LineIndex(text).span_range(d.span)
    assert (rng.start.line, rng.start.character, rng.end.character) == (0, 1, 4)  # the client sees the BOM


@pytest.mark.parametrize(("text", "kind"), [
    ("zo|", "statement"), ("dfm 1\nzo|", "statement"), ("sampler eu|", "choice"), ("seed 42 it|", "seed_behaviour"),
    ("zoom 0:(1) |", "curve"), ("zoom 0:(1),\n  4s:(1) e|", "curve"), ("zoom 0:(1), 4s:(si|", "expression"),
    ("zoom 1 + |", "expression"), ("zoom |", "schedule_value"), ('model "m.safetensors" |', "model_option"),
    ('prompt 0 "a li|', "none"), ('prompt 0 """a\nb|', "none"), ("# zo|", "none"), ("zoom 0:(1) # e|", "none"),
    ("fps |", "none"), ("zoom 0:(1), |", "none"), ("dfm 1\r\nsampler |", "choice"), ("angle 0:(0),\n  |", "none"),
    ("dfm 1\r|", "statement"),
])
def test_completion_context(text, kind):
    offset = text.index("|")
    assert completion.context_at(text.replace("|", ""), offset).kind == kind


def test_completion_inside_a_word_can_replace_all_of_it():
    text = "dfm 1\nzoom_x 1\n"
    items = completion.completion(None, text, LineIndex(text), lsp.Position(1, 2), insert_replace=True)
    edit = next(i for i in items if i.label == "zoom").text_edit
    assert isinstance(edit, lsp.InsertReplaceEdit)
    assert (edit.insert.start.character, edit.insert.end.character) == (0, 2)
    assert (edit.replace.start.character, edit.replace.end.character) == (0, 6)


def test_settings_already_set_are_not_offered_again():
    ctx = completion.context_at("dfm 1\nfps 15\nzoom 1\nprompt 'a'\nf", len("dfm 1\nfps 15\nzoom 1\nprompt 'a'\nf"))
    assert ctx.existing == {"dfm", "fps", "zoom"}


def test_every_curve_and_choice_has_a_completion():
    assert set(describe.CURVE_DOCS) == set(completion.CURVES)


def test_fix_for_leaves_guesses_that_are_no_fix():
    text = 'dfm 1\nprompt "x"\nstrength 0:(foo)\n'  # `foo` → "did you mean `floor`?" — a function, not a variable
    (d,) = [d for d in check_text(text) if d.code == "DFM202"]
    assert features.fix_for(d, text) is None


# ---- the VS Code extension -------------------------------------------------------------------------


def test_vscode_extension_starts_the_server():
    package = json.loads((VSCODE / "package.json").read_text(encoding="utf-8"))
    assert package["main"] == "./extension.js" and (VSCODE / "extension.js").is_file()
    assert "onLanguage:dfm" in package["activationEvents"]
    props = package["contributes"]["configuration"]["properties"]
    assert props["dfm.serverPath"]["default"] == "dfm" and props["dfm.serverArgs"]["default"] == ["lsp"]
    assert "vscode-languageclient" in package["dependencies"]
    source = (VSCODE / "extension.js").read_text(encoding="utf-8")
    assert re.search(r'config\.get\("serverPath"\) \|\| "dfm"', source)
    assert "node_modules/" in (VSCODE / ".gitignore").read_text(encoding="utf-8")
    node = shutil.which("node")
    if node:
        subprocess.run([node, "--check", str(VSCODE / "extension.js")], check=True, timeout=60)


def test_audio_features_complete_and_hover_in_a_scene_with_audio():
    clip = Path(__file__).resolve().parents[1] / "examples" / "music_video.mp3"
    text = f'dfm 1\naudio "{clip}"\nprompt 0 "a"\nzoom 1 + 0.1*ons\n'
    an = features.analyse(text)
    line = text.split("\n").index("zoom 1 + 0.1*ons")
    items = completion.completion(an, text, LineIndex(text), lsp.Position(line, len("zoom 1 + 0.1*ons")))
    assert "onset" in {i.label for i in items}
    plain = "dfm 1\nprompt 0 \"a\"\nzoom 1 + 0.1*ons\n"
    items = completion.completion(features.analyse(plain), plain, LineIndex(plain), lsp.Position(2, 16))
    assert "onset" not in {i.label for i in items}  # no audio: no audio variables
    hovered = text.replace("0.1*ons", "0.1*onset")
    h = hover_at(features.analyse(hovered), LineIndex(hovered), hovered.index("onset") + 1)
    assert h is not None and "onset" in h.contents.value


def test_the_client_refuses_a_content_length_it_should_not_allocate():
    from dfm.app.lsp.client import LspError

    liar = "import sys, time; sys.stdout.buffer.write(b'Content-Length: 99999999999\\r\\n\\r\\n'); " \
           "sys.stdout.flush(); time.sleep(30)"
    c = StdioClient([sys.executable, "-c", liar], timeout=20).start()
    try:
        with pytest.raises(LspError, match="Content-Length 99999999999"):
            c.request("initialize", {})
    finally:
        c._proc.kill()
        c._proc.wait()


# ---- stream framing: a bad header costs one message, never the server (issue 21) -----------------


def _frame(message: dict) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


BAD_FRAMES = {
    "huge length": b"Content-Length: 1000000000000\r\n\r\n{}",
    "10 MB of digits": b"Content-Length: " + b"9" * (10 << 20) + b"\r\n\r\n{}",
    "no length": b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n{\"jsonrpc\": \"2.0\"}",
    "negative length": b"Content-Length: -5\r\n\r\n{}",
    "not a number": b"Content-Length: twelve\r\n\r\n{\"a\": 1}",
    "a line over the limit": b"X-Junk: " + b"x" * 5000 + b"\r\nContent-Length: 2\r\n\r\n{}",
}


@pytest.mark.parametrize("bad", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
def test_framed_reader_drops_a_bad_message_and_resynchronises(bad, caplog):
    import io

    from dfm.app.lsp.framing import FramedReader

    good = [{"jsonrpc": "2.0", "id": i, "method": "shutdown"} for i in (1, 2)]
    reader = FramedReader(io.BytesIO(_frame(good[0]) + bad + _frame(good[1])))
    got = []
    while header := reader.readline():
        length = int(header.split(b":")[1])
        assert reader.readline() == b"\r\n"
        got.append(json.loads(reader.read(length)))
    assert got == good
    assert "dropped a malformed message" in caplog.text


def test_framed_reader_passes_headers_pygls_understands():
    import io

    from dfm.app.lsp.framing import MAX_MESSAGE_BYTES, FramedReader
    from dfm.dsl.parser import MAX_SOURCE_LENGTH

    assert MAX_MESSAGE_BYTES >= 6 * MAX_SOURCE_LENGTH  # the largest scene, every character escaped, fits
    body = b'{"jsonrpc": "2.0", "method": "exit"}'
    reader = FramedReader(io.BytesIO(b"Content-Length: %d\r\nContent-Type: x\r\n\r\n" % len(body) + body))
    assert (reader.readline(), reader.readline(), reader.read(len(body))) == \
        (b"Content-Length: %d\r\n" % len(body), b"\r\n", body)
    assert reader.readline() == b""


def test_the_server_survives_bad_framing_and_keeps_answering():
    with StdioClient(timeout=TIMEOUT) as c:
        c.initialize()
        for name, bad in BAD_FRAMES.items():
            c.send_raw(bad)
            text = "dfm 1\nfps 15\n"
            uri = f"file:///tmp/framing-{len(name)}-{name.replace(' ', '-')}.dfm"
            c.open(uri, text)
            h = c.at("textDocument/hover", uri, 1, 1)  # the server still reads, answers and is in sync
            assert h is not None and "fps" in json.dumps(h), name
        assert c._proc.poll() is None


# ---- bounded features: hover never queues behind a long check (issue 21) --------------------------


def test_hover_answers_while_a_long_check_runs(folder):
    import time

    # 10 KB of `(` in a prompt took an editor's hover 74 s; end to end, whether the check of it is slow (hover
    # answers from the last analysis, see the next test) or not (from the new one)
    slow = "".join(f'prompt {n}s "{"(" * 10240}"\n' for n in (1, 2, 3))
    with StdioClient(timeout=TIMEOUT) as c:  # its own server: the slow check must not hold up other tests
        c.initialize()
        uri = uri_for(folder, "slow-check.dfm")
        c.diagnostics(uri, after=c.open(uri, SCENE))
        c.change(uri, range_={"start": {"line": 4, "character": 0}, "end": {"line": 4, "character": 0}},
                 new_text=slow)
        time.sleep(0.5)  # past the debounce: the check of the new text is running
        start = time.monotonic()
        before = c.at("textDocument/hover", uri, 2, 1)  # `fps`, above the edit
        after = c.at("textDocument/hover", uri, 7 + 3, 2)  # `angle`, below it: three lines further down
        elapsed = time.monotonic() - start
        c._proc.kill()  # rather than wait at exit for the check to end
    assert before is not None and "fps" in before["contents"]["value"]
    assert after is not None and "angle" in after["contents"]["value"]
    assert after["range"]["start"]["line"] == 7 + 3
    assert elapsed < 15, f"hover waited {elapsed:.1f} s for the check"


def test_hover_does_not_wait_for_a_check_that_never_ends():
    """In process, with a check that never finishes: hover answers from the last analysis anyway."""
    import asyncio

    from dfm.app.lsp import server

    async def scenario():
        ls = server.create_server()
        uri = "file:///tmp/never-ends.dfm"
        doc = server.Document(uri, SCENE, 1)
        doc.last = features.analyse(SCENE)
        ls.documents[uri] = doc
        doc.text, doc.revision = SCENE.replace("frames 120\n", "frames 120\nprompt 2s \"(((\"\n"), 1
        never = asyncio.get_running_loop().create_future()
        ls.analysis = lambda d: never  # the check of the edited text is still running, for good

        def ask(line: int):
            params = lsp.HoverParams(lsp.TextDocumentIdentifier(uri), lsp.Position(line, 1))
            return asyncio.wait_for(server.hover(ls, params), 10)  # before the fix: TimeoutError

        fps, angle, edited = await ask(2), await ask(8), None
        try:
            edited = await asyncio.wait_for(server.hover(ls, lsp.HoverParams(
                lsp.TextDocumentIdentifier(uri), lsp.Position(4, 1))), 2 * server.HOVER_BUDGET_S)
        except TimeoutError:
            pass  # the edited line: the old analysis does not cover it, so hover waits for the new one
        return fps, angle, edited

    fps, angle, edited = asyncio.run(scenario())
    assert fps is not None and "fps" in fps.contents.value
    assert angle is not None and "angle" in angle.contents.value and angle.range.start.line == 8
    assert edited is None


@pytest.mark.parametrize("old, new, offset, expected", [
    ("fps 15\nx\n", "fps 1\nx\n", 1, None),  # the hovered line itself changed
    ("fps 1\nx\n", "fps 15\nx\n", 1, None),
    ("a\nfps 15\n", "a\nfps 15\nb\n", 3, 3),  # an edit below
    ("a\nfps 15", "a\nfps 15\nb", 3, None),  # ... that lengthened the hovered (last) line's text
    ("zz\nfps 15\n", "a\nfps 15\n", 3, 4),  # an edit above: the same line, shifted
    ("fps 15\n", "x\nfps 15\n", 3, 1),
    ("fps 15\n", "xfps 15\n", 2, None),
    ("ab\ncd", "ab\nXcd", 4, None),
])
def test_hover_falls_back_only_where_the_text_is_unchanged(old, new, offset, expected):
    from dfm.app.lsp.server import _unchanged_offset

    assert _unchanged_offset(old, new, offset) == expected


def test_outline_and_inlay_hints_do_not_wait_for_a_check_that_never_ends():
    """In process: the outline and the hints answer within their budget from the last analysis of the same
    text, and with nothing (not a hang) when the text changed since."""
    import asyncio

    from dfm.app.lsp import server

    async def scenario():
        ls = server.create_server()
        # no editor handshake in process: say the client takes nested symbols
        ls.__class__ = type("Nested", (server.DfmLanguageServer,), {"hierarchical_symbols": True})
        uri = "file:///tmp/never-ends.dfm"
        doc = server.Document(uri, SCENE, 1)
        doc.last = features.analyse(SCENE)
        ls.documents[uri] = doc
        never = asyncio.get_running_loop().create_future()
        ls.analysis = lambda d: never
        ident = lsp.TextDocumentIdentifier(uri)
        symbols = await asyncio.wait_for(server.document_symbol(ls, lsp.DocumentSymbolParams(ident)), 10)
        hints = await asyncio.wait_for(server.inlay_hint(ls, lsp.InlayHintParams(
            ident, lsp.Range(lsp.Position(0, 0), lsp.Position(40, 0)))), 10)
        doc.text, doc.revision = SCENE + "fps 24\n", 1
        stale = await asyncio.wait_for(server.document_symbol(ls, lsp.DocumentSymbolParams(ident)), 10)
        return symbols, hints, stale

    symbols, hints, stale = asyncio.run(scenario())
    assert symbols and hints is not None
    assert stale is None
