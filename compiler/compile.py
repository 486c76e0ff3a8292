"""The IR → checked settings, resolved keyframes, per-frame values and the FrameTable.

`compile_scene` runs the compiler's passes in order, each a module with plain inputs and outputs that
reports into one diagnostics list (context.py), collecting every diagnostic, never stopping at the first:

1. statements.py      every statement checked against the parameter catalogue and sorted by kind
                      (setting_values.py, seeds.py, model_setting.py, scene_audio.py, schedule_keys.py)
2. scene_settings.py  settings with defaults, the audio track, the frame count, the model family's defaults
3. scene_prompts.py   prompt keys at their frames (key_times.py), their texts checked
4. seeds.py           which behaviour the seeds follow (`seed_schedule`)
5. schedule_keys.py   schedule keys resolved to frames; frame_values.py evaluates and checks every frame
6. lower.py           the FrameTable; render_warnings.py says what the render will make of it. Without a
                      table (`dfm check`, the language server), render_warnings.py computes only the rows
                      its warnings read, so that check reports every diagnostic compile does
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..contract import families
from ..contract.errors import UserError
from ..contract.modes import mode as mode_of
from ..contract.table import FrameTable, Settings
from ..dsl import ir
from ..dsl.diagnostics import Diagnostic, error
from ..dsl.parser import parse, parse_statement
from . import catalogue as cat
from . import controlnet, deforum_names, frame_values, key_times, networks, string_spans
from .catalogue import Param
from .context import CompileContext
from .expressions import environment
from .finishing import check_finishing
from .flow_family import check_flow_family
from .frame_values import check_finite, evaluate_schedules
from .hybrid import check_hybrid
from .lower import PromptValueError, accumulated_camera, source_hash
from .lower import build_table as lower_table
from .render_warnings import edit_columns, unreached_edits, zero_step_frames
from .scene_audio import audio_features
from .scene_prompts import Prompts, check_prompt_values, resolve_prompts
from .scene_settings import interpolation_frames, resolve_settings
from .schedule_keys import read_schedule, resolve_schedules
from .schedules import ResolvedKey
from .seeds import settle_seed_behavior
from .statements import Statements, read_statements


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
                   build_table: bool = True, preview: bool = False) -> CompileResult:
    """`text` compiled; with `preview`, for a preview without a model (CompileContext.preview)."""
    parsed = parse(text, path)
    result = compile_scene(parsed.scene, base_dir=base_dir, build_table=build_table and not parsed.diagnostics,
                           preview=preview)
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


class _NetworksContext(CompileContext):
    """The context with what networks.Networks also needs of the compiler (networks.Context): three
    functions of the passes, so that the passes need not import one another through the context."""

    def key_frame(self, t: ir.Time, settings: dict, p_name: str) -> int | None:
        return key_times.key_frame(self, t, settings, p_name)

    def string_span(self, s: ir.String, start: int, end: int) -> ir.Span:
        return string_spans.string_span(self.scene.source, s, start, end)

    def validate_frames(self, p: Param, arr: np.ndarray, keys: list[ResolvedKey]) -> None:
        frame_values.validate_frames(self, p, arr, keys)


def compile_scene(scene: ir.Scene, base_dir: str | os.PathLike | None = None, *,
                  build_table: bool = True, preview: bool = False) -> CompileResult:
    if base_dir is None and scene.path not in ("<string>", "<stdin>", "<schedule>"):
        base_dir = Path(scene.path).resolve().parent
    ctx = _NetworksContext(scene, Path(base_dir) if base_dir else None, preview=preview)
    result = CompileResult(diagnostics=ctx.diags, scene=scene)
    _compile(ctx, result, build_table=build_table)
    return result


def schedule_values(text: str, frames: int, *, fps: float = 15.0, bpm: float | None = None, seed: int = 42,
                    name: str = "translation_x") -> tuple[np.ndarray | None, list[Diagnostic]]:
    """One schedule written as in a scene (`0:(1), 10:(2)` or `1.02`) evaluated over `frames` frames with
    the compiler's own key resolution and checks, as parameter `name` (translation_x: no range, so only
    real errors are reported). Returns (values or None, diagnostics)."""
    st = parse_statement(f"{name} {text}")
    if st is None:
        return None, parse(f"{name} {text}", "<schedule>").diagnostics
    ctx = CompileContext(ir.Scene((st,), path="<schedule>"), None)
    settings = {**cat.setting_defaults(), "frames": frames, "fps": fps, "bpm": bpm, "seed": seed}
    statements: dict[str, ir.Statement] = {}
    unevaluable: set[str] = set()
    read_schedule(ctx, statements, unevaluable, cat.BY_NAME[name], st)
    ctx.env = environment(frames, fps, bpm, seed)
    keys = resolve_schedules(ctx, statements, unevaluable, settings)
    values = None if ctx.has_errors else evaluate_schedules(ctx, keys, frames, ctx.env, {})
    return (values[name] if values is not None else None), ctx.diags


def _compile(ctx: CompileContext, result: CompileResult, *, build_table: bool) -> None:
    """The passes, in order, filling `result`; each stops the compile only where what follows would
    have nothing sound to work on (no frame count, an infinite camera)."""
    stmts = read_statements(ctx)
    resolved = resolve_settings(ctx, stmts)
    if resolved is None:
        return
    settings = resolved.values
    check_flow_family(ctx, stmts, settings)  # SD3 / Flux: sampler, size, what the family ignores
    units = controlnet.settle_units(ctx, stmts, settings)
    check_hybrid(ctx, stmts, settings)
    check_finishing(ctx, stmts, settings)
    nets = networks.Networks(ctx, settings)
    for st in stmts.networks:
        nets.statement(st)
    prompts = resolve_prompts(ctx, stmts.prompts, settings, nets)
    result.prompts, result.negatives = prompts.prompts, prompts.negatives
    settle_seed_behavior(ctx, stmts.settings, stmts.schedules.get("seed_schedule"), settings)
    if mode_of(settings["mode"]).between_prompts:
        interpolation_frames(ctx, stmts.settings, stmts.prompts, result.prompts, settings)
    nets.settle(settings)
    result.settings = Settings(settings)
    frames = settings["frames"]
    env = environment(frames, settings["fps"], settings["bpm"], settings["seed"])
    features = audio_features(ctx, resolved.track, settings)
    env.update(features)
    ctx.env = env
    check_prompt_values(ctx, prompts, env, frames, settings)
    keys = resolve_schedules(ctx, stmts.schedules, stmts.unevaluable, settings)
    result.schedules = keys
    if not result.prompts:
        ctx.err("DFM305", "the scene has no prompt", ctx.first_span(),
                help='add one, e.g. `prompt 0 "a lighthouse at dawn"`')
    values = evaluate_schedules(ctx, keys, frames, env, resolved.schedule_defaults, settings=settings)
    controlnet.check_windows(ctx, stmts, values, units)
    nets.evaluate(frames, env)
    result.values = values
    with np.errstate(all="ignore"):  # an overflow is reported as a diagnostic, never a numpy warning
        camera = accumulated_camera(values)  # what check needs of the table: cheap, so check runs it too
    if not check_finite(ctx, stmts.schedules, camera):
        return
    zero_step_frames(ctx, stmts.settings, stmts.schedules, settings, values)
    if ctx.has_errors:
        return
    if build_table:
        _lower(ctx, result, stmts, prompts, nets, env, features, frames)
        return
    # `dfm check`: the table's own warnings from only what they read of it, so check says all compile does
    try:
        with np.errstate(all="ignore"):
            cols = edit_columns(result.settings, values, prompts.keys, env)
    except PromptValueError as e:
        _prompt_value_error(ctx, prompts, e)
        return
    if cols is not None:
        unreached_edits(ctx, prompts.keys, cols, str(result.settings.sampler))


def uncond_rule(model: str, base_dir) -> str:
    """When the scene's model runs an unconditional pass (lower.unet_evals): with a negative prompt above
    true_cfg_scale 1 for Flux, never for guidance-embedded LCMs, above cfg 1 only for SD3 / SD3.5, else
    A1111's rule. A model that cannot be told: A1111's."""
    try:
        fam = families.source_family(model, base_dir)
    except UserError:
        return "sd"
    if fam.base == "flux":
        return "flux"
    if fam.guidance_embedded:
        return "never"
    return "cfg" if fam.flow else "sd"


def _lower(ctx: CompileContext, result: CompileResult, stmts: Statements, prompts: Prompts,
           nets: networks.Networks, env: dict, features: dict[str, np.ndarray], frames: int) -> None:
    """The FrameTable of a scene that checked clean, with the audio features and network columns, and the
    warnings that need the table."""
    with np.errstate(all="ignore"):
        try:
            table = lower_table(result.settings, result.values, result.prompts, result.negatives,
                                source=ctx.scene.source, path=ctx.path, env=env,
                                uncond=uncond_rule(str(result.settings.model or ""), ctx.base_dir))
        except PromptValueError as e:
            _prompt_value_error(ctx, prompts, e)
            return
    if features and len(table) == frames:  # the features as columns, so compile and plot show them
        table = table.with_columns(**{f"audio_{k}": v for k, v in features.items()})
    table = nets.lower(table)
    if check_finite(ctx, stmts.schedules, table.columns):
        result.table = table
        unreached_edits(ctx, prompts.keys, table.columns, str(table.settings.sampler))


def _prompt_value_error(ctx: CompileContext, prompts: Prompts, e: PromptValueError) -> None:
    """A weight not finite on a row `check_prompt_values` did not check (it checks every row the lowering
    makes: this is a safety net), reported as that pass would."""
    _, span, name = prompts.expressions.get(e.expression, (None, ctx.scene.statements[0].span, "prompt"))
    ctx.err("DFM402", f"the prompt weight `{e.expression[:40]}` is {e.value} at frame {e.frame}", span,
            parameter=name, frame=e.frame, help="guard the expression, e.g. with `where` or `max`")


__all__ = ["CompileResult", "compile_scene", "compile_source", "schedule_values", "source_hash"]
