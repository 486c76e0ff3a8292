"""Completion: what may be typed at the cursor (`context_at`), and the items for it (`completion`)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from lsprotocol import types as lsp

from ...compiler import catalogue as cat
from ...compiler.catalogue import Kind, Param
from ...compiler.expressions import AUDIO_VARIABLES, FUNCTIONS, VARIABLES, environment
from ...compiler.schedules import CURVES
from ...dsl.parser import split_statements
from .describe import CURVE_DOCS, function_markdown, param_markdown, show
from .features import NAME, Analysis
from .positions import LineIndex

BOOLS = ("on", "off")

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
    m = NAME.match(text, start)
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
    if words[0][0] != "word" or not NAME.fullmatch(words[0][1]):
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
        parts.append(f"default {show(p.default)}")
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
    items = _Items(rng, whole, snippets)
    if ctx.kind == "statement":
        _statement_items(items, ctx)
    elif ctx.kind in ("expression", "schedule_value"):
        _expression_items(items, ctx, an.settings if an is not None else None)
    else:
        _word_items(items, ctx)
    return items.items


class _Items:
    """The completion items being gathered; each edit replaces `rng` (or `whole`, where the client can)."""

    def __init__(self, rng: lsp.Range, whole: lsp.Range | None, snippets: bool) -> None:
        self.rng, self.whole, self.snippets = rng, whole, snippets
        self.items: list[lsp.CompletionItem] = []

    def add(self, label: str, kind: lsp.CompletionItemKind, detail: str | None = None, doc: str | None = None,
            insert: str | None = None, snippet: str | None = None, sort: str = "1",
            filter_text: str | None = None) -> None:
        use_snippet = snippet is not None and self.snippets
        new = snippet if use_snippet else (insert or label)
        self.items.append(lsp.CompletionItem(
            label, kind=kind, detail=detail, sort_text=f"{sort}{label}", filter_text=filter_text,
            documentation=lsp.MarkupContent(lsp.MarkupKind.Markdown, doc) if doc else None,
            insert_text_format=lsp.InsertTextFormat.Snippet if use_snippet else lsp.InsertTextFormat.PlainText,
            text_edit=lsp.InsertReplaceEdit(new, self.rng, self.whole) if self.whole else lsp.TextEdit(self.rng, new)))


def _statement_items(items: _Items, ctx: Context) -> None:
    """At the start of a statement: the version line, every parameter not set yet (and its aliases), snippets."""
    add = items.add
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
    if items.snippets:
        add("prompt …", lsp.CompletionItemKind.Snippet, "a prompt from a frame on",
            'prompt 4s "a castle in the clouds"', snippet='prompt ${1:0} "${2:a lighthouse on a cliff at dawn}"',
            sort="2", filter_text="prompt")
        add("prompt … weight … and …", lsp.CompletionItemKind.Snippet, "a composable prompt: weighted sub-prompts",
            'prompt 0 "apple" weight cos(t) and "snow"',
            snippet='prompt ${1:0} "${2:apple}" weight ${3:cos(t)} and "${4:snow}"', sort="2", filter_text="prompt")
        add("keyframes …", lsp.CompletionItemKind.Snippet, "a schedule as a keyframe list",
            "zoom 0:(1), 4s:(1.02) ease_in_out", snippet="${1:zoom} 0:(${2:1}), ${3:4s}:(${4:1.02})",
            sort="2", filter_text="keyframes")


def _expression_items(items: _Items, ctx: Context, settings) -> None:
    """In a value: the functions, the variables (with their value in this scene) and a keyframe snippet."""
    add = items.add
    env = environment(settings["frames"], settings["fps"], settings["bpm"], settings["seed"]) if settings else {}
    for name, (*_, doc) in FUNCTIONS.items():
        add(name, lsp.CompletionItemKind.Function, doc, function_markdown(name), snippet=f"{name}($1)")
    for name, meaning in VARIABLES.items():
        value = env.get(name)
        shown = f"\n\nIn this scene: `{show(value)}`" if value is not None and not math.isnan(value) else ""
        kind = lsp.CompletionItemKind.Constant if name in ("pi", "e") else lsp.CompletionItemKind.Variable
        add(name, kind, meaning, f"**{name}** — {meaning}{shown}", sort="0")
    if settings is not None and settings.get("audio"):  # the track's features, in a scene with `audio`
        for name, meaning in AUDIO_VARIABLES.items():
            add(name, lsp.CompletionItemKind.Variable, meaning, f"**{name}** — {meaning}", sort="0")
    if ctx.kind == "schedule_value" and ctx.param is not None and items.snippets:
        v = show(ctx.param.default)
        add("keyframes …", lsp.CompletionItemKind.Snippet, "a keyframe list", f"0:({v}), 4s:({v})",
            snippet=f"0:(${{1:{v}}}), ${{2:4s}}:(${{3:{v}}})", sort="2", filter_text="keyframes")


def _word_items(items: _Items, ctx: Context) -> None:
    """After a key, a setting or `seed N`/`model M`: the curves, the choices, the seed behaviours, sha256."""
    add = items.add
    if ctx.kind == "curve":
        for c in CURVES:
            add(c, lsp.CompletionItemKind.Keyword, CURVE_DOCS.get(c, "curve"), sort="0")
    elif ctx.kind == "choice" and ctx.param is not None:
        p = ctx.param
        for c in p.choices or BOOLS:
            is_default = c == show(p.default)
            add(c, lsp.CompletionItemKind.EnumMember, f"{p.name}{' (default)' if is_default else ''}",
                sort="0" if is_default else "1")
    elif ctx.kind == "seed_behaviour":
        behaviours = cat.BY_NAME["seed_behavior"]
        for b in cat.SEED_BEHAVIOURS:
            add(b, lsp.CompletionItemKind.EnumMember, "seed behaviour", behaviours.doc)
    elif ctx.kind == "model_option":
        add("sha256", lsp.CompletionItemKind.Keyword, "pin the model file's hash", insert='sha256 ""',
            snippet='sha256 "$1"')
