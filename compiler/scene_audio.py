"""The scene's audio track: the `audio "song.mp3" [from 12s]` statement, reading the track to resolve
`bpm auto` and `duration auto`, and its features per frame for expressions. compiler/audio.py does the
analysis; it is imported only for a scene with `audio`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..dsl import ir
from . import catalogue as cat
from .catalogue import Param
from .context import Setting
from .expressions import AUDIO_VARIABLES
from .paths import exists, scene_relative

if TYPE_CHECKING:
    from .audio import Analysis
    from .context import CompileContext


def audio_setting(ctx: CompileContext, settings: dict[str, Setting], p: Param, st: ir.Statement) -> str | None:
    """`audio "song.mp3"` or `audio "song.mp3" from 12s`: the path (relative to the scene), and the offset
    into the track as the setting `audio_offset`. Whether the file exists is checked when it is read."""
    args = list(st.args)
    ok = args and isinstance(args[0], ir.String) and (
        len(args) == 1 or (len(args) == 3 and isinstance(args[1], ir.Variable) and args[1].name == "from"))
    if not ok:
        ctx.err("DFM105", "`audio` takes a quoted path, optionally followed by `from` and a time", st.span,
                parameter="audio", help='e.g. `audio "song.mp3"` or `audio "song.mp3" from 12s`')
        return None
    if len(args) == 3:
        at = args[2]
        if not isinstance(at, (ir.Time, ir.Number)) or (isinstance(at, ir.Time) and at.unit != "s"):
            ctx.err("DFM103", "`from` takes a time in seconds", at.span, parameter="audio",
                    help="e.g. `from 12s` or `from 1.5s`")
        elif at.value < 0:
            ctx.err("DFM104", "`from` must be 0 s or later", at.span, parameter="audio")
        elif "audio_offset" in settings:
            first = settings["audio_offset"].statement
            ctx.err("DFM106", "`audio_offset` is set twice", at.span, parameter="audio_offset",
                    note=f"first set on line {first.span.line}", help="keep one of them")
        else:
            settings["audio_offset"] = Setting(float(at.value), st)
    return str(scene_relative(args[0].value, ctx.base_dir))


def read_track(ctx: CompileContext, given: dict[str, Setting], values: dict) -> tuple[bool, Analysis | None]:
    """Read the audio track (from the cache when it was read before), and resolve `bpm auto` and
    `duration auto` from it into `values`. Returns (False after an error that leaves the frame count
    unknown, the track or None)."""
    autos = [p.name for p in cat.SETTINGS if p.auto and values.get(p.name) == "auto"]
    raw = values.get("audio")
    if raw is None:
        for n in autos:
            ctx.err("DFM205", f"`{n} auto` needs an audio track", given[n].statement.span,
                    parameter=n, help=f'add `audio "song.mp3"`, or write the {n}')
        return not autos, None
    st = given["audio"].statement
    where = st.args[0].span
    path = Path(str(raw))
    found = exists(ctx, "audio", path, st.args[0])
    if not found:
        if found is not None:
            ctx.err("DFM403", f"audio: `{st.args[0].value}` does not exist", where, parameter="audio",
                    help="paths are relative to the scene file")
        return not autos, None
    from . import audio  # only a scene with `audio` pays for it

    try:
        track = audio.load(path)
    except audio.AudioError as e:
        ctx.err("DFM404", e.message, where, parameter="audio", help=e.help or None)
        return not autos, None
    offset = float(values.get("audio_offset") or 0.0)
    if offset >= track.duration:
        ctx.err("DFM404", f"audio starts at {offset:g} s, past the end of the track ({track.duration:.2f} s)",
                st.span, parameter="audio", help=f"use `from` a time before {track.duration:.2f}s")
        return not autos, None
    return _resolve_autos(ctx, given, values, autos, track, path.name, offset), track


def _resolve_autos(ctx: CompileContext, given: dict[str, Setting], values: dict, autos: list[str], track: Analysis,
                   name: str, offset: float) -> bool:
    """`bpm auto` from the track's tempo and `duration auto` from its length after `offset`, each with a
    note saying what was found. False when no tempo was found."""
    if "bpm" in autos:
        bst = given["bpm"].statement
        if not math.isfinite(track.tempo):
            ctx.err("DFM404", f"bpm auto: no tempo found in `{name}`", bst.span, parameter="bpm",
                    help="write the tempo: `bpm 120`")
            return False
        values["bpm"] = round(track.tempo, 2)
        ctx.note("DFM206", f"bpm auto: {values['bpm']:g} bpm detected in `{name}`", bst.span,
                 parameter="bpm", help=f"write `bpm {values['bpm']:g}` to fix it")
    if "duration" in autos:
        dst = given["duration"].statement
        length = track.duration - offset
        values["duration"] = (length, "s", dst.span)
        ctx.note("DFM206", f"duration auto: {length:.2f} s, the length of `{name}`"
                 + (f" from {offset:g} s" if offset else ""), dst.span, parameter="duration")
    return True


def audio_features(ctx: CompileContext, track: Analysis | None, settings: dict) -> dict[str, np.ndarray]:
    """The audio track's features per frame (every name in AUDIO_VARIABLES), or none without audio. A
    track that could not be read gives zeros, so the rest of the scene is still checked."""
    if not ctx.has_audio:
        return {}
    frames = settings["frames"]
    if track is None:
        return {k: np.zeros(frames) for k in AUDIO_VARIABLES}
    from . import audio

    return audio.frame_features(track, frames, settings["fps"], float(settings["audio_offset"] or 0.0))
