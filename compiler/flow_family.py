"""What a rectified-flow model family (SD3 / SD3.5, Flux: contract/families.py FLOW_BASES) makes of a scene,
said at check time, never silently.

Errors, where the render could not do what the scene says:

- the sampler: a flow family samples with `flow_euler` only, and an SD family never with it (DFM107);
- the size: each side a multiple of 16 (the VAE's 8 times the transformer's 2x2 patches), the nearest named
  (DFM104);
- ControlNet units with SD3 / SD3.5: diffusers has no SD3 ControlNet img2img pipeline (DFM407; Flux.1's units
  run, their models' family is checked in controlnet.py);
- textual-inversion embeddings: T5 has no token for them (DFM405).

Warnings, where the family ignores what the scene sets:

- negative prompts on Flux.1 [dev] (its guidance is embedded: no unconditional pass to steer away from), and
  on Flux.1 [schnell] and SD3.5 Large Turbo (no guidance at all);
- `cfg_scale` on Flux.1 [schnell] and SD3.5 Large Turbo (they run without guidance: cfg 0);
- `clip_skip`, and A1111's attention weights `(word:1.2)` and `BREAK` in a prompt: T5 reads the text as
  written, without them (DFM304 for the parameter, DFM502 at the prompt).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..contract import controlnet as cn
from ..contract import families
from ..contract.errors import UserError
from ..dsl import ir
from . import catalogue as cat
from . import prompt_syntax
from .lower import NEG_MARKER
from .string_spans import string_span

if TYPE_CHECKING:
    from .context import CompileContext
    from .statements import Statements

PATCH = families.FLOW_PATCH
NO_GUIDANCE = ("flux-schnell", "sd35-turbo")  # run without guidance: cfg 0, no unconditional pass
NO_NEGATIVE = ("flux-dev", "flux-kontext", *NO_GUIDANCE)  # nothing the negative prompt could steer
_BACKTICKS = re.compile(r"`[^`]*`")


def check_flow_family(ctx: CompileContext, stmts: Statements, settings: dict) -> None:
    """The checks above, for the scene's own model (a model that cannot be read is reported by
    model_setting.py, DFM405)."""
    try:
        fam = families.source_family(str(settings.get("model") or ""), ctx.base_dir)
    except UserError:
        return
    model = stmts.settings.get("model")
    model_span = model.statement.span if model is not None else ctx.first_span()
    _check_sampler(ctx, stmts, settings, fam, model_span)
    _check_true_cfg(ctx, stmts, fam)
    if not fam.flow:
        return
    _check_size(ctx, stmts, settings, fam, model_span)
    _check_controlnet(ctx, stmts, settings, fam)
    _check_ignored(ctx, stmts, fam)
    _check_embeddings(ctx, stmts, fam)
    true_cfg = fam.base == "flux" and stmts.schedules.get("true_cfg_scale") is not None  # Flux reads its negative
    for kind, st in stmts.prompts:
        _check_prompt(ctx, kind, st, fam, true_cfg)


def _check_sampler(ctx: CompileContext, stmts: Statements, settings: dict, fam: families.Family,
                   model_span: ir.Span) -> None:
    sampler = str(settings.get("sampler") or "")
    flow_sampler = sampler in cat.FLOW_SAMPLERS
    if fam.flow == flow_sampler:
        return
    given = stmts.settings.get("sampler")
    span = given.statement.span if given is not None else model_span
    if fam.flow:
        ctx.err("DFM107", f"{fam.title} is a rectified-flow model: it samples with `{families.FLOW_SAMPLER}`, "
                f"not `{sampler}`", span, parameter="sampler",
                help=f"write `sampler {families.FLOW_SAMPLER}`, or leave `sampler` out (the family's default)")
    else:
        ctx.err("DFM107", f"`{sampler}` samples rectified-flow models (SD3 / SD3.5, Flux); the scene's model is "
                f"{fam.title} ({fam.why})", span, parameter="sampler",
                help="leave `sampler` out (the family's default), or write e.g. `sampler euler_a`")


def nearest_sizes(side: int) -> tuple[int, ...]:
    """The multiples of PATCH nearest to `side`: itself if it is one, else the one below and the one above."""
    below = side // PATCH * PATCH
    return (side,) if below == side else tuple(s for s in (below, below + PATCH) if s >= PATCH)


def _check_size(ctx: CompileContext, stmts: Statements, settings: dict, fam: families.Family,
                model_span: ir.Span) -> None:
    width, height = settings.get("size") or (0, 0)
    if not (width % PATCH or height % PATCH):
        return
    given = stmts.settings.get("size")
    span = given.statement.span if given is not None else model_span
    options = [f"{w}x{h}" for w in nearest_sizes(width) for h in nearest_sizes(height)]
    ctx.err("DFM104", f"size {width}x{height}: {fam.title} needs each side a multiple of {PATCH} (its VAE's 8 "
            "times its transformer's 2x2 patches)", span, parameter="size",
            help="the nearest sizes: " + ", ".join(f"`size {o}`" for o in options))




def _check_controlnet(ctx: CompileContext, stmts: Statements, settings: dict, fam: families.Family) -> None:
    if fam.base != "sd3" and fam.name != "flux-kontext":
        return
    why = cn.SD3_CONTROLNET_WHY if fam.base == "sd3" else cn.KONTEXT_CONTROLNET_WHY
    for n in range(1, cn.MAX_UNITS + 1):
        name = cn.column(n, "model")
        if settings.get(name) is None or not settings.get(cn.column(n, "enabled"), True):
            continue
        given = stmts.settings.get(name)
        ctx.err("DFM407", f"ControlNet unit {n} cannot run with {fam.title}: {why}",
                given.statement.span if given is not None else ctx.first_span(), parameter=name,
                help="render ControlNet scenes with Flux.1, SDXL or SD 1.x, or remove the unit's `cn_…` statements")


def _check_ignored(ctx: CompileContext, stmts: Statements, fam: families.Family) -> None:
    cfg = stmts.schedules.get("cfg_scale")
    if cfg is not None and fam.name in NO_GUIDANCE:
        ctx.warn("DFM304", f"`cfg_scale` has no effect with {fam.title}: it is distilled to run without guidance "
                 "(cfg 0), so no unconditional pass is run", cfg.span, parameter="cfg_scale",
                 help="remove the statement; for guidance use a guided model (Flux.1 [dev], SD3.5 Large)")
    clip_skip = stmts.schedules.get("clip_skip")
    if clip_skip is not None:
        ctx.warn("DFM304", f"`clip_skip` has no effect with {fam.title}: its prompts are encoded as the model "
                 "was trained, with T5 beside CLIP, and no CLIP layer is skipped", clip_skip.span,
                 parameter="clip_skip", help="remove the statement")


def _check_true_cfg(ctx: CompileContext, stmts: Statements, fam: families.Family) -> None:
    """`true_cfg_scale` is Flux's: said where it does nothing (another family, or no negative prompt)."""
    st = stmts.schedules.get("true_cfg_scale")
    if st is None:
        return
    if fam.base != "flux":
        ctx.warn("DFM304", f"`true_cfg_scale` has no effect with {fam.title}: it is Flux's guidance with the "
                 "negative prompt (for this model, `cfg_scale` guides)", st.span, parameter="true_cfg_scale",
                 help="remove the statement")
    elif not any(kind == "negative" for kind, _ in stmts.prompts) and not any(
            isinstance(p.args[-1], ir.String) and NEG_MARKER.search(p.args[-1].value) for _, p in stmts.prompts
            if p.args):
        ctx.warn("DFM304", "`true_cfg_scale` has no effect without a negative prompt: its second pass steers "
                 "away from the negative", st.span, parameter="true_cfg_scale",
                 help='add `negative "…"` (or a `--neg` part), or remove the statement')


