"""Rectified-flow models (SD3/SD3.5 and Flux) through dfm's renderer, on tiny random pipelines built offline
(tests/tiny_flow_models.py): the family told from the folder, prompts encoded as the pipelines encode them,
one frame's latents equal to diffusers' img2img/txt2img pipelines, and a 2D scene of 10 frames rendered
deterministically, byte for byte. What these models cannot do yet is refused before the first frame."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_flow_models import save_flow_models
from tiny_models import make_table, with_prompts

from dfm.runtime import RenderError
from dfm.runtime.device import pick_device
from dfm.runtime.flow_matching import unpack_latents
from dfm.runtime.frame import FrameRenderer
from dfm.runtime.model_source import resolve_source
from dfm.runtime.models import StableDiffusion
from dfm.runtime.prompts import PromptEncoder, flow_refusals
from dfm.runtime.render import render
from dfm.runtime.timing import StageTimer

SIZE = 32  # pixels; the tiny VAEs scale by 2: latents of 16x16, 8x8 image tokens
TOL = dict(rtol=0, atol=1e-5)
FAMILIES = {"sd3": ("sd3", "sd3"), "flux": ("flux-dev", "flux"), "flux_schnell": ("flux-schnell", "flux")}


@pytest.fixture(scope="module")
def flow_models(tmp_path_factory):
    torch.set_num_threads(1)
    return save_flow_models(tmp_path_factory.mktemp("flow_models"))


def load(folder) -> StableDiffusion:
    return StableDiffusion(resolve_source(str(folder)), pick_device("cpu", "auto"))


def flow_table(folder, n: int = 10, **overrides):
    """A 2D scene of `n` frames for a flow model: cadence 2, motion, colour coherence, a negative prompt."""
    kw = {**dict(mode="2d", model=str(folder), sampler="flow_euler", size=(SIZE, SIZE), cadence=2, angle=2.0,
                 zoom=1.02, translation_x=1.0, color_coherence="lab", cfg_scale=3.5), **overrides}
    table = make_table(n, **kw)
    prompts = ["a red cat"] * min(n, 5) + ["a blue dog"] * max(0, n - 5)
    return with_prompts(table, prompt=prompts, negative_prompt="blurry")


# ---- the family, the VAE, the prompts -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_is_told_from_the_folder(flow_models, name):
    sd = load(flow_models[f"{name}_folder"])
    fam, base = FAMILIES[name]
    assert (sd.model_family.name, sd.family, sd.is_flow) == (fam, base, True)
    sd.load()
    assert type(sd.unet).__name__ == ("SD3Transformer2DModel" if base == "sd3" else "FluxTransformer2DModel")
    assert sd.latent_channels == 16 and sd.latent_scale == 2


def test_vae_latents_are_shifted_and_scaled(flow_models):
    """encode_image/decode_latents use the VAE's shift factor as SD3's and Flux's pipelines do."""
    sd = load(flow_models["flux_folder"])
    frame = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    vae = sd.vae
    mode = vae.encode(frame * 2 - 1).latent_dist.mode()
    z = sd.encode_image(frame)
    assert torch.equal(z, (mode - vae.config.shift_factor) * vae.config.scaling_factor)
    want = vae.decode(z / vae.config.scaling_factor + vae.config.shift_factor).sample
    assert torch.equal(sd.decode_latents(z), (want / 2 + 0.5).clamp(0, 1))


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_prompt_embeddings_equal_the_pipelines(flow_models, name):
    """PromptEncoder's packed embeddings are the pipeline's `encode_prompt` (sequence, then the pooled row)."""
    from dfm.compiler.prompt_syntax import pieces_json

    sd = load(flow_models[f"{name}_folder"])
    pipe = flow_models[name]
    packed = PromptEncoder(sd)(pieces_json("a red cat"))
    cond = sd.flow_cond(packed)
    with torch.no_grad():  # as the pipeline calls it (CPU attention picks another kernel under autograd)
        if name == "sd3":
            embeds, _, pooled, _ = pipe.encode_prompt("a red cat", None, None, do_classifier_free_guidance=False,
                                                      max_sequence_length=sd.t5_max_length)
        else:
            embeds, pooled, _ = pipe.encode_prompt("a red cat", None, max_sequence_length=sd.t5_max_length)
    assert cond.embeds.shape == embeds.shape and cond.embeds.shape[1] == sd.t5_max_length + (77 if name == "sd3" else 0)
    torch.testing.assert_close(cond.embeds, embeds, rtol=0, atol=0)
    torch.testing.assert_close(cond.pooled, pooled, rtol=0, atol=0)
    assert packed[0, -1, cond.pooled.shape[-1]:].abs().sum() == 0  # the pooled row is zero-padded


