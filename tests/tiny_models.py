"""Tiny random Stable Diffusion models and hand-made FrameTables for the runtime tests.

The model follows the shape of diffusers' own fast-test configuration (a UNet with block widths 4 and
8); the tokenizer is written here (byte-level BPE, no download); the single-file form is made by our own
diffusers -> original LDM key converter, the layout A1111/Civitai checkpoints use.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from dfm.compiler import catalogue

# ---- tokenizer ---------------------------------------------------------------------------------------------


def byte_symbols() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for bytes (GPT-2/CLIP's table), in byte order."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    extra = iter(range(256, 512))
    table = {b: chr(b) if b in printable else chr(next(extra)) for b in range(256)}
    return [table[b] for b in range(256)]


def write_tokenizer(folder: Path, words: tuple[str, ...] = ("a", "cat", "dog", "red", "blue")) -> Path:
    """vocab.json + merges.txt of a tiny CLIP tokenizer: every byte, every byte ending a word, a few
    merged words, and the two specials. Any text tokenizes without unknown tokens."""
    folder.mkdir(parents=True, exist_ok=True)
    symbols = byte_symbols()
    vocab = symbols + [s + "</w>" for s in symbols]
    merges = []
    for word in words:
        if len(word) < 2:
            continue
        left = word[0]
        for k, ch in enumerate(word[1:], start=1):
            right = ch + ("</w>" if k == len(word) - 1 else "")
            merges.append(f"{left} {right}")
            left += right
            if left not in vocab:
                vocab.append(left)
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return folder


# ---- the model -------------------------------------------------------------------------------------------


# the UNet shape of both tiny models (SD 1.x here, SDXL in sdxl_models.py); each adds its own conditioning
TINY_UNET = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    block_out_channels=(4, 8),
    layers_per_block=1,
    norm_num_groups=2,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
)


def tiny_vae(**config):
    """The tiny VAE of both tiny models (seeded), with `config` on top (SDXL's scaling_factor)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(1)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=[4, 8],
        norm_num_groups=2,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        **config,
    )


