"""Prompts: each `prompt`/`negative` statement resolved to a (frame, text) key, its text checked (A1111's
syntax, sub-prompts, `<lora:…>` tags, backtick expressions), and every expression in a prompt checked to
be finite on the frames its prompt is in force."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..contract.modes import mode as mode_of
from ..dsl import ir
from ..dsl.formatter import format_expr
from ..dsl.parser import parse
from . import prompt_syntax
from .expressions import check_expr, evaluate_frames, is_plain_number
from .key_times import key_frame
from .lower import NEG_MARKER
from .string_spans import string_span

if TYPE_CHECKING:
    from .context import CompileContext
    from .networks import Networks

# a backtick or native weight expression's source text -> (expression, where it is, its parameter)
Expressions = dict[str, tuple[ir.Expr, ir.Span, str]]
PromptKey = tuple[int, str, ir.Statement]  # (frame, text, its statement)


@dataclass
class Prompts:
    """The scene's prompt keys, sorted by frame, and the expressions their texts hold."""

    keys: dict[str, list[PromptKey]] = field(default_factory=lambda: {"prompt": [], "negative": []})
    expressions: Expressions = field(default_factory=dict)

    @property
    def prompts(self) -> list[tuple[int, str]]:
        return [(f, t) for f, t, _ in self.keys["prompt"]]

    @property
    def negatives(self) -> list[tuple[int, str]]:
        return [(f, t) for f, t, _ in self.keys["negative"]]


def resolve_prompts(ctx: CompileContext, statements: list[tuple[str, ir.Statement]], settings: dict,
                    networks: Networks | None) -> Prompts:
    """Every prompt statement as a key at its frame (DFM301 for two at one frame), its text checked;
    `networks` collects the texts' LoRA tags and embeddings."""
    out = Prompts()
    seen: dict[str, dict[int, ir.Statement]] = {"prompt": {}, "negative": {}}
    for name, st in statements:
        args = list(st.args)
        texts = (ir.String, ir.Composite)  # a quoted text, or the native composable form
        if len(args) == 1 and isinstance(args[0], texts):
            frame, text = 0, prompt_text(ctx, out.expressions, networks, name, args[0])
        elif len(args) == 2 and isinstance(args[1], texts) and isinstance(args[0], (ir.Number, ir.Time)):
            at = args[0] if isinstance(args[0], ir.Time) else ir.Time(args[0].value, "f", args[0].text,
                                                                         args[0].span)
            frame = key_frame(ctx, at, settings, name)
            if frame is None:
                continue
            text = prompt_text(ctx, out.expressions, networks, name, args[1])
        else:
            ctx.err("DFM105", f"`{name}` takes an optional time and a quoted text", st.span, parameter=name,
                    help=f'e.g. `{name} 4s "a castle in the clouds"`')
            continue
        other = seen[name].get(frame)
        if other is not None:
            ctx.err("DFM301", f"two `{name}` statements at frame {frame}", st.span, parameter=name,
                    frame=frame, note=f"the other is on line {other.span.line}", help="remove one of them")
            continue
        # stills take no frame count, and in interpolation mode the prompts make it
        if frame >= settings["frames"] and mode_of(settings["mode"]).rows_are_frames:
            ctx.warn("DFM303", f"`{name}` at frame {frame} is past the last frame ({settings['frames'] - 1})",
                     st.span, parameter=name, frame=frame, help="move it earlier or raise `frames`")
        if text is None:  # a native form with an error (reported)
            continue
        out.keys[name].append((frame, text, st))
        seen[name][frame] = st
        if isinstance(st.args[-1], ir.String):
            check_text(ctx, out.expressions, networks, name, st.args[-1])
    for keys in out.keys.values():
        keys.sort(key=lambda x: x[0])
    return out


def prompt_text(ctx: CompileContext, expressions: Expressions, networks: Networks | None, name: str,
                v: ir.String | ir.Composite) -> str | None:
    """A prompt statement's text. The native composable form becomes the A1111/Deforum text it means
    (`"apple" weight cos(t) and "snow"` → ``apple :`cos(t)` AND snow :1``): every weight written, so a
    sub-prompt's own `:2` is never read as its weight. None for a form the statement cannot take."""
    if isinstance(v, ir.String):
        return v.value
    if name == "negative":
        ctx.err("DFM503", "a negative prompt has no sub-prompts: A1111 has no `AND` in negatives", v.span,
                parameter=name, help='write one text: `negative "blurry, grainy"`; lower a term\'s weight '
                "with `(grainy:0.5)`")
        return None
    if len(v.parts) > prompt_syntax.MAX_PARTS:
        ctx.err("DFM503", f"{len(v.parts)} sub-prompts (at most {prompt_syntax.MAX_PARTS}): each one is one more "
                "UNet pass per step", v.parts[prompt_syntax.MAX_PARTS].span, parameter=name,
                help="merge sub-prompts, or blend prompts over time with `prompt_crossfade`")
        return None
    out = []
    for part in v.parts:
        text = part.text.value
        for bad, why in ((prompt_syntax.AND.search(text), "`AND` inside a sub-prompt would split it"),
                         (NEG_MARKER.search(text), "`--neg` inside a sub-prompt")):
            if bad is not None:
                span = string_span(ctx.scene.source, part.text, bad.start(), bad.end())
                ctx.err("DFM503", why, span, parameter=name,
                        help="join sub-prompts with `and` between the strings; write negatives with `negative`")
        check_text(ctx, expressions, networks, name, part.text)
        out.append(f"{text} {_weight_text(ctx, expressions, name, part.weight)}")
    return " AND ".join(out)


