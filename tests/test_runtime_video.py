"""Video mode: input frames selected (from / every nth / to), resized and streamed into img2img, errors
before any model loads, and the video_restyle example rendered end to end."""

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from tiny_models import make_table

from dfm.api import compile_text
from dfm.runtime import RenderError
from dfm.runtime.render import render
from dfm.runtime.video_input import VideoFrames, count_frames, select, to_frame, video_selection

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
COLOURS = [((37 * k) % 256, (255 - 29 * k) % 256, (90 + 71 * k) % 256) for k in range(12)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """12 frames of 48×40, frame k a solid COLOURS[k]; lossless (FFV1) so the colours come back exact."""
    import imageio_ffmpeg

    path = tmp_path_factory.mktemp("video") / "clip.mkv"
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (48, 40),
        fps=10,
        codec="ffv1",
        pix_fmt_in="rgb24",
        pix_fmt_out="bgr0",
        macro_block_size=1,
        ffmpeg_log_level="error",
    )
    writer.send(None)
    for c in COLOURS:
        writer.send(np.full((40, 48, 3), c, np.uint8))
    writer.close()
    return path


def png(path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def video_table(n, clip, model, **kw):
    return make_table(n, mode="video", video_init_path=str(clip), model=model, seed=3, **kw)


def test_selection_from_nth_to():
    assert list(range(*_bounds(select(12, 0, 1, -1)))) == list(range(12))
    assert list(range(*_bounds(select(12, 2, 3, 10)))) == [2, 5, 8]
    assert list(range(*_bounds(select(12, 2, 3, 11)))) == [2, 5, 8, 11]  # extract_to_frame is inclusive
    assert select(12, 1, 4, 99).count == 3  # past the end means the end: 1, 5, 9
    assert select(12, 20, 1, -1).count == 0
    assert select(12, 2, 3, -1).source_index(2) == 8


def _bounds(sel):
    return sel.start, sel.stop, sel.step


def test_frames_stream_in_order_resized_to_the_scene(clip):
    assert count_frames(clip) == 12
    frames = VideoFrames(clip, select(12, 1, 2, -1), 64, 64, torch.device("cpu"))
    try:
        for row in (0, 1, 3):  # rows may skip; the reader decodes forward only
            f = frames.frame(row)
            assert f.shape == (1, 3, 64, 64) and f.dtype == torch.float32
            want = torch.tensor(COLOURS[1 + 2 * row], dtype=torch.float32) / 255
            assert torch.allclose(f[0, :, 10, 20], want, atol=1e-6) and torch.equal(f.amin((2, 3)), f.amax((2, 3)))
        assert torch.allclose(frames.frame(0)[0, :, 0, 0], torch.tensor(COLOURS[1]) / 255.0)  # back: reopens
        with pytest.raises(IndexError):
            frames.frame(6)
    finally:
        frames.close()


def test_resize_shrinks_with_area_and_enlarges_with_lanczos():
    rgb = np.zeros((40, 48, 3), np.uint8)
    rgb[:, ::2] = 255  # stripes: INTER_AREA averages them to grey when halving the width
    small = to_frame(rgb, 24, 40, torch.device("cpu"))
    assert torch.allclose(small, torch.full_like(small, 127.5 / 255), atol=1 / 255)
    big = to_frame(np.full((8, 8, 3), 200, np.uint8), 16, 16, torch.device("cpu"))
    assert torch.allclose(big, torch.full_like(big, 200 / 255), atol=1e-6)


@pytest.mark.parametrize(("start", "nth", "to", "rows"), [(0, 1, -1, 12), (2, 3, 10, 3), (5, 2, -1, 4)])
def test_zero_steps_write_the_selected_source_frames(tiny_models, clip, tmp_path, start, nth, to, rows):
    table = video_table(
        rows,
        clip,
        str(tiny_models["folder"]),
        strength=1.0,
        extract_from_frame=start,
        extract_nth_frame=nth,
        extract_to_frame=to,
    )
    assert list(table["effective_steps"]) == [0] * rows
    report = render(table, tmp_path, device="cpu")
    assert report.frames == rows and report.unet_calls == 0
    for i in range(rows):
        got = png(tmp_path / f"frames/{i:05d}.png")
        assert got.shape == (64, 64, 3)
        assert (got == np.array(COLOURS[start + i * nth], np.uint8)).all(), i


def test_each_row_is_img2img_from_its_own_input_frame(tiny_models, clip, tmp_path):
    model = str(tiny_models["folder"])
    full = video_table(4, clip, model, strength=0.5)  # sources 0-3, 2 of 4 steps each, one fixed seed
    full.columns["seed"][:] = 3
    report = render(full, tmp_path / "full", device="cpu")
    assert report.unet_calls == 4 * 2 and list(full["effective_steps"]) == [2, 2, 2, 2]
    frames = [png(tmp_path / f"full/frames/{i:05d}.png").astype(int) for i in range(4)]
    assert all(np.abs(f - COLOURS[i]).mean() > 1 for i, f in enumerate(frames))  # diffusion changed them
    # no previous frame, no warp: starting the video two frames later gives the same images
    later = video_table(2, clip, model, strength=0.5, extract_from_frame=2)
    later.columns["seed"][:] = 3
    render(later, tmp_path / "later", device="cpu")
    for i in range(2):
        a = (tmp_path / f"later/frames/{i:05d}.png").read_bytes()
        assert a == (tmp_path / f"full/frames/{i + 2:05d}.png").read_bytes()


def test_too_short_a_video_fails_before_any_model_loads(clip, tmp_path):
    table = video_table(5, clip, str(tmp_path / "no-such-model"), extract_from_frame=2, extract_nth_frame=3)
    with pytest.raises(RenderError) as e:  # 2, 5, 8, 11: four frames for five rows
        render(table, tmp_path / "out", device="cpu")
    assert "gives 4 frames" in e.value.message and "at most 4" in e.value.help
    assert not (tmp_path / "out").exists()


def test_missing_or_unreadable_video_is_a_render_error(tmp_path):
    table = video_table(2, tmp_path / "missing.mp4", str(tmp_path / "no-model"))
    with pytest.raises(RenderError, match="does not exist"):
        render(table, tmp_path / "out", device="cpu")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video")
    with pytest.raises(RenderError, match="cannot read video"):
        video_selection(make_table(2, mode="video", video_init_path=str(junk)).settings, 2)
    no_path = make_table(2, mode="video")
    with pytest.raises(RenderError, match="needs an input video"):
        render(no_path, tmp_path / "out", device="cpu")
    backwards = make_table(2, mode="video", video_init_path=str(junk), extract_from_frame=5, extract_to_frame=2)
    with pytest.raises(RenderError, match="before extract_from_frame"):
        video_selection(backwards.settings, 2)


def test_video_restyle_example_renders_end_to_end(tiny_models, tmp_path):
    text = (EXAMPLES / "video_restyle.dfm").read_text(encoding="utf-8")
    for pattern, repl in {
        r"^size .*$": "size               64x64",
        r"^steps .*$": "steps              4",
        r"^video_init_path .*$": f'video_init_path    "{EXAMPLES / "input.mp4"}"',
    }.items():
        text, n = re.subn(pattern, repl, text, flags=re.M)
        assert n == 1, pattern
    text += "video_mask_path \"mask.mp4\"\n"
    table = compile_text(text, str(tmp_path / "video_restyle.dfm"))
    assert table.settings.mode == "video" and len(table) == 60
    report = render(table, tmp_path / "out", scene_text=text, model=str(tiny_models["folder"]), device="cpu")
    assert report.frames == 60 and report.unet_calls == int(table["effective_steps"].sum()) > 0
    assert sorted(p.name for p in (tmp_path / "out/frames").iterdir()) == [f"{i:05d}.png" for i in range(60)]
    assert (tmp_path / "out/video.mp4").is_file() and "video_input" in report.timings
    assert any("video_mask_path" in w for w in report.warnings)
    assert report.text_encoder_calls == 3  # two prompts and the negative; the crossfade's blends are free
