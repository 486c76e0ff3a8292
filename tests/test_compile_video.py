"""Video mode takes its frame count from the input video's extraction, as Deforum does (issue 8, item 15)."""

from __future__ import annotations

from pathlib import Path

from dfm.api import compile_result

CLIP = Path(__file__).resolve().parents[1] / "examples" / "input.mp4"  # 60 frames


def video(body: str):
    return compile_result(f'dfm 1\nmode video\nvideo_init_path "{CLIP}"\nprompt 0 "a"\n' + body, "<string>")


def test_the_frame_count_defaults_to_the_extraction():
    assert len(video("").table) == 60
    assert len(video("extract_nth_frame 2\n").table) == 30
    assert len(video("extract_from_frame 10\nextract_to_frame 19\n").table) == 10


def test_fewer_frames_may_be_asked_for_more_may_not():
    assert len(video("frames 12\n").table) == 12
    r = video("frames 100\n")
    d = [d for d in r.errors if d.code == "DFM104"]
    assert d and "gives 60 frames" in d[0].message and d[0].parameter == "frames" and "frames 60" in d[0].help


def test_an_empty_extraction_is_an_error():
    r = video("extract_from_frame 500\n")
    assert any("no frames" in d.message for d in r.errors)


def test_an_unreadable_video_is_a_diagnostic(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video")
    r = compile_result(f'dfm 1\nmode video\nvideo_init_path "{junk}"\nprompt 0 "a"\n')
    assert any(d.code == "DFM403" and "cannot read video" in d.message for d in r.errors)
