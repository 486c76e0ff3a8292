"""A tiny random SDXL pipeline (diffusers' own fast-test shapes: two CLIP text encoders, the second with
a projection; a UNet with addition_embed_type "text_time"), built offline and seeded."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import torch
from tiny_models import TINY_UNET, tiny_vae, unet_key_to_ldm, vae_key_to_ldm, write_tokenizer


def build_sdxl_pipeline(workdir: Path):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(write_tokenizer(workdir / "tok")), model_max_length=77)
    tok2 = CLIPTokenizer.from_pretrained(str(write_tokenizer(workdir / "tok2")), model_max_length=77)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        **TINY_UNET,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=8 * 6 + 16,  # six time ids of 8 + the pooled embedding (16)
        cross_attention_dim=20,  # 8 (encoder 1) + 12 (encoder 2); the widths differ, as SDXL's (768, 1280) do
    )
    vae = tiny_vae(scaling_factor=0.13025)

    def clip(cls, seed, width, **extra):
        torch.manual_seed(seed)
        return cls(CLIPTextConfig(
            vocab_size=len(tok), hidden_size=width, intermediate_size=16, num_attention_heads=2, num_hidden_layers=3,
            max_position_embeddings=77, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id, layer_norm_eps=1e-5, hidden_act="gelu", **extra))

    text_encoder = clip(CLIPTextModel, 2, 8)
    text_encoder_2 = clip(CLIPTextModelWithProjection, 3, 12, projection_dim=16)
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
        timestep_spacing="leading",
    )
    return StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tok, tokenizer_2=tok2,
        unet=unet, scheduler=scheduler, image_encoder=None, feature_extractor=None,
    )


def save_sdxl(root: Path) -> dict:
    pipe = build_sdxl_pipeline(root / "build")
    folder = root / "sdxl"
    pipe.save_pretrained(str(folder), safe_serialization=True)
    from safetensors.torch import save_file

    single = root / "single"  # the single file beside a config-only copy of the folder
    shutil.copytree(folder, single, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    state = sdxl_to_ldm(pipe)
    save_file(state, str(single / "tiny_xl.safetensors"))
    bare = root / "bare"
    bare.mkdir()
    save_file(state, str(bare / "tiny_xl.safetensors"))
    return {"folder": folder, "safetensors": single / "tiny_xl.safetensors", "bare": bare / "tiny_xl.safetensors",
            "pipe": pipe}


# ---- diffusers -> SDXL's original single-file layout (conditioner.embedders.*, as A1111/Civitai files) --------

_OPEN_CLIP = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
              "self_attn.out_proj": "attn.out_proj"}


def open_clip_state(encoder) -> dict[str, torch.Tensor]:
    """A CLIPTextModelWithProjection's weights in OpenCLIP's names (q, k, v joined into in_proj)."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in encoder.state_dict().items():
        k = k.removeprefix("text_model.")
        if k == "embeddings.token_embedding.weight":
            out["token_embedding.weight"] = v
        elif k == "embeddings.position_embedding.weight":
            out["positional_embedding"] = v
        elif k.startswith("final_layer_norm."):
            out["ln_final." + k.rpartition(".")[2]] = v
        elif k == "text_projection.weight":
            out["text_projection"] = v.T
        elif m := re.match(r"encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", k):
            qkv.setdefault(f"transformer.resblocks.{m[1]}.attn.in_proj_{m[3]}", {})[m[2]] = v
        elif m := re.match(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", k):
            out[f"transformer.resblocks.{m[1]}.{_OPEN_CLIP[m[2]]}.{m[3]}"] = v
        else:
            raise KeyError(k)
    for name, parts in qkv.items():
        out[name] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def sdxl_to_ldm(pipe) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    cfg = pipe.unet.config
    up_attn = {b for b, t in enumerate(cfg.up_block_types) if t.startswith("CrossAttn")}
    for k, v in pipe.unet.state_dict().items():
        if k.startswith("add_embedding.linear_"):
            name = k.replace("add_embedding.linear_1", "label_emb.0.0")
            name = name.replace("add_embedding.linear_2", "label_emb.0.2")
        else:
            name = unet_key_to_ldm(k, cfg.layers_per_block, up_attn)
        out["model.diffusion_model." + name] = v
    levels = len(pipe.vae.config.block_out_channels)
    for k, v in pipe.vae.state_dict().items():
        name, as_conv = vae_key_to_ldm(k, levels)
        out["first_stage_model." + name] = v[:, :, None, None] if as_conv else v
    for k, v in pipe.text_encoder.state_dict().items():
        out["conditioner.embedders.0.transformer." + (k if k.startswith("text_model.") else "text_model." + k)] = v
    for k, v in open_clip_state(pipe.text_encoder_2).items():
        out["conditioner.embedders.1.model." + k] = v
    return {k: v.detach().contiguous().clone() for k, v in out.items()}
