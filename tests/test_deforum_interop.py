"""Deforum settings import (notebook and A1111 extension) and A1111 export, with round trips."""

from __future__ import annotations

import math
import random
import re
from pathlib import Path

import numpy as np
import pytest
from deforum_files import A1111_KEYS, a1111_sources

from dfm.api import check_text, compile_result, compile_text
from dfm.compiler import catalogue as cat
from dfm.compiler.deforum_export import export_settings
from dfm.compiler.deforum_import import import_settings
from dfm.compiler.deforum_names import A1111_SAMPLERS, Impact
from dfm.compiler.interop import SettingsError

ROOT = Path(__file__).resolve().parents[1]


def imported_table(data, **kw):
    result = import_settings(data, **kw)
    errors = [d for d in check_text(result.text) if d.is_error]
    assert errors == [], result.text
    return result, compile_text(result.text)


def warning_with(result, *words: str) -> str:
    hits = [w for w in result.warnings if all(word in w for word in words)]
    assert hits, f"no warning with {words}: {result.warnings}"
    return hits[0]


# ---- the A1111 extension's default settings file ---------------------------------------------------
# Its keys come from tests/fixtures (a stand-in file has exactly those keys); the real file takes part too
# when ../shared/data/peer is beside the checkout (tests/deforum_files.py).


@pytest.fixture(scope="module", params=a1111_sources(), ids=lambda s: s.name)
def a1111(request):
    source = request.param
    return source, import_settings(source.data, source.name)


def test_the_fixture_holds_the_extensions_keys():
    assert len(A1111_KEYS) == len(set(A1111_KEYS)) == 253
    assert {"W", "H", "prompts", "cn_5_loopback_mode", "deforum_git_commit_id"} <= set(A1111_KEYS)


def test_every_a1111_key_is_mapped_or_warned(a1111):
    source, result = a1111
    assert list(source.data) == A1111_KEYS
    missing = set(source.data) - (result.mapped_keys | result.warned_keys)
    assert missing == set()
    assert not any("unknown" in w for w in result.warnings)  # dfm knows every key of the extension


def test_a1111_default_file_imports_to_a_clean_scene(a1111):
    source, result = a1111
    assert [d for d in check_text(result.text) if d.is_error] == []
    from dfm.dsl.formatter import format_source

    assert format_source(result.text) == result.text  # canonical
    table = compile_text(result.text)
    s = table.settings
    assert (s.mode, s.frames, s.fps, s.size, s.sampler, s.cadence) == ("3d", 120, 15.0, (512, 512), "euler_a", 2)
    assert s.color_coherence == "lab" and s.seed_behavior == "iter"
    assert np.all(table["translation_z"] == 1.75)
    assert np.all(table["noise"] == 0.065) and np.all(table["strength"] == 0.65)
    assert np.all(table["cfg_scale"] == 7) and np.all(table["steps"] == 25) and np.all(table["fov"] == 70)
    for frame, text in source.expect["prompts"].items():
        assert table["prompt"][frame] == text
    for frame, start in source.expect.get("prompt_starts", {}).items():
        assert table["prompt"][frame].startswith(start)
    # the run file stores merged prompts: the common negative is not added a second time
    for frame, text in source.expect["negatives"].items():
        assert table["negative_prompt"][frame] == text


def test_a1111_default_file_warnings_are_grouped_and_specific(a1111):
    source, result = a1111
    # the five ControlNet units are switched off and untouched: read, and nothing to say
    assert not [w for w in result.warnings if "ControlNet" in w]
    assert {f"cn_{n}_weight" for n in range(1, 6)} <= result.mapped_keys
    warning_with(result, "seed -1", "fixed to")
    warning_with(result, "noise multiplier", "IN USE")  # on by default in the extension
    warning_with(result, "noise_type", "perlin")
    warning_with(result, source.expect["checkpoint"])
    warning_with(result, "not used in mode 3d", "zoom")
    assert f'# model "{source.expect["checkpoint"]}"' in result.text
    # one line per group, not one per key
    assert len(result.warnings) < 40