def _weight_text(ctx: CompileContext, expressions: Expressions, name: str, weight: ir.Expr | None) -> str:
    """A sub-prompt's weight as A1111 text: `:2`, or an expression between backticks (checked, and kept
    in `expressions` for its per-frame check)."""
    if weight is None:
        return ":1"
    problems = check_expr(weight, ctx.path, name, audio=ctx.has_audio)
    ctx.diags.extend(problems)
    shown = format_expr(weight)
    if is_plain_number(weight):
        return f":{shown}"
    if not problems:
        expressions.setdefault(shown, (weight, weight.span, name))
    return f":`{shown}`"


def check_text(ctx: CompileContext, expressions: Expressions, networks: Networks | None, name: str,
               s: ir.String) -> None:
    """A1111's attention syntax in a prompt text (DFM501), and the prompt syntax dfm does not implement
    (DFM502), each pointed at in the string. A positive prompt's `--neg` part is a prompt of its own."""
    text = s.value
    marker = NEG_MARKER.search(text) if name == "prompt" else None
    parts = [(text, 0)] if marker is None else [(text[:marker.start()], 0), (text[marker.end():], marker.end())]
    for part, offset in parts:
        if networks is not None:  # its <lora:…> tags and embeddings
            networks.prompt(s, part, offset, negative=name == "negative" or offset > 0)
        backtick_expressions(ctx, expressions, name, s, part, offset)
        composition = prompt_syntax.check_composition(part, negative=name == "negative" or offset > 0)
        for issue in prompt_syntax.check(part) + composition:
            report = ctx.err if issue.error else ctx.warn
            span = string_span(ctx.scene.source, s, offset + issue.start, offset + issue.end)
            report(issue.code, issue.message, span, parameter=name, help=issue.help)


def backtick_expressions(ctx: CompileContext, expressions: Expressions, name: str, s: ir.String, part: str,
                         offset: int) -> None:
    """Each `` `expression` `` of a prompt text parsed and checked as a dfm expression (DFM503 at the
    backticks when it is not one), and kept in `expressions` for its per-frame check (`check_prompt_values`)."""
    for start, end, source in prompt_syntax.backticks(part):
        span = string_span(ctx.scene.source, s, offset + start, offset + end)
        expr = prompt_syntax.backtick_expression(source)
        if expr is None:
            parsed = parse(f"weight ({source})", "<prompt>").diagnostics
            why = f": {parsed[0].message}" if parsed and source.strip() and "\n" not in source else ""
            ctx.err("DFM503", f"`{source[:40]}` between backticks is not an expression{why}", span,
                    parameter=name, help="write a dfm expression of the frame, e.g. `` `1+t/max_f` `` "
                    "(docs/language.md lists the functions and variables)")
            continue
        problems = check_expr(expr, ctx.path, name, audio=ctx.has_audio)
        for d in problems:  # spans from inside the backticks: point at the backticks
            ctx.diags.append(dataclasses.replace(d, span=span))
        if not problems:
            expressions.setdefault(source, (expr, span, name))


def check_prompt_values(ctx: CompileContext, prompts: Prompts, env: dict, frames: int, settings: dict) -> None:
    """Every backtick and native weight expression of the prompts is finite on every frame its prompt
    is in force (DFM402 at the first frame it is not: the value would reach A1111's syntax as `nan`).
    In stills mode the rows are the images, which may outnumber `frames`: every row is checked."""
    rows = frames
    if not mode_of(settings["mode"]).animated:
        rows = max(frames, len(prompts.keys["prompt"]) * int(settings["images_per_prompt"]))
    if rows > frames:  # per-frame variables past their end hold their last value, as lower.py reads them
        env = {k: np.concatenate([v, np.full(rows - len(v), v[-1])]) if isinstance(v, np.ndarray) and len(v) else v
               for k, v in env.items()}
    for source, (expr, span, name) in prompts.expressions.items():
        values = evaluate_frames(expr, env, 0, rows)
        bad = ~np.isfinite(values)
        if mode_of(settings["mode"]).rows_are_frames:  # elsewhere rows are not frames: check them all
            bad &= in_force(prompts, source, frames, settings["prompt_crossfade"])
        if bad.any():
            f = int(np.argmax(bad))
            ctx.err("DFM402", f"the prompt weight `{source[:40]}` is {values[f]} at frame {f}", span,
                    parameter=name, frame=f, note="a division by zero, or a function outside its domain",
                    help="guard the expression, e.g. with `where` or `max`")


def in_force(prompts: Prompts, source: str, frames: int, crossfade: int) -> np.ndarray:
    """The frames on which a prompt text holding the backtick expression `source` is read: from its key
    (frame 0 for the first) to the next key, plus the crossfade that still blends it."""
    mask = np.zeros(frames, dtype=bool)
    for keys in (prompts.prompts, prompts.negatives):
        for i, (f, text) in enumerate(keys):
            if any(src == source for _, _, src in prompt_syntax.backticks(text)):
                end = keys[i + 1][0] + crossfade if i + 1 < len(keys) else frames
                mask[min(0 if i == 0 else f, frames):min(end, frames)] = True
    return mask
