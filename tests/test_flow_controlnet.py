"""Flux.1 ControlNet units through dfm's flow loop, on tiny random models built offline (tests/tiny_flow_models.py):
one frame's latents equal diffusers' FluxControlNetImg2ImgPipeline (InstantX-style, a Union with its mode, two
units summed as FluxMultiControlNetModel sums them, XLabs-style with an input_hint_block), a single .safetensors
file loads as its folder, a 2D scene renders deterministically, weight 0 is the frame without ControlNet and
calls none, and a ControlNet of another family is refused at check time (DFM407) and at render time; SD3 is
refused with why."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from tiny_flow_models import build_flux_controlnet, build_flux_pipeline, save_flux_controlnet, saved_and_loaded
from tiny_models import make_table, with_prompts

from dfm.compiler.compile import compile_source
from dfm.contract.controlnet import column
from dfm.runtime import RenderError, controlnet
from dfm.runtime.controlnet import FLUX_CONFIG_KEYS, check_family, controlnet_family, load_controlnet
from dfm.runtime.device import pick_device
from dfm.runtime.flow_matching import FluxSamples, sum_samples, token_mask, unpack_latents
from dfm.runtime.frame import FrameRenderer
from dfm.runtime.frame_loop import row_view
from dfm.runtime.model_source import resolve_source
from dfm.runtime.models import StableDiffusion
from dfm.runtime.prompts import flow_refusals
from dfm.runtime.render import render
from dfm.runtime.timing import StageTimer

SIZE = 32  # pixels: the tiny VAE halves, so 16x16 latents, 8x8 image tokens
TOL = dict(rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    """The tiny Flux-dev pipeline saved and loaded back, and its ControlNets: `cn` (InstantX-style), `cn_b`
    (another seed), `union` (7 modes), each as a folder and a single file."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("flux_cn")
    pipe = saved_and_loaded(build_flux_pipeline(root / "build"), root / "flux")
    t = pipe.transformer
    return {"pipe": pipe, "folder": root / "flux", "root": root,
            "cn": save_flux_controlnet(build_flux_controlnet(t, seed=21), root / "cn"),
            "cn_b": save_flux_controlnet(build_flux_controlnet(t, seed=22, num_single_layers=0), root / "cn_b"),
            "union": save_flux_controlnet(build_flux_controlnet(t, seed=23, num_mode=7), root / "union")}


def load(folder) -> StableDiffusion:
    return StableDiffusion(resolve_source(str(folder)), pick_device("cpu", "auto"))


class FixedImages:
    """Stands in for runtime/control_images.py's ControlImages: one control image and mask for every frame."""

    def __init__(self, image, mask=None) -> None:
        self.img, self.msk, self.asked = image, mask, []

    def image(self, i, loopback=None):
        self.asked.append(i)
        return self.img

    def mask(self, i):
        return self.msk

    def warnings(self):
        return []

    def close(self):
        pass


@pytest.fixture
def fake_images(monkeypatch):
    """Unit number -> FixedImages the renderer gets for it (instead of runtime/control_images.py)."""
    fakes: dict[int, FixedImages] = {}
    monkeypatch.setattr(controlnet, "open_images", lambda unit, *a, **k: fakes[unit.number])
    return fakes


def control_image(seed: int = 5, size: int = SIZE) -> torch.Tensor:
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


def flow_table(folder, n: int = 4, size: int = SIZE, **overrides):
    """A 2D scene of `n` frames on the tiny Flux model: cadence 1, motion, 4 steps at strength 0.5."""
    kw = {**dict(mode="2d", model=str(folder), sampler="flow_euler", size=(size, size), cadence=1, angle=2.0,
                 zoom=1.02, cfg_scale=3.5, steps=4, strength=0.5, seed=7), **overrides}
    return with_prompts(make_table(n, **kw), prompt="a red cat")


def with_units(table, units: dict[int, dict]):
    """`table` with ControlNet units as the compiler hands them over: {n: {"model", "weight", "start", "end",
    "union_type", "mode"}}."""
    settings: dict[str, object] = {"controlnet_units": tuple(units)}
    cols = {}
    for n, u in units.items():
        settings |= {column(n, "model"): str(u["model"]), column(n, "module"): "none",
                     column(n, "vid_path"): __file__, column(n, "mask_vid_path"): None,
                     column(n, "loopback_mode"): False, column(n, "processor_res"): 64,
                     column(n, "threshold_a"): None, column(n, "threshold_b"): None,
                     column(n, "resize_mode"): "just_resize", column(n, "control_mode"): u.get("mode", "balanced"),
                     column(n, "pixel_perfect"): False, column(n, "union_type"): u.get("union_type", "")}
        for field, key, default in (("weight", "weight", 1.0), ("guidance_start", "start", 0.0),
                                    ("guidance_end", "end", 1.0)):
            v = np.asarray(u.get(key, default), dtype=np.float64)
            cols[column(n, field)] = np.broadcast_to(v, (len(table),)).copy()
    return table.with_settings(**settings).with_columns(**cols)


