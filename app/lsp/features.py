"""What the language server answers, as plain functions of a document's text and its compile result.

Nothing here talks to a client: `server.py` receives the requests, calls these and sends the results.
Everything is derived from the compiler's own tables (the parameter catalogue, the expression
functions and variables, the curves), so a new catalogue row completes, hovers and checks in an
editor the moment it exists. Like `dfm check`, none of it imports torch.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lsprotocol import types as lsp

from ...compiler import catalogue as cat
from ...compiler.catalogue import Kind, Param
from ...compiler.compile import CompileResult, compile_source
from ...compiler.expressions import AUDIO_VARIABLES, FUNCTIONS, VARIABLES, environment, is_plain_number
from ...compiler.schedules import CURVES
from ...compiler.units import frames_of
from ...dsl import ir
from ...dsl.diagnostics import Diagnostic, Severity
from ...dsl.formatter import format_source
from ...dsl.parser import split_statements
from .positions import LineIndex

log = logging.getLogger(__name__)

SOURCE = "dfm"
CURVE_DOCS = {
    "linear": "a straight line to the next key (the default)",
    "step": "hold this value until the next key",
    "ease_in": "start slowly, arrive fast (cubic)",
    "ease_out": "start fast, arrive slowly (cubic)",
    "ease_in_out": "start and arrive slowly (cubic)",
    "cubic": "a smooth Catmull-Rom curve through the neighbouring keys",
}
BOOLS = ("on", "off")
# warnings about text that has no effect: editors grey it out
UNNECESSARY = {"DFM303", "DFM304", "DFM306"}


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


ALL_VARIABLES = {**VARIABLES, **AUDIO_VARIABLES}  # what hover explains


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
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
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
    if m and _NAME.fullmatch(old) and _NAME.fullmatch(m.group(1)) and old != m.group(1):
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


def _show(v: object) -> str:
    if v is None:
        return "not set"
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, tuple) and len(v) == 2:
        return f"{v[0]}x{v[1]}"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def param_markdown(p: Param, written: str | None = None) -> str:
    """A parameter's documentation from its catalogue row."""
    kind = {Kind.SCHEDULE: "schedule (a value per frame)", Kind.SETTING: "setting", Kind.PROMPT: "prompt"}[p.kind]
    if written and written != p.name:
        head = f"`{written}` is an alias of **{p.name}** — {kind}"
    else:
        head = f"**{p.name}** — {kind}"
    facts = []
    if p.unit:
        facts.append(f"unit: {p.unit}")
    if p.default is not None and p.default != "":
        facts.append(f"default: `{_show(p.default)}`")
    if p.range_text():
        facts.append(f"range: {p.range_text()}")
    if p.choices:
        facts.append("choices: " + ", ".join(f"`{c}`" for c in p.choices))
    if p.modes != cat.ALL:
        facts.append("modes: " + ", ".join(m for m in cat.MODES if m in p.modes))
    if p.aliases:
        facts.append("aliases: " + ", ".join(f"`{a}`" for a in p.aliases))
    if p.deforum:
        facts.append(f"Deforum: `{p.deforum}`")
    if p.parseq:
        facts.append(f"Parseq: `{p.parseq}`")
    return "\n".join([head, "", p.doc, "", *(f"- {f}" for f in facts)]).rstrip()


def _in_scene(p: Param, an: Analysis) -> str | None:
    result = an.result
    if result is None:
        return None
    if p.kind is Kind.SCHEDULE and result.values and p.name in result.values:
        v = result.values[p.name]
        if not len(v):
            return None
        if float(v.min()) == float(v.max()):
            return f"In this scene: `{_show(float(v[0]))}` on every frame"
        return (f"In this scene: `{_show(float(v[0]))}` at frame 0, `{_show(float(v[-1]))}` at frame {len(v) - 1}; "
                f"min `{_show(float(v.min()))}`, max `{_show(float(v.max()))}`")
    if p.kind is Kind.SETTING and result.settings is not None and p.name in result.settings:
        return f"In this scene: `{_show(result.settings[p.name])}`"
    return None


def _time_facts(frame: int, settings) -> str:
    secs = frame / settings["fps"]
    parts = [f"frame {frame}", f"{secs:.4g} s"]
    if settings["bpm"]:
        parts.append(f"{secs * settings['bpm'] / 60:.4g} beats")
    return " · ".join(parts)


def _frame_of(t: ir.Time, settings) -> int | None:
    if settings is None or (t.unit == "b" and not settings["bpm"]):
        return None
    if t.unit == "f" and not float(t.value).is_integer():
        return None
    try:
        return frames_of(t.value, t.unit, settings["fps"], settings["bpm"])
    except ValueError:
        return None


