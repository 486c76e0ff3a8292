"""One value of a setting, checked against its catalogue row: an enum choice, on/off, a size, a string or
path, a number in range, a time. Each converter returns the value, or None after a diagnostic saying why."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..dsl import ir
from . import catalogue as cat
from .catalogue import Param
from .expressions import check_expr, constant_value, environment
from .paths import path_value

if TYPE_CHECKING:
    from .context import CompileContext

BOOL_WORDS = {"on": True, "off": False, "true": True, "false": False, "yes": True, "no": False}


def example(p: Param) -> str:
    """A value `p` takes, for the help of a diagnostic."""
    if p.choices:
        return p.choices[0] if p.default is None else str(p.default)
    if p.type == "bool":
        return "on"
    if p.type == "size":
        return "512x512"
    if p.type in ("string", "path"):
        return '"…"'
    return str(p.default if p.default is not None else 1)


def convert(ctx: CompileContext, p: Param, v: ir.Value) -> object | None:
    """A static value of parameter p, checked, or None after reporting why not."""
    return CONVERTERS[p.type](ctx, p, v)


def enum_value(ctx: CompileContext, p: Param, v: ir.Value) -> str | None:
    text = v.name if isinstance(v, ir.Variable) else v.text if isinstance(v, ir.Word) else \
        v.value if isinstance(v, ir.String) else None
    if text is None:
        ctx.err("DFM103", f"`{p.name}` takes one of: {', '.join(p.choices)}", v.span, parameter=p.name,
                help=f"for example `{p.name} {p.choices[0]}`")
        return None
    choice = cat.resolve_choice(p, text)
    norm = cat.normalise_choice(text)
    if choice is None and norm in p.refused:
        ctx.err("DFM107", f"{p.name} `{text}` is not supported: {p.refused[norm]}", v.span, parameter=p.name,
                help=f"choose one of: {', '.join(p.choices)}")
        return None
    if choice is None:
        guess = cat.did_you_mean(norm, [*p.choices, *p.choice_aliases])
        guess = cat.resolve_choice(p, guess) if guess else None
        ctx.err("DFM102", f"unknown {p.name} `{text}`", v.span, parameter=p.name,
                help=(f"did you mean `{guess}`? " if guess else "") + f"choices: {', '.join(p.choices)}")
    return choice


def bool_value(ctx: CompileContext, p: Param, v: ir.Value) -> bool | None:
    if isinstance(v, ir.Number) and v.value in (0, 1):
        return bool(v.value)
    text = v.name if isinstance(v, ir.Variable) else None
    if text is None or text.lower() not in BOOL_WORDS:
        ctx.err("DFM103", f"`{p.name}` is on or off", v.span, parameter=p.name,
                help=f"write `{p.name} on` or `{p.name} off`")
        return None
    return BOOL_WORDS[text.lower()]


def size_value(ctx: CompileContext, p: Param, v: ir.Value) -> tuple[int, int] | None:
    if not isinstance(v, ir.Size):
        ctx.err("DFM103", f"`{p.name}` is a size like 512x512", v.span, parameter=p.name,
                help="write width x height, e.g. `size 768x512`")
        return None
    bad = [d for d in (v.width, v.height) if d % (p.multiple_of or 1) or not p.in_range(d)]
    if bad:
        fix = tuple(max(64, min(4096, (d // 8) * 8)) for d in (v.width, v.height))
        ctx.err("DFM104", f"size {v.width}x{v.height}: each side must be a multiple of 8 in "
                f"{p.range_text()}", v.span, parameter=p.name, help=f"use {fix[0]}x{fix[1]}")
        return None
    return (v.width, v.height)


def string_value(ctx: CompileContext, p: Param, v: ir.Value) -> str | None:
    if not isinstance(v, ir.String):
        ctx.err("DFM103", f"`{p.name}` is a quoted string", v.span, parameter=p.name,
                help=f'write `{p.name} "…"`')
        return None
    return path_value(ctx, p, v) if p.type == "path" else v.value


def number_value(ctx: CompileContext, p: Param, v: ir.Value) -> int | float | None:
    if isinstance(v, (ir.String, ir.Size, ir.Word, ir.Time, ir.KeyList)):
        what = "a keyframe list" if isinstance(v, ir.KeyList) else "a number is needed"
        ctx.err("DFM103", f"`{p.name}` takes one number ({what} was given)", v.span, parameter=p.name,
                help=f"write `{p.name} {example(p)}`")
        return None
    probs = check_expr(v, ctx.path, p.name, allow_t=False)
    if probs:
        ctx.diags.extend(probs)
        return None
    # a setting is one number: an expression of constants, evaluated once
    x = constant_value(v, environment(1, 15, None, 0))
    return checked_number(ctx, p, x, v.span)


def checked_number(ctx: CompileContext, p: Param, x: float, span: ir.Span) -> int | float | None:
    """`x` as the value of `p`: finite, whole for an int, inside the catalogue's range."""
    if not math.isfinite(x):
        ctx.err("DFM402", f"`{p.name}` is not a finite number", span, parameter=p.name)
        return None
    if p.type in ("int", "seed") and not float(x).is_integer():
        ctx.err("DFM103", f"`{p.name}` is a whole number, got {x:g}", span, parameter=p.name,
                help=f"use {math.floor(x)} or {math.ceil(x)}")
        return None
    if not p.in_range(x):
        shown = int(x) if float(x).is_integer() and abs(x) < 1e18 else f"{x:g}"
        fix = p.refused.get(str(shown), f"use a value in {p.range_text()}")
        ctx.err("DFM104", f"`{p.name}` is {shown}, outside {p.range_text()}", span, parameter=p.name,
                help=fix)
        return None
    return int(x) if p.type in ("int", "seed") else float(x)


def time_value(ctx: CompileContext, p: Param, v: ir.Value) -> tuple[float, str, ir.Span] | None:
    """(amount, unit, span): frames are counted once fps and bpm are known (scene_settings.py)."""
    if isinstance(v, ir.Time):
        t = (v.value, v.unit)
    elif isinstance(v, ir.Number):
        t = (v.value, "f")
    else:
        ctx.err("DFM103", f"`{p.name}` is a time: frames (`24`), seconds (`2s`) or beats (`8b`)", v.span,
                parameter=p.name, help=f"write `{p.name} 2s`")
        return None
    if not p.in_range(t[0]):
        ctx.err("DFM104", f"`{p.name}` is {v.text if isinstance(v, ir.Time) else v.value:}, outside "
                f"{p.range_text()}", v.span, parameter=p.name)
        return None
    return (t[0], t[1], v.span)


# parameter type -> the function that converts one value
CONVERTERS: dict[str, Callable[[CompileContext, Param, ir.Value], object | None]] = {
    "enum": enum_value, "bool": bool_value, "size": size_value, "string": string_value, "path": string_value,
    "time": time_value, "int": number_value, "float": number_value, "seed": number_value,
}
