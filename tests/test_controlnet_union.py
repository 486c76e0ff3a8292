"""ControlNet Union (SDXL): one model, several control types. A tiny Union made offline from the tiny SDXL
UNet; dfm's latents against diffusers' StableDiffusionXLControlNetUnionImg2ImgPipeline, and the checker's
control type."""

from __future__ import annotations

import json

import pytest
import torch
from test_controlnet_runtime import control_image, embeddings, load, run_denoise, xl_embeddings, xl_pipeline
from tiny_controlnets import TINY_COND_CHANNELS

from dfm.api import compile_result
from dfm.contract import controlnet as cn
from dfm.runtime.controlnet import FrameControl, UnitInput, is_union, load_controlnet, union_index


def lively_union(unet, seed: int):
    """A ControlNet Union of `unet` with small random weights where from_unet leaves zeros."""
    from diffusers import ControlNetUnionModel

    torch.manual_seed(seed)
    config = dict(ControlNetUnionModel.from_unet(unet, conditioning_embedding_out_channels=TINY_COND_CHANNELS,
                                                 load_weights_from_unet=False).config)
    width = int(unet.config.block_out_channels[0])  # the control embedding's width, which the task embedding adds to
    config.pop("_use_default_values", None)  # else from_config puts the defaults (320 channels) back
    config.update(num_trans_channel=width, num_proj_channel=width, num_trans_head=2, num_trans_layer=1)
    net = ControlNetUnionModel.from_config(config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in [*net.controlnet_down_blocks, net.controlnet_mid_block, net.controlnet_cond_embedding.conv_out,
                    net.spatial_ch_projs]:
            mod.weight.normal_(0.0, 0.05, generator=gen)
            mod.bias.normal_(0.0, 0.05, generator=gen)
    return net.eval()


@pytest.fixture(scope="module")
def xl(tmp_path_factory):
    from sdxl_models import save_sdxl

    root = tmp_path_factory.mktemp("xl")
    saved = save_sdxl(root / "xl")
    sd = load(saved["folder"])
    folder = root / "union"
    lively_union(sd.unet, 5).save_pretrained(str(folder), safe_serialization=True)
    return {"sd": sd, "pipe": saved["pipe"], "folder": saved["folder"], "union": folder}


def test_union_latents_equal_diffusers_union_img2img(xl):
    from diffusers import StableDiffusionXLControlNetUnionImg2ImgPipeline

    sd = xl["sd"]
    net = load_controlnet(sd, str(xl["union"]), 1).net
    assert is_union(net)
    cond, uncond = embeddings(sd)
    init = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(9))
    image = control_image(16, 16)
    kind = cn.UNION_TYPES.index("canny")
    control = FrameControl([UnitInput(1, net, image, None, 0.9, 0.0, 1.0, "balanced", kind)], sd.unet_inputs)
    ours = run_denoise(sd, "euler", cond, uncond, init, control, cfg=5.0, effective=2)
    assert control.calls == 2
    pipe = xl_pipeline(StableDiffusionXLControlNetUnionImg2ImgPipeline, xl["pipe"], sd, net)
    theirs = pipe(
        **xl_embeddings(cond, uncond), image=init, control_image=[image], control_mode=[kind], strength=0.5,
        num_inference_steps=4,
        guidance_scale=5.0, controlnet_conditioning_scale=0.9, generator=torch.Generator().manual_seed(4),
        output_type="latent",
    ).images
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    # another control type is another control
    other = FrameControl([UnitInput(1, net, image, None, 0.9, 0.0, 1.0, "balanced", 1)], sd.unet_inputs)
    assert not torch.allclose(ours, run_denoise(sd, "euler", cond, uncond, init, other, cfg=5.0, effective=2))


def test_a_union_unit_needs_a_control_type(xl):
    net = load_controlnet(xl["sd"], str(xl["union"]), 1).net
    unit = cn.UnitSettings(1, str(xl["union"]), "none", None, None, True, 512, None, None, "just_resize",
                           "balanced", False, "")
    from dfm.runtime.errors import RenderError

    with pytest.raises(RenderError, match="union_type"):
        union_index(unit, net)
    assert union_index(unit.__class__(**{**unit.__dict__, "union_type": "depth"}), net) == 1


def test_the_checker_reads_the_union_type_from_the_preprocessor(xl, tmp_path):
    (tmp_path / "pose.png").write_bytes(b"x")
    scene = (f'dfm 1\nframes 2\nsize 64x64\nmodel "{xl["folder"]}"\nprompt "a"\ncn_1_model "{xl["union"]}"\n'
             'cn_1_vid_path "pose.png"\n')
    r = compile_result(scene + "cn_1_module canny\n", base_dir=tmp_path)
    assert r.ok, r.diagnostics
    assert r.table.settings.cn_1_union_type == "canny"
    r = compile_result(scene + "cn_1_module lineart_standard\ncn_1_union_type tile\n", base_dir=tmp_path)
    assert r.ok and r.table.settings.cn_1_union_type == "tile"
    r = compile_result(scene, base_dir=tmp_path)  # module none: which control is it?
    err = [d for d in r.errors if d.code == "DFM407"]
    assert err and "cn_1_union_type" in err[0].help
    config = json.loads((xl["union"] / "config.json").read_text())
    assert config["_class_name"] == "ControlNetUnionModel"
