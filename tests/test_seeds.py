"""Seeds at Deforum/A1111 parity: `seed_behavior schedule` with a `seed_schedule`, variation seeds
(`subseed`, `subseed_strength`: A1111's slerp of two noises), their columns, checks, renders, and their
Deforum and Parseq import and export; CLIP skip and steps schedules through the same interop."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from tiny_models import make_table

from dfm.api import check_text, compile_result, compile_text
from dfm.compiler.deforum_export import export_settings
from dfm.compiler.deforum_import import import_settings
from dfm.compiler.lower import scheduled_seeds
from dfm.compiler.parseq import from_parseq_manifest, to_parseq_manifest
from dfm.runtime import samplers
from dfm.runtime.noise import initial_noise, slerp
from dfm.runtime.render import render

HEAD = "dfm 1\nmode 2d\nframes 8\nprompt 0 \"a cat\"\n"


def codes(text: str) -> list[tuple[str, bool]]:
    return [(d.code, d.is_error) for d in check_text(text)]


# ---- seed schedules in the table ------------------------------------------------------------------------------


def test_a_seed_schedule_gives_each_diffused_frames_seed():
    t = compile_text(HEAD + "seed 10 schedule\nseed_schedule 0:(10), 4:(14), 6:(100)\n")
    assert t.settings.seed_behavior == "schedule"
    assert list(t["seed"]) == [10, 11, 12, 13, 14, 57, 100, 100]  # Deforum: int() of the linear schedule
    assert list(t["seed_schedule"]) == [10, 11, 12, 13, 14, 57, 100, 100]
    held = compile_text(HEAD + "seed 10 schedule\nseed_schedule 0:(s), 4:(s + 4)\n")  # expression keys hold
    assert list(held["seed"]) == [10, 10, 10, 10, 14, 14, 14, 14]


def test_tweens_show_the_seed_of_the_diffusion_they_show():
    t = compile_text(HEAD + "cadence 3\nseed_schedule 0:(0), 7:(70)\n")
    assert list(t["seed_schedule"]) == [0, 10, 20, 30, 40, 50, 60, 70]
    assert list(t["seed"]) == [0, 0, 0, 30, 30, 30, 60, 60]  # rows 0-2 show D0, 3-5 D3, 6-7 D6


def test_minus_one_is_a_seed_drawn_from_the_start_seed_and_the_frame():
    t = compile_text(HEAD + "seed 5 schedule\nseed_schedule 0:(s), 1:(-1), 6:(-1), 7:(s)\n")
    seeds = list(t["seed"])
    assert seeds[0] == seeds[7] == 5
    middle = seeds[1:7]
    assert len(set(middle)) == 6 and all(0 <= s < 2**32 for s in middle)
    assert list(compile_text(HEAD + "seed 5 schedule\nseed_schedule 0:(s), 1:(-1), 6:(-1), 7:(s)\n")["seed"]) == seeds
    other = compile_text(HEAD + "seed 6 schedule\nseed_schedule 0:(s), 1:(-1), 6:(-1), 7:(s)\n")["seed"]
    assert not set(other[1:7]) & set(middle)  # another start seed, other draws
    # each frame's draw is its own (it does not depend on the other frames), and pinned: it must never
    # change, or an old render would neither resume nor reproduce
    assert list(scheduled_seeds(np.array([-1, -1, 7]), 42)) == [seeds_of(42, 0), seeds_of(42, 1), 7]
    assert seeds_of(42, 0) == PINNED


def seeds_of(start: int, frame: int) -> int:
    """The -1 draw of one frame, the others not drawn."""
    values = np.zeros(frame + 1, dtype=np.int64)
    values[frame] = -1
    return int(scheduled_seeds(values, start)[frame])


PINNED = 3932676849


def test_a_seed_schedule_alone_implies_the_behaviour_and_conflicts_are_reported():
    assert codes(HEAD + "seed_schedule 0:(5)\n") == []
    assert compile_text(HEAD + "seed_schedule 0:(5)\n").settings.seed_behavior == "schedule"
    assert codes(HEAD + "seed 1 iter\nseed_schedule 0:(5)\n") == [("DFM108", False)]  # ignored, as in Deforum
    assert list(compile_text(HEAD + "seed 1 iter\nseed_schedule 0:(5)\n")["seed"][:3]) == [1, 2, 3]
    assert codes(HEAD + "seed 1 schedule\n") == [("DFM108", True)]
    assert codes(HEAD + "seed_behavior schedule\n") == [("DFM108", True)]
    assert codes(HEAD + "seed_schedule 0:(2**32)\n") == [("DFM401", True)]
    assert codes(HEAD + "seed_schedule 0:(-2)\n") == [("DFM401", True)]


def test_seed_schedules_need_a_mode_whose_frames_follow_each_other():
    stills = 'dfm 1\nmode none\nprompt 0 "a"\nseed 3 schedule\n'
    assert codes(stills) == [("DFM304", False)]
    assert list(compile_text(stills + 'prompt 1 "b"\n')["seed"]) == [3, 4]  # iter instead


def test_subseed_columns_and_ranges():
    t = compile_text(HEAD + "subseed 77\nsubseed_strength 0:(0), 7:(0.7)\n")
    assert list(t["subseed"]) == [77] * 8 and t["subseed"].dtype == np.int64
    assert np.allclose(t["subseed_strength"], np.arange(8) / 10)
    assert codes(HEAD + "subseed_strength 1.5\n") == [("DFM401", True)]
    assert codes(HEAD + "subseed -1\n") == [("DFM401", True)]
    default = compile_text(HEAD)
    assert set(default["subseed_strength"]) == {0.0} and set(default["clip_skip"]) == {1}


# ---- the noise -------------------------------------------------------------------------------------------------


def a1111_slerp(val, low, high):
    """A1111's slerp, written here from modules/processing.py, in numpy."""
    low_norm = low / np.linalg.norm(low, axis=1, keepdims=True)
    high_norm = high / np.linalg.norm(high, axis=1, keepdims=True)
    dot = (low_norm * high_norm).sum(1)
    if dot.mean() > 0.9995:
        return low * val + high * (1 - val)
    omega = np.arccos(dot)
    so = np.sin(omega)
    return (np.sin((1.0 - val) * omega) / so)[:, None] * low + (np.sin(val * omega) / so)[:, None] * high


