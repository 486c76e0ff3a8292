"""ControlNet at render time: dfm's loop with units matches diffusers' ControlNet img2img pipelines (SD 1.x and
SDXL), a frame whose units are all at weight 0 is the frame without ControlNet and runs none, the guidance
window, the control modes, masks and the sum of two units behave as sd-webui-controlnet's, a single
.safetensors file gives the folder's residuals, and a missing or broken model is a RenderError."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_controlnets import save_controlnet_forms
from tiny_models import make_table

from dfm.compiler.prompt_syntax import pieces_json
from dfm.contract.controlnet import column
from dfm.runtime import RenderError, controlnet, samplers
from dfm.runtime.controlnet import FrameControl, UnitInput, load_controlnet, shape_residuals, soft_scales, unit_on
from dfm.runtime.device import pick_device
from dfm.runtime.frame import FrameRenderer
from dfm.runtime.frame_loop import row_view
from dfm.runtime.models import StableDiffusion, resolve_source
from dfm.runtime.prompts import PromptEncoder
from dfm.runtime.render import render
from dfm.runtime.samplers import Residuals
from dfm.runtime.timing import StageTimer


def load(folder) -> StableDiffusion:
    sd = StableDiffusion(resolve_source(str(folder)), pick_device("cpu"))
    sd.load()
    return sd


@pytest.fixture(scope="module")
def cn15(tiny_models, tmp_path_factory):
    """The tiny SD 1.x model loaded, and two tiny ControlNets of its UNet (folder + single file each)."""
    root = tmp_path_factory.mktemp("controlnets")
    sd = load(tiny_models["folder"])
    return {"sd": sd, "pipe": tiny_models["pipe"], "folder": tiny_models["folder"], "root": root,
            "a": save_controlnet_forms(root, sd.unet, seed=11), "b": save_controlnet_forms(root, sd.unet, seed=12)}


class Counting:
    """Counts a module's forward calls (a forward pre-hook), as a context manager."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module, self.calls = module, 0

    def __enter__(self) -> Counting:
        self.handle = self.module.register_forward_pre_hook(lambda *_: setattr(self, "calls", self.calls + 1))
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()


def control_image(h: int, w: int, seed: int = 5) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


def embeddings(sd: StableDiffusion):
    enc = PromptEncoder(sd)
    return enc(pieces_json("a dog")), enc(pieces_json("blurry"))


def run_denoise(sd, name, cond, uncond, init, control, *, steps=4, effective=4, cfg=6.0, seed=4):
    return samplers.denoise(
        sd.eps, samplers.make_scheduler(name, sd.scheduler_config), cond=cond, uncond=uncond, cfg_scale=cfg,
        steps=steps, effective_steps=effective, generator=torch.Generator().manual_seed(seed),
        takes_generator=samplers.SAMPLERS[name].takes_generator, init_latents=init, control=control,
    )


# ---- (1) the same latents as diffusers' ControlNet img2img pipelines -----------------------------------------


