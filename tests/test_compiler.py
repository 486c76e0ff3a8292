"""Lowering to the FrameTable: prompts, seeds, cadence, effective steps, modes, serialisation.
Expected values are written by hand from Deforum's documented behaviour."""

import json

import numpy as np
import pytest

from dfm.api import compile_text
from dfm.compiler import catalogue as cat
from dfm.compiler.lower import cadence_plan, effective_steps, seed_sequence, split_neg
from dfm.contract.table import DERIVED_COLUMNS, FORMAT_VERSION, FrameTable, MissingSetting, TableError
from dfm.dsl.diagnostics import DfmError


def table(body: str, frames: int = 10) -> FrameTable:
    return compile_text(f"dfm 1\nframes {frames}\n" + body)


# ---- seeds (Deforum's next_seed, once per diffused frame) --------------------------------------

def test_seed_behaviours_match_deforum_sequences():
    assert list(seed_sequence(100, "iter", 6)) == [100, 101, 102, 103, 104, 105]
    assert list(seed_sequence(100, "iter", 7, iter_n=3)) == [100, 101, 101, 101, 102, 102, 102]
    assert list(seed_sequence(100, "ladder", 6)) == [100, 102, 101, 103, 102, 104]
    assert list(seed_sequence(100, "alternate", 5)) == [100, 101, 100, 101, 100]
    assert list(seed_sequence(100, "fixed", 3)) == [100, 100, 100]


def test_random_seeds_are_deterministic_from_the_start_seed():
    import random

    a = seed_sequence(7, "random", 4)
    assert a[0] == 7 and a[1] == random.Random(7).randint(0, 2**32 - 1)
    assert list(a) == list(seed_sequence(7, "random", 4))


def test_seeds_advance_per_diffused_frame_with_cadence():
    t = table('prompt 0 "x"\ncadence 3\nseed 5 iter\n')
    assert list(t["seed"]) == [5, 5, 5, 6, 6, 6, 7, 7, 7, 8]


# ---- cadence -----------------------------------------------------------------------------------

def test_cadence_plan_matches_deforum_and_closes_the_tail():
    diffused, tween, frm, to = cadence_plan(10, 3)
    assert list(diffused) == [1, 0, 0, 1, 0, 0, 1, 0, 0, 1]
    assert list(to) == [0, 0, 0, 3, 3, 3, 6, 6, 6, 9]
    assert list(frm) == [-1, -1, -1, 0, 0, 0, 3, 3, 3, 6]
    # Deforum: frame 3 = 2/3 D0 + 1/3 D3, frame 4 = 1/3 D0 + 2/3 D3, frame 5 = D3
    np.testing.assert_allclose(tween, [1, 1, 1, 1 / 3, 2 / 3, 1, 1 / 3, 2 / 3, 1, 1])  # frame 9: D9 pure


def test_cadence_tail_shorter_than_cadence_ends_pure():
    _, tween, frm, to = cadence_plan(8, 3)
    assert list(to[6:]) == [6, 6] and list(frm[6:]) == [3, 3]
    np.testing.assert_allclose(tween[6:], [0.5, 1.0])


def test_every_frame_is_in_the_table():
    t = table('prompt 0 "x"\ncadence 4\n', frames=8)
    assert len(t) == 8 and list(t["diffused"]) == [1, 0, 0, 0, 1, 0, 0, 0]


# ---- strength -> steps ---------------------------------------------------------------------------

@pytest.mark.parametrize("strength,steps,expected", [
    (0.65, 50, 17), (0.8, 50, 9), (0.9, 50, 4), (0.55, 50, 22), (0.75, 50, 12), (1.0, 50, 0), (0.0, 25, 25),
])
def test_effective_steps_float64_truncation(strength, steps, expected):
    assert effective_steps(np.array([strength]), np.array([steps]))[0] == expected


def test_effective_steps_column():
    t = table('prompt 0 "x"\nstrength 0.8\nsteps 50\ncadence 2\n', frames=5)
    assert list(t["effective_steps"]) == [50, 0, 9, 0, 9]  # frame 0: txt2img, tweens: 0


def test_init_image_makes_frame_zero_img2img(tmp_path):
    (tmp_path / "init.png").write_bytes(b"x")
    scene = tmp_path / "s.dfm"
    scene.write_text('dfm 1\nframes 3\nprompt 0 "x"\ninit_image "init.png"\nstrength 0.5\nsteps 20\n')
    t = compile_text(scene.read_text(), str(scene))
    assert t.settings.init_image == str(tmp_path / "init.png")
    assert list(t["effective_steps"]) == [10, 10, 10]
    scene.write_text(scene.read_text() + "init_strength 0.25\n")
    assert list(compile_text(scene.read_text(), str(scene))["effective_steps"]) == [15, 10, 10]


