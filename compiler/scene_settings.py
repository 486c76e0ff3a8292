"""Pass 2: every setting's value (the scene's, else the model family's, else the catalogue's default) and
the frame count, which `duration`, `bpm auto`/`duration auto` (the audio track), an input video or, in
interpolation mode, the prompts decide."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..contract import media
from ..contract.modes import mode as mode_of
from ..dsl import ir
from . import catalogue as cat
from .key_times import time_frames
from .model_setting import family_defaults
from .scene_audio import read_track

if TYPE_CHECKING:
    from .audio import Analysis
    from .context import CompileContext, Setting
    from .statements import Statements


@dataclass
class ResolvedSettings:
    values: dict[str, object]  # every catalogue setting by name, plus model_sha256
    track: Analysis | None = None  # the audio track, when the scene has one that could be read
    schedule_defaults: dict[str, float] = field(default_factory=dict)  # the model family's, for absent schedules


def resolve_settings(ctx: CompileContext, stmts: Statements) -> ResolvedSettings | None:
    """The settings with defaults, the frame count and duration resolved; None after an error that leaves
    the frame count unknown."""
    given = stmts.settings
    values: dict[str, object] = {}
    for p in cat.SETTINGS:
        s = given.get(p.name)
        values[p.name] = s.value if s is not None else p.default
    values["model_sha256"] = given["model_sha256"].value if "model_sha256" in given else None
    mode = values["mode"] or "2d"
    values["mode"] = mode
    ok, track = read_track(ctx, given, values)
    if not ok or not _frame_count(ctx, given, values):
        return None
    values["duration"] = values["frames"] / values["fps"]
    schedule_defaults = family_defaults(ctx, given, stmts.schedules, values)
    xf = values["prompt_crossfade"]
    if isinstance(xf, tuple):
        amount, unit, span = xf
        xf = time_frames(ctx, amount, unit, span, values, "prompt_crossfade") or 0
    values["prompt_crossfade"] = int(xf or 0)
    for p, st in stmts.mode_specific:
        if mode not in p.modes:
            ctx.warn("DFM304", f"`{p.name}` has no effect in mode {mode}", st.name_span, parameter=p.name,
                     help=f"it is used in mode {', '.join(m for m in cat.MODES if m in p.modes)}")
    return ResolvedSettings(values, track, schedule_defaults)


def _frame_count(ctx: CompileContext, given: dict[str, Setting], values: dict) -> bool:
    """`values["frames"]` from `frames` or `duration` (not both), or from the input video in video mode.
    False after an error that leaves it unknown."""
    if "frames" in given and "duration" in given:
        ctx.err("DFM108", "both `frames` and `duration` are set", given["duration"].statement.span,
                help="keep one: `frames 120` or `duration 8s`")
    if "duration" in given and values["duration"] is not None:
        amount, unit, span = values["duration"]
        frames = time_frames(ctx, amount, unit, span, values, "duration")
        if frames is None:
            return False
        values["frames"] = max(1, frames)
    if values["frames"] > cat.MAX_FRAMES:
        ctx.err("DFM104", f"`duration` makes {values['frames']} frames, more than {cat.MAX_FRAMES}",
                given["duration"].statement.span, parameter="duration",
                help="shorten the duration or lower the fps")
        return False
    return not mode_of(values["mode"]).reads_video or video_frames(ctx, given, values)


def video_frames(ctx: CompileContext, given: dict[str, Setting], values: dict) -> bool:
    """Video mode renders as many frames as the extraction gives (as Deforum does): the default frame
    count; an explicit one may only be smaller. False after an error."""
    raw = values["video_init_path"]
    st = given.get("video_init_path")
    if not raw or st is None:
        return True  # no video: the runtime says so before loading anything
    path = Path(str(raw)).expanduser()
    try:
        if not path.is_file():
            return True  # DFM403 has warned: the file may appear before the render
        total = media.count_frames(path)
    except media.MediaError as e:
        ctx.err("DFM403", e.message, st.statement.span, parameter="video_init_path", help=e.help)
        return False
    except OSError:
        return True  # reported by the path check
    sel = media.select(total, values["extract_from_frame"], values["extract_nth_frame"],
                       values["extract_to_frame"])
    what = (f"from {values['extract_from_frame']}, every {values['extract_nth_frame']}"
            + (f", to {values['extract_to_frame']}" if values["extract_to_frame"] >= 0 else ""))
    if sel.count < 1:
        ctx.err("DFM104", f"the input video gives no frames ({total} frames; {what})", st.statement.span,
                parameter="video_init_path", help="lower extract_from_frame")
        return False
    frames_given = given.get("frames") or given.get("duration")
    if frames_given is None:
        values["frames"] = sel.count
    elif values["frames"] > sel.count:
        ctx.err("DFM104", f"the input video gives {sel.count} frames ({total}; {what}) but the scene has "
                f"{values['frames']}", frames_given.statement.span, parameter=frames_given.statement.name,
                help=f"set `frames {sel.count}`, or remove it: video mode renders the whole extraction")
        return False
    return True


def interpolation_frames(ctx: CompileContext, given: dict[str, Setting],
                         prompt_statements: list[tuple[str, ir.Statement]], prompts: list[tuple[int, str]],
                         values: dict) -> None:
    """In interpolation mode the prompts decide the frame count; `frames` may only agree."""
    keys = [f for f, _ in prompts]
    if not keys:
        return
    if values["interpolate_key_frames"]:
        count = max(keys) + 1
    else:
        count = (len(keys) - 1) * (values["interpolate_x_frames"] + 1) + 1
    if count > cat.MAX_FRAMES:
        st = next(st for name, st in prompt_statements if name == "prompt")
        ctx.err("DFM104", f"the prompts make {count} interpolation frames, more than {cat.MAX_FRAMES}",
                st.span, parameter="prompt", help="move the last prompt earlier or lower interpolate_x_frames")
        count = 1
    frames_given = given.get("frames") or given.get("duration")
    if frames_given is not None and values["frames"] != count:
        ctx.warn("DFM304", f"in interpolation mode the prompts make {count} frames; "
                 f"`{frames_given.statement.name}` is ignored", frames_given.statement.span, parameter="frames",
                 help=f"remove it, or set `frames {count}`")
    values["frames"] = count
    values["duration"] = count / values["fps"]
