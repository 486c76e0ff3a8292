""".dfm → Deforum: the A1111 extension's settings file for a compiled scene.

`export_settings(result)` writes, for every parameter the scene's mode uses, the extension's key that
the catalogue names (`Param.deforum`), never a key made up from dfm's name, or the keys its converter writes
(`deforum_dialect.CONVERTERS`, which the import reads back with the same converter). Schedules keep their keys
where Deforum's semantics equal dfm's; segments Deforum cannot express (eased or cubic curves, dfm-only
functions, functions with commas, which the extension splits on) are written as number keys that
reproduce the compiled values. Whatever cannot be written exactly, or at all (a parameter with
`deforum=None`), goes through the one `Exporter.unsupported` path and so into `warnings`; dfm's own
settings that Deforum has no key for travel under one extra key, `"dfm"`, which `import_settings` reads.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..dsl import ir
from . import catalogue as cat
from .catalogue import Param
from .deforum_controlnet import export_units
from .deforum_dialect import CONVERTERS, Converter
from .deforum_names import A1111_MODES, A1111_SAMPLERS, NEUTRAL_SETTINGS
from .deforum_prompts import backtick_losses, write_prompts
from .deforum_schedules import deforum_schedule, join_keys
from .expressions import environment, evaluate_frames
from .interop import Exporter, ExportResult, Level, number_keys, number_text
from .networks import HUB_ID
from .scene_writer import string, value_of, values_text, word
from .schedules import ResolvedKey


def export_settings(result) -> ExportResult:
    """The A1111 extension's settings for a compiled scene (a `CompileResult` with a table)."""
    if result.table is None or result.settings is None:
        raise ValueError("export_settings needs a scene compiled without errors")
    return _A1111Exporter(result).run()


