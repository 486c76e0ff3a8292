"""Schedules: each schedule statement checked (pass 1), then its keys resolved to frames once fps, bpm
and the frame count are known: ordered, unique, inside the scene, each with its curve."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..dsl import ir
from ..dsl.parser import parse_statement
from . import catalogue as cat
from .catalogue import Param
from .expressions import check_expr, constant_value, environment, is_plain_number
from .key_times import key_frame
from .schedules import CURVES, ResolvedKey

if TYPE_CHECKING:
    from .context import CompileContext


def read_schedule(ctx: CompileContext, statements: dict[str, ir.Statement], unevaluable: set[str], p: Param,
                  st: ir.Statement) -> None:
    """Check one schedule statement and keep it in `statements` (a pasted Deforum string reparsed);
    a schedule whose expressions fail their checks goes into `unevaluable` too."""
    if p.name in statements:
        first = statements[p.name]
        ctx.err("DFM109", f"`{p.name}` is given twice", st.span, parameter=p.name,
                note=f"first given on line {first.span.line}", help="merge the keys into one statement")
        return
    if len(st.args) != 1:
        ctx.err("DFM105", f"`{p.name}` takes one value or a keyframe list, got {len(st.args)} values",
                st.span, parameter=p.name, help=f"e.g. `{p.name} 0:({p.default}), 30:({p.default})`")
        return
    arg = st.args[0]
    if isinstance(arg, ir.String):  # a Deforum schedule pasted with its quotes
        reparsed = reparse_string(ctx, p, arg)
        if reparsed is None:
            return
        st = ir.Statement(st.name, (reparsed,), st.span, st.name_span)
        arg = reparsed
    if isinstance(arg, (ir.Size, ir.Word, ir.Time)):
        ctx.err("DFM103", f"`{p.name}` takes a number, an expression or keyframes", arg.span,
                parameter=p.name, help=f"e.g. `{p.name} {p.default}`")
        return
    exprs = [k.value for k in arg.keys] if isinstance(arg, ir.KeyList) else [arg]
    problems = [d for e in exprs for d in check_expr(e, ctx.path, p.name, audio=ctx.has_audio)]
    ctx.diags.extend(problems)
    statements[p.name] = st
    if problems:
        unevaluable.add(p.name)


def reparse_string(ctx: CompileContext, p: Param, s: ir.String) -> ir.Value | None:
    """The schedule inside a quoted string, or None after DFM103."""
    st = parse_statement(f"{p.name} {s.value}")
    if st is None or len(st.args) != 1:
        ctx.err("DFM103", f"`{p.name}`: the quoted text is not a schedule", s.span, parameter=p.name,
                help='drop the quotes and write keyframes: `0:(1), 10:(2)`')
        return None
    # positions inside the string are approximate: point every node at the string itself
    return ir.respan(st.args[0], s.span)


def resolve_schedules(ctx: CompileContext, statements: dict[str, ir.Statement], unevaluable: set[str],
                      settings: dict) -> dict[str, list[ResolvedKey]]:
    """Each evaluable schedule's keys at their frames, sorted (a lone value is one key at frame 0)."""
    out: dict[str, list[ResolvedKey]] = {}
    mode = settings["mode"]
    for name, st in statements.items():
        p = cat.BY_NAME[name]
        if name in unevaluable:
            continue
        if mode not in p.modes:
            ctx.warn("DFM304", f"`{name}` has no effect in mode {mode}", st.name_span, parameter=name,
                     help=f"it is used in mode {', '.join(m for m in cat.MODES if m in p.modes)}")
        arg = st.args[0]
        if not isinstance(arg, ir.KeyList):
            out[name] = [ResolvedKey(0, arg, "linear", is_plain_number(arg), arg.span)]
            continue
        out[name] = resolve_keys(ctx, name, _deforum_order(ctx, name, arg, settings), settings)
    return out


def _pasted(arg: ir.KeyList) -> bool:
    """Whether the key list was read from a quoted Deforum string: `reparse_string` points every node at
    the string, so each key's span is the list's own (two keys written in dfm never share one)."""
    return len(arg.keys) > 1 and all(k.span == arg.span for k in arg.keys)