def test_slerp_is_a1111s():
    g = torch.Generator().manual_seed(0)
    low, high = torch.randn(4, 8, 8, generator=g, dtype=torch.float64), torch.randn(4, 8, 8, generator=g,
                                                                                   dtype=torch.float64)
    for val in (0.0, 0.25, 0.5, 1.0):
        np.testing.assert_allclose(slerp(val, low, high).numpy(), a1111_slerp(val, low.numpy(), high.numpy()),
                                   rtol=1e-12, atol=1e-12)
    assert torch.equal(slerp(0.3, low, low), low * 0.3 + low * 0.7)  # A1111's fallback for parallel noises


def test_initial_noise_moves_from_the_seed_to_the_subseed():
    shape = (1, 4, 8, 8)

    def noise(seed, **kw):
        return initial_noise(shape, samplers.frame_generator(seed, torch.device("cpu")), **kw)

    seed_only = noise(1)
    assert torch.equal(noise(1, subseed=2, subseed_strength=0.0), seed_only)  # strength 0 draws nothing more
    assert torch.allclose(noise(1, subseed=2, subseed_strength=1.0), noise(2), atol=1e-5)
    half = noise(1, subseed=2, subseed_strength=0.5)
    assert not torch.allclose(half, seed_only) and not torch.allclose(half, noise(2))
    # the generator is left where the seed's noise alone leaves it: later draws (ancestral steps) are the same
    g1, g2 = samplers.frame_generator(1, torch.device("cpu")), samplers.frame_generator(1, torch.device("cpu"))
    initial_noise(shape, g1, subseed=2, subseed_strength=0.5)
    initial_noise(shape, g2)
    assert torch.equal(torch.randn(3, generator=g1), torch.randn(3, generator=g2))


# ---- renders -----------------------------------------------------------------------------------------------------


def frames(out, n):
    return [(out / f"frames/{i:05d}.png").read_bytes() for i in range(n)]


