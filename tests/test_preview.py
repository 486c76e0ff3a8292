"""`dfm preview`: the motion schedules over a test card, no model."""

import imageio_ffmpeg
import numpy as np
from dfm.runtime.preview import motion_card, overlay, preview_frames

from dfm.api import compile_text
from dfm.cli import main


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


def test_3d_camera_moves_a_flat_card_with_the_renderers_warp():
    import torch
    from dfm.runtime.warp import warp_3d

    table = compile_text(scene("mode 3d\ntranslation_z 20\nrotation_3d_z 3\n", frames=3))
    frames = list(preview_frames(table))
    card = torch.from_numpy(motion_card(64, 64)).permute(2, 0, 1)[None]
    for i in (1, 2):
        card = warp_3d(card, None, table.row(i), padding_mode="border", sampling_mode="bicubic")
    expected = overlay((card[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())
    assert (frames[2] == expected).all()
    assert np.abs(frames[2].astype(int) - frames[0]).mean() > 5


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
