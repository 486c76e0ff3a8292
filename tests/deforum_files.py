"""The Deforum and Parseq files the interop tests read, in a plain clone as beside the shared data.

The real files (the A1111 extension's default settings file and a Parseq manifest from its tests, both
AGPL-3.0) stay outside the project, in ../shared/data/peer/ (see its README). What the tests need of them
is here instead:

- `A1111_KEYS`: the extension's 253 settings keys, in file order (a list of names:
  tests/fixtures/a1111_settings_keys.json);
- `a1111_settings()`: a settings object with exactly those keys, written for these tests: the
  extension's defaults where the tests check a value (3D, 120 frames, 15 fps, 512x512, `Euler a`, cadence
  2, the 0.065 noise and 0.65 strength schedules …), prompts of our own, and null, which Deforum's loader
  reads as unset, for the rest;
- `parseq_manifest()`: a manifest in Parseq's format (reference §3.5: `X`, `X_delta`, `X_pc` per managed
  field, `deforum_prompt`, `subseed` = ceil(seed), `subseed_strength` = seed % 1) with values of our own.

`a1111_sources()` and `parseq_sources()` give these stand-ins, plus the real files when they are beside the
checkout, each with the facts a test may check; tests parametrize over them, so none skips in a clone.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
PEER = ROOT.parent / "shared" / "data" / "peer"
A1111_FILE = PEER / "a1111-default_settings.txt"
PARSEQ_FILE = PEER / "parseq-manifest.json"

A1111_KEYS: list[str] = json.loads((FIXTURES / "a1111_settings_keys.json").read_text(encoding="utf-8"))["keys"]


@dataclass(frozen=True)
class Source:
    """A settings file or manifest, and what importing it must give."""

    name: str
    data: dict
    expect: dict = field(default_factory=dict)


# ---- A1111 settings ------------------------------------------------------------------------------------

_COMMON_NEG = "text, watermark"
_A1111_VALUES: dict[str, object] = {
    "W": 512, "H": 512, "seed": -1, "sampler": "Euler a", "steps": 25, "seed_behavior": "iter", "seed_iter_N": 1,
    "use_init": False, "strength": 0.8, "strength_0_no_init": True, "init_image": None,
    # a run file stores merged prompts: the common negative is already in each one
    "prompts": {"0": f"a lighthouse on a cliff, morning fog --neg {_COMMON_NEG}",
                "30": f"a harbour full of boats --neg {_COMMON_NEG}",
                "60": f"a storm over the sea --neg dark {_COMMON_NEG}",
                "90": f"a calm sea at sunset --neg {_COMMON_NEG}"},
    "positive_prompts": "", "negative_prompts": _COMMON_NEG,
    "animation_mode": "3D", "max_frames": 120, "border": "replicate",
    "angle": "0: (0)", "zoom": "0: (1.0025+0.002*sin(1.25*3.14*t/30))", "translation_x": "0: (0)",
    "translation_y": "0: (0)", "translation_z": "0: (1.75)", "transform_center_x": "0: (0.5)",
    "transform_center_y": "0: (0.5)", "rotation_3d_x": "0: (0)", "rotation_3d_y": "0: (0)", "rotation_3d_z": "0: (0)",
    "enable_perspective_flip": False, "perspective_flip_theta": "0: (0)", "perspective_flip_phi": "0: (0)",
    "perspective_flip_gamma": "0: (0)", "perspective_flip_fv": "0: (53)",
    "noise_schedule": "0: (0.065)", "strength_schedule": "0: (0.65)", "contrast_schedule": "0: (1.0)",
    "cfg_scale_schedule": "0: (7)", "enable_steps_scheduling": False, "steps_schedule": "0: (25)",
    "fov_schedule": "0: (70)", "near_schedule": "0: (200)", "far_schedule": "0: (10000)",
    "seed_schedule": '0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)',
    "amount_schedule": "0: (0.1)", "kernel_schedule": "0: (5)", "sigma_schedule": "0: (1)",
    "threshold_schedule": "0: (0)",
    "color_coherence": "LAB", "color_force_grayscale": False, "diffusion_cadence": 2, "noise_type": "perlin",
    "use_depth_warping": True, "depth_algorithm": "Midas-3-Hybrid", "midas_weight": 0.2, "padding_mode": "border",
    "sampling_mode": "bicubic", "save_depth_maps": False,
    "video_init_path": "input.mp4", "extract_nth_frame": 1, "extract_from_frame": 0, "extract_to_frame": -1,
    "use_mask_video": False, "video_mask_path": "mask.mp4", "skip_video_creation": False, "fps": 15,
    "enable_noise_multiplier_scheduling": True, "noise_multiplier_schedule": "0: (1.05)",  # on by default
    "sd_model_name": "dreamy_v2.safetensors",
}


def a1111_settings() -> dict:
    """A settings object with every key of the extension's default file (see the module's docstring)."""
    return {k: _A1111_VALUES.get(k) for k in A1111_KEYS}


def a1111_sources() -> list[Source]:
    out = [Source("stand-in", a1111_settings(), {
        "checkpoint": "dreamy_v2.safetensors",
        "prompts": {29: "a lighthouse on a cliff, morning fog", 30: "a harbour full of boats",
                    119: "a calm sea at sunset"},
        "negatives": {0: _COMMON_NEG, 60: f"dark {_COMMON_NEG}"},
    })]
    if A1111_FILE.exists():
        out.append(Source("a1111-default_settings.txt", json.loads(A1111_FILE.read_text(encoding="utf-8")), {
            "checkpoint": "revAnimated_v122.safetensors",
            "prompts": {29: "tiny cute swamp bunny, highly detailed, intricate, ultra hd, sharp photo, crepuscular "
                            "rays, in focus, 4k, landscape",
                        119: "a beautiful durian, amazing award winning photography"},
            "prompt_starts": {30: "anthropomorphic clean cat"},
            "negatives": {0: "nsfw, nude", 60: "photo, realistic  nsfw, nude"},
        }))
    return out


# ---- Parseq ----------------------------------------------------------------------------------------------


def parseq_manifest() -> dict:
    """A small manifest as Parseq renders one: 11 frames at 60 fps, 140 bpm, cadence 2; `seed` travelling from
    55 to 56 and `angle` a sine of one beat's period, both managed; one prompt with a negative."""
    fps, bpm, n = 60, 140, 11
    seeds = [55 + i / 10 for i in range(n)]
    angles = [45 * math.sin(2 * math.pi * i / (fps * 60 / bpm)) for i in range(n)]
    prompt, negative = "a glass city at night", "fog"
    rows = []
    for i in range(n):
        row = {"frame": i, "seed": seeds[i], "angle": angles[i], "deforum_prompt": f"{prompt} --neg {negative}",
               "subseed": math.ceil(seeds[i]), "subseed_strength": seeds[i] % 1}
        for name, series in (("seed", seeds), ("angle", angles)):
            top = max(abs(v) for v in series)
            row[f"{name}_delta"] = series[i] - (series[i - 1] if i else 0)
            row[f"{name}_pc"] = 100 * series[i] / top
        rows.append(row)
    meta = {name: {"max": max(s), "min": min(s), "isFlat": len(set(s)) == 1}
            for name, s in (("seed", seeds), ("angle", angles))}
    return {
        "meta": {"generated_by": "sd_parseq", "version": "0.1.94"},
        "prompts": {"format": "v2", "enabled": True, "commonPromptPos": "append",
                    "promptList": [{"name": "Prompt 1", "positive": prompt, "negative": negative, "allFrames": False,
                                    "from": 0, "to": n - 1}]},
        "options": {"input_fps": 20, "bpm": bpm, "output_fps": fps, "cadence": 2},
        "managedFields": ["seed", "angle"],
        "displayedFields": ["seed", "angle"],
        "keyframes": [{"frame": 0, "seed": 55, "angle": "", "angle_i": "sin(p=1b, a=45)"}, {"frame": 10, "seed": 56}],
        "timeSeries": [],
        "keyframeLock": "frames",
        "reverseRender": False,
        "rendered_frames": rows,
        "rendered_frames_meta": meta,
    }


def parseq_sources() -> list[Source]:
    stand_in = parseq_manifest()
    rows = stand_in["rendered_frames"]
    out = [Source("stand-in", stand_in, {
        "frames": 11, "fps": 60, "cadence": 2, "seed": 55, "prompt": "a glass city at night", "negative": "fog",
        "angle": {1: rows[1]["angle_delta"], 10: rows[10]["angle_delta"]},
    })]
    if PARSEQ_FILE.exists():
        out.append(Source("parseq-manifest.json", json.loads(PARSEQ_FILE.read_text(encoding="utf-8")), {
            "frames": 11, "fps": 60, "cadence": 2, "seed": 55, "prompt": "Parseq prompt!",
            "negative": "neg parseq prompt!", "angle": {1: 30.11087728614862, 10: 25.065378423427127},
        }))
    return out