def test_a_render_follows_the_seed_schedule(tiny_models, tmp_path, monkeypatch):
    seen = []
    original = samplers.frame_generator
    monkeypatch.setattr(samplers, "frame_generator", lambda seed, device: seen.append(seed) or original(seed, device))
    table = compile_text(f'dfm 1\nmode 2d\nsize 64x64\nframes 5\ncadence 2\nsteps 4\nsampler euler\n'
                         f'model "{tiny_models["folder"]}"\nprompt 0 "a cat"\n'
                         'seed 9 schedule\nseed_schedule 0:(500), 2:(7), 4:(-1)\n')
    render(table, tmp_path, device="cpu")
    diffused = [int(s) for s, d in zip(table["seed"], table["diffused"], strict=True) if d]
    assert [s for s in seen if s < 2**32] == diffused and diffused[:2] == [500, 7]


def test_subseed_strength_zero_is_no_subseed_byte_for_byte(tiny_models, tmp_path):
    model = str(tiny_models["folder"])
    render(make_table(3, model=model), tmp_path / "plain", device="cpu")
    render(make_table(3, model=model, subseed=999, subseed_strength=0.0), tmp_path / "zero", device="cpu")
    assert frames(tmp_path / "zero", 3) == frames(tmp_path / "plain", 3)


def test_a_subseed_sweep(tiny_models, tmp_path):
    """Stills of one seed and prompt, the strength rising 0, 0.5, 1: each image differs from the others, and
    strength 1 is (up to the slerp's rounding) the subseed's own image."""
    model = str(tiny_models["folder"])
    sweep = make_table(3, mode="none", model=model, seed=3, seed_behavior="fixed", subseed=8)
    sweep = sweep.with_columns(subseed_strength=[0.0, 0.5, 1.0])
    render(sweep, tmp_path / "sweep", device="cpu")
    imgs = frames(tmp_path / "sweep", 3)
    assert len(set(imgs)) == 3
    render(make_table(1, mode="none", model=model, seed=3), tmp_path / "seed", device="cpu")
    assert imgs[0] == frames(tmp_path / "seed", 1)[0]
    render(make_table(1, mode="none", model=model, seed=8), tmp_path / "subseed", device="cpu")
    full, subseed = png(tmp_path / "sweep/frames/00002.png"), png(tmp_path / "subseed/frames/00000.png")
    assert np.abs(full - subseed).max() <= 2


def png(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.int16)


# ---- interop ----------------------------------------------------------------------------------------------------

SCENE = (HEAD + "seed 12 schedule\nseed_schedule 0:(12), 3:(40), 7:(12)\nsubseed 5\n"
         "subseed_strength 0:(0), 7:(0.7)\nclip_skip 0:(1), 4:(2)\nsteps 0:(20), 7:(27)\n")


def test_deforum_export_writes_the_extensions_keys_and_reads_back():
    exported = export_settings(compile_result(SCENE))
    s = exported.settings
    assert s["seed_behavior"] == "schedule" and s["seed"] == 12
    assert s["seed_schedule"] == "0: (12), 3: (40), 7: (12)"
    assert s["subseed_schedule"] == "0: (5)" and s["subseed_strength_schedule"] == "0: (0), 7: (0.7)"
    assert s["clipskip_schedule"] == "0: (1), 4: (2)" and s["steps_schedule"] == "0: (20), 7: (27)"
    assert s["enable_subseed_scheduling"] and s["enable_clipskip_scheduling"] and s["enable_steps_scheduling"]
    assert exported.warnings == [w for w in exported.warnings if w.startswith("model:")]
    back = compile_text(import_settings(exported.dumps()).text)
    table = compile_text(SCENE)
    for column in ("seed", "seed_schedule", "subseed", "subseed_strength", "clip_skip", "steps"):
        assert np.array_equal(back[column], table[column]), column


def test_deforum_export_warns_about_minus_one_seeds():
    exported = export_settings(compile_result(HEAD + "seed_schedule 0:(-1)\n"))
    assert any(w.startswith("seed_schedule:") and "random" in w for w in exported.warnings)


