"""The IR → checked settings, resolved keyframes, per-frame values and the FrameTable.

`compile_scene` is the whole compiler: it checks every statement against the parameter catalogue
(collecting every diagnostic, never stopping at the first), resolves key times with fps/bpm,
evaluates every schedule over all frames, validates each frame's value, and lowers the result to
the FrameTable (`lower.py`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..contract import families, media
from ..dsl import ir
from ..dsl.diagnostics import Diagnostic, error, note, warning
from ..dsl.formatter import format_expr
from ..dsl.parser import parse, parse_statement, unescape
from ..contract.errors import UserError
from ..contract.table import FrameTable, Settings
from . import catalogue as cat
from . import deforum_names, networks, prompt_syntax
from .catalogue import Kind, Param
from .expressions import AUDIO_VARIABLES, check_expr, constant_value, environment, evaluate_frames, is_plain_number
from .lower import CAMERA as ACCUMULATED
from .lower import (
    NEG_MARKER,
    PromptValueError,
    accumulated_camera,
    cadence_plan,
    effective_steps,
    sampler_evaluations,
    source_hash,
)
from .lower import build_table as lower_table
from .schedules import CURVES, ResolvedKey, evaluate_keys
from .units import frames_of

BOOL_WORDS = {"on": True, "off": False, "true": True, "false": False, "yes": True, "no": False}
SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass
class CompileResult:
    diagnostics: list[Diagnostic] = field(default_factory=list)
    settings: Settings | None = None
    schedules: dict[str, list[ResolvedKey]] = field(default_factory=dict)
    prompts: list[tuple[int, str]] = field(default_factory=list)
    negatives: list[tuple[int, str]] = field(default_factory=list)
    values: dict[str, np.ndarray] | None = None
    table: FrameTable | None = None
    scene: ir.Scene | None = None

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]

    @property
    def ok(self) -> bool:
        return not self.errors


def compile_source(text: str, path: str = "<string>", *, base_dir: str | os.PathLike | None = None,
                   build_table: bool = True) -> CompileResult:
    parsed = parse(text, path)
    result = compile_scene(parsed.scene, base_dir=base_dir, build_table=build_table and not parsed.diagnostics)
    syntax = [_deforum_key_instead(d, text) for d in parsed.diagnostics]
    result.diagnostics = sorted(syntax + result.diagnostics, key=Diagnostic.sort_key)
    return result


def _deforum_key_instead(d: Diagnostic, text: str) -> Diagnostic:
    """A syntax error in the statement of a Deforum key dfm has no parameter for (`sampler_schedule
    0:("Euler a")`) says that, not what the grammar expected: fixing the syntax would not help."""
    lines = ir.source_lines(text)
    if d.code != "DFM001" or not 1 <= d.span.line <= len(lines):
        return d
    line = lines[d.span.line - 1]
    name = line.lstrip().split(" ", 1)[0].split("\t", 1)[0]
    known = deforum_names.explain_key(name) if name and cat.lookup(name) is None else None
    if known is None:
        return d
    col = line.index(name)
    at = d.span.start - (d.span.col - 1) + col  # the line's offset, then the name's
    span = ir.Span(d.span.line, col + 1, d.span.line, col + 1 + len(name), at, at + len(name))
    return error("DFM101", f"`{name}` is a Deforum key, not a dfm parameter", span, path=d.path, help=known)


def compile_scene(scene: ir.Scene, base_dir: str | os.PathLike | None = None, *,
                  build_table: bool = True) -> CompileResult:
    if base_dir is None and scene.path not in ("<string>", "<stdin>", "<schedule>"):
        base_dir = Path(scene.path).resolve().parent
    c = _Compiler(scene, Path(base_dir) if base_dir else None)
    c.run(build_table=build_table)
    return c.result


def schedule_values(text: str, frames: int, *, fps: float = 15.0, bpm: float | None = None, seed: int = 42,
                    name: str = "translation_x") -> tuple[np.ndarray | None, list[Diagnostic]]:
    """One schedule written as in a scene (`0:(1), 10:(2)` or `1.02`) evaluated over `frames` frames with
    the compiler's own key resolution and checks, as parameter `name` (translation_x: no range, so only
    real errors are reported). Returns (values or None, diagnostics)."""
    st = parse_statement(f"{name} {text}")
    if st is None:
        return None, parse(f"{name} {text}", "<schedule>").diagnostics
    c = _Compiler(ir.Scene((st,), path="<schedule>"), None)
    settings = {**cat.setting_defaults(), "frames": frames, "fps": fps, "bpm": bpm, "seed": seed}
    c.schedule_statement(cat.BY_NAME[name], st)
    c.env = environment(frames, fps, bpm, seed)
    keys = c.resolve_schedules(settings)
    values = None if c.result.errors else c.evaluate(keys, frames, c.env)
    return (values[name] if values is not None else None), c.diags


# ---- the compiler ----------------------------------------------------------------------------------


@dataclass
class _Setting:
    value: object
    statement: ir.Statement


class _Compiler:
    def __init__(self, scene: ir.Scene, base_dir: Path | None):
        self.scene = scene
        self.path = scene.path
        self.base_dir = base_dir
        self.result = CompileResult(scene=scene)
        self.diags = self.result.diagnostics
        self.settings: dict[str, _Setting] = {}
        self.schedule_statements: dict[str, ir.Statement] = {}
        self.prompt_statements: list[tuple[str, ir.Statement]] = []
        self.prompt_keys: dict[str, list[tuple[int, str, ir.Statement]]] = {}  # resolve_prompts: sorted keys
        # backtick and native weight expressions of the prompts: source text -> (expression, span, parameter)
        self.prompt_expressions: dict[str, tuple[ir.Expr, ir.Span, str]] = {}
        self.unevaluable: set[str] = set()  # schedules whose expressions failed their checks
        self.mode_specific: list[tuple[Param, ir.Statement]] = []  # settings checked against the mode later
        self.network_statements: list[ir.Statement] = []  # `lora` and `embedding`: several each (networks.py)
        self.networks: networks.Networks | None = None
        # the audio track's analysis (compiler/audio.py, imported only for a scene with `audio`)
        self.has_audio = any(cat.ALIASES.get(st.name) == "audio" for st in scene.statements)
        self.audio = None
        self.schedule_defaults: dict[str, float] = {}  # the model family's, for schedules the scene leaves out

    # -- helpers
    def err(self, code: str, message: str, span: ir.Span, **kw) -> None:
        self.diags.append(error(code, message, span, path=self.path, **kw))

    def warn(self, code: str, message: str, span: ir.Span, **kw) -> None:
        self.diags.append(warning(code, message, span, path=self.path, **kw))

    # -- pass 1: statements
    def run(self, *, build_table: bool) -> None:
        self.check_version()
        for st in self.scene.statements:
            if st.name == cat.VERSION_STATEMENT:
                continue
            if st.name in networks.STATEMENTS:
                self.network_statements.append(st)
                continue
            param = cat.lookup(st.name)
            composite = next((a for a in st.args if isinstance(a, ir.Composite)), None)
            if param is None:
                self.unknown_statement(st)
            elif composite is not None and param.kind is not Kind.PROMPT:  # `"a" weight 2 and "b"` is a prompt's
                self.err("DFM103", f"`{param.name}` takes no sub-prompts: `\"…\" weight … and \"…\"` is the form of "
                         "a `prompt`", composite.span, parameter=param.name,
                         help=f"e.g. `{param.name} {self.example(param)}`")
            elif param.kind is Kind.SETTING:
                self.setting(param, st)
            elif param.kind is Kind.PROMPT:
                self.prompt_statements.append((param.name, st))
            else:
                self.schedule_statement(param, st)
        settings = self.resolve_settings()
        if settings is None:
            return
        self.networks = networks.Networks(self, settings)
        for st in self.network_statements:
            self.networks.statement(st)
        self.resolve_prompts(settings)
        self.seed_schedule(settings)
        if settings["mode"] == "interpolation":
            self.interpolation_frames(settings)
        self.networks.settle(settings)
        self.result.settings = Settings(settings)
        frames = settings["frames"]
        env = environment(frames, settings["fps"], settings["bpm"], settings["seed"])
        features = self.audio_features(settings)
        env.update(features)
        self.env = env
        self.prompt_values(env, frames, settings)
        keys = self.resolve_schedules(settings)
        if not self.result.prompts:
            self.err("DFM305", "the scene has no prompt", self.scene.statements[0].span if self.scene.statements
                     else ir.Span(1, 1, 1, 2, 0, 1), help='add one, e.g. `prompt 0 "a lighthouse at dawn"`')
        values = self.evaluate(keys, frames, env)
        self.networks.evaluate(frames, env)
        self.result.values = values
        with np.errstate(all="ignore"):  # an overflow is reported as a diagnostic, never a numpy warning
            camera = accumulated_camera(values)  # what check needs of the table: cheap, so check runs it too
        if not self.check_finite(camera):
            return
        self.zero_step_frames(settings, values)
        if not build_table or self.result.errors:
            return
        with np.errstate(all="ignore"):
            try:
                table = lower_table(self.result.settings, values, self.result.prompts, self.result.negatives,
                                    source=self.scene.source, path=self.path, env=env)
            except PromptValueError as e:  # a weight on a row past the frames `prompt_values` checked
                _, span, name = self.prompt_expressions.get(e.expression, (None, self.scene.statements[0].span,
                                                                             "prompt"))
                self.err("DFM402", f"the prompt weight `{e.expression[:40]}` is {e.value} at frame {e.frame}", span,
                         parameter=name, frame=e.frame, help="guard the expression, e.g. with `where` or `max`")
                return
        if features and len(table) == frames:  # the features as columns, so compile and plot show them
            table = table.with_columns(**{f"audio_{k}": v for k, v in features.items()})
        table = self.networks.lower(table)
        if self.check_finite(table.columns):
            self.result.table = table
            self.unreached_edits(table)

    def check_version(self) -> None:
        v = self.scene.version
        if v is None:
            span = self.scene.statements[0].span if self.scene.statements else ir.Span(1, 1, 1, 2, 0, 1)
            self.warn("DFM020", "no version line", span, help=f"start the file with `dfm {cat.FORMAT_VERSION}`")
            return
        ok = len(v.args) == 1 and isinstance(v.args[0], ir.Number) and v.args[0].value == cat.FORMAT_VERSION
        if not ok:
            self.err("DFM020", f"this dfm reads format version {cat.FORMAT_VERSION}", v.span,
                     help=f"write `dfm {cat.FORMAT_VERSION}`")
        elif self.scene.statements[0] is not v:
            self.warn("DFM020", "the version line should come first", v.span, help="move it to the top")

    def unknown_statement(self, st: ir.Statement) -> None:
        known = deforum_names.explain_key(st.name)  # a Deforum key dfm has no equivalent for
        if known is not None:
            self.err("DFM101", f"`{st.name}` is a Deforum key, not a dfm parameter", st.name_span, help=known)
            return
        guess = cat.did_you_mean(st.name, cat.ALIASES)
        self.err("DFM101", f"unknown parameter `{st.name}`", st.name_span,
                 help=f"did you mean `{cat.ALIASES[guess]}`?" if guess else "see docs/language.md for every "
                 "parameter")

    # -- static settings
    def setting(self, p: Param, st: ir.Statement) -> None:
        if p.name in self.settings:
            first = self.settings[p.name].statement
            self.err("DFM106", f"`{p.name}` is set twice", st.span,
                     note=f"first set on line {first.span.line}", help="keep one of them", parameter=p.name)
        if p.auto and len(st.args) == 1 and isinstance(st.args[0], ir.Variable) \
                and st.args[0].name == "auto":  # read from the audio track in resolve_audio
            self.settings[p.name] = _Setting("auto", st)
            return
        whole = self.NAMED_CONVERTERS.get(p.name) or self.STATEMENT_CONVERTERS.get(p.type)
        if whole is not None:
            value = whole(self, p, st)
        else:
            if len(st.args) != 1:
                self.err("DFM105", f"`{p.name}` takes one value, got {len(st.args)}", st.span, parameter=p.name,
                         help=f"write `{p.name} {self.example(p)}`")
                return
            value = self.convert(p, st.args[0])
        if value is not None:
            self.settings[p.name] = _Setting(value, st)
        if p.modes != cat.ALL:
            self.mode_specific.append((p, st))

    def example(self, p: Param) -> str:
        if p.choices:
            return p.choices[0] if p.default is None else str(p.default)
        if p.type == "bool":
            return "on"
        if p.type == "size":
            return "512x512"
        if p.type in ("string", "path"):
            return '"…"'
        return str(p.default if p.default is not None else 1)

    def convert(self, p: Param, v: ir.Value):
        """A static value of parameter p, checked, or None after reporting why not."""
        return self.CONVERTERS[p.type](self, p, v)

    def enum_value(self, p: Param, v: ir.Value):
        text = v.name if isinstance(v, ir.Variable) else v.text if isinstance(v, ir.Word) else \
            v.value if isinstance(v, ir.String) else None
        if text is None:
            self.err("DFM103", f"`{p.name}` takes one of: {', '.join(p.choices)}", v.span, parameter=p.name,
                     help=f"for example `{p.name} {p.choices[0]}`")
            return None
        choice = cat.resolve_choice(p, text)
        norm = cat.normalise_choice(text)
        if choice is None and norm in p.refused:
            self.err("DFM107", f"{p.name} `{text}` is not supported: {p.refused[norm]}", v.span, parameter=p.name,
                     help=f"choose one of: {', '.join(p.choices)}")
            return None
        if choice is None:
            guess = cat.did_you_mean(norm, [*p.choices, *p.choice_aliases])
            guess = cat.resolve_choice(p, guess) if guess else None
            self.err("DFM102", f"unknown {p.name} `{text}`", v.span, parameter=p.name,
                     help=(f"did you mean `{guess}`? " if guess else "") + f"choices: {', '.join(p.choices)}")
        return choice

    def bool_value(self, p: Param, v: ir.Value):
        if isinstance(v, ir.Number) and v.value in (0, 1):
            return bool(v.value)
        text = v.name if isinstance(v, ir.Variable) else None
        if text is None or text.lower() not in BOOL_WORDS:
            self.err("DFM103", f"`{p.name}` is on or off", v.span, parameter=p.name,
                     help=f"write `{p.name} on` or `{p.name} off`")
            return None
        return BOOL_WORDS[text.lower()]

    def size_value(self, p: Param, v: ir.Value):
        if not isinstance(v, ir.Size):
            self.err("DFM103", f"`{p.name}` is a size like 512x512", v.span, parameter=p.name,
                     help="write width x height, e.g. `size 768x512`")
            return None
        bad = [d for d in (v.width, v.height) if d % (p.multiple_of or 1) or not p.in_range(d)]
        if bad:
            fix = tuple(max(64, min(4096, (d // 8) * 8)) for d in (v.width, v.height))
            self.err("DFM104", f"size {v.width}x{v.height}: each side must be a multiple of 8 in "
                     f"{p.range_text()}", v.span, parameter=p.name, help=f"use {fix[0]}x{fix[1]}")
            return None
        return (v.width, v.height)

    def string_value(self, p: Param, v: ir.Value):
        if not isinstance(v, ir.String):
            self.err("DFM103", f"`{p.name}` is a quoted string", v.span, parameter=p.name,
                     help=f'write `{p.name} "…"`')
            return None
        return self.path_value(p, v) if p.type == "path" else v.value

    def number_value(self, p: Param, v: ir.Value):
        if isinstance(v, (ir.String, ir.Size, ir.Word, ir.Time, ir.KeyList)):
            what = "a keyframe list" if isinstance(v, ir.KeyList) else "a number is needed"
            self.err("DFM103", f"`{p.name}` takes one number ({what} was given)", v.span, parameter=p.name,
                     help=f"write `{p.name} {self.example(p)}`")
            return None
        probs = check_expr(v, self.path, p.name, allow_t=False)
        if probs:
            self.diags.extend(probs)
            return None
        x = constant_value(v, environment(1, 15, None, 0))
        return self.number(p, x, v.span)

    def number(self, p: Param, x: float, span: ir.Span):
        if not math.isfinite(x):
            self.err("DFM402", f"`{p.name}` is not a finite number", span, parameter=p.name)
            return None
        if p.type in ("int", "seed") and not float(x).is_integer():
            self.err("DFM103", f"`{p.name}` is a whole number, got {x:g}", span, parameter=p.name,
                     help=f"use {math.floor(x)} or {math.ceil(x)}")
            return None
        if not p.in_range(x):
            shown = int(x) if float(x).is_integer() and abs(x) < 1e18 else f"{x:g}"
            fix = p.refused.get(str(shown), f"use a value in {p.range_text()}")
            self.err("DFM104", f"`{p.name}` is {shown}, outside {p.range_text()}", span, parameter=p.name,
                     help=fix)
            return None
        return int(x) if p.type in ("int", "seed") else float(x)

    def time_value(self, p: Param, v: ir.Value):
        if isinstance(v, ir.Time):
            t = (v.value, v.unit)
        elif isinstance(v, ir.Number):
            t = (v.value, "f")
        else:
            self.err("DFM103", f"`{p.name}` is a time: frames (`24`), seconds (`2s`) or beats (`8b`)", v.span,
                     parameter=p.name, help=f"write `{p.name} 2s`")
            return None
        if not p.in_range(t[0]):
            self.err("DFM104", f"`{p.name}` is {v.text if isinstance(v, ir.Time) else v.value:}, outside "
                     f"{p.range_text()}", v.span, parameter=p.name)
            return None
        return (t[0], t[1], v.span)

    def path_value(self, p: Param, v: ir.String) -> str | None:
        raw = os.path.expanduser(v.value)
        full = Path(raw) if os.path.isabs(raw) or self.base_dir is None else self.base_dir / raw
        if self.base_dir is not None and p.must_exist:
            found = self.exists(p.name, full, v)
            if found is None:
                return None
            if not found:
                self.warn("DFM403", f"{p.name}: `{v.value}` does not exist (yet)", v.span, parameter=p.name,
                          help="paths are relative to the scene file; `dfm render` needs it to exist")
        return str(full)

    def exists(self, name: str, path: Path, v: ir.String) -> bool | None:
        """Whether `path` exists; None after a diagnostic when the OS cannot even tell (a name too long,
        a NUL byte, a permission error)."""
        try:
            if "\0" in str(path):  # Path.exists() says False; opening it later would raise
                raise ValueError("it holds a NUL character")
            return path.exists()
        except (OSError, ValueError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            self.err("DFM403", f"{name}: the path `{v.value[:60]}{'…' if len(v.value) > 60 else ''}` cannot be "
                     f"used: {why}", v.span, parameter=name, help="write the path of an existing file")
            return None

    def audio_setting(self, p: Param, st: ir.Statement):
        """`audio "song.mp3"` or `audio "song.mp3" from 12s`: the path (relative to the scene), and the offset
        into the track as the setting `audio_offset`. Whether the file exists is checked when it is read."""
        args = list(st.args)
        ok = args and isinstance(args[0], ir.String) and (
            len(args) == 1 or (len(args) == 3 and isinstance(args[1], ir.Variable) and args[1].name == "from"))
        if not ok:
            self.err("DFM105", "`audio` takes a quoted path, optionally followed by `from` and a time", st.span,
                     parameter="audio", help='e.g. `audio "song.mp3"` or `audio "song.mp3" from 12s`')
            return None
        if len(args) == 3:
            at = args[2]
            if not isinstance(at, (ir.Time, ir.Number)) or (isinstance(at, ir.Time) and at.unit != "s"):
                self.err("DFM103", "`from` takes a time in seconds", at.span, parameter="audio",
                         help="e.g. `from 12s` or `from 1.5s`")
            elif at.value < 0:
                self.err("DFM104", "`from` must be 0 s or later", at.span, parameter="audio")
            elif "audio_offset" in self.settings:
                first = self.settings["audio_offset"].statement
                self.err("DFM106", "`audio_offset` is set twice", at.span, parameter="audio_offset",
                         note=f"first set on line {first.span.line}", help="keep one of them")
            else:
                self.settings["audio_offset"] = _Setting(float(at.value), st)
        raw = os.path.expanduser(args[0].value)
        full = Path(raw) if os.path.isabs(raw) or self.base_dir is None else self.base_dir / raw
        return str(full)

    def resolve_audio(self, values: dict) -> bool:
        """Read the audio track (from the cache when it was read before), and resolve `bpm auto` and
        `duration auto` from it. False after an error that leaves the frame count unknown."""
        autos = [p.name for p in cat.SETTINGS if p.auto and values.get(p.name) == "auto"]
        raw = values.get("audio")
        if raw is None:
            for n in autos:
                self.err("DFM205", f"`{n} auto` needs an audio track", self.settings[n].statement.span,
                         parameter=n, help=f'add `audio "song.mp3"`, or write the {n}')
            return not autos
        st = self.settings["audio"].statement
        where = st.args[0].span
        path = Path(str(raw))
        found = self.exists("audio", path, st.args[0])
        if not found:
            if found is not None:
                self.err("DFM403", f"audio: `{st.args[0].value}` does not exist", where, parameter="audio",
                         help="paths are relative to the scene file")
            return not autos
        from . import audio  # only a scene with `audio` pays for it

        try:
            track = audio.load(path)
        except audio.AudioError as e:
            self.err("DFM404", e.message, where, parameter="audio", help=e.help or None)
            return not autos
        offset = float(values.get("audio_offset") or 0.0)
        if offset >= track.duration:
            self.err("DFM404", f"audio starts at {offset:g} s, past the end of the track ({track.duration:.2f} s)",
                     st.span, parameter="audio", help=f"use `from` a time before {track.duration:.2f}s")
            return not autos
        self.audio = track
        name = path.name
        if "bpm" in autos:
            bst = self.settings["bpm"].statement
            if not math.isfinite(track.tempo):
                self.err("DFM404", f"bpm auto: no tempo found in `{name}`", bst.span, parameter="bpm",
                         help="write the tempo: `bpm 120`")
                return False
            values["bpm"] = round(track.tempo, 2)
            self.diags.append(note("DFM206", f"bpm auto: {values['bpm']:g} bpm detected in `{name}`", bst.span,
                                   path=self.path, parameter="bpm", help=f"write `bpm {values['bpm']:g}` to fix it"))
        if "duration" in autos:
            dst = self.settings["duration"].statement
            length = track.duration - offset
            values["duration"] = (length, "s", dst.span)
            self.diags.append(note("DFM206", f"duration auto: {length:.2f} s, the length of `{name}`"
                                   + (f" from {offset:g} s" if offset else ""), dst.span, path=self.path,
                                   parameter="duration"))
        return True

    def audio_features(self, settings: dict) -> dict[str, np.ndarray]:
        """The audio track's features per frame (every name in AUDIO_VARIABLES), or none without audio. A
        track that could not be read gives zeros, so the rest of the scene is still checked."""
        if not self.has_audio:
            return {}
        frames = settings["frames"]
        if self.audio is None:
            return {k: np.zeros(frames) for k in AUDIO_VARIABLES}
        from . import audio

        return audio.frame_features(self.audio, frames, settings["fps"], float(settings["audio_offset"] or 0.0))

    def seed_setting(self, p: Param, st: ir.Statement):
        args = list(st.args)
        if not args or len(args) > 3:
            self.err("DFM105", "`seed` takes a number, then optionally a behaviour and its N", st.span,
                     parameter="seed", help="e.g. `seed 42`, `seed 42 fixed`, `seed 42 iter 2`")
            return None
        first = args[0]
        if isinstance(first, ir.Variable) and first.name in cat.SEED_BEHAVIOURS and len(args) == 1:
            self.err("DFM103", "`seed` starts with the seed number", first.span, parameter="seed",
                     help=f"write `seed 42 {first.name}` (or `seed_behavior {first.name}`)")
            return None
        value = self.convert(p, first)
        if len(args) >= 2:
            beh = args[1]
            name = beh.name if isinstance(beh, ir.Variable) else None
            if name is None or name not in cat.SEED_BEHAVIOURS:
                shown = name or "this"
                guess = cat.did_you_mean(shown, cat.SEED_BEHAVIOURS) if name else None
                self.err("DFM102", f"unknown seed behaviour `{shown}`", beh.span, parameter="seed",
                         help=(f"did you mean `{guess}`? " if guess else "") +
                         f"behaviours: {', '.join(cat.SEED_BEHAVIOURS)}")
            else:
                self.settings["seed_behavior"] = _Setting(name, st)
        if len(args) == 3:
            n = args[2]
            if self.settings.get("seed_behavior") and self.settings["seed_behavior"].value != "iter":
                self.err("DFM105", "only `iter` takes an N", n.span, parameter="seed",
                         help="remove the number, or use `iter`")
            else:
                iv = self.convert(cat.BY_NAME["seed_iter_n"], n)
                if iv is not None:
                    self.settings["seed_iter_n"] = _Setting(iv, st)
        return value

    def model_setting(self, p: Param, st: ir.Statement):
        args = list(st.args)
        ok = args and isinstance(args[0], ir.String) and (
            len(args) == 1 or (len(args) == 3 and isinstance(args[1], ir.Variable) and args[1].name == "sha256"
                               and isinstance(args[2], ir.String)))
        if not ok:
            self.err("DFM105", "`model` takes a quoted model id or path, optionally followed by sha256 \"<hex>\"",
                     st.span, parameter="model",
                     help='e.g. `model "models/dreamshaper.safetensors" sha256 "9a1f…"`')
            return None
        if len(args) == 3:
            digest = args[2].value
            if not SHA256.match(digest):
                self.err("DFM104", "sha256 must be 64 hexadecimal characters", args[2].span, parameter="model",
                         help="copy it from `sha256sum FILE`")
            else:
                self.settings["model_sha256"] = _Setting(digest.lower(), st)
        value = args[0].value
        local = value.startswith((".", "/", "~")) or value.endswith((".safetensors", ".ckpt", ".pt", ".bin"))
        if local and self.base_dir is not None:
            full = Path(os.path.expanduser(value))
            full = full if full.is_absolute() else self.base_dir / full
            found = self.exists("model", full, args[0])
            if found is None:
                return None
            if not found:
                self.warn("DFM403", f"model `{value}` does not exist", args[0].span, parameter="model",
                          help="paths are relative to the scene file; or pass --model to dfm render")
            return str(full)
        return value

    # -- schedules
    def schedule_statement(self, p: Param, st: ir.Statement) -> None:
        if p.name in self.schedule_statements:
            first = self.schedule_statements[p.name]
            self.err("DFM109", f"`{p.name}` is given twice", st.span, parameter=p.name,
                     note=f"first given on line {first.span.line}", help="merge the keys into one statement")
            return
        if len(st.args) != 1:
            self.err("DFM105", f"`{p.name}` takes one value or a keyframe list, got {len(st.args)} values",
                     st.span, parameter=p.name, help=f"e.g. `{p.name} 0:({p.default}), 30:({p.default})`")
            return
        arg = st.args[0]
        if isinstance(arg, ir.String):  # a Deforum schedule pasted with its quotes
            reparsed = self.reparse_string(p, arg)
            if reparsed is None:
                return
            st = ir.Statement(st.name, (reparsed,), st.span, st.name_span)
            arg = reparsed
        if isinstance(arg, (ir.Size, ir.Word, ir.Time)):
            self.err("DFM103", f"`{p.name}` takes a number, an expression or keyframes", arg.span,
                     parameter=p.name, help=f"e.g. `{p.name} {p.default}`")
            return
        exprs = [k.value for k in arg.keys] if isinstance(arg, ir.KeyList) else [arg]
        problems = [d for e in exprs for d in check_expr(e, self.path, p.name, audio=self.has_audio)]
        self.diags.extend(problems)
        self.schedule_statements[p.name] = st
        if problems:
            self.unevaluable.add(p.name)

    def reparse_string(self, p: Param, s: ir.String):
        st = parse_statement(f"{p.name} {s.value}")
        if st is None or len(st.args) != 1:
            self.err("DFM103", f"`{p.name}`: the quoted text is not a schedule", s.span, parameter=p.name,
                     help='drop the quotes and write keyframes: `0:(1), 10:(2)`')
            return None
        # positions inside the string are approximate: point every node at the string itself
        return ir.respan(st.args[0], s.span)

    def key_frame(self, t: ir.Time, settings: dict, p_name: str) -> int | None:
        if t.unit == "x":
            return self.expression_frame(t, settings, p_name)
        if t.unit == "f" and not float(t.value).is_integer():
            self.err("DFM103", f"frame `{t.text}` is not a whole number", t.span, parameter=p_name,
                     help=f"use a whole frame, or seconds: `{t.text}s`")
            return None
        return self.frames(t.value, t.unit, t.span, settings, p_name, t.text)

    def expression_frame(self, t: ir.Time, settings: dict, p_name: str) -> int | None:
        """Deforum's quoted key (`"max_f-2":(1)`): an expression of the scene's constants, evaluated and
        truncated with int() as the extension does."""
        if "t" in ir.variables(t.expr):
            self.err("DFM202", f"`{p_name}`: the key {t.text} depends on `t`; a key's frame is one number",
                     t.span, parameter=p_name, help='use the scene constants, e.g. "max_f-2" or "max_f/2"')
            return None
        problems = check_expr(t.expr, self.path, p_name, allow_t=False)
        if problems:
            self.diags.extend(problems)
            return None
        env = environment(settings["frames"], settings["fps"], settings.get("bpm"), settings["seed"])
        x = constant_value(t.expr, env)
        if not math.isfinite(x):
            self.err("DFM402", f"`{p_name}`: the key {t.text} is not a finite frame", t.span, parameter=p_name)
            return None
        return self.frames(math.trunc(x), "f", t.span, settings, p_name, t.text)

    def frames(self, amount: float, unit: str, span: ir.Span, settings: dict, p_name: str,
               text: str | None = None) -> int | None:
        """A time in frames, seconds or beats as a whole frame count, or None after DFM204 (no bpm)."""
        if unit == "b" and not settings.get("bpm"):
            shown = f"`{text}` is" if text else f"`{p_name}` is"
            self.err("DFM204", f"{shown} in beats but the scene sets no bpm", span, parameter=p_name,
                     help="add `bpm 120` (your tempo)")
            return None
        frame = frames_of(amount, unit, settings["fps"], settings.get("bpm"))
        if not 0 <= frame <= cat.MAX_FRAMES:
            shown = text or f"{amount:g}"
            shown = shown if len(shown) <= 24 else shown[:20] + "…"
            count = f"{frame} frames" if abs(frame) < 2**62 else "more frames than any scene"
            self.err("DFM104", f"`{p_name}`: `{shown}` is {count}, outside 0 .. {cat.MAX_FRAMES}", span,
                     parameter=p_name, help=f"a scene has at most {cat.MAX_FRAMES} frames")
            return None
        return frame

    def resolve_schedules(self, settings: dict) -> dict[str, list[ResolvedKey]]:
        out: dict[str, list[ResolvedKey]] = {}
        frames, mode = settings["frames"], settings["mode"]
        for name, st in self.schedule_statements.items():
            p = cat.BY_NAME[name]
            if name in self.unevaluable:
                continue
            if mode not in p.modes:
                self.warn("DFM304", f"`{name}` has no effect in mode {mode}", st.name_span, parameter=name,
                          help=f"it is used in mode {', '.join(m for m in cat.MODES if m in p.modes)}")
            arg = st.args[0]
            if not isinstance(arg, ir.KeyList):
                out[name] = [ResolvedKey(0, arg, "linear", is_plain_number(arg), arg.span)]
                continue
            keys: list[ResolvedKey] = []
            seen: dict[int, ir.Key] = {}
            for k in arg.keys:
                f = self.key_frame(k.at, settings, name)
                if f is None:
                    continue
                curve = k.curve or "linear"
                if k.curve is not None and k.curve not in CURVES:
                    guess = cat.did_you_mean(k.curve, CURVES)
                    self.err("DFM306", f"unknown curve `{k.curve}`", k.curve_span, parameter=name,
                             help=(f"did you mean `{guess}`? " if guess else "") + f"curves: {', '.join(CURVES)}")
                    curve = "linear"
                if f in seen:
                    self.err("DFM301", f"`{name}` has two keys at frame {f}", k.span, parameter=name, frame=f,
                             note=f"the other is on line {seen[f].span.line}", help="remove one of them")
                    continue
                if keys and f < keys[-1].frame:
                    self.err("DFM302", f"`{name}`: key at frame {f} comes after a key at frame {keys[-1].frame}",
                             k.at.span, parameter=name, frame=f, help="write keys in increasing frame order")
                if f >= frames:
                    self.warn("DFM303", f"`{name}`: key at frame {f} is past the last frame ({frames - 1}) and "
                              "is ignored", k.at.span, parameter=name, frame=f,
                              help=f"move it to frame {frames - 1} or raise `frames`")
                number = is_plain_number(k.value)
                if k.curve is not None and not number and k.curve in CURVES:
                    self.warn("DFM306", f"the curve `{k.curve}` has no effect after an expression key",
                              k.curve_span, parameter=name,
                              help="expression keys are evaluated on every frame until the next key")
                seen[f] = k
                keys.append(ResolvedKey(f, k.value, curve, number, k.span, k.curve is not None))
            keys.sort(key=lambda r: r.frame)
            inside = [k for k in keys if k.frame < frames]
            if inside and inside[0].frame > 0:
                self.warn("DFM307", f"`{name}` has no key at frame 0; its first key's value holds before frame "
                          f"{inside[0].frame}", inside[0].span, parameter=name,
                          help="add a key `0:(…)` (Deforum would crash here)")
            if keys and not inside:
                self.err("DFM303", f"`{name}`: every key is past the last frame", arg.span, parameter=name,
                         help=f"the scene has frames 0..{frames - 1}")
            out[name] = keys
        self.result.schedules = out
        return out

    # -- prompts
    def resolve_prompts(self, settings: dict) -> None:
        lists: dict[str, list[tuple[int, str, ir.Statement]]] = {"prompt": [], "negative": []}
        seen: dict[str, dict[int, ir.Statement]] = {"prompt": {}, "negative": {}}
        for name, st in self.prompt_statements:
            args = list(st.args)
            texts = (ir.String, ir.Composite)  # a quoted text, or the native composable form
            if len(args) == 1 and isinstance(args[0], texts):
                frame, text = 0, self.prompt_text(name, args[0])
            elif len(args) == 2 and isinstance(args[1], texts) and isinstance(args[0], (ir.Number, ir.Time)):
                at = args[0] if isinstance(args[0], ir.Time) else ir.Time(args[0].value, "f", args[0].text,
                                                                             args[0].span)
                frame = self.key_frame(at, settings, name)
                if frame is None:
                    continue
                text = self.prompt_text(name, args[1])
            else:
                self.err("DFM105", f"`{name}` takes an optional time and a quoted text", st.span, parameter=name,
                         help=f'e.g. `{name} 4s "a castle in the clouds"`')
                continue
            other = seen[name].get(frame)
            if other is not None:
                self.err("DFM301", f"two `{name}` statements at frame {frame}", st.span, parameter=name,
                         frame=frame, note=f"the other is on line {other.span.line}", help="remove one of them")
                continue
            # stills take no frame count, and in interpolation mode the prompts make it
            if frame >= settings["frames"] and settings["mode"] not in ("none", "interpolation"):
                self.warn("DFM303", f"`{name}` at frame {frame} is past the last frame ({settings['frames'] - 1})",
                          st.span, parameter=name, frame=frame, help="move it earlier or raise `frames`")
            if text is None:  # a native form with an error (reported)
                continue
            lists[name].append((frame, text, st))
            seen[name][frame] = st
            if isinstance(st.args[-1], ir.String):
                self.prompt_syntax(name, st.args[-1])
        for name in lists:
            lists[name].sort(key=lambda x: x[0])
        self.prompt_keys = lists
        self.result.prompts = [(f, t) for f, t, _ in lists["prompt"]]
        self.result.negatives = [(f, t) for f, t, _ in lists["negative"]]

    def prompt_text(self, name: str, v: ir.String | ir.Composite) -> str | None:
        """A prompt statement's text. The native composable form becomes the A1111/Deforum text it means
        (`"apple" weight cos(t) and "snow"` → ``apple :`cos(t)` AND snow :1``): every weight written, so a
        sub-prompt's own `:2` is never read as its weight. None for a form the statement cannot take."""
        if isinstance(v, ir.String):
            return v.value
        if name == "negative":
            self.err("DFM503", "a negative prompt has no sub-prompts: A1111 has no `AND` in negatives", v.span,
                     parameter=name, help='write one text: `negative "blurry, grainy"`; lower a term\'s weight '
                     "with `(grainy:0.5)`")
            return None
        if len(v.parts) > prompt_syntax.MAX_PARTS:
            self.err("DFM503", f"{len(v.parts)} sub-prompts (at most {prompt_syntax.MAX_PARTS}): each one is one more "
                     "UNet pass per step", v.parts[prompt_syntax.MAX_PARTS].span, parameter=name,
                     help="merge sub-prompts, or blend prompts over time with `prompt_crossfade`")
            return None
        out = []
        for part in v.parts:
            text = part.text.value
            for bad, why in ((prompt_syntax.AND.search(text), "`AND` inside a sub-prompt would split it"),
                             (NEG_MARKER.search(text), "`--neg` inside a sub-prompt")):
                if bad is not None:
                    self.err("DFM503", why, self.string_span(part.text, bad.start(), bad.end()), parameter=name,
                             help="join sub-prompts with `and` between the strings; write negatives with `negative`")
            self.prompt_syntax(name, part.text)
            weight = ":1"
            if part.weight is not None:
                problems = check_expr(part.weight, self.path, name, audio=self.has_audio)
                self.diags.extend(problems)
                shown = format_expr(part.weight)
                if is_plain_number(part.weight):
                    weight = f":{shown}"
                else:
                    weight = f":`{shown}`"
                    if not problems:
                        self.prompt_expressions.setdefault(shown, (part.weight, part.weight.span, name))
            out.append(f"{text} {weight}")
        return " AND ".join(out)

    def backtick_expressions(self, name: str, s: ir.String, part: str, offset: int) -> None:
        """Each `` `expression` `` of a prompt text parsed and checked as a dfm expression (DFM503 at the
        backticks when it is not one), and kept for its per-frame check (`prompt_values`)."""
        for start, end, source in prompt_syntax.backticks(part):
            span = self.string_span(s, offset + start, offset + end)
            expr = prompt_syntax.backtick_expression(source)
            if expr is None:
                parsed = parse(f"weight ({source})", "<prompt>").diagnostics
                why = f": {parsed[0].message}" if parsed and source.strip() and "\n" not in source else ""
                self.err("DFM503", f"`{source[:40]}` between backticks is not an expression{why}", span,
                         parameter=name, help="write a dfm expression of the frame, e.g. `` `1+t/max_f` `` "
                         "(docs/language.md lists the functions and variables)")
                continue
            problems = check_expr(expr, self.path, name, audio=self.has_audio)
            for d in problems:  # spans from inside the backticks: point at the backticks
                self.diags.append(dataclasses.replace(d, span=span))
            if not problems:
                self.prompt_expressions.setdefault(source, (expr, span, name))

    def prompt_values(self, env: dict, frames: int, settings: dict) -> None:
        """Every backtick and native weight expression of the prompts is finite on every frame its prompt
        is in force (DFM402 at the first frame it is not: the value would reach A1111's syntax as `nan`)."""
        for source, (expr, span, name) in self.prompt_expressions.items():
            values = evaluate_frames(expr, env, 0, frames)
            bad = ~np.isfinite(values)
            if settings["mode"] not in ("none", "interpolation"):  # there rows are not frames: check them all
                bad &= self.prompt_in_force(source, frames, settings["prompt_crossfade"])
            if bad.any():
                f = int(np.argmax(bad))
                self.err("DFM402", f"the prompt weight `{source[:40]}` is {values[f]} at frame {f}", span,
                         parameter=name, frame=f, note="a division by zero, or a function outside its domain",
                         help="guard the expression, e.g. with `where` or `max`")

    def prompt_in_force(self, source: str, frames: int, crossfade: int) -> np.ndarray:
        """The frames on which a prompt text holding the backtick expression `source` is read: from its key
        (frame 0 for the first) to the next key, plus the crossfade that still blends it."""
        mask = np.zeros(frames, dtype=bool)
        for keys in (self.result.prompts, self.result.negatives):
            for i, (f, text) in enumerate(keys):
                if any(src == source for _, _, src in prompt_syntax.backticks(text)):
                    end = keys[i + 1][0] + crossfade if i + 1 < len(keys) else frames
                    mask[min(0 if i == 0 else f, frames):min(end, frames)] = True
        return mask

    def prompt_syntax(self, name: str, s: ir.String) -> None:
        """A1111's attention syntax in a prompt text (DFM501), and the prompt syntax dfm does not implement
        (DFM502), each pointed at in the string. A positive prompt's `--neg` part is a prompt of its own."""
        text = s.value
        marker = NEG_MARKER.search(text) if name == "prompt" else None
        parts = [(text, 0)] if marker is None else [(text[:marker.start()], 0), (text[marker.end():], marker.end())]
        for part, offset in parts:
            if self.networks is not None:  # its <lora:…> tags and embeddings
                self.networks.prompt(s, part, offset, negative=name == "negative" or offset > 0)
            self.backtick_expressions(name, s, part, offset)
            composition = prompt_syntax.check_composition(part, negative=name == "negative" or offset > 0)
            for issue in prompt_syntax.check(part) + composition:
                report = self.err if issue.error else self.warn
                report(issue.code, issue.message, self.string_span(s, offset + issue.start, offset + issue.end),
                       parameter=name, help=issue.help)

    def string_span(self, s: ir.String, start: int, end: int) -> ir.Span:
        """The source span of `s.value[start:end]`; the whole string where the source text does not map
        character by character (triple quotes, a statement an importer built)."""
        sp = s.span
        raw = self.scene.source[sp.start:sp.end]
        if len(raw) < 2 or raw[0] not in "\"'" or raw[-1] != raw[0] or raw.startswith('"""') or "\n" in raw:
            return sp
        where = _value_offsets(raw[1:-1], s.value)
        if where is None or not 0 <= start < end <= len(where):
            return sp
        a, b = sp.start + 1 + where[start][0], sp.start + 1 + where[end - 1][1]
        return ir.Span(sp.line, sp.col + a - sp.start, sp.line, sp.col + b - sp.start, a, b)

    def seed_schedule(self, settings: dict) -> None:
        """`seed_behavior schedule` takes its seeds from a `seed_schedule`; a seed_schedule with no behaviour
        chosen implies it. Both need a mode whose diffusions follow the frames (2D, 3D, video)."""
        st = self.schedule_statements.get("seed_schedule")
        chosen = self.settings.get("seed_behavior")
        in_mode = settings["mode"] in cat.SEEDED_MODES
        if st is not None and chosen is None and in_mode:
            settings["seed_behavior"] = "schedule"
        elif st is not None and settings["seed_behavior"] != "schedule" and in_mode:
            self.warn("DFM108", f"`seed_schedule` has no effect: seed_behavior is {settings['seed_behavior']}",
                      st.name_span, parameter="seed_schedule",
                      help="write `seed_behavior schedule`, or remove the seed_schedule")
        if settings["seed_behavior"] != "schedule" or chosen is None:
            return
        if not in_mode:
            self.warn("DFM304", f"seed_behavior schedule has no effect in mode {settings['mode']}: the seeds follow "
                      "iter", chosen.statement.span, parameter="seed_behavior",
                      help="use it in mode 2d, 3d or video")
            settings["seed_behavior"] = "iter"
        elif st is None:
            self.err("DFM108", "seed_behavior schedule needs a `seed_schedule`", chosen.statement.span,
                     parameter="seed_behavior",
                     help="add one, e.g. `seed_schedule 0:(s), 30:(s + 30)`, or choose another behaviour")

    def video_frames(self, values: dict) -> bool:
        """Video mode renders as many frames as the extraction gives (as Deforum does): the default frame
        count; an explicit one may only be smaller. False after an error."""
        raw = values["video_init_path"]
        st = self.settings.get("video_init_path")
        if not raw or st is None:
            return True  # no video: the runtime says so before loading anything
        path = Path(str(raw)).expanduser()
        try:
            if not path.is_file():
                return True  # DFM403 has warned: the file may appear before the render
            total = media.count_frames(path)
        except media.MediaError as e:
            self.err("DFM403", e.message, st.statement.span, parameter="video_init_path", help=e.help)
            return False
        except OSError:
            return True  # reported by the path check
        sel = media.select(total, values["extract_from_frame"], values["extract_nth_frame"],
                           values["extract_to_frame"])
        what = (f"from {values['extract_from_frame']}, every {values['extract_nth_frame']}"
                + (f", to {values['extract_to_frame']}" if values["extract_to_frame"] >= 0 else ""))
        if sel.count < 1:
            self.err("DFM104", f"the input video gives no frames ({total} frames; {what})", st.statement.span,
                     parameter="video_init_path", help="lower extract_from_frame")
            return False
        given = self.settings.get("frames") or self.settings.get("duration")
        if given is None:
            values["frames"] = sel.count
        elif values["frames"] > sel.count:
            self.err("DFM104", f"the input video gives {sel.count} frames ({total}; {what}) but the scene has "
                     f"{values['frames']}", given.statement.span, parameter=given.statement.name,
                     help=f"set `frames {sel.count}`, or remove it: video mode renders the whole extraction")
            return False
        return True

    def interpolation_frames(self, settings: dict) -> None:
        """In interpolation mode the prompts decide the frame count; `frames` may only agree."""
        keys = [f for f, _ in self.result.prompts]
        if not keys:
            return
        if settings["interpolate_key_frames"]:
            count = max(keys) + 1
        else:
            count = (len(keys) - 1) * (settings["interpolate_x_frames"] + 1) + 1
        if count > cat.MAX_FRAMES:
            st = next(st for name, st in self.prompt_statements if name == "prompt")
            self.err("DFM104", f"the prompts make {count} interpolation frames, more than {cat.MAX_FRAMES}",
                     st.span, parameter="prompt", help="move the last prompt earlier or lower interpolate_x_frames")
            count = 1
        given = self.settings.get("frames") or self.settings.get("duration")
        if given is not None and settings["frames"] != count:
            self.warn("DFM304", f"in interpolation mode the prompts make {count} frames; "
                      f"`{given.statement.name}` is ignored", given.statement.span, parameter="frames",
                      help=f"remove it, or set `frames {count}`")
        settings["frames"] = count
        settings["duration"] = count / settings["fps"]

    # -- settings with defaults
    def resolve_settings(self) -> dict | None:
        values: dict[str, object] = {}
        for p in cat.SETTINGS:
            s = self.settings.get(p.name)
            values[p.name] = s.value if s is not None else p.default
        values["model_sha256"] = self.settings["model_sha256"].value if "model_sha256" in self.settings else None
        mode = values["mode"] or "2d"
        values["mode"] = mode
        if not self.resolve_audio(values):
            return None
        if "frames" in self.settings and "duration" in self.settings:
            self.err("DFM108", "both `frames` and `duration` are set", self.settings["duration"].statement.span,
                     help="keep one: `frames 120` or `duration 8s`")
        if "duration" in self.settings and values["duration"] is not None:
            amount, unit, span = values["duration"]
            frames = self.frames(amount, unit, span, values, "duration")
            if frames is None:
                return None
            values["frames"] = max(1, frames)
        if values["frames"] > cat.MAX_FRAMES:
            self.err("DFM104", f"`duration` makes {values['frames']} frames, more than {cat.MAX_FRAMES}",
                     self.settings["duration"].statement.span, parameter="duration",
                     help="shorten the duration or lower the fps")
            return None
        if mode == "video" and not self.video_frames(values):
            return None
        values["duration"] = values["frames"] / values["fps"]
        self.family_defaults(values)
        xf = values["prompt_crossfade"]
        if isinstance(xf, tuple):
            amount, unit, span = xf
            xf = self.frames(amount, unit, span, values, "prompt_crossfade") or 0
        values["prompt_crossfade"] = int(xf or 0)
        for p, st in self.mode_specific:
            if mode not in p.modes:
                self.warn("DFM304", f"`{p.name}` has no effect in mode {mode}", st.name_span, parameter=p.name,
                          help=f"it is used in mode {', '.join(m for m in cat.MODES if m in p.modes)}")
        return values

    def family_defaults(self, values: dict) -> None:
        """The model family's own size, steps, cfg_scale and sampler (contract/families.py DEFAULTS: SDXL at
        1024x1024, turbo models at 512x512 with cfg 0 and 4 trailing steps…) wherever the scene sets none
        of them, with a note saying which. The model is the scene's; `dfm render --model` warns when its
        family's defaults differ (runtime/models.py family_warnings)."""
        st = self.settings.get("model")
        span = st.statement.span if st is not None else None
        try:
            fam = families.source_family(str(values["model"] or ""), self.base_dir)
        except UserError as e:  # an unsupported family, an unreadable header: the render refuses it
            if span is not None:
                self.warn("DFM405", e.message, span, parameter="model", help=e.help or None)
            return
        used = []
        for name, value in fam.defaults().items():
            p = cat.BY_NAME[name]
            if p.kind is Kind.SETTING:
                if name in self.settings:
                    continue
                values[name] = value
            else:
                if name in self.schedule_statements:
                    continue
                self.schedule_defaults[name] = float(value)
            shown = f"{value[0]}x{value[1]}" if name == "size" else f"{value:g}" if isinstance(value, float) else value
            used.append(f"{name} {shown}")
        if used and span is not None:
            self.diags.append(note("DFM207", f"defaults from the model's family, {fam.title}: {', '.join(used)} "
                                   f"(told by {fam.why})",
                                   span, parameter="model", path=self.path,
                                   help="set any of them in the scene to choose your own"))

    def unreached_edits(self, table: FrameTable) -> None:
        """A prompt whose editing or alternation never switches on some diffused frames it is in force
        (DFM504): A1111 counts the edit from the first step a frame runs, so an img2img frame that runs 8 of
        25 steps never reaches `[a:b:0.5]`. Said once per statement, with the first such frame."""
        cols = table.columns
        diffused = np.asarray(cols["diffused"], dtype=bool)
        evals = sampler_evaluations(str(table.settings.sampler), cols["steps"], cols["effective_steps"])
        for name, column, pieces in (("prompt", "prompt", "prompt_pieces"),
                                     ("negative", "negative_prompt", "negative_prompt_pieces")):
            for _, text, st in self.prompt_keys.get(name, []):
                rows = np.flatnonzero(diffused & (cols[column] == text))
                if not len(rows):
                    continue
                values = cols[pieces][rows].tolist()
                switch = {v: prompt_syntax.first_switch(v) for v in set(values)}
                firsts = np.array([switch[v] if switch[v] is not None else -1 for v in values])
                edits = firsts >= 0
                never = edits & (firsts + 1 > evals[rows] - 1)  # evaluation first+1 is past the last one run
                if not never.any():
                    continue
                f = int(rows[np.argmax(never)])
                self.warn("DFM504", f"the prompt's editing or alternation never switches on {int(never.sum())} of "
                          f"its {int(edits.sum())} diffused frame(s), the first at frame {f}: it runs "
                          f"{int(evals[f])} sampler evaluation(s) and the first switch comes after evaluation "
                          f"{int(firsts[np.argmax(never)])} (A1111 counts from the first step a frame runs)",
                          st.span, parameter=name, frame=f,
                          help="write the `when` as a step within what runs (`[a:b:2]`), or lower `strength` so "
                          "that more steps run")

    def zero_step_frames(self, settings: dict, values: dict[str, np.ndarray]) -> None:
        """Deforum's int((1 - strength) × steps) is kept, so with few steps a strength below 1 can round to
        0 steps (4 steps at 0.8): such a frame is not diffused at all. Say so, once, at the first one (from
        the schedules, as lower.py computes `effective_steps`, so that `dfm check` says it too)."""
        if settings["mode"] not in ("2d", "3d", "video") or settings["frames"] < 1 or self.result.errors:
            return  # stills and interpolation rows are full txt2img; an error (strength out of range) first
        strength = np.clip(values["strength"], 0.0, 1.0)
        with np.errstate(all="ignore"):
            eff = effective_steps(strength, values["steps"])
        cadence = 1 if settings["mode"] == "video" else int(settings["cadence"])
        zero = cadence_plan(len(strength), cadence)[0] & (eff == 0) & (strength < 1.0)
        if settings["mode"] != "video" and not settings["init_image"]:
            zero[0] = False  # frame 0 is txt2img: the full schedule
        if not zero.any():
            return
        f = int(np.argmax(zero))
        steps = int(values["steps"][f])
        st = self.schedule_statements.get("strength") or self.schedule_statements.get("steps")
        if st is None:
            st = self.settings["model"].statement if "model" in self.settings else None
        span = st.span if st is not None else ir.Span(1, 1, 1, 2, 0, 1)
        # the fixes, found with the same float64 arithmetic (1 - 0.8 is 0.19999999999999996: 5 steps still
        # run 0): the fewest steps that run one at this strength, the largest strength (in 0.001s) at these
        ns = np.arange(1, int(cat.BY_NAME["steps"].max) + 1)
        runs = effective_steps(np.full(len(ns), strength[f]), ns) >= 1
        fewest = int(ns[np.argmax(runs)]) if runs.any() else None
        grid = np.round(np.arange(1000, -1, -1) / 1000, 3)
        most = float(grid[np.argmax(effective_steps(grid, np.full(len(grid), steps)) >= 1)])
        raise_steps = f"raise `steps` (to {fewest} for this strength) or " if fewest else ""
        self.warn("DFM406", f"{int(zero.sum())} diffused frame(s) run 0 steps, the first at frame {f}: "
                  f"int((1 - {strength[f]:g}) × {steps}) = 0, so it keeps the warped previous frame",
                  span, parameter="strength", frame=f,
                  help=f"{raise_steps}keep strength at or below {most:g} with {steps} steps")

    # -- per-frame values
    def evaluate(self, keys: dict[str, list[ResolvedKey]], frames: int, env: dict) -> dict[str, np.ndarray]:
        values: dict[str, np.ndarray] = {}
        for p in cat.SCHEDULES:
            ks = [k for k in keys.get(p.name, []) if k.frame < frames]
            if not ks:
                default = self.schedule_defaults.get(p.name, p.default)
                values[p.name] = np.full(frames, float(default), dtype=np.float64)
                continue
            arr = evaluate_keys(ks, frames, env)
            self.validate_frames(p, arr, ks)
            values[p.name] = arr
        return values

    def check_finite(self, columns: dict[str, np.ndarray]) -> bool:
        """Every float column is finite. The schedules were checked frame by frame; what remains are the
        columns the lowering accumulates (the camera), each blamed on the schedule it adds up."""
        ok = True
        reported = {d.parameter for d in self.result.errors}
        for name, col in columns.items():
            if col.dtype != np.float64 or np.isfinite(col).all():
                continue
            source = ACCUMULATED.get(name, name)
            if source in reported:  # its schedule is already an error at the frame it breaks
                ok = False
                continue
            f = int(np.argmax(~np.isfinite(col)))
            st = self.schedule_statements.get(source)
            span = st.span if st is not None else self.scene.statements[0].span
            if name in ACCUMULATED:
                self.err("DFM402", f"`{source}` adds up to an infinite camera (`{name}`) at frame {f}", span,
                         parameter=source, frame=f, note="motion values are per-frame increments that accumulate",
                         help=f"make `{source}` smaller or the scene shorter")
            else:
                self.err("DFM402", f"the table's `{name}` is not finite at frame {f}", span, parameter=source,
                         frame=f, help="guard the expression that feeds it, e.g. with `where` or `clamp`")
            ok = False
        return ok

    def validate_frames(self, p: Param, arr: np.ndarray, keys: list[ResolvedKey]) -> None:
        bad = ~np.isfinite(arr)
        code = "DFM402"
        if not bad.any():
            bad, code = _out_of_range(p, arr), "DFM401"
        if not bad.any():
            return
        f = int(np.argmax(bad))
        i = next((i for i in range(len(keys) - 1, -1, -1) if keys[i].frame <= f), 0)
        key = keys[i]
        # between two number keys the value heads for the next key: if this key's own value is fine,
        # the next one pulls the schedule out of range
        if (code == "DFM401" and key.is_number and i + 1 < len(keys) and f > key.frame
                and not _out_of_range(p, arr[key.frame:key.frame + 1]).any()):
            key = keys[i + 1]
        if code == "DFM402":  # blame the key whose own value is not finite, if one is
            key = next((k for k in keys if not np.isfinite(evaluate_frames(k.value, self.env, k.frame,
                                                                              k.frame + 1)[0])), key)
        v = arr[f]
        if code == "DFM402":
            self.err(code, f"`{p.name}` is {v} at frame {f}", key.span, parameter=p.name, frame=f,
                     note="a division by zero, or a function outside its domain (log of a negative, sqrt…)",
                     help="guard the expression, e.g. with `where` or `max`")
        else:
            self.err(code, f"`{p.name}` is {v:.6g} at frame {f}, outside {p.range_text()}", key.span,
                     parameter=p.name, frame=f, note=f"{p.name} must stay in {p.range_text()} on every frame",
                     help="scale or clamp the expression, e.g. `clamp(…, lo, hi)`")

    # parameter type -> the method that converts one value (CONVERTERS) or the whole statement
    CONVERTERS = {"enum": enum_value, "bool": bool_value, "size": size_value, "string": string_value,
                  "path": string_value, "time": time_value, "int": number_value, "float": number_value,
                  "seed": number_value}
    STATEMENT_CONVERTERS = {"seed": seed_setting, "model": model_setting}
    NAMED_CONVERTERS = {"audio": audio_setting}  # parameters whose statement has a form of its own


def _out_of_range(p: Param, arr: np.ndarray) -> np.ndarray:
    bad = np.zeros(arr.shape, dtype=bool)
    if p.min is not None:
        bad |= arr <= p.min if p.min_open else arr < p.min
    if p.max is not None:
        bad |= arr >= p.max if p.max_open else arr > p.max
    return bad


def _value_offsets(body: str, value: str) -> list[tuple[int, int]] | None:
    """For each character of a string's value, its [start, end) in the source text between the quotes
    (an escape like `\\n` is two source characters for one); None if reading `body` does not give `value`."""
    if unescape(body) != value:
        return None
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            one = len(unescape(body[i:i + 2])) == 1  # an escape the parser resolves to one character
            out += [(i, i + 2)] if one else [(i, i + 1), (i + 1, i + 2)]
            i += 2
        else:
            out.append((i, i + 1))
            i += 1
    return out


__all__ = ["CompileResult", "compile_scene", "compile_source", "schedule_values", "source_hash"]
