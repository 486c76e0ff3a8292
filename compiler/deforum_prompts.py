"""Deforum's prompts, both ways: the settings file's `prompts` (or the notebook's `animation_prompts`) with their
`--neg` parts and common texts, read into `prompt` and `negative` lines and written back from a compiled scene.

Prompts are not one setting but text keyed at frames, so they are not a `deforum_dialect.Converter`; the two
directions still live side by side here, each a few functions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from ..contract.modes import mode as mode_of
from ..dsl import ir
from . import prompt_syntax
from .deforum_names import Impact
from .deforum_schedules import frame_of
from .expressions import environment
from .lower import forward_fill, join_negatives, split_neg
from .scene_writer import number, statement, string


class PromptReader(Protocol):
    """What reading the prompts uses of the importer (`deforum_import._Importer`)."""

    mode: str
    frames: int
    fps: float
    prompt_lines: list[ir.Statement]

    def has(self, key: str) -> bool: ...
    def take(self, key: str) -> object: ...
    def map(self, *keys: str) -> None: ...
    def warn(self, message: str, keys: list[str] = ..., impact: Impact = ...) -> None: ...


# ---- import: the file's prompts as `prompt` and `negative` lines ------------------------------------------


def read_prompts(r: PromptReader) -> None:
    env = environment(r.frames, r.fps, None, 0)
    pos_key = _prompt_source(r)
    positives = _keyed_texts(r, pos_key, env) if pos_key else []
    neg_key = next((k for k in ("neg_prompts", "uncond_prompts") if r.has(k)), None)
    negatives = _keyed_texts(r, neg_key, env) if neg_key else []
    common_pos = _common(r, "animation_prompts_positive", "positive_prompts")
    common_neg = _common(r, "animation_prompts_negative", "negative_prompts").replace("--neg", "").strip()
    split = [(f, *split_neg(t)) for f, t in positives]
    if common_neg and split and all(n.endswith(common_neg) for _, _, n in split):
        r.warn(f"the common negative prompt `{common_neg}` is already in every prompt (a Deforum run file "
               "stores merged prompts): not added again", [], Impact.NOTE)
        common_neg = ""
    if common_pos and split and all(p.startswith(common_pos) for _, p, _ in split):
        common_pos = ""
    for f, pos, inline in split:
        pos = " ".join(x for x in (common_pos, pos) if x)
        r.prompt_lines.append(statement("prompt", number(f), string(pos)))
        if inline or common_neg or neg_key is None:  # a keyframe without --neg has no negative
            negatives.append((f, " ".join(x for x in (inline, common_neg) if x)))
    if not split:
        r.prompt_lines.append(statement("prompt", number(0), string("")))
        r.warn("the file has no prompts: an empty `prompt 0 \"\"` stands in; write yours", [])
    _negative_lines(r, negatives)

def _prompt_source(r: PromptReader) -> str | None:
    present = [k for k in ("prompts", "animation_prompts", "cond_prompts") if r.has(k)]
    if not present:
        return None
    chosen = present[0]
    if "prompts" in present and "animation_prompts" in present:
        chosen = "animation_prompts" if mode_of(r.mode).animated else "prompts"
    for other in present:
        if other != chosen:
            r.warn(f"`{other}` not used: `{chosen}` holds the prompts of mode {r.mode}", [other], Impact.NOTE)
            r.take(other)
    return chosen

def _common(r: PromptReader, *keys: str) -> str:
    text = ""
    for k in keys:
        if r.has(k):
            value = r.take(k)
            r.map(k)
            text = text or str(value or "").strip()
    return text

def _keyed_texts(r: PromptReader, key: str, env: Mapping[str, float]) -> list[tuple[int, str]]:
    raw = r.take(key)
    r.map(key)
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip().startswith("{") else raw
        except json.JSONDecodeError:
            r.warn(f"`{key}` looks like JSON but is not valid: read as one prompt", [key])
    if raw is None:
        return []
    if isinstance(raw, str):
        return [(0, raw)]
    if isinstance(raw, list):
        return [(i, t) for i, t in enumerate(raw) if _is_text(r, key, i, t)]
    if not isinstance(raw, Mapping):
        r.warn(f"`{key}` is neither text nor an object of frame: text; ignored", [key])
        return []
    out: dict[int, str] = {}
    for k, text in raw.items():
        f = frame_of(str(k), env)
        if f is None or f < 0:
            r.warn(f"{key}: key {k!r} is not a frame; that prompt is left out", [key])
        elif f >= r.frames and mode_of(r.mode).animated:
            r.warn(f"{key}: key {k!r} is frame {f}, past the last frame {r.frames - 1}; left out "
                   "(Deforum never shows it either)", [key], Impact.NO_EFFECT)
        elif _is_text(r, key, k, text):
            if f in out:
                r.warn(f"{key}: two prompts at frame {f}; the last one wins (as in Deforum)", [key], Impact.NOTE)
            out[f] = text
    return sorted(out.items())


def _is_text(r: PromptReader, key: str, k: object, text: object) -> bool:
    """Whether a prompt value is text; anything else (`null`, a list, a number) would become the prompt
    "None" or "['x']" through str(), so it is left out, with a warning naming it."""
    if isinstance(text, str):
        return True
    shown = json.dumps(text, default=str)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    r.warn(f"{key}: the prompt at key {k!r} is {shown}, not text; that prompt is left out", [key])
    return False

def _negative_lines(r: PromptReader, negatives: list[tuple[int, str]]) -> None:
    by_frame = dict(sorted(negatives))
    previous = None
    lines = []
    for f, text in by_frame.items():
        if text != previous:
            lines.append((f, text))
        previous = text
    if len(lines) == 1 and lines[0][0] == 0:
        if lines[0][1]:
            r.prompt_lines.append(statement("negative", string(lines[0][1])))
        return
    r.prompt_lines += [statement("negative", number(f), string(t)) for f, t in lines]


# ---- export: the compiled scene's prompts as Deforum's `prompts` ------------------------------------------


def write_prompts(result, mode: str, tagged: Callable[[str], str]) -> dict[str, str]:
    """Deforum's `prompts` for a compiled scene: each frame where the positive or negative prompt changes
    (stills and interpolation: the scene's own keys), `tagged` adding the LoRA tags to each positive."""
    if mode_of(mode).from_noise:
        return _keyed_prompts(result, tagged)
    table = result.table
    pos, neg = table["prompt"], table["negative_prompt"]
    entries = {}
    for i in range(len(pos)):
        if i == 0 or pos[i] != pos[i - 1] or neg[i] != neg[i - 1]:
            entries[str(i)] = join_neg(tagged(str(pos[i])), str(neg[i]))
    return entries


def _keyed_prompts(result, tagged: Callable[[str], str]) -> dict[str, str]:
    """Stills and interpolation rows are not frames: write the scene's own keys."""
    last = max([f for f, _ in result.prompts] + [0]) + 1
    negs = forward_fill(result.negatives, last)
    out = {}
    for f, text in result.prompts:
        p, inline = split_neg(text)
        out[str(f)] = join_neg(tagged(p), join_negatives(str(negs[f]), inline))
    return out


def backtick_losses(texts: Iterable[str]) -> list[str]:
    """Why each backtick expression Deforum cannot evaluate as dfm does fails there (its `prepare_prompt`
    replaces every letter `t` by the frame before numexpr reads the text, and binds only `t` and `max_f`)."""
    seen: set[str] = set()
    losses = []
    for text in texts:
        for _, _, source in prompt_syntax.backticks(text):
            expr = prompt_syntax.backtick_expression(source)
            if expr is None or source in seen:
                continue
            seen.add(source)
            names = ir.variables(expr) | _calls(expr)
            broken = sorted(n for n in names if "t" in n and n != "t")
            missing = sorted(n for n in names - set(broken) if n not in _DEFORUM_PROMPT_NAMES)
            reasons = ([f"Deforum replaces the `t` in {', '.join(f'`{n}`' for n in broken)}"] if broken else []) + \
                ([f"Deforum has no {', '.join(f'`{n}`' for n in missing)} there"] if missing else [])
            if reasons:
                losses.append(f"the backtick expression `{source}` fails in Deforum: {'; '.join(reasons)}")
    return losses


def join_neg(pos: str, neg: str) -> str:
    """A Deforum prompt: the positive, then ` --neg ` and the negative when there is one."""
    return f"{pos} --neg {neg}" if neg else pos


# what a backtick expression may name in Deforum's prepare_prompt: `t` and `max_f` (substituted as text)
# and numexpr's functions
_DEFORUM_PROMPT_NAMES = frozenset({"t", "max_f", "where", "sin", "cos", "tan", "arcsin", "arccos", "arctan",
                                   "arctan2", "sinh", "cosh", "tanh", "arcsinh", "arccosh", "arctanh", "log", "log10",
                                   "log1p", "exp", "expm1", "sqrt", "abs"})


def _calls(node) -> set[str]:
    """The names of the functions an expression calls."""
    if isinstance(node, ir.Call):
        return {node.func}.union(*(_calls(a) for a in node.args))
    if isinstance(node, ir.Unary):
        return _calls(node.operand)
    if isinstance(node, ir.Binary):
        return _calls(node.left) | _calls(node.right)
    return set()


__all__ = ["PromptReader", "backtick_losses", "join_neg", "read_prompts", "write_prompts"]
