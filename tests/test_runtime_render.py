"""End-to-end renders on the CPU with the tiny model: output layout, video, determinism, seeds and
UNet calls as the table says, cadence blends, stills and interpolation modes, errors."""

import hashlib
import json

import cv2
import numpy as np
import pytest
import torch
from tiny_models import TINY_2D_SCENE as SCENE
from tiny_models import make_table, with_prompts

from dfm.api import compile_text
from dfm.runtime import RenderError, samplers
from dfm.runtime.render import render


def png(path):
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB).astype(np.int16)


class Counter:
    """Counts forward calls of one module class, per frame (frames are delimited by the progress callback)."""

    def __init__(self, cls_name):
        self.cls_name = cls_name
        self.current = 0
        self.per_frame = []

    def __enter__(self):
        def hook(module, args, out):
            if type(module).__name__ == self.cls_name:
                self.current += 1

        self.handle = torch.nn.modules.module.register_module_forward_hook(hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()

    def progress(self, done, total):
        self.per_frame.append(self.current)
        self.current = 0


@pytest.fixture(scope="module")
def scene_render(tiny_models, tmp_path_factory):
    """The 2D scene of 10 frames, cadence 3, compiled by dfm's compiler and rendered once."""
    table = compile_text(SCENE, "scene.dfm")
    out = tmp_path_factory.mktemp("render") / "out"
    seen = []
    with Counter("UNet2DConditionModel") as unet:

        def progress(done, total):
            seen.append((done, total))
            unet.progress(done, total)

        report = render(
            table,
            out,
            scene_text=SCENE,
            scene_path="scene.dfm",
            model=str(tiny_models["folder"]),
            device="cpu",
            progress=progress,
        )
    return table, out, report, seen, unet.per_frame


def test_scene_renders_every_frame_with_video_table_and_manifest(scene_render):
    table, out, report, seen, _ = scene_render
    frames = sorted(p.name for p in (out / "frames").iterdir())
    assert frames == [f"{i:05d}.png" for i in range(10)]
    assert report.frames == 10 and seen[-1] == (10, 10) and len(seen) == 10
    assert png(out / "frames" / "00000.png").shape == (64, 64, 3)
    assert (out / "table.csv").read_text() == table.to_csv()
    m = json.loads((out / "manifest.json").read_text())
    assert m["scene"]["sha256"] == hashlib.sha256(SCENE.encode()).hexdigest() and m["scene"]["text"] == SCENE
    assert m["frames"] == 10 and m["device"] == "cpu" and m["dtype"] == "float32"
    assert m["model"]["kind"] == "folder" and m["video"] == "video.mp4"
    assert {"torch", "diffusers", "transformers"} <= set(m["versions"])
    assert {"warp", "denoise", "decode", "encode", "write"} <= set(m["timings"])
    assert not list(out.glob(".*tmp*")) and not list((out / "frames").glob(".*"))  # no temp files left


def test_video_decodes_with_every_frame_at_the_scene_fps(scene_render):
    import imageio_ffmpeg

    _, out, report, _, _ = scene_render
    assert report.video == out / "video.mp4"
    reader = imageio_ffmpeg.read_frames(str(report.video))
    meta = next(reader)
    decoded = list(reader)
    assert len(decoded) == 10 and meta["size"] == (64, 64) and meta["fps"] == pytest.approx(12.0)

    # the tiny model paints pixel noise, which yuv420p's half-resolution chroma cannot carry: compare luma
    def luma(rgb):
        return cv2.cvtColor(rgb.astype(np.uint8), cv2.COLOR_RGB2GRAY).astype(np.int16)

    for i in (0, 9):
        got = np.frombuffer(decoded[i], np.uint8).reshape(64, 64, 3)
        assert np.abs(luma(got) - luma(png(out / "frames" / f"{i:05d}.png"))).mean() < 8


def test_unet_calls_follow_effective_steps_frame_by_frame(scene_render):
    table, _, report, _, per_frame = scene_render
    # euler: one (batched CFG) UNet call per step; tweens call nothing
    assert per_frame == [int(s) for s in table["effective_steps"]]
    assert report.unet_calls == int(table["effective_steps"].sum()) == 4 + 2 + 2 + 2


def test_text_encoder_runs_once_per_distinct_prompt(scene_render):
    _, _, report, _, _ = scene_render
    assert report.text_encoder_calls == 3  # "a cat", "a dog", "blurry"


def test_two_renders_are_byte_identical(scene_render, tiny_models, tmp_path):
    table, out, _, _, _ = scene_render
    render(table, tmp_path / "again", model=str(tiny_models["folder"]), device="cpu")
    for i in range(10):
        name = f"frames/{i:05d}.png"
        assert (out / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    assert (out / "video.mp4").read_bytes() == (tmp_path / "again" / "video.mp4").read_bytes()


def test_each_diffusion_uses_its_rows_seed(tiny_models, tmp_path, monkeypatch):
    seeds = []
    original = samplers.frame_generator

    def recording(seed, device):
        seeds.append(seed)
        return original(seed, device)

    monkeypatch.setattr(samplers, "frame_generator", recording)
    table = make_table(7, cadence=2, seed=100, model=str(tiny_models["folder"]), noise=0.05)
    table.columns["seed"][:] = [100, 100, 103, 103, 101, 101, 150]  # any seeds: the runtime must follow them
    render(table, tmp_path, device="cpu")
    latent_seeds = [s for s in seeds if s < 2**32]
    diffused = [int(s) for s, d in zip(table["seed"], table["diffused"], strict=True) if d]
    assert latent_seeds == diffused == [100, 103, 101, 150]
    assert [s - 2**32 for s in seeds if s >= 2**32] == [103, 101, 150]  # pixel noise of frames > 0


def test_changing_a_seed_changes_only_the_frames_that_show_it(tiny_models, tmp_path):
    a = make_table(4, model=str(tiny_models["folder"]), strength=0.3)
    b = make_table(4, model=str(tiny_models["folder"]), strength=0.3)
    b.columns["seed"][2] = 999
    render(a, tmp_path / "a", device="cpu")
    render(b, tmp_path / "b", device="cpu")
    same = [
        (tmp_path / "a" / f"frames/{i:05d}.png").read_bytes() == (tmp_path / "b" / f"frames/{i:05d}.png").read_bytes()
        for i in range(4)
    ]
    assert same == [True, True, False, False]


def test_strength_one_runs_zero_steps_and_keeps_the_frame(tiny_models, tmp_path):
    table = make_table(5, strength=1.0, model=str(tiny_models["folder"]), noise=0.3)
    assert list(table["effective_steps"]) == [4, 0, 0, 0, 0]
    with Counter("UNet2DConditionModel") as unet, Counter("AutoencoderKL") as vae:
        report = render(table, tmp_path, device="cpu", progress=lambda d, t: (unet.progress(d, t), vae.progress(d, t)))
    assert unet.per_frame == [4, 0, 0, 0, 0] and report.unet_calls == 4
    assert vae.per_frame[1:] == [0, 0, 0, 0]  # kept frames skip the VAE round trip, and the noise
    first = (tmp_path / "frames/00000.png").read_bytes()
    assert all((tmp_path / f"frames/{i:05d}.png").read_bytes() == first for i in range(1, 5))


def test_cadence_tweens_blend_the_two_diffusions(tiny_models, tmp_path):
    table = make_table(7, cadence=3, model=str(tiny_models["folder"]), strength=0.2, noise=0.0)  # no motion
    render(table, tmp_path, device="cpu")
    f = [png(tmp_path / f"frames/{i:05d}.png") for i in range(7)]
    d0, d3 = f[0], f[5]  # frame 5 shows D3 alone (tween 1); frames 1, 2 show D0 alone
    assert np.abs(f[1] - d0).max() <= 1 and np.abs(f[2] - d0).max() <= 1
    assert np.abs(f[3] - (2 / 3 * d0 + 1 / 3 * d3)).max() <= 1.5
    assert np.abs(f[4] - (1 / 3 * d0 + 2 / 3 * d3)).max() <= 1.5
    assert np.abs(d0 - d3).max() > 10  # the blend is not trivially between equal images


def test_stills_mode_renders_independent_images_without_video(tiny_models, tmp_path):
    table = make_table(3, mode="none", model=str(tiny_models["folder"]), seed=11)
    table = with_prompts(table, prompt=["a cat", "a dog", "a cat"])
    report = render(table, tmp_path, device="cpu")
    assert report.video is None and not (tmp_path / "video.mp4").exists()
    assert report.unet_calls == 3 * 4 and report.text_encoder_calls == 3  # 2 prompts + the empty negative
    imgs = [png(tmp_path / f"frames/{i:05d}.png") for i in range(3)]
    assert np.abs(imgs[0] - imgs[2]).max() > 0  # same prompt, another seed
    # independence: the last image alone (same seed, same prompt) is the same image
    alone = make_table(1, mode="none", model=str(tiny_models["folder"]), seed=13, prompt="a cat")
    render(alone, tmp_path / "alone", device="cpu")
    assert (tmp_path / "alone/frames/00000.png").read_bytes() == (tmp_path / "frames/00002.png").read_bytes()


def test_interpolation_mode_blends_embeddings_with_a_fixed_seed(tiny_models, tmp_path):
    table = make_table(3, mode="interpolation", model=str(tiny_models["folder"]), seed=4)
    table.columns["seed"][:] = 4
    table = with_prompts(table, prompt="a dog", prompt_from="a cat")
    table.columns["prompt_blend"][:] = [0.0, 0.5, 1.0]
    report = render(table, tmp_path, device="cpu")
    assert report.text_encoder_calls == 3  # cat, dog, "" (negative)
    imgs = [png(tmp_path / f"frames/{i:05d}.png") for i in range(3)]
    assert np.abs(imgs[0] - imgs[2]).max() > 0 and np.abs(imgs[0] - imgs[1]).max() > 0
    cat = make_table(1, mode="none", model=str(tiny_models["folder"]), seed=4, prompt="a cat")
    render(cat, tmp_path / "cat", device="cpu")  # blend 0 is exactly the source prompt
    assert (tmp_path / "cat/frames/00000.png").read_bytes() == (tmp_path / "frames/00000.png").read_bytes()


def test_init_image_starts_frame_zero(tiny_models, tmp_path):
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[:, :16] = (255, 0, 0)
    path = tmp_path / "init.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    table = make_table(2, init_image=str(path), strength=1.0, model=str(tiny_models["folder"]))
    assert list(table["effective_steps"]) == [0, 0]
    report = render(table, tmp_path / "out", device="cpu")
    assert report.unet_calls == 0
    frame0 = png(tmp_path / "out/frames/00000.png")
    assert frame0.shape == (64, 64, 3) and abs(frame0[10, 5, 0] - 255) <= 1 and frame0[10, 60, 0] <= 1


def test_progress_reports_and_warnings_for_long_prompts(tiny_models, tmp_path):
    table = make_table(1, mode="none", model=str(tiny_models["folder"]), prompt="cat " * 100)
    report = render(table, tmp_path, device="cpu")
    assert report.warnings and "tokens" in report.warnings[0]


def test_unsupported_modes_fail_before_loading_anything(tmp_path):
    # a table no compiler makes (the lowering knows only the contract's modes); 3d and video: test_runtime_3d/_video
    table = make_table(2, model=str(tmp_path / "no-such-model")).with_settings(mode="hybrid")
    with pytest.raises(RenderError) as e:
        render(table, tmp_path / "out", device="cpu")
    assert "not supported" in e.value.message and not (tmp_path / "out").exists()


def test_user_errors_are_render_errors(tiny_models, tmp_path):
    table = make_table(2, model=str(tmp_path / "missing-folder"))
    with pytest.raises(RenderError, match="does not exist"):
        render(table, tmp_path / "a", device="cpu")
    with pytest.raises(RenderError, match="pickle"):
        render(table, tmp_path / "b", model=str(tiny_models["ckpt"]), device="cpu")
    bad_hash = make_table(2, model=str(tiny_models["safetensors"]), model_sha256="0" * 64)
    with pytest.raises(RenderError, match="sha256"):
        render(bad_hash, tmp_path / "c", device="cpu")
    missing_init = make_table(2, model=str(tiny_models["folder"]), init_image=str(tmp_path / "none.png"))
    with pytest.raises(RenderError, match="init image"):
        render(missing_init, tmp_path / "d", device="cpu")


def test_single_file_model_renders_like_the_folder(scene_render, tiny_models, tmp_path):
    table, out, _, _, _ = scene_render
    render(table, tmp_path, model=str(tiny_models["safetensors"]), device="cpu")
    for i in (0, 4, 9):
        assert (out / f"frames/{i:05d}.png").read_bytes() == (tmp_path / f"frames/{i:05d}.png").read_bytes()
