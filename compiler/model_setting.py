"""The `model` statement (a hub id or a local file, optionally with its sha256) and the defaults of the
model's family (contract/families.py) for the settings and schedules the scene leaves out."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..contract import families
from ..contract.errors import UserError
from ..dsl import ir
from . import catalogue as cat
from .catalogue import Kind, Param
from .context import Setting
from .paths import exists

if TYPE_CHECKING:
    from .context import CompileContext

SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
LOCAL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".bin")


def model_setting(ctx: CompileContext, settings: dict[str, Setting], p: Param, st: ir.Statement) -> str | None:
    """`model "id or path"` or `model "file" sha256 "<hex>"`: the model (a local file resolved against the
    scene's folder), with `model_sha256` set in `settings` from the same statement."""
    args = list(st.args)
    ok = args and isinstance(args[0], ir.String) and (
        len(args) == 1 or (len(args) == 3 and isinstance(args[1], ir.Variable) and args[1].name == "sha256"
                           and isinstance(args[2], ir.String)))
    if not ok:
        ctx.err("DFM105", "`model` takes a quoted model id or path, optionally followed by sha256 \"<hex>\"",
                st.span, parameter="model",
                help='e.g. `model "models/dreamshaper.safetensors" sha256 "9a1f…"`')
        return None
    if len(args) == 3:
        digest = args[2].value
        if not SHA256.match(digest):
            ctx.err("DFM104", "sha256 must be 64 hexadecimal characters", args[2].span, parameter="model",
                    help="copy it from `sha256sum FILE`")
        else:
            settings["model_sha256"] = Setting(digest.lower(), st)
    value = args[0].value
    local = value.startswith((".", "/", "~")) or value.endswith(LOCAL_SUFFIXES)
    if local and ctx.base_dir is not None:
        full = Path(os.path.expanduser(value))
        full = full if full.is_absolute() else ctx.base_dir / full
        found = exists(ctx, "model", full, args[0])
        if found is None:
            return None
        if not found:
            ctx.warn("DFM403", f"model `{value}` does not exist", args[0].span, parameter="model",
                     help="paths are relative to the scene file; or pass --model to dfm render")
        return str(full)
    return value


def family_defaults(ctx: CompileContext, given: dict[str, Setting], schedule_statements: dict[str, ir.Statement],
                    values: dict) -> dict[str, float]:
    """The model family's own size, steps, cfg_scale and sampler (contract/families.py DEFAULTS: SDXL at
    1024x1024, turbo models at 512x512 with cfg 0 and 4 trailing steps, Flux and SD3 at 1024x1024 with
    flow_euler…) wherever the scene sets none
    of them, with a note saying which. Settings go into `values`; the schedules' defaults are returned.
    The model is the scene's; `dfm render --model` warns when its family's defaults differ
    (runtime/model_family.py family_warnings)."""
    st = given.get("model")
    span = st.statement.span if st is not None else None
    schedule_defaults: dict[str, float] = {}
    try:
        fam = families.source_family(str(values["model"] or ""), ctx.base_dir)
    except UserError as e:  # an unsupported family, an unreadable header: the render refuses it
        if span is not None:
            ctx.warn("DFM405", e.message, span, parameter="model", help=e.help or None)
        return schedule_defaults
    used = []
    for name, value in fam.defaults().items():
        p = cat.BY_NAME[name]
        if p.kind is Kind.SETTING:
            if name in given:
                continue
            values[name] = value
        else:
            if name in schedule_statements:
                continue
            schedule_defaults[name] = float(value)
        shown = f"{value[0]}x{value[1]}" if name == "size" else f"{value:g}" if isinstance(value, float) else value
        used.append(f"{name} {shown}")
    if used and span is not None:
        ctx.note("DFM207", f"defaults from the model's family, {fam.title}: {', '.join(used)} "
                 f"(told by {fam.why})", span, parameter="model",
                 help="set any of them in the scene to choose your own")
    return schedule_defaults