def test_a1111_default_file_warnings_say_what_changes_the_render(a1111):
    source, result = a1111
    differs = [w for w in result.warnings if w.impact is Impact.DIFFERS]
    # the extension's defaults render differently through these, and every one of them is in the lead group
    for words in [("noise multiplier", "IN USE"), ("noise_type", "perlin"), ("perlin noise", "IN USE"),
                  (source.expect["checkpoint"],)]:
        assert warning_with(result, *words).impact is Impact.DIFFERS, words
    assert warning_with(result, "seed -1").impact is Impact.NOTE
    # switched off, at a default, unused in the mode, provenance: nothing the render loses
    for words in [("mask keys",), ("not used in mode 3d",), ("provenance",),
                  ("switched off in the file",), ("InstructPix2Pix",)]:
        assert warning_with(result, *words).impact is Impact.NO_EFFECT, words
    assert all("nothing is lost" not in w for w in differs)
    masks = warning_with(result, "mask keys")
    assert len(masks.keys) == 12 and "mask_file" in masks.keys
    # the warnings are still the plain texts the API always gave
    assert all(isinstance(w, str) for w in result.warnings)
    assert warning_with(result, "mask keys") == str(warning_with(result, "mask keys"))


def test_warnings_name_only_the_commands_that_do_what_the_key_did():
    result = import_settings({"max_frames": 10, "prompts": {"0": "a cat"}, "reroll_patience": 10.0,
                              "motion_preview_mode": True, "noise_type": "uniform", "perlin_octaves": 4})
    assert "dfm plot" not in warning_with(result, "reroll_patience")
    assert "`dfm preview`" in warning_with(result, "motion_preview_mode", "IN USE")
    # perlin settings with uniform noise do nothing in Deforum either
    assert warning_with(result, "perlin_octaves", "switched off").impact is Impact.NO_EFFECT
    texts = " ".join(result.warnings)
    assert not re.search(r"`dfm (plot|compile|export|fmt|check)\b", texts)


def test_seed_minus_one_is_fixed_deterministically(a1111):
    source, result = a1111
    again = import_settings(dict(source.data))
    seed_line = [ln for ln in result.text.splitlines() if ln.startswith("seed")]
    assert seed_line == [ln for ln in again.text.splitlines() if ln.startswith("seed")]
    changed = import_settings({**source.data, "batch_name": "another"})
    assert [ln for ln in changed.text.splitlines() if ln.startswith("seed")] != seed_line


# ---- notebook settings ------------------------------------------------------------------------------

NOTEBOOK = {
    "W": 500, "H": 513, "seed": 7, "sampler": "klms", "steps": 40, "scale": 9,
    "seed_behavior": "fixed", "animation_mode": "2D", "max_frames": 40, "border": "wrap",
    "angle": "0:(0)", "zoom": "0:(1.04)", "translation_x": "0:(10*sin(2*3.14*t/10))",
    "flip_2d_perspective": True, "perspective_flip_phi": "0:(t%15)",
    "noise_schedule": "0: (0.02)", "strength_schedule": "0: (0.65)", "contrast_schedule": "0: (1.0)",
    "color_coherence": "Match Frame 0 LAB", "diffusion_cadence": "3", "near_plane": 200, "fov": 40,
    "use_init": True, "init_image": "init.png", "strength": 0.5, "strength_0_no_init": True,
    "animation_prompts": {0: "a robot", 20: "a village"},
    "prompts": ["a batch prompt"],
    "neg_prompts": {0: "blurry"},
    "save_samples": True, "clip_scale": 0, "some_new_key": 1,
}