@pytest.mark.parametrize(("name", "weight", "start", "end", "effective"), [
    ("euler", 0.8, 0.0, 1.0, 4),
    ("dpmpp_2m", 1.3, 0.25, 0.75, 4),
    ("euler_a", 1.0, 0.0, 0.5, 2),
])
def test_same_latents_as_diffusers_controlnet_img2img(cn15, name, weight, start, end, effective):
    from diffusers import StableDiffusionControlNetImg2ImgPipeline

    sd = cn15["sd"]
    net = load_controlnet(sd, str(cn15["a"]["folder"]), 1).net
    cond, uncond = embeddings(sd)
    init = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(9))
    image = control_image(16, 16)  # the tiny VAE's frame of 8x8 latents
    control = FrameControl([UnitInput(1, net, image, None, weight, start, end, "balanced")], sd.unet_inputs)
    ours = run_denoise(sd, name, cond, uncond, init, control, effective=effective)
    assert control.calls > 0
    pipe = StableDiffusionControlNetImg2ImgPipeline(
        **{**cn15["pipe"].components, "scheduler": samplers.make_scheduler(name, sd.scheduler_config)},
        controlnet=net, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(
        prompt_embeds=cond, negative_prompt_embeds=uncond, image=init, control_image=image,
        strength=effective / 4, num_inference_steps=4, guidance_scale=6.0, controlnet_conditioning_scale=weight,
        control_guidance_start=start, control_guidance_end=end, generator=torch.Generator().manual_seed(4),
        output_type="latent",
    ).images
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    plain = run_denoise(sd, name, cond, uncond, init, None, effective=effective)
    assert not torch.allclose(ours, plain, atol=1e-3)  # the control mattered


def xl_pipeline(cls, pipe, sd, net):
    """diffusers' SDXL ControlNet pipeline `cls` over the tiny SDXL pipeline's components, euler as dfm builds it."""
    out = cls(**{**pipe.components, "scheduler": samplers.make_scheduler("euler", sd.scheduler_config)},
              controlnet=net, requires_aesthetics_score=False)
    out.set_progress_bar_config(disable=True)
    return out


def xl_embeddings(cond, uncond) -> dict:
    """dfm's packed SDXL embeddings (pooled as the last row) as the pipelines' keyword arguments."""
    return {"prompt_embeds": cond[:, :-1], "pooled_prompt_embeds": cond[:, -1, :16],
            "negative_prompt_embeds": uncond[:, :-1], "negative_pooled_prompt_embeds": uncond[:, -1, :16]}


def test_same_latents_as_diffusers_sdxl_controlnet_img2img(tmp_path):
    from diffusers import StableDiffusionXLControlNetImg2ImgPipeline
    from sdxl_models import save_sdxl

    xl = save_sdxl(tmp_path / "xl")
    sd = load(xl["folder"])
    forms = save_controlnet_forms(tmp_path / "cn", sd.unet, seed=21)
    net = load_controlnet(sd, str(forms["folder"]), 1).net
    cond, uncond = embeddings(sd)
    init = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(9))
    image = control_image(16, 16)
    # strength 0.5 (2 steps), the unit on the first: at strength 1 the latents are ~50 and float noise alone
    # (weight 0 too) differs by 3e-5 from diffusers' XL pipeline
    control = FrameControl([UnitInput(1, net, image, None, 0.9, 0.0, 0.5, "balanced")], sd.unet_inputs)
    ours = run_denoise(sd, "euler", cond, uncond, init, control, cfg=5.0, effective=2)
    assert control.calls == 1
    pipe = xl_pipeline(StableDiffusionXLControlNetImg2ImgPipeline, xl["pipe"], sd, net)
    theirs = pipe(
        **xl_embeddings(cond, uncond), image=init, control_image=image, strength=0.5, num_inference_steps=4,
        guidance_scale=5.0,
        controlnet_conditioning_scale=0.9, control_guidance_start=0.0, control_guidance_end=0.5,
        generator=torch.Generator().manual_seed(4), output_type="latent",
    ).images
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(ours, run_denoise(sd, "euler", cond, uncond, init, None, cfg=5.0, effective=2), atol=1e-3)


# ---- frames through the renderer: weight 0, weight 1, the window, two units ----------------------------------


class FixedImages:
    """Stands in for runtime/control_images.py's ControlImages: one image (or the loopback) and mask."""

    def __init__(self, image, mask=None, loopback=False) -> None:
        self.img, self.msk, self.loopback, self.asked = image, mask, loopback, []

    def image(self, i, loopback=None):
        self.asked.append(i)
        return loopback if self.loopback else self.img

    def mask(self, i):
        return self.msk

    def warnings(self):
        return []

    def close(self):
        self.closed = True


def with_units(table, models: dict[int, str], *, weight=1.0, start=0.0, end=1.0, mode="balanced", loopback=False):
    """`table` with ControlNet units as the compiler hands them over (contract/controlnet.py)."""
    settings: dict[str, object] = {"controlnet_units": tuple(models)}
    cols = {}
    for n, model in models.items():
        # a source that exists (the render checks it before loading); the tests' images stand in for its frames
        settings |= {column(n, "model"): model, column(n, "module"): "none", column(n, "vid_path"): __file__,
                     column(n, "mask_vid_path"): None, column(n, "loopback_mode"): loopback,
                     column(n, "processor_res"): 64, column(n, "threshold_a"): None, column(n, "threshold_b"): None,
                     column(n, "resize_mode"): "just_resize", column(n, "control_mode"): mode,
                     column(n, "pixel_perfect"): False}
        for field, v in (("weight", weight), ("guidance_start", start), ("guidance_end", end)):
            cols[column(n, field)] = np.broadcast_to(np.asarray(v, dtype=np.float64), (len(table),)).copy()
    return table.with_settings(**settings).with_columns(**cols)


@pytest.fixture
def fake_images(monkeypatch):
    """Unit number -> FixedImages the renderer gets for it (instead of runtime/control_images.py)."""
    fakes: dict[int, FixedImages] = {}
    monkeypatch.setattr(controlnet, "open_images", lambda unit, *a, **k: fakes[unit.number])
    return fakes