def _deforum_order(ctx: CompileContext, name: str, arg: ir.KeyList, settings: dict) -> ir.KeyList:
    """A quoted Deforum schedule with its keys as Deforum reads them: by frame, the last of two keys on one
    frame kept (its parser fills a dict, its series is indexed by frame), with DFM308 naming the change.
    dfm's own keys stay checked (DFM301, DFM302); keys whose frame fails are left to `resolve_keys`."""
    if not _pasted(arg):
        return arg
    frames: list[int] = []
    for k in arg.keys:
        f = _plain_frame(k.at, settings)
        if f is None:
            return arg
        frames.append(f)
    last = {f: i for i, f in enumerate(frames)}  # the last key at each frame wins
    order = sorted(last.values(), key=lambda i: frames[i])
    if order == list(range(len(arg.keys))):
        return arg
    changes = []
    if any(b < a for a, b in zip(frames, frames[1:], strict=False)):
        changes.append(f"frames {', '.join(map(str, frames))} read in the order "
                       f"{', '.join(str(frames[i]) for i in order)}")
    dropped = sorted({frames[i] for i in range(len(frames)) if last[frames[i]] != i})
    if dropped:
        changes.append(f"the last key kept at frame{'s' if len(dropped) > 1 else ''} "
                       f"{', '.join(map(str, dropped))}")
    ctx.warn("DFM308", f"`{name}`: keys reordered as Deforum reads them: {'; '.join(changes)}", arg.span,
             parameter=name, help="write the keys in increasing frame order, one per frame")
    return ir.KeyList(tuple(arg.keys[i] for i in order), arg.trailing_comma, arg.span)


def _plain_frame(t: ir.Time, settings: dict) -> int | None:
    """The frame of a key in Deforum's syntax (a whole number, or a quoted `"max_f-2"`), without diagnostics;
    None for anything else (seconds, beats, a failing expression): `resolve_keys` reports those."""
    if t.unit == "f":
        return int(t.value) if float(t.value).is_integer() else None
    if t.unit != "x" or t.expr is None or "t" in ir.variables(t.expr):
        return None
    env = environment(settings["frames"], settings["fps"], settings.get("bpm"), settings["seed"])
    try:
        x = constant_value(t.expr, env)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return math.trunc(x) if math.isfinite(x) else None


def resolve_keys(ctx: CompileContext, name: str, arg: ir.KeyList, settings: dict) -> list[ResolvedKey]:
    """The keys of one keyframe list: a key whose time fails, or that repeats a frame, is dropped (with its
    diagnostic); keys past the last frame are kept but warned about (evaluation ignores them)."""
    frames = settings["frames"]
    keys: list[ResolvedKey] = []
    seen: dict[int, ir.Key] = {}
    for k in arg.keys:
        f = key_frame(ctx, k.at, settings, name)
        if f is None:
            continue
        curve = k.curve or "linear"
        if k.curve is not None and k.curve not in CURVES:
            guess = cat.did_you_mean(k.curve, CURVES)
            ctx.err("DFM306", f"unknown curve `{k.curve}`", k.curve_span, parameter=name,
                    help=(f"did you mean `{guess}`? " if guess else "") + f"curves: {', '.join(CURVES)}")
            curve = "linear"
        if f in seen:
            ctx.err("DFM301", f"`{name}` has two keys at frame {f}", k.span, parameter=name, frame=f,
                    note=f"the other is on line {seen[f].span.line}", help="remove one of them")
            continue
        if keys and f < keys[-1].frame:
            ctx.err("DFM302", f"`{name}`: key at frame {f} comes after a key at frame {keys[-1].frame}",
                    k.at.span, parameter=name, frame=f, help="write keys in increasing frame order")
        if f >= frames:
            ctx.warn("DFM303", f"`{name}`: key at frame {f} is past the last frame ({frames - 1}) and "
                     "is ignored", k.at.span, parameter=name, frame=f,
                     help=f"move it to frame {frames - 1} or raise `frames`")
        number = is_plain_number(k.value)
        if k.curve is not None and not number and k.curve in CURVES:
            ctx.warn("DFM306", f"the curve `{k.curve}` has no effect after an expression key",
                     k.curve_span, parameter=name,
                     help="expression keys are evaluated on every frame until the next key")
        seen[f] = k
        keys.append(ResolvedKey(f, k.value, curve, number, k.span, k.curve is not None))
    keys.sort(key=lambda r: r.frame)
    inside = [k for k in keys if k.frame < frames]
    if inside and inside[0].frame > 0:
        ctx.warn("DFM307", f"`{name}` has no key at frame 0; its first key's value holds before frame "
                 f"{inside[0].frame}", inside[0].span, parameter=name,
                 help="add a key `0:(…)` (Deforum would crash here)")
    if keys and not inside:
        ctx.err("DFM303", f"`{name}`: every key is past the last frame", arg.span, parameter=name,
                help=f"the scene has frames 0..{frames - 1}")
    return keys