def test_notebook_settings():
    result, table = imported_table(NOTEBOOK, source="notebook")
    s = table.settings
    assert s.size == (496, 512)
    warning_with(result, "500x513", "496x512")
    assert (s.mode, s.frames, s.sampler, s.seed, s.seed_behavior, s.cadence) == ("2d", 40, "klms", 7, "fixed", 3)
    assert (s.border, s.color_coherence, s.perspective_flip) == ("wrap", "lab", True)
    assert s.init_image.endswith("init.png") and s.init_strength == 0.5
    assert np.all(table["cfg_scale"] == 9) and np.all(table["steps"] == 40) and np.all(table["zoom"] == 1.04)
    assert table["translation_x"][3] == pytest.approx(10 * math.sin(2 * 3.14 * 3 / 10), abs=1e-12)
    assert table["perspective_flip_phi"][17] == 2  # t % 15
    assert list(table["seed"][:3]) == [7, 7, 7]
    assert table["prompt"][19] == "a robot" and table["prompt"][20] == "a village"
    assert set(table["negative_prompt"]) == {"blurry"}
    warning_with(result, "prompts", "animation_prompts")  # the batch list is not used in 2D
    warning_with(result, "unknown", "some_new_key")
    warning_with(result, "gradient guidance", "clip_scale")
    assert set(NOTEBOOK) <= result.mapped_keys | result.warned_keys


def test_notebook_prompt_forms():
    base = {"animation_mode": "2D", "max_frames": 10}
    _, table = imported_table({**base, "prompts": "one prompt", "neg_prompts": "bad"})
    assert set(table["prompt"]) == {"one prompt"} and set(table["negative_prompt"]) == {"bad"}
    _, table = imported_table({**base, "prompts": ["a", "b", "c"]})
    assert list(table["prompt"][:4]) == ["a", "b", "c", "c"]  # a list switches at frames 0, 1, 2


def test_no_prompts_gives_a_placeholder_and_a_warning():
    result, table = imported_table({"animation_mode": "2D", "max_frames": 5})
    warning_with(result, "no prompts")
    assert set(table["prompt"]) == {""}


# ---- A1111 specifics -----------------------------------------------------------------------------------


def test_a1111_prompts_with_neg_and_expression_keys_and_common_texts():
    data = {
        "animation_mode": "2D", "max_frames": 101,
        "prompts": {"0": "a cat --neg dog", "max_f/2": "a bird"},
        "animation_prompts_positive": "masterpiece", "animation_prompts_negative": "ugly",
    }
    _, table = imported_table(data)
    assert table["prompt"][49] == "masterpiece a cat" and table["prompt"][50] == "masterpiece a bird"
    assert table["negative_prompt"][0] == "dog ugly" and table["negative_prompt"][50] == "ugly"


def test_string_frame_keys_in_schedules_are_evaluated():
    data = {"animation_mode": "2D", "max_frames": 50, "prompts": {"0": "x"},
            "strength_schedule": '0:(0.5), "max_f-10":(0.7)'}
    _, table = imported_table(data)
    assert table["strength"][39] == pytest.approx(0.7)
    assert table["strength"][20] == pytest.approx(0.5 + 0.2 * 20 / 39)
    assert table["strength"][49] == pytest.approx(0.7)


def test_keys_past_the_end_are_left_out_with_a_warning():
    data = {"animation_mode": "2D", "max_frames": 10, "prompts": {"0": "x"}, "angle": "0:(1), 20:(5)"}
    result, table = imported_table(data)
    assert np.all(table["angle"] == 1)
    warning_with(result, "angle", "past the last frame")


@pytest.mark.parametrize("label, expected", [
    ("Euler a", "euler_a"), ("DPM++ 2M Karras", "dpmpp_2m_karras"), ("LMS", "klms"), ("DDIM", "ddim"),
    ("euler_ancestral", "euler_a"), ("DPM2 a Karras", "dpm2_a_karras"), ("UniPC", "unipc"),
])
def test_sampler_names(label, expected):
    _, table = imported_table({"animation_mode": "2D", "max_frames": 3, "prompts": {"0": "x"}, "sampler": label})
    assert table.settings.sampler == expected


