"""Composable prompts, weight expressions and prompt editing, the compiler's side (docs/frametable.md):
A1111's `AND` and `:weight`, Deforum's backtick expressions evaluated per frame, prompt editing and
alternation as A1111's schedules, the native form `"apple" weight cos(t) and "snow"` (parse, fmt,
compile), the `unet_evals` column, and the diagnostics with their spans."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dfm.api import check_text, compile_text
from dfm.compiler import lower
from dfm.compiler import prompt_syntax as ps
from dfm.compiler.prompt_syntax import pieces_json, schedule, split_and, table_pieces
from dfm.contract.table import DERIVED_COLUMNS, ColumnType
from dfm.dsl import ir
from dfm.dsl.formatter import format_source
from dfm.dsl.parser import parse

# ---- prompt editing and alternation: A1111's get_learned_conditioning_prompt_schedules ----------------------

# (prompt, steps) -> schedule; the first block is A1111's own docstring (steps 10), the second its wiki's
# "Features" examples and the rules for `when`
SCHEDULES = [
    ("test", 10, [(10, "test")]),
    ("a [b:3]", 10, [(3, "a "), (10, "a b")]),
    ("a [b: 3]", 10, [(3, "a "), (10, "a b")]),
    ("a [[[b]]:2]", 10, [(2, "a "), (10, "a [[b]]")]),
    ("[(a:2):3]", 10, [(3, ""), (10, "(a:2)")]),
    ("a [b : c : 1] d", 10, [(1, "a b  d"), (10, "a  c  d")]),
    ("a[b:[c:d:2]:1]e", 10, [(1, "abe"), (2, "ace"), (10, "ade")]),
    ("a [unbalanced", 10, [(10, "a [unbalanced")]),
    ("a [b:.5] c", 10, [(5, "a  c"), (10, "a b c")]),
    ("((a][:b:c [d:3]", 10, [(3, "((a][:b:c "), (10, "((a][:b:c d")]),
    ("[a|(b:1.1)]", 10, [(s, "a" if s % 2 else "(b:1.1)") for s in range(1, 11)]),
    ("[fe|]male", 10, [(s, "female" if s % 2 else "male") for s in range(1, 11)]),
    ("[fe|||]male", 10, [(s, "female" if s % 4 == 1 else "male") for s in range(1, 11)]),
    # A1111's docstring expects 'a {b|d{ c' here, but its grammar fails on the bare `|` (plain text takes
    # none), so A1111 itself returns the text unchanged; dfm follows the grammar
    ("a [{b|d{:.5] c", 10, [(10, "a [{b|d{:.5] c")]),
    ("a [fantasy:cyberpunk:16] landscape", 20, [(16, "a fantasy landscape"), (20, "a cyberpunk landscape")]),
    ("a [fantasy:cyberpunk:0.25] landscape", 20, [(5, "a fantasy landscape"), (20, "a cyberpunk landscape")]),
    ("[[a:b:5]:c:10]", 20, [(5, "a"), (10, "b"), (20, "c")]),
    ("[cow|horse] in a field", 4, [(1, "cow in a field"), (2, "horse in a field"), (3, "cow in a field"),
                                   (4, "horse in a field")]),
    ("a [dog::10]", 20, [(10, "a dog"), (20, "a ")]),
    ("[a:b:1]", 20, [(1, "a"), (20, "b")]),  # an integer is a step
    ("[a:b:1.0]", 20, [(20, "a")]),  # a "." makes it a fraction: 1.0 × 20 = the last step, `b` never shows
    ("[a:b:25]", 20, [(20, "a")]),  # min(steps, int(v))
    ("[a:b:0]", 20, [(20, "b")]),  # a step under 1 adds no entry: `to` from the first step
    ("[a:b:0.33]", 20, [(6, "a"), (20, "b")]),  # int(6.6)
    ("a [b:c]", 20, [(20, "a [b:c]")]),  # no number: emphasis-less text, read as written
    ("a | b [c:d:5]", 20, [(20, "a | b [c:d:5]")]),  # a bare `|` fails A1111's parse: no editing at all
    ("\\[a:b:5\\]", 20, [(20, "\\[a:b:5\\]")]),  # escaped brackets are text
]


@pytest.mark.parametrize(("text", "steps", "expected"), SCHEDULES, ids=[f"{t}@{s}" for t, s, _ in SCHEDULES])
def test_schedules_as_a1111_computes_them(text, steps, expected):
    assert schedule(text, steps) == expected


def test_the_wiki_example_of_several_edits():
    text = ("fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75][ in foreground::0.6]"
            "[ in background:0.25] [shoddy:masterful:0.5]")
    assert schedule(text, 100) == [
        (25, "fantasy landscape with a mountain and an oak in foreground shoddy"),
        (50, "fantasy landscape with a lake and an oak in foreground in background shoddy"),
        (60, "fantasy landscape with a lake and an oak in foreground in background masterful"),
        (75, "fantasy landscape with a lake and an oak in background masterful"),
        (100, "fantasy landscape with a lake and a christmas tree in background masterful"),
    ]


def test_the_reader_is_linear_and_never_recurses_too_deep():
    # A1111's Earley parse takes about a minute on a 1,700-character prompt of brackets; this one must not
    text = "a [b:c:0.5], " + "word (x:1.2) [y] " * 2000 + "[x (y " * 45 + "]" * 3000 + ")" * 3000
    got = schedule(text, 20)
    assert [end for end, _ in got] == [10, 20] and got[0][1].startswith("a b, word")
    deep = "x [a:b:5] " + "[" * 300 + "a" + "]" * 300  # past MAX_NESTING: the whole text read as written
    assert schedule(deep, 20) == [(20, deep)]


# ---- AND: A1111's get_multicond_prompt_list ---------------------------------------------------------------------

@pytest.mark.parametrize(("text", "parts"), [
    ("a cat AND a dog:0.5", [("a cat", 1.0), (" a dog", 0.5)]),
    ("a cat AND a dog :0.5", [("a cat", 1.0), (" a dog", 0.5)]),
    ("a cat : 1.5", [("a cat", 1.5)]),
    ("apple:-0.25 AND snow", [("apple", -0.25), (" snow", 1.0)]),
    ("x:.5. ", [("x:.5.", 1.0)]),  # not a number at the end: no weight
    ("x:2.", [("x", 2.0)]),
    ("ANDROID AND cat", [("ANDROID", 1.0), (" cat", 1.0)]),  # AND is a word of its own
    ("a (b:1.2)", [("a (b:1.2)", 1.0)]),
    ("a cat and a dog", [("a cat and a dog", 1.0)]),  # only the capital word splits
])
def test_and_splits_as_a1111_does(text, parts):
    assert split_and(text) == parts


# ---- the table's value: simple form unchanged, composite object otherwise ----------------------------------------

def test_a_plain_prompt_keeps_todays_pieces():
    for text in ("a red cat", "a (red:1.3) cat BREAK b", "[blurry], (worst quality:1.4)", "C:\\path", ""):
        assert table_pieces(text, 20) == pieces_json(text)
        assert table_pieces(text, 20, negative=True) == pieces_json(text)


def test_the_composite_form():
    got = table_pieces("a cat AND a (dog:1.2):0.5", 20)
    assert got == ('{"parts":[{"weight":1.0,"schedule":[[20,[["a cat",1.0]]]]},'
                   '{"weight":0.5,"schedule":[[20,[[" a ",1.0],["dog",1.2]]]]}]}')
    edit = json.loads(table_pieces("a [fantasy:cyberpunk:0.25] landscape", 20))
    assert edit == {"parts": [{"weight": 1.0, "schedule": [[5, [["a fantasy landscape", 1.0]]],
                                                            [20, [["a cyberpunk landscape", 1.0]]]]}]}
    assert json.loads(table_pieces("cat:0", 10)) == {"parts": [{"weight": 0.0, "schedule": [[10, [["cat", 1.0]]]]}]}
    # an edit that never switches within the steps is the simple form of the text in force
    assert table_pieces("[a:b:25]", 20) == pieces_json("a")


def test_a_negative_is_never_split_but_is_edited():
    assert table_pieces("blurry AND grainy:0.5", 20, negative=True) == pieces_json("blurry AND grainy:0.5")
    neg = json.loads(table_pieces("[blurry:grainy:0.5] AND x", 10, negative=True))
    assert neg == {"parts": [{"weight": 1.0, "schedule": [[5, [["blurry AND x", 1.0]]],
                                                           [10, [["grainy AND x", 1.0]]]]}]}


def test_the_composite_json_is_compact_and_keeps_unicode():
    got = table_pieces("café AND thé:0.5", 4)
    assert " " not in got.replace("café", "").replace(" thé", "") and "é" in got and json.loads(got)


# ---- backtick expressions per frame -------------------------------------------------------------------------------

HEAD = "dfm 1\nframes 10\nsteps 20\n"


def weights(table, column="prompt_pieces"):
    return [[p["weight"] for p in json.loads(v)["parts"]] for v in table[column]]


def test_deforum_weight_expressions_are_evaluated_per_frame():
    t = compile_text(HEAD + 'prompt 0 "apple:`where(cos(t)>=0, cos(t), 0)` AND snow"\n')
    assert weights(t) == [[max(math.cos(f), 0.0), 1.0] for f in range(10)]
    assert t["prompt"][3] == "apple:`where(cos(t)>=0, cos(t), 0)` AND snow"  # the text as written


def test_a_backtick_attention_weight_is_exact():
    t = compile_text(HEAD + 'prompt 0 "a (cat:`1+t/max_f`)"\n')
    assert json.loads(t["prompt_pieces"][0]) == [["a cat", 1.0]]  # (cat:1) is the plain text: one piece
    for f in range(1, 10):
        (piece_a, piece_cat) = json.loads(t["prompt_pieces"][f])
        assert piece_a == ["a ", 1.0] and piece_cat == ["cat", 1 + f / 9]  # the shortest decimal round-trips


def test_t_is_the_frame_as_a_name_only():
    # Deforum replaces every letter t by the frame number, so its `sqrt(t)` is `sqr4(4)`; dfm's is the root
    t = compile_text(HEAD + 'prompt 0 "a (cat:`sqrt(t)`)"\n')
    assert json.loads(t["prompt_pieces"][4])[1] == ["cat", 2.0]
    assert json.loads(t["prompt_pieces"][0]) == [["a ", 1.0], ["cat", 0.0]]


def test_backticks_see_the_scene_variables_and_substitute_before_and():
    t = compile_text(HEAD + "fps 10\nbpm 60\n"
                     'prompt 0 "a:`t/fps` AND b:`bpm/60 - 1` AND [c|d]:`s - 42`"\n')
    assert weights(t)[5] == [0.5, 0.0, 0.0]
    assert json.loads(t["prompt_pieces"][5])["parts"][2]["schedule"][:2] == [[1, [[" c", 1.0]]], [2, [[" d", 1.0]]]]


def test_a_weight_of_1e_minus_6_is_a_number_not_text():
    t = compile_text(HEAD + 'prompt 0 "a:`1e-6` AND b"\n')
    assert weights(t)[0] == [1e-6, 1.0]  # Deforum writes str(1e-06), which A1111 reads as text


# ---- the native form ----------------------------------------------------------------------------------------------

NATIVE = HEAD + 'prompt 0 "apple" weight where(cos(t) >= 0, cos(t), 0) and "snow" weight 1\n'


def test_the_native_form_parses_to_a_composite():
    (st,) = [s for s in parse(NATIVE).scene.statements if s.name == "prompt"]
    at, comp = st.args
    assert isinstance(at, ir.Number) and isinstance(comp, ir.Composite)
    assert [p.text.value for p in comp.parts] == ["apple", "snow"]
    assert isinstance(comp.parts[0].weight, ir.Call) and comp.parts[1].weight == ir.Number(1.0, "1")
    (st,) = parse('prompt 4s "a" and "b"').scene.statements
    assert [p.weight for p in st.args[1].parts] == [None, None]


def test_weight_and_and_stay_names_elsewhere():
    (st,) = parse("zoom weight + 1").scene.statements
    assert st.args[0] == ir.Binary("+", ir.Variable("weight"), ir.Number(1.0, "1"))
    (st,) = parse('prompt 0 "a"').scene.statements
    assert st.args == (ir.Number(0.0, "0"), ir.String("a"))  # a lone string is no composite


@pytest.mark.parametrize("src", [
    'prompt 0   "apple"   weight cos( t )and "snow" weight (1)\n',
    'prompt "a" weight 2\n',
    'prompt 4s "a"  and "b" and "c" weight 0.5 + 0.5*sin(2*pi*t/30)\nprompt 10 "x"\n',
])
def test_fmt_writes_the_native_form_canonically(src):
    once = format_source(src)
    assert format_source(once) == once
    assert parse(once).scene == parse(src).scene
    assert "weight" in once and "  " not in once.split('"', 1)[1].replace("prompt 10", "")


def test_fmt_output_of_the_native_form():
    assert format_source('prompt 0 "apple"  weight cos( t ) and "snow" weight (1)\n') == \
        'prompt 0 "apple" weight cos(t) and "snow" weight 1\n'


def test_the_native_form_compiles_as_the_deforum_string_does():
    native = compile_text(NATIVE)
    pasted = compile_text(HEAD + 'prompt 0 "apple:`where(cos(t)>=0, cos(t), 0)` AND snow:1"\n')
    assert list(native["prompt_pieces"]) == list(pasted["prompt_pieces"])
    assert native["prompt"][0] == "apple :`where(cos(t) >= 0, cos(t), 0)` AND snow :1"


def test_the_native_form_with_keyed_prompts_and_a_part_text_with_its_own_colon():
    t = compile_text(HEAD + 'prompt 0 "a cat"\nprompt 5 "ratio 16:9" and "dog" weight t/10\n')
    assert t["prompt_pieces"][4] == pieces_json("a cat")
    parts = json.loads(t["prompt_pieces"][6])["parts"]
    # every weight is written out, so the sub-prompt's own `:9` stays text
    assert [(p["schedule"][0][1][0][0], p["weight"]) for p in parts] == [("ratio 16:9", 1.0), (" dog", 0.6)]


# ---- unet_evals ---------------------------------------------------------------------------------------------------

def test_unet_evals_is_a_derived_int_column():
    assert DERIVED_COLUMNS["unet_evals"] is ColumnType.INT
    t = compile_text(HEAD + 'prompt 0 "a"\n')
    assert t["unet_evals"].dtype == np.int64


def test_unet_evals_counts_parts_and_the_unconditional_pass():
    base = "dfm 1\nframes 6\nsteps 10\nstrength 0.5\ncadence 2\n"
    plain = compile_text(base + 'prompt 0 "a"\n')
    # txt2img frame 0 runs 10 steps, the other diffused frames 5; cfg 7 > 1: one unconditional pass
    assert list(plain["effective_steps"]) == [10, 0, 5, 0, 5, 0]
    assert list(plain["unet_evals"]) == [20, 0, 10, 0, 10, 0]
    no_cfg = compile_text(base + 'cfg_scale 1\nprompt 0 "a"\n')
    assert list(no_cfg["unet_evals"]) == [10, 0, 5, 0, 5, 0]  # the conditional prediction alone
    two = compile_text(base + 'cfg_scale 1\nprompt 0 "a AND b"\n')
    assert list(two["unet_evals"]) == [30, 0, 15, 0, 15, 0]  # two parts: guided even at cfg 1
    weighted = compile_text(base + 'cfg_scale 1\nprompt 0 "a:0.5"\n')
    assert list(weighted["unet_evals"]) == [20, 0, 10, 0, 10, 0]  # one part, weight != 1: guided
    edit = compile_text(base + 'cfg_scale 1\nprompt 0 "[a:b:0.5]"\n')
    assert list(edit["unet_evals"]) == [10, 0, 5, 0, 5, 0]  # editing alone adds no pass


def test_unet_evals_while_crossfading():
    t = compile_text("dfm 1\nframes 4\nsteps 10\nstrength 0.5\nprompt_crossfade 2\n"
                     'prompt 0 "a"\nprompt 2 "b AND c"\n')
    # frames 2 and 3 blend the plain `a` (1 part) with the two parts of `b AND c`, plus the unconditional
    assert list(t["prompt_blend"]) == [1.0, 1.0, 1 / 3, 2 / 3]
    assert list(t["unet_evals"]) == [20, 10, 20, 20]


# ---- plain scenes: the table unchanged but for the new column ----------------------------------------------------

def test_a_plain_scene_has_todays_pieces_on_every_row():
    t = compile_text("dfm 1\nframes 30\nsteps 0:(20), 29:(40)\nprompt_crossfade 3\n"
                     'prompt 0 "a (red:1.3) cat BREAK sky --neg (blurry)"\nprompt 10 "a dog"\nnegative "[text]"\n')
    for name in lower.PROMPT_TEXT_COLUMNS:
        assert list(t[f"{name}_pieces"]) == [pieces_json(x) for x in t[name]], name
    assert list(t["unet_evals"]) == list(t["effective_steps"] * 2)


def test_each_distinct_text_and_steps_is_read_once(monkeypatch):
    calls = []
    real = ps.table_pieces
    monkeypatch.setattr(ps, "table_pieces", lambda *a, **k: calls.append(a) or real(*a, **k))
    compile_text("dfm 1\nframes 2000\nsteps 0:(20), 1999:(29)\n"
                 'prompt 0 "a cat"\nprompt 1000 "[a:b:0.5] AND c"\nnegative "blurry"\n')
    # the plain texts once each (any steps); the edited one once per distinct step count of its rows
    plain = [a for a in calls if a[0] in ("a cat", "blurry")]
    assert len(plain) == len({(a[0], a[2]) for a in plain}) <= 3
    edited = [a for a in calls if a[0] == "[a:b:0.5] AND c"]
    assert sorted(a[1] for a in edited) == list(range(24, 30))  # steps 24..29 over frames 1000..1999


# ---- diagnostics -------------------------------------------------------------------------------------------------

def codes(body: str, head: str = "dfm 1\nframes 6\n"):
    return [d for d in check_text(head + body, "s.dfm") if d.code not in ("DFM020",)]


def test_a_backtick_that_is_not_an_expression_is_an_error_at_the_backticks():
    (d,) = codes('prompt 0 "a:`1+` AND b"\n')
    assert d.code == "DFM503" and d.is_error and d.parameter == "prompt"
    assert (d.span.line, d.span.col, d.span.end_col) == (3, 13, 17)  # the four characters `1+`


def test_an_unknown_function_between_backticks_points_at_them():
    (d,) = codes('prompt 0 "a (cat:`sqr(t)`)"\n')
    assert d.code == "DFM201" and "sqr" in d.message and (d.span.col, d.span.end_col) == (18, 26)


def test_a_division_by_zero_names_the_frame():
    (d,) = codes('prompt 0 "a:`1/(t-2)` AND b"\n')
    assert d.code == "DFM402" and d.frame == 2 and "frame 2" in d.message and (d.span.col, d.span.end_col) == (13, 22)
    (d,) = codes('prompt 0 "a" weight log(t - 3) and "b"\n')
    assert d.code == "DFM402" and d.frame == 0 and d.span.col == 21  # log of a negative: NaN from frame 0


def test_the_native_form_is_refused_in_a_negative():
    (d,) = codes('prompt 0 "x"\nnegative "a" and "b"\n')
    assert d.code == "DFM503" and d.is_error and d.parameter == "negative" and d.span.line == 4


def test_and_inside_a_native_sub_prompt_is_an_error():
    (d,) = codes('prompt 0 "a AND b" and "c"\n')
    assert d.code == "DFM503" and d.is_error and (d.span.col, d.span.end_col) == (13, 16)


def test_too_many_sub_prompts_is_an_error():
    text = " AND ".join(["x"] * (ps.MAX_PARTS + 1))
    (d,) = codes(f'prompt 0 "{text}"\n')
    assert d.code == "DFM503" and d.is_error and str(ps.MAX_PARTS) in d.message


def test_and_in_a_negative_is_text_and_says_so():
    (d,) = codes('prompt 0 "x --neg a AND b"\n')
    assert d.code == "DFM502" and not d.is_error and (d.span.col, d.span.end_col) == (21, 24)


def test_an_unclosed_backtick_is_a_warning():
    (d,) = codes('prompt 0 "a `cos(t)"\n')
    assert d.code == "DFM503" and not d.is_error and (d.span.col, d.span.end_col) == (13, 14)


def test_a_weight_naming_an_audio_feature_needs_audio():
    (d,) = codes('prompt 0 "a" weight onset and "b"\n')
    assert d.code == "DFM205"


# ---- Deforum interop -----------------------------------------------------------------------------------------------

def test_a_deforum_backtick_prompt_imports_and_compiles_per_frame():
    from dfm.compiler.deforum_import import import_settings

    settings = {"animation_mode": "2D", "max_frames": 5, "steps": 10,
                "prompts": {"0": "apple:`where(cos(t)>=0, cos(t), 0)` AND snow --neg blurry"}}
    t = compile_text(import_settings(settings).text)
    assert weights(t) == [[max(math.cos(f), 0.0), 1.0] for f in range(5)]
    assert t["negative_prompt_pieces"][0] == pieces_json("blurry")


def test_the_native_form_exports_as_the_a1111_text_and_imports_back():
    from dfm.compiler.compile import compile_source
    from dfm.compiler.deforum_export import export_settings
    from dfm.compiler.deforum_import import import_settings

    r = compile_source(NATIVE)
    out = export_settings(r)
    assert out.settings["prompts"] == {"0": "apple :`where(cos(t) >= 0, cos(t), 0)` AND snow :1"}
    assert not [w for w in out.warnings if w.startswith("prompt:")]
    back = compile_text(import_settings(out.dumps()).text)
    assert list(back["prompt_pieces"]) == list(r.table["prompt_pieces"])


def test_export_warns_about_backticks_deforum_cannot_evaluate():
    from dfm.compiler.compile import compile_source
    from dfm.compiler.deforum_export import export_settings

    out = export_settings(compile_source(HEAD + 'prompt 0 "a (cat:`sqrt(t)/fps`)" and "b" weight clamp(t, 0, 1)\n'))
    (sqrt,) = [w for w in out.warnings if "sqrt(t)/fps" in w]
    assert "`sqrt`" in sqrt and "`fps`" in sqrt
    (clamp,) = [w for w in out.warnings if "clamp" in w]
    assert "`clamp`" in clamp


def test_the_native_form_anywhere_but_a_prompt_is_an_error_not_a_traceback():
    from dfm.compiler import catalogue as cat

    for p in cat.PARAMS:
        if p.name in ("prompt", "negative"):
            continue
        for body in (f'{p.name} "a" weight 2', f'{p.name} 0 "a" and "b"'):
            ds = check_text(f'dfm 1\nframes 5\nprompt 0 "x"\n{body}\n')
            assert any(d.is_error and d.span.line == 4 for d in ds), body


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab [](|):.5\\`AND", max_size=40), st.integers(1, 60))
def test_any_text_gives_a_valid_schedule_and_table_value(text, steps):
    ends = [end for end, _ in schedule(text, steps)]
    assert ends[-1] == steps and ends == sorted(set(ends)) and ends[0] >= 1
    value = json.loads(table_pieces(text.replace("`", ""), steps))
    if isinstance(value, dict):
        for part in value["parts"]:
            assert part["schedule"][-1][0] == steps


def test_a_weight_is_checked_only_where_its_prompt_is_in_force():
    # 1/(t-6) is infinite at frame 6, where the next prompt is in force: no error; with a crossfade of 2
    # frames the old text still blends on frame 6: an error there
    body = 'prompt 0 "a:`1/(t-6)` AND b"\nprompt 5 "c"\n'
    assert codes(body, "dfm 1\nframes 10\n") == []
    (d,) = codes(body + "prompt_crossfade 2\n", "dfm 1\nframes 10\n")
    assert d.code == "DFM402" and d.frame == 6
    assert compile_text("dfm 1\nframes 10\n" + body)["prompt"][6] == "c"


def _dfm504(text: str) -> list:
    from dfm.api import compile_result

    return [d for d in compile_result(text).diagnostics if d.code == "DFM504"]


def test_an_edit_no_img2img_frame_reaches_is_a_warning_at_its_statement():
    """A1111 counts an edit from the first step a frame runs: at strength 0.65 a 20-step frame runs 7, so
    `[a:b:0.5]` (step 10) never switches after frame 0, and dfm says so where the prompt is written."""
    scene = HEAD + "mode 2d\nstrength 0.65\n" + 'prompt 0 "a cat"\nprompt 4 "a [red:blue:0.5] fox"\n'
    (d,) = _dfm504(scene)
    assert d.span.line == scene.splitlines().index('prompt 4 "a [red:blue:0.5] fox"') + 1
    assert "6 of its 6 diffused frame(s), the first at frame 4" in d.message and d.frame == 4
    assert "runs 7 sampler evaluation(s)" in d.message and "after evaluation 10" in d.message


def test_an_edit_within_the_steps_that_run_and_a_txt2img_frame_are_not_warned():
    reached = HEAD + "mode 2d\nstrength 0.65\n" + 'prompt 0 "a [red:blue:3] fox"\n'  # step 3 < 7 evaluations
    first_only = HEAD + "mode 2d\nframes 1\n" + 'prompt 0 "a [red:blue:0.5] fox"\n'  # frame 0 runs all 20
    alternation = HEAD + "mode 2d\nstrength 0.65\n" + 'negative "[blurry|grainy]"\nprompt 0 "a fox"\n'
    assert _dfm504(reached) == [] and _dfm504(first_only) == [] and _dfm504(alternation) == []


def test_alternation_on_one_step_frames_is_a_warning():
    scene = HEAD.replace("steps 20", "steps 4") + "mode 2d\nstrength 0.65\n" + 'prompt 0 "a [cow|horse] in a field"\n'
    # int(0.35 × 4) = 1 step per img2img frame: the first alternation comes after evaluation 1
    (d,) = _dfm504(scene)
    assert "9 of its 10 diffused frame(s), the first at frame 1" in d.message


def test_a_backtick_that_gives_a_whole_number_is_written_as_deforum_writes_it():
    """`[cat:dog:`3`]` at 20 steps switches at step 3 (Deforum writes `3`, A1111 reads an integer as a
    step); written `3.0`, it was a fraction of 300 % and never switched."""
    import json

    from dfm.api import compile_text
    from dfm.compiler.prompt_syntax import format_number

    assert [format_number(x) for x in (3.0, -2.0, 0.5, 1e-05, 2.0**60)] == ["3", "-2", "0.5", "0.00001",
                                                                            "1152921504606847000"]
    table = compile_text('dfm 1\nframes 2\nsteps 20\nsampler euler\nprompt 0 "[cat:dog:`3`] on a mat"\n')
    schedule = json.loads(table["prompt_pieces"][0])["parts"][0]["schedule"]
    assert schedule == [[3, [["cat on a mat", 1.0]]], [20, [["dog on a mat", 1.0]]]]


def test_a_break_inside_brackets_is_not_a_silent_difference():
    """dfm breaks the chunk at a BREAK inside brackets, where A1111 encodes the word: check says so, at the
    word; a BREAK outside every bracket gets no warning."""
    from dfm.api import check_text

    text = 'dfm 1\nframes 2\nprompt 0 "(a BREAK b) c BREAK d"\n'
    found = [d for d in check_text(text) if d.code == "DFM501"]
    assert len(found) == 1 and "inside brackets" in found[0].message
    assert (found[0].span.line, found[0].span.col, found[0].span.end_col) == (3, 14, 19)
    assert not [d for d in check_text('dfm 1\nframes 2\nprompt 0 "(a) BREAK b"\n') if d.code == "DFM501"]