def _key_markdown(p: Param, key: ir.Key, an: Analysis) -> str | None:
    settings = an.settings
    frame = _frame_of(key.at, settings)
    if frame is None:
        return None
    lines = [f"**{p.name}** key `{key.at.text}`: {_time_facts(frame, settings)}", ""]
    values = an.result.values if an.result is not None else None
    if values and p.name in values and frame < len(values[p.name]):
        lines.append(f"value at frame {frame}: `{_show(float(values[p.name][frame]))}`")
    elif frame >= settings["frames"]:
        lines.append(f"past the last frame ({settings['frames'] - 1}): this key is ignored")
    if is_plain_number(key.value):
        curve = key.curve or "linear"
        lines.append(f"a number key: `{curve}` to the next key ({CURVE_DOCS.get(curve, 'a curve')})")
    else:
        lines.append("an expression key: evaluated on every frame until the next key")
    return "\n\n".join(x for x in lines if x)


def _variable_markdown(name: str, an: Analysis) -> str:
    text = f"**{name}** — {ALL_VARIABLES[name]}"
    s = an.settings
    if s is not None and name != "t":
        env = environment(s["frames"], s["fps"], s["bpm"], s["seed"])
        if name in env and not math.isnan(env[name]):
            text += f"\n\nIn this scene: `{_show(env[name])}`"
    return text


def _function_markdown(name: str) -> str:
    fn = FUNCTIONS[name]
    doc = fn[3]
    args = ", ".join("xyz"[:fn[2]]) if fn[2] <= 3 else "…"
    signature = doc.split(":", 1)[0] if doc.startswith(f"{name}(") else f"{name}({args})"
    return f"**{signature}** — {doc.split(': ', 1)[1] if doc.startswith(f'{name}(') else doc}"


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
            return _hover(_function_markdown(node.func), index, node.name_span)
        if isinstance(node, ir.Variable) and node.name in ALL_VARIABLES and p is not None:
            return _hover(_variable_markdown(node.name, an), index, node.span)
        if isinstance(node, ir.Key) and p is not None:
            text = _key_markdown(p, node, an)
            return _hover(text, index, node.span) if text else None
        if isinstance(node, (ir.Time, ir.Number)) and p is not None and p.kind is Kind.PROMPT and st.args \
                and node is st.args[0]:
            t = node if isinstance(node, ir.Time) else ir.Time(node.value, "f", node.text, node.span)
            frame = _frame_of(t, an.settings)
            if frame is not None:
                return _hover(f"**{p.name}** from `{t.text}`: {_time_facts(frame, an.settings)}", index, node.span)
    return None


def _hover(markdown: str, index: LineIndex, span: ir.Span) -> lsp.Hover:
    return lsp.Hover(lsp.MarkupContent(lsp.MarkupKind.Markdown, markdown), index.span_range(span))


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
            frame = _frame_of(t, settings)
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
            frame = _frame_of(t, settings) if t is not None else 0
            when = f"{t.text} (frame {frame})" if t is not None and t.unit != "f" and frame is not None else \
                f"frame {frame if frame is not None else t.text}"
            out.append(lsp.DocumentSymbol(_shorten(text) or '""', lsp.SymbolKind.String, rng, sel,
                                          detail=f"{p.name} at {when}"))
        elif p.kind is Kind.SCHEDULE:
            first = st.args[0]
            children = []
            if isinstance(first, ir.KeyList):
                for k in first.keys:
                    frame = _frame_of(k.at, settings)
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


# ---- completion --------------------------------------------------------------------------------

_TOKENS = re.compile(r'''
    (?P<space>[ \t\f\r\n]+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"""(?:[^"\\]|\\[\s\S]|"(?!""))*"""|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<open>"""[\s\S]*\Z|["'][^\n]*\Z)
  | (?P<word>[A-Za-z0-9_.]+)
  | (?P<punct>\*\*|[\s\S])
''', re.X)
_WORD_BEFORE = re.compile(r"[A-Za-z0-9_]*\Z")
_WORD_AFTER = re.compile(r"[A-Za-z0-9_]*")
_OPERATORS = {"+", "-", "*", "/", "%", "**", "&", "|", "<", ">", "=", "!", "~"}


def _set_name(text: str, start: int) -> str | None:
    """What the statement at `start` sets, for the names completion no longer offers: a setting or a
    schedule (each may appear once; prompts any number of times) or the version line."""
    m = _NAME.match(text, start)
    if m is None:
        return None
    if m.group() == cat.VERSION_STATEMENT:
        return m.group()
    p = cat.lookup(m.group())
    return p.name if p is not None and p.kind is not Kind.PROMPT else None