def test_unsupported_sampler_is_not_substituted_silently():
    # (DPM++ SDE Karras is imported as an approximation, with a warning: tests/test_sampler_names.py)
    result, table = imported_table({"max_frames": 3, "prompts": {"0": "x"}, "sampler": "DPM++ 2S a Karras"})
    text = warning_with(result, "DPM++ 2S a Karras", "not supported")
    assert cat.UNSUPPORTED_SAMPLERS["dpmpp_2s_a_karras"] in text
    assert "sampler" not in [ln.split()[0] for ln in result.text.splitlines() if ln and not ln.startswith("#")]
    assert "sampler" in result.warned_keys


def test_steps_schedule_only_when_enabled():
    base = {"animation_mode": "2D", "max_frames": 20, "prompts": {"0": "x"}, "steps": 30,
            "steps_schedule": "0:(10), 10:(20)"}
    result, table = imported_table({**base, "enable_steps_scheduling": False})
    assert np.all(table["steps"] == 30)
    assert "steps_schedule" in result.warned_keys  # switched off and not the default
    _, table = imported_table({**base, "enable_steps_scheduling": True})
    assert list(table["steps"][[0, 5, 10, 19]]) == [10, 15, 20, 20]


def test_disabled_perspective_flip_is_not_emitted():
    data = {"animation_mode": "2D", "max_frames": 20, "prompts": {"0": "x"}, "enable_perspective_flip": False,
            "perspective_flip_phi": "0:(t%15)", "perspective_flip_fv": "0:(53)"}
    result, table = imported_table(data)
    assert "perspective_flip_phi" not in result.text
    assert np.all(table["perspective_flip_phi"] == 0)
    assert "perspective_flip_phi" in result.warned_keys and "perspective_flip_fv" in result.mapped_keys


def test_unreadable_schedules_become_comments_with_warnings():
    data = {"animation_mode": "2D", "max_frames": 20, "prompts": {"0": "x"},
            "angle": "0:(1) 10:(2)", "zoom": "0:(foo(t))", "translation_x": "0.75"}
    result, table = imported_table(data)
    warning_with(result, "angle", "comment")
    warning_with(result, "zoom", "comment")
    warning_with(result, "translation_x", "no frame key")
    assert "# angle" in result.text and "# zoom" in result.text
    assert np.all(table["translation_x"] == 0.75)
    assert {"angle", "zoom", "translation_x"} <= result.warned_keys


def test_bad_input_raises_settings_error():
    with pytest.raises(SettingsError, match="not valid JSON") as err:
        import_settings('{"W": 512,, }')
    assert err.value.help
    with pytest.raises(SettingsError, match="JSON object"):
        import_settings("[1, 2]")
    with pytest.raises(SettingsError):
        import_settings(42)  # type: ignore[arg-type]


# ---- export --------------------------------------------------------------------------------------------

SCENE = """dfm 1
mode 2d
size 768x512
fps 15
frames 100
sampler dpmpp_2m_karras
seed 5 iter 2
cadence 3
color_coherence hsv
prompt 0 "a cat"
prompt 50 "a dog --neg cats"
negative 0 "blurry"
negative 30 "dark"
angle 0:(1), 10:(-3)
translation_x 0:(2) step, 10:(0), 4s:(3)
zoom 1 + 0.01*sin(2*pi*t/30)
translation_y 0:(0), 20:(4) ease_in, 40:(0)
strength min(0.4 + t/200, 0.7)
"""


@pytest.fixture(scope="module")
def exported():
    result = compile_result(SCENE)
    assert result.ok, result.errors
    return export_settings(result)


def test_export_writes_a1111_names_and_types(exported):
    s = exported.settings
    assert (s["W"], s["H"], s["seed"], s["seed_behavior"], s["seed_iter_N"]) == (768, 512, 5, "iter", 2)
    assert s["sampler"] == "DPM++ 2M Karras" and s["animation_mode"] == "2D" and s["max_frames"] == 100
    assert s["diffusion_cadence"] == "3" and s["color_coherence"] == "HSV" and s["fps"] == 15
    assert s["border"] == "replicate" and s["enable_perspective_flip"] is False


