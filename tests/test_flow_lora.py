"""LoRAs on rectified-flow models (Flux, SD3): a diffusers-format LoRA (`transformer.` keys) loaded into the
tiny pipelines' transformers through diffusers' loader, with each frame's weight from `lora_weights` (the
first of the pair), as runtime/networks.py does for SD's UNet."""

from __future__ import annotations

import json

import pytest
import torch
from test_flow_render import TOL, flow_table, load, pipeline_latents
from tiny_flow_models import save_flow_models

from dfm.runtime import RenderError
from dfm.runtime.render import render

RANK = 2
TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


@pytest.fixture(scope="module")
def flow_models(tmp_path_factory):
    torch.set_num_threads(1)
    return save_flow_models(tmp_path_factory.mktemp("flow_lora_models"))


def lora_state(folder, family: str, seed: int) -> dict[str, torch.Tensor]:
    """A random rank-2 LoRA on the transformer's attention projections, with diffusers' `transformer.` keys."""
    from diffusers import FluxTransformer2DModel, SD3Transformer2DModel
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    cls = FluxTransformer2DModel if family == "flux" else SD3Transformer2DModel
    model = cls.from_pretrained(str(folder), subfolder="transformer")
    torch.manual_seed(seed)
    config = LoraConfig(r=RANK, lora_alpha=RANK, init_lora_weights=False, target_modules=TARGETS)
    model = inject_adapter_in_model(config, model)
    return {f"transformer.{k}": v.contiguous() * 0.5 for k, v in get_peft_model_state_dict(model).items()}


@pytest.fixture(scope="module")
def lora_files(flow_models, tmp_path_factory):
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("flow_loras")
    out = {}
    for family in ("flux", "sd3"):
        state = lora_state(flow_models[f"{family}_folder"], family, seed=7)
        save_file(state, str(root / f"{family}.safetensors"))
        out[family] = (root / f"{family}.safetensors", state)
    for family, encoders in (("flux", ("text_encoder",)), ("sd3", ("text_encoder", "text_encoder_2"))):
        state = dict(out[family][1])
        for k, attr in enumerate(encoders):
            state.update(encoder_lora(flow_models[f"{family}_folder"], attr, seed=11 + k))
        save_file(state, str(root / f"{family}_te.safetensors"))
        out[f"{family}_te"] = (root / f"{family}_te.safetensors", state)
    t5 = dict(out["flux"][1])
    t5["text_encoder_2.encoder.block.0.layer.0.SelfAttention.q.lora_A.weight"] = torch.randn(RANK, 8)
    t5["text_encoder_2.encoder.block.0.layer.0.SelfAttention.q.lora_B.weight"] = torch.randn(8, RANK)
    save_file(t5, str(root / "with_t5.safetensors"))
    out["with_t5"] = (root / "with_t5.safetensors", t5)
    return out


def encoder_lora(folder, attr: str, seed: int) -> dict[str, torch.Tensor]:
    """A random rank-2 LoRA on a CLIP encoder's attention projections, with diffusers' `<attr>.` keys."""
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    cls = CLIPTextModelWithProjection if (folder / attr / "config.json").read_text().count("WithProjection") \
        else CLIPTextModel
    model = cls.from_pretrained(str(folder), subfolder=attr)
    torch.manual_seed(seed)
    config = LoraConfig(r=RANK, lora_alpha=RANK, init_lora_weights=False,
                        target_modules=["q_proj", "k_proj", "v_proj", "out_proj"])
    model = inject_adapter_in_model(config, model)
    return {f"{attr}.{k}": v.contiguous() for k, v in get_peft_model_state_dict(model).items()}


def lora_table(folder, path, weights: list[float], text: list[float] | None = None, **kw):
    """A scene of len(weights) frames, cadence 1, with one LoRA whose transformer (and text-encoder: `text`,
    else 1) weight per frame is given."""
    table = flow_table(folder, n=len(weights), cadence=1, **kw).with_settings(lora=(str(path),))
    text = text or [1.0] * len(weights)
    return table.with_columns(lora_weights=[json.dumps([[w, t]]) for w, t in zip(weights, text, strict=True)])


