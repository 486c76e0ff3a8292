"""runtime/speedups.py (the switches), device.py's dtype choice, and the frame loop's device-resident pieces:
cached constants, the sync-free histogram matching, host copies made once per tensor."""

from __future__ import annotations

import argparse

import pytest
import torch

from dfm.runtime import effects, speedups
from dfm.runtime.device import pick_device
from dfm.runtime.errors import RenderError
from dfm.runtime.frame import RenderState
from dfm.runtime.models import StableDiffusion, resolve_source
from dfm.runtime.output import HostCopies, to_uint8
from dfm.runtime.resume import Snapshot


@pytest.fixture(scope="module")
def sd(tiny_models):
    model = StableDiffusion(resolve_source(str(tiny_models["folder"])), pick_device("cpu"))
    model.load()
    return model


# ---- the switches ----------------------------------------------------------------------------------------


def test_unknown_switch_values_are_refused_with_the_choices():
    with pytest.raises(RenderError) as e:
        speedups.Speedups(attention="flash")
    assert "attention 'flash'" in e.value.message and "sdpa" in e.value.help
    with pytest.raises(RenderError):
        speedups.Speedups(vae_tiling="maybe")


def test_auto_switches_resolve_by_device_and_size():
    assert speedups.resolve_channels_last("auto", "cuda") and not speedups.resolve_channels_last("auto", "cpu")
    assert speedups.resolve_channels_last("on", "cpu") and not speedups.resolve_channels_last("off", "cuda")
    assert not speedups.resolve_tiling("auto", (1024, 1024))  # tiles only above 1024²
    assert speedups.resolve_tiling("auto", (1024, 1032)) and speedups.resolve_tiling("on", (64, 64))
    assert not speedups.resolve_tiling("auto", None)
    assert speedups.describe(None, "cpu", (512, 512)) == \
        "attention=sdpa channels_last=off vae_tiling=off compile=off"
    assert speedups.describe(speedups.Speedups(compile=True), "cuda", (2048, 2048)) == \
        "attention=sdpa channels_last=on vae_tiling=on compile=on"


def test_sdpa_is_what_diffusers_installs_and_each_switch_applies_and_reverts(sd):
    applied = speedups.apply(sd, speedups.Speedups(), size=(64, 64))
    assert applied.attention == "AttnProcessor2_0"  # torch's scaled_dot_product_attention, in UNet and VAE
    assert speedups.recorded(sd) == "attention=sdpa channels_last=off vae_tiling=off compile=off"
    conv = sd.unet.conv_in.weight
    try:
        applied = speedups.apply(sd, speedups.Speedups(attention="math", channels_last="on", vae_tiling="on"))
        assert applied.attention == "AttnProcessor" and applied.channels_last and applied.vae_tiling
        assert sd.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
        assert sd.vae.use_tiling
        # the same frames up to float rounding: the switches change kernels, not the maths
        lat = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            switched = sd.decode_latents(lat)
            speedups.apply(sd, speedups.Speedups())
            plain = sd.decode_latents(lat)
        torch.testing.assert_close(switched, plain, atol=1e-4, rtol=0)
    finally:
        speedups.apply(sd, speedups.Speedups())
    assert speedups.attention_processors(sd.unet, sd.vae) == "AttnProcessor2_0"
    assert sd.unet.conv_in.weight.is_contiguous() and not sd.vae.use_tiling
    assert sd.unet.conv_in.weight.data_ptr() != 0 and conv.shape == sd.unet.conv_in.weight.shape


def test_compile_is_opt_in_in_place_and_reversible(sd):
    unet = sd.unet
    try:
        applied = speedups.apply(sd, speedups.Speedups(compile=True))  # no size: no warm-up run here
        assert applied.compile and sd.unet is unet and unet._compiled_call_impl is not None
        assert "compile=on" in speedups.recorded(sd)
    finally:
        speedups.apply(sd, speedups.Speedups())
    assert unet._compiled_call_impl is None