# ---- one frame against diffusers' pipelines --------------------------------------------------------------------


def frame_latents(sd, table, i: int, source):
    renderer = FrameRenderer(table, sd, StageTimer(sd.placement.device))
    return renderer.latents(i, table.row(i), source)


def pipeline_latents(name, pipe, sd, row, init):
    """What diffusers' own pipeline gives for the row: its seed, steps, strength (effective_steps / steps),
    cfg_scale and prompts, from the same init latents (None: txt2img)."""
    from diffusers import FluxImg2ImgPipeline, StableDiffusion3Img2ImgPipeline

    steps, run = int(row["steps"]), int(row["effective_steps"])
    g = torch.Generator("cpu").manual_seed(int(row["seed"]))
    common = dict(num_inference_steps=steps, guidance_scale=float(row["cfg_scale"]), height=SIZE, width=SIZE,
                  generator=g, output_type="latent", max_sequence_length=sd.t5_max_length,
                  prompt=str(row["prompt"]))
    if name == "sd3":
        common["negative_prompt"] = str(row["negative_prompt"])
        if init is None:
            return pipe(**common).images
        return StableDiffusion3Img2ImgPipeline(**pipe.components)(image=init, strength=run / steps, **common).images
    if init is None:
        packed = pipe(**common).images
    else:
        packed = FluxImg2ImgPipeline(**pipe.components)(image=init, strength=run / steps, **common).images
    return unpack_latents(packed, SIZE // 2, SIZE // 2)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_img2img_latents_equal_diffusers(flow_models, name):
    """A diffused row's latents (through dfm's loaded model, FrameRenderer.latents and flow_denoise) equal
    diffusers' img2img pipeline for the same seed, init, steps, strength, guidance and prompts."""
    sd = load(flow_models[f"{name}_folder"])
    table = flow_table(flow_models[f"{name}_folder"])
    row = table.row(2)
    assert int(row["effective_steps"]) == 2 and int(row["steps"]) == 4
    source = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    got = frame_latents(sd, table, 2, source)
    want = pipeline_latents(name, flow_models[name], sd, row, sd.encode_image(source))
    assert got.shape == want.shape == (1, 16, SIZE // 2, SIZE // 2)
    torch.testing.assert_close(got, want, **TOL)
    assert (got - sd.encode_image(source)).abs().max() > 0.1  # the frame was really re-diffused


@pytest.mark.parametrize("name", ["sd3", "flux"])
def test_first_frame_latents_equal_diffusers_txt2img(flow_models, name):
    sd = load(flow_models[f"{name}_folder"])
    table = flow_table(flow_models[f"{name}_folder"])
    got = frame_latents(sd, table, 0, None)
    torch.testing.assert_close(got, pipeline_latents(name, flow_models[name], sd, table.row(0), None), **TOL)


def test_flux_dev_embeds_the_rows_cfg_scale(flow_models):
    """Flux-dev: the row's cfg_scale is the distilled guidance the transformer embeds (no negative pass)."""
    folder = flow_models["flux_folder"]
    sd = load(folder)
    source = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    a = frame_latents(sd, flow_table(folder, cfg_scale=1.0), 2, source)
    calls = sd.unet_calls
    b = frame_latents(sd, flow_table(folder, cfg_scale=6.0), 2, source)
    assert sd.unet_calls - calls == 2  # one transformer call per step, never an unconditional one
    assert (a - b).abs().max() > 1e-4


# ---- whole renders ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def two_renders(request, flow_models, tmp_path_factory):
    name = request.param
    folder = flow_models[f"{name}_folder"]
    table = flow_table(folder)
    outs = []
    for k in range(2):
        out = tmp_path_factory.mktemp(f"{name}_{k}") / "out"
        report = render(table, out, model=str(folder), device="cpu")
        outs.append((out, report))
    return name, table, outs


def test_a_2d_scene_renders_deterministically(two_renders):
    name, table, ((a, ra), (b, rb)) = two_renders
    frames_a = sorted((a / "frames").iterdir())
    assert [p.name for p in frames_a] == [f"{i:05d}.png" for i in range(10)]
    for p in frames_a:
        assert p.read_bytes() == (b / "frames" / p.name).read_bytes(), p.name
    assert (a / "video.mp4").read_bytes() == (b / "video.mp4").read_bytes()
    # cadence 2: diffusions at 0, 2, 4, 6, 8; frame 0 runs all 4 steps, the others effective_steps 2
    assert ra.frames == 10 and ra.unet_calls == 4 + 4 * 2 == rb.unet_calls
    guided = name == "sd3"  # SD3: CFG with the negative prompt, batched with the prompt in one call
    assert ra.unet_evals == (24 if guided else 12)
    encoders = {"sd3": 3, "flux": 2, "flux_schnell": 2}[name]
    prompts = 2 + (1 if guided else 0)  # two prompts; Flux never encodes the negative
    assert ra.text_encoder_calls == encoders * prompts
    m = json.loads((a / "manifest.json").read_text())
    assert m["sampler"] == "flow_euler" and m["frames"] == 10


def test_frames_differ_from_frame_to_frame(two_renders):
    """Not a constant image: the motion and the diffusions change the frames."""
    _, _, ((a, _), _) = two_renders
    frames = [p.read_bytes() for p in sorted((a / "frames").iterdir())]
    assert len(set(frames)) == len(frames)


# ---- refused before the first frame ------------------------------------------------------------------------------


def refused(folder, table, tmp_path) -> str:
    with pytest.raises(RenderError) as e:
        render(table, tmp_path / "out", model=str(folder), device="cpu")
    assert not (tmp_path / "out" / "frames").exists()
    return e.value.message


EDIT_SCENE = """dfm 1
mode 2d
frames 2
size 64x64
model "{model}"
steps 4
strength 0.5
seed 5
{cfg}
prompt 0 "{prompt}"
"""


def scene_render(folder, prompt: str, out: Path, cfg: str = ""):
    """The scene above compiled (the compiler's own prompt lowering) and rendered: (report, table, frames)."""
    from dfm.api import compile_text

    table = compile_text(EDIT_SCENE.format(model=folder, prompt=prompt, cfg=cfg))
    report = render(table, out, model=str(folder), device="cpu")
    return report, table, [np.asarray(Image.open(p), dtype=np.int16) for p in sorted((out / "frames").iterdir())]


@pytest.mark.parametrize("name", ["flux", "sd3"])
def test_prompt_editing_switches_the_text_between_steps(flow_models, name, tmp_path):
    folder = flow_models[f"{name}_folder"]
    _, _, cat = scene_render(folder, "a red cat", tmp_path / "cat")
    _, _, dog = scene_render(folder, "a red dog", tmp_path / "dog")
    _, _, never = scene_render(folder, "a red [cat:dog:10]", tmp_path / "never")  # after the last step
    report, table, edited = scene_render(folder, "a red [cat:dog:2]", tmp_path / "edited")
    assert all((a == b).all() for a, b in zip(never, cat, strict=True))
    assert not (edited[0] == cat[0]).all() and not (edited[0] == dog[0]).all()
    assert report.unet_evals == int(table["unet_evals"].sum())


def test_a_composable_prompt_on_flux_is_a_blend_of_its_parts_velocities(flow_models, tmp_path):
    """Flux runs no unconditional pass: `a AND b` is the blend of the parts' velocities, weights summing to 1,
    so a prompt ANDed with itself is the prompt (to the last bits of a batch of 2 against 1)."""
    folder = flow_models["flux_folder"]
    _, _, cat = scene_render(folder, "a red cat", tmp_path / "cat")
    _, _, dog = scene_render(folder, "a red dog", tmp_path / "dog")
    report, table, twice = scene_render(folder, "a red cat AND a red cat", tmp_path / "twice")
    assert all(np.abs(a - b).max() <= 1 for a, b in zip(twice, cat, strict=True))
    assert report.unet_evals == int(table["unet_evals"].sum()) == 2 * (4 + 2)  # two parts a step, no uncond
    _, _, both = scene_render(folder, "a red cat AND a red dog :0.5", tmp_path / "both")
    assert not (both[0] == cat[0]).all() and not (both[0] == dog[0]).all()


def test_a_composable_prompt_on_sd3_is_a1111s_composable_guidance(flow_models, tmp_path):
    """SD3 above cfg 1: `v_u + cfg * sum(w_i (v_i - v_u))`, the unconditional pass batched with both parts."""
    from dfm.runtime.flow_matching import FlowCond, composed_velocity

    folder = flow_models["sd3_folder"]
    report, table, frames = scene_render(folder, "a red cat AND a red dog :0.5", tmp_path / "both", cfg="cfg_scale 4")
    assert report.unet_evals == int(table["unet_evals"].sum()) == 3 * (4 + 2)
    calls = []

    def velocity(latents, t, cond, guidance=None):
        calls.append(latents.shape[0])
        return cond.embeds[:, :1, :1].reshape(-1, 1, 1, 1).expand_as(latents) * 1.0

    cond = lambda x: FlowCond(torch.full((1, 2, 3), float(x)), torch.zeros(1, 3))  # noqa: E731
    v = composed_velocity(velocity, torch.zeros(1, 1, 2, 2), torch.tensor(1.0), [(1.0, cond(3)), (0.5, cond(5))],
                          cond(1), 4.0)
    assert calls == [3] and torch.equal(v, torch.full((1, 1, 2, 2), 1 + 4 * (1 * (3 - 1) + 0.5 * (5 - 1))))


def test_an_sd_sampler_on_a_flow_model_is_refused(flow_models, tmp_path):
    folder = flow_models["sd3_folder"]
    assert "flow_euler" in refused(folder, flow_table(folder, n=3, sampler="euler"), tmp_path)


def test_an_embedding_on_a_flow_model_is_refused_without_loading_it(flow_models):
    """`flow_refusals` needs only the family (configs), so the load stage can call it before any weight.
    LoRAs load onto the transformer (tests/test_flow_lora.py); textual-inversion embeddings do not yet."""
    folder = flow_models["flux_schnell_folder"]
    sd = load(folder)
    with pytest.raises(RenderError, match="embeddings"):
        flow_refusals(flow_table(folder, n=3).with_settings(embedding=("x.safetensors",)), sd)
    flow_refusals(flow_table(folder, n=3).with_settings(lora=("x.safetensors",)), sd)  # a LoRA is not refused
    assert "unet" not in sd.__dict__ and "vae" not in sd.__dict__


def test_a_size_off_the_patch_grid_is_refused(flow_models, tmp_path):
    folder = flow_models["flux_folder"]
    assert "multiples of 16" in refused(folder, flow_table(folder, n=3, size=(40, 40)), tmp_path)


def test_the_flow_sampler_on_an_sd_model_is_refused(tiny_models, tmp_path):
    table = make_table(3, mode="2d", model=str(tiny_models["folder"]), sampler="flow_euler")
    assert "rectified-flow" in refused(tiny_models["folder"], table, tmp_path)


# ---- a scene through the compiler ----------------------------------------------------------------------------------

SCENE = """dfm 1
mode 2d
model "{model}"
size 64x64
frames 10
cadence 2
steps 4
strength 0.5
seed 5
prompt 0 "a cat"
prompt 5 "a dog"
zoom 0:(1.02)
angle 0:(1)
"""


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_a_compiled_scene_renders_with_the_familys_defaults(flow_models, name, tmp_path):
    """A .dfm scene naming the folder compiles with the family's sampler and guidance, and renders."""
    from dfm.api import compile_text

    text = SCENE.format(model=flow_models[f"{name}_folder"])
    table = compile_text(text, "scene.dfm")
    assert table.settings.sampler == "flow_euler"
    report = render(table, tmp_path / "out", scene_text=text, device="cpu")
    assert report.frames == 10 and report.unet_calls == 4 + 4 * 2
    assert len(list((tmp_path / "out" / "frames").iterdir())) == 10


def test_an_edited_scene_keeps_frames_and_replays_to_the_full_renders_bytes(flow_models, tmp_path):
    """Incremental re-render on Flux: an edit at frame 7 keeps frames 0-5 (their diffusions replayed from the
    kept latents, decoded with the VAE's shift) and renders the rest to the bytes of a full render."""
    folder = flow_models["flux_schnell_folder"]
    before = flow_table(folder)
    after = with_prompts(before, prompt=["a red cat"] * 7 + ["a green bird"] * 3)
    out = tmp_path / "edited"
    render(before, out, model=str(folder), device="cpu")
    report = render(after, out, model=str(folder), device="cpu")
    assert report.kept_frames == 6 and report.unet_calls == 2 * 2  # diffusions 6 and 8 again, 2 steps each
    full = tmp_path / "full"
    render(after, full, model=str(folder), device="cpu")
    for p in sorted((full / "frames").iterdir()):
        assert p.read_bytes() == (out / "frames" / p.name).read_bytes(), p.name


def test_what_a_flow_model_ignores_is_said(flow_models):
    """Flux-dev warns that it ignores the negative prompt, schnell that it ignores cfg_scale; attention
    weights and clip_skip have no effect on either family (T5 reads the text as written)."""
    from dfm.runtime.prompts import prompt_warnings

    dev = load(flow_models["flux_folder"])
    table = with_prompts(flow_table(flow_models["flux_folder"], n=3, clip_skip=2), prompt="a (red:1.3) cat")
    said = " | ".join(prompt_warnings(table, dev))
    assert "ignores negative prompts" in said and "attention weights" in said and "clip_skip" in said
    schnell = load(flow_models["flux_schnell_folder"])
    assert any("cfg_scale is ignored" in w for w in prompt_warnings(flow_table(flow_models["flux_schnell_folder"],
                                                                                n=3), schnell))
    sd3 = load(flow_models["sd3_folder"])  # SD3 reads its negative prompt (CFG): nothing to say about it
    assert not any("negative" in w for w in prompt_warnings(flow_table(flow_models["sd3_folder"], n=3), sd3))


def single_file(folder: Path, where: Path, *, beside: bool) -> Path:
    """The transformer of the model in `folder` as one .safetensors file in `where` (diffusers' layout), with
    the model's other parts beside it (`beside`: model_index.json and its folders, the transformer's config
    only) or nothing."""
    from safetensors.torch import save_file

    where.mkdir(parents=True)
    if beside:
        shutil.copytree(folder, where, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.safetensors"))
        for part in ("text_encoder", "text_encoder_2", "text_encoder_3", "vae"):
            for f in (folder / part).glob("*.safetensors"):
                shutil.copy(f, where / part / f.name)
    sd = load(folder)
    state = {k: v.contiguous() for k, v in sd.unet.state_dict().items()}
    path = where / "model.safetensors"
    save_file(state, str(path))
    return path


def cached_hub_snapshot(repo: str, folder: Path) -> Path:
    """`folder` (its transformer weights left out) placed in the local Hugging Face cache as `repo`'s snapshot,
    as a download of it would be."""
    from huggingface_hub import constants

    root = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
    commit = "0" * 40
    snap = root / "snapshots" / commit
    shutil.copytree(folder, snap, ignore=lambda d, names: [n for n in names if Path(d).name == "transformer"
                                                            and n.endswith(".safetensors")])
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)
    return snap


def frames_of(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "frames").iterdir())}


