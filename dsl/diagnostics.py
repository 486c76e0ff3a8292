"""Diagnostics as data, and their three renderings: full (rustc-like), concise (one line) and JSON.

Every error a user sees, syntax or semantic, is one `Diagnostic`; `codes.py` holds each code's
title and explanation (for `dfm explain` and the docs).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from enum import Enum
from functools import lru_cache

from .ir import NO_SPAN, Span, source_lines

MAX_SHOWN = 100  # characters of a source line shown under a diagnostic


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"  # what the compiler found out (a detected tempo): never a problem


@dataclass(frozen=True, slots=True)
class Diagnostic:
    code: str
    severity: Severity
    message: str
    span: Span = NO_SPAN
    help: str | None = None
    label: str | None = None  # printed after the caret
    note: str | None = None
    parameter: str | None = None
    frame: int | None = None
    path: str = field(default="<string>")

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    @property
    def is_warning(self) -> bool:
        return self.severity is Severity.WARNING

    def sort_key(self) -> tuple:
        return (self.path, self.span.start, 0 if self.is_error else 1, self.code)


class DfmError(Exception):
    """Raised by library entry points when a scene has errors; carries every diagnostic."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        first = diagnostics[0] if diagnostics else None
        super().__init__(f"{first.code}: {first.message}" if first else "invalid scene")


def error(code: str, message: str, span: Span = NO_SPAN, **kw) -> Diagnostic:
    return Diagnostic(code, Severity.ERROR, message, span, **kw)


def warning(code: str, message: str, span: Span = NO_SPAN, **kw) -> Diagnostic:
    return Diagnostic(code, Severity.WARNING, message, span, **kw)


def note(code: str, message: str, span: Span = NO_SPAN, **kw) -> Diagnostic:
    return Diagnostic(code, Severity.NOTE, message, span, **kw)


# ---- rendering -----------------------------------------------------------------------------------

# what a terminal must not be sent raw from a source line: control characters (an escape sequence
# could repaint the screen) and lone surrogates (not encodable, so printing them would raise)
_UNSHOWABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _showable(line: str) -> str:
    """A source line as printed under a diagnostic: one character for one, so the caret stays aligned."""
    return _UNSHOWABLE.sub("\ufffd", line.replace("\t", " "))


def _encodable(text: str) -> str:
    """`text` with any lone surrogate (a message may quote the source) written as its `\\udXXX` escape, so
    that printing it or encoding it as UTF-8 never raises; in JSON that escape is the standard one."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


@lru_cache(maxsize=4)
def _lines_of(source: str) -> tuple[str, ...]:
    return tuple(source_lines(source))  # once per source, not once per diagnostic


def render_concise(d: Diagnostic) -> str:
    return _encodable(f"{d.path}:{d.span.line}:{d.span.col}: {d.severity.value}[{d.code}]: {d.message}")


def render_full(d: Diagnostic, source: str, color: bool = False) -> str:
    """`path:line:col: error[CODE]: message`, the source line with a caret under the spot, help."""

    def paint(text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if color else text

    sev_color = "1;31" if d.is_error else "1;33"
    head = f"{d.path}:{d.span.line}:{d.span.col}: {paint(f'{d.severity.value}[{d.code}]', sev_color)}: {d.message}"
    out = [head]
    lines = _lines_of(source)
    if 1 <= d.span.line <= len(lines):
        text = lines[d.span.line - 1]
        gutter = str(d.span.line)
        pad = " " * len(gutter)
        width = d.span.end_col - d.span.col if d.span.end_line == d.span.line else len(text) - d.span.col + 1
        width = max(1, width)
        col = d.span.col
        if len(text) > MAX_SHOWN:  # show a window around the spot, not a whole generated line
            start = max(0, min(col - 1 - MAX_SHOWN // 3, len(text) - MAX_SHOWN))
            tail = "…" if start + MAX_SHOWN < len(text) else ""
            text = ("…" if start else "") + text[start:start + MAX_SHOWN] + tail
            col = col - start + (1 if start else 0)
            width = min(width, len(text) - col + 1)
        text = _showable(text)
        caret = " " * (col - 1) + paint("^" * max(1, width), sev_color)
        out.append(f"{pad} |")
        out.append(f"{gutter} | {text}")
        out.append(f"{pad} | {caret}" + (f" {d.label}" if d.label else ""))
    if d.note:
        out.append(f"note: {d.note}")
    if d.help:
        out.append(f"help: {d.help}")
    return _encodable("\n".join(out))


def to_json(d: Diagnostic) -> dict:
    data = asdict(d)
    data["severity"] = d.severity.value
    data["span"] = asdict(d.span)
    return data


def render_json(diags: list[Diagnostic]) -> str:
    return _encodable(json.dumps([to_json(d) for d in diags], indent=2, ensure_ascii=False))
