"""`dfm interpolate` and the clips it reads and writes (issue 24): frame counts and rates, the flow engine's
measured quality on a moving disc, the soundtrack in sync, RIFE and FILM through their real loaders with tiny
random weights, inputs of each kind, never writing over a file, and resuming to the same bytes."""

from __future__ import annotations

import argparse
import json
import wave
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dfm.app.commands import interpolate as command
from dfm.app.dispatch import run_command
from dfm.runtime import clips
from dfm.runtime import interpolate as ip
from dfm.runtime.errors import RenderError

SIZE = 96
RADIUS = 8


def disc_frame(x: float) -> np.ndarray:
    """A bright antialiased disc of RADIUS px centred at (x, SIZE/2) on a smooth textured background."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    bg = 110 + 40 * np.sin(xx / 7.0) * np.cos(yy / 9.0)
    image = np.stack([bg, bg * 0.8 + 20, 200 - bg * 0.5], -1)
    cover = np.clip(RADIUS + 0.5 - np.hypot(xx - x, yy - SIZE / 2), 0, 1)[..., None]
    disc = np.array([240, 235, 220], np.float32)
    return np.clip(image * (1 - cover) + disc * cover, 0, 255).round().astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / max(mse, 1e-10))


def write_pngs(folder: Path, frames: list[np.ndarray], name: str = "f{i}.png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / name.format(i=i)), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder


def sine_wav(path: Path, seconds: float, rate: int = 44100) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes((np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16).tobytes())
    return path


def decode(path: Path) -> tuple[list[np.ndarray], float]:
    clip = clips.open_clip(path)
    return list(clip.frames()), clip.fps


def cli(*argv: str) -> int:
    """`dfm interpolate ARGV` through the real parser and error printing (app/cli.py registers it the same way)."""
    parser = argparse.ArgumentParser(prog="dfm")
    sub = parser.add_subparsers(dest="command")
    command.add_parser(sub)
    return run_command(parser.parse_args(["interpolate", *argv, "--quiet"]))


def lerp_engine() -> ip.Engine:
    """A cheap stand-in engine: the cross-fade, exact to test the bookkeeping around engines."""
    return ip.Engine("lerp", torch.device("cpu"), "lerp",
                     lambda a, b, ts: torch.lerp(a[:, None], b[:, None], ts.view(1, -1, 1, 1, 1)))


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


# ---- counts ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("times", [2, 3, 5])
@pytest.mark.parametrize("batch", [1, 4, 8])
def test_the_frame_count_is_deforums_and_a_skip_is_the_tail(times, batch):
    frames = [np.full((16, 16, 3), 10 * i, np.uint8) for i in range(7)]
    full = list(ip.interpolate(frames, times, lerp_engine(), batch=batch))
    assert len(full) == ip.output_count(7, times) == 6 * times + 1
    assert all((full[i * times] == frames[i]).all() for i in range(7))  # the input frames stay, in place
    for skip in (0, 1, times, times + 1, len(full) - 1, len(full)):
        tail = list(ip.interpolate(frames, times, lerp_engine(), skip=skip, batch=batch))
        assert len(tail) == len(full) - skip and all((a == b).all() for a, b in zip(tail, full[skip:], strict=True))


def test_output_rates():
    assert ip.output_fps(12, 2, slow_mo=False) == 24 and ip.output_fps(12, 2, slow_mo=True) == 12
    with pytest.raises(RenderError):
        ip.check_times(1)
    with pytest.raises(RenderError):
        ip.check_times(17)


def test_the_command_names_the_runtimes_engines():
    assert command.ENGINES == ip.ENGINES


# ---- (1) the flow engine moves a moving disc ----------------------------------------------------------------


def test_flow_moves_a_disc_better_than_a_cross_fade_by_3_db(tmp_path):
    inputs = [disc_frame(20 + 4 * i) for i in range(12)]  # 4 px per frame
    folder = write_pngs(tmp_path / "disc", inputs)
    out = tmp_path / "disc_x2.mp4"
    assert cli(str(folder), "--fps", "12", "--times", "2", "--engine", "flow", "-o", str(out)) == 0
    frames, fps = decode(out)
    assert len(frames) == 23 and fps == 24
    gains = []
    for i in range(11):
        truth = disc_frame(22 + 4 * i)
        fade = ((inputs[i].astype(np.float32) + inputs[i + 1]) / 2).round().astype(np.uint8)
        gains.append(psnr(frames[2 * i + 1], truth) - psnr(fade, truth))
    assert min(gains) >= 3.0, np.round(gains, 2)  # measured on the H.264 output: ~6 dB (its noise bounds it)
    assert not ip.work_dir(out).exists()  # the frames in progress are gone once the video is written
    engine = list(ip.interpolate(inputs, 2, ip.load_engine("flow", device="cpu")))  # before encoding: ~20 dB
    assert min(psnr(engine[2 * i + 1], disc_frame(22 + 4 * i)) - psnr(((inputs[i].astype(np.float32) + inputs[i + 1])
               / 2).round().astype(np.uint8), disc_frame(22 + 4 * i)) for i in range(11)) >= 15.0


def test_flow_inbetween_of_identical_frames_is_the_frame():
    frame = disc_frame(40)
    out = list(ip.interpolate([frame, frame], 4, ip.load_engine("flow", device="cpu")))
    assert len(out) == 5 and all(np.abs(o.astype(int) - frame).max() <= 1 for o in out)


# ---- (2) the soundtrack stays in sync ------------------------------------------------------------------------


def test_the_soundtrack_and_the_video_agree_within_a_frame(tmp_path):
    video = tmp_path / "clip.mp4"
    clips.write_video(video, [disc_frame(20 + 4 * i) for i in range(12)], 12, audio=sine_wav(tmp_path / "s.wav", 3))
    assert clips.open_clip(video).audio == video
    out = tmp_path / "clip_x2.mp4"
    assert cli(str(video), "--times", "2") == 0  # the default name: beside the video
    seconds, audio = clips.video_duration(out)
    assert abs(seconds - 23 / 24) < 1 / 24 + 1e-6
    assert audio is not None and abs(audio - seconds) <= 1 / 24


def test_slow_motion_keeps_the_fps_and_drops_the_soundtrack(tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    clips.write_video(video, [disc_frame(20 + 4 * i) for i in range(12)], 12, audio=sine_wav(tmp_path / "s.wav", 3))
    out = tmp_path / "slow.mp4"
    assert cli(str(video), "--times", "2", "--slow-mo", "-o", str(out)) == 0
    frames, fps = decode(out)
    assert len(frames) == 23 and fps == 12
    assert clips.video_duration(out)[1] is None and not clips.has_audio(out)
    assert "soundtrack" in capsys.readouterr().err


# ---- inputs --------------------------------------------------------------------------------------------------


def test_a_folder_of_frames_in_natural_order_at_its_fps(tmp_path):
    inputs = [disc_frame(20 + 4 * i) for i in range(11)]
    folder = write_pngs(tmp_path / "frames", inputs, "frame{i}.png")  # frame10 after frame9, not after frame1
    (folder / "notes.txt").write_text("not a frame")
    clip = clips.open_clip(folder)
    assert (clip.kind, clip.count, clip.fps, clip.audio) == ("folder", 11, clips.DEFAULT_FOLDER_FPS, None)
    assert [p.name for p in clip.files][-2:] == ["frame9.png", "frame10.png"]
    assert all((a == b).all() for a, b in zip(clip.frames(), inputs, strict=True))
    assert cli(str(folder), "--times", "3", "--fps", "10", "--engine", "flow") == 0
    frames, fps = decode(tmp_path / "frames_x3.mp4")
    assert len(frames) == 31 and fps == 30


def fake_render(root: Path, count: int = 6, fps: float = 10, audio: Path | None = None) -> Path:
    frames = [disc_frame(20 + 4 * i) for i in range(count)]
    write_pngs(root / "frames", frames, "{i:05d}.png")
    clips.write_video(root / "video.mp4", frames, fps, audio=audio)
    (root / "manifest.json").write_text(json.dumps({"dfm_manifest": 1, "frames": count, "fps": fps,
                                                    "video": "video.mp4"}))
    return root


def test_a_render_folder_with_its_soundtrack_and_the_finishing_step(tmp_path):
    render = fake_render(tmp_path / "render", audio=sine_wav(tmp_path / "s.wav", 2))
    before = {p.name: p.read_bytes() for p in (render / "frames").iterdir()}
    clip = clips.open_clip(render)
    assert (clip.kind, clip.count, clip.fps, clip.audio) == ("render", 6, 10, render / "video.mp4")
    path = command.finish_interpolation(render, 2, "flow", None, False)
    assert path == render / "video_x2.mp4"
    frames, fps = decode(path)
    assert len(frames) == 11 and fps == 20 and clips.has_audio(path)
    assert {p.name: p.read_bytes() for p in (render / "frames").iterdir()} == before  # frames/ is never changed
    assert command.finish_interpolation(render, 2, "flow", None, False) == path  # a rerun replaces its own file
    assert command.finish_interpolation(render, 3, "flow", None, True) == render / "video_x3_slowmo.mp4"


def test_an_unfinished_render_or_a_missing_input_is_a_clear_error(tmp_path, capsys):
    render = fake_render(tmp_path / "render")
    (render / "manifest.json").unlink()
    assert cli(str(render), "--times", "2") == 1
    assert "unfinished" in capsys.readouterr().err
    assert cli(str(tmp_path / "nothing.mp4"), "--times", "2") == 1
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli(str(tmp_path / "empty"), "--times", "2") == 1
    assert "no PNG or JPG" in capsys.readouterr().err


# ---- never over a file ----------------------------------------------------------------------------------------


def test_an_existing_output_is_refused_unless_forced(tmp_path, capsys):
    folder = write_pngs(tmp_path / "frames", [disc_frame(20 + 4 * i) for i in range(4)])
    out = tmp_path / "mine.mp4"
    out.write_bytes(b"the user's video")
    assert cli(str(folder), "--times", "2", "-o", str(out)) == 1
    assert "--force" in capsys.readouterr().err and out.read_bytes() == b"the user's video"
    assert cli(str(folder), "--times", "2", "-o", str(out), "--force") == 0
    assert len(decode(out)[0]) == 7


def test_the_output_is_never_the_input(tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    clips.write_video(video, [disc_frame(20 + 4 * i) for i in range(4)], 12)
    before = video.read_bytes()
    assert cli(str(video), "--times", "2", "-o", str(video), "--force") == 1
    assert "is the input" in capsys.readouterr().err and video.read_bytes() == before


def test_a_work_folder_that_is_not_dfms_is_left_alone(tmp_path):
    folder = write_pngs(tmp_path / "frames", [disc_frame(20 + 4 * i) for i in range(4)])
    out = tmp_path / "out.mp4"
    ip.work_dir(out).mkdir()
    (ip.work_dir(out) / "holiday.png").write_bytes(b"x")
    assert cli(str(folder), "--times", "2", "-o", str(out)) == 1
    assert (ip.work_dir(out) / "holiday.png").read_bytes() == b"x" and not out.exists()


# ---- resume ---------------------------------------------------------------------------------------------------


def test_a_resumed_run_gives_the_same_bytes(tmp_path):
    folder = write_pngs(tmp_path / "frames", [disc_frame(20 + 4 * i) for i in range(8)])
    clip = clips.open_clip(folder, fps=12)
    engine = ip.load_engine("flow", device="cpu")
    whole = ip.interpolate_clip(clip, tmp_path / "whole.mp4", times=3, engine=engine)
    assert whole.frames == 22 and whole.resumed_at == 0

    out = tmp_path / "resumed.mp4"

    def stop_at_9(done: int, total: int) -> None:
        if done == 9:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ip.interpolate_clip(clip, out, times=3, engine=engine, progress=stop_at_9)
    assert not out.exists() and len(list(ip.work_dir(out).glob("*.png"))) == 9
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".resumed")]  # no temporary video left
    seen = []
    again = ip.interpolate_clip(clip, out, times=3, engine=engine, progress=lambda d, t: seen.append(d))
    assert again.resumed_at == 9 and seen[0] == 9 and seen[-1] == 22
    assert out.read_bytes() == whole.path.read_bytes()
    assert not ip.work_dir(out).exists()


def test_other_settings_start_over(tmp_path):
    folder = write_pngs(tmp_path / "frames", [disc_frame(20 + 4 * i) for i in range(6)])
    clip = clips.open_clip(folder, fps=12)
    out = tmp_path / "out.mp4"

    def stop_at_4(done: int, total: int) -> None:
        if done == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ip.interpolate_clip(clip, out, times=2, engine=lerp_engine(), progress=stop_at_4)
    again = ip.interpolate_clip(clip, out, times=3, engine=lerp_engine())
    assert again.resumed_at == 0 and again.frames == 16 and len(decode(out)[0]) == 16


# ---- (4) RIFE and FILM through their loaders --------------------------------------------------------------------


def test_rife_v46_layout_and_a_run_with_random_weights(tmp_path):
    torch.manual_seed(0)
    state = ip.IFNet().state_dict()
    # the published v4.6 layout, by the names and shapes Practical-RIFE's flownet.pkl carries
    assert state["block0.conv0.0.0.weight"].shape == (96, 7, 3, 3)
    assert state["block1.conv0.0.0.weight"].shape == (64, 12, 3, 3)
    assert state["block3.convblock.7.beta"].shape == (1, 64, 1, 1)
    assert state["block0.lastconv.0.weight"].shape == (192, 24, 4, 4)
    assert sum(v.numel() for v in state.values()) == 5_306_256
    weights = tmp_path / "flownet.pkl"
    torch.save({f"module.{k}": v for k, v in state.items()}, weights)  # as saved from DataParallel
    folder = write_pngs(tmp_path / "frames", [disc_frame(20 + 4 * i) for i in range(3)])
    out = tmp_path / "rife.mp4"
    assert cli(str(folder), "--times", "3", "--engine", "rife", "--weights", str(weights), "--device", "cpu",
               "-o", str(out)) == 0
    frames, fps = decode(out)
    assert len(frames) == 7 and fps == 45 and frames[0].shape == (SIZE, SIZE, 3)


def test_rife_refuses_another_layout(tmp_path):
    weights = tmp_path / "flownet.pkl"
    torch.save({"block0.conv0.0.0.weight": torch.zeros(3, 3)}, weights)
    with pytest.raises(RenderError, match="not a RIFE v4.6 flownet"):
        ip.load_engine("rife", weights, "cpu")


class LerpFilm(torch.nn.Module):
    """FILM's interface: model(x0, x1, dt) with x (B, 3, H, W) in [0, 1] and dt (B, 1)."""

    def forward(self, x0: torch.Tensor, x1: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        return x0 + (x1 - x0) * dt.view(-1, 1, 1, 1)


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # FILM ships only as TorchScript
def test_film_through_torchscript(tmp_path):
    weights = tmp_path / "film_net_fp16.pt"
    torch.jit.save(torch.jit.script(LerpFilm()), str(weights))
    inputs = [disc_frame(20 + 4 * i) for i in range(3)]
    engine = ip.load_engine("film", weights, "cpu")
    out = list(ip.interpolate(inputs, 4, engine))
    assert len(out) == 9
    expected = (inputs[0] * 0.75 + inputs[1].astype(np.float64) * 0.25)
    assert np.abs(out[1] - expected).max() <= 1.0  # dt reached the model: t = 1/4
    assert cli(str(write_pngs(tmp_path / "frames", inputs)), "--times", "2", "--engine", "film", "--weights",
               str(weights), "-o", str(tmp_path / "film.mp4")) == 0
    assert len(decode(tmp_path / "film.mp4")[0]) == 5


@pytest.mark.parametrize(("engine", "file"), [("rife", "flownet.pkl"), ("film", "film_net_fp16.pt")])
def test_missing_weights_is_one_line_saying_what_and_where(tmp_path, capsys, engine, file):
    folder = write_pngs(tmp_path / "frames", [disc_frame(20 + 4 * i) for i in range(3)])
    where = tmp_path / "weights" / file
    assert cli(str(folder), "--times", "2", "--engine", engine, "--weights", str(where)) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and file in err and str(where) in err and "--engine flow" in err
    assert not (tmp_path / "frames_x2.mp4").exists()
    assert ip.default_weights(engine, tmp_path).name == file


def test_flow_takes_no_weights(tmp_path):
    with pytest.raises(RenderError, match="needs none"):
        ip.load_engine("flow", tmp_path / "x.pkl", "cpu")


def test_frames_past_the_flow_bound_are_measured_reduced(monkeypatch):
    monkeypatch.setattr(ip, "FLOW_MAX_SIDE", 64)
    a = np.zeros((100, 130, 3), np.uint8)
    a[40:60, 30:50] = 255
    forward, backward = ip.frame_flows(a, np.roll(a, 6, axis=1))
    assert forward.shape == backward.shape == (100, 130, 2)
    assert abs(forward[50, 40, 0] - 6) < 1 and abs(backward[50, 46, 0] + 6) < 1


def test_ctrl_c_says_how_to_go_on(tmp_path, capsys, monkeypatch):
    folder = write_pngs(tmp_path / "frames", [disc_frame(20 + 4 * i) for i in range(3)])

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "_interpolate", stopped)
    assert cli(str(folder), "--times", "2") == 130
    assert "run the same command again" in capsys.readouterr().err


def test_a_single_frame_is_its_own_interpolation():
    frame = disc_frame(40)
    out = list(ip.interpolate([frame], 3, lerp_engine()))
    assert len(out) == 1 == ip.output_count(1, 3) and (out[0] == frame).all()
