"""The language server's analysis of a document, and the answers that come straight from its diagnostics.

Nothing here talks to a client: `server.py` receives the requests, calls these and sends the results.
`analyse` compiles a document once per version; `diagnostics`, `code_actions` and `formatting` answer from
it here, while hover, inlay hints, the outline and completion have their own modules (`hover.py`,
`outline.py`, `completion.py`; `describe.py` holds the text they share). Everything is derived from the
compiler's own tables, so a new catalogue row checks in an editor the moment it exists. Like `dfm check`,
none of it imports torch.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from lsprotocol import types as lsp

from ...compiler import catalogue as cat
from ...compiler.compile import CompileResult, compile_source
from ...compiler.expressions import FUNCTIONS
from ...dsl import ir
from ...dsl.diagnostics import Diagnostic, Severity
from ...dsl.formatter import format_source
from .positions import LineIndex

log = logging.getLogger(__name__)

SOURCE = "dfm"
# warnings about text that has no effect: editors grey it out
UNNECESSARY = {"DFM303", "DFM304", "DFM306"}
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # a parameter, function or variable name


# ---- analysis: one compile per document version ------------------------------------------------


@dataclass(frozen=True)
class Analysis:
    """A document's text, as of `revision`, and what the compiler made of it."""

    text: str
    revision: int
    result: CompileResult | None  # None only after an internal error (`crash`)
    crash: str | None = None

    @property
    def diagnostics(self) -> list[Diagnostic]:
        return self.result.diagnostics if self.result is not None else []

    @property
    def settings(self):
        return self.result.settings if self.result is not None else None


_SEVERITY = {Severity.ERROR: lsp.DiagnosticSeverity.Error, Severity.WARNING: lsp.DiagnosticSeverity.Warning,
             Severity.NOTE: lsp.DiagnosticSeverity.Information}  # a note (a detected tempo) is no problem


def analyse(text: str, path: str = "<string>", base_dir: str | Path | None = None, revision: int = 0) -> Analysis:
    """Compile without building the FrameTable: the diagnostics are exactly `dfm.api.check_text`'s
    (which is this same call), and the settings, resolved keys and per-frame values come with them."""
    try:
        result = compile_source(text, path, base_dir=base_dir, build_table=False)
    except Exception as exc:  # a bug in dfm: reported in the editor, never a dead server
        log.exception("internal error while checking %s", path)
        return Analysis(text, revision, None, f"{type(exc).__name__}: {exc}")
    return Analysis(text, revision, result)


def warm_up() -> None:
    """Import the compiler and build the parser before the first document arrives."""
    analyse('dfm 1\nprompt "x"\nzoom 0:(1)\n')


# ---- diagnostics -------------------------------------------------------------------------------

_LINE_MENTION = re.compile(r"\bline (\d+)\b")


def diagnostics(an: Analysis, index: LineIndex, uri: str) -> list[lsp.Diagnostic]:
    if an.crash is not None:
        return [lsp.Diagnostic(lsp.Range(lsp.Position(0, 0), lsp.Position(0, 0)),
                               f"dfm internal error while checking this scene: {an.crash}\nThis is a bug in dfm; "
                               "please report it with the scene.", severity=lsp.DiagnosticSeverity.Error,
                               source=SOURCE)]
    return [to_lsp_diagnostic(d, index, uri) for d in an.diagnostics]


def to_lsp_diagnostic(d: Diagnostic, index: LineIndex, uri: str) -> lsp.Diagnostic:
    """One dfm diagnostic: its span as an LSP range, its code and severity, the label, note and help
    lines in the message (what `dfm check` prints under the caret), and, where the note names another
    line ("first set on line 3"), that line as related information. dfm diagnostics carry one span, so
    the line number in the note is the only second location there is."""
    message = d.message
    for extra in (d.label, f"note: {d.note}" if d.note else None, f"help: {d.help}" if d.help else None):
        if extra:
            message += "\n" + extra
    related = None
    m = _LINE_MENTION.search(d.note or "")
    if m and 1 <= int(m.group(1)) <= index.line_count:
        line = int(m.group(1)) - 1
        text = index.line_text(line)
        start = index.starts[line] + len(text) - len(text.lstrip())
        related = [lsp.DiagnosticRelatedInformation(
            location=lsp.Location(uri, index.range(start, index.line_end(line))), message=d.note)]
    return lsp.Diagnostic(
        range=index.span_range(d.span), message=message, code=d.code, source=SOURCE,
        severity=_SEVERITY[d.severity],
        related_information=related,
        tags=[lsp.DiagnosticTag.Unnecessary] if d.code in UNNECESSARY and not d.is_error else None)


# ---- code actions ------------------------------------------------------------------------------

_DID_YOU_MEAN = re.compile(r"did you mean `([^`]+)`\?")
_VERSION_HELP = re.compile(r"start the file with `([^`]+)`")


@dataclass(frozen=True)
class Fix:
    title: str
    start: int  # character offsets into the text
    end: int
    new_text: str
    preferred: bool  # certain (a decimal comma) rather than a guess (a spelling suggestion)


