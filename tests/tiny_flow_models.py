"""Tiny random rectified-flow pipelines (Stable Diffusion 3 and Flux), built offline in code and seeded.

The shapes follow diffusers' own fast tests for these pipelines, widened where the real models differ:
the VAE has 16 latent channels with a shift and a scaling factor (SD3 and Flux latents are
`(z - shift) * scale`), and Flux's transformer takes 2x2-packed latents (64 channels). The tokenizers
are written here: a byte-level CLIP BPE (tests/tiny_models.py `write_tokenizer`) and a character-level
T5 Unigram, so no download is needed. Both pipelines have their T5 encoder (SD3's `text_encoder_3`,
Flux's `text_encoder_2`). Each pipeline is saved to a folder and loaded back, the way dfm loads models.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch
from tiny_controlnets import wake_zero_layers
from tiny_models import write_tokenizer

# the tiny VAE's latent statistics; Flux's real VAE has (0.1159, 0.3611), SD3's (0.0609, 1.5305)
SHIFT_FACTOR = 0.0609
SCALING_FACTOR = 1.5305
LATENT_CHANNELS = 16
T5_WIDTH = 32  # the T5 hidden size: the transformers' joint_attention_dim
T5_MAX_LENGTH = 16  # max_sequence_length passed to the pipelines (the real ones use 256 / 512)


def t5_tokenizer():
    """A T5 tokenizer made in memory: a Unigram vocabulary of the specials, every printable ASCII character,
    and each one with the word-start marker, so any ASCII text tokenizes without unknown tokens."""
    from transformers import T5TokenizerFast

    chars = [c for c in string.printable if not c.isspace()]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [("\u2581" + c, -3.0) for c in chars] + [(c, -4.0) for c in chars]
    return T5TokenizerFast(vocab=vocab, extra_ids=0)


def _clip_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(write_tokenizer(folder)), model_max_length=77)


def _clip_encoder(tok, seed: int, width: int, projection: int | None = None):
    """A CLIP text encoder: with a projection (SD3's two) or plain, pooled by its pooler (Flux's)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cls = CLIPTextModel if projection is None else CLIPTextModelWithProjection
    extra = {} if projection is None else {"projection_dim": projection}
    torch.manual_seed(seed)
    return cls(CLIPTextConfig(
        vocab_size=len(tok), hidden_size=width, intermediate_size=16, num_attention_heads=2, num_hidden_layers=2,
        max_position_embeddings=77, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, layer_norm_eps=1e-5, hidden_act="gelu", **extra))


def _t5_encoder(tok, seed: int):
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    return T5EncoderModel(T5Config(
        vocab_size=len(tok), d_model=T5_WIDTH, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.pad_token_id))


def tiny_flow_vae(levels: int = 2):
    """The VAE of both tiny pipelines: two levels (latents half the frame's size; 4: an eighth, as the real
    ones), 16 latent channels, a shift and a scaling factor, no quant convs (as SD3's and Flux's VAEs)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(1)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS, block_out_channels=(8,) * levels,
        layers_per_block=1, norm_num_groups=2, down_block_types=["DownEncoderBlock2D"] * levels,
        up_block_types=["UpDecoderBlock2D"] * levels, use_quant_conv=False, use_post_quant_conv=False,
        shift_factor=SHIFT_FACTOR, scaling_factor=SCALING_FACTOR)


def build_sd3_pipeline(workdir: Path):
    """A tiny StableDiffusion3Pipeline: two CLIP encoders with projections (widths 8 and 12, pooled 8 + 8),
    a T5 encoder of width 32, an MMDiT of one layer, and SD3's scheduler (shift 3.0)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    tok, tok2 = _clip_tokenizer(workdir / "tok"), _clip_tokenizer(workdir / "tok2")
    tok3 = t5_tokenizer()
    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS, num_layers=1,
        attention_head_dim=8, num_attention_heads=2, caption_projection_dim=16,
        joint_attention_dim=T5_WIDTH,  # CLIP's 8 + 12 wide embeddings are zero-padded to T5's width
        pooled_projection_dim=16, pos_embed_max_size=16)
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=tiny_flow_vae(),
        text_encoder=_clip_encoder(tok, 2, 8, 8), tokenizer=tok,
        text_encoder_2=_clip_encoder(tok2, 3, 12, 8), tokenizer_2=tok2,
        text_encoder_3=_t5_encoder(tok3, 4), tokenizer_3=tok3)