def _check_embeddings(ctx: CompileContext, stmts: Statements, fam: families.Family) -> None:
    """Textual-inversion embeddings are made for SD's CLIP encoders; a flow model reads its prompt mostly
    through T5, which no embedding file covers: refused rather than half-applied."""
    for st in stmts.networks:
        if st.name == "embedding":
            ctx.err("DFM405", f"embeddings are not loaded into {fam.title}: its T5 encoder, which reads most of the "
                    "prompt, has no token for them", st.span, parameter="embedding",
                    help="describe the concept in words (T5 reads sentences well), or use a LoRA made for the model")


def _negative_ignored(fam: families.Family) -> str:
    if fam.name in ("flux-dev", "flux-kontext"):
        return (f"{fam.title} ignores negative prompts: its guidance is embedded in the model, and no "
                "unconditional pass is run")
    return f"{fam.title} ignores negative prompts: it runs without guidance (cfg 0)"


def _check_prompt(ctx: CompileContext, kind: str, st: ir.Statement, fam: families.Family, true_cfg: bool) -> None:
    text = st.args[-1] if st.args else None
    if not isinstance(text, ir.String):  # (a composable prompt's parts: each as the model reads it)
        return
    if kind == "negative" and fam.name in NO_NEGATIVE and not true_cfg:
        ctx.warn("DFM304", _negative_ignored(fam), text.span, parameter=kind, help="remove the statement")
        return
    value = text.value
    if kind == "prompt":
        neg = NEG_MARKER.search(value)
        if neg is not None and fam.name in NO_NEGATIVE and not true_cfg:
            ctx.warn("DFM304", f"`--neg`: {_negative_ignored(fam)}",
                     string_span(ctx.scene.source, text, neg.start(), neg.end()), parameter=kind,
                     help="remove the negative part of the prompt")
    plain = _BACKTICKS.sub("1", value)  # a backtick expression is a number by the time the text is read
    pieces = prompt_syntax.pieces(plain)
    weighted = any(p != prompt_syntax.BREAK and p[1] != 1.0 for p in pieces)
    breaks = prompt_syntax.BREAK in pieces
    if weighted or breaks:
        what = " and ".join(w for w, on in (("attention weights `(word:1.2)`", weighted), ("`BREAK`", breaks)) if on)
        ctx.warn("DFM502", f"{fam.title} does not honour {what}: its T5 encoder reads the words at weight 1, "
                 "in one sequence", text.span, parameter=kind,
                 help="write the emphasis into the words themselves (T5 reads sentences well)")


__all__ = ["PATCH", "check_flow_family", "nearest_sizes"]
