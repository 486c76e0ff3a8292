"""Hybrid video and optical flow (Deforum's hybrid_* and optical_flow_* keys): whether a scene can render
them, checked without a model — the input video is there and long enough, RAFT's weights are on disk."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..contract import hybrid, media
from ..contract.files import shown
from ..contract.modes import mode as mode_of

if TYPE_CHECKING:
    from .context import CompileContext
    from .statements import Statements

HYBRID_SWITCHES = ("hybrid_composite", "hybrid_motion", "optical_flow_cadence", "optical_flow_redo_generation")


def raft_weights() -> Path:
    """Where torchvision keeps RAFT-large's weights (its hub cache): a render reads them only from there."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch")
    return Path(home) / "hub" / "checkpoints" / hybrid.RAFT_WEIGHTS_FILE


def check_hybrid(ctx: CompileContext, stmts: Statements, values: dict) -> None:
    """DFM409: hybrid video needs its video; RAFT needs its weights; what nothing reads is said."""
    given = stmts.settings
    if not mode_of(values["mode"]).camera:
        return  # DFM304 has said these settings do nothing in this mode

    def span(*names: str):
        st = next((given[n] for n in names if n in given), None)
        return st.statement.span if st is not None else ctx.first_span()

    if hybrid.uses_video(values):
        if values["hybrid_use_init_image"]:
            if not values["init_image"]:
                ctx.err("DFM409", "hybrid_use_init_image needs an `init_image` (the still used as the hybrid video)",
                        span("hybrid_use_init_image"), parameter="hybrid_use_init_image",
                        help='add `init_image "still.png"`, or remove hybrid_use_init_image')
        elif not values["video_init_path"]:
            on = [n for n in ("hybrid_composite", "hybrid_motion") if values[n] != "none"]
            ctx.err("DFM409", f"{' and '.join(on)} {'need' if len(on) > 1 else 'needs'} the input video, "
                    "`video_init_path`", span(*on),
                    parameter=on[0], help='add `video_init_path "footage.mp4"` (relative to the scene file)')
        else:
            _video_length(ctx, values, span("video_init_path"))
    elif values["video_init_path"] and "video_init_path" in given:
        ctx.warn("DFM409", f"`video_init_path` has no effect in mode {values['mode']} without hybrid video",
                 span("video_init_path"), parameter="video_init_path",
                 help="set `hybrid_composite normal` or `hybrid_motion optical_flow` to use it, or `mode video`")
    methods = {n: values[n] for n in ("optical_flow_cadence", "optical_flow_redo_generation")}
    if values["hybrid_motion"] == "optical_flow":
        methods["hybrid_flow_method"] = values["hybrid_flow_method"]
    raft = [n for n, m in methods.items() if m == "raft"]
    if raft and not raft_weights().is_file():
        ctx.err("DFM409", f"{raft[0]} raft needs torchvision's RAFT-large weights, {hybrid.RAFT_WEIGHTS_FILE}, not "
                f"found in {shown(raft_weights().parent)}", span(*raft), parameter=raft[0],
                help="download it from download.pytorch.org/models/ into that folder (or set TORCH_HOME), or use "
                     "dis_medium, dis_fine or farneback (no weights)")
    if values["optical_flow_cadence"] != "none" and int(values["cadence"] or 1) < 2:
        ctx.warn("DFM409", "optical_flow_cadence has no effect at cadence 1: there are no tween frames",
                 span("optical_flow_cadence"), parameter="optical_flow_cadence", help="set `cadence 2` or more")


def _video_length(ctx: CompileContext, values: dict, span) -> None:
    path = Path(str(values["video_init_path"])).expanduser()
    try:
        if not path.is_file():
            return  # DFM403 has warned
        total = media.count_frames(path)
    except (media.MediaError, OSError):
        return  # the render says why, before any model loads
    sel = media.select(total, values["extract_from_frame"], values["extract_nth_frame"], values["extract_to_frame"])
    if sel.count < values["frames"]:
        ctx.warn("DFM409", f"the hybrid video gives {sel.count} frames for a scene of {values['frames']}: from frame "
                 f"{sel.count} on, the last one is held (the video's motion stops there)", span,
                 parameter="video_init_path", help="use a longer video, or fewer frames")
