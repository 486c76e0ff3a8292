"""Deforum's dialect: one two-way converter per dfm setting that Deforum spells its own way.

The catalogue row (`catalogue.py`) says most of what a setting is in Deforum: its key (`Param.deforum`), default,
choices and their aliases, modes. A setting whose row says all of it needs no converter: the export writes the
value under the row's key and the import's catalogue pass reads it back. A `Converter` holds only what the row
cannot say, with both directions next to each other (as sqlglot keeps a dialect's parser and generator tables
together): one value split over two keys (`size` → `W`, `H`), labels Deforum spells otherwise, a switch beside a
path, a value Deforum carries in other terms. Adding a Deforum key (a ControlNet `cn_N_*` one, a hybrid-video
one) is a catalogue row, plus one converter here when the row cannot say how.

`deforum_export.py` calls `write`, `deforum_import.py` calls `read`; neither keeps a table of its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..contract.modes import mode as mode_of
from ..dsl import ir
from . import catalogue as cat
from .deforum_names import A1111_DEPTH, Impact
from .scene_writer import commented, number, statement, string, word

# what the export writes for a value: the Deforum keys and their values, or None when Deforum has no faithful
# equivalent (the value then travels under the `dfm` key, with a warning when it is not the default)
Written = dict[str, object] | None


class SettingsReader(Protocol):
    """What a converter's `read` uses of the importer (`deforum_import._Importer`)."""

    mode: str
    original: dict
    settings: dict[str, tuple[ir.Value, ...]]
    comments: list[ir.Comment]
    unused_in_mode: list[str]

    def has(self, key: str) -> bool: ...
    def take(self, key: str) -> object: ...
    def map(self, *keys: str) -> None: ...
    def warn(self, message: str, keys: list[str] = ..., impact: Impact = ...) -> None: ...
    def number(self, key: str, kind: type) -> float | int | None: ...


@dataclass(frozen=True)
class Converter:
    """One setting in Deforum's terms, both ways. `write` (export): the dfm value as Deforum keys. `read`
    (import): takes the setting's keys from the file being imported, sets the statement, maps or warns.
    Either one None: the catalogue row says it (its `deforum` key, the value as it is)."""

    name: str  # the dfm setting; or a Deforum key with no dfm setting, for a read alone
    write: Callable[[Any], Written] | None = None
    read: Callable[[SettingsReader], None] | None = None
    # the export carries its effect in Deforum's own terms (beat times as frames, the init strength as
    # `strength`): no key of its own, no warning, the value kept for dfm under the `dfm` key
    carried: bool = False
    scene: bool = False  # written by the export's scene and prompt passes, not the settings pass
    early: bool = False  # read with mode, frames and fps, before the seed, sampler and prompts


# ---- values as Deforum stores them ---------------------------------------------------------------------


def finite(raw: object) -> float | None:
    """A settings value as a finite number (`12`, `"12.5"`), or None (text, None, a list, inf, nan)."""
    if isinstance(raw, bool):
        return float(raw)
    try:
        x = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def truthy(v: object) -> bool:
    """A Deforum switch: a bool, or text such as "true" (the notebook writes either)."""
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes", "on")
    return bool(v)


def color_label(choice: str) -> str:
    """The extension's label for a colour space: its name in capitals ("LAB"), "None" for none.
    `catalogue.resolve_choice` reads each label back to the choice."""
    return "None" if choice == "none" else choice.upper()


# ---- size and seed_resize_from: one dfm value, two Deforum keys -----------------------------------------


def write_size(size: tuple[int, int]) -> Written:
    return {"W": size[0], "H": size[1]}


def read_size(r: SettingsReader) -> None:
    if not (r.has("W") or r.has("H")):
        return
    p = cat.BY_NAME["size"]
    w0, h0 = (r.number(k, int) for k in ("W", "H"))
    w0, h0 = w0 or p.default[0], h0 or p.default[1]
    w, h = (max(int(p.min), min(int(p.max), d - d % 8)) for d in (w0, h0))
    if (w, h) != (w0, h0):
        r.warn(f"size {w0}x{h0} changed to {w}x{h}: dfm needs multiples of 8 in {p.range_text()}", ["W", "H"])
    r.settings["size"] = (ir.Size(w, h),)


def write_seed_resize(size: tuple[int, int]) -> Written:
    return {"seed_resize_from_w": int(size[0]), "seed_resize_from_h": int(size[1])}


