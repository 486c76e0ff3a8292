"""ControlNet units (`cn_1_model`, `cn_1_weight`, … as Deforum names them): which are active, and whether
each can render — its model's family against the scene's, its source, its preprocessor's weights.

Torch-free and weight-free (`dfm check` runs it): a model's family is read from its config.json or its
.safetensors header, a preprocessor's weights are looked for on disk. A unit is active when its model is
set and `cn_N_enabled` is not false; an inactive unit's rows are dropped from the settings, so the table of
a scene without ControlNet is what it always was (contract/controlnet.py).
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..contract import controlnet as cn
from ..contract import families
from ..contract.errors import UserError
from ..contract.files import kind_of, read_limited, shown
from ..dsl import ir
from . import catalogue as cat
from .networks import HUB_ID
from .paths import scene_relative, stem_index

if TYPE_CHECKING:
    from .context import CompileContext
    from .statements import Statements

MODEL_SUFFIXES = (".safetensors", ".pth", ".ckpt", ".pt", ".bin")  # A1111's models/ControlNet holds these
A1111_NAME = re.compile(r"^(?P<stem>[^/\\]+?)(?:\s*\[(?P<hash>[0-9a-fA-F]{6,64})\])?$")
MAX_CONFIG_BYTES = 1 << 20
BASE_TITLES = {"sd15": "SD 1.x", "sd21": "SD 2.x", "sdxl": "SDXL", "flux": "Flux.1", "sd3": "SD3"}
EXAMPLES = {"sdxl": "xinsir/controlnet-canny-sdxl-1.0", "flux": "InstantX/FLUX.1-dev-Controlnet-Canny"}
UNNAMED = "nothing in the hub id names a family: SD 1.x assumed"  # model_base's weakest answer
# the cross-attention width of a UNet (and of its ControlNet) tells the architecture
CROSS_ATTENTION = {768: "sd15", 1024: "sd21", 2048: "sdxl"}


def unit_rows(n: int) -> list[cat.Param]:
    return [p for p in cat.PARAMS if p.cn_unit == n]


def settle_units(ctx: CompileContext, stmts: Statements, values: dict) -> tuple[int, ...]:
    """The active units' settings checked and resolved in `values` (model to a path or hub id), the inactive
    units' rows removed from it, `controlnet_units` set when any unit is active. Returns the active numbers."""
    active = []
    for n in range(1, cn.MAX_UNITS + 1):
        rows = unit_rows(n)
        given = [stmts.settings[p.name].statement for p in rows if p.name in stmts.settings]
        given += [stmts.schedules[p.name] for p in rows if p.name in stmts.schedules]
        given.sort(key=lambda st: st.span.start)
        if _unit_on(ctx, stmts, values, n, given) and _check_unit(ctx, stmts, values, n):
            active.append(n)
        else:
            for p in rows:
                values.pop(p.name, None)
    if active:
        values[cn.UNITS_SETTING] = tuple(active)
    return tuple(active)


def _unit_on(ctx: CompileContext, stmts: Statements, values: dict, n: int, given: list[ir.Statement]) -> bool:
    model, enabled = values.get(cn.column(n, "model")), values.get(cn.column(n, "enabled"))
    if model is not None:
        return bool(enabled)
    if not given:
        return False
    on = stmts.settings.get(cn.column(n, "enabled"))
    if on is not None and on.value:
        ctx.err("DFM407", f"ControlNet unit {n} is enabled but has no model", on.statement.span,
                parameter=cn.column(n, "enabled"),
                help=f'add `{cn.column(n, "model")} "lllyasviel/control_v11p_sd15_canny"` (a hub id, a folder or '
                     "a .safetensors file), or remove the unit's statements")
    elif on is None:
        ctx.warn("DFM407", f"ControlNet unit {n} has no model: its {len(given)} statement(s) change nothing",
                 given[0].span, parameter=given[0].name,
                 help=f'add `{cn.column(n, "model")} "…"` to turn the unit on, or remove its statements')
    return False


