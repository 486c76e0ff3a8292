"""`dfm upscale` and runtime/upscale.py with tiny random ESRGAN models built offline from spandrel's own
architecture class (no weights are downloaded): the factor read from the file, tiling that agrees with
whole frames, the pickle opt-in, clear errors, image / folder / video / render inputs, no overwriting,
resume, --scale."""

from __future__ import annotations

import argparse
import json
import wave
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("spandrel")

from dfm.app.commands import upscale as command  # noqa: E402
from dfm.app.dispatch import run_command  # noqa: E402
from dfm.runtime import clips, upscale  # noqa: E402
from dfm.runtime.errors import RenderError  # noqa: E402
from dfm.runtime.output import encode_png, read_png  # noqa: E402


def tiny_esrgan_state(scale: int, seed: int = 0) -> dict:
    """A random ESRGAN (RRDBNet, 8 filters, 1 block) state dict in the old-arch key layout spandrel detects;
    the last bias is raised to mid-grey so outputs span the range instead of clipping at black."""
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(seed)
    state = {k: v.contiguous() for k, v in ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1,
                                                   scale=scale).state_dict().items()}
    last_bias = [k for k in state if k.endswith(".bias")][-1]
    state[last_bias] = state[last_bias] + 0.5
    return state


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from safetensors.torch import save_file

    torch.set_num_threads(1)  # tiny tensors gain nothing from threads on 2 busy cores
    folder = tmp_path_factory.mktemp("upscalers")
    paths = {}
    for scale in (2, 4):
        paths[scale] = folder / f"esrgan{scale}x.safetensors"
        save_file(tiny_esrgan_state(scale), paths[scale])
    paths["pth"] = folder / "esrgan2x.pth"
    torch.save(tiny_esrgan_state(2), paths["pth"])
    paths["unknown"] = folder / "not_an_upscaler.safetensors"  # valid safetensors, no known architecture
    save_file({"encoder.weight": torch.zeros(4, 4), "decoder.bias": torch.zeros(4)}, paths["unknown"])
    paths["garbage"] = folder / "garbage.safetensors"
    paths["garbage"].write_bytes(b"\x00\x01 this is not a weights file " * 10)
    paths["text"] = folder / "notes.txt"
    paths["text"].write_text("hello")
    return paths


@pytest.fixture(scope="module")
def model2(models):
    return upscale.load_upscaler(models[2], device="cpu")


def dfm_upscale(*argv: str) -> int:
    """`dfm upscale ARGV…` through the same parser and error handling as the command line."""
    ap = argparse.ArgumentParser(prog="dfm")
    sub = ap.add_subparsers(dest="command")
    command.add_parser(sub)
    return run_command(ap.parse_args(["upscale", *map(str, argv), "--quiet", "--device", "cpu"]))


def noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A frame with structure (a gradient) and detail (noise), so any seam or offset shows."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, w, dtype=np.float32)[None, :, None]
    return np.clip(ramp + rng.integers(0, 56, (h, w, 3)), 0, 255).astype(np.uint8)


def save_png(path, frame):
    path.write_bytes(encode_png(frame))
    return path


def write_wav(path, seconds: float, rate: int = 16000):
    t = np.arange(int(seconds * rate)) / rate
    samples = (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


# ---- the model and one frame ---------------------------------------------------------------------------------


def test_the_model_and_its_factor_are_read_from_the_file(models, model2):
    assert model2.scale == 2 and model2.descriptor.architecture.id == "ESRGAN"
    assert not model2.descriptor.model.training  # eval mode
    assert model2.device.type == "cpu" and model2.dtype == torch.float32
    assert upscale.load_upscaler(models[4], device="cpu").scale == 4


def test_a_2x_model_doubles_the_size(model2):
    out = upscale.upscale_frame(model2, noise(30, 40), tile=None)
    assert out.shape == (60, 80, 3) and out.dtype == np.uint8
    assert out.std() > 5  # a real picture, not a constant


def test_a_grey_model_gives_grey_rgb(tmp_path):
    from safetensors.torch import save_file
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    state = {k: v.contiguous() for k, v in ESRGAN(in_nc=1, out_nc=1, num_filters=8, num_blocks=1,
                                                   scale=2).state_dict().items()}
    save_file(state, tmp_path / "grey.safetensors")
    grey = upscale.load_upscaler(tmp_path / "grey.safetensors", device="cpu")
    out = upscale.upscale_frame(grey, noise(20, 24), tile=None)
    assert out.shape == (40, 48, 3)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])


@pytest.mark.parametrize("tile,overlap", [(32, 32), (48, 24), (40, 40)])
def test_tiled_and_untiled_agree_within_one_step(model2, tile, overlap):
    frame = noise(90, 130, seed=1)
    whole = upscale.upscale_frame(model2, frame, tile=None)
    tiled = upscale.upscale_frame(model2, frame, tile=tile, overlap=overlap)
    assert tiled.shape == whole.shape
    assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1


