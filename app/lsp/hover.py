"""Hover: what the name, function, variable, key or time under the cursor means, and its value in this scene."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from lsprotocol import types as lsp

from ...compiler import catalogue as cat
from ...compiler.catalogue import Kind, Param
from ...compiler.expressions import FUNCTIONS, is_plain_number
from ...dsl import ir
from .describe import (
    ALL_VARIABLES,
    CURVE_DOCS,
    frame_of,
    function_markdown,
    param_markdown,
    show,
    time_facts,
    variable_markdown,
)
from .features import Analysis
from .positions import LineIndex

# ---- where the cursor is -----------------------------------------------------------------------


def _children(node) -> Iterator:
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if isinstance(value, tuple):
            yield from (v for v in value if dataclasses.is_dataclass(v) and hasattr(v, "span"))
        elif dataclasses.is_dataclass(value) and hasattr(value, "span"):
            yield value


def _contains(span: ir.Span, offset: int) -> bool:
    return span is not ir.NO_SPAN and span.start <= offset < max(span.end, span.start + 1)


def statement_at(scene: ir.Scene, offset: int) -> ir.Statement | None:
    for st in scene.statements:
        if _contains(st.span, offset) or st.span.end == offset:
            return st
    return None


def nodes_at(node, offset: int) -> list:
    """The chain of IR nodes from `node` down to the innermost one holding `offset`."""
    chain = [node]
    while True:
        inner = next((c for c in _children(chain[-1]) if _contains(c.span, offset)), None)
        if inner is None:
            return chain
        chain.append(inner)


# ---- hover -------------------------------------------------------------------------------------


def _in_scene(p: Param, an: Analysis) -> str | None:
    result = an.result
    if result is None:
        return None
    if p.kind is Kind.SCHEDULE and result.values and p.name in result.values:
        v = result.values[p.name]
        if not len(v):
            return None
        if float(v.min()) == float(v.max()):
            return f"In this scene: `{show(float(v[0]))}` on every frame"
        return (f"In this scene: `{show(float(v[0]))}` at frame 0, `{show(float(v[-1]))}` at frame {len(v) - 1}; "
                f"min `{show(float(v.min()))}`, max `{show(float(v.max()))}`")
    if p.kind is Kind.SETTING and result.settings is not None and p.name in result.settings:
        return f"In this scene: `{show(result.settings[p.name])}`"
    return None



def _key_markdown(p: Param, key: ir.Key, an: Analysis) -> str | None:
    settings = an.settings
    frame = frame_of(key.at, settings)
    if frame is None:
        return None
    lines = [f"**{p.name}** key `{key.at.text}`: {time_facts(frame, settings)}", ""]
    values = an.result.values if an.result is not None else None
    if values and p.name in values and frame < len(values[p.name]):
        lines.append(f"value at frame {frame}: `{show(float(values[p.name][frame]))}`")
    elif frame >= settings["frames"]:
        lines.append(f"past the last frame ({settings['frames'] - 1}): this key is ignored")
    if is_plain_number(key.value):
        curve = key.curve or "linear"
        lines.append(f"a number key: `{curve}` to the next key ({CURVE_DOCS.get(curve, 'a curve')})")
    else:
        lines.append("an expression key: evaluated on every frame until the next key")
    return "\n\n".join(x for x in lines if x)



def hover(an: Analysis, index: LineIndex, offset: int) -> lsp.Hover | None:
    if an.result is None or an.result.scene is None:
        return None
    st = statement_at(an.result.scene, offset)
    if st is None:
        return None
    p = cat.lookup(st.name)
    if _contains(st.name_span, offset) or st.name_span.end == offset:
        if p is None:
            return None
        text = param_markdown(p, st.name)
        extra = _in_scene(p, an)
        return _hover(text + (f"\n\n{extra}" if extra else ""), index, st.name_span)
    chain = nodes_at(st, offset)
    for node in reversed(chain):
        if isinstance(node, ir.Call) and _contains(node.name_span, offset) and node.func in FUNCTIONS:
            return _hover(function_markdown(node.func), index, node.name_span)
        if isinstance(node, ir.Variable) and node.name in ALL_VARIABLES and p is not None:
            return _hover(variable_markdown(node.name, an), index, node.span)
        if isinstance(node, ir.Key) and p is not None:
            text = _key_markdown(p, node, an)
            return _hover(text, index, node.span) if text else None
        if isinstance(node, (ir.Time, ir.Number)) and p is not None and p.kind is Kind.PROMPT and st.args \
                and node is st.args[0]:
            t = node if isinstance(node, ir.Time) else ir.Time(node.value, "f", node.text, node.span)
            frame = frame_of(t, an.settings)
            if frame is not None:
                return _hover(f"**{p.name}** from `{t.text}`: {time_facts(frame, an.settings)}", index, node.span)
    return None


def _hover(markdown: str, index: LineIndex, span: ir.Span) -> lsp.Hover:
    return lsp.Hover(lsp.MarkupContent(lsp.MarkupKind.Markdown, markdown), index.span_range(span))
