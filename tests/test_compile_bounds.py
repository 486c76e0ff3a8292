"""Issue 8, check and compile: every number that becomes a frame is bounded, every OS error on a path is a
diagnostic, every float of the table is finite, and what check accepts compiles."""

from __future__ import annotations

import warnings

import pytest

from dfm.api import compile_result
from dfm.compiler import catalogue as cat

HUGE_TIMES = {
    "duration": "duration 1e400\n",
    "crossfade": "prompt_crossfade 1e400\n",
    "key in seconds": "zoom 0:(1), " + "9" * 90 + "s:(2)\n",
    "key in frames": "zoom 0:(1), 1e20:(2)\n",
    "key in beats": "bpm 120\nzoom 0:(1), " + "9" * 90 + "b:(2)\n",
    "number too long to read": "zoom 0:(1), " + "9" * 400 + "s:(2)\n",
    "prompt at a huge time": 'prompt 1e20 "b"\n',
    "stills prompt at 1e9": 'mode none\nprompt 1e9 "b"\n',
    "interpolation key frames at 1e9": 'mode interpolation\ninterpolate_key_frames on\nprompt 1e9 "b"\n',
    "interpolation key frames at 1e20": 'mode interpolation\ninterpolate_key_frames on\nprompt 1e20 "b"\n',
    "interpolation x frames": 'mode interpolation\ninterpolate_x_frames 10000\n'
                              + "".join(f'prompt {i} "p{i}"\n' for i in range(1, 150)),
}


def compiled(body: str, path: str = "<string>"):
    return compile_result('dfm 1\nprompt 0 "a"\n' + body, path)


@pytest.mark.parametrize("body", HUGE_TIMES.values(), ids=HUGE_TIMES.keys())
def test_huge_times_are_range_errors_not_crashes(body):
    r = compiled(body)
    errors = [d for d in r.errors if d.code in ("DFM104", "DFM001")]
    assert errors and r.table is None, r.diagnostics
    assert errors[0].help and (str(cat.MAX_FRAMES) in errors[0].message or "characters long" in errors[0].message)


def test_the_past_the_last_frame_warning_agrees_with_the_rows():
    r = compiled('mode interpolation\ninterpolate_key_frames on\nframes 15\nprompt 36 "b"\n')
    assert len(r.table) == 37
    assert [d.code for d in r.diagnostics if d.code == "DFM303"] == []  # no "past the last frame 14"


@pytest.mark.parametrize("setting", ["init_image", "video_init_path", "model"])
def test_an_os_error_on_a_path_is_a_diagnostic(setting, tmp_path):
    for path in ("x" * 5000, "a/" * 3000, "nul\0byte"):
        path = "./" + path if setting == "model" else path  # a model without ./ is a hub id
        r = compiled(f'mode video\n{setting} "{path}"\n', str(tmp_path / "s.dfm"))
        bad = [d for d in r.diagnostics if d.code == "DFM403" and d.is_error]
        assert bad and "cannot be used" in bad[0].message, r.diagnostics


@pytest.mark.parametrize(("body", "parameter", "frame"), [
    ("frames 15000\nzoom 1.05\n", "zoom", 14547),
    ("translation_x 1e308\n", "translation_x", 1),
    ("frames 10\nangle 0:(1e308), 5:(-1e308)\n", "angle", 1),
])
def test_an_infinite_table_value_is_a_diagnostic_at_its_statement(body, parameter, frame):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy overflow warnings never leak
        r = compiled(body)
    d = [d for d in r.errors if d.code == "DFM402"]
    assert d and d[0].parameter == parameter and d[0].frame == frame and r.table is None
    assert d[0].span.line == body.count("\n") + 2  # the schedule's own line


def test_keys_near_the_float_limit_hold_as_in_deforum_and_are_reported():
    # `1e308` is an expression key for Deforum (not a plain number): it holds until the next key
    r = compiled("frames 10\ntransform_center_x 0:(1e308), 5:(-1e308)\n")
    assert list(r.values["transform_center_x"]) == [1e308] * 5 + [-1e308] * 5 and r.table is not None


def test_out_of_range_blames_the_key_the_value_comes_from():
    r = compiled("frames 60\nstrength 0:(0.5), 40:(1.2)\n")
    d = r.errors[0]
    assert d.code == "DFM401" and d.span.col == len("strength 0:(0.5), ") + 1


def test_video_cadence_is_warned_once():
    r = compiled("mode video\ncadence 3\n")
    assert [d.code for d in r.diagnostics if d.parameter == "cadence"] == ["DFM304"]


@pytest.mark.parametrize("body", ['mode none\nprompt 999999 "b"\n', "frames 1000000\nzoom 1.00001\n",
                                  'mode interpolation\ninterpolate_key_frames on\nprompt 999999 "b"\n'])
def test_what_check_accepts_compiles(body):
    from dfm.api import check_text

    assert [d for d in check_text('dfm 1\nprompt 0 "a"\n' + body) if d.is_error] == []
    assert compiled(body).table is not None


class _Sink:
    """A text stream that keeps only the size of its largest write and the total."""

    def __init__(self) -> None:
        self.largest = self.total = 0

    def write(self, text: str) -> int:
        self.largest = max(self.largest, len(text))
        self.total += len(text)
        return len(text)


def test_a_long_table_is_written_a_chunk_at_a_time_and_reads_the_same():
    import io
    import json

    from dfm.api import compile_text

    parts = " AND ".join(f"part{i}:{i % 3 + 1}" for i in range(32))
    table = compile_text(f'dfm 1\nframes 30000\nprompt "{parts}"\n')
    sink = _Sink()
    table.write_csv(sink)
    assert sink.total > 30_000 * 1000 and sink.largest < 50_000  # rows go out one by one, never the whole text
    sink = _Sink()
    table.write_json(sink)
    assert sink.largest < 4 * 2**20
    small = compile_text('dfm 1\nframes 5\nprompt "a `t` b"\nzoom 0:(1), 2:(-1.5)\n')
    text = io.StringIO()
    small.write_json(text)
    assert json.loads(text.getvalue()) == json.loads(json.dumps(small.to_json()))
    rows = small.to_csv().splitlines()
    assert rows[0].split(",")[:3] == ["frame", "time", "angle"] and len(rows) == 6