def read_seed_resize(r: SettingsReader) -> None:
    """A1111's `seed_resize_from_w/h`, in use when both are above 0 (its rule; 0 and -1 are off), as
    `seed_resize_from WxH`. A1111 draws the noise at (h // 8, w // 8) latents, so flooring each side to a
    multiple of 8 changes nothing."""
    keys = ("seed_resize_from_w", "seed_resize_from_h")
    if not any(r.has(k) for k in keys):
        return
    w, h = (r.number(k, int) for k in keys)
    if not (w is not None and w > 0 and h is not None and h > 0):
        if (w or 0) > 0 or (h or 0) > 0:
            r.warn("only one of seed_resize_from_w and seed_resize_from_h is above 0: A1111 resizes the "
                   "seed only with both, so neither is used", list(keys), Impact.NO_EFFECT)
        return
    p = cat.BY_NAME["seed_resize_from"]
    fw, fh = (max(int(p.min), min(int(p.max), d - d % 8)) for d in (w, h))
    if (fw, fh) != (w - w % 8, h - h % 8):
        r.warn(f"seed_resize_from {w}x{h} changed to {fw}x{fh}: dfm needs {p.range_text()}", list(keys))
    r.settings["seed_resize_from"] = (ir.Size(fw, fh),)


# ---- the model: the extension renders with the webui's checkpoint -----------------------------------------


def read_model(r: SettingsReader) -> None:
    """A hub id is dfm's `model`; a checkpoint file name is only a hint, kept as a comment."""
    for key in ("sd_model_name", "model_checkpoint", "sd_model"):
        if not r.has(key):
            continue
        name = str(r.take(key))
        if "/" in name and not name.endswith((".ckpt", ".safetensors", ".pt", ".bin")):
            r.settings["model"] = (string(name),)
            r.map(key)
        else:
            r.comments.append(commented(statement("model", string(name)), "the checkpoint the file was made with"))
            r.warn(f"{key} `{name}` is a checkpoint name, not a path: set `model` to the file or a hub id (left as "
                   "a comment)", [key])


# ---- settings with a label, a switch or a second key of Deforum's own -----------------------------------


def write_depth_model(model: str) -> Written:
    return {"depth_algorithm": A1111_DEPTH[model]} if model in A1111_DEPTH else None


def read_depth_model(r: SettingsReader) -> None:
    if not r.has("depth_algorithm"):
        return
    algo = str(r.take("depth_algorithm"))
    model = {v: k for k, v in A1111_DEPTH.items()}.get(algo)
    if not mode_of(r.mode).uses_depth:
        r.unused_in_mode.append("depth_algorithm")
    elif model:
        r.settings["depth_model"] = (string(model),)
        r.map("depth_algorithm")
    else:
        r.warn(f"depth_algorithm `{algo}` has no dfm model; dfm's default {cat.BY_NAME['depth_model'].default} is "
               "used", ["depth_algorithm"])


def write_save_video(save: bool) -> Written:
    return {"skip_video_creation": not save}


def read_save_video(r: SettingsReader) -> None:
    if r.has("skip_video_creation"):
        r.settings["save_video"] = (word("off" if truthy(r.take("skip_video_creation")) else "on"),)
        r.map("skip_video_creation")


def read_interpolation_amount(r: SettingsReader) -> None:
    """`frame_interpolation_x_amount`: a number, or "x2" … "x10" / "Disabled" in older files."""
    key = "frame_interpolation_x_amount"
    if not r.has(key):
        return
    raw = str(r.take(key)).strip().lower().lstrip("x")
    if raw.isdigit() and 2 <= int(raw) <= 10:
        r.settings["interpolate_times"] = (number(int(raw)),)
        r.map(key)
    elif raw in ("disabled", "none", "", "0", "1"):
        r.map(key)  # no interpolation: the engine's own key says so too
    else:
        r.warn(f"`{key}` = {raw!r} is not 2..10: dfm's default (2) is used", [key])


def read_upscale(r: SettingsReader) -> None:
    """Deforum's upscaler is Real-ESRGAN's ncnn binary with a model *name*: dfm needs the model's file."""
    keys = [k for k in ("r_upscale_video", "r_upscale_factor", "r_upscale_model", "r_upscale_keep_imgs") if r.has(k)]
    if not keys:
        return
    on = truthy(r.take("r_upscale_video")) if r.has("r_upscale_video") else False
    factor = str(r.take("r_upscale_factor") or "").strip().lower().lstrip("x")
    model = r.take("r_upscale_model")
    r.take("r_upscale_keep_imgs")
    r.map(*keys)
    if on:
        if factor.isdigit() and 1 <= int(factor) <= 8:
            r.settings["upscale_scale"] = (number(int(factor)),)
        r.warn(f"Deforum upscales with Real-ESRGAN's ncnn model `{model}`, a name, not a file: set `upscale_model` to "
               "that model's .safetensors (or .pth with --allow-pickle) for dfm to upscale — IN USE in this file",
               keys)


