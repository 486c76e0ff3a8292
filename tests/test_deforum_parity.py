"""Deforum's numbers for Deforum's inputs that dfm used to refuse or change silently (issue 21)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from dfm.api import check_text, compile_result, compile_text
from dfm.compiler.deforum_import import import_settings


def scene(schedule: str, frames: int = 30) -> str:
    return f'dfm 1\nframes {frames}\nprompt 0 "x"\ntranslation_x {schedule}\n'


def codes(text: str) -> list[str]:
    return [d.code for d in check_text(text)]


def warning_with(result, *words: str) -> str:
    hits = [w for w in result.warnings if all(word in w for word in words)]
    assert hits, f"no warning with {words}: {result.warnings}"
    return hits[0]


def imported(data: dict):
    result = import_settings(data)
    errors = [d for d in check_text(result.text) if d.is_error]
    assert errors == [], result.text
    return result, compile_text(result.text)


# ---- keys out of order: Deforum fills its series by frame, so order does not matter -------------------


def test_pasted_deforum_string_with_keys_out_of_order_gives_deforums_numbers():
    text = scene('"0:(0), 20:(5), 10:(2)"')
    result = compile_result(text)
    assert not result.errors
    x = result.table["translation_x"]
    assert x[8:11] == pytest.approx([1.6, 1.8, 2.0])
    assert x[15] == pytest.approx(3.5)
    (warning,) = [d for d in result.diagnostics if d.code == "DFM308"]
    assert "0, 20, 10" in warning.message and "0, 10, 20" in warning.message


def test_pasted_deforum_string_keeps_the_last_of_two_keys_on_a_frame():
    result = compile_result(scene('"0:(0), 10:(1), 10:(4)"'))
    assert not result.errors
    assert result.table["translation_x"][10] == pytest.approx(4.0)
    assert result.table["translation_x"][5] == pytest.approx(2.0)
    (warning,) = [d for d in result.diagnostics if d.code == "DFM308"]
    assert "last key kept at frame 10" in warning.message


def test_pasted_deforum_string_in_order_has_no_reordering_warning():
    assert "DFM308" not in codes(scene('"0:(0), 10:(2), 20:(5)"'))


def test_dfm_keys_out_of_order_are_still_an_error():
    assert "DFM302" in codes(scene("0:(0), 20:(5), 10:(2)"))
    assert "DFM301" in codes(scene("0:(0), 10:(1), 10:(4)"))


def test_imported_schedule_with_keys_out_of_order_gives_deforums_numbers():
    data = {"animation_mode": "2D", "max_frames": 30, "prompts": {"0": "x"},
            "translation_x": "0:(0), 20:(5), 10:(2)"}
    result, table = imported(data)
    assert table["translation_x"][8:11] == pytest.approx([1.6, 1.8, 2.0])
    warning_with(result, "translation_x", "out of order", "0, 10, 20")
    assert not any("could not be imported" in w for w in result.warnings)


def test_imported_schedule_keeps_the_last_of_two_keys_on_a_frame():
    data = {"animation_mode": "2D", "max_frames": 30, "prompts": {"0": "x"},
            "translation_x": "0:(0), 10:(1), 10:(4)"}
    result, table = imported(data)
    assert table["translation_x"][10] == pytest.approx(4.0)
    assert np.isclose(table["translation_x"][5], 2.0)
    warning_with(result, "translation_x", "frame 10", "last one is kept")


# ---- silent changes on import: each now names the key and the value used ------------------------------


@pytest.mark.parametrize("raw, used", [(-5, "120"), (1e30, "1000000"), ("0", "120")])
def test_max_frames_outside_dfms_range_is_warned(raw, used):
    result = import_settings({"animation_mode": "2D", "max_frames": raw, "prompts": {"0": "x"}})
    assert f"frames {used}" in result.text.replace("_", "").replace(",", "")
    warning_with(result, "max_frames", repr(raw), used)


def test_fps_zero_is_warned():
    result = import_settings({"animation_mode": "2D", "max_frames": 10, "fps": 0, "prompts": {"0": "x"}})
    warning_with(result, "`fps` is 0", "15 is used")


@pytest.mark.parametrize("value, shown", [(None, "null"), (["x"], '["x"]'), (5, "5")])
def test_a_prompt_that_is_not_text_is_left_out_with_a_warning(value, shown):
    result = import_settings({"animation_mode": "2D", "max_frames": 10, "prompts": {"0": "a cat", "5": value}})
    assert "None" not in result.text and "['x']" not in result.text
    assert "prompt 5" not in result.text
    warning_with(result, "prompts", "'5'", shown, "left out")


def test_a_prompt_list_with_a_null_is_warned():
    result = import_settings({"animation_mode": "2D", "max_frames": 10, "animation_prompts": ["a cat", None]})
    assert "None" not in result.text
    warning_with(result, "animation_prompts", "null", "left out")


@pytest.mark.parametrize("frames, match", [
    ([0, -1], "`frame` -1 (rendered_frames[1]) is negative"),
    ([0, 10**12], "is past dfm's last frame"),
    ([0, 0.5], "`frame` 0.5 (rendered_frames[1]) is not a whole frame"),
    ([0, 1, 1], "`frame` 1 (rendered_frames[2]) is a frame given twice"),
    ([0, 2], "no row for frame 1"),
])
def test_parseq_frames_are_checked(frames, match):
    from dfm.compiler.interop import SettingsError
    from dfm.compiler.parseq import from_parseq_manifest

    with pytest.raises(SettingsError, match=re.escape(match)):
        from_parseq_manifest({"rendered_frames": [{"frame": f, "zoom": 1} for f in frames]})


def test_parseq_rows_out_of_order_are_read_by_frame():
    from dfm.compiler.parseq import from_parseq_manifest

    rows = [{"frame": 1, "angle": 2, "deforum_prompt": "x"}, {"frame": 0, "angle": 1, "deforum_prompt": "x"}]
    table = compile_text(from_parseq_manifest({"rendered_frames": rows}).text)
    assert list(table["angle"]) == [1, 2]


def test_a_huge_parseq_prompt_is_refused_by_name():
    """A regression guard: refused by the settings loader's text limit, not reported as a missing prompt."""
    from dfm.compiler.interop import SettingsError
    from dfm.compiler.parseq import from_parseq_manifest

    rows = [{"frame": 0, "zoom": 1, "deforum_prompt": "a" * 5_000_000}]
    with pytest.raises(SettingsError, match="deforum_prompt` is a text of 5,000,000 characters"):
        from_parseq_manifest({"rendered_frames": rows})
