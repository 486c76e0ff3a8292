"""Deforum's ControlNet keys (`cn_1_enabled` … `cn_5_loopback_mode`) in and out.

The catalogue's unit rows carry Deforum's key names, so the units' schedules and most settings go through
the importer's and exporter's ordinary passes. What is Deforum's own is here: a unit is imported only when
Deforum would run it (enabled, with a model), `low_vram` and `overwrite_frames` become notes, and the export
writes every key of all five units as Deforum's UI saves them (its labels for the resize and control modes,
its module names, `"None"` for no model), so a file exported by dfm loads in Deforum as is.
"""

from __future__ import annotations

import re
from typing import Any

from ..contract import controlnet as cn
from . import catalogue as cat
from .deforum_dialect import truthy
from .deforum_names import Impact

RESIZE_LABELS = {"crop_and_resize": "Inner Fit (Scale to Fit)", "just_resize": "Just Resize",
                 "resize_and_fill": "Outer Fit (Shrink to Fit)"}
CONTROL_LABELS = {"balanced": "Balanced", "prompt": "My prompt is more important",
                  "control": "ControlNet is more important"}
# dfm's preprocessor -> sd-webui-controlnet's module name, where they differ
MODULE_NAMES = {"depth": "depth_midas", "lineart": "lineart_realistic", "invert": "invert (from white bg & black line)",
                "lineart_standard": "lineart_standard (from white bg & black line)"}
# a unit as Deforum's UI saves it when nobody touched it (deforum_controlnet.py's component defaults)
DEFORUM_DEFAULTS: dict[str, object] = {
    "overwrite_frames": True, "vid_path": "", "mask_vid_path": "", "enabled": False, "low_vram": False,
    "pixel_perfect": False, "module": "none", "model": "None", "weight": "0:(1)", "guidance_start": "0:(0.0)",
    "guidance_end": "0:(1.0)", "processor_res": 64, "threshold_a": 64, "threshold_b": 64,
    "resize_mode": "Inner Fit (Scale to Fit)", "control_mode": "Balanced", "loopback_mode": False,
}
NO_MODEL = ("", "none", "None", None)


def import_units(imp: Any) -> None:  # deforum_import._Importer (it imports this module)
    """Take each unit's keys Deforum would not render (a unit switched off, without a model or without a
    source), and the two keys dfm has no row for; what is left the catalogue pass imports."""
    off: list[str] = []
    for n in range(1, cn.MAX_UNITS + 1):
        keys = [k for k in list(imp.data) if re.fullmatch(rf"cn_{n}_[a-z_]+", k)]
        if not keys:
            continue
        data = imp.data
        enabled = truthy(data.get(cn.column(n, "enabled")))
        model = data.get(cn.column(n, "model"))
        loopback = truthy(data.get(cn.column(n, "loopback_mode")))
        source = data.get(cn.column(n, "vid_path"))
        why = None
        if enabled and (not isinstance(model, str) or model.strip() in NO_MODEL):
            why = f"it is enabled but names no model (`{cn.column(n, 'model')}` = {model!r})"
        elif enabled and not loopback and not (isinstance(source, str) and source.strip()):
            why = "it has no input video or image and is not in loopback mode (Deforum runs without it)"
        if not enabled or why:
            for k in keys:
                imp.take(k)
                imp.map(k)
            if why:
                imp.warn(f"left out ControlNet unit {n}: {why}", keys, Impact.NO_EFFECT)
            elif any(not _untouched(k.split("_", 2)[2], imp.original.get(imp.origin.get(k, k))) for k in keys):
                off += keys  # set up, then switched off: worth a line; an untouched unit is not
            continue
        imp.take(cn.column(n, "enabled"))
        imp.map(cn.column(n, "enabled"))  # on by default: a unit with a model is on
        for field in ("vid_path", "mask_vid_path"):
            k = cn.column(n, field)
            if k in data and not (isinstance(data[k], str) and data[k].strip()) or (field == "vid_path" and loopback):
                if k in data:
                    imp.take(k)
                    imp.map(k)
        low_vram = imp.take(cn.column(n, "low_vram"))
        imp.take(cn.column(n, "overwrite_frames"))
        imp.map(cn.column(n, "low_vram"), cn.column(n, "overwrite_frames"))
        if truthy(low_vram):
            imp.warn(f"`{cn.column(n, 'low_vram')}` is A1111's memory switch: dfm keeps the ControlNet on the "
                     "render's device", [cn.column(n, "low_vram")], Impact.NO_EFFECT)
    if off:
        units = sorted({int(k.split("_")[1]) for k in off})
        which = f"cn_{units[0]}_* … cn_{units[-1]}_*" if len(units) > 1 else f"cn_{units[0]}_*"
        imp.warn(f"left out {len(off)} ControlNet keys ({which}): the units are set up but switched off in this "
                 "file (nothing is lost)", off, Impact.NO_EFFECT)


def _untouched(field: str, value: object) -> bool:
    """Whether a unit's key holds what Deforum's UI saves for a unit nobody touched."""
    default = DEFORUM_DEFAULTS.get(field, object())
    if value is None:  # a key saved without a value
        return True
    if isinstance(default, str) and isinstance(value, str):
        return " ".join(value.split()) == default or (field == "model" and value.strip() in NO_MODEL)
    if isinstance(default, bool) or isinstance(value, bool):
        return value == default
    try:
        return float(value) == float(default)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return value == default


def export_units(ex: Any) -> None:  # deforum_export._A1111Exporter (it imports this module)
    """Every key of the five units: an active unit's values in Deforum's words, the others as Deforum's UI
    saves an untouched unit. The active units' schedules were written by the schedules pass."""
    active = set(ex.s.get(cn.UNITS_SETTING, ()) or ())
    for n in range(1, cn.MAX_UNITS + 1):
        for field, default in DEFORUM_DEFAULTS.items():
            key = cn.column(n, field)
            if n not in active:
                ex.out[key] = default
            elif field in cn.UNIT_SCHEDULES:
                # written as Deforum's ControlNet tab writes its schedules, `0:(1)`, so a file keeps its text
                if isinstance(ex.out.get(key), str):
                    ex.out[key] = re.sub(r"(^|, )(\d+): \(", r"\1\2:(", ex.out[key])
            elif field in ("low_vram", "overwrite_frames"):
                ex.out[key] = default
            else:
                ex.out[key] = _value(field, ex.s[key])


def _value(field: str, value: object) -> object:
    if field == "resize_mode":
        return RESIZE_LABELS[str(value)]
    if field == "control_mode":
        return CONTROL_LABELS[str(value)]
    if field == "module":
        return MODULE_NAMES.get(str(value), value)
    if value is None:
        return "" if field in ("vid_path", "mask_vid_path") else DEFORUM_DEFAULTS[field]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def is_unit_row(p: cat.Param) -> bool:
    return p.cn_unit is not None