def build_pipeline(workdir: Path):
    """A tiny StableDiffusionPipeline (random weights, seeded), fully offline."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(write_tokenizer(workdir / "tok")), model_max_length=77)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**TINY_UNET, cross_attention_dim=8)
    vae = tiny_vae()
    torch.manual_seed(2)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tok),
            hidden_size=8,
            intermediate_size=16,
            num_attention_heads=2,
            num_hidden_layers=2,
            max_position_embeddings=77,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            layer_norm_eps=1e-5,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tok,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )


# ---- diffusers -> LDM keys -----------------------------------------------------------------------------

_RESNET_UNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}


def unet_key_to_ldm(key: str, layers: int, has_up_attention: set[int]) -> str:
    """One diffusers UNet key -> its original LDM name (SD 1.x layout, any depth)."""
    per = layers + 1  # LDM numbers each level's resnets plus its down/up sampler consecutively
    fixed = {
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "conv_in": "input_blocks.0.0",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
    }
    head, _, param = key.rpartition(".")
    if head in fixed:
        return f"{fixed[head]}.{param}"

    def resnet(rest: str) -> str:
        first, _, tail = rest.partition(".")
        return f"{_RESNET_UNET[first]}.{tail}"

    if m := re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        b, i, rest = int(m[1]), int(m[2]), m[3]
        return f"input_blocks.{1 + b * per + i}.0.{resnet(rest)}"
    if m := re.match(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
        return f"input_blocks.{1 + int(m[1]) * per + int(m[2])}.1.{m[3]}"
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"input_blocks.{(int(m[1]) + 1) * per}.0.op.{m[2]}"
    if m := re.match(r"mid_block\.resnets\.(\d)\.(.+)", key):
        return f"middle_block.{2 * int(m[1])}.{resnet(m[2])}"
    if m := re.match(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"output_blocks.{int(m[1]) * per + int(m[2])}.0.{resnet(m[3])}"
    if m := re.match(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
        return f"output_blocks.{int(m[1]) * per + int(m[2])}.1.{m[3]}"
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        b = int(m[1])
        slot = 2 if b in has_up_attention else 1  # the upsampler follows the attention when there is one
        return f"output_blocks.{b * per + layers}.{slot}.conv.{m[2]}"
    raise KeyError(f"no LDM name for UNet key {key}")


def vae_key_to_ldm(key: str, levels: int) -> tuple[str, bool]:
    """One diffusers VAE key -> (LDM name, whether the weight becomes a 1×1 conv)."""
    key = key.replace("conv_norm_out", "norm_out")
    if m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(\w+(?:\.0)?)\.(weight|bias)", key):
        names = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
        return f"{m[1]}.mid.attn_1.{names[m[2]]}.{m[3]}", m[2] != "group_norm" and m[3] == "weight"
    key = re.sub(
        r"(encoder|decoder)\.mid_block\.resnets\.(\d)", lambda m: f"{m[1]}.mid.block_{int(m[2]) + 1}", key
    )
    key = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", key)
    key = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", key)
    # the decoder's levels are numbered from the bottom in LDM
    key = re.sub(
        r"decoder\.up_blocks\.(\d+)\.resnets\.", lambda m: f"decoder.up.{levels - 1 - int(m[1])}.block.", key
    )
    key = re.sub(
        r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
        lambda m: f"decoder.up.{levels - 1 - int(m[1])}.upsample.",
        key,
    )
    return key.replace("conv_shortcut", "nin_shortcut"), False


def pipeline_to_ldm(pipe) -> dict[str, torch.Tensor]:
    """The whole pipeline as one original-layout state dict (model.diffusion_model., first_stage_model.,
    cond_stage_model.transformer.text_model.)."""
    out: dict[str, torch.Tensor] = {}
    cfg = pipe.unet.config
    up_attn = {b for b, t in enumerate(cfg.up_block_types) if t.startswith("CrossAttn")}
    for k, v in pipe.unet.state_dict().items():
        out["model.diffusion_model." + unet_key_to_ldm(k, cfg.layers_per_block, up_attn)] = v
    levels = len(pipe.vae.config.block_out_channels)
    for k, v in pipe.vae.state_dict().items():
        name, as_conv = vae_key_to_ldm(k, levels)
        out["first_stage_model." + name] = v[:, :, None, None] if as_conv else v
    for k, v in pipe.text_encoder.state_dict().items():
        # transformers >= 5.6 dropped the `text_model.` prefix that original checkpoints carry
        out["cond_stage_model.transformer." + (k if k.startswith("text_model.") else "text_model." + k)] = v
    assert len(out) == sum(len(m.state_dict()) for m in (pipe.unet, pipe.vae, pipe.text_encoder))
    return {k: v.detach().contiguous().clone() for k, v in out.items()}


def save_model_forms(root: Path) -> dict[str, Path]:
    """Save the tiny model as a diffusers folder, a .safetensors and a .ckpt (each beside a config-only
    skeleton), and a bare .safetensors with no config next to it."""
    from safetensors.torch import save_file

    pipe = build_pipeline(root / "build")
    folder = root / "diffusers"
    pipe.save_pretrained(str(folder), safe_serialization=True)
    single = root / "single"
    shutil.copytree(folder, single, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    state = pipeline_to_ldm(pipe)
    save_file(state, str(single / "tiny.safetensors"))
    torch.save({"state_dict": state}, str(single / "tiny.ckpt"))
    bare = root / "bare"
    bare.mkdir()
    save_file(state, str(bare / "tiny.safetensors"))
    return {
        "folder": folder,
        "safetensors": single / "tiny.safetensors",
        "ckpt": single / "tiny.ckpt",
        "bare": bare / "tiny.safetensors",
        "pipe": pipe,
    }


# ---- depth models ------------------------------------------------------------------------------------------


def _lively(model, seed: int):
    """Re-draw every conv/linear weight with He-normal scale: the models' own init (std 0.02) gives depth
    outputs around 1e-8, a flat map that would test nothing."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
                mod.weight.normal_(0.0, (2.0 / mod.weight[0].numel()) ** 0.5, generator=gen)
    return model


def build_tiny_dpt():
    """A random DPT with the architecture of Intel/dpt-large (MiDaS v3 DPT-Large, ViT backbone: square
    inputs only in transformers), seeded."""
    from transformers import DPTConfig, DPTForDepthEstimation

    torch.manual_seed(3)
    config = DPTConfig(
        image_size=32,
        patch_size=16,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=37,
        backbone_out_indices=[0, 1, 2, 3],
        neck_hidden_sizes=[16, 32, 32, 32],
        fusion_hidden_size=32,
        head_in_index=-1,
        is_hybrid=False,
    )
    model = _lively(DPTForDepthEstimation(config), 3)
    with torch.no_grad():
        model.head.head[-2].weight.mul_(0.2)  # disparities of a few tens, the span MiDaS gives
    return model.eval()