def render_frames(table, sd):
    renderer = FrameRenderer(table, sd, StageTimer())
    row = row_view(table)
    return [renderer.frame(i, row(i)) for i in range(len(table))], renderer


def frame_table(n=3):
    return make_table(n, mode="2d", cadence=1, steps=4, strength=0.5, seed=3, zoom=1.02)


def test_weight_zero_is_the_frame_without_controlnet_and_calls_none(cn15, fake_images):
    sd = cn15["sd"]
    plain, _ = render_frames(frame_table(), sd)
    fake_images[1] = FixedImages(control_image(64, 64))
    fake_images[2] = FixedImages(control_image(64, 64, seed=6))
    table = with_units(frame_table(), {1: str(cn15["a"]["folder"]), 2: str(cn15["b"]["folder"])}, weight=0.0)
    nets = controlnet.load_units(table, sd)
    with Counting(nets[0].net) as c1, Counting(nets[1].net) as c2:
        frames, renderer = render_frames(table, sd)
    assert c1.calls == c2.calls == renderer.controlnet_calls == 0
    assert fake_images[1].asked == []  # at weight 0 not even the control image is made
    for a, b in zip(plain, frames, strict=True):
        assert torch.equal(a, b)


def test_weight_one_changes_the_frames_and_calls_once_per_guided_step(cn15, fake_images):
    sd = cn15["sd"]
    plain, _ = render_frames(frame_table(), sd)
    fake_images[1] = FixedImages(control_image(64, 64))
    table = with_units(frame_table(), {1: str(cn15["a"]["folder"])}, weight=1.0)
    net = controlnet.load_units(table, sd)[0].net
    with Counting(net) as count:
        frames, renderer = render_frames(table, sd)
    # frame 0 is txt2img (4 steps), frames 1 and 2 img2img at strength 0.5 (2 steps): one batched call a step
    assert count.calls == renderer.controlnet_calls == 4 + 2 + 2
    assert all(not torch.allclose(a, b, atol=1e-3) for a, b in zip(plain, frames, strict=True))


def test_a_window_that_excludes_every_step_calls_no_controlnet(cn15, fake_images):
    sd = cn15["sd"]
    plain, _ = render_frames(frame_table(2), sd)
    fake_images[1] = FixedImages(control_image(64, 64))
    table = with_units(frame_table(2), {1: str(cn15["a"]["folder"])}, start=0.5, end=0.5)
    net = controlnet.load_units(table, sd)[0].net
    with Counting(net) as count:
        frames, _ = render_frames(table, sd)
    assert count.calls == 0
    assert all(torch.equal(a, b) for a, b in zip(plain, frames, strict=True))


def test_the_guidance_window_is_diffusers(cn15):
    assert [unit_on(i, 4, 0.0, 1.0) for i in range(4)] == [True] * 4
    assert [unit_on(i, 4, 0.25, 0.75) for i in range(4)] == [False, True, True, False]
    assert [unit_on(i, 4, 0.0, 0.5) for i in range(4)] == [True, True, False, False]
    assert not any(unit_on(i, n, 0.5, 0.5) for n in (1, 2, 3, 4, 7) for i in range(n))


def test_loopback_uses_the_frames_source_and_is_off_on_a_txt2img_frame(cn15, fake_images):
    sd = cn15["sd"]
    fake_images[1] = FixedImages(None, loopback=True)
    table = with_units(frame_table(2), {1: str(cn15["a"]["folder"])})
    net = controlnet.load_units(table, sd)[0].net
    with Counting(net) as count:
        render_frames(table, sd)
    assert count.calls == 2  # frame 0 is txt2img, no source: off; frame 1 img2imgs 2 steps from its source


def test_a_render_with_a_unit_records_it_in_the_manifest(cn15, fake_images, tmp_path):
    fake_images[1] = FixedImages(control_image(64, 64))
    table = with_units(frame_table(2), {1: str(cn15["a"]["safetensors"])})
    report = render(table, tmp_path / "out", model=str(cn15["folder"]), device="cpu")
    assert report.frames == 2
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["controlnet"][0]["unit"] == 1 and manifest["controlnet"][0]["kind"] == "file"
    assert manifest["controlnet"][0]["path"] == str(cn15["a"]["safetensors"].resolve())
    render(frame_table(2), tmp_path / "plain", model=str(cn15["folder"]), device="cpu")
    assert "controlnet" not in json.loads((tmp_path / "plain" / "manifest.json").read_text())


# ---- control modes, masks and sums on one UNet call ------------------------------------------------------------