@pytest.mark.parametrize("name", ["sd3", "flux"])
def test_a_single_file_transformer_beside_its_model_folder_renders_as_the_folder(flow_models, name, tmp_path):
    folder = flow_models[f"{name}_folder"]
    path = single_file(folder, tmp_path / "single", beside=True)
    sd = load(path)
    assert (sd.model_family.name, sd.parts_folder) == (FAMILIES[name][0], path.parent)
    table = flow_table(folder, n=3)
    want = render(table, tmp_path / "want", model=str(folder), device="cpu")
    got = render(table, tmp_path / "got", model=str(path), device="cpu")
    assert got.frames == want.frames == 3 and frames_of(tmp_path / "got") == frames_of(tmp_path / "want")


def test_a_lone_single_file_takes_its_parts_from_the_familys_hub_repo(flow_models, tmp_path):
    """BFL ship flux1-dev.safetensors as the transformer alone: its encoders and VAE come from
    black-forest-labs/FLUX.1-dev (here a cached snapshot, as after a download); not cached and offline, the
    error names the repo and how to get it."""
    folder = flow_models["flux_folder"]
    path = single_file(folder, tmp_path / "alone", beside=False)
    snap = cached_hub_snapshot("black-forest-labs/FLUX.1-dev", folder)
    try:
        sd = load(path)
        assert sd.model_family.name == "flux-dev" and sd.parts_folder.resolve() == snap.resolve()
        table = flow_table(folder, n=2)
        render(table, tmp_path / "want", model=str(folder), device="cpu")
        render(table, tmp_path / "got", model=str(path), device="cpu")
        assert frames_of(tmp_path / "got") == frames_of(tmp_path / "want")
    finally:
        shutil.rmtree(snap.parents[1])
    schnell = single_file(flow_models["flux_schnell_folder"], tmp_path / "schnell", beside=False)
    with pytest.raises(RenderError) as e:
        render(flow_table(folder, n=2, cfg_scale=0.0), tmp_path / "no", model=str(schnell), device="cpu")
    assert "black-forest-labs/FLUX.1-schnell" in str(e.value) and "holds its transformer only" in str(e.value)
    assert "model_index.json" in e.value.help and not (tmp_path / "no").exists()