def _check_unit(ctx: CompileContext, stmts: Statements, values: dict, n: int) -> bool:
    """Unit n's model resolved and checked, its source and preprocessor checked; False after an error."""
    ok = True
    model_name = cn.column(n, "model")
    st = stmts.settings[model_name].statement if model_name in stmts.settings else None
    span = st.args[0].span if st is not None and st.args else ctx.first_span()
    resolved = resolve_model(ctx, str(values[model_name]), values.get("controlnet_dir"), span, model_name)
    if resolved is None:
        ok = False
    else:
        values[model_name] = resolved
        ok = _check_family(ctx, values, resolved, span, n) and ok
        ok = _union_type(ctx, stmts, values, resolved, n) and ok
    ok = _check_source(ctx, stmts, values, n) and ok
    return _check_preprocessor(ctx, stmts, values, n) and ok


def resolve_model(ctx: CompileContext, text: str, controlnet_dir: str | None, span: ir.Span,
                  name: str) -> str | None:
    """A unit's model as the runtime loads it: an absolute path (a folder or a single file), or a hub id.
    An A1111 name (`control_v11p_sd15_canny [d14c016b]`) is found by its stem in `controlnet_dir`."""
    local = text.startswith((".", "/", "~")) or text.lower().endswith(MODEL_SUFFIXES)
    path = scene_relative(text, ctx.base_dir)
    try:
        kind = kind_of(path) if (local or ctx.base_dir is not None) else None
    except UserError as e:
        ctx.err("DFM403", f"{name}: {e.message}", span, parameter=name, help="write the path of an existing file")
        return None
    if kind is not None or local:
        if kind is None and ctx.base_dir is not None:
            ctx.warn("DFM403", f"{name}: `{shown(text)}` does not exist (yet)", span, parameter=name,
                     help="paths are relative to the scene file; `dfm render` needs it to exist")
        return str(path)
    if HUB_ID.match(text):
        return text
    m = A1111_NAME.match(text.strip())
    if m is None:
        ctx.err("DFM407", f"{name}: `{shown(text)}` is neither a hub id, a path nor an A1111 model name", span,
                parameter=name, help='write a hub id ("owner/name"), a path, or a name found in `controlnet_dir`')
        return None
    if not controlnet_dir:
        ctx.err("DFM407", f"{name}: `{shown(text)}` is an A1111 model name, and the scene has no `controlnet_dir` "
                "to find it in", span, parameter=name,
                help='set `controlnet_dir "…/stable-diffusion-webui/models/ControlNet"`, or write the file\'s path')
        return None
    found, near = find_by_stem(Path(controlnet_dir), m.group("stem"))
    if found is None:
        hint = f"; did you mean `{near}`?" if near else ""
        ctx.err("DFM407", f"{name}: no `{m.group('stem')}` in {shown(controlnet_dir)}{hint}", span, parameter=name,
                help="A1111 names are found by file stem (.safetensors, .pth …) in `controlnet_dir` and its "
                     "subfolders")
        return None
    return str(found)


def find_by_stem(folder: Path, stem: str) -> tuple[Path | None, str | None]:
    """The model file (or diffusers folder) named `stem` in `folder` or below, and else the nearest stem."""
    stems = stem_index(folder, MODEL_SUFFIXES, model_folders=True)
    hit = stems.get(stem.lower())
    return hit, (None if hit else cat.did_you_mean(stem, stems))