def one_call(sd, units):
    """The residuals of one CFG-batched call (unconditional first) and the UNet's prediction with them."""
    cond, uncond = embeddings(sd)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    e = torch.cat([uncond, cond])
    flags = torch.tensor([True, False])
    res = FrameControl(units, sd.unet_inputs).residuals(0, 4, x, torch.tensor(500), e, flags)
    return res, sd.eps(x, torch.tensor(500), e, res), sd.eps(x, torch.tensor(500), e)


def unit(net, mode="balanced", weight=1.0, mask=None, number=1, seed=5):
    return UnitInput(number, net, control_image(16, 16, seed), mask, weight, 0.0, 1.0, mode)


def test_control_modes_scale_and_cfg_injection(cn15):
    sd = cn15["sd"]
    net = load_controlnet(sd, str(cn15["a"]["folder"]), 1).net
    balanced, eps_b, eps_plain = one_call(sd, [unit(net)])
    prompt, eps_p, _ = one_call(sd, [unit(net, "prompt")])
    control, eps_c, _ = one_call(sd, [unit(net, "control")])
    # SD 1.x's 13 residuals: the first 0.825^12, the mid block's 1; fewer (SDXL's 10, the tiny UNet's 5) take
    # the first ones, as sd-webui-controlnet's zip does
    assert soft_scales(13)[-1] == 1.0 and soft_scales(13)[0] == pytest.approx(0.825 ** 12)
    assert soft_scales(len(balanced.down) + 1) == soft_scales(13)[:5]
    for k, (b, p, c) in enumerate(zip([*balanced.down, balanced.mid], [*prompt.down, prompt.mid],
                                      [*control.down, control.mid], strict=True)):
        torch.testing.assert_close(p, b * 0.825 ** (12 - k))
        assert not c[0].any()  # the unconditional item gets no control
        torch.testing.assert_close(c[1], p[1])
    assert not torch.allclose(eps_p, eps_b) and not torch.allclose(eps_c, eps_p)
    torch.testing.assert_close(eps_c[0], eps_plain[0])  # "control": the unconditional prediction is untouched
    assert not torch.allclose(eps_c[1], eps_plain[1])
    assert not torch.allclose(eps_b[0], eps_plain[0])  # balanced and prompt control both items


def test_two_units_sum_and_a_mask_multiplies(cn15):
    sd = cn15["sd"]
    a = load_controlnet(sd, str(cn15["a"]["folder"]), 1).net
    b = load_controlnet(sd, str(cn15["b"]["folder"]), 2).net
    ra, _, _ = one_call(sd, [unit(a, weight=0.7)])
    rb, _, _ = one_call(sd, [unit(b, weight=1.2, number=2, seed=6)])
    both, eps_both, _ = one_call(sd, [unit(a, weight=0.7), unit(b, weight=1.2, number=2, seed=6)])
    for x, y, s in zip([*ra.down, ra.mid], [*rb.down, rb.mid], [*both.down, both.mid], strict=True):
        torch.testing.assert_close(s, x + y)
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., :, :8] = 1.0  # the left half
    masked, _, _ = one_call(sd, [unit(a, weight=0.7, mask=mask)])
    for r, m in zip([*ra.down, ra.mid], [*masked.down, masked.mid], strict=True):
        half = r.shape[-1] // 2
        torch.testing.assert_close(m[..., :half], r[..., :half])
        assert not m[..., half:].any()


def test_shape_residuals_refuses_an_unknown_mode():
    res = Residuals((torch.ones(1, 1, 2, 2),), torch.ones(1, 1, 1, 1))
    with pytest.raises(RenderError, match="control mode"):
        shape_residuals(res, "guess", torch.tensor([False]), None)


# ---- loading ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ldm", [False, True])
def test_a_single_file_gives_the_folders_residuals(cn15, tmp_path, ldm):
    sd = cn15["sd"]
    forms = save_controlnet_forms(tmp_path, sd.unet, seed=31, ldm=ldm)
    folder = load_controlnet(sd, str(forms["folder"]), 1)
    single = load_controlnet(sd, str(forms["safetensors"]), 1)
    assert folder.kind == "folder" and single.kind == "file"
    size = 64 if ldm else 16  # real ControlNets' image embedding divides by 8, the tiny one by 2
    image = control_image(size, size)
    r1, _, _ = one_call(sd, [UnitInput(1, folder.net, image, None, 1.0, 0.0, 1.0, "balanced")])
    r2, _, _ = one_call(sd, [UnitInput(1, single.net, image, None, 1.0, 0.0, 1.0, "balanced")])
    for x, y in zip([*r1.down, r1.mid], [*r2.down, r2.mid], strict=True):
        assert torch.equal(x, y)