# ---- prompts -------------------------------------------------------------------------------------

def test_prompts_are_hard_cuts_first_prompt_before_first_key():
    t = table('prompt 3 "b"\nprompt 6 "c"\nnegative 5 "n"\n', frames=8)
    assert list(t["prompt"]) == ["b", "b", "b", "b", "b", "b", "c", "c"]
    assert list(t["negative_prompt"]) == ["n"] * 8
    assert list(t["prompt_blend"]) == [1.0] * 8


def test_neg_inside_a_prompt_splits_into_the_negative():
    assert split_neg("a cat --neg blurry") == ("a cat", "blurry")
    t = table('prompt 0 "a cat --neg dark"\nprompt 2 "a dog"\nnegative "blurry"\n', frames=4)
    assert list(t["prompt"]) == ["a cat", "a cat", "a dog", "a dog"]
    assert list(t["negative_prompt"]) == ["blurry, dark", "blurry, dark", "blurry", "blurry"]


def test_prompt_crossfade_blend_columns():
    t = table('prompt 0 "a"\nprompt 4 "b"\nprompt_crossfade 3\n', frames=9)
    assert list(t["prompt"]) == ["a"] * 4 + ["b"] * 5
    assert list(t["prompt_from"]) == ["a"] * 4 + ["a", "a", "a", "b", "b"]
    np.testing.assert_allclose(t["prompt_blend"], [1, 1, 1, 1, 0.25, 0.5, 0.75, 1, 1])


def test_prompt_times_in_seconds_and_beats():
    t = table('fps 10\nbpm 60\nprompt 0 "a"\nprompt 0.5s "b"\nprompt 1b "c"\n', frames=12)
    assert t["prompt"][4] == "a" and t["prompt"][5] == "b" and t["prompt"][10] == "c"


def test_distinct_prompts():
    t = table('prompt 0 "a"\nprompt 2 "b"\nprompt 4 "a"\n', frames=6)
    assert t.distinct_prompts() == [("a", ""), ("b", "")]


# ---- modes ---------------------------------------------------------------------------------------

def test_stills_mode_rows_per_prompt_and_image():
    t = compile_text('dfm 1\nmode none\nimages_per_prompt 2\nseed 10 iter\nprompt 0 "a"\nprompt 1 "b"\n')
    assert list(t["prompt"]) == ["a", "a", "b", "b"]
    assert list(t["seed"]) == [10, 11, 12, 13]
    assert all(t["diffused"]) and list(t["effective_steps"]) == list(t["steps"])


def test_interpolation_mode_renders_every_pair():
    t = compile_text('dfm 1\nmode interpolation\ninterpolate_x_frames 1\nseed 3\n'
                     'prompt 0 "a"\nprompt 10 "b"\nprompt 20 "c"\n')
    assert len(t) == 5  # (3 - 1) * (1 + 1) + 1
    assert list(t["prompt_from"]) == ["a", "a", "b", "b", "c"]
    assert list(t["prompt"]) == ["b", "b", "c", "c", "c"]
    np.testing.assert_allclose(t["prompt_blend"], [0, 0.5, 0, 0.5, 1])
    assert set(t["seed"]) == {3}


def test_interpolation_at_key_frames():
    t = compile_text('dfm 1\nmode interpolation\ninterpolate_key_frames on\nprompt 0 "a"\nprompt 4 "b"\n')
    np.testing.assert_allclose(t["prompt_blend"], [0, 0.25, 0.5, 0.75, 1])


def test_video_mode_forces_cadence_one_and_img2img_everywhere():
    t = compile_text('dfm 1\nmode video\nframes 4\nstrength 0.5\nsteps 10\nprompt 0 "x"\n')
    assert all(t["diffused"]) and list(t["effective_steps"]) == [5, 5, 5, 5]


def test_duration_sets_frames():
    assert len(compile_text('dfm 1\nfps 12\nduration 2.5s\nprompt 0 "x"\n')) == 30
    assert len(compile_text('dfm 1\nfps 10\nbpm 120\nduration 8b\nprompt 0 "x"\n')) == 40


# ---- serialisation --------------------------------------------------------------------------------