@dataclass(frozen=True)
class Context:
    """What may be typed at the cursor: `kind` is one of statement, expression, schedule_value,
    curve, choice, seed_behaviour, model_option, or none."""

    kind: str
    prefix: str  # the word being typed, which the completion replaces
    param: Param | None = None
    existing: frozenset[str] = frozenset()  # parameters the other statements already set


def context_at(text: str, offset: int) -> Context:
    line_start = max(text.rfind("\n", 0, offset), text.rfind("\r", 0, offset)) + 1
    prefix = _WORD_BEFORE.search(text, line_start, offset).group()
    ranges, comments = split_statements(text.replace("\r\n", " \n").replace("\r", "\n"))
    if any(s < offset <= e for s, e, _ in comments):
        return Context("none", prefix)
    here = next((r for r in ranges if r[0] <= offset - len(prefix) < r[1] or r[0] < offset <= r[1]), None)
    existing = frozenset(_set_name(text, s) for s, e in ranges if (s, e) != here) - {None}
    start = here[0] if here else offset - len(prefix)
    tokens = [(m.lastgroup, m.group()) for m in _TOKENS.finditer(text, start, offset - len(prefix))]
    if any(kind in ("open", "comment") for kind, _ in tokens[-1:]):
        return Context("none", prefix)
    words = [(kind, t) for kind, t in tokens if kind not in ("space", "comment")]
    if not words:  # a statement starts at column 0; an indented line continues the one above
        at_start = offset - len(prefix) == line_start and (not prefix or not prefix[0].isdigit())
        return Context("statement" if at_start else "none", prefix, existing=existing)
    if words[0][0] != "word" or not _NAME.fullmatch(words[0][1]):
        return Context("none", prefix)
    p = cat.lookup(words[0][1])
    if p is None:
        return Context("none", prefix)
    depth, rest = 0, []
    for _, t in words[1:]:
        if t == "(":
            depth += 1
        elif t == ")":
            depth = max(0, depth - 1)
            if depth == 0:
                rest.append(t)
        elif depth == 0:
            rest.append(t)
    if p.kind is Kind.SCHEDULE:
        if depth > 0:
            return Context("expression", prefix, p)
        if not rest:
            return Context("schedule_value", prefix, p)
        if ":" in rest:
            return Context("curve" if rest[-1] == ")" else "none", prefix, p)
        return Context("expression" if rest[-1] in _OPERATORS else "none", prefix, p)
    if p.kind is Kind.SETTING and depth == 0:
        if len(rest) == 0 and (p.choices or p.type == "bool"):
            return Context("choice", prefix, p)
        if p.name == "seed" and len(rest) == 1:
            return Context("seed_behaviour", prefix, p)
        if p.name == "model" and len(rest) == 1:
            return Context("model_option", prefix, p)
    return Context("none", prefix, p)


def _param_kind(p: Param) -> lsp.CompletionItemKind:
    return {Kind.SCHEDULE: lsp.CompletionItemKind.Function, Kind.SETTING: lsp.CompletionItemKind.Property,
            Kind.PROMPT: lsp.CompletionItemKind.Text}[p.kind]


def _param_detail(p: Param) -> str:
    parts = [p.kind.value]
    if p.unit:
        parts.append(p.unit)
    if p.default is not None and p.default != "":
        parts.append(f"default {_show(p.default)}")
    return " · ".join(parts)