def model_base(spec: str) -> tuple[str | None, str]:
    """(architecture, how it was told) of a ControlNet: "sd15", "sd21", "sdxl", "flux" (a FluxControlNetModel),
    "sd3" (an SD3ControlNetModel), or None when nothing says. A folder's config.json or a file's tensor names
    and shapes are read; a hub id is read from the local cache, else guessed from its name."""
    path = Path(spec)
    try:
        kind = kind_of(path) if path.is_absolute() else None
    except UserError:
        return None, ""
    if kind == "folder":
        return _config_base(path / "config.json")
    if kind == "file":
        if path.suffix.lower() != ".safetensors":
            return None, ""  # a pickle: its layout is read only when it is loaded
        try:
            shapes, _ = families.safetensors_header(path)
        except UserError:
            return None, ""
        flow = cn.transformer_controlnet_base(shapes)
        if flow is not None:
            return flow, "its weights' names"
        for key, shape in shapes.items():
            if key.endswith("attn2.to_k.weight") and len(shape) == 2:
                return CROSS_ATTENTION.get(int(shape[1])), "its weights' cross-attention width"
        return None, ""
    if kind is None and not path.is_absolute():
        snaps = families.hub_cache_dir() / ("models--" + spec.replace("/", "--")) / "snapshots"
        try:
            for snap in sorted(p for p in snaps.iterdir() if p.is_dir()):
                if (snap / "config.json").is_file():
                    return _config_base(snap / "config.json")
        except OSError:
            pass
        n = spec.lower()
        if "flux" in n:
            return "flux", f"a guess from the hub id `{spec}`"
        if re.search(r"sd-?3|stable-diffusion-3", n):
            return "sd3", f"a guess from the hub id `{spec}`"
        if "xl" in n:
            return "sdxl", f"a guess from the hub id `{spec}`"
        if re.search(r"sd-?2|sd21|v2-1", n):
            return "sd21", f"a guess from the hub id `{spec}`"
        if re.search(r"sd-?1|sd15|v1-5|control_v1", n):
            return "sd15", f"a guess from the hub id `{spec}`"
        return "sd15", UNNAMED
    return None, ""


def _config_base(config: Path) -> tuple[str | None, str]:
    try:
        data = json.loads(read_limited(config, MAX_CONFIG_BYTES, "config.json"))
    except (UserError, ValueError, RecursionError):
        return None, ""
    if not isinstance(data, dict):
        return None, ""
    name = str(data.get("_class_name", ""))
    if name == "FluxControlNetModel" or "num_single_layers" in data:
        return "flux", "its config.json"
    if name == "SD3ControlNetModel":
        return "sd3", "its config.json"
    if data.get("addition_embed_type") == "text_time" or "Union" in str(data.get("_class_name", "")):
        return "sdxl", "its config.json"
    dim = data.get("cross_attention_dim")
    return (CROSS_ATTENTION.get(int(dim)) if isinstance(dim, int) else None), "its config.json"


def is_union(spec: str) -> bool:
    """Whether a ControlNet is a ControlNet Union (one model, several control types): its config's class, its
    weights' task embedding, or (a hub id not in the cache) its name."""
    path = Path(spec)
    try:
        kind = kind_of(path) if path.is_absolute() else None
    except UserError:
        return False
    config = path / "config.json" if kind == "folder" else None
    if kind is None and not path.is_absolute():
        snaps = families.hub_cache_dir() / ("models--" + spec.replace("/", "--")) / "snapshots"
        try:
            config = next((p / "config.json" for p in sorted(snaps.iterdir()) if (p / "config.json").is_file()), None)
        except OSError:
            config = None
        if config is None:
            return "union" in spec.lower()
    if config is not None:
        try:
            data = json.loads(read_limited(config, MAX_CONFIG_BYTES, "config.json"))
        except (UserError, ValueError, RecursionError):
            return False
        return isinstance(data, dict) and ("Union" in str(data.get("_class_name", ""))
                                           or data.get("num_mode") is not None)  # Flux's Union: its modes
    if kind == "file" and path.suffix.lower() == ".safetensors":
        try:
            shapes, _ = families.safetensors_header(path)
        except UserError:
            return False
        return "task_embedding" in shapes or "controlnet_mode_embedder.weight" in shapes
    return False