def test_export_prompts_at_the_union_of_keys(exported):
    assert exported.settings["prompts"] == {
        "0": "a cat --neg blurry",
        "30": "a cat --neg dark",
        "50": "a dog --neg dark, cats",
    }


def test_export_schedules(exported):
    s = exported.settings
    assert s["angle"] == "0: (1), 10: (-3)"
    assert s["translation_x"] == "0: (2), 9: (2), 10: (0), 60: (3)"  # step: a hold key; 4s: frame 60
    assert s["zoom"] == "0: (1 + 0.01*sin(2*3.141592653589793*t/30))"
    assert s["noise_schedule"] == "0: (0.02)" and s["cfg_scale_schedule"] == "0: (7)"
    # an eased segment and a dfm-only function become number keys, each with a warning
    assert s["translation_y"].startswith("0: (0), 20: (4), 21: (3.9995), 22: (3.996), ")  # 4 - 4w³
    assert s["strength_schedule"] == "0: (0.4), 60: (0.7), 99: (0.7)"  # min(0.4 + t/200, 0.7): collinear keys dropped
    warning_with(exported, "translation_y", "ease_in")
    warning_with(exported, "strength", "min")


def test_export_keys_are_a1111_keys(exported):
    extra = set(exported.settings) - set(A1111_KEYS)
    assert extra <= {"animation_prompts_positive", "animation_prompts_negative", "dfm"}


def test_a1111_sampler_labels_read_back():
    for name, label in A1111_SAMPLERS.items():
        assert cat.resolve_choice(cat.BY_NAME["sampler"], label) == name
    assert set(A1111_SAMPLERS) == set(cat.SAMPLERS)


# ---- round trips ------------------------------------------------------------------------------------


def assert_same_table(a, b) -> None:
    assert a.names == b.names
    for name in a.names:
        x, y = a[name], b[name]
        if x.dtype == object:
            assert list(x) == list(y), name
        else:
            assert np.allclose(x.astype(float), y.astype(float), rtol=0, atol=1e-9), name
    assert list(a["seed"]) == list(b["seed"])


def round_trip(text: str, path: str = "<string>"):
    first = compile_result(text, path)
    assert first.ok, [d.message for d in first.errors]
    back = import_settings(export_settings(first).dumps())
    second = compile_result(back.text)
    assert second.ok, back.text
    assert_same_table(first.table, second.table)
    return back


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.dfm")), ids=lambda p: p.name)
def test_examples_round_trip(path):
    round_trip(path.read_text(), str(path))


RANGES = {  # parameter: (low, high) kept inside the catalogue's valid range
    "angle": (-5, 5), "zoom": (0.95, 1.05), "translation_x": (-6, 6), "translation_y": (-6, 6),
    "translation_z": (-3, 3), "rotation_3d_x": (-2, 2), "rotation_3d_y": (-2, 2), "rotation_3d_z": (-2, 2),
    "fov": (30, 90), "strength": (0.3, 0.8), "noise": (0.0, 0.1), "contrast": (0.9, 1.1),
    "cfg_scale": (3, 12), "steps": (10, 40), "sigma": (0.5, 2),
}
CURVE_WORDS = ["", "", "", " step", " ease_in", " ease_out", " ease_in_out", " cubic"]


def random_value(rng: random.Random, lo: float, hi: float) -> str:
    mid, amp = (lo + hi) / 2, (hi - lo) / 4
    base = round(rng.uniform(lo + amp, hi - amp), 3)
    forms = [
        f"{base}", f"{base}", f"{base} + {round(amp, 3)}*sin(t/5)", f"{base} + {round(amp, 3)}*cos(2*pi*t/fps)",
        f"min({base} + t/100, {hi})", f"{mid} + {round(amp, 3)}*where(t > 10, 1, -1)", f"{base}*1e0",
    ]
    return rng.choice(forms)