def completion(an: Analysis | None, text: str, index: LineIndex, position: lsp.Position, *,
               snippets: bool = True, trigger: str | None = None,
               insert_replace: bool = False) -> list[lsp.CompletionItem]:
    """The items for the cursor's context. Each replaces the word typed so far; with `insert_replace`
    (a client that supports it), the editor may also replace the rest of the word after the cursor."""
    offset = index.offset(position)
    ctx = context_at(text, offset)
    if trigger == " " and ctx.kind in ("statement", "expression", "none"):
        return []  # a space inside arithmetic or a prompt is not a request for a list
    rng = index.range(offset - len(ctx.prefix), offset)
    rest = _WORD_AFTER.match(text, offset).group()
    whole = index.range(offset - len(ctx.prefix), offset + len(rest)) if insert_replace and rest else None
    items: list[lsp.CompletionItem] = []

    def add(label: str, kind: lsp.CompletionItemKind, detail: str | None = None, doc: str | None = None,
            insert: str | None = None, snippet: str | None = None, sort: str = "1", filter_text: str | None = None):
        use_snippet = snippet is not None and snippets
        new = snippet if use_snippet else (insert or label)
        items.append(lsp.CompletionItem(
            label, kind=kind, detail=detail, sort_text=f"{sort}{label}", filter_text=filter_text,
            documentation=lsp.MarkupContent(lsp.MarkupKind.Markdown, doc) if doc else None,
            insert_text_format=lsp.InsertTextFormat.Snippet if use_snippet else lsp.InsertTextFormat.PlainText,
            text_edit=lsp.InsertReplaceEdit(new, rng, whole) if whole else lsp.TextEdit(rng, new)))

    if ctx.kind == "statement":
        if cat.VERSION_STATEMENT not in ctx.existing:
            add("dfm", lsp.CompletionItemKind.Keyword, "the version line", "`dfm 1`: the language version; first line "
                "of every scene", insert=f"dfm {cat.FORMAT_VERSION}", sort="0")
        for p in cat.PARAMS:
            if p.name in ctx.existing:
                continue
            doc = param_markdown(p)
            add(p.name, _param_kind(p), _param_detail(p), doc, sort="1")
            for a in p.aliases:
                add(a, _param_kind(p), f"alias of {p.name}", doc, insert=p.name, sort="3", filter_text=a)
        if snippets:
            add("prompt …", lsp.CompletionItemKind.Snippet, "a prompt from a frame on",
                'prompt 4s "a castle in the clouds"', snippet='prompt ${1:0} "${2:a lighthouse on a cliff at dawn}"',
                sort="2", filter_text="prompt")
            add("prompt … weight … and …", lsp.CompletionItemKind.Snippet, "a composable prompt: weighted sub-prompts",
                'prompt 0 "apple" weight cos(t) and "snow"',
                snippet='prompt ${1:0} "${2:apple}" weight ${3:cos(t)} and "${4:snow}"', sort="2", filter_text="prompt")
            add("keyframes …", lsp.CompletionItemKind.Snippet, "a schedule as a keyframe list",
                "zoom 0:(1), 4s:(1.02) ease_in_out", snippet="${1:zoom} 0:(${2:1}), ${3:4s}:(${4:1.02})",
                sort="2", filter_text="keyframes")
    elif ctx.kind in ("expression", "schedule_value"):
        settings = an.settings if an is not None else None
        env = environment(settings["frames"], settings["fps"], settings["bpm"], settings["seed"]) if settings else {}
        for name, (*_, doc) in FUNCTIONS.items():
            add(name, lsp.CompletionItemKind.Function, doc, _function_markdown(name), snippet=f"{name}($1)")
        for name, meaning in VARIABLES.items():
            value = env.get(name)
            shown = f"\n\nIn this scene: `{_show(value)}`" if value is not None and not math.isnan(value) else ""
            kind = lsp.CompletionItemKind.Constant if name in ("pi", "e") else lsp.CompletionItemKind.Variable
            add(name, kind, meaning, f"**{name}** — {meaning}{shown}", sort="0")
        if settings is not None and settings.get("audio"):  # the track's features, in a scene with `audio`
            for name, meaning in AUDIO_VARIABLES.items():
                add(name, lsp.CompletionItemKind.Variable, meaning, f"**{name}** — {meaning}", sort="0")
        if ctx.kind == "schedule_value" and ctx.param is not None and snippets:
            v = _show(ctx.param.default)
            add("keyframes …", lsp.CompletionItemKind.Snippet, "a keyframe list", f"0:({v}), 4s:({v})",
                snippet=f"0:(${{1:{v}}}), ${{2:4s}}:(${{3:{v}}})", sort="2", filter_text="keyframes")
    elif ctx.kind == "curve":
        for c in CURVES:
            add(c, lsp.CompletionItemKind.Keyword, CURVE_DOCS.get(c, "curve"), sort="0")
    elif ctx.kind == "choice" and ctx.param is not None:
        p = ctx.param
        for c in p.choices or BOOLS:
            is_default = c == _show(p.default)
            add(c, lsp.CompletionItemKind.EnumMember, f"{p.name}{' (default)' if is_default else ''}",
                sort="0" if is_default else "1")
    elif ctx.kind == "seed_behaviour":
        behaviours = cat.BY_NAME["seed_behavior"]
        for b in cat.SEED_BEHAVIOURS:
            add(b, lsp.CompletionItemKind.EnumMember, "seed behaviour", behaviours.doc)
    elif ctx.kind == "model_option":
        add("sha256", lsp.CompletionItemKind.Keyword, "pin the model file's hash", insert='sha256 ""',
            snippet='sha256 "$1"')
    return items