def _union_type(ctx: CompileContext, stmts: Statements, values: dict, resolved: str, n: int) -> bool:
    """A Union unit's control type, explicit or from its preprocessor ("" for a plain ControlNet)."""
    name = cn.column(n, "union_type")
    given = stmts.settings.get(name)
    chosen = str(values.get(name) or "auto")
    if not is_union(resolved):
        if chosen != "auto" and given is not None:
            ctx.warn("DFM407", f"`{name}` has no effect: unit {n}'s model is not a ControlNet Union",
                     given.statement.span, parameter=name, help=f"remove `{name}`")
        values[name] = ""
        return True
    if chosen == "auto":
        module = str(values[cn.column(n, "module")])
        chosen = cn.UNION_FOR_MODULE.get(module, "")
        if not chosen:
            at = given or stmts.settings.get(cn.column(n, "module")) or stmts.settings.get(cn.column(n, "model"))
            ctx.err("DFM407", f"ControlNet unit {n} is a ControlNet Union: which kind of control is its image (the "
                    f"preprocessor `{module}` does not say)?", at.statement.span if at else ctx.first_span(),
                    parameter=name, help=f"set `{name}` to one of {', '.join(cn.UNION_TYPES)}")
            return False
    if model_base(resolved)[0] == "flux" and chosen not in cn.FLUX_UNION_MODES:
        at = given or stmts.settings.get(cn.column(n, "module")) or stmts.settings.get(cn.column(n, "model"))
        ctx.err("DFM407", f"ControlNet unit {n} is a Flux.1 ControlNet Union, which has no mode for `{chosen}`",
                at.statement.span if at else ctx.first_span(), parameter=name,
                help=f"set `{name}` to one of {', '.join(cn.FLUX_UNION_MODES)} (with a matching preprocessor)")
        return False
    values[name] = chosen
    return True


def _check_family(ctx: CompileContext, values: dict, resolved: str, span: ir.Span, n: int) -> bool:
    """Unit n's ControlNet is for the scene's family: an error naming both where it is not (an SD ControlNet
    with Flux.1, a Flux.1 one with SD...). SD3 scenes' units are refused as a whole (flow_family.py)."""
    base, why = model_base(resolved)
    try:
        scene = families.source_family(str(values.get("model") or ""), ctx.base_dir)
    except UserError:
        return True  # the scene's model is itself reported (DFM405)
    if scene.base == "sd3":
        return True
    if scene.base == "flux" and str(values.get(cn.column(n, "control_mode"))) != "balanced":
        ctx.warn("DFM407", f"`{cn.column(n, 'control_mode')}` has no effect on a Flux.1 ControlNet: its modes scale a "
                 "UNet's residuals, and Flux.1 has none (nor an unconditional pass)", span,
                 parameter=cn.column(n, "control_mode"), help="remove the statement; set the unit's weight instead")
    if base == "flux-xlabs":
        ctx.err("DFM407", f"ControlNet unit {n} is {cn.XLABS_LAYOUT_WHY}", span, parameter=cn.column(n, "model"),
                help=cn.XLABS_LAYOUT_HELP)
        return False
    if base is None or scene.base == base or (scene.base == "flux" and why == UNNAMED):
        return True  # (a hub id that names no family may well be a Flux ControlNet: loading it tells)
    example = EXAMPLES.get(scene.base, "lllyasviel/control_v11p_sd15_canny")
    ctx.err("DFM407", f"ControlNet unit {n} is {_a(BASE_TITLES[base])} ControlNet ({why}), but the scene's model is "
            f"{scene.title}", span, parameter=cn.column(n, "model"),
            help=f"use {_a(BASE_TITLES[scene.base])} ControlNet (e.g. {example})")
    return False


def _a(title: str) -> str:
    return ("an " if title.startswith("S") else "a ") + title


