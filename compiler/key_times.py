"""Key times → frame indices: frames (`24`), seconds (`2s`), beats (`8b`, with the scene's bpm) and Deforum's
quoted expression keys (`"max_f-2"`), each checked against the scene's frame range."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..dsl import ir
from . import catalogue as cat
from .expressions import check_expr, constant_value, environment
from .units import frames_of

if TYPE_CHECKING:
    from .context import CompileContext


def key_frame(ctx: CompileContext, t: ir.Time, settings: dict, p_name: str) -> int | None:
    """The frame of a key of parameter `p_name`, or None after a diagnostic."""
    if t.unit == "x":
        return expression_frame(ctx, t, settings, p_name)
    if t.unit == "f" and not float(t.value).is_integer():
        ctx.err("DFM103", f"frame `{t.text}` is not a whole number", t.span, parameter=p_name,
                help=f"use a whole frame, or seconds: `{t.text}s`")
        return None
    return time_frames(ctx, t.value, t.unit, t.span, settings, p_name, t.text)


def expression_frame(ctx: CompileContext, t: ir.Time, settings: dict, p_name: str) -> int | None:
    """Deforum's quoted key (`"max_f-2":(1)`): an expression of the scene's constants, evaluated and
    truncated with int() as the extension does."""
    if "t" in ir.variables(t.expr):
        ctx.err("DFM202", f"`{p_name}`: the key {t.text} depends on `t`; a key's frame is one number",
                t.span, parameter=p_name, help='use the scene constants, e.g. "max_f-2" or "max_f/2"')
        return None
    problems = check_expr(t.expr, ctx.path, p_name, allow_t=False)
    if problems:
        ctx.diags.extend(problems)
        return None
    env = environment(settings["frames"], settings["fps"], settings.get("bpm"), settings["seed"])
    x = constant_value(t.expr, env)
    if not math.isfinite(x):
        ctx.err("DFM402", f"`{p_name}`: the key {t.text} is not a finite frame", t.span, parameter=p_name)
        return None
    return time_frames(ctx, math.trunc(x), "f", t.span, settings, p_name, t.text)


def time_frames(ctx: CompileContext, amount: float, unit: str, span: ir.Span, settings: dict, p_name: str,
                text: str | None = None) -> int | None:
    """A time in frames, seconds or beats as a whole frame count, or None after DFM204 (no bpm) or DFM104
    (outside 0 .. MAX_FRAMES)."""
    if unit == "b" and not settings.get("bpm"):
        shown = f"`{text}` is" if text else f"`{p_name}` is"
        ctx.err("DFM204", f"{shown} in beats but the scene sets no bpm", span, parameter=p_name,
                help="add `bpm 120` (your tempo)")
        return None
    frame = frames_of(amount, unit, settings["fps"], settings.get("bpm"))
    if not 0 <= frame <= cat.MAX_FRAMES:
        shown = text or f"{amount:g}"
        shown = shown if len(shown) <= 24 else shown[:20] + "…"
        count = f"{frame} frames" if abs(frame) < 2**62 else "more frames than any scene"
        ctx.err("DFM104", f"`{p_name}`: `{shown}` is {count}, outside 0 .. {cat.MAX_FRAMES}", span,
                parameter=p_name, help=f"a scene has at most {cat.MAX_FRAMES} frames")
        return None
    return frame