def read_noise_type(r: SettingsReader) -> None:
    """Deforum's noise kind; dfm's noise is Gaussian, as Deforum's "uniform" (the export writes that)."""
    if not r.has("noise_type"):
        return
    kind = str(r.take("noise_type"))
    if kind.lower() == "uniform":
        r.map("noise_type")
    else:
        r.warn(f"noise_type `{kind}` approximated by dfm's Gaussian noise (Deforum's 'uniform')", ["noise_type"])


def write_color_coherence(choice: str) -> Written:
    return {"color_coherence": color_label(choice)}


def read_color_coherence(r: SettingsReader) -> None:
    """Read before the catalogue pass: Deforum's video and image sources are approximated by lab."""
    if not r.has("color_coherence"):
        return
    p = cat.BY_NAME["color_coherence"]
    raw = r.take("color_coherence")
    choice = cat.resolve_choice(p, str(raw))
    if r.mode not in p.modes:
        r.unused_in_mode.append("color_coherence")
    elif choice is None:
        r.settings["color_coherence"] = (word("lab"),)
        r.warn(f"color_coherence `{raw}` has no dfm equivalent: approximated by lab (match the first frame)",
               ["color_coherence"])
    else:
        r.settings["color_coherence"] = (word(choice),)
        r.map("color_coherence")


def write_audio(path: str) -> Written:
    return {"add_soundtrack": "File", "soundtrack_path": path}


def read_audio(r: SettingsReader) -> None:
    """Deforum's soundtrack: `add_soundtrack` "File" with `soundtrack_path` is dfm's `audio` (its features
    become usable in expressions too); "None" adds nothing; "Init Video" is the input video's sound."""
    keys = [k for k in ("add_soundtrack", "soundtrack_path") if r.has(k)]
    mode = str(r.take("add_soundtrack")) if "add_soundtrack" in keys else None
    path = r.take("soundtrack_path") if "soundtrack_path" in keys else None
    if mode == "File" and path:
        if str(path).startswith(("http://", "https://")):
            r.warn(f"soundtrack_path is a URL ({path}): dfm reads a local file; download it and write "
                   '`audio "song.mp3"`', keys)
            return
        r.settings["audio"] = (string(str(path)),)
    elif mode == "Init Video" and r.original.get("video_init_path"):
        r.settings["audio"] = (string(str(r.original["video_init_path"])),)  # ffmpeg reads its sound
    r.map(*keys)  # read, or no soundtrack asked for


# ---- the table -------------------------------------------------------------------------------------------
# In the order the import reads them (its warnings come in this order). `use_mask_video` is read as the switch
# that gates `video_mask_path` (`deforum_names.GATES`); `diffusion_cadence` by the catalogue pass.

_CONVERTERS = (
    Converter("size", write_size, read_size, scene=True, early=True),
    Converter("seed_resize_from", write_seed_resize, read_seed_resize, early=True),
    Converter("model", read=read_model, scene=True),
    Converter("depth_model", write_depth_model, read_depth_model),
    Converter("save_video", write_save_video, read_save_video),
    Converter("noise_type", read=read_noise_type),
    Converter("interpolate_times", lambda v: {"frame_interpolation_x_amount": int(v)}, read_interpolation_amount),
    Converter("r_upscale_video", read=read_upscale),
    Converter("color_coherence", write_color_coherence, read_color_coherence),
    Converter("audio", write_audio, read_audio),
    Converter("cadence", lambda v: {"diffusion_cadence": str(int(v))}),  # Deforum stores it as text
    Converter("video_mask_path", lambda v: {"use_mask_video": True, "video_mask_path": v}),
    # written by the export's scene and prompt passes (duration: as max_frames)
    *(Converter(name, scene=True) for name in ("mode", "frames", "duration", "fps", "sampler", "seed",
                                               "seed_behavior", "seed_iter_n", "init_image", "prompt_crossfade")),
    *(Converter(name, carried=True) for name in ("bpm", "init_strength", "interpolate_key_frames",
                                                 "interpolate_x_frames")),
)
CONVERTERS: dict[str, Converter] = {c.name: c for c in _CONVERTERS}


def reads(early: bool) -> tuple[Converter, ...]:
    """The converters that read a file's keys, early (with the scene's shape) or with the other settings."""
    return tuple(c for c in _CONVERTERS if c.read is not None and c.early == early)


__all__ = ["Converter", "CONVERTERS", "SettingsReader", "Written", "color_label", "finite", "reads", "truthy"]
