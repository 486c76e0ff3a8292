"""What the language server says about a parameter, a function, a variable or a time: the Markdown that
hover and completion share, read from the compiler's tables (the catalogue, the expression functions and
variables, the curves)."""

from __future__ import annotations

import math

from ...compiler import catalogue as cat
from ...compiler.catalogue import Kind, Param
from ...compiler.expressions import AUDIO_VARIABLES, FUNCTIONS, VARIABLES, environment
from ...compiler.units import frames_of
from ...dsl import ir
from .features import Analysis

CURVE_DOCS = {
    "linear": "a straight line to the next key (the default)",
    "step": "hold this value until the next key",
    "ease_in": "start slowly, arrive fast (cubic)",
    "ease_out": "start fast, arrive slowly (cubic)",
    "ease_in_out": "start and arrive slowly (cubic)",
    "cubic": "a smooth Catmull-Rom curve through the neighbouring keys",
}
ALL_VARIABLES = {**VARIABLES, **AUDIO_VARIABLES}  # what hover explains


def show(v: object) -> str:
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
        facts.append(f"default: `{show(p.default)}`")
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


def time_facts(frame: int, settings) -> str:
    secs = frame / settings["fps"]
    parts = [f"frame {frame}", f"{secs:.4g} s"]
    if settings["bpm"]:
        parts.append(f"{secs * settings['bpm'] / 60:.4g} beats")
    return " · ".join(parts)


def frame_of(t: ir.Time, settings) -> int | None:
    if settings is None or (t.unit == "b" and not settings["bpm"]):
        return None
    if t.unit == "f" and not float(t.value).is_integer():
        return None
    try:
        return frames_of(t.value, t.unit, settings["fps"], settings["bpm"])
    except ValueError:
        return None


def variable_markdown(name: str, an: Analysis) -> str:
    text = f"**{name}** — {ALL_VARIABLES[name]}"
    s = an.settings
    if s is not None and name != "t":
        env = environment(s["frames"], s["fps"], s["bpm"], s["seed"])
        if name in env and not math.isnan(env[name]):
            text += f"\n\nIn this scene: `{show(env[name])}`"
    return text


def function_markdown(name: str) -> str:
    fn = FUNCTIONS[name]
    doc = fn[3]
    args = ", ".join("xyz"[:fn[2]]) if fn[2] <= 3 else "…"
    signature = doc.split(":", 1)[0] if doc.startswith(f"{name}(") else f"{name}({args})"
    return f"**{signature}** — {doc.split(': ', 1)[1] if doc.startswith(f'{name}(') else doc}"