def mean_vae(monkeypatch):
    """diffusers' pipelines draw a VAE sample with the generator; dfm takes the posterior mean (no draw) for the
    init and the control image alike: make the pipeline take the mean too."""
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    monkeypatch.setattr(DiagonalGaussianDistribution, "sample", lambda self, generator=None: self.mode())


def pipeline_latents(pipe, nets, row, source, images, scales, starts, ends, modes=None, size=SIZE, t5_length=512):
    """diffusers' FluxControlNetImg2ImgPipeline for the row (its seed, steps, strength, guidance, prompt), from
    the same init, one ControlNet or several (a FluxMultiControlNetModel), latents unpacked."""
    from diffusers import FluxControlNetImg2ImgPipeline

    parts = ("scheduler", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "transformer")
    cn_pipe = FluxControlNetImg2ImgPipeline(**{k: pipe.components[k] for k in parts},
                                            controlnet=nets[0] if len(nets) == 1 else list(nets))
    cn_pipe.set_progress_bar_config(disable=True)
    one = len(nets) == 1
    steps, run = int(row["steps"]), int(row["effective_steps"])
    packed = cn_pipe(
        prompt=str(row["prompt"]), image=source, strength=run / steps, num_inference_steps=steps,
        guidance_scale=float(row["cfg_scale"]), height=size, width=size, max_sequence_length=t5_length,
        control_image=images[0] * 2 - 1 if one else [im * 2 - 1 for im in images],  # a tensor is taken as is
        controlnet_conditioning_scale=scales[0] if one else list(scales),
        control_guidance_start=starts[0] if one else list(starts), control_guidance_end=ends[0] if one else list(ends),
        control_mode=(modes or [None])[0] if one else list(modes or [None] * len(nets)),
        generator=torch.Generator().manual_seed(int(row["seed"])), output_type="latent",
    ).images
    latent = size // cn_pipe.vae_scale_factor
    return unpack_latents(packed, latent, latent)


def reference_net(saved):
    from diffusers import FluxControlNetModel

    return FluxControlNetModel.from_pretrained(str(saved["folder"]), local_files_only=True).eval()


