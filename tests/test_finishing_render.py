"""A scene that asks for finishing: `dfm render` writes the upscaled and the interpolated video beside
video.mp4, lists them in the manifest, and leaves frames/ and video.mp4 as they were."""

from __future__ import annotations

import json

import imageio_ffmpeg
from test_upscale import tiny_esrgan_state
from tiny_models import make_table

from dfm.runtime.render import render


def frames_of(path) -> tuple[int, float, tuple[int, int]]:
    count, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    meta = next(imageio_ffmpeg.read_frames(str(path)))
    return count, float(meta["fps"]), tuple(meta["size"])


def test_a_render_writes_the_finished_videos_beside_its_own(tiny_models, tmp_path):
    from safetensors.torch import save_file

    upscaler = tmp_path / "esrgan2x.safetensors"
    save_file(tiny_esrgan_state(2), upscaler)
    model = str(tiny_models["folder"])
    plain = make_table(5, mode="2d", model=model, strength=0.5, angle=2.0)
    render(plain, tmp_path / "plain", device="cpu")
    table = plain.with_settings(interpolate="flow", interpolate_times=2, upscale_model=str(upscaler))
    report = render(table, tmp_path / "out", device="cpu")
    out = tmp_path / "out"
    assert [p.name for p in report.finished] == ["video_upscaled.mp4", "video_x2.mp4"]
    count, fps, size = frames_of(out / "video_x2.mp4")
    assert count == (5 - 1) * 2 + 1 and abs(fps - 2 * float(table.settings.fps)) < 1e-6
    up_count, _, up_size = frames_of(out / "video_upscaled.mp4")
    assert up_count == 5 and up_size == (2 * table.settings.width, 2 * table.settings.height)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["finished"] == ["video_upscaled.mp4", "video_x2.mp4"]
    # the render itself is the one without finishing, byte for byte
    for i in range(5):
        assert (out / "frames" / f"{i:05d}.png").read_bytes() == (tmp_path / "plain" / "frames" / f"{i:05d}.png"
                                                                  ).read_bytes()
    assert not [p for p in out.iterdir() if p.name.endswith((".interpolating", ".upscaling"))]


def test_asking_for_interpolation_later_keeps_every_frame_and_adds_the_video(tiny_models, tmp_path):
    model = str(tiny_models["folder"])
    table = make_table(4, mode="2d", model=model, strength=0.5, angle=2.0)
    out = tmp_path / "out"
    render(table, out, device="cpu")
    frames = {p.name: p.read_bytes() for p in (out / "frames").iterdir()}
    report = render(table.with_settings(interpolate="flow", interpolate_times=3), out, device="cpu")
    assert report.kept_frames == 4 and [p.name for p in report.finished] == ["video_x3.mp4"]
    assert {p.name: p.read_bytes() for p in (out / "frames").iterdir()} == frames
    assert frames_of(out / "video_x3.mp4")[0] == (4 - 1) * 3 + 1


def test_a_users_file_of_a_finished_videos_name_is_never_replaced(tiny_models, tmp_path):
    """Finishing replaces only its own videos: a file of the user's named video_x2.mp4 in the render folder
    stops the render before anything changes; the video dfm wrote there is replaced by the next render, even
    after an interrupted one removed the manifest that listed it."""
    from render_outputs import Boom, snapshot, stop_at

    from dfm.runtime import RenderError

    model = str(tiny_models["folder"])
    table = make_table(3, mode="2d", model=model, strength=0.5, angle=2.0)
    out = tmp_path / "out"
    render(table, out, device="cpu")
    (out / "video_x2.mp4").write_bytes(b"the user's own cut")
    before = snapshot(out)
    asks = table.with_settings(interpolate="flow", interpolate_times=2)
    try:
        render(asks, out, device="cpu")
    except RenderError as e:
        assert "video_x2.mp4 was not written by dfm" in str(e) and "--out" in e.help
    else:
        raise AssertionError("the user's video_x2.mp4 would have been replaced")
    assert snapshot(out) == before
    (out / "video_x2.mp4").unlink()
    render(asks, out, device="cpu")  # dfm's own video_x2.mp4 now
    edited = asks.with_columns(angle=[2.0, 3.0, 4.0])
    try:
        render(edited, out, device="cpu", progress=stop_at(2))  # stopped: the manifest listing it is gone
    except Boom:
        pass
    assert not (out / "manifest.json").exists() and (out / "video_x2.mp4").exists()
    report = render(edited, out, device="cpu")
    assert [p.name for p in report.finished] == ["video_x2.mp4"]
