"""Per-frame values: every catalogue schedule evaluated over all frames (its keys, or its default), each
frame checked against the parameter's range, and the accumulated columns checked for overflow."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from ..dsl import ir
from . import catalogue as cat
from .catalogue import Param
from .expressions import evaluate_frames
from .lower import CAMERA_SCHEDULES
from .schedules import ResolvedKey, evaluate_keys

if TYPE_CHECKING:
    from .context import CompileContext


def evaluate_schedules(ctx: CompileContext, keys: dict[str, list[ResolvedKey]], frames: int, env: dict,
                       defaults: dict[str, float], *, settings: Mapping[str, object] | None = None
                       ) -> dict[str, np.ndarray]:
    """One float64 array of `frames` values per catalogue schedule that has a column with these `settings`
    (`catalogue.column_present`: a ControlNet unit's only when it is active, …). A schedule the scene leaves out
    holds `defaults` (the model family's) or the catalogue's default."""
    values: dict[str, np.ndarray] = {}
    for p in cat.SCHEDULES:
        if settings is not None and not cat.column_present(p, settings):
            continue
        ks = [k for k in keys.get(p.name, []) if k.frame < frames]
        if not ks:
            default = defaults.get(p.name, p.default)
            values[p.name] = np.full(frames, float(default), dtype=np.float64)
            continue
        arr = evaluate_keys(ks, frames, env)
        validate_frames(ctx, p, arr, ks)
        values[p.name] = arr
    return values


def validate_frames(ctx: CompileContext, p: Param, arr: np.ndarray, keys: list[ResolvedKey]) -> None:
    """The first frame whose value is not finite (DFM402) or outside the range (DFM401), blamed on the key
    that makes it."""
    bad = ~np.isfinite(arr)
    code = "DFM402"
    if not bad.any():
        bad, code = out_of_range(p, arr), "DFM401"
    if not bad.any():
        renders_otherwise(ctx, p, arr, keys)
        return
    f = int(np.argmax(bad))
    i = next((i for i in range(len(keys) - 1, -1, -1) if keys[i].frame <= f), 0)
    key = keys[i]
    # between two number keys the value heads for the next key: if this key's own value is fine,
    # the next one pulls the schedule out of range
    if (code == "DFM401" and key.is_number and i + 1 < len(keys) and f > key.frame
            and not out_of_range(p, arr[key.frame:key.frame + 1]).any()):
        key = keys[i + 1]
    if code == "DFM402":  # blame the key whose own value is not finite, if one is
        key = next((k for k in keys if not np.isfinite(evaluate_frames(k.value, ctx.env, k.frame,
                                                                          k.frame + 1)[0])), key)
    v = arr[f]
    if code == "DFM402":
        ctx.err(code, f"`{p.name}` is {v} at frame {f}", key.span, parameter=p.name, frame=f,
                note="a division by zero, or a function outside its domain (log of a negative, sqrt…)",
                help="guard the expression, e.g. with `where` or `max`")
    else:
        ctx.err(code, f"`{p.name}` is {v:.6g} at frame {f}, outside {p.range_text()}", key.span,
                parameter=p.name, frame=f, note=f"{p.name} must stay in {p.range_text()} on every frame",
                help="scale or clamp the expression, e.g. `clamp(…, lo, hi)`")


def renders_otherwise(ctx: CompileContext, p: Param, arr: np.ndarray, keys: list[ResolvedKey]) -> None:
    """A value Deforum renders, but not as the parameter's name suggests (below `warn_below`): kept, with a
    warning at the first such frame saying what it does (DFM408)."""
    if p.warn_below is None:
        return
    low = arr < p.warn_below
    if not low.any():
        return
    f = int(np.argmax(low))
    key = keys[next((i for i in range(len(keys) - 1, -1, -1) if keys[i].frame <= f), 0)]
    ctx.warn("DFM408", f"`{p.name}` is {arr[f]:.6g} at frame {f}: {p.warn_why}", key.span, parameter=p.name, frame=f,
             help=f"keep it at {_fmt_bound(p.warn_below)} or above unless that is the effect you want")


def _fmt_bound(v: float) -> str:
    return f"{v:g}"


def out_of_range(p: Param, arr: np.ndarray) -> np.ndarray:
    """Which values fall outside the parameter's range (open or closed at each end), or are excluded."""
    bad = np.isin(arr, p.excluded) if p.excluded else np.zeros(arr.shape, dtype=bool)
    if p.min is not None:
        bad |= arr <= p.min if p.min_open else arr < p.min
    if p.max is not None:
        bad |= arr >= p.max if p.max_open else arr > p.max
    return bad


def check_finite(ctx: CompileContext, schedule_statements: dict[str, ir.Statement],
                 columns: dict[str, np.ndarray]) -> bool:
    """Every float column is finite. The schedules were checked frame by frame; what remains are the
    columns the lowering accumulates (the camera), each blamed on the schedule it adds up."""
    ok = True
    reported = {d.parameter for d in ctx.diags if d.is_error}
    for name, col in columns.items():
        if col.dtype != np.float64 or np.isfinite(col).all():
            continue
        source = CAMERA_SCHEDULES.get(name, name)
        if source in reported:  # its schedule is already an error at the frame it breaks
            ok = False
            continue
        f = int(np.argmax(~np.isfinite(col)))
        st = schedule_statements.get(source)
        span = st.span if st is not None else ctx.scene.statements[0].span
        if name in CAMERA_SCHEDULES:
            ctx.err("DFM402", f"`{source}` adds up to an infinite camera (`{name}`) at frame {f}", span,
                    parameter=source, frame=f, note="motion values are per-frame increments that accumulate",
                    help=f"make `{source}` smaller or the scene shorter")
        else:
            ctx.err("DFM402", f"the table's `{name}` is not finite at frame {f}", span, parameter=source,
                    frame=f, help="guard the expression that feeds it, e.g. with `where` or `clamp`")
        ok = False
    return ok