def test_a_single_file_flux_fill_model_is_refused_by_name(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "flux1-fill-dev.safetensors"
    save_file({"double_blocks.0.img_attn.qkv.weight": torch.zeros(2, 2), "img_in.weight": torch.zeros(4, 384)},
              str(path))
    with pytest.raises(RenderError, match="Fill"):
        _ = load(path).model_family


@pytest.mark.parametrize("name", ["sd3", "flux"])
@pytest.mark.parametrize("mode", ["3d", "interpolation", "none", "video"])
def test_every_mode_renders_on_a_flow_model(flow_models, name, mode, tmp_path):
    """3D (a depth-warped camera), interpolation (blended prompt embeddings, pooled row included), stills and
    video input (each row img2img from its own input frame) only see images and embeddings: they render on a
    flow model as on SD."""
    extra = {}
    if mode == "video":
        clip = Path(__file__).resolve().parents[1] / "examples" / "input.mp4"
        extra = dict(video_init_path=str(clip), strength=0.5, steps=4)
    if mode == "3d":
        from tiny_models import save_depth_models

        extra = dict(depth_model=str(save_depth_models(tmp_path / "depth")["dpt"]), use_depth_warping=True,
                     translation_z=2.0)
    folder = flow_models[f"{name}_folder"]
    table = make_table(4, mode=mode, model=str(folder), sampler="flow_euler", size=(SIZE, SIZE), **extra)
    report = render(table, tmp_path / "out", model=str(folder), device="cpu")
    assert report.frames == 4
    # 3D: img2img after frame 0; video: every row img2img at strength 0.5, int(0.5 × 4) steps
    assert report.unet_calls == {"3d": 4 + 3 * 2, "video": 4 * 2}.get(mode, 4 * 4)
    assert len(set(p.read_bytes() for p in (tmp_path / "out" / "frames").iterdir())) == 4


def test_auto_precision_is_bf16_for_flow_models_on_a_gpu_that_has_it(monkeypatch, tmp_path):
    """`--dtype auto`: bf16 for Flux/SD3 on a GPU of compute capability 8+, fp16 below it and for SD; fp32 on
    the CPU whatever the family."""
    import torch

    from dfm.runtime import device as dv
    from dfm.runtime.render import wants_bf16

    cuda = torch.device("cuda")
    for capability, flow, want in [((8, 0), True, torch.bfloat16), ((7, 5), True, torch.float16),
                                   ((9, 0), False, torch.float16)]:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None, c=capability: c)
        assert dv._dtype(cuda, "auto", bf16_first=flow) is want
    assert dv._dtype(torch.device("cpu"), "auto", bf16_first=True) is torch.float32
    assert wants_bf16("black-forest-labs/FLUX.1-schnell", "")
    assert wants_bf16("stabilityai/stable-diffusion-3.5-large", "")
    assert not wants_bf16("stable-diffusion-v1-5/stable-diffusion-v1-5", "")
    assert not wants_bf16(str(tmp_path / "missing-sd15-model"), "")