def _check_source(ctx: CompileContext, stmts: Statements, values: dict, n: int) -> bool:
    source, loop = cn.column(n, "vid_path"), cn.column(n, "loopback_mode")
    at = stmts.settings.get(source) or stmts.settings.get(loop) or stmts.settings.get(cn.column(n, "model"))
    span = at.statement.span if at is not None else ctx.first_span()
    if values.get(loop):
        if values.get(source) and source in stmts.settings:
            ctx.warn("DFM407", f"ControlNet unit {n} loops back: its `{source}` is not read", span, parameter=source,
                     help=f"remove `{source}`, or `{loop} false` to use it")
        if values.get("mode") == "none":
            ctx.warn("DFM407", f"ControlNet unit {n} loops back, but stills have no previous frame: it acts only "
                     "with an init image", span, parameter=loop, help="give the unit a `vid_path` instead")
        return True
    if not values.get(source):
        ctx.err("DFM407", f"ControlNet unit {n} has no control source", span, parameter=source,
                help=f'add `{source} "pose.mp4"` (a video, an image or a folder of frames), or `{loop} true` '
                     "to follow the previous frame")
        return False
    return True


def annotator_files(pre: cn.Preprocessor, annotator_dir: str | None) -> tuple[Path | None, list[str]]:
    """(the folder holding all of the preprocessor's weight files, or None; the files missing there)."""
    if not pre.weights:
        return None, []
    places = [Path(annotator_dir)] if annotator_dir else []
    snaps = families.hub_cache_dir() / ("models--" + cn.ANNOTATOR_REPO.replace("/", "--")) / "snapshots"
    try:
        places += sorted((p for p in snaps.iterdir() if p.is_dir()), reverse=True)
    except OSError:
        pass
    best: tuple[Path | None, list[str]] = (None, list(pre.weights))
    for place in places:
        missing = [f for f in pre.weights
                   if not (place / f).is_file() and not (place / "annotator" / "ckpts" / f).is_file()]
        if not missing:
            return place, []
        if len(missing) < len(best[1]):
            best = (None, missing)
    return best


def _check_preprocessor(ctx: CompileContext, stmts: Statements, values: dict, n: int) -> bool:
    name = cn.column(n, "module")
    pre = cn.PREPROCESSORS[str(values[name])]
    if pre.aux_class is None:
        return True
    at = stmts.settings.get(name)
    span = at.statement.span if at is not None else ctx.first_span()
    if importlib.util.find_spec("controlnet_aux") is None:
        ctx.err("DFM407", f"ControlNet unit {n}'s preprocessor `{pre.name}` needs the controlnet-aux package",
                span, parameter=name, help="pip install 'dfm[controlnet]' (or controlnet-aux)")
        return False
    _, missing = annotator_files(pre, values.get("annotator_dir"))
    if missing:
        where = f"`annotator_dir` ({shown(values['annotator_dir'])})" if values.get("annotator_dir") else \
            "the Hugging Face cache"
        # a preview draws a placeholder for the unit instead: only a render needs the weights
        say = ctx.warn if ctx.preview else ctx.err
        say("DFM407", f"ControlNet unit {n}'s preprocessor `{pre.name}` needs {', '.join(missing)}, not in "
            f"{where}" + ("; the preview shows a placeholder" if ctx.preview else ""), span, parameter=name,
            help=f"huggingface-cli download {cn.ANNOTATOR_REPO} {' '.join(missing)} (or put the files in the "
                 "folder `annotator_dir` names)")
        return ctx.preview
    return True


def check_windows(ctx: CompileContext, stmts: Statements, values: dict[str, np.ndarray],
                  units: tuple[int, ...]) -> None:
    """A unit whose guidance_start is at or past its guidance_end on a frame never acts there: a warning at
    the first such frame (a weight of 0 is how to switch a unit off on purpose)."""
    for n in units:
        start, end = values[cn.column(n, "guidance_start")], values[cn.column(n, "guidance_end")]
        bad = start >= end
        if not bad.any():
            continue
        f = int(np.argmax(bad))
        name = cn.column(n, "guidance_start")
        st = stmts.schedules.get(name) or stmts.schedules.get(cn.column(n, "guidance_end"))
        span = st.span if st is not None else ctx.first_span()
        ctx.warn("DFM407", f"ControlNet unit {n} never acts at frame {f}: guidance_start {start[f]:g} is not before "
                 f"guidance_end {end[f]:g}", span, parameter=name, frame=f,
                 help="keep guidance_start below guidance_end; a weight of 0 switches a unit off")
