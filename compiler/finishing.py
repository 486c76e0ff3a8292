"""Frame interpolation and upscaling of the finished video (`interpolate`, `upscale_model`): whether they can
run, checked without loading anything."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .context import CompileContext
    from .statements import Statements

WEIGHTS = {"rife": "Practical-RIFE v4.6's flownet.pkl", "film": "FILM's film_net_fp16.pt (TorchScript)"}


def check_finishing(ctx: CompileContext, stmts: Statements, values: dict) -> None:
    """DFM410 for what the finishing stage would refuse after a whole render."""
    given = stmts.settings

    def span(*names: str):
        st = next((given[n] for n in names if n in given), None)
        return st.statement.span if st is not None else ctx.first_span()

    engine = values["interpolate"]
    if engine in WEIGHTS and not values["interpolate_weights"]:
        ctx.err("DFM410", f"`interpolate {engine}` needs its weights file, {WEIGHTS[engine]}", span("interpolate"),
                parameter="interpolate", help='set `interpolate_weights "…"` to the downloaded file, or use '
                                              "`interpolate flow` (no weights)")
    if values["interpolate_upscaled"] and not values["upscale_model"]:
        ctx.err("DFM410", "`interpolate_upscaled` needs an `upscale_model`", span("interpolate_upscaled"),
                parameter="interpolate_upscaled", help='set `upscale_model "…"`, or remove interpolate_upscaled')
    if (engine != "none" or values["upscale_model"]) and not values["save_video"]:
        ctx.err("DFM410", "frame interpolation and upscaling work on video.mp4, and `save_video` is off",
                span("save_video"), parameter="save_video", help="remove `save_video off`")
