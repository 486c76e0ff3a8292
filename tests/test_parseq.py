"""Parseq manifests: what Deforum reads from dfm's manifest is dfm's table, and real manifests import."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from deforum_files import parseq_sources

from dfm.api import check_text, compile_text
from dfm.compiler.interop import SettingsError
from dfm.compiler.parseq import from_parseq_manifest, to_parseq_manifest

ROOT = Path(__file__).resolve().parents[1]
# a manifest in Parseq's format (tests/deforum_files.py), and the real one when ../shared/data/peer is present
MANIFESTS = parseq_sources()

# Deforum's parseq adapter, written from the reference (§3.6), independent of dfm's code:
# motion fields come from `X_delta` (parseq_use_deltas, the default), the rest from `X`.
DEFORUM_DELTA_FIELDS = {"angle", "zoom", "translation_x", "translation_y", "translation_z", "rotation_3d_x",
                        "rotation_3d_y", "rotation_3d_z", "perspective_flip_theta", "perspective_flip_phi",
                        "perspective_flip_gamma"}
DEFORUM_SERIES = {  # Parseq field -> Deforum series (dfm column)
    "angle": "angle", "zoom": "zoom", "translation_x": "translation_x", "translation_y": "translation_y",
    "translation_z": "translation_z", "rotation_3d_x": "rotation_3d_x", "rotation_3d_y": "rotation_3d_y",
    "rotation_3d_z": "rotation_3d_z", "perspective_flip_theta": "perspective_flip_theta",
    "perspective_flip_phi": "perspective_flip_phi", "perspective_flip_gamma": "perspective_flip_gamma",
    "perspective_flip_fv": "perspective_flip_fv", "noise": "noise", "strength": "strength",
    "contrast": "contrast", "scale": "cfg_scale", "seed": "seed", "fov": "fov", "near": "near", "far": "far",
    "antiblur_kernel": "kernel", "antiblur_sigma": "sigma", "antiblur_amount": "amount",
    "antiblur_threshold": "threshold", "transform_center_x": "transform_center_x",
    "transform_center_y": "transform_center_y", "subseed": "subseed", "subseed_strength": "subseed_strength",
    "clipskip": "clip_skip",
}
NOT_FIELDS = {"frame", "deforum_prompt"}


def deforum_reads(manifest: dict) -> dict[str, np.ndarray]:
    """The per-frame series Deforum builds from a manifest."""
    rows = manifest["rendered_frames"]
    managed = [k for k in rows[0] if k not in NOT_FIELDS and not k.endswith(("_delta", "_pc"))]
    n = max(r["frame"] for r in rows) + 1
    out: dict[str, np.ndarray] = {}
    for field in managed:
        series = np.full(n, np.nan)
        source = f"{field}_delta" if field in DEFORUM_DELTA_FIELDS else field
        for r in rows:
            series[r["frame"]] = r[source]
        out[DEFORUM_SERIES.get(field, field)] = series
    out["prompts"] = [r["deforum_prompt"] for r in rows]
    return out


ANIMATED = [p for p in sorted((ROOT / "examples").glob("*.dfm"))
            if compile_text(p.read_text(), str(p)).settings.mode in ("2d", "3d", "video")]


@pytest.mark.parametrize("path", ANIMATED, ids=lambda p: p.name)
def test_deforum_reads_back_the_table(path):
    table = compile_text(path.read_text(), str(path))
    manifest = json.loads(json.dumps(to_parseq_manifest(table)))  # JSON-clean
    series = deforum_reads(manifest)
    assert len(manifest["rendered_frames"]) == len(table)
    compared = 0
    for column, values in series.items():
        if column == "prompts":
            continue
        assert np.allclose(values, table[column].astype(float), rtol=0, atol=1e-9), column
        compared += 1
    assert compared >= 20  # every Parseq-capable schedule plus the seed
    expected = [f"{p} --neg {n}" if n else p for p, n in zip(table["prompt"], table["negative_prompt"], strict=True)]
    assert series["prompts"] == expected


SMALL = """dfm 1
mode 2d
frames 3
fps 10
seed 9 fixed
cadence 1
prompt 0 "a cat"
negative "dog"
zoom 1.1
translation_x 0:(2), 2:(4)
strength 0.5
cfg_scale 7
"""


def test_hand_checked_values():
    m = to_parseq_manifest(compile_text(SMALL))
    rows = m["rendered_frames"]
    col = lambda name: [r[name] for r in rows]  # noqa: E731
    # motion: X accumulates, X_delta is dfm's per-frame value
    assert col("zoom_delta") == pytest.approx([1.1, 1.1, 1.1])
    assert col("zoom") == pytest.approx([1.1, 1.2, 1.3])  # Parseq's zoom delta is 1 + (Z_t - Z_t-1)
    assert col("translation_x_delta") == pytest.approx([2, 3, 4])
    assert col("translation_x") == pytest.approx([2, 5, 9])
    # absolute fields: X is the value, X_delta the change (frame 0: the value itself)
    assert col("strength") == pytest.approx([0.5, 0.5, 0.5])
    assert col("strength_delta") == pytest.approx([0.5, 0, 0])
    assert col("scale") == pytest.approx([7, 7, 7])
    assert col("seed") == [9, 9, 9] and col("seed_delta") == [9, 0, 0]
    assert col("subseed") == [1, 1, 1] and col("subseed_strength") == [0, 0, 0]  # the table's: no variation
    assert col("deforum_prompt") == ["a cat --neg dog"] * 3
    assert col("frame") == [0, 1, 2]
    assert m["options"] == {"output_fps": 10.0, "bpm": 120.0, "cadence": 1}
    assert m["meta"]["generated_by"] == "dfm"


def test_deltas_follow_parseq_semantics():
    table = compile_text((ROOT / "examples" / "robot_to_village.dfm").read_text())
    rows = to_parseq_manifest(table)["rendered_frames"]
    for field in ("angle", "zoom", "translation_x", "strength", "scale"):
        x = np.array([r[field] for r in rows])
        d = np.array([r[f"{field}_delta"] for r in rows])
        assert d[0] == pytest.approx(x[0])
        change = np.diff(x) + (1.0 if field == "zoom" else 0.0)
        assert np.allclose(d[1:], change, rtol=0, atol=1e-9), field


@pytest.mark.parametrize("source", MANIFESTS, ids=lambda s: s.name)
def test_structure_matches_a_real_manifest(source):
    real = source.data
    ours = to_parseq_manifest(compile_text(SMALL))
    for key in ("meta", "options", "managedFields", "rendered_frames", "rendered_frames_meta"):
        assert type(ours[key]) is type(real[key]), key
    assert {"output_fps", "bpm", "cadence"} <= set(ours["options"])
    real_row, our_row = real["rendered_frames"][0], ours["rendered_frames"][0]
    assert set(real_row) <= set(our_row)  # seed, angle, their _delta/_pc, deforum_prompt, subseed…
    for key in real_row:
        assert isinstance(our_row[key], (int, float)) == isinstance(real_row[key], (int, float)), key
        assert isinstance(our_row[key], str) == isinstance(real_row[key], str), key
    assert set(real["managedFields"]) <= set(ours["managedFields"])
    assert set(real["rendered_frames_meta"]["seed"]) == set(ours["rendered_frames_meta"]["seed"])


def test_warnings_for_what_parseq_cannot_carry():
    warnings: list[str] = []
    to_parseq_manifest(compile_text((ROOT / "examples" / "video_restyle.dfm").read_text(),
                                    str(ROOT / "examples" / "video_restyle.dfm")), warnings)
    assert any("prompt blends" in w for w in warnings)


@pytest.mark.parametrize("source", MANIFESTS, ids=lambda s: s.name)
def test_import_a_real_manifest(source):
    real, expect = source.data, source.expect
    result = from_parseq_manifest(real, source.name)
    assert [d for d in check_text(result.text) if d.is_error] == []
    table = compile_text(result.text)
    assert len(table) == expect["frames"] and table.settings.fps == expect["fps"]
    assert table.settings.cadence == expect["cadence"]
    for frame, value in expect["angle"].items():  # the angle_delta of that frame
        assert table["angle"][frame] == pytest.approx(value)
    assert set(table["prompt"]) == {expect["prompt"]} and set(table["negative_prompt"]) == {expect["negative"]}
    assert table["seed"][0] == expect["seed"]
    # Parseq's seed travel (a fractional seed: subseed ceil(seed), strength seed % 1) arrives as Deforum reads it
    rows = real["rendered_frames"]
    assert list(table["seed"]) == [int(r["seed"]) for r in rows] and table.settings.seed_behavior == "schedule"
    assert list(table["subseed"]) == [r["subseed"] for r in rows]
    assert np.allclose(table["subseed_strength"], [r["subseed_strength"] for r in rows], rtol=0, atol=1e-12)
    assert not any("fractional" in w or "seed" in w for w in result.warnings)
    assert set(real["rendered_frames"][0]) <= result.mapped_keys | result.warned_keys


def test_manifest_round_trip():
    table = compile_text((ROOT / "examples" / "flythrough_3d.dfm").read_text())
    back = compile_text(from_parseq_manifest(to_parseq_manifest(table)).text)
    for column in ("translation_x", "translation_z", "rotation_3d_y", "rotation_3d_z", "fov", "strength",
                   "noise", "cfg_scale"):  # Parseq has no steps field
        assert np.allclose(back[column], table[column], rtol=0, atol=1e-9), column
    assert list(back["prompt"]) == list(table["prompt"])


def test_not_a_manifest():
    with pytest.raises(SettingsError, match="rendered_frames"):
        from_parseq_manifest({"meta": {}})
    with pytest.raises(SettingsError, match="JSON"):
        from_parseq_manifest("{not json")


@pytest.mark.parametrize("manifest, match", [
    ({"rendered_frames": [{"frame": "a", "zoom": 1}]}, "`frame` at frame 'a'"),
    ({"rendered_frames": [{"frame": 0, "zoom": "x"}]}, "`zoom` at frame 0 is 'x'"),
    ({"rendered_frames": [{"frame": 0, "zoom": None}]}, "`zoom` at frame 0 is None"),
    ({"rendered_frames": [{"frame": 0, "seed": 1e309}]}, "`seed` at frame 0 is inf"),
    ({"rendered_frames": [{"frame": 0, "seed": 1}, {"frame": 1}]}, "`seed` is missing from frame 1"),
    ({"rendered_frames": [{"frame": 0, "zoom": 1}], "options": {"output_fps": "abc"}}, "`output_fps` at options"),
    ({"rendered_frames": [{"frame": 0, "zoom": 1}], "options": [1]}, "`options` is not an object"),
])
def test_a_malformed_manifest_is_a_settings_error_not_a_crash(manifest, match):
    with pytest.raises(SettingsError, match=re.escape(match)):
        from_parseq_manifest(manifest)


def test_a_manifest_longer_than_dfm_renders_is_refused_before_it_is_read(monkeypatch):
    from dfm.compiler import catalogue as cat

    monkeypatch.setattr(cat, "MAX_FRAMES", 10)
    with pytest.raises(SettingsError, match="11 rendered frames"):
        from_parseq_manifest({"rendered_frames": [{"frame": i, "zoom": 1} for i in range(11)]})


def test_the_catalogues_delta_fields_are_the_ones_deforums_adapter_reads():
    from dfm.compiler.parseq import delta_fields

    assert set(delta_fields()) == DEFORUM_DELTA_FIELDS and delta_fields()["zoom"] == "multiply"