def test_without_overlap_the_tiles_show(model2):
    """The test above is not vacuous: context matters to the model, and the overlap supplies it."""
    frame = noise(90, 130, seed=1)
    whole = upscale.upscale_frame(model2, frame, tile=None)
    seamed = upscale.upscale_frame(model2, frame, tile=32, overlap=0)
    assert np.abs(seamed.astype(int) - whole.astype(int)).max() > 1


def test_tile_spans_cover_the_frame_in_near_equal_parts():
    assert upscale.tile_spans(100, 512) == [(0, 100)]
    spans = upscale.tile_spans(1030, 512)
    assert spans[0][0] == 0 and spans[-1][1] == 1030 and len(spans) == 3
    assert all(a[1] == b[0] for a, b in pairwise(spans))
    assert max(e - s for s, e in spans) - min(e - s for s, e in spans) <= 1


def test_the_tile_option():
    assert upscale.tile_size(None) == upscale.DEFAULT_TILE  # not given: tiled, bounded memory
    assert upscale.tile_size(0) is None  # whole frames
    assert upscale.tile_size(100) == 100
    with pytest.raises(RenderError, match="too small"):
        upscale.tile_size(8)


def test_scale_resizes_the_models_output(model2):
    frame = noise(30, 40)
    assert upscale.upscale_frame(model2, frame, tile=None, scale=3).shape == (90, 120, 3)
    assert upscale.upscale_frame(model2, frame, tile=None, scale=1.5).shape == (45, 60, 3)
    native = upscale.upscale_frame(model2, frame, tile=None)
    assert np.array_equal(upscale.upscale_frame(model2, frame, tile=None, scale=2), native)


@pytest.mark.parametrize("scale", [0, -1, 17, float("nan")])
def test_a_scale_out_of_range_is_refused(model2, scale):
    with pytest.raises(RenderError, match="--scale"):
        upscale.upscale_frame(model2, noise(30, 40), tile=None, scale=scale)


def test_an_output_beyond_the_size_bound_is_refused_before_any_work(model2):
    with pytest.raises(RenderError, match="more than 16384"):
        upscale.check_sizes(5000, 5000, 4, None)
    with pytest.raises(RenderError, match="larger than dfm upscales"):
        upscale.check_sizes(9000, 100, 2, None)


# ---- loading: pickles, files that are not models ---------------------------------------------------------------


def test_a_pickle_is_refused_without_allow_pickle_and_read_with_it(models, tmp_path, capsys):
    src = save_png(tmp_path / "in.png", noise(24, 32))
    assert dfm_upscale(src, "--model", models["pth"], "-o", tmp_path / "a.png") == 1
    err = capsys.readouterr().err
    assert "pickle" in err and "--allow-pickle" in err and "esrgan2x.pth" in err
    assert not (tmp_path / "a.png").exists()

    assert dfm_upscale(src, "--model", models["pth"], "--allow-pickle", "-o", tmp_path / "a.png") == 0
    assert dfm_upscale(src, "--model", models[2], "-o", tmp_path / "b.png") == 0
    # the same weights either way
    assert np.array_equal(read_png(tmp_path / "a.png"), read_png(tmp_path / "b.png"))


@pytest.mark.parametrize("which,words", [
    ("unknown", "no model architecture spandrel recognises"),
    ("garbage", "could not be read as a model file"),
    ("text", "is not an upscaler model file"),
])
def test_a_file_that_is_not_a_model_is_a_clear_error(models, tmp_path, capsys, which, words):
    src = save_png(tmp_path / "in.png", noise(24, 32))
    assert dfm_upscale(src, "--model", models[which], "-o", tmp_path / "out.png") == 1
    err = capsys.readouterr().err
    assert words in err and models[which].name in err and "help:" in err
    assert "Traceback" not in err and "internal error" not in err
    assert not (tmp_path / "out.png").exists()


def test_a_missing_model_is_a_clear_error(tmp_path, capsys):
    src = save_png(tmp_path / "in.png", noise(24, 32))
    assert dfm_upscale(src, "--model", tmp_path / "nope.safetensors") == 1
    assert "does not exist" in capsys.readouterr().err


# ---- inputs and outputs --------------------------------------------------------------------------------------


def test_an_image_gives_an_image_beside_it(models, model2, tmp_path):
    frame = noise(30, 40)
    src = save_png(tmp_path / "still.png", frame)
    assert dfm_upscale(src, "--model", models[2]) == 0
    out = read_png(tmp_path / "still_upscaled.png")
    assert np.array_equal(out, upscale.upscale_frame(model2, frame, tile=None))


