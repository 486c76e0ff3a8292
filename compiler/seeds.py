"""Seeds: the `seed N [behaviour [N]]` statement, and which behaviour a scene's seeds follow once its mode
is known (`seed_schedule` implies `seed_behavior schedule`; lower.py computes the seeds themselves)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..dsl import ir
from . import catalogue as cat
from .catalogue import Param
from .context import Setting
from .setting_values import convert

if TYPE_CHECKING:
    from .context import CompileContext


def seed_setting(ctx: CompileContext, settings: dict[str, Setting], p: Param, st: ir.Statement) -> int | None:
    """`seed 42`, `seed 42 fixed`, `seed 42 iter 2`: the seed, with `seed_behavior` and `seed_iter_n` set in
    `settings` from the same statement."""
    args = list(st.args)
    if not args or len(args) > 3:
        ctx.err("DFM105", "`seed` takes a number, then optionally a behaviour and its N", st.span,
                parameter="seed", help="e.g. `seed 42`, `seed 42 fixed`, `seed 42 iter 2`")
        return None
    first = args[0]
    if isinstance(first, ir.Variable) and first.name in cat.SEED_BEHAVIOURS and len(args) == 1:
        ctx.err("DFM103", "`seed` starts with the seed number", first.span, parameter="seed",
                help=f"write `seed 42 {first.name}` (or `seed_behavior {first.name}`)")
        return None
    value = convert(ctx, p, first)
    if len(args) >= 2:
        beh = args[1]
        name = beh.name if isinstance(beh, ir.Variable) else None
        if name is None or name not in cat.SEED_BEHAVIOURS:
            shown = name or "this"
            guess = cat.did_you_mean(shown, cat.SEED_BEHAVIOURS) if name else None
            ctx.err("DFM102", f"unknown seed behaviour `{shown}`", beh.span, parameter="seed",
                    help=(f"did you mean `{guess}`? " if guess else "") +
                    f"behaviours: {', '.join(cat.SEED_BEHAVIOURS)}")
        else:
            settings["seed_behavior"] = Setting(name, st)
    if len(args) == 3:
        n = args[2]
        if settings.get("seed_behavior") and settings["seed_behavior"].value != "iter":
            ctx.err("DFM105", "only `iter` takes an N", n.span, parameter="seed",
                    help="remove the number, or use `iter`")
        else:
            iv = convert(ctx, cat.BY_NAME["seed_iter_n"], n)
            if iv is not None:
                settings["seed_iter_n"] = Setting(iv, st)
    return value


def settle_seed_behavior(ctx: CompileContext, given: dict[str, Setting], seed_schedule: ir.Statement | None,
                         values: dict) -> None:
    """`seed_behavior schedule` takes its seeds from a `seed_schedule`; a seed_schedule with no behaviour
    chosen implies it. Both need a mode whose diffusions follow the frames (2D, 3D, video). Sets
    `values["seed_behavior"]`; `given` holds the settings the scene wrote."""
    chosen = given.get("seed_behavior")
    in_mode = values["mode"] in cat.SEEDED_MODES
    if seed_schedule is not None and chosen is None and in_mode:
        values["seed_behavior"] = "schedule"
    elif seed_schedule is not None and values["seed_behavior"] != "schedule" and in_mode:
        ctx.warn("DFM108", f"`seed_schedule` has no effect: seed_behavior is {values['seed_behavior']}",
                 seed_schedule.name_span, parameter="seed_schedule",
                 help="write `seed_behavior schedule`, or remove the seed_schedule")
    if values["seed_behavior"] != "schedule" or chosen is None:
        return
    if not in_mode:
        ctx.warn("DFM304", f"seed_behavior schedule has no effect in mode {values['mode']}: the seeds follow "
                 "iter", chosen.statement.span, parameter="seed_behavior",
                 help="use it in mode 2d, 3d or video")
        values["seed_behavior"] = "iter"
    elif seed_schedule is None:
        ctx.err("DFM108", "seed_behavior schedule needs a `seed_schedule`", chosen.statement.span,
                parameter="seed_behavior",
                help="add one, e.g. `seed_schedule 0:(s), 30:(s + 30)`, or choose another behaviour")