def test_deforum_import_of_variation_seeds_and_clip_skip():
    data = {"animation_mode": "2D", "max_frames": 8, "prompts": {"0": "a (cat:1.2)"}, "seed": 4,
            "enable_subseed_scheduling": True, "subseed_schedule": "0: (3)",
            "subseed_strength_schedule": "0: (0), 7: (0.35)", "enable_clipskip_scheduling": True,
            "clipskip_schedule": "0: (2)", "enable_steps_scheduling": True, "steps": 50,
            "steps_schedule": "0: (25), 4: (max_f*5)", "seed_resize_from_w": 0, "seed_resize_from_h": 0}
    result = import_settings(data)
    assert result.warnings == [] and set(data) == result.mapped_keys
    t = compile_text(result.text)
    assert list(t["steps"]) == [25, 27, 30, 32, 35, 35, 35, 35]  # an expression key holds its value on
    assert set(t["clip_skip"]) == {2} and set(t["subseed"]) == {3} and t["subseed_strength"][7] == 0.35
    assert t["prompt"][0] == "a (cat:1.2)" and t["prompt_pieces"][0] == '[["a ",1.0],["cat",1.2]]'
    off = import_settings({**data, "enable_subseed_scheduling": False, "enable_clipskip_scheduling": False})
    assert "subseed" not in off.text and "clip_skip" not in off.text
    assert any("switched off" in w and "clipskip_schedule" in w for w in off.warnings)


def test_seed_resize_imports_and_exports_with_a1111s_keys():
    base = {"max_frames": 4, "prompts": {"0": "a"}}
    result = import_settings({**base, "seed_resize_from_w": 770, "seed_resize_from_h": 512})
    assert result.warnings == [] and "seed_resize_from 768x512" in result.text  # A1111 floors to latents (// 8)
    exported = export_settings(compile_result(result.text)).settings
    assert (exported["seed_resize_from_w"], exported["seed_resize_from_h"]) == (768, 512)
    one = import_settings({**base, "seed_resize_from_w": 768})  # A1111 needs both above 0
    assert "seed_resize_from" not in one.text and any("only one of seed_resize_from_w" in w for w in one.warnings)


def test_parseq_carries_the_seeds_subseeds_and_clip_skip():
    table = compile_text(SCENE)
    warnings: list[str] = []
    rows = to_parseq_manifest(table, warnings)["rendered_frames"]
    assert [r["seed"] for r in rows] == list(table["seed"])
    assert [r["subseed"] for r in rows] == [5] * 8
    assert [r["subseed_strength"] for r in rows] == pytest.approx(list(table["subseed_strength"]))
    assert [r["clipskip"] for r in rows] == list(table["clip_skip"])
    assert any(w.startswith("clip_skip:") and "enable_clipskip_scheduling" in w for w in warnings)
    assert not any(w.startswith("seed_schedule") for w in warnings)
    back = compile_text(from_parseq_manifest(to_parseq_manifest(table)).text)
    for column in ("seed", "subseed", "subseed_strength", "clip_skip"):
        assert np.allclose(back[column], table[column], rtol=0, atol=1e-12), column


def test_parseq_seed_travel_imports_as_subseeds():
    n = 6
    rows = [{"frame": i, "seed": 55 + i / 5, "subseed": math.ceil(55 + i / 5), "subseed_strength": (55 + i / 5) % 1,
             "deforum_prompt": "a"} for i in range(n)]
    result = from_parseq_manifest({"rendered_frames": rows, "options": {"output_fps": 10}})
    t = compile_text(result.text)
    assert list(t["seed"]) == [int(r["seed"]) for r in rows] == [55] * 5 + [56]
    assert list(t["subseed"]) == [55, 56, 56, 56, 56, 56]
    assert np.allclose(t["subseed_strength"], [r["subseed_strength"] for r in rows], rtol=0, atol=1e-12)
    flat = [{**r, "seed": 9, "subseed": 9, "subseed_strength": 0} for r in rows]
    text = from_parseq_manifest({"rendered_frames": flat, "options": {}}).text
    assert "subseed" not in text and compile_text(text).settings.seed_behavior == "fixed"