def lora_latents(sd, table, i: int):
    """Row i's txt2img latents through FrameRenderer, its LoRA weights set first (as `diffuse` sets them)."""
    from dfm.runtime.frame import FrameRenderer
    from dfm.runtime.timing import StageTimer

    renderer = FrameRenderer(table, sd, StageTimer(sd.placement.device))
    row = table.row(i)
    renderer.prompts = renderer.networks.apply(row, i)
    return renderer.latents(i, row, None)


def pipeline_with_lora(flow_models, family: str, state: dict, weight: float):
    """diffusers' own pipeline of the tiny model with the LoRA `state` loaded by its `load_lora_weights`, at
    `weight` on every part it adapts."""
    pipe = type(flow_models[family]).from_pretrained(str(flow_models[f"{family}_folder"]), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(dict(state), adapter_name="x")
    pipe.set_adapters(["x"], [weight])
    return pipe


def frames_of(table, folder, out):
    report = render(table, out, model=str(folder), device="cpu")
    return [p.read_bytes() for p in sorted((out / "frames").iterdir())], report


@pytest.fixture(scope="module")
def flux_renders(flow_models, lora_files, tmp_path_factory):
    """The Flux scene of 4 frames without a LoRA, with it at 0, at 1, and keyframed 0:(0), 2:(1)."""
    folder = flow_models["flux_folder"]
    path = lora_files["flux"][0]
    tables = {
        "none": flow_table(folder, n=4, cadence=1),
        "zero": lora_table(folder, path, [0, 0, 0, 0]),
        "one": lora_table(folder, path, [1, 1, 1, 1]),
        "keyed": lora_table(folder, path, [0, 0, 1, 1]),
    }
    return {k: frames_of(t, folder, tmp_path_factory.mktemp(k) / "out")[0] for k, t in tables.items()}


def test_weight_zero_renders_as_without_the_lora(flux_renders):
    assert len(flux_renders["none"]) == 4
    assert flux_renders["zero"] == flux_renders["none"]


def test_weight_one_changes_every_frame(flux_renders):
    assert all(a != b for a, b in zip(flux_renders["one"], flux_renders["none"], strict=True))


def test_keyframed_weight_changes_only_the_frames_from_its_key(flux_renders):
    keyed, none, one = flux_renders["keyed"], flux_renders["none"], flux_renders["one"]
    assert keyed[:2] == none[:2]
    assert keyed[2] != none[2] and keyed[3] != none[3]
    assert keyed[2] != one[2]  # frame 2 starts from frame 1, made without the LoRA


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_frame_latents_equal_diffusers_with_the_lora(flow_models, lora_files, family):
    """One frame's latents with the LoRA at 0.7 equal diffusers' pipeline with the same LoRA loaded by its
    own `load_lora_weights` and set to 0.7; and at 0 they equal the pipeline without it."""
    folder = flow_models[f"{family}_folder"]
    path, state = lora_files[family]
    table = lora_table(folder, path, [0.7, 0.0])
    sd = load(folder)
    sd.load()  # loaded: the renderer installs the LoRA itself
    got = lora_latents(sd, table, 0)
    plain = pipeline_latents(family, flow_models[family], sd, table.row(0), None)
    want = pipeline_latents(family, pipeline_with_lora(flow_models, family, state, 0.7), sd, table.row(0), None)
    torch.testing.assert_close(got, want, **TOL)
    assert (got - plain).abs().max() > 1e-3  # the LoRA really changed the frame
    without = pipeline_latents(family, flow_models[family], sd, table.row(1), None)
    torch.testing.assert_close(lora_latents(sd, table, 1), without, **TOL)  # weight 0: as without the LoRA


def test_an_sd3_render_with_a_lora_differs_only_where_weighted(flow_models, lora_files, tmp_path):
    folder = flow_models["sd3_folder"]
    path = lora_files["sd3"][0]
    none, _ = frames_of(flow_table(folder, n=3, cadence=1), folder, tmp_path / "none")
    keyed, _ = frames_of(lora_table(folder, path, [0, 1, 1]), folder, tmp_path / "keyed")
    assert keyed[0] == none[0] and keyed[1] != none[1] and keyed[2] != none[2]


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_a_lora_of_the_transformer_and_the_clip_encoders_equals_diffusers(flow_models, lora_files, family):
    """A LoRA that adapts the CLIP encoders too (Flux: CLIP-L; SD3: CLIP-L and CLIP-G), both weights 0.7: the
    frame's latents equal diffusers' pipeline with the LoRA loaded by `load_lora_weights` at 0.7; its
    text-encoder weight at 0 gives the transformer-only frame, through a prompt cache of its own."""
    folder = flow_models[f"{family}_folder"]
    path, state = lora_files[f"{family}_te"]
    table = lora_table(folder, path, [0.7, 0.7], text=[0.7, 0.0])
    sd = load(folder)
    sd.load()
    got = lora_latents(sd, table, 0)
    want = pipeline_latents(family, pipeline_with_lora(flow_models, family, state, 0.7), sd, table.row(0), None)
    torch.testing.assert_close(got, want, **TOL)
    transformer_only = lora_table(folder, lora_files[family][0], [0.7, 0.7])
    other = load(folder)
    other.load()
    torch.testing.assert_close(lora_latents(sd, table, 1), lora_latents(other, transformer_only, 1), **TOL)
    assert (got - lora_latents(sd, table, 1)).abs().max() > 1e-4  # the encoders' layers changed the prompt


def test_a_t5_lora_is_refused_naming_the_encoder(flow_models, lora_files, tmp_path):
    folder = flow_models["flux_folder"]
    with pytest.raises(RenderError, match="T5 encoder"):
        render(lora_table(folder, lora_files["with_t5"][0], [1, 1]), tmp_path / "out", model=str(folder),
               device="cpu")


def test_an_sd_lora_on_flux_is_refused(flow_models, lora_files, tmp_path):
    """The SD3 LoRA's layers do not fit Flux's transformer: a RenderError naming the file."""
    folder = flow_models["flux_folder"]
    with pytest.raises(RenderError, match="sd3.safetensors"):
        render(lora_table(folder, lora_files["sd3"][0], [1, 1]), tmp_path / "out", model=str(folder),
               device="cpu")


def test_embeddings_stay_refused(flow_models):
    from dfm.runtime.prompts import flow_refusals

    folder = flow_models["flux_folder"]
    with pytest.raises(RenderError, match="embeddings"):
        flow_refusals(flow_table(folder, n=2).with_settings(embedding=("x.safetensors",)), load(folder))
    flow_refusals(flow_table(folder, n=2).with_settings(lora=("x.safetensors",)), load(folder))  # not refused


def test_a_lora_on_an_offloaded_transformer_renders_the_same_bytes(flow_models, lora_files, tmp_path):
    """`--offload group` applies after the LoRA's layers are in: they move with their blocks, and the frames
    are those of the render without offloading. On this CPU the hooks run but move nothing (onload and offload
    devices are both the CPU): a device-move bug shows only on a GPU (`make bench-gpu`'s flow case with
    `--offload group`)."""
    from dfm.runtime.speedups import Speedups

    folder = flow_models["flux_folder"]
    table = lora_table(folder, lora_files["flux_te"][0], [0.0, 1.0, 0.5], text=[1.0, 0.0, 1.0])
    plain, _ = frames_of(table, folder, tmp_path / "plain")
    render(table, tmp_path / "offloaded", model=str(folder), device="cpu", speed=Speedups(offload="group"))
    offloaded = [p.read_bytes() for p in sorted((tmp_path / "offloaded" / "frames").iterdir())]
    assert offloaded == plain and len(set(plain)) == 3
