"""The runtime's side of the FrameTable contract: its lists of choices are the catalogue's, every setting
it reads is one a compiled table carries (read as an attribute, never with a default of the runtime's),
and a table that breaks the contract is a RenderError before anything loads."""

import re
from pathlib import Path

import pytest
from tiny_models import TINY_2D_SCENE, make_table

from dfm.api import compile_text
from dfm.compiler import catalogue as cat
from dfm.contract.table import FrameTable, Settings
from dfm.runtime import RenderError, effects, samplers
from dfm.runtime.checks import MODE_COLUMNS, ROW_COLUMNS, SETTINGS_READ, SUPPORTED_MODES, check_table
from dfm.runtime.warp import BORDERS, PADDING_MODES, SAMPLING_MODES

RUNTIME_SOURCES = sorted((Path(__file__).resolve().parents[1] / "runtime").glob("*.py"))


def source_matches(pattern: str) -> list[str]:
    """`file:line: text` of every line of runtime/*.py matching `pattern`."""
    out = []
    for path in RUNTIME_SOURCES:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if re.search(pattern, line):
                out.append(f"{path.name}:{n}: {line.strip()}")
    return out


@pytest.mark.parametrize(("choices", "name"), [
    (BORDERS, "border"),
    (PADDING_MODES, "padding_mode"),
    (SAMPLING_MODES, "sampling_mode"),
    (effects.COLOR_SPACES, "color_coherence"),
    (SUPPORTED_MODES, "mode"),
    (tuple(samplers.SAMPLERS), "sampler"),
])
def test_the_runtimes_choices_are_the_catalogues(choices, name):
    assert tuple(choices) == cat.BY_NAME[name].choices


def test_every_setting_the_runtime_reads_is_in_a_compiled_table():
    settings = compile_text(TINY_2D_SCENE).settings
    assert set(SETTINGS_READ) <= set(settings)
    # all catalogue settings, but model_sha256, which the compiler adds from `model "..." sha256 "..."`
    assert {n for n in SETTINGS_READ if n != "model_sha256"} <= {p.name for p in cat.SETTINGS}


def test_check_table_covers_every_setting_the_runtime_source_reads():
    read = set()
    for path in RUNTIME_SOURCES:
        read |= set(re.findall(r"\b(?:s|settings)\.([a-z_][a-z0-9_]*)\b", path.read_text(encoding="utf-8")))
    assert read - {"width", "height"} <= set(SETTINGS_READ)  # width/height are Settings' views of size


def test_the_runtime_supplies_no_defaults_of_its_own():
    assert source_matches(r"\b(?:s|settings|row)\.get\(") == []
    assert source_matches(r"getattr\((?:s|settings|row|sd|table)\b") == []


@pytest.mark.parametrize("mode", SUPPORTED_MODES)
def test_the_columns_the_loop_reads_are_in_every_modes_table(mode):
    extra = {"video_init_path": "clip.mp4"} if mode == "video" else {}
    make_table(3, mode=mode, **extra).require((*ROW_COLUMNS, *MODE_COLUMNS.get(mode, ())))


def test_a_table_without_a_setting_is_a_render_error():
    table = make_table(2)
    bad = FrameTable(table.columns, Settings({k: v for k, v in table.settings.items() if k != "color_coherence"}))
    with pytest.raises(RenderError, match="no setting `color_coherence`") as e:
        check_table(bad)
    assert "dfm compile" in e.value.help


def test_a_table_without_a_column_the_loop_reads_is_a_render_error():
    table = make_table(2, mode="2d")
    bad = FrameTable({k: v for k, v in table.columns.items() if k != "tween_to"}, table.settings)
    with pytest.raises(RenderError, match="no column `tween_to`"):
        check_table(bad)


def test_a_table_read_back_from_json_passes_the_check():
    table = compile_text(TINY_2D_SCENE)
    check_table(FrameTable.from_json(table.to_json()))