# ---- memory: the transformer and T5 offloaded -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["sd3", "flux"])
def test_group_offloading_keeps_the_frames_bytes_and_is_recorded(flow_models, name, tmp_path):
    """`--offload group`: the transformer and the T5 encoder stay in CPU memory and run a block at a time (on a
    GPU, moved to it as they run); the arithmetic is the same, so the frames are byte-identical. Here, on the CPU,
    the hooks run but move nothing: the moves themselves are exercised only on a GPU."""
    from dfm.runtime.speedups import Speedups

    folder = flow_models[f"{name}_folder"]
    table = flow_table(folder, n=3)
    render(table, tmp_path / "plain", model=str(folder), device="cpu")
    models: dict = {}
    render(table, tmp_path / "offloaded", model=str(folder), device="cpu", speed=Speedups(offload="group"),
           models=models)
    assert frames_of(tmp_path / "offloaded") == frames_of(tmp_path / "plain")
    (sd,) = [m for k, m in models.items() if k[0] == "sd"]
    t5 = "text_encoder_3" if name == "sd3" else "text_encoder_2"
    assert sd.offloaded_parts == ("transformer", t5)
    assert getattr(sd.unet, "_dfm_offloaded", False) and getattr(sd.t5_encoder, "_dfm_offloaded", False)
    assert json.loads((tmp_path / "offloaded" / "manifest.json").read_text())["offloaded"] == ["transformer", t5]
    assert json.loads((tmp_path / "plain" / "manifest.json").read_text())["offloaded"] == []