CASES = {  # name -> units ({model key, weight, start, end, union_type, mode index for diffusers})
    "plain": [dict(net="cn", weight=0.8)],
    "window": [dict(net="cn", weight=1.2, start=0.0, end=0.5)],
    "union": [dict(net="union", weight=1.0, union_type="depth", pipe_mode=2)],
    "two units": [dict(net="cn", weight=0.7), dict(net="cn_b", weight=0.9, start=0.5, end=1.0, seed=6)],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_frame_latents_equal_diffusers_flux_controlnet_img2img(flux, fake_images, monkeypatch, case):
    """A diffused row's latents with Flux ControlNet units (through dfm's loader, FrameRenderer.latents and
    flow_denoise) equal FluxControlNetImg2ImgPipeline's for the same seed, init, steps, strength, guidance,
    control images, scales, windows and modes."""
    units = CASES[case]
    table = with_units(flow_table(flux["folder"]), {
        n: {"model": flux[u["net"]]["folder"], "weight": u["weight"], "start": u.get("start", 0.0),
            "end": u.get("end", 1.0), "union_type": u.get("union_type", "")} for n, u in enumerate(units, 1)})
    images = [control_image(u.get("seed", 5)) for u in units]
    for n, image in enumerate(images, 1):
        fake_images[n] = FixedImages(image)
    row = table.row(2)
    assert (int(row["steps"]), int(row["effective_steps"])) == (4, 2)
    source = control_image(3)
    sd = load(flux["folder"])
    renderer = FrameRenderer(table, sd, StageTimer(sd.placement.device))
    got = renderer.latents(2, row, source)
    on = sum(controlnet.unit_on(k, 2, u.get("start", 0.0), u.get("end", 1.0)) for u in units for k in range(2))
    assert renderer.controlnet_calls == on

    mean_vae(monkeypatch)
    want = pipeline_latents(flux["pipe"], [reference_net(flux[u["net"]]) for u in units], row, source, images,
                            [u["weight"] for u in units], [u.get("start", 0.0) for u in units],
                            [u.get("end", 1.0) for u in units], [u.get("pipe_mode") for u in units])
    assert got.shape == want.shape == (1, 16, SIZE // 2, SIZE // 2)
    torch.testing.assert_close(got, want, **TOL)
    plain = FrameRenderer(flow_table(flux["folder"]), sd, StageTimer()).latents(2, row, source)
    assert not torch.allclose(got, plain, atol=1e-3)  # the units change the frame


def test_an_xlabs_controlnet_reads_pixels_and_equals_diffusers(tmp_path, fake_images, monkeypatch):
    """XLabs' kind (an input_hint_block: the control image's pixels, not its latents; block samples repeated
    over the transformer's blocks), on a Flux model whose VAE downsamples 8x as the real one does."""
    pipe = saved_and_loaded(build_flux_pipeline(tmp_path / "build", vae_levels=4), tmp_path / "flux8")
    saved = save_flux_controlnet(build_flux_controlnet(pipe.transformer, seed=24, hint=True), tmp_path / "xlabs")
    size = 64
    table = with_units(flow_table(tmp_path / "flux8", size=size), {1: {"model": saved["folder"], "weight": 0.9}})
    fake_images[1] = FixedImages(control_image(5, size))
    sd = load(tmp_path / "flux8")
    row = table.row(2)
    source = control_image(3, size)
    renderer = FrameRenderer(table, sd, StageTimer())
    got = renderer.latents(2, row, source)
    assert renderer.controlnet_calls == 2 and sd.controlnets[str(saved["folder"])].net.input_hint_block is not None
    from_file = load_controlnet(sd, str(saved["safetensors"]), 1).net  # its config read from its tensors
    assert all(from_file.config[k] == saved["net"].config[k] for k in FLUX_CONFIG_KEYS)
    mean_vae(monkeypatch)
    want = pipeline_latents(pipe, [reference_net(saved)], row, source, [control_image(5, size)], [0.9], [0.0], [1.0],
                            size=size)
    assert got.shape == want.shape == (1, 16, size // 8, size // 8)
    torch.testing.assert_close(got, want, **TOL)


# ---- frames through the renderer ------------------------------------------------------------------------------


def render_frames(table, sd):
    renderer = FrameRenderer(table, sd, StageTimer())
    row = row_view(table)
    return [renderer.frame(i, row(i)) for i in range(len(table))], renderer


def test_a_2d_scene_with_a_flux_unit_renders_deterministically(flux, fake_images):
    """Four frames (a txt2img frame, then img2img at strength 0.5), twice: the same bytes, one ControlNet call per
    step, and other frames than without the unit."""
    sd = load(flux["folder"])
    fake_images[1] = FixedImages(control_image())
    table = with_units(flow_table(flux["folder"]), {1: {"model": flux["cn"]["folder"], "weight": 0.8}})
    first, r1 = render_frames(table, sd)
    again, r2 = render_frames(table, sd)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert r1.controlnet_calls == r2.controlnet_calls == 4 + 2 + 2 + 2
    plain, r0 = render_frames(flow_table(flux["folder"]), sd)
    assert r0.controlnet_calls == 0
    assert all(not torch.allclose(a, b, atol=1e-3) for a, b in zip(first, plain, strict=True))


def test_a_render_loads_the_unit_at_the_load_stage_and_records_it(flux, fake_images, tmp_path):
    """Through `render` (the job's load stage, flow_refusals, the manifest): a Flux unit from its single file."""
    fake_images[1] = FixedImages(control_image())
    table = with_units(flow_table(flux["folder"], n=2), {1: {"model": flux["cn"]["safetensors"]}})
    report = render(table, tmp_path / "out", model=str(flux["folder"]), device="cpu")
    assert report.frames == 2
    (unit,) = json.loads((tmp_path / "out" / "manifest.json").read_text())["controlnet"]
    assert unit["unit"] == 1 and unit["kind"] == "file" and unit["path"] == str(flux["cn"]["safetensors"].resolve())


def test_weight_zero_is_the_frame_without_controlnet_and_calls_none(flux, fake_images):
    sd = load(flux["folder"])
    plain, _ = render_frames(flow_table(flux["folder"], n=3), sd)
    fake_images[1] = FixedImages(control_image())
    fake_images[2] = FixedImages(control_image(6))
    table = with_units(flow_table(flux["folder"], n=3), {1: {"model": flux["cn"]["folder"], "weight": 0.0},
                                                         2: {"model": flux["union"]["folder"], "weight": 0.0}})
    frames, renderer = render_frames(table, sd)
    assert renderer.controlnet_calls == 0 and fake_images[1].asked == []  # not even the control image is made
    assert all(torch.equal(a, b) for a, b in zip(plain, frames, strict=True))


def test_a_single_file_loads_as_its_folder(flux):
    sd = load(flux["folder"])
    for name in ("cn", "union"):
        from_folder = load_controlnet(sd, str(flux[name]["folder"]), 1).net
        from_file = load_controlnet(sd, str(flux[name]["safetensors"]), 1)
        assert from_file.kind == "file"
        assert all(from_file.net.config[k] == from_folder.config[k] for k in FLUX_CONFIG_KEYS)
        a, b = from_folder.state_dict(), from_file.net.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_union_without_a_flux_mode_is_a_render_error(flux, fake_images):
    sd = load(flux["folder"])
    fake_images[1] = FixedImages(control_image())
    table = with_units(flow_table(flux["folder"], n=1), {1: {"model": flux["union"]["folder"], "union_type": "normal"}})
    with pytest.raises(RenderError, match="no mode for `normal`"):
        render_frames(table, sd)


def test_a_mask_multiplies_the_samples_token_by_token(flux, fake_images):
    """A mask of zeros leaves the frame exactly as without the unit (the unit still runs); the token mask is
    the mask averaged over each 2x2 patch of latents, in the tokens' order."""
    sd = load(flux["folder"])
    row = flow_table(flux["folder"]).row(2)
    source = control_image(3)
    plain = FrameRenderer(flow_table(flux["folder"]), sd, StageTimer()).latents(2, row, source)
    fake_images[1] = FixedImages(control_image(), mask=torch.zeros(1, 1, SIZE, SIZE))
    table = with_units(flow_table(flux["folder"]), {1: {"model": flux["cn"]["folder"]}})
    renderer = FrameRenderer(table, sd, StageTimer())
    assert torch.equal(renderer.latents(2, row, source), plain) and renderer.controlnet_calls == 2
    left = torch.zeros(1, 1, SIZE, SIZE)
    left[..., : SIZE // 2] = 1
    tokens = token_mask(left, SIZE, SIZE, 2).reshape(SIZE // 4, SIZE // 4)
    assert tokens.shape == (8, 8) and tokens[:, :4].eq(1).all() and tokens[:, 4:].eq(0).all()


def test_two_layouts_sum_block_by_block():
    """Units of different layouts (XLabs' repeated blocks, fewer samples than blocks) are spread over the
    transformer's blocks as it would spread each, then summed."""
    a, b, c = (torch.full((1, 2, 3), float(v)) for v in (1, 10, 100))
    xlabs = FluxSamples([a, b], None, repeat=True)
    instantx = FluxSamples([c], [c], repeat=False)
    total = sum_samples([xlabs, instantx], blocks=4, single=2)
    assert [float(t[0, 0, 0]) for t in total.blocks] == [101, 110, 101, 110] and not total.repeat
    assert [float(t[0, 0, 0]) for t in total.single] == [100, 100]
    same = sum_samples([instantx, instantx], blocks=4, single=2)
    assert len(same.blocks) == 1 and float(same.blocks[0][0, 0, 0]) == 200
    # two layouts, neither with single-block samples (XLabs beside a shallower XLabs): no single samples at all
    deep, shallow = FluxSamples([a, b], None, repeat=True), FluxSamples([c], None, repeat=False)
    total = sum_samples([deep, shallow], blocks=4, single=2)
    assert [float(t[0, 0, 0]) for t in total.blocks] == [101, 110, 101, 110] and total.single is None


# ---- families: render-time and check-time refusals -------------------------------------------------------------


def test_a_controlnet_of_another_family_is_a_render_error(flux, tmp_path):
    sd_folder = tmp_path / "sd-controlnet"
    sd_folder.mkdir()
    (sd_folder / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel", "cross_attention_dim": 768}))
    assert controlnet_family("folder", sd_folder) == "sd"
    assert controlnet_family("folder", flux["cn"]["folder"]) == "flux"
    assert controlnet_family("file", flux["cn"]["safetensors"]) == "flux"
    with pytest.raises(RenderError, match=r"SD 1.x / SDXL .* ControlNet, but the model is Flux.1"):
        load_controlnet(load(flux["folder"]), str(sd_folder), 1)
    sd15 = SimpleNamespace(family="sd15")
    with pytest.raises(RenderError, match="is a Flux.1 ControlNet, but the model is sd15"):
        check_family("flux", sd15, str(flux["cn"]["folder"]), 2)
    with pytest.raises(RenderError, match="XLabs' own file layout"):
        check_family("flux-xlabs", SimpleNamespace(family="flux"), "flux-canny-controlnet-v3.safetensors", 1)


def check(tmp_path, monkeypatch, model: str, cn_model: str, more: str = ""):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-cache"))  # hub ids are guessed from their names
    text = (f'dfm 1\nprompt 0 "a cat"\nmodel "{model}"\nframes 2\ncn_1_model "{cn_model}"\ncn_1_loopback_mode true\n'
            + more)
    r = compile_source(text, str(tmp_path / "s.dfm"), base_dir=tmp_path, build_table=False)
    return [d for d in r.diagnostics if d.code == "DFM407" and d.is_error]


def test_the_check_names_both_families_of_a_mismatch(tmp_path, monkeypatch):
    folder = tmp_path / "flux-cn"  # a Flux ControlNet's config is what the check reads
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "FluxControlNetModel", "num_single_layers": 0}))
    dev = "black-forest-labs/FLUX.1-dev"
    assert check(tmp_path, monkeypatch, dev, str(folder)) == []
    assert check(tmp_path, monkeypatch, dev, "InstantX/FLUX.1-dev-Controlnet-Canny") == []
    assert check(tmp_path, monkeypatch, dev, "someone/my-controlnet") == []  # names no family: loading tells
    (e,) = check(tmp_path, monkeypatch, dev, "lllyasviel/control_v11p_sd15_canny")
    assert "an SD 1.x ControlNet" in e.message and "Flux.1 [dev]" in e.message and e.parameter == "cn_1_model"
    assert "a Flux.1 ControlNet" in e.help
    (e,) = check(tmp_path, monkeypatch, "stabilityai/stable-diffusion-xl-base-1.0", str(folder))
    assert "a Flux.1 ControlNet" in e.message and "Stable Diffusion XL" in e.message and e.span.line == 5
    assert "an SDXL ControlNet" in e.help


def test_a_flux_union_needs_a_type_it_has_a_mode_for(tmp_path, monkeypatch):
    folder = tmp_path / "flux-union"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "FluxControlNetModel", "num_mode": 7}))
    dev = "black-forest-labs/FLUX.1-dev"
    assert check(tmp_path, monkeypatch, dev, str(folder), 'cn_1_union_type "depth"\n') == []
    (e,) = check(tmp_path, monkeypatch, dev, str(folder), 'cn_1_union_type "normal"\n')
    assert "no mode for `normal`" in e.message and e.parameter == "cn_1_union_type" and "canny, tile" in e.help