def test_csv_header_and_rows():
    t = table('prompt 0 "a, \\"quoted\\""\nzoom 0:(1), 9:(1.9)\n')
    lines = t.to_csv().splitlines()
    header = lines[0].split(",")
    assert header[:4] == ["frame", "time", "angle", "zoom"]
    for col in ["effective_steps", "diffused", "tween", "seed", "prompt", "negative_prompt", "prompt_blend"]:
        assert col in header
    assert len(lines) == 11
    import csv
    rows = list(csv.DictReader(t.to_csv().splitlines()))
    assert rows[9]["zoom"] == "1.9" and rows[0]["prompt"] == 'a, "quoted"'


def test_json_round_trip_keeps_every_type_the_settings_and_the_hash():
    t = table('prompt 0 "a"\nzoom 0:(1), 9:(1.9)\nsteps 0:(20), 9:(30)\n')
    data = json.loads(json.dumps(t.to_json()))
    assert data["format_version"] == FORMAT_VERSION and len(data["source_hash"]) == 64
    assert data["settings"]["fps"] == 15 and data["types"]["steps"] == "int"
    back = FrameTable.from_json(data)
    assert back.types == t.types and back.settings == t.settings
    for k in t.names:
        assert list(back[k]) == list(t[k]), k
    # an int schedule stays int through JSON, so the table's identity does too
    assert back["steps"].dtype == np.int64 and back.content_hash() == t.content_hash()
    data["format_version"] = 99
    with pytest.raises(TableError, match="format_version"):
        FrameTable.from_json(data)


def test_a_compiled_table_carries_every_catalogue_setting_frozen():
    t = table('prompt 0 "a"\n')
    assert {p.name for p in cat.SETTINGS if p.cn_unit is None} <= set(t.settings)
    # a ControlNet unit's rows only while the unit is active (contract/controlnet.py)
    assert not [name for name in t.settings if name.startswith("cn_") or name == "controlnet_units"]
    assert t.settings.color_coherence == cat.BY_NAME["color_coherence"].default
    with pytest.raises(MissingSetting, match="no_such_setting"):
        _ = t.settings.no_such_setting
    with pytest.raises(AttributeError):
        t.settings.fps = 30


def test_column_types_follow_the_catalogue_and_the_contract():
    t = table('prompt 0 "a"\n')
    for p in cat.SCHEDULES:
        if cat.column_present(p, t.settings):
            assert t.types[p.name] is p.column_type, p.name
        else:
            assert p.name not in t.columns, p.name
    for name, kind in DERIVED_COLUMNS.items():
        assert t.types[name] is kind, name
    with pytest.raises(TableError, match="contract"):
        FrameTable({**t.columns, "seed": t["seed"].astype(np.float64)}, t.settings)


def test_compile_raises_with_every_diagnostic():
    with pytest.raises(DfmError) as e:
        compile_text('dfm 1\nzoom 0:(1,5)\nfoo 1\nprompt 0 "x"\n')
    assert [d.code for d in e.value.diagnostics] == ["DFM011", "DFM101"]


def test_accumulated_camera():
    t = table('prompt 0 "x"\nzoom 1.1\ntranslation_x 2\n', frames=3)
    np.testing.assert_allclose(t["cam_zoom"], [1.1, 1.21, 1.331])
    np.testing.assert_allclose(t["cam_x"], [2, 4, 6])


def test_large_scene_compiles():
    t = table('prompt 0 "x"\nzoom 0:(1 + 0.01*sin(t/10))\n', frames=100_000)
    assert len(t) == 100_000 and abs(t["zoom"][99_999] - (1 + 0.01 * np.sin(9999.9))) < 1e-12


def test_content_hash_follows_the_frames_not_the_text():
    a = compile_text('dfm 1\nframes 4\nprompt 0 "x"\nzoom 1.02\n')
    b = compile_text('dfm 1\n# a comment\nframes   4\nprompt 0 "x"\nzoom 1.02  # same\n')
    c = compile_text('dfm 1\nframes 4\nprompt 0 "x"\nzoom 1.03\n')
    assert a.source_hash != b.source_hash
    assert a.content_hash() == b.content_hash() != c.content_hash()


def test_two_neg_markers_join_their_negatives_as_deforum_does():
    assert split_neg("a --neg b --neg c") == ("a", "b  c")
    assert split_neg("a --neg b") == ("a", "b") and split_neg("a --negative b") == ("a --negative b", "")
    table = compile_text('dfm 1\nframes 2\nprompt 0 "a cat --neg blurry --neg dark"\n')
    assert table["prompt"][0] == "a cat" and table["negative_prompt"][0] == "blurry  dark"