def random_schedule(rng: random.Random, lo: float, hi: float, frames: int, fps: int) -> str:
    if rng.random() < 0.2:
        return random_value(rng, lo, hi)
    times = sorted(rng.sample(range(1, frames), rng.randint(1, min(4, frames - 1))))
    keys = [(0, "0")] + [(t, f"{round(t / fps, 2)}s" if rng.random() < 0.3 else str(t)) for t in times]
    seen, parts = set(), []
    for frame, text in keys:
        resolved = math.floor(float(text[:-1]) * fps + 0.5) if text.endswith("s") else frame
        if resolved in seen or resolved >= frames:
            continue
        seen.add(resolved)
        parts.append(f"{text}:({random_value(rng, lo, hi)}){rng.choice(CURVE_WORDS)}")
    return ", ".join(parts)


def random_scene(seed: int) -> str:
    rng = random.Random(seed)
    mode = rng.choice(["2d", "2d", "3d"])
    frames, fps = rng.randint(12, 70), rng.choice([12, 15, 24])
    behaviour = rng.choice(["iter", "fixed", "ladder", "alternate", "random"])
    lines = ["dfm 1", f"mode {mode}", f"frames {frames}", f"fps {fps}", f"size {rng.choice([512, 640])}x512",
             f"seed {rng.randint(0, 2**32 - 1)} {behaviour}" + (" 2" if behaviour == "iter" and rng.random() < .5
                                                                else ""),
             f"cadence {rng.randint(1, 3)}",
             f"sampler {rng.choice([s for s in cat.SAMPLERS if s not in cat.FLOW_SAMPLERS])}"]  # SD scenes
    for i, f in enumerate(sorted(rng.sample(range(frames), rng.randint(1, 3)))):
        neg = " --neg ugly" if rng.random() < 0.3 else ""
        lines.append(f'prompt {0 if i == 0 else f} "prompt number {i}{neg}"')
    if rng.random() < 0.7:
        lines.append(f'negative {rng.randrange(frames)} "blurry"')
    for name, (lo, hi) in RANGES.items():
        if mode in cat.BY_NAME[name].modes and rng.random() < 0.6:
            lines.append(f"{name} {random_schedule(rng, lo, hi, frames, fps)}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("seed", range(36))
def test_generated_scenes_round_trip(seed):
    round_trip(random_scene(seed))


def test_round_trip_import_has_no_warnings_for_plain_scenes():
    back = round_trip(SCENE)
    assert back.warnings == []


@pytest.mark.parametrize("order", ["scale first", "schedule first"])
def test_the_cfg_schedule_wins_in_animated_modes_whatever_the_key_order(order):
    pairs = [("scale", 5), ("cfg_scale_schedule", "0:(9)")]
    data = dict(pairs if order == "scale first" else pairs[::-1])
    result, table = imported_table({"animation_mode": "2D", "max_frames": 4, "prompts": {"0": "a"}, **data})
    assert list(table["cfg_scale"]) == [9.0] * 4
    assert "scale" in result.warned_keys and "cfg_scale_schedule" in result.mapped_keys
    stills, still_table = imported_table({"animation_mode": "None", "prompts": {"0": "a"}, **data})
    assert still_table["cfg_scale"][0] == 5.0


def test_video_mode_takes_its_length_from_the_video_not_max_frames(tmp_path):
    clip = Path(__file__).resolve().parents[1] / "examples" / "input.mp4"  # 60 frames
    data = {"animation_mode": "Video Input", "max_frames": 1000, "video_init_path": str(clip),
            "extract_nth_frame": 4, "prompts": {"0": "a"}}
    result, table = imported_table(data)
    assert "frames" not in result.text and len(table) == 15


def test_a_seed_schedule_imports_and_its_default_is_written_out():
    result = import_settings({"seed_behavior": "schedule", "seed_schedule": "0:(5), 3:(7)", "max_frames": 5,
                              "prompts": {"0": "a"}})
    assert result.warnings == [] and {"seed_behavior", "seed_schedule"} <= result.mapped_keys
    assert list(compile_text(result.text)["seed"]) == [5, 5, 6, 7, 7]  # Deforum: int() of the linear schedule
    alone = import_settings({"seed_behavior": "schedule", "max_frames": 5, "prompts": {"0": "a"}})
    assert 'seed_schedule 0:(s), 1:(-1), 2:(-1), 3:(s)' in alone.text  # "max_f-2", "max_f-1" with max_f = 4
    assert len([w for w in alone.warnings if "seed_behavior" in w]) == 1
    assert any("-1" in w for w in alone.warnings)  # Deforum's -1 is random; dfm's is drawn from the start seed


def test_the_soundtrack_imports_to_audio_and_exports_back():
    track = Path(__file__).resolve().parents[1] / "examples" / "music_video.mp3"
    base = {"animation_mode": "2D", "max_frames": 4, "prompts": {"0": "a"}}
    result = import_settings({**base, "add_soundtrack": "File", "soundtrack_path": str(track)})
    assert re.search(rf'^audio +"{re.escape(str(track))}"$', result.text, re.M)
    assert {"add_soundtrack", "soundtrack_path"} <= result.mapped_keys
    off = import_settings({**base, "add_soundtrack": "None", "soundtrack_path": "https://x/y.mp3"})
    assert "audio" not in off.text and not [w for w in off.warnings if "soundtrack" in w]
    url = import_settings({**base, "add_soundtrack": "File", "soundtrack_path": "https://x/y.mp3"})
    assert "audio" not in url.text and [w for w in url.warnings if "URL" in w]
    exported = export_settings(compile_result(f'dfm 1\nframes 4\naudio "{track}"\nprompt 0 "a"\n')).settings
    assert exported["add_soundtrack"] == "File" and exported["soundtrack_path"] == str(track)


@pytest.mark.parametrize("settings, warned", [
    ({"max_frames": "1e999"}, "max_frames"),
    ({"fps": "inf"}, "fps"),
    ({"seed": "inf"}, "seed"),
    ({"seed_behavior": "iter", "seed_iter_N": "abc"}, "seed_iter_N"),
    ({"use_init": True, "init_image": "a.png", "strength": "abc"}, "strength"),
    ({"dfm": {"settings": ["fps 12"]}}, "dfm"),
])
def test_a_value_of_the_wrong_type_is_a_warning_not_a_crash(settings, warned):
    result = import_settings({"prompts": {"0": "a cat"}, **settings})
    assert warned in result.warned_keys
    assert warned not in result.mapped_keys
    assert [d for d in check_text(result.text) if d.is_error] == []


# ---- the dialect's converters -----------------------------------------------------------------------------


def test_every_converter_names_a_setting_of_the_catalogue():
    """A converter is one setting both ways: its name is a catalogue setting (or, for a read alone, a Deforum
    key dfm has no setting for), so a renamed row cannot leave a converter behind."""
    from dfm.compiler import catalogue as cat
    from dfm.compiler.deforum_dialect import CONVERTERS

    settings = {p.name for p in cat.SETTINGS}
    read_only = {name for name, c in CONVERTERS.items() if c.write is None and not c.scene and not c.carried}
    # Deforum's upscaler names an ncnn model, not a file: read (and warned) alone
    assert set(CONVERTERS) - settings == read_only == {"noise_type", "r_upscale_video"}


def test_each_colour_label_reads_back_to_its_choice():
    from dfm.compiler import catalogue as cat
    from dfm.compiler.deforum_dialect import color_label

    row = cat.BY_NAME["color_coherence"]
    assert {choice: cat.resolve_choice(row, color_label(choice)) for choice in row.choices} == \
        {choice: choice for choice in row.choices}


def test_a_source_name_with_a_line_break_stays_in_its_comment():
    imported = import_settings({"animation_mode": "2D", "max_frames": 3, "prompts": {"0": "a"}}, "a\nb.txt\u2028c")
    assert imported.text.splitlines()[0].startswith("# imported from a b.txt c by")
    assert not [d for d in check_text(imported.text) if d.is_error]
