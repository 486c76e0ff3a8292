"""`dfm preview`: the motion schedules over a test card, no model."""

import imageio_ffmpeg
import numpy as np
import pytest

from dfm.api import compile_text
from dfm.app.cli import main
from dfm.runtime.preview import motion_card, overlay, preview_frames


def scene(body: str, frames: int = 4) -> str:
    return f'dfm 1\nsize 64x64\nfps 8\nframes {frames}\nprompt 0 "x"\n{body}'


def card_u8(w: int = 64, h: int = 64) -> np.ndarray:
    return (motion_card(w, h) * 255).round().astype(np.uint8)


def test_translation_moves_the_card_by_whole_pixels_per_frame():
    frames = list(preview_frames(compile_text(scene("translation_x 4\nborder wrap\n"))))
    assert len(frames) == 4
    marks = overlay(np.zeros((64, 64, 3), np.uint8)).any(axis=2)  # the fixed reference lines
    for k, frame in enumerate(frames):
        expected = overlay(np.roll(card_u8(), 4 * k, axis=1))
        assert np.abs(frame[~marks].astype(int) - expected[~marks]).max() <= 1, k
        assert (frame[marks] == 255).all()


def test_motion_accumulates_exactly_one_full_turn():
    frames = list(preview_frames(compile_text(scene("angle 90\n", frames=5))))
    assert np.abs(frames[4].astype(int) - frames[0]).mean() < 2  # four quarter turns
    assert np.abs(frames[1].astype(int) - frames[0]).mean() > 20


# The preview warps with OpenCV on the host, the renderer with grid_sample on the device: the same matrices
# and camera (runtime/camera.py), interpolation that rounds differently. Outside the fixed overlay every
# pixel agrees within one grey level.

FLIP = "perspective_flip on\nperspective_flip_theta 0:(3)\nperspective_flip_phi 0:(5)\nperspective_flip_gamma 0:(2)\n"


