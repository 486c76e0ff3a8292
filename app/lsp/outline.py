"""The document's outline (symbols) and its inlay hints: where each time written in seconds or beats falls."""

from __future__ import annotations

from lsprotocol import types as lsp

from ...compiler import catalogue as cat
from ...compiler.catalogue import Kind
from ...dsl import ir
from .describe import frame_of
from .features import Analysis
from .positions import LineIndex

# ---- inlay hints -------------------------------------------------------------------------------


def inlay_hints(an: Analysis, index: LineIndex, start: int, end: int) -> list[lsp.InlayHint]:
    """`= frame 60` after every time written in seconds or beats (keys, prompt times), and
    `= 120 frames` after a duration, between offsets `start` and `end`."""
    settings = an.settings
    if an.result is None or an.result.scene is None or settings is None:
        return []
    out: list[lsp.InlayHint] = []

    def hint(t: ir.Time, label: str) -> None:
        if start <= t.span.end <= end:
            out.append(lsp.InlayHint(index.span_position(t.span.end_line, t.span.end_col), label, padding_left=True))

    for st in an.result.scene.statements:
        if st.span.end < start or st.span.start > end:
            continue
        p = cat.lookup(st.name)
        if p is None or not st.args:
            continue
        first = st.args[0]
        if p.kind is Kind.SCHEDULE and isinstance(first, ir.KeyList):
            times = [k.at for k in first.keys]
        elif p.kind is Kind.PROMPT or (p.kind is Kind.SETTING and p.type == "time"):
            times = [first] if isinstance(first, ir.Time) else []
        else:
            times = []
        for t in times:
            if t.unit not in ("s", "b"):
                continue
            frame = frame_of(t, settings)
            if frame is not None:
                hint(t, f"= {frame} frames" if p.kind is Kind.SETTING else f"= frame {frame}")
    return out


# ---- document symbols --------------------------------------------------------------------------


def _shorten(text: str, most: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= most else text[:most - 1] + "…"


def document_symbols(an: Analysis, index: LineIndex) -> list[lsp.DocumentSymbol]:
    """The outline: prompts (with their frame), schedules (with their keys) and settings, in source order."""
    if an.result is None or an.result.scene is None:
        return []
    settings = an.settings
    out: list[lsp.DocumentSymbol] = []
    for st in an.result.scene.statements:
        p = cat.lookup(st.name)
        if p is None or not st.args:
            continue
        rng, sel = index.span_range(st.span), index.span_range(st.name_span)
        if p.kind is Kind.PROMPT:
            text = next((a.value if isinstance(a, ir.String) else " and ".join(p.text.value for p in a.parts)
                         for a in st.args if isinstance(a, ir.String | ir.Composite)), "")
            at = st.args[0] if len(st.args) > 1 and isinstance(st.args[0], (ir.Time, ir.Number)) else None
            t = at if isinstance(at, ir.Time) or at is None else ir.Time(at.value, "f", at.text, at.span)
            frame = frame_of(t, settings) if t is not None else 0
            when = f"{t.text} (frame {frame})" if t is not None and t.unit != "f" and frame is not None else \
                f"frame {frame if frame is not None else t.text}"
            out.append(lsp.DocumentSymbol(_shorten(text) or '""', lsp.SymbolKind.String, rng, sel,
                                          detail=f"{p.name} at {when}"))
        elif p.kind is Kind.SCHEDULE:
            first = st.args[0]
            children = []
            if isinstance(first, ir.KeyList):
                for k in first.keys:
                    frame = frame_of(k.at, settings)
                    name = k.at.text + (f" (frame {frame})" if k.at.unit != "f" and frame is not None else "")
                    children.append(lsp.DocumentSymbol(name, lsp.SymbolKind.Key, index.span_range(k.span),
                                                       index.span_range(k.at.span),
                                                       detail=_shorten(k.value_text or "") or None))
                detail = f"{len(first.keys)} key{'s' * (len(first.keys) != 1)}"
            else:
                detail = _shorten(an.text[first.span.start:first.span.end], 40)
            out.append(lsp.DocumentSymbol(p.name, lsp.SymbolKind.Function, rng, sel, detail=detail,
                                          children=children or None))
        else:
            detail = _shorten(an.text[st.args[0].span.start:st.args[-1].span.end], 40)
            out.append(lsp.DocumentSymbol(p.name, lsp.SymbolKind.Property, rng, sel, detail=detail))
    return out


def flat_symbols(symbols: list[lsp.DocumentSymbol], uri: str) -> list[lsp.SymbolInformation]:
    """The outline for a client without hierarchical symbols."""
    out = []
    for s in symbols:
        out.append(lsp.SymbolInformation(name=s.name, kind=s.kind, location=lsp.Location(uri, s.range)))
        for c in s.children or ():
            out.append(lsp.SymbolInformation(name=c.name, kind=c.kind, location=lsp.Location(uri, c.range),
                                             container_name=s.name))
    return out