def test_auto_offloads_only_where_the_weights_do_not_fit_the_free_gpu_memory(flow_models, monkeypatch, tmp_path):
    from dfm.runtime import speedups

    sd = load(flow_models["flux_folder"])
    need = speedups.weight_bytes(sd)
    pipe = flow_models["flux"]
    params = sum(p.numel() for m in (pipe.transformer, pipe.text_encoder, pipe.text_encoder_2, pipe.vae)
                 for p in m.parameters())
    assert need == params * 4  # fp32 on the CPU: every weight of the four parts, read from the headers
    assert speedups.resolve_offload(speedups.Speedups(), sd) == "off"  # the CPU: nothing to offload to
    assert speedups.resolve_offload(speedups.Speedups(offload="group"), sd) == "group"

    class Cuda:
        type = "cuda"

    monkeypatch.setattr(sd, "placement", type("P", (), {"device": Cuda(), "dtype": torch.float32})())
    for free, want in ((need * 2, "off"), (need, "group")):
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device, free=free: (free, free * 2))
        assert speedups.resolve_offload(speedups.Speedups(), sd) == want
    # a ControlNet stays on the GPU beside it: its weights count too (asked for only on CUDA)
    from safetensors.torch import save_file

    unit = tmp_path / "cn.safetensors"
    save_file({"w": torch.zeros(need // 4 + 1)}, str(unit))  # as many fp32 bytes again
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (need * 1.5, need * 3))
    assert speedups.resolve_offload(speedups.Speedups(), sd) == "off"
    assert speedups.resolve_offload(speedups.Speedups(), sd, lambda: [unit]) == "group"


@pytest.mark.parametrize("mode", ["none", "interpolation"])
def test_a_sharded_flow_render_is_the_local_render(flow_models, mode, tmp_path):
    """The Ray worker's code (run here by LocalPool) renders a flow model's rows as a local render does."""
    from dfm.scaleout.cluster import LocalPool
    from dfm.scaleout.shard import render_sharded

    folder = flow_models["flux_folder"]
    table = make_table(4, mode=mode, model=str(folder), sampler="flow_euler", size=(SIZE, SIZE))
    render(table, tmp_path / "local", model=str(folder), device="cpu")
    with LocalPool("cpu") as pool:
        report = render_sharded(table, tmp_path / "sharded", pool, chunk=1)
    assert report.frames == 4 and frames_of(tmp_path / "sharded") == frames_of(tmp_path / "local")


# ---- Flux.1 Kontext: the frame's source as its context image ------------------------------------------------


@pytest.fixture(scope="module")
def kontext_folder(flow_models, tmp_path_factory):
    """The tiny Flux pipeline's parts as a FluxKontextPipeline folder (Kontext is [dev]-shaped)."""
    from diffusers import FluxKontextPipeline

    folder = tmp_path_factory.mktemp("kontext") / "tiny-flux-kontext"
    FluxKontextPipeline(**flow_models["flux"].components).save_pretrained(str(folder), safe_serialization=True)
    return folder


def test_kontext_reads_the_source_as_its_context_and_equals_diffusers(flow_models, kontext_folder):
    """At strength 0 a Kontext frame starts from noise, as FluxKontextPipeline does, with the frame's source
    (the warped previous frame) as its context image: the latents are the pipeline's for the same seed."""
    from diffusers import FluxKontextPipeline

    sd = load(kontext_folder)
    assert sd.model_family.name == "flux-kontext" and sd.model_family.guidance_embedded
    table = flow_table(kontext_folder, strength=0.0)
    row = table.row(2)
    assert int(row["effective_steps"]) == int(row["steps"]) == 4
    source = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    got = frame_latents(sd, table, 2, source)
    pipe = FluxKontextPipeline.from_pretrained(str(kontext_folder), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    packed = pipe(image=sd.encode_image(source), prompt=str(row["prompt"]), height=SIZE, width=SIZE,
                  num_inference_steps=4, guidance_scale=float(row["cfg_scale"]),
                  generator=torch.Generator("cpu").manual_seed(int(row["seed"])), output_type="latent",
                  max_sequence_length=sd.t5_max_length, _auto_resize=False, max_area=SIZE * SIZE).images
    torch.testing.assert_close(got, unpack_latents(packed, SIZE // 2, SIZE // 2), **TOL)
    dev = frame_latents(load(flow_models["flux_folder"]), flow_table(flow_models["flux_folder"], strength=0.0), 2,
                        source)
    assert (got - dev).abs().max() > 1e-3  # the context changed the frame


def test_a_kontext_scene_renders_with_its_defaults_and_refuses_controlnet(kontext_folder, tmp_path):
    from dfm.api import compile_result

    text = f'dfm 1\nmode 2d\nframes 3\nsize 64x64\nmodel "{kontext_folder}"\nprompt 0 "make it night"\n'
    r = compile_result(text, str(tmp_path / "k.dfm"))
    assert r.ok and set(r.table["cfg_scale"]) == {2.5} and set(r.table["steps"]) == {28}
    assert any("Flux.1 Kontext [dev]" in d.message for d in r.diagnostics if d.code == "DFM207")
    table = compile_result(text + "steps 4\n", str(tmp_path / "k.dfm")).table
    report = render(table, tmp_path / "out", model=str(kontext_folder), device="cpu")
    assert report.frames == 3 and report.unet_evals == int(table["unet_evals"].sum())
    cn = compile_result(text + 'cn_1_model "some/flux-controlnet"\ncn_1_loopback_mode true\n',
                        str(tmp_path / "k.dfm"))
    assert any(d.code == "DFM407" and "Kontext" in d.message and d.is_error for d in cn.diagnostics)


def test_true_cfg_makes_flux_read_its_negative_prompt_as_diffusers_does(flow_models):
    """`true_cfg_scale` above 1: a second pass with the negative prompt, `v_neg + s·(v − v_neg)`, beside the
    embedded guidance (FluxImg2ImgPipeline's true_cfg_scale); at 1, Flux as before."""
    from diffusers import FluxImg2ImgPipeline

    folder = flow_models["flux_folder"]
    sd = load(folder)
    table = flow_table(folder, true_cfg_scale=3.0)
    row = table.row(2)
    source = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    got = frame_latents(sd, table, 2, source)
    steps, run = int(row["steps"]), int(row["effective_steps"])
    packed = FluxImg2ImgPipeline(**flow_models["flux"].components)(
        image=sd.encode_image(source), strength=run / steps, num_inference_steps=steps, height=SIZE, width=SIZE,
        prompt=str(row["prompt"]), negative_prompt=str(row["negative_prompt"]), true_cfg_scale=3.0,
        guidance_scale=float(row["cfg_scale"]), generator=torch.Generator("cpu").manual_seed(int(row["seed"])),
        output_type="latent", max_sequence_length=sd.t5_max_length).images
    torch.testing.assert_close(got, unpack_latents(packed, SIZE // 2, SIZE // 2), **TOL)
    plain = frame_latents(sd, flow_table(folder), 2, source)
    assert (got - plain).abs().max() > 1e-3