def test_the_switches_enter_the_resume_fingerprint(sd, tiny_models):
    from tiny_models import make_table

    from dfm.runtime import resume

    table = make_table(2)
    speedups.record(sd, speedups.describe(None, "cpu", (64, 64)))
    plain = resume.fingerprint(table, sd)
    speedups.record(sd, speedups.describe(speedups.Speedups(channels_last="on"), "cpu", (64, 64)))
    try:
        changed = resume.fingerprint(table, sd)
    finally:
        speedups.apply(sd, speedups.Speedups(), size=(64, 64))
    assert {k for k in plain if plain[k] != changed[k]} == {"speedups"}
    from dfm.runtime.incremental import setup_changes

    assert setup_changes(plain, changed) == [
        "the speed-up switches (attention=sdpa channels_last=off vae_tiling=off compile=off → "
        "attention=sdpa channels_last=on vae_tiling=off compile=off)"]
    # runtime/networks.py's entry in the same fingerprint is named in words too
    assert setup_changes({**plain, "network_files": "a.safetensors:1:1"},
                         {**plain, "network_files": "a.safetensors:2:2"}) == ["the LoRA or embedding files"]


def test_command_line_options_parse_to_switches_without_torch_choices():
    ap = argparse.ArgumentParser()
    speedups.add_arguments(ap)
    args = ap.parse_args(["--dtype", "bf16", "--attention", "math", "--channels-last", "on", "--vae-tiling", "off",
                          "--compile"])
    assert speedups.from_args(args) == speedups.Speedups("math", "on", "off", True)
    assert speedups.switches_from_args(args)["dtype"] == "bf16"
    assert speedups.from_args(ap.parse_args([])) == speedups.Speedups()
    with pytest.raises(SystemExit):
        ap.parse_args(["--dtype", "fp8"])


def test_render_command_passes_the_switches_to_watch(tmp_path, monkeypatch):
    """`--watch` renders with the same switches as a plain render: app/watch.py hands them to each render."""
    from dfm.app import watch
    from dfm.app.cli import main

    scene = tmp_path / "s.dfm"
    scene.write_text("dfm 1\nmode 2d\nframes 2\n", encoding="utf-8")
    seen = []
    monkeypatch.setattr(watch, "watch_render", lambda args: seen.append(args) or 0)
    assert main(["render", str(scene), "--watch", "--compile", "--dtype", "fp32"]) == 0
    (args,) = seen
    assert args.compile is True and args.dtype == "fp32"


# ---- dtype by device --------------------------------------------------------------------------------------


def test_dtype_choice_on_the_cpu():
    assert pick_device("cpu").dtype == torch.float32
    assert pick_device("cpu", "fp32").dtype == torch.float32
    assert pick_device("cpu", "bf16").dtype == torch.bfloat16
    with pytest.raises(RenderError) as e:
        pick_device("cpu", "fp16")
    assert "fp16" in e.value.message and "fp32" in e.value.help
    with pytest.raises(RenderError) as e:
        pick_device("cpu", "int8")
    assert "unknown dtype" in e.value.message


# ---- device-resident pieces: same numbers, no per-frame host work ---------------------------------------------


def _unique_match(source: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """skimage's algorithm written directly with torch.unique (what effects.match_channel computed before)."""
    _, inverse, counts = torch.unique(source.flatten(), return_inverse=True, return_counts=True)
    ref_values, ref_counts = torch.unique(reference.flatten(), return_counts=True)
    q = torch.cumsum(counts, 0).to(torch.float64) / source.numel()
    ref_q = torch.cumsum(ref_counts, 0).to(torch.float64) / reference.numel()
    return effects.interp(q, ref_q, ref_values.to(torch.float64)).to(source.dtype)[inverse].view_as(source)


@pytest.mark.parametrize("levels", [0, 7])  # continuous values, and many ties
def test_sync_free_histogram_matching_equals_the_unique_based_one_exactly(levels):
    g = torch.Generator().manual_seed(levels)
    src, ref = torch.rand(33, 47, generator=g), torch.rand(20, 30, generator=g) * 2 - 0.5
    if levels:
        src, ref = (src * levels).round() / levels, (ref * levels).round() / levels
    expected = _unique_match(src, ref)
    curve = effects.reference_quantiles(ref)
    assert torch.equal(effects.match_sorted(src, curve), expected)  # the GPU's way, run here on the CPU
    assert torch.equal(effects.match_unique(src, curve), expected)
    assert torch.equal(effects.match_channel(src, ref), expected)


def test_colour_coherence_reuses_the_reference_curves_and_notices_a_new_reference():
    g = torch.Generator().manual_seed(3)
    ref, frame = torch.rand(1, 3, 16, 16, generator=g), torch.rand(1, 3, 16, 16, generator=g)
    first = effects.color_coherence(frame, ref, "lab")
    curves = effects._reference_cache["lab"][2]
    assert torch.equal(effects.color_coherence(frame, ref, "lab"), first)
    assert effects._reference_cache["lab"][2] is curves  # computed once for this reference
    other = torch.rand(1, 3, 16, 16, generator=g)
    assert not torch.equal(effects.color_coherence(frame, other, "lab"), first)
    assert effects._reference_cache["lab"][2] is not curves
    expected = effects.lab_to_rgb(torch.stack([_unique_match(effects.rgb_to_lab(frame)[0, c],
                                                             effects.rgb_to_lab(other)[0, c]) for c in range(3)])[None])
    assert torch.equal(effects.color_coherence(frame, other, "lab"), expected.clamp(0, 1))


def test_host_copies_are_made_once_per_tensor_and_shared_with_the_written_frame():
    copies = HostCopies()
    a, b = torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4)
    assert copies.get(a) is copies.get(a) and copies.get(b) is not copies.get(a)
    copies.retain([b])
    assert len(copies) == 1 and copies.find(a) is None and copies.find(b) is not None
    ref = torch.rand(1, 3, 4, 4)
    state = RenderState(next_frame=1, at=0, buffers={0: a}, color_ref=ref)
    first = Snapshot(state, {}, copies)
    state2 = RenderState(next_frame=2, at=1, buffers={1: b}, color_ref=ref)
    second = Snapshot(state2, {}, copies)
    assert second.copy_of(ref) is first.copy_of(ref)  # the colour reference crossed once
    assert second.copy_of(b) is not None and second.copy_of(a) is None
    assert torch.equal(to_uint8(second.copy_of(b).tensor()), to_uint8(b))
    assert torch.equal(second.data()["buffers"][1], b)


