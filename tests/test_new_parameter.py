"""Adding a schedule parameter is one catalogue row (plus the runtime code that uses it).

Two rows are added the way a developer would, with `catalogue.temporary`: `blur_amount`, which Deforum has
(under its own key, `blur_amount_schedule`, that is no dfm alias) and Parseq has not, and `glow`, an
integer schedule neither has. Every stage picks them up from the row alone: the checker, the formatter,
the compiler's table, the Deforum import, the A1111 and Parseq exports (each loss through `unsupported`,
never a made-up key, never a silent drop) and the generated reference in docs/language.md.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from deforum_files import A1111_KEYS

from dfm.api import check_text, compile_result, compile_text
from dfm.compiler import catalogue as cat
from dfm.compiler.catalogue import MOTION, Kind, Param
from dfm.compiler.deforum_export import export_settings
from dfm.compiler.deforum_import import import_settings
from dfm.compiler.interop import Level
from dfm.compiler.parseq import to_parseq_manifest
from dfm.contract import changes
from dfm.contract.reads import Read
from dfm.dsl.formatter import format_source

ROOT = Path(__file__).resolve().parents[1]

BLUR = Param("blur_amount", Kind.SCHEDULE, "float", 0.0, "Blur the warped previous frame by this radius.", "image",
             unit="px", min=0, max=10, modes=MOTION, deforum="blur_amount_schedule", parseq=None, read=Read.INIT)
GLOW = Param("glow", Kind.SCHEDULE, "int", 0, "Glow around bright pixels (dfm only).", "image", min=0, max=5,
             modes=MOTION, deforum=None, parseq=None)

SCENE = """dfm 1
mode 2d
frames 20
prompt 0 "a cat"
blur_amount 0:(0), 10:(2) ease_in, 19:(1)
glow 3
"""


@pytest.fixture
def new_rows():
    with cat.temporary(BLUR, GLOW):
        yield
    assert cat.lookup("blur_amount") is None  # the catalogue is itself again


def errors(text: str) -> list:
    return [d for d in check_text(text) if d.is_error]


def test_check(new_rows):
    assert errors(SCENE) == []
    bad = errors(SCENE.replace("10:(2)", "10:(20)"))
    assert [(d.code, d.parameter) for d in bad] == [("DFM401", "blur_amount")]  # the row's range, at every frame


def test_without_the_rows_the_names_are_unknown():
    assert [(d.code, d.message) for d in errors(SCENE)] == [("DFM101", "unknown parameter `blur_amount`"),
                                                           ("DFM101", "unknown parameter `glow`")]


def test_fmt(new_rows):
    text = "dfm 1\nblur_amount   0:(0),10:(2)\nglow 3\n"
    assert format_source(text) == "dfm 1\nblur_amount 0:(0), 10:(2)\nglow        3\n"


def test_compile_gives_typed_columns(new_rows):
    table = compile_text(SCENE)
    assert table["blur_amount"].dtype == np.float64 and table["glow"].dtype == np.int64
    assert table["blur_amount"][0] == 0 and table["blur_amount"][10] == 2 and table["blur_amount"][19] == 1
    assert set(table["glow"]) == {3}


def test_import_reads_the_deforum_key(new_rows):
    data = {"animation_mode": "2D", "max_frames": 20, "prompts": {"0": "a cat"},
            "blur_amount_schedule": "0: (0), 10: (2)"}
    result = import_settings(data)
    assert "blur_amount 0:(0), 10:(2)" in result.text
    assert "blur_amount_schedule" in result.mapped_keys and result.warnings == []
    assert compile_text(result.text)["blur_amount"][5] == pytest.approx(1.0)


def test_a1111_export_writes_the_rows_key_and_warns_for_the_one_without(new_rows):
    exported = export_settings(compile_result(SCENE))
    s = exported.settings
    assert s["blur_amount_schedule"].startswith("0: (0), ")  # the ease_in segment as number keys
    assert not {"blur_amount", "glow", "glow_schedule"} & set(s)  # no key made up from a dfm name
    assert set(s) - set(A1111_KEYS) <= {"animation_prompts_positive", "animation_prompts_negative", "dfm",
                                        "blur_amount_schedule"}
    by_param = {n.param: n for n in exported.unsupported}
    assert by_param["blur_amount"].level is Level.REWRITTEN and "ease_in" in by_param["blur_amount"].reason
    assert by_param["glow"].level is Level.LOST
    assert any(w.startswith("glow: ") and "no such schedule" in w for w in exported.warnings)
    back = compile_text(import_settings(exported.dumps()).text)
    assert np.allclose(back["blur_amount"], compile_text(SCENE)["blur_amount"], rtol=0, atol=1e-9)


def test_a1111_export_is_silent_about_a_row_left_at_its_default(new_rows):
    exported = export_settings(compile_result(SCENE.replace("glow 3\n", "")))
    assert not any("glow" in w for w in exported.warnings)


def test_parseq_export_warns_instead_of_dropping(new_rows):
    warnings: list[str] = []
    manifest = json.loads(json.dumps(to_parseq_manifest(compile_text(SCENE), warnings)))
    row = manifest["rendered_frames"][0]
    assert not {"blur_amount", "glow"} & set(row)  # Parseq has no such fields
    blur = next(w for w in warnings if w.startswith("blur_amount: "))
    assert "Parseq has no such field" in blur and "blur_amount_schedule" in blur  # where Deforum takes it instead
    assert any(w.startswith("glow: ") for w in warnings)


def test_docs_list_the_rows(new_rows):
    spec = importlib.util.spec_from_file_location("gen_params", ROOT / "docs" / "gen_params.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    text = gen.render_params()
    assert "| `blur_amount` | `0` | [0 .. 10] | px |" in text
    assert "`glow`" in text and "Whole numbers" in text.split("`glow`")[1].split("\n")[0]


def test_the_rule_of_what_an_edit_changes_reads_the_row(new_rows):
    """`read=Read.INIT` in the row is all the incremental re-render needs: the new column is read on the
    diffused rows after the first (the image effects on the warped previous frame), so an edit whose first
    changed value is at frame 11 keeps frames 0-10; `glow`, whose row says nothing, counts as read on every
    row (safe)."""
    table = compile_text(SCENE)
    reads = changes.RowReads(table)
    assert "blur_amount" in reads.at(5) and "blur_amount" not in reads.at(0)
    assert reads.when("glow") is Read.EVERY and "glow" in reads.at(0)
    edited = compile_text(SCENE.replace("19:(1)", "15:(1), 19:(1)"))
    first = int(np.flatnonzero(edited["blur_amount"] != table["blur_amount"])[0])
    assert first == 11 and changes.compare(table, edited).first_frame == first
    assert "frames 0–10 kept" in changes.compare(table, edited).summary()
    stills = compile_text(SCENE.replace("mode 2d", "mode none"))  # not in the row's modes: never read there
    assert changes.RowReads(stills).when("blur_amount") is Read.NEVER
