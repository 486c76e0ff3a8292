"""Pass 1: the scene's statements, each checked against the parameter catalogue and sorted by kind.

Settings are converted here (setting_values.py, or the statement's own form: `seed`, `model`, `audio`);
schedules are checked here and resolved once the settings are known (schedule_keys.py); prompts and
networks are only collected, since their keys need the frame rate and the frame count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..dsl import ir
from . import catalogue as cat
from . import deforum_names, networks
from .catalogue import Kind, Param
from .context import Setting
from .model_setting import model_setting
from .scene_audio import audio_setting
from .schedule_keys import read_schedule
from .seeds import seed_setting
from .setting_values import convert, example

if TYPE_CHECKING:
    from .context import CompileContext

StatementConverter = Callable[["CompileContext", dict[str, Setting], Param, ir.Statement], object | None]
# settings whose statement has a form of its own, by parameter type and by name
STATEMENT_CONVERTERS: dict[str, StatementConverter] = {"seed": seed_setting, "model": model_setting}
NAMED_CONVERTERS: dict[str, StatementConverter] = {"audio": audio_setting}


@dataclass
class Statements:
    """The scene's statements by kind, as pass 1 leaves them."""

    settings: dict[str, Setting] = field(default_factory=dict)  # name -> its value and statement
    schedules: dict[str, ir.Statement] = field(default_factory=dict)  # name -> its (only) statement
    unevaluable: set[str] = field(default_factory=set)  # schedules whose expressions failed their checks
    prompts: list[tuple[str, ir.Statement]] = field(default_factory=list)  # ("prompt" or "negative", statement)
    networks: list[ir.Statement] = field(default_factory=list)  # `lora` and `embedding`: several each
    mode_specific: list[tuple[Param, ir.Statement]] = field(default_factory=list)  # checked against the mode later


def read_statements(ctx: CompileContext) -> Statements:
    """Check the version line and every statement, in source order."""
    out = Statements()
    check_version(ctx)
    for st in ctx.scene.statements:
        if st.name == cat.VERSION_STATEMENT:
            continue
        if st.name in networks.STATEMENTS:
            out.networks.append(st)
            continue
        param = cat.lookup(st.name)
        composite = next((a for a in st.args if isinstance(a, ir.Composite)), None)
        if param is None:
            unknown_statement(ctx, st)
        elif composite is not None and param.kind is not Kind.PROMPT:  # `"a" weight 2 and "b"` is a prompt's
            ctx.err("DFM103", f"`{param.name}` takes no sub-prompts: `\"…\" weight … and \"…\"` is the form of "
                    "a `prompt`", composite.span, parameter=param.name,
                    help=f"e.g. `{param.name} {example(param)}`")
        elif param.kind is Kind.SETTING:
            read_setting(ctx, out, param, st)
        elif param.kind is Kind.PROMPT:
            out.prompts.append((param.name, st))
        else:
            read_schedule(ctx, out.schedules, out.unevaluable, param, st)
    return out


def check_version(ctx: CompileContext) -> None:
    """The `dfm N` line: present, first, and of the format this dfm reads."""
    v = ctx.scene.version
    if v is None:
        ctx.warn("DFM020", "no version line", ctx.first_span(), help=f"start the file with `dfm {cat.FORMAT_VERSION}`")
        return
    ok = len(v.args) == 1 and isinstance(v.args[0], ir.Number) and v.args[0].value == cat.FORMAT_VERSION
    if not ok:
        ctx.err("DFM020", f"this dfm reads format version {cat.FORMAT_VERSION}", v.span,
                help=f"write `dfm {cat.FORMAT_VERSION}`")
    elif ctx.scene.statements[0] is not v:
        ctx.warn("DFM020", "the version line should come first", v.span, help="move it to the top")


def unknown_statement(ctx: CompileContext, st: ir.Statement) -> None:
    known = deforum_names.explain_key(st.name)  # a Deforum key dfm has no equivalent for
    if known is not None:
        ctx.err("DFM101", f"`{st.name}` is a Deforum key, not a dfm parameter", st.name_span, help=known)
        return
    ctx.err("DFM101", f"unknown parameter `{st.name}`", st.name_span,
            help=_did_you_mean(st.name, scene_mode(ctx.scene)) or "see docs/language.md for every parameter")


# Words a Deforum or video-editor user writes for a turn, and what they mean in each mode: spelling alone
# would offer rotation_3d_z (a 3D parameter) in a 2D scene, where the turn is `angle`
_MEANT_BY_MODE = {word: {"2d": "angle", "3d": "rotation_3d_z"}
                  for word in ("rotation", "rotate", "rotation_z", "rotate_z", "roll", "spin", "turn")}


def _did_you_mean(name: str, mode: str) -> str | None:
    """The help for an unknown name: the parameter it most likely means in the scene's mode, if any."""
    meant = _MEANT_BY_MODE.get(name.lower())
    if meant is not None and mode in meant:
        other = next(m for m in meant if m != mode)
        return (f"did you mean `{meant[mode]}`? In mode {mode} a turn is `{meant[mode]}` "
                f"(`{meant[other]}` in mode {other})")
    if meant is not None:
        return f"mode {mode} has no camera turn: " + ", ".join(f"`{n}` in mode {m}" for m, n in meant.items())
    in_mode = {alias: n for alias, n in cat.ALIASES.items() if mode in cat.BY_NAME[n].modes}
    guess = cat.did_you_mean(name, in_mode)
    if guess is not None:
        return f"did you mean `{in_mode[guess]}`?"
    guess = cat.did_you_mean(name, cat.ALIASES)
    if guess is None:
        return None
    p = cat.BY_NAME[cat.ALIASES[guess]]
    return f"did you mean `{p.name}`? (it is read only in mode {', '.join(sorted(p.modes))}, not in {mode})"


def scene_mode(scene: ir.Scene) -> str:
    """The scene's mode as its `mode` statement says (the default if none or unreadable), read ahead of
    the statements in source order so that a suggestion can fit the mode."""
    p = cat.BY_NAME["mode"]
    for st in scene.statements:
        if cat.lookup(st.name) is p and len(st.args) == 1:
            arg = st.args[0]
            text = arg.text if isinstance(arg, ir.Word) else arg.name if isinstance(arg, ir.Variable) else None
            choice = cat.resolve_choice(p, text) if text is not None else None
            if choice is not None:
                return choice
    return str(p.default)


def read_setting(ctx: CompileContext, out: Statements, p: Param, st: ir.Statement) -> None:
    """A setting's statement converted into `out.settings` (DFM106 when it is set twice: the last wins)."""
    settings = out.settings
    if p.name in settings:
        first = settings[p.name].statement
        ctx.err("DFM106", f"`{p.name}` is set twice", st.span,
                note=f"first set on line {first.span.line}", help="keep one of them", parameter=p.name)
    if p.auto and len(st.args) == 1 and isinstance(st.args[0], ir.Variable) \
            and st.args[0].name == "auto":  # read from the audio track in scene_audio.read_track
        settings[p.name] = Setting("auto", st)
        return
    whole = NAMED_CONVERTERS.get(p.name) or STATEMENT_CONVERTERS.get(p.type)
    if whole is not None:
        value = whole(ctx, settings, p, st)
    else:
        if len(st.args) != 1:
            ctx.err("DFM105", f"`{p.name}` takes one value, got {len(st.args)}", st.span, parameter=p.name,
                    help=f"write `{p.name} {example(p)}`")
            return
        value = convert(ctx, p, st.args[0])
    if value is not None:
        settings[p.name] = Setting(value, st)
    if p.modes != cat.ALL:
        out.mode_specific.append((p, st))