def build_tiny_depth_anything():
    """A random Depth Anything (Dinov2 backbone + DPT head, as depth-anything/Depth-Anything-V2-Small-hf),
    seeded; takes any aspect ratio."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    torch.manual_seed(4)
    backbone = Dinov2Config(
        image_size=32,
        patch_size=14,
        num_channels=3,
        hidden_size=8,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=16,
        out_indices=[1, 2],
        apply_layernorm=True,
        reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=8,
        patch_size=14,
        neck_hidden_sizes=[4, 8],
        fusion_hidden_size=8,
        depth_estimation_type="relative",
    )
    return _lively(DepthAnythingForDepthEstimation(config), 4).eval()


def save_depth_models(root: Path) -> dict[str, Path]:
    """The two tiny depth models saved as transformers folders (config.json, model.safetensors,
    preprocessor_config.json) the way the hub ships them: DPT with a fixed 64×64 square input and mean/std
    0.5 (the Intel/dpt-* processors at 384), Depth Anything keeping the aspect ratio at 56, multiples of 14,
    ImageNet mean/std (its processor at 518)."""
    from transformers import DPTImageProcessor

    dpt = root / "dpt"
    build_tiny_dpt().save_pretrained(str(dpt))
    DPTImageProcessor(
        do_resize=True,
        size={"height": 64, "width": 64},
        keep_aspect_ratio=False,
        ensure_multiple_of=32,
        do_normalize=True,
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
    ).save_pretrained(str(dpt))
    anything = root / "depth_anything"
    build_tiny_depth_anything().save_pretrained(str(anything))
    DPTImageProcessor(
        do_resize=True,
        size={"height": 56, "width": 56},
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        do_normalize=True,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(str(anything))
    return {"dpt": dpt, "depth_anything": anything}


# ---- scenes and hand-made FrameTables ------------------------------------------------------------------------------

# a 10-frame 2D scene with cadence 3, colour coherence, two prompts and motion: the render tests' workhorse
TINY_2D_SCENE = """dfm 1
mode 2d
size 64x64
fps 12
frames 10
cadence 3
steps 4
strength 0.5
seed 5
sampler euler
color_coherence lab
prompt 0 "a cat"
prompt 5 "a dog"
negative "blurry"
angle 0:(2)
zoom 0:(1.02)
translation_x 0:(1)
amount 0:(0.2)
"""

# What small, fast test renders want on top of the catalogue's defaults (one definition per fact): tiny
# frames, few steps, a sampler without ancestral noise, and no colour matching or depth model unless a
# test asks for one.
TEST_SCHEDULES = {"strength": 0.5, "steps": 4}
TEST_SETTINGS = {
    "size": (64, 64),
    "fps": 12.0,
    "model": "",
    "sampler": "euler",
    "seed": 7,
    "color_coherence": "none",
    "depth_model": "",
    "midas_weight": 1.0,
    "sampling_mode": "bilinear",
}


def make_table(n: int, prompt: str = "a red cat", **overrides):
    """A FrameTable of `n` rows built by the compiler's own lowering (`compiler.lower.build_table`): the
    catalogue's defaults, TEST_SCHEDULES/TEST_SETTINGS on top, then `overrides`. A keyword naming a
    schedule sets its per-frame values (a scalar or a sequence); any other keyword is a setting. Stills
    make `n` images of `prompt`; interpolation moves from `prompt` to "a blue dog" over `n` rows."""
    from dfm.compiler.lower import build_table
    from dfm.contract.table import Settings

    values = {p.name: np.full(n, float(p.default)) for p in catalogue.SCHEDULES}
    settings = {**catalogue.setting_defaults(), "model_sha256": None, **TEST_SETTINGS}
    for k, v in {**TEST_SCHEDULES, **overrides}.items():
        if k in values:
            values[k] = np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)).copy()
        else:
            settings[k] = v
    prompts = [(0, prompt)]
    if settings["mode"] == "none":
        settings["images_per_prompt"] = n
    elif settings["mode"] == "interpolation":
        prompts.append((n - 1, "a blue dog"))
        settings["interpolate_x_frames"] = n - 2
    settings.update(frames=n, duration=n / settings["fps"], prompt_crossfade=0)
    return build_table(Settings(settings), values, prompts, [])


def with_prompts(table, **texts):
    """`table` with prompt text columns replaced (`prompt=["a cat", "a dog"]`, or one text for every row),
    each with the pieces column the compiler derives from it: the runtime encodes the pieces."""
    from dfm.compiler.prompt_syntax import pieces_json

    cols = {}
    for name, values in texts.items():
        values = [values] * len(table) if isinstance(values, str) else list(values)
        cols[name] = values
        cols[f"{name}_pieces"] = [pieces_json(v) for v in values]
    return table.with_columns(**cols)


def write_lossless_clip(path: Path, frames) -> Path:
    """`frames` (uint8 RGB arrays) as a lossless FFV1 video at 10 fps, so a test reads back the exact pixels."""
    import imageio_ffmpeg

    h, w = frames[0].shape[:2]
    writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=10, codec="ffv1", pix_fmt_in="rgb24",
                                         pix_fmt_out="bgr0", macro_block_size=1, ffmpeg_log_level="error")
    writer.send(None)
    for f in frames:
        writer.send(np.ascontiguousarray(f))
    writer.close()
    return path