class _A1111Exporter(Exporter):
    def __init__(self, result):
        super().__init__()
        self.r = result
        self.s = result.settings
        self.mode = self.s.mode
        self.out: dict = {}
        self.extras: dict[str, str] = {}  # dfm name -> its value in dfm syntax, under the "dfm" key
        self.lora_tags = ""  # `<lora:stem:w>` tags appended to every exported positive prompt (`networks`)

    def run(self) -> ExportResult:
        self.scene()
        self.networks()
        self.prompts()
        self.schedules()
        self.settings()
        export_units(self)
        self.out.update(NEUTRAL_SETTINGS)
        if self.extras:
            self.out["dfm"] = {"format_version": cat.FORMAT_VERSION, "settings": self.extras}
        return ExportResult(self.out, self.warnings, list(self.notes))

    def scene(self) -> None:
        s = self.s
        self.out.update(CONVERTERS["size"].write(s.size))
        self.out.update({
            "seed": int(s.seed), "sampler": A1111_SAMPLERS[s.sampler],
            "steps": int(self.r.values["steps"][0]), "seed_behavior": s.seed_behavior,
            "seed_iter_N": int(s.seed_iter_n), "animation_mode": A1111_MODES[self.mode],
            "max_frames": int(s.frames), "fps": _plain(s.fps),
        })
        init = s.init_image
        self.out["use_init"] = bool(init)
        self.out["init_image"] = init or ""
        self.out["strength_0_no_init"] = True
        if init:
            strength = s.init_strength if s.init_strength is not None else float(self.r.values["strength"][0])
            self.out["strength"] = _plain(strength)
        model = [string(s.model)] + ([word("sha256"), string(s.model_sha256)] if s.model_sha256 else [])
        self.extras["model"] = values_text(*model)
        self.unsupported("model", f"the A1111 extension renders with the checkpoint chosen in the webui, not "
                         f"{s.model}")

    def prompts(self) -> None:
        entries = write_prompts(self.r, self.mode, self.tagged)
        self.out["prompts"] = entries
        for loss in backtick_losses(entries.values()):
            self.unsupported("prompt", loss)
        fade = self.s.prompt_crossfade
        if fade:
            p = cat.BY_NAME["prompt_crossfade"]
            self.extras[p.name] = values_text(value_of(p, fade))
            self.unsupported(p, f"Deforum cuts prompts hard, without the {values_text(value_of(p, fade))}-frame "
                             "crossfade (kept for dfm under the `dfm` key)")

    def tagged(self, positive: str) -> str:
        """A positive prompt with the `lora` statements' tags appended (A1111 reads them anywhere in it)."""
        if not self.lora_tags:
            return positive
        return f"{positive.rstrip()} {self.lora_tags}" if positive.strip() else self.lora_tags

    def networks(self) -> None:
        """`lora` and `embedding` statements. The extension has no LoRA or embedding setting: A1111 loads
        LoRAs from `<lora:name:w>` tags in the prompt, found by file stem in its own models/Lora folder, and
        embeddings by their token, from its embeddings folder. A `lora` statement of a constant weight whose
        file lies in the scene's `lora_dir` becomes such a tag on every prompt; every other one, and every
        embedding, is a warning saying how to carry it. (`<lora:…>` tags the prompts already hold are
        exported as written.)"""
        statements = [st for st in self.r.scene.statements if st.name == "lora"] if self.r.scene else []
        # networks.py names the statements' LoRAs first, in order: in a scene without errors each statement
        # has its own source (a second statement of a source is an error), so they align
        sources = list(self.s.lora or ())[:len(statements)]
        folder = self.s.lora_dir
        tags = []
        for st, source in zip(statements, sources, strict=False):
            label = st.args[0].value if st.args else source
            weight = self.constant_weight(st)
            inside = folder is not None and _inside(source, str(folder))
            if weight is not None and inside:
                tag = f"<lora:{Path(source).stem}:{number_text(weight)}>"
                tags.append(tag)
                self.unsupported("lora", f"`{label}` is written as `{tag}` at the end of every prompt: the A1111 "
                                 f"webui must have {Path(source).name} in its models/Lora folder", Level.REWRITTEN)
                continue
            hub = not os.path.isabs(source) and HUB_ID.match(source) is not None
            why = ("its weight changes over the frames, and a tag has one weight" if weight is None else
                   "it is a hub id, not a file of A1111's models/Lora folder" if hub else
                   "its file is not in the scene's `lora_dir`, so A1111 may know it by another name")
            self.unsupported("lora", f"`{label}` is left out ({why}): the A1111 extension has no LoRA setting; "
                             f"to carry it, put the file in the webui's models/Lora folder and add "
                             f"`<lora:{Path(source).stem}:weight>` to the prompts (a constant weight and the file "
                             "in `lora_dir` let dfm write that tag itself)")
        self.lora_tags = " ".join(tags)
        embeddings = list(self.s.embedding or ())
        if embeddings:
            names = ", ".join(Path(e).name for e in embeddings)
            self.unsupported("embedding", f"the A1111 extension has no embedding setting: the prompts keep the "
                             f"tokens, so copy {names} into the webui's embeddings folder (the token is the file name "
                             "without the extension, as in dfm)")

    def constant_weight(self, st: ir.Statement) -> float | None:
        """A `lora` statement's weight when it is the same on every frame (no weight: 1), else None."""
        if len(st.args) < 2:
            return 1.0
        arg = st.args[1]
        exprs = [k.value for k in arg.keys] if isinstance(arg, ir.KeyList) else [arg]
        env = environment(self.s.frames, self.s.fps, self.s.bpm, self.s.seed)
        found: set[float] = set()
        for expr in exprs:
            if ir.variables(expr) - set(env) - {"t"}:
                return None  # an audio feature: it follows the track
            values = np.asarray(evaluate_frames(expr, env, 0, int(self.s.frames)), dtype=np.float64)
            found.update(np.unique(values).tolist())
            if len(found) > 1:
                return None
        return found.pop() if len(found) == 1 and np.isfinite(next(iter(found))) else None

    def schedules(self) -> None:
        env = environment(self.s.frames, self.s.fps, self.s.bpm, self.s.seed)
        for p in cat.SCHEDULES:
            if self.mode not in p.modes or p.name not in self.r.values:  # an inactive ControlNet unit's
                continue
            values = self.r.values[p.name]
            if p.deforum is None:
                if p.export == "value" and not _at_default(p, values):
                    self.unsupported(p, "the A1111 extension has no such schedule: left out, so Deforum renders "
                                     "without it")
                continue
            keys = self.r.schedules.get(p.name) or [ResolvedKey(0, ir.Number(float(values[0]),
                                                                             number_text(values[0])))]
            text, reasons = deforum_schedule(keys, values, env)
            if not self.same(text, values):
                text = join_keys(number_keys(values, 0, len(values)))
                reasons = ["values that did not read back exactly"]
            if reasons:
                self.unsupported(p, f"written as per-frame keys for {'; '.join(reasons)}", Level.REWRITTEN)
            self.out[p.deforum] = text
        # dfm's subseed, subseed_strength and clip_skip schedules are always in force (their defaults change
        # nothing): switched on, so that values left in the Deforum UI or the webui do not leak in
        self.out.update(enable_steps_scheduling=True, enable_subseed_scheduling=True, enable_clipskip_scheduling=True)
        if self.s.seed_behavior == "schedule" and np.any(self.r.values["seed_schedule"] < 0):
            self.unsupported("seed_schedule", "a seed of -1 is a new random seed on every Deforum run (dfm draws it "
                             "from the start seed and the frame)")
        if self.mode in cat.BY_NAME["perspective_flip"].modes:
            self.out["enable_perspective_flip"] = bool(self.s.perspective_flip)

    def same(self, text: str, values: np.ndarray) -> bool:
        """Read the string back with dfm's Deforum-exact evaluator: equal within 1e-9?"""
        from .compile import schedule_values

        back, _ = schedule_values(text, len(values), fps=self.s.fps, bpm=self.s.bpm, seed=self.s.seed)
        return back is not None and bool(np.allclose(back, values, rtol=0, atol=1e-9))

    def settings(self) -> None:
        """Every other setting: under the catalogue row's key, or as its converter writes it; else kept for dfm."""
        for p in cat.SETTINGS:
            if p.cn_unit is not None:  # export_units writes them, in Deforum's words
                continue
            value = self.s[p.name]
            converter = CONVERTERS.get(p.name)
            if (converter and converter.scene) or p.export == "local" or self.mode not in p.modes or value is None:
                continue
            carried = converter is not None and converter.carried
            written = self.written(p, value, converter)
            if written is not None:
                self.out.update(written)
            elif value != p.default:
                self.extras[p.name] = values_text(value_of(p, value))
                if not carried:
                    self.unsupported(p, "the A1111 extension has no such setting (kept for dfm under the `dfm` key)")

    @staticmethod
    def written(p: Param, value: object, converter: Converter | None) -> dict | None:
        """The Deforum keys for a setting's value, or None when Deforum has no faithful one."""
        if converter is not None and converter.write is not None:
            return converter.write(value)
        if p.deforum and not (converter is not None and converter.carried):
            return {p.deforum: p.labels.get(value, _plain(value)) if isinstance(value, str) else _plain(value)}
        return None


def _at_default(p: Param, values: np.ndarray) -> bool:
    """Whether a schedule's column is its default on every frame (then leaving it out loses nothing)."""
    return isinstance(p.default, (int, float)) and bool(np.all(np.asarray(values) == float(p.default)))


def _plain(v: object) -> object:
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, np.generic):
        return v.item()
    return v


def _inside(path: str, folder: str) -> bool:
    """Whether a file lies in `folder` or below it (A1111 finds a LoRA in a subfolder of models/Lora too)."""
    try:
        return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(os.path.expanduser(folder)))
    except (OSError, ValueError):
        return False


__all__ = ["export_settings"]

