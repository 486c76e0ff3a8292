"""Every schedule's range pinned to what Deforum's renderer does with a pasted value: a value Deforum renders
is kept (with DFM408 where it does not do what its name suggests); only a value that cannot render is refused
(DFM401), and the diagnostic names the value. A new schedule fails `test_every_schedule_is_pinned` until it
has a row here."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dfm.api import check_text
from dfm.compiler import catalogue as cat
from dfm.contract import hybrid
from dfm.runtime import effects

CLIP = Path(__file__).resolve().parents[1] / "examples" / "input.mp4"

# parameter -> (values Deforum renders as written, values that cannot render), a mode where it is read
PINNED: dict[str, tuple[tuple[float, ...], tuple[float, ...], str]] = {
    "angle": ((-720, 720), (), "2d"),
    "zoom": ((0.5, 3, -1), (0,), "2d"),  # 0: a singular warp (cv2 inverts the matrix)
    "translation_x": ((-1e4, 1e4), (), "2d"),
    "translation_y": ((-1e4, 1e4), (), "2d"),
    "translation_z": ((-1e4, 1e4), (), "3d"),
    "rotation_3d_x": ((-720, 720), (), "3d"),
    "rotation_3d_y": ((-720, 720), (), "3d"),
    "rotation_3d_z": ((-720, 720), (), "3d"),
    "transform_center_x": ((-1, 2), (), "2d"),
    "transform_center_y": ((-1, 2), (), "2d"),
    "perspective_flip_theta": ((-720, 720), (), "2d"),
    "perspective_flip_phi": ((-720, 720), (), "2d"),
    "perspective_flip_gamma": ((-720, 720), (), "2d"),
    "perspective_flip_fv": ((1, 179), (0, 180), "2d"),  # tan(fv/2) is 0 or infinite
    "fov": ((1, 179), (0, 180), "3d"),
    "near": ((1, 5000), (0, -1), "3d"),
    "far": ((1, 1e5), (0, -1), "3d"),
    "strength": ((0, 1), (-0.1, 1.5), "2d"),  # int((1 - strength) × steps) must be a step count in [0, steps]
    "noise": ((0, 0.5, -0.2, 20), (), "2d"),
    "contrast": ((0, 1, 3, -1, -0.5), (), "2d"),
    "cfg_scale": ((0, 30, 100), (-1, 101), "2d"),
    # dfm's own (diffusers' FluxPipeline true_cfg_scale): 1 is off, below it would steer towards the negative
    "true_cfg_scale": ((1, 4, 100), (0.5, 101), "2d"),
    "steps": ((1, 1000), (0, 1001), "2d"),  # 0 steps cannot denoise; the schedulers hold 1000 timesteps
    "seed_schedule": ((-1, 0, 2**32 - 1), (-2, 2**32), "2d"),
    "subseed": ((0, 2**32 - 1), (-1, 2**32), "2d"),
    "subseed_strength": ((0, 1), (-0.1, 1.1), "2d"),
    "clip_skip": ((1, 12), (0, 13), "2d"),
    "kernel": ((0, 5, 99), (-1, 100), "2d"),  # bounded: a kernel is allocated per frame
    "sigma": ((0, 1, 100), (-1, 101), "2d"),  # sigma 0: OpenCV derives it from the kernel size
    "amount": ((0, 2, -1), (), "2d"),
    "threshold": ((0, 255), (-1, 256), "2d"),
    # hybrid video (a scene with it on): PIL's blends in Deforum take alpha in [0, 1], the cut-offs are percents
    "hybrid_comp_alpha": ((0, 1), (-0.1, 1.1), "2d"),
    "hybrid_comp_mask_blend_alpha": ((0, 1), (-0.1, 1.1), "2d"),
    "hybrid_comp_mask_contrast": ((0, 2, 100), (-1, 101), "2d"),
    "hybrid_comp_mask_auto_contrast_cutoff_high": ((0, 100), (-1, 101), "2d"),
    "hybrid_comp_mask_auto_contrast_cutoff_low": ((0, 100), (-1, 101), "2d"),
    "hybrid_flow_factor": ((-5, 0, 5), (), "2d"),
    "cadence_flow_factor": ((-5, 0, 5), (), "2d"),
    "redo_flow_factor": ((-5, 0, 5), (), "2d"),
}
WARNED = {("zoom", -1), ("noise", -0.2), ("contrast", -1), ("contrast", -0.5), ("amount", -1)}


def scene(name: str, value: float, mode: str) -> str:
    """A scene where `name` is its default at frame 0 and `value` from frame 1."""
    extra = "seed_behavior schedule\n" if name == "seed_schedule" else ""
    if name in hybrid.SCHEDULES:  # their columns exist while hybrid video is on
        extra = f'video_init_path "{CLIP}"\nhybrid_composite normal\n'
        mode = "2d"
    default = cat.BY_NAME[name].default
    return f'dfm 1\nmode {mode}\nframes 3\nprompt "a"\n{extra}{name} 0:({default!r}), 1:({value!r}) step\n'


def test_every_schedule_is_pinned():
    assert {p.name for p in cat.SCHEDULES if p.cn_unit is None} == set(PINNED)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_values_deforum_renders_are_kept_and_the_rest_refused_naming_the_value(name: str):
    renders, refused, mode = PINNED[name]
    for v in renders:
        diags = check_text(scene(name, v, mode))
        assert not [d for d in diags if d.is_error], (name, v, diags)
        warned = [d for d in diags if d.code == "DFM408"]
        assert bool(warned) == ((name, v) in WARNED), (name, v, diags)
        if warned:
            assert warned[0].frame == 1 and f"`{name}` is {v:g}" in warned[0].message
    for v in refused:
        errors = [d for d in check_text(scene(name, v, mode)) if d.is_error]
        assert errors and errors[0].code == "DFM401" and f"{v:g}" in errors[0].message, (name, v, errors)


def test_a_negative_contrast_is_deforums_8_bit_wrap_around():
    levels = torch.tensor([0, 1, 100, 200, 255], dtype=torch.float32).view(1, 1, 1, 5) / 255
    inverted = effects.contrast(levels, -1.0) * 255
    # numpy's (v * -1).round().astype(np.uint8) on x86: -v wraps to 256 - v (0 stays 0)
    assert inverted.round().flatten().tolist() == [0, 255, 156, 56, 1]
    half = effects.contrast(levels, -0.5) * 255
    assert half.round().flatten().tolist() == [0, 0, 206, 156, 128]  # round(-0.5) is -0 in numpy too
    assert torch.equal(effects.contrast(levels, 2.0), (levels * 2).clamp(0, 1))


def test_a_negative_noise_adds_the_same_noise_with_its_sign_flipped():
    frame = torch.full((1, 3, 8, 8), 0.5)
    plus = effects.add_noise(frame, 0.2, torch.Generator().manual_seed(1))
    minus = effects.add_noise(frame, -0.2, torch.Generator().manual_seed(1))
    torch.testing.assert_close(minus - frame, -(plus - frame))
    assert float((minus - frame).std()) > 0.05


def test_a_negative_amount_does_nothing_and_sigma_0_takes_opencvs_sigma():
    frame = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(effects.unsharp_mask(frame, 5, 1.0, -1.0, 0.0), frame)
    sharp = effects.unsharp_mask(frame, 5, 0.0, 1.0, 0.0)
    assert torch.isfinite(sharp).all() and not torch.equal(sharp, frame)
    # cv2.getGaussianKernel(5, 0): sigma = 0.3 * ((5 - 1) * 0.5 - 1) + 0.8 = 1.1
    torch.testing.assert_close(effects.gaussian_kernel_1d(5, 0.0, torch.device("cpu")),
                               effects.gaussian_kernel_1d(5, 1.1, torch.device("cpu")))


def test_a_pasted_negative_contrast_imports_with_deforums_numbers():
    from dfm.api import compile_text
    from dfm.compiler.deforum_import import import_settings

    imported = import_settings({"animation_mode": "2D", "max_frames": 6, "prompts": {"0": "a cat"},
                                "contrast_schedule": "0:(1), 4:(-1)"})
    assert not [w for w in imported.warnings if "contrast" in w], imported.warnings
    assert [d.code for d in check_text(imported.text) if d.parameter == "contrast"] == ["DFM408"]
    assert compile_text(imported.text)["contrast"].tolist() == [1.0, 0.5, 0.0, -0.5, -1.0, -1.0]