def test_the_cli_tiled_and_whole_outputs_agree(models, tmp_path):
    src = save_png(tmp_path / "in.png", noise(100, 70, seed=3))
    assert dfm_upscale(src, "--model", models[4], "--tile", 32, "-o", tmp_path / "tiled.png") == 0
    assert dfm_upscale(src, "--model", models[4], "--tile", 0, "-o", tmp_path / "whole.png") == 0
    tiled, whole = read_png(tmp_path / "tiled.png"), read_png(tmp_path / "whole.png")
    assert tiled.shape == (400, 280, 3)
    assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1


def test_cli_scale_option(models, tmp_path):
    src = save_png(tmp_path / "in.png", noise(20, 30))
    assert dfm_upscale(src, "--model", models[4], "--scale", 3, "-o", tmp_path / "x3.png") == 0
    assert read_png(tmp_path / "x3.png").shape == (60, 90, 3)
    assert dfm_upscale(src, "--model", models[4], "--scale", 0, "-o", tmp_path / "x0.png") == 1


def test_a_folder_gives_a_folder_of_pngs_with_the_same_names(models, model2, tmp_path):
    frames = [noise(24, 32, seed=i) for i in range(3)]
    src = tmp_path / "shots"
    src.mkdir()
    for i, f in enumerate(frames):
        save_png(src / f"shot{i + 1}.png", f)
    assert dfm_upscale(src, "--model", models[2]) == 0
    out = tmp_path / "shots_upscaled"
    assert sorted(p.name for p in out.iterdir()) == ["shot1.png", "shot2.png", "shot3.png"]
    for i, f in enumerate(frames):
        assert np.array_equal(read_png(out / f"shot{i + 1}.png"), upscale.upscale_frame(model2, f, tile=None))
    assert not upscale.work_folder(out).exists()  # the work folder became the output


def test_a_video_gives_an_mp4_with_its_soundtrack(models, tmp_path):
    frames = [noise(32, 48, seed=i) for i in range(6)]
    src = tmp_path / "clip.mp4"
    clips.write_video(src, frames, 12.0, audio=write_wav(tmp_path / "tone.wav", 1.0))
    assert clips.has_audio(src)
    assert dfm_upscale(src, "--model", models[2]) == 0
    out = clips.open_clip(tmp_path / "clip_upscaled.mp4")
    assert (out.width, out.height, out.count, out.fps) == (96, 64, 6, 12.0)
    assert out.audio is not None  # the soundtrack came along
    assert not upscale.work_folder(tmp_path / "clip_upscaled.mp4").exists()


def test_a_folder_can_become_a_video_at_a_given_rate(models, tmp_path):
    src = tmp_path / "shots"
    src.mkdir()
    for i in range(3):
        save_png(src / f"{i}.png", noise(24, 32, seed=i))
    assert dfm_upscale(src, "--model", models[2], "--fps", 10, "-o", tmp_path / "shots.mp4") == 0
    out = clips.open_clip(tmp_path / "shots.mp4")
    assert (out.width, out.height, out.count, out.fps, out.audio) == (64, 48, 3, 10.0, None)


def test_a_render_folder_gives_video_upscaled_mp4_beside_its_video(models, tmp_path):
    render = tmp_path / "render"
    (render / "frames").mkdir(parents=True)
    frames = [noise(32, 32, seed=i) for i in range(4)]
    for i, f in enumerate(frames):
        save_png(render / "frames" / f"{i:05d}.png", f)
    (render / "manifest.json").write_text(json.dumps({"dfm_manifest": 1, "frames": 4, "fps": 8}))
    before = {p.name: p.read_bytes() for p in (render / "frames").iterdir()}

    path = command.finish_upscale(render, models[2], None, None, False, device="cpu")
    assert path == render / "video_upscaled.mp4" == render / command.UPSCALED_VIDEO
    out = clips.open_clip(path)
    assert (out.width, out.height, out.count, out.fps) == (64, 64, 4, 8.0)
    assert {p.name: p.read_bytes() for p in (render / "frames").iterdir()} == before  # frames/ untouched
    # the render's own file: a newer finishing run replaces it (with --scale this time)
    command.finish_upscale(render, models[2], 1.5, 64, False, device="cpu")
    assert clips.open_clip(path).width == 48


def test_the_command_and_the_runtime_agree_on_names():
    assert command.UPSCALED_VIDEO == upscale.UPSCALED_VIDEO
    assert command.IMAGE_SUFFIXES == upscale.IMAGE_SUFFIXES


# ---- never over a user's file ----------------------------------------------------------------------------------


def test_an_existing_output_is_refused_unless_force(models, tmp_path, capsys):
    src = save_png(tmp_path / "in.png", noise(24, 32))
    out = tmp_path / "out.png"
    out.write_bytes(b"mine")
    assert dfm_upscale(src, "--model", models[2], "-o", out) == 1
    assert "--force" in capsys.readouterr().err
    assert out.read_bytes() == b"mine"
    assert dfm_upscale(src, "--model", models[2], "-o", out, "--force") == 0
    assert read_png(out).shape == (48, 64, 3)