def render_u8(frame) -> np.ndarray:
    import torch

    return (frame[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def card_tensor(w: int = 64, h: int = 64):
    import torch

    return torch.from_numpy(motion_card(w, h)).permute(2, 0, 1)[None]


def assert_close_to(frame: np.ndarray, expected: np.ndarray) -> None:
    marks = overlay(np.zeros_like(expected)).any(axis=2)
    diff = np.abs(frame.astype(int) - expected)[~marks]
    assert diff.max() <= 1 and diff.mean() < 0.2, (diff.max(), diff.mean())


@pytest.mark.parametrize("border", ["replicate", "wrap", "reflect", "zeros"])
@pytest.mark.parametrize("flip", [False, True])
def test_2d_preview_frames_match_the_renderers_warp(border, flip):
    from dfm.runtime.warp import matrix_2d, warp_2d, warp_matrix

    body = f"border {border}\nzoom 1.03\nangle 4\ntranslation_x 3\ntranslation_y -2\n" + (FLIP if flip else "")
    table = compile_text(scene(body, frames=6))
    frames = list(preview_frames(table))
    card = card_tensor()
    # frame 1: one step of the renderer's warp_2d on the card
    assert_close_to(frames[1], overlay(render_u8(warp_2d(card, table.row(1), border=border, flip=flip))))
    # frame 5: the card through the five composed steps (the preview warps the card once, not frame on frame)
    total = np.eye(3)
    for i in range(1, 6):
        total = matrix_2d(table.row(i), 64, 64, flip) @ total
    assert_close_to(frames[5], overlay(render_u8(warp_matrix(card, total, border))))
    assert np.abs(frames[5].astype(int) - frames[0]).mean() > 5  # it moved


@pytest.mark.parametrize("padding", ["border", "reflection", "zeros"])
@pytest.mark.parametrize("sampling", ["bicubic", "bilinear", "nearest"])
def test_3d_camera_moves_a_flat_card_with_the_renderers_warp(padding, sampling):
    from dfm.runtime.warp import warp_3d

    body = f"mode 3d\npadding_mode {padding}\nsampling_mode {sampling}\ntranslation_z -20\nrotation_3d_z 3\n" \
        "rotation_3d_y 2\ntranslation_x 4\n"
    table = compile_text(scene(body, frames=4))
    frames = list(preview_frames(table))
    card = card_tensor()
    for i in (1, 2, 3):  # frame after frame, as the renderer warps the previous frame
        card = warp_3d(card, None, table.row(i), padding_mode=padding, sampling_mode=sampling)
    assert_close_to(frames[3], overlay(render_u8(card)))
    assert np.abs(frames[3].astype(int) - frames[0]).mean() > 5


def test_the_host_offsets_are_the_renderers():
    import torch

    from dfm.runtime.camera import screen_offsets
    from dfm.runtime.warp import camera_3d, offsets_3d

    ys = np.linspace(2.5, 0.8, 48)[:, None] * np.ones((1, 64))
    ys[16:32, 24:40] = 0.9
    ys[0, :8] = 0.005  # below DEPTH_MIN: clamped alike
    rows = [
        {"translation_x": 3.0, "translation_y": -2.0, "translation_z": 7.0, "rotation_3d_x": 1.5,
         "rotation_3d_y": -2.0, "rotation_3d_z": 4.0, "fov": 60.0},
        {"translation_x": 0.0, "translation_y": 0.0, "translation_z": 190.0, "rotation_3d_x": 0.0,
         "rotation_3d_y": 0.0, "rotation_3d_z": 0.0, "fov": 40.0},  # flies past the near box: points behind
    ]
    for row in rows:
        r, t = camera_3d(row)
        want = offsets_3d(torch.from_numpy(ys.astype(np.float32)), r, t, row["fov"]).numpy()
        got = screen_offsets(ys, r, t, row["fov"])
        assert got.shape == want.shape == (48, 64, 2)
        behind = want[..., 0] > 1e5
        assert (behind == (got[..., 0] > 1e5)).all()
        assert np.abs(got[~behind] - want[~behind]).max() < 1e-4 * max(1.0, np.abs(want[~behind]).max())
    assert behind.any()


def test_modes_without_a_camera_show_the_card_still():
    frames = list(preview_frames(compile_text(scene("mode video\n"))))
    assert all((f == frames[0]).all() for f in frames)


def test_cli_writes_a_video_with_every_frame(tmp_path):
    src = tmp_path / "s.dfm"
    src.write_text(scene("zoom 1.05\n", frames=6))
    out = tmp_path / "p.mp4"
    assert main(["preview", str(src), "-o", str(out), "--quiet"]) == 0
    n, seconds = imageio_ffmpeg.count_frames_and_secs(str(out))
    assert n == 6 and abs(seconds - 6 / 8) < 0.01
    assert not list(tmp_path.glob(".*tmp*"))


def test_cli_writes_the_strip_beside_the_video(tmp_path):
    """Six evenly spaced frames side by side, 160 px each: the preview seen without a video player."""
    import cv2

    from dfm.runtime.preview import STRIP_FRAMES, STRIP_WIDTH

    src = tmp_path / "s.dfm"
    src.write_text(scene("translation_x 4\n", frames=11))
    assert main(["preview", str(src), "-o", str(tmp_path / "p.mp4"), "--quiet"]) == 0
    strip = cv2.cvtColor(cv2.imread(str(tmp_path / "p_strip.png")), cv2.COLOR_BGR2RGB)
    assert strip.shape == (STRIP_WIDTH, STRIP_FRAMES * STRIP_WIDTH, 3)  # 64x64 frames scaled to 160x160
    frames = list(preview_frames(compile_text(scene("translation_x 4\n", frames=11))))
    for k, i in enumerate((0, 2, 4, 6, 8, 10)):
        tile = cv2.resize(frames[i], (STRIP_WIDTH, STRIP_WIDTH), interpolation=cv2.INTER_AREA)
        assert (strip[:, k * STRIP_WIDTH:(k + 1) * STRIP_WIDTH] == tile).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.mp4", "p_strip.png", "s.dfm"]


def test_the_progress_bar_says_preview(tmp_path, capsys):
    from dfm.app.console import progress_bar

    src = tmp_path / "s.dfm"
    src.write_text(scene("zoom 1.05\n"))
    assert main(["preview", str(src), "-o", str(tmp_path / "p.mp4")]) == 0
    err = capsys.readouterr().err
    assert "preview: 100%" in err and "render" not in err
    bar = progress_bar()  # the render's bar keeps its name
    bar(1, 2)
    assert bar.bar.desc == "render"
    bar.close()