def test_missing_and_broken_models_are_render_errors(cn15, tmp_path):
    sd = cn15["sd"]
    with pytest.raises(RenderError, match="unit 2: model .*nowhere.* does not exist") as e:
        load_controlnet(sd, str(tmp_path / "nowhere.safetensors"), 2)
    assert "diffusers ControlNet folder" in e.value.help
    (tmp_path / "empty").mkdir()
    with pytest.raises(RenderError, match="without config.json"):
        load_controlnet(sd, str(tmp_path / "empty"), 1)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    with pytest.raises(RenderError, match="unit 1: could not load") as e:
        load_controlnet(sd, str(broken), 1)
    assert "Traceback" not in str(e.value)
    with pytest.raises(RenderError, match="not in the local Hugging Face cache"):
        load_controlnet(sd, "someone/no-such-controlnet", 3)
    pickle = tmp_path / "control.pth"
    pickle.write_bytes(b"x")
    with pytest.raises(RenderError, match="pickle"):
        load_controlnet(sd, str(pickle), 1)


def test_a_controlnet_of_another_family_is_refused(cn15, tmp_path):
    from sdxl_models import build_sdxl_pipeline

    xl = build_sdxl_pipeline(tmp_path / "xl")
    forms = save_controlnet_forms(tmp_path / "cn", xl.unet, seed=41)
    with pytest.raises(RenderError, match="does not fit the model"):
        load_controlnet(cn15["sd"], str(forms["folder"]), 1)


def test_the_load_stage_loads_each_model_once_and_fails_before_any_frame(cn15, tmp_path, fake_images):
    sd = load(cn15["folder"])
    table = with_units(frame_table(1), {1: str(cn15["a"]["folder"]), 2: str(cn15["a"]["folder"])})
    loaded = controlnet.load_units(table, sd)
    assert loaded[0] is loaded[1] and list(sd.controlnets) == [str(cn15["a"]["folder"])]
    bad = with_units(frame_table(1), {1: str(tmp_path / "missing")})
    with pytest.raises(RenderError, match="ControlNet unit 1"):
        render(bad, tmp_path / "out", model=str(cn15["folder"]), device="cpu")
    assert not (tmp_path / "out").exists()


# ---- with runtime/control_images.py's ControlImages --------------------------------------------------------------


def with_source(table, n: int, source, mask=None):
    return table.with_settings(**{column(n, "vid_path"): str(source),
                                  column(n, "mask_vid_path"): None if mask is None else str(mask)})


def test_a_render_controlled_by_an_image_file_and_a_loopback_unit(cn15, tmp_path):
    from PIL import Image

    gen = np.random.default_rng(3)
    Image.fromarray(gen.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "control.png")
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[:, :32] = 255
    Image.fromarray(mask).convert("RGB").save(tmp_path / "mask.png")
    model = str(cn15["folder"])
    render(frame_table(3), tmp_path / "plain", model=model, device="cpu")
    table = with_units(frame_table(3), {1: str(cn15["a"]["folder"])})
    table = with_source(table, 1, tmp_path / "control.png", tmp_path / "mask.png")
    render(table, tmp_path / "image", model=model, device="cpu")
    loop = with_units(frame_table(3), {2: str(cn15["b"]["safetensors"])}, loopback=True, mode="control")
    render(loop, tmp_path / "loop", model=model, device="cpu")

    def png(run, i):
        return (tmp_path / run / "frames" / f"{i:05d}.png").read_bytes()

    assert all(png("image", i) != png("plain", i) for i in range(3))
    assert png("loop", 0) == png("plain", 0)  # frame 0 is txt2img: a loopback unit has nothing to control with
    assert all(png("loop", i) != png("plain", i) for i in (1, 2))
    units = json.loads((tmp_path / "image" / "manifest.json").read_text())["controlnet"]
    assert units[0]["source"] == str(tmp_path / "control.png") and units[0]["mask"] == str(tmp_path / "mask.png")


def test_the_speed_up_switches_reach_the_controlnets(tiny_models, tmp_path):
    from dfm.runtime import speedups

    sd = load(tiny_models["folder"])
    forms = save_controlnet_forms(tmp_path / "cn", sd.unet, seed=51)
    sd.controlnets[str(forms["folder"])] = load_controlnet(sd, str(forms["folder"]), 1)
    speedups.apply(sd, speedups.Speedups(attention="math", channels_last="on"))
    net = sd.controlnets[str(forms["folder"])].net
    assert speedups.attention_processors(net) == "AttnProcessor"
    conv = net.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