def build_flux_pipeline(workdir: Path, *, guidance_embeds: bool = True, vae_levels: int = 2):
    """A tiny FluxPipeline (Flux-dev's shape: guidance embedded when `guidance_embeds`): one CLIP encoder
    whose pooled output conditions the transformer, a T5 encoder for the sequence, a transformer of one
    double and one single block over 2x2-packed latents, and Flux's dynamically shifted scheduler. `vae_levels`:
    `tiny_flow_vae`'s."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    tok = _clip_tokenizer(workdir / "tok")
    tok2 = t5_tokenizer()
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=LATENT_CHANNELS * 4, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=T5_WIDTH, pooled_projection_dim=8,
        guidance_embeds=guidance_embeds, axes_dims_rope=(4, 4, 8))
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
        max_image_seq_len=4096)
    return FluxPipeline(
        transformer=transformer, scheduler=scheduler, vae=tiny_flow_vae(vae_levels),
        text_encoder=_clip_encoder(tok, 2, 8), tokenizer=tok, text_encoder_2=_t5_encoder(tok2, 4),
        tokenizer_2=tok2)


def saved_and_loaded(pipe, folder: Path):
    """`pipe` saved as a diffusers folder and loaded back (what a renderer loads), on the CPU, no progress bar."""
    pipe.save_pretrained(str(folder), safe_serialization=True)
    loaded = type(pipe).from_pretrained(str(folder), local_files_only=True)
    loaded.set_progress_bar_config(disable=True)
    return loaded


def save_flow_models(root: Path) -> dict:
    """Both tiny pipelines, saved under `root` and loaded back: {"sd3": pipe, "flux": pipe, "flux_schnell": pipe}
    (schnell: no guidance embedding), with their folders under "<name>_folder"."""
    out: dict = {}
    builds = {
        "sd3": lambda: build_sd3_pipeline(root / "build_sd3"),
        "flux": lambda: build_flux_pipeline(root / "build_flux"),
        "flux_schnell": lambda: build_flux_pipeline(root / "build_schnell", guidance_embeds=False),
    }
    for name, build in builds.items():
        folder = root / name
        out[name] = saved_and_loaded(build(), folder)
        out[f"{name}_folder"] = folder
    return out


def build_flux_controlnet(transformer, *, seed: int = 21, num_mode: int | None = None, hint: bool = False,
                          num_layers: int = 1, num_single_layers: int = 1):
    """A tiny FluxControlNetModel of `transformer`'s widths (its config, as diffusers' `from_transformer` takes
    it), seeded, whose zero-initialised outputs (the blocks' projections and the control-image embedder) get
    small random weights so the control matters. `num_mode`: a Union with that many modes (Union Pro's 7).
    `hint`: XLabs' kind, reading the control image's pixels through an `input_hint_block` (it downsamples 8x:
    it fits a VAE that does too, `tiny_flow_vae(levels=4)`), with 2x2 patches."""
    from diffusers import FluxControlNetModel

    config = {k: v for k, v in dict(transformer.config).items() if not k.startswith("_")}
    config |= {"num_layers": num_layers, "num_single_layers": num_single_layers, "num_mode": num_mode}
    if hint:
        config |= {"conditioning_embedding_channels": LATENT_CHANNELS, "patch_size": 2}
    torch.manual_seed(seed)
    net = FluxControlNetModel.from_config(config)
    outputs = [*net.controlnet_blocks, *net.controlnet_single_blocks, net.controlnet_x_embedder]
    if hint:
        outputs.append(net.input_hint_block.conv_out)
    wake_zero_layers(outputs, seed)
    return net.eval()


def save_flux_controlnet(net, folder: Path) -> dict:
    """`net` saved as a diffusers folder and as one .safetensors file in diffusers' key names beside nothing
    (as InstantX's diffusion_pytorch_model.safetensors downloaded alone): {"folder", "safetensors", "net"}."""
    from safetensors.torch import save_file

    net.save_pretrained(str(folder), safe_serialization=True)
    single = folder.parent / f"{folder.name}-single"
    single.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().clone() for k, v in net.state_dict().items()},
              str(single / "flux_controlnet.safetensors"))
    return {"folder": folder, "safetensors": single / "flux_controlnet.safetensors", "net": net}