def test_compile_warm_up_feeds_the_unet_the_frame_loops_shapes_and_layouts():
    """dynamo guards on shapes and strides: a warm-up with an expanded (stride-0) batch would compile again
    at the first frame."""
    from types import SimpleNamespace

    seen = []

    def unet(lat, t, encoder_hidden_states):
        seen.append((tuple(lat.shape), tuple(encoder_hidden_states.shape), encoder_hidden_states.stride()))

    unet.config = SimpleNamespace(in_channels=4)
    def encode_text(text):  # counts its calls, as StableDiffusion.encode_text does
        fake.text_encoder_calls += 1
        return torch.zeros(1, 77, 8)

    fake = SimpleNamespace(family="sd15", is_flow=False, placement=pick_device("cpu"), latent_scale=8, unet=unet,
                           encode_text=encode_text, text_encoder_calls=1)
    assert speedups._warm_up(fake, (96, 64), (1, 2)) >= 0
    assert [s[:2] for s in seen] == [((1, 4, 8, 12), (1, 77, 8)), ((2, 4, 8, 12), (2, 77, 8))]
    assert all(s[2][0] == 77 * 8 for s in seen)  # a real batch, as torch.cat makes it in the loop
    assert fake.text_encoder_calls == 1  # the warm-up's encoding is not counted as the render's


def test_a_render_finds_histograms_once_and_copies_each_frame_once(tiny_models, tmp_path, monkeypatch):
    """The frame loop's device residency, counted on the CPU: the colour reference's histograms are found
    once per render, not per frame; and each frame's tensor is handed to the host once, the checkpoint
    behind it reusing the writer's copy."""
    from tiny_models import make_table

    from dfm.runtime import output
    from dfm.runtime.render import render

    uniques, copies = [], []
    original_unique, original_copy = torch.unique, output.HostCopy.__init__
    monkeypatch.setattr(torch, "unique", lambda *a, **k: uniques.append(1) or original_unique(*a, **k))

    def counting_copy(self, tensor):
        copies.append(tuple(tensor.shape))
        original_copy(self, tensor)

    monkeypatch.setattr(output.HostCopy, "__init__", counting_copy)
    n = 5
    table = make_table(n, model=str(tiny_models["folder"]), color_coherence="lab", strength=0.5, noise=0.02)
    report = render(table, tmp_path, device="cpu")
    assert report.frames == n
    # the reference's L, a and b once (frame 1's warped image); on the CPU each matched frame's own three
    # channels too (no sync here: the GPU matches by sort instead, test above): 3 frames after frame 1
    assert len(uniques) == 3 + 3 * (n - 2)
    frames = [s for s in copies if len(s) == 4 and s[1] == 3]  # (1, 3, H, W) images; the rest are latents
    # frame i's image once for the writer and its checkpoint (the last frame: writer only, as uint8 (H, W, 3))
    # and the colour reference once: n - 1 float copies of frames, 1 of the reference
    assert len(frames) == (n - 1) + 1
    assert sum(1 for s in copies if len(s) == 3) == 1  # the last frame, rounded on the device
