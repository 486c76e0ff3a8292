"""`dfm check` (and the language server, which publishes what check gives) reports every diagnostic that
`dfm compile` does, at the same place: check builds no FrameTable, so a warning that compile finds in the
table (DFM504, a prompt edit that never switches) must come from the rows check computes itself.

Compared over every example, every .dfm fixture, every scene text written in the tests, and scenes made to
reach the warnings that only the table's rows show."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from dfm.api import check_text
from dfm.compiler.compile import compile_source

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent


def _test_scene_texts() -> dict[str, str]:
    """Every string literal in the tests that is a whole scene (`dfm 1` first, a prompt in it), each once,
    named by where it is first written (f-strings are left out: their text is not known here)."""
    found: dict[str, str] = {}
    for path in sorted(TESTS.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        in_fstring = {id(c) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for c in n.values}
        for n in ast.walk(tree):
            if (isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in in_fstring
                    and n.value.lstrip().startswith("dfm 1\n") and "prompt" in n.value):
                found.setdefault(n.value, f"{path.name}:{n.lineno}")
    return found


# scenes whose prompt edits cannot switch on the steps their frames run: DFM504 in compile's table
UNREACHED = {
    # img2img frames run int(0.2 × 10) = 1 of 10 steps; the edit switches after step 5
    "edit": 'dfm 1\nmode 2d\nframes 10\nsteps 10\nstrength 0.8\nprompt "a [cat:dog:5] in a field"\n',
    # alternation switches every step; a frame of one step never sees the second text
    "alternation": 'dfm 1\nmode 2d\nframes 8\nsteps 10\nstrength 0.85\ncadence 2\nprompt "a [cat|dog] on a hill"\n',
    # the native composable form: the bracket is in the second sub-prompt
    "composite": 'dfm 1\nmode 2d\nframes 6\nsteps 20\nstrength 0.9\n'
                 'prompt "a house" weight 1 and "a [red:blue:0.5] door" weight 0.5\n',
    # a negative prompt's edit, with a prompt that changes at frame 3 and a backtick weight
    "negative": 'dfm 1\nmode 2d\nframes 6\nsteps 12\nstrength 0.75\nprompt 0 "a boat :`1+t/10`"\n'
                'prompt 3 "a ship"\nnegative "[blurry:grainy:6]"\n',
    # 3D, a scheduled strength and a second-order sampler (twice the steps in A1111's count)
    "3d": 'dfm 1\nmode 3d\nframes 12\nsteps 8\nsampler heun\nstrength 0:(0.5), 6:(0.8)\n'
          'prompt "a [forest:desert:0.75] road"\n',
    # Deforum's inline negative: the edit is in the `--neg` part, read from the negative column
    "inline-negative": 'dfm 1\nmode 2d\nframes 6\nsteps 10\nstrength 0.8\nnegative "lowres"\n'
                       'prompt "a calm lake --neg [fog:haze:5]"\n',
}
# a stills scene whose weight is infinite on an image past `frames` (the rows are the images)
STILLS_WEIGHT = 'dfm 1\nmode none\nframes 2\nimages_per_prompt 5\nprompt "a cat :`1/(t-3)`"\n'


def _cases() -> list:
    cases = [pytest.param(p.read_text(encoding="utf-8"), str(p), id=f"examples/{p.name}")
             for p in sorted((ROOT / "examples").glob("*.dfm"))]
    cases += [pytest.param(p.read_text(encoding="utf-8"), str(p), id=f"fixtures/{p.name}")
              for p in sorted((TESTS / "fixtures").glob("*.dfm"))]
    cases += [pytest.param(text, "<string>", id=where) for text, where in _test_scene_texts().items()]
    cases += [pytest.param(text, "<string>", id=f"unreached-{name}") for name, text in UNREACHED.items()]
    cases.append(pytest.param(STILLS_WEIGHT, "<string>", id="stills-weight"))
    return cases


def _seen(diagnostics) -> list[tuple]:
    return [(d.code, d.message, d.span.line, d.span.col, d.span.end_line, d.span.end_col, d.severity)
            for d in diagnostics]


@pytest.mark.parametrize("text,path", _cases())
def test_check_reports_what_compile_reports(text, path):
    assert _seen(check_text(text, path)) == _seen(compile_source(text, path).diagnostics)


def test_the_tests_scene_texts_are_collected():
    assert len(_test_scene_texts()) >= 20  # the tiny models' scenes among them
    assert any(where.startswith("tiny_models.py") for where in _test_scene_texts().values())


@pytest.mark.parametrize("name", sorted(UNREACHED))
def test_check_warns_of_a_prompt_edit_that_never_switches(name):
    (d,) = [d for d in check_text(UNREACHED[name]) if d.code == "DFM504"]
    assert d.is_warning and "never switches" in d.message


def test_check_finds_a_stills_weight_past_the_frame_count():
    (d,) = check_text(STILLS_WEIGHT)
    assert (d.code, d.frame) == ("DFM402", 3) and "is inf at frame 3" in d.message
