"""docs/language.md, the examples and the editor files agree with the code they describe."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from dfm.api import check_text, compile_result
from dfm.api import evaluate_schedule as evaluate_schedule_text
from dfm.compiler.catalogue import MODES, PARAMS
from dfm.compiler.expressions import FUNCTIONS, VARIABLES
from dfm.dsl import lexer
from dfm.dsl.codes import CODES
from dfm.dsl.diagnostics import Severity
from dfm.dsl.parser import parse

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "language.md"
EXAMPLES_DIR = ROOT / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.dfm"))
VSCODE = ROOT / "editors" / "vscode"


def load_generator() -> ModuleType:
    """docs/gen_params.py is a script, not a package module: load it by path."""
    spec = importlib.util.spec_from_file_location("gen_params", ROOT / "docs" / "gen_params.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


# ---- the reference ---------------------------------------------------------------------------------


def test_every_parameter_and_alias_is_documented(doc: str) -> None:
    missing = [p.name for p in PARAMS if f"`{p.name}`" not in doc]
    missing += [a for p in PARAMS for a in p.aliases if f"`{a}`" not in doc]
    assert missing == []


def test_every_code_is_documented(doc: str) -> None:
    missing = [code for code in CODES if f"`{code}`" not in doc]
    assert missing == []
    for code, (title, _) in CODES.items():
        assert f"| `{code}` | {title.replace('|', chr(92) + '|')} |" in doc, code


def test_every_function_and_variable_is_documented(doc: str) -> None:
    assert [f for f in FUNCTIONS if f"| `{f}` |" not in doc] == []
    assert [v for v in VARIABLES if f"| `{v}` |" not in doc] == []


def test_generated_sections_are_up_to_date(doc: str) -> None:
    gen = load_generator()
    assert gen.regenerate(doc) == doc, "run .venv/bin/python docs/gen_params.py"
    assert gen.main(["--check"]) == 0


def test_the_frametable_column_list_is_generated_and_up_to_date() -> None:
    """docs/frametable.md's column table comes from the contract and the catalogue: every column of a
    compiled table is listed, with the rows that read it."""
    gen = load_generator()
    text = (ROOT / "docs" / "frametable.md").read_text(encoding="utf-8")
    assert gen.regenerate_frametable(text) == text, "run .venv/bin/python docs/gen_params.py"
    from dfm.api import compile_text

    table = compile_text("dfm 1\nmode 3d\nframes 3\nprompt 0 \"a cat\"\n")
    assert [c for c in table.names if f"| `{c}` |" not in text] == []
    assert "| `angle` | float | rows after the first (motion) in 2d | schedule |" in text


def test_generator_replaces_only_between_markers() -> None:
    gen = load_generator()
    text = "before\n<!-- codes:start -->\nstale\n<!-- codes:end -->\nafter\n"
    out = gen.replace_between(text, gen.CODES_MARKERS, gen.render_codes())
    assert out.startswith("before\n<!-- codes:start -->\n<!-- generated")
    assert out.endswith("<!-- codes:end -->\nafter\n")
    assert "stale" not in out and "`DFM011`" in out
    with pytest.raises(ValueError):
        gen.replace_between("no markers", gen.CODES_MARKERS, "x")


def test_generator_check_flags_a_stale_doc(tmp_path: Path) -> None:
    gen = load_generator()
    stale = tmp_path / "language.md"
    current = DOC.read_text(encoding="utf-8")
    stale.write_text(current.replace("| `DFM011` |", "| `DFM011x` |"), encoding="utf-8")
    assert gen.main(["--check", "--doc", str(stale)]) == 1
    assert gen.main(["--doc", str(stale)]) == 0  # rewrites it
    assert stale.read_text(encoding="utf-8") == current


def test_dfm_code_blocks_in_the_doc_parse(doc: str) -> None:
    blocks = re.findall(r"^[ \t]*```dfm\n(.*?)^[ \t]*```", doc, flags=re.S | re.M)
    assert len(blocks) >= 5
    for block in blocks:
        result = parse(block, "<docs>")
        assert result.diagnostics == [], block


@pytest.mark.parametrize(
    ("schedule", "frames", "expected"),
    [  # worked examples quoted in docs/language.md
        ("0:(0), 10:(10)", 11, list(range(11))),
        ("0:(0), 4:(t), 8:(2)", 12, [0, 1, 2, 3, 4, 5, 6, 7, 2, 2, 2, 2]),
        ("0:(1), 20:(5)", 12, [1] * 12),
        ("4:(2), 8:(0)", 10, [2, 2, 2, 2, 2, 1.5, 1, 0.5, 0, 0]),
        ("0:(1e-3), 6:(1)", 8, [0.001] * 6 + [1, 1]),
        ("0:(0) step, 4:(4), 8:(0)", 9, [0, 0, 0, 0, 4, 3, 2, 1, 0]),
        ("2**3**2", 1, [512]),
        ("-2**2", 1, [-4]),
    ],
)
def test_worked_examples_in_the_doc(doc: str, schedule: str, frames: int, expected: list[float]) -> None:
    assert schedule in doc
    np.testing.assert_allclose(evaluate_schedule_text(schedule, frames), expected)


def test_time_conversions_in_the_doc(doc: str) -> None:
    # "At fps 15, 0.5s is frame 8 (7.5 rounded up); at fps 15 and bpm 120, 8b is frame 60."
    assert "`0.5s` is frame 8" in doc and "`8b` is frame 60" in doc
    np.testing.assert_allclose(evaluate_schedule_text("0:(0), 0.5s:(8) step", 10)[7:9], [7, 8])
    values = evaluate_schedule_text("0:(0), 8b:(1) step", 64, fps=15, bpm=120)
    assert values[59] < 1 and values[60] == 1


# ---- the examples ----------------------------------------------------------------------------------


def test_there_are_enough_examples() -> None:
    names = {p.stem for p in EXAMPLES}
    assert {"robot_to_village", "stills", "flythrough_3d", "video_restyle", "prompt_morph", "beat_sync",
            "deforum_paste"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_checks_without_errors(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    diags = check_text(text, str(path), base_dir=EXAMPLES_DIR)
    assert [d for d in diags if d.is_error] == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_checks_without_warnings(path: Path) -> None:
    """Teaching examples should not teach anything the checker frowns on."""
    text = path.read_text(encoding="utf-8")
    diags = check_text(text, str(path), base_dir=EXAMPLES_DIR)
    assert [(d.code, d.message) for d in diags if d.severity is Severity.WARNING] == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_small_and_commented(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) <= 60
    assert lines[0].startswith(f"# {path.name}")
    assert sum(1 for line in lines if "#" in line) >= 5
    result = compile_result(text, str(path), base_dir=EXAMPLES_DIR)
    assert result.table is not None
    assert len(result.table) <= 300
    width, height = result.settings.size
    assert width <= 512 and height <= 512


def test_examples_cover_every_mode() -> None:
    modes = {compile_result(p.read_text(encoding="utf-8"), str(p), base_dir=EXAMPLES_DIR).settings.mode
             for p in EXAMPLES}
    assert modes == set(MODES)


def test_video_example_points_at_a_real_clip() -> None:
    text = (EXAMPLES_DIR / "video_restyle.dfm").read_text(encoding="utf-8")
    path = re.search(r'^video_init_path\s+"([^"]+)"', text, flags=re.M)
    assert path is not None
    clip = EXAMPLES_DIR / path.group(1)
    assert clip.is_file() and clip.stat().st_size < 64_000


# ---- editors ---------------------------------------------------------------------------------------


def test_lexer_knows_the_compiler_functions_and_variables() -> None:
    assert set(lexer.FUNCTIONS) == set(FUNCTIONS)
    assert set(lexer.VARIABLES) | set(lexer.CONSTANTS) == set(VARIABLES)


def test_vscode_extension_files() -> None:
    package = json.loads((VSCODE / "package.json").read_text(encoding="utf-8"))
    config = json.loads((VSCODE / "language-configuration.json").read_text(encoding="utf-8"))
    grammar = json.loads((VSCODE / "syntaxes" / "dfm.tmLanguage.json").read_text(encoding="utf-8"))

    (language,) = package["contributes"]["languages"]
    (contributed,) = package["contributes"]["grammars"]
    assert language["id"] == "dfm" and ".dfm" in language["extensions"]
    assert (VSCODE / language["configuration"]).is_file()
    assert (VSCODE / contributed["path"]).is_file()
    assert contributed["scopeName"] == grammar["scopeName"] == "source.dfm"
    assert config["comments"]["lineComment"] == "#"


def _walk_rules(node: object):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk_rules(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk_rules(value)


def test_tmlanguage_scopes_includes_and_regexes() -> None:
    grammar = json.loads((VSCODE / "syntaxes" / "dfm.tmLanguage.json").read_text(encoding="utf-8"))
    rules = list(_walk_rules(grammar))
    scopes = {r["name"] for r in rules if isinstance(r.get("name"), str)}
    for scope in ("comment.line.number-sign.dfm", "keyword.other.statement.dfm", "string.quoted.triple.dfm",
                  "constant.character.escape.dfm", "entity.name.tag.keyframe.dfm", "support.function.dfm",
                  "keyword.control.curve.dfm", "constant.numeric.time.dfm", "invalid.illegal.operator.dfm"):
        assert scope in scopes, scope
    assert all(s.endswith(".dfm") for s in scopes if s != "dfm")
    # every include names a rule that exists
    includes = {r["include"] for r in rules if "include" in r}
    assert includes and all(i[1:] in grammar["repository"] for i in includes)
    # the regexes are plain enough for Python's engine as well as Oniguruma
    for r in rules:
        for key in ("match", "begin", "end"):
            if isinstance(r.get(key), str):
                re.compile(r[key])
    functions = next(r["match"] for r in rules if r.get("name") == "support.function.dfm")
    assert all(re.search(functions, f"{f}(") for f in FUNCTIONS)


def test_readme_scene_is_clean_and_canonical():
    """The first thing a newcomer copies must check without a single diagnostic and be `dfm fmt` output."""
    import re

    from dfm.app.commands.fmt import rename_map as _rename_map
    from dfm.dsl.formatter import format_source

    readme = (ROOT / "README.md").read_text()
    scene = re.search(r"```dfm\n(.*?)```", readme, re.S).group(1)
    assert check_text(scene, "README.md") == []
    assert format_source(scene, _rename_map()) == scene