def test_the_input_is_never_the_output_even_with_force(models, tmp_path, capsys):
    src = save_png(tmp_path / "in.png", noise(24, 32))
    data = src.read_bytes()
    assert dfm_upscale(src, "--model", models[2], "-o", src, "--force") == 1
    assert "is the input" in capsys.readouterr().err
    assert src.read_bytes() == data


def test_an_existing_video_or_folder_output_is_refused(models, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    save_png(frames / "a.png", noise(24, 32))
    (tmp_path / "out.mp4").write_bytes(b"mine")
    (tmp_path / "outdir").mkdir()
    assert dfm_upscale(frames, "--model", models[2], "-o", tmp_path / "out.mp4") == 1
    assert dfm_upscale(frames, "--model", models[2], "-o", tmp_path / "outdir") == 1
    assert (tmp_path / "out.mp4").read_bytes() == b"mine" and not any((tmp_path / "outdir").iterdir())


def test_a_foreign_folder_where_the_work_folder_goes_is_refused(models, tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    save_png(frames / "a.png", noise(24, 32))
    foreign = upscale.work_folder(tmp_path / "out")
    foreign.mkdir()
    (foreign / "000000.png").write_bytes(b"someone else's")
    assert dfm_upscale(frames, "--model", models[2], "-o", tmp_path / "out") == 1
    assert "not a dfm upscale work folder" in capsys.readouterr().err
    assert (foreign / "000000.png").read_bytes() == b"someone else's"


# ---- resume --------------------------------------------------------------------------------------------------


class Stop(Exception):
    pass


def noise_frames(tmp_path: Path, n: int, name: str = "{}.png") -> tuple[Path, list[np.ndarray]]:
    """A folder `frames/` of `n` 32x24 noise PNGs (frame i named `name.format(i)`), and the frames."""
    src = tmp_path / "frames"
    src.mkdir()
    frames = [noise(24, 32, seed=i) for i in range(n)]
    for i, f in enumerate(frames):
        save_png(src / name.format(i), f)
    return src, frames


def stop_after(n: int):
    def progress(done: int, total: int) -> None:
        if done >= n and done < total:
            raise Stop

    return progress


def test_an_interrupted_run_continues_where_it_stopped(model2, tmp_path):
    src, frames = noise_frames(tmp_path, 5, "{:03d}.png")
    out = tmp_path / "big"
    with pytest.raises(Stop):
        upscale.upscale_clip(model2, clips.open_clip(src), out, tile=None, progress=stop_after(2))
    work = upscale.work_folder(out)
    assert not out.exists() and upscale.frames_done(work, 5) >= 2
    kept = {p.name: p.stat().st_mtime_ns for p in work.glob("0*.png")}

    seen = []
    done = upscale.upscale_clip(model2, clips.open_clip(src), out, tile=32, progress=lambda d, t: seen.append(d))
    assert done.resumed == len(kept) and done.frames == 5 and seen[0] == len(kept)
    for i, f in enumerate(frames):  # the same frames as an uninterrupted run
        assert np.abs(read_png(out / f"{i:03d}.png").astype(int)
                      - upscale.upscale_frame(model2, f, tile=None).astype(int)).max() <= 1


def test_another_job_in_the_work_folder_starts_over(model2, tmp_path):
    src, _ = noise_frames(tmp_path, 3)
    out = tmp_path / "big.mp4"
    with pytest.raises(Stop):
        upscale.upscale_clip(model2, clips.open_clip(src), out, tile=None, progress=stop_after(1))
    # another scale: the frames done are of another job and are redone
    done = upscale.upscale_clip(model2, clips.open_clip(src), out, tile=None, scale=1.5)
    assert done.resumed == 0 and clips.open_clip(out).width == 48


def test_a_frame_cut_short_in_the_work_folder_is_redone(model2, tmp_path):
    src, frames = noise_frames(tmp_path, 4)
    out = tmp_path / "big"
    with pytest.raises(Stop):
        upscale.upscale_clip(model2, clips.open_clip(src), out, tile=None, progress=stop_after(3))
    work = upscale.work_folder(out)
    assert upscale.frames_done(work, 4) >= 3
    cut = upscale.work_frame(work, 1)
    cut.write_bytes(cut.read_bytes()[:50])  # a disk that lied: the PNG has no end
    assert upscale.frames_done(work, 4) == 1
    done = upscale.upscale_clip(model2, clips.open_clip(src), out, tile=None)
    assert done.resumed == 1
    assert np.array_equal(read_png(out / "1.png"), upscale.upscale_frame(model2, frames[1], tile=None))