def fix_for(d: Diagnostic, text: str) -> Fix | None:
    """The edit that a diagnostic's help line describes, where it is mechanical."""
    s, e = d.span.start, min(d.span.end, len(text))
    old = text[s:e]
    if d.code == "DFM011" and re.fullmatch(r"[0-9]*,[0-9]+", old):
        new = old.replace(",", ".")
        return Fix(f"Write `{new}` (a decimal point)", s, e, new, True)
    if d.code == "DFM013" and old == "^":
        return Fix("Write `**` (power)", s, e, "**", True)
    if d.code == "DFM014" and old and "\n" not in old and not old.startswith("("):
        return Fix(f"Put the value in parentheses: `({old})`", s, e, f"({old})", True)
    if d.code == "DFM012":
        before = text[:s].rstrip()
        if before.endswith(")"):
            at = len(before)
            return Fix("Add the missing comma", at, at, ",", True)
        return None
    if d.code == "DFM020" and d.help and (m := _VERSION_HELP.search(d.help)):
        at = 1 if text.startswith(ir.BOM) else 0
        return Fix(f"Add `{m.group(1)}` as the first line", at, at, m.group(1) + "\n", True)
    m = _DID_YOU_MEAN.search(d.help or "")
    if m and NAME.fullmatch(old) and NAME.fullmatch(m.group(1)) and old != m.group(1):
        new = m.group(1)
        if d.code == "DFM202" and new in FUNCTIONS:  # a variable "corrected" to a function name is no fix
            return None
        return Fix(f"Replace `{old}` with `{new}`", s, e, new, False)
    return None


def code_actions(an: Analysis, index: LineIndex, uri: str, wanted: lsp.Range,
                 only: list[str] | None = None) -> list[lsp.CodeAction]:
    """Quick fixes for the diagnostics that touch `wanted`, and one `source.fixAll` for every certain fix."""
    def allowed(kind: str) -> bool:
        return not only or any(kind == k or kind.startswith(k + ".") for k in only)

    out: list[lsp.CodeAction] = []
    lo, hi = index.offset(wanted.start), index.offset(wanted.end)
    certain: list[tuple[Fix, lsp.Diagnostic]] = []
    for d in an.diagnostics:
        fix = fix_for(d, an.text)
        if fix is None:
            continue
        diag = to_lsp_diagnostic(d, index, uri)
        if fix.preferred:
            certain.append((fix, diag))
        touches = d.span.start <= hi and lo <= max(d.span.end, d.span.start)
        if touches and allowed(lsp.CodeActionKind.QuickFix):
            out.append(lsp.CodeAction(fix.title, kind=lsp.CodeActionKind.QuickFix, diagnostics=[diag],
                                      is_preferred=fix.preferred, edit=_edit(uri, index, [fix])))
    if certain and allowed(lsp.CodeActionKind.SourceFixAll):
        fixes, taken = [], -1
        for fix, _ in sorted(certain, key=lambda fd: fd[0].start):
            if fix.start > taken or fix.start == fix.end == taken:  # never two edits over one place
                fixes.append(fix)
                taken = fix.end
        out.append(lsp.CodeAction(f"Fix all ({len(fixes)}) mechanical problems", kind=lsp.CodeActionKind.SourceFixAll,
                                  diagnostics=[d for _, d in certain], edit=_edit(uri, index, fixes)))
    return out


def _edit(uri: str, index: LineIndex, fixes: list[Fix]) -> lsp.WorkspaceEdit:
    return lsp.WorkspaceEdit(changes={uri: [lsp.TextEdit(index.range(f.start, f.end), f.new_text) for f in fixes]})


# ---- formatting --------------------------------------------------------------------------------


def formatting(text: str, index: LineIndex, path: str = "<string>") -> list[lsp.TextEdit] | None:
    """`dfm fmt` of the document as one edit over the lines that change; None when it has syntax
    errors (the formatter never drops text it cannot read; the diagnostics say what is wrong). The
    document keeps its line breaks (\\r\\n stays \\r\\n) and its byte-order mark."""
    try:
        new = format_source(text, cat.ALIASES, path)
    except ValueError:
        return None
    m = re.search(r"\r\n|\r|\n", text)
    if m and m.group() != "\n":
        new = new.replace("\n", m.group())
    if text.startswith(ir.BOM):
        new = ir.BOM + new
    if new == text:
        return []
    old_lines, new_lines = text.splitlines(True), new.splitlines(True)
    head = 0
    while head < min(len(old_lines), len(new_lines)) and old_lines[head] == new_lines[head]:
        head += 1
    tail = 0
    while (tail < min(len(old_lines), len(new_lines)) - head
           and old_lines[-1 - tail] == new_lines[-1 - tail]):
        tail += 1
    start = sum(len(x) for x in old_lines[:head])
    end = len(text) - sum(len(x) for x in old_lines[len(old_lines) - tail:])
    replacement = "".join(new_lines[head:len(new_lines) - tail])
    return [lsp.TextEdit(index.range(start, end), replacement)]


# ---- where the cursor is -----------------------------------------------------------------------
