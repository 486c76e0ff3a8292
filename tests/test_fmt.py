"""`dfm fmt`: canonical, idempotent, comments kept, meaning unchanged."""

import glob
from pathlib import Path

import pytest

from dfm.app.commands.fmt import rename_map as _rename_map
from dfm.compiler import catalogue
from dfm.dsl import ir
from dfm.dsl.formatter import format_expr, format_source
from dfm.dsl.parser import parse

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(glob.glob(str(ROOT / "examples" / "*.dfm")))
FIXTURE = ROOT / "tests" / "fixtures" / "identity.dfm"


def canonical_names(scene: ir.Scene) -> ir.Scene:
    """The scene with every alias replaced by its catalogue name (what fmt's renaming does)."""
    return ir.Scene(tuple(ir.Statement(catalogue.ALIASES.get(st.name, st.name), st.args) for st in scene.statements))


def assert_same_meaning(a: str, b: str) -> None:
    assert canonical_names(parse(a).scene) == canonical_names(parse(b).scene)


@pytest.mark.parametrize("path", EXAMPLES + [str(FIXTURE)], ids=lambda p: Path(p).name)
def test_fmt_is_stable_and_keeps_meaning(path):
    text = Path(path).read_text()
    once = format_source(text, _rename_map())
    assert format_source(once, _rename_map()) == once
    assert_same_meaning(text, once)
    assert len([c for c in parse(once).scene.comments]) == len(parse(text).scene.comments)


def test_examples_exist():
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("path", [p for p in EXAMPLES if not p.endswith("deforum_paste.dfm")],
                         ids=lambda p: Path(p).name)
def test_examples_are_canonical(path):
    """Shipped examples are already `dfm fmt` output (deforum_paste.dfm shows Deforum's own layout)."""
    text = Path(path).read_text()
    assert format_source(text, _rename_map()) == text


def test_identity_fixture_is_already_canonical():
    text = FIXTURE.read_text()
    assert format_source(text, _rename_map()) == text


def test_canonical_layout():
    src = "dfm 1\nmode   2d\nzoom_schedule 0:(1.0025+0.002*sin(1.25*3.14*t/30)),10: (1)\n\n\n\nprompt 0 'a'\n"
    assert format_source(src, _rename_map()) == (
        "dfm 1\n"
        "mode 2d\n"
        "zoom 0:(1.0025 + 0.002*sin(1.25*3.14*t/30)), 10:(1)\n"
        "\n"
        'prompt 0 "a"\n'
    )


def test_alignment_within_a_paragraph():
    out = format_source("fps 12\ncadence 2\n\nsampler euler\n")
    assert out == "fps     12\ncadence 2\n\nsampler euler\n"


def test_comments_are_kept_in_place():
    src = "# intro\nzoom 1.02   # gentle\n# before angle\nangle 0:(1),  # inside\n  10:(2)\n# end\n"
    out = format_source(src)
    assert out == "# intro\nzoom  1.02  # gentle\n# before angle\n# inside\nangle 0:(1), 10:(2)\n# end\n"


def test_long_keylists_wrap_and_reparse():
    keys = ", ".join(f"{i}:({i}.5)" for i in range(60))
    out = format_source(f"zoom {keys}\n")
    assert all(len(line) <= 100 for line in out.splitlines())
    assert len(out.splitlines()) > 1
    assert_same_meaning(f"zoom {keys}\n", out)


@pytest.mark.parametrize("text", [
    "10 - (5 - 2)", "(10 - 5) - 2", "2**3**2", "(2**3)**2", "-2**2", "(-2)**2", "-(2 + 3)", "a * (b + c)",
    "(a < b) < c", "a < (b < c)", "~(a & b) | c", "where(t > 5, 1, 0) * 2", "1e-3 + 1. + .5", "t % 15 / 2",
    "(t*bpm/60) % 1", "t % (2*3)", "a / (b*c)", "a - -b",
])
def test_expressions_print_with_the_parentheses_they_need(text):
    e = parse(f"x {text}").scene.statements[0].args[0]
    printed = format_expr(e)
    assert parse(f"x {printed}").scene.statements[0].args[0] == e


def test_number_texts_are_kept():
    assert format_source("zoom 0:(1e-3), 5:(1.), 9:(.5)\n") == "zoom 0:(1e-3), 5:(1.), 9:(.5)\n"


def test_strings_round_trip():
    src = 'prompt 0 "say \\"hi\\" \\\\ back"\nprompt 5 """\n  two\n  lines\n"""\n'
    out = format_source(src)
    assert_same_meaning(src, out)
    assert format_source(out) == out


def test_unparseable_text_is_refused_not_mangled():
    with pytest.raises(ValueError, match="cannot format"):
        format_source("zoom 0:(1,04)\n")
