"""Tiny random ControlNets made offline from the tiny UNets (SD 1.x in tiny_models.py, SDXL in sdxl_models.py).

`ControlNetModel.from_unet` copies the UNet's encoder and leaves the ControlNet's output convolutions at zero
(a fresh ControlNet changes nothing, by design); here they get small random weights so the control matters.
Each is saved as a diffusers folder and as one .safetensors file: SD 1.x in the original layout A1111's
ControlNet files use (`input_blocks`, `zero_convs`, `input_hint_block`, as control_v11p_sd15_*.safetensors),
SDXL in diffusers' key names (as the diffusers_xl_*.safetensors files A1111 users download).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from tiny_models import unet_key_to_ldm

# the tiny VAE halves the frame once (latents are 1/2 the frame), so the control image's embedding must too:
# two widths make one stride-2 convolution (real ControlNets' (16, 32, 96, 256) divide by 8, as SD's VAE)
TINY_COND_CHANNELS = (8, 16)


def lively_controlnet(unet, seed: int, cond_channels: tuple[int, ...] = TINY_COND_CHANNELS):
    """A ControlNet of `unet` whose zero convolutions (and the conditioning embedding's last conv) hold
    small random weights, seeded."""
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=cond_channels)
    outputs = [*net.controlnet_down_blocks, net.controlnet_mid_block, net.controlnet_cond_embedding.conv_out]
    wake_zero_layers(outputs, seed)
    return net.eval()


def wake_zero_layers(layers, seed: int) -> None:
    """Small random weights in a ControlNet's zero-initialised output layers (seeded), so that a tiny one
    changes what it feeds: He-scaled by half, biases of 0.05."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in layers:
            fan_in = layer.weight[0].numel()
            layer.weight.normal_(0.0, 0.5 * (2.0 / fan_in) ** 0.5, generator=gen)
            layer.bias.normal_(0.0, 0.05, generator=gen)


def controlnet_to_ldm(net) -> dict[str, torch.Tensor]:
    """An SD 1.x ControlNet's weights in the original layout (bare keys, as ControlNet 1.1's files)."""
    cfg = net.config
    out: dict[str, torch.Tensor] = {}
    for k, v in net.state_dict().items():
        if k.startswith("controlnet_cond_embedding.conv_in."):
            name = "input_hint_block.0." + k.rpartition(".")[2]
        elif k.startswith("controlnet_cond_embedding.conv_out."):
            name = f"input_hint_block.{2 * (len(net.controlnet_cond_embedding.blocks) + 1)}." + k.rpartition(".")[2]
        elif m := re.match(r"controlnet_cond_embedding\.blocks\.(\d+)\.(weight|bias)", k):
            name = f"input_hint_block.{2 * (int(m[1]) + 1)}.{m[2]}"
        elif m := re.match(r"controlnet_down_blocks\.(\d+)\.(weight|bias)", k):
            name = f"zero_convs.{m[1]}.0.{m[2]}"
        elif k.startswith("controlnet_mid_block."):
            name = "middle_block_out.0." + k.rpartition(".")[2]
        else:
            name = unet_key_to_ldm(k, cfg.layers_per_block, set())
        out[name] = v
    assert len(out) == len(net.state_dict())
    return {k: v.detach().contiguous().clone() for k, v in out.items()}


def save_controlnet_forms(root: Path, unet, *, seed: int = 11, ldm: bool = False) -> dict:
    """A tiny ControlNet of `unet` saved as a diffusers folder (`folder`) and one .safetensors file
    (`safetensors`), with the model (`net`). With `ldm` the file has the original layout and the ControlNet
    real ones' conditioning embedding (diffusers' converter knows only that one; its control image is 8x the
    latents, not the tiny frame's 2x), else diffusers' keys and the tiny embedding."""
    from safetensors.torch import save_file

    net = lively_controlnet(unet, seed, (16, 32, 96, 256) if ldm else TINY_COND_CHANNELS)
    folder = root / f"controlnet-{seed}"
    net.save_pretrained(str(folder), safe_serialization=True)
    single = root / f"controlnet-{seed}-single"
    single.mkdir(parents=True, exist_ok=True)
    state = controlnet_to_ldm(net) if ldm else {k: v.detach().contiguous().clone() for k, v in net.state_dict().items()}
    save_file(state, str(single / "tiny_controlnet.safetensors"))
    return {"folder": folder, "safetensors": single / "tiny_controlnet.safetensors", "net": net}