def test_a_control_mode_warns_that_it_does_nothing_on_flux(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-cache"))
    text = ('dfm 1\nprompt 0 "a cat"\nmodel "black-forest-labs/FLUX.1-dev"\nframes 2\n'
            'cn_1_model "InstantX/FLUX.1-dev-Controlnet-Canny"\ncn_1_loopback_mode true\ncn_1_control_mode "prompt"\n')
    r = compile_source(text, str(tmp_path / "s.dfm"), base_dir=tmp_path, build_table=False)
    (w,) = [d for d in r.diagnostics if d.code == "DFM407"]
    assert w.severity.value == "warning" and w.parameter == "cn_1_control_mode" and "Flux.1" in w.message


def test_sd3_units_are_refused_with_why(tmp_path, monkeypatch):
    (e,) = check(tmp_path, monkeypatch, "stabilityai/stable-diffusion-3.5-large", "InstantX/SD3-Controlnet-Canny")
    assert "no img2img pipeline in diffusers" in e.message and "Flux.1, SDXL or SD 1.x" in e.help
    table = with_units(flow_table(tmp_path), {1: {"model": "InstantX/SD3-Controlnet-Canny"}})
    with pytest.raises(RenderError, match="no img2img pipeline in diffusers"):
        flow_refusals(table, SimpleNamespace(family="sd3"))
    dev = SimpleNamespace(family="flux", model_family=SimpleNamespace(name="flux-dev"))
    flow_refusals(table, dev)  # Flux runs its units


def test_an_xlabs_file_in_xlabs_own_layout_is_a_check_error_not_a_render_one(tmp_path, monkeypatch):
    """The check reads a unit's file as the render does (contract.controlnet.transformer_controlnet_base): XLabs'
    own layout is refused before any model loads, with the diffusers version to use."""
    from safetensors.torch import save_file

    path = tmp_path / "flux-canny-controlnet-v3.safetensors"
    save_file({"double_blocks.0.img_attn.qkv.weight": torch.zeros(2, 2)}, str(path))
    (e,) = check(tmp_path, monkeypatch, "black-forest-labs/FLUX.1-dev", str(path))
    assert "XLabs' own file layout" in e.message and "-diffusers" in e.help
    assert controlnet_family("file", path) == "flux-xlabs"
