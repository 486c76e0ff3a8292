""".dfm → Deforum: the A1111 extension's settings file for a compiled scene.

`export_settings(result)` writes, for every parameter the scene's mode uses, the extension's key that
the catalogue names (`Param.deforum`), never a key made up from dfm's name. Schedules keep their keys
where Deforum's semantics equal dfm's; segments Deforum cannot express (eased or cubic curves, dfm-only
functions, functions with commas, which the extension splits on) are written as number keys that
reproduce the compiled values. Whatever cannot be written exactly, or at all (a parameter with
`deforum=None`), goes through the one `Exporter.unsupported` path and so into `warnings`; dfm's own
settings that Deforum has no key for travel under one extra key, `"dfm"`, which `import_settings` reads.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..dsl import ir
from . import catalogue as cat
from .catalogue import Param
from .deforum_names import A1111_COLOR, A1111_DEPTH, A1111_MODES, A1111_SAMPLERS, NEUTRAL_SETTINGS
from .deforum_schedules import deforum_schedule, join_keys
from .expressions import environment
from .interop import Exporter, ExportResult, Level, number_keys, number_text
from .lower import split_neg
from .scene_writer import string, value_of, values_text, word
from .schedules import ResolvedKey

# settings `_A1111Exporter.scene` and `.prompts` write themselves (duration: as max_frames)
SCENE_SETTINGS = frozenset({"mode", "frames", "duration", "fps", "sampler", "seed", "seed_behavior", "seed_iter_n",
                            "init_image", "model", "size", "prompt_crossfade"})
# dfm settings whose effect the export already carries in Deforum's own terms (beat times as frames, the
# init strength as `strength`, interpolation prompts at their frames): kept for dfm under the `dfm` key,
# without a warning, and not written under their Deforum key
CARRIED_OTHERWISE = frozenset({"bpm", "init_strength", "interpolate_key_frames", "interpolate_x_frames"})


# dfm setting -> its A1111 keys and values, for settings Deforum spells differently (None: this value has
# no faithful equivalent, so it goes the way of a setting with no key)
CONVERTERS: dict[str, Callable[[object], dict | None]] = {
    "cadence": lambda v: {"diffusion_cadence": str(int(v))},
    "color_coherence": lambda v: {"color_coherence": A1111_COLOR[v]},
    "save_video": lambda v: {"skip_video_creation": not v},
    "video_mask_path": lambda v: {"use_mask_video": True, "video_mask_path": v},
    "depth_model": lambda v: {"depth_algorithm": A1111_DEPTH[v]} if v in A1111_DEPTH else None,
    "audio": lambda v: {"add_soundtrack": "File", "soundtrack_path": v},
}


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

    def run(self) -> ExportResult:
        self.scene()
        self.prompts()
        self.schedules()
        self.settings()
        self.out.update(NEUTRAL_SETTINGS)
        if self.extras:
            self.out["dfm"] = {"format_version": cat.FORMAT_VERSION, "settings": self.extras}
        return ExportResult(self.out, self.warnings, list(self.notes))

    def scene(self) -> None:
        s = self.s
        w, h = s.size
        self.out.update({
            "W": w, "H": h, "seed": int(s.seed), "sampler": A1111_SAMPLERS[s.sampler],
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
        table = self.r.table
        pos, neg = table["prompt"], table["negative_prompt"]
        if self.mode in ("none", "interpolation"):
            entries = self.keyed_prompts()
        else:
            entries = {}
            for i in range(len(pos)):
                if i == 0 or pos[i] != pos[i - 1] or neg[i] != neg[i - 1]:
                    entries[str(i)] = _join_neg(str(pos[i]), str(neg[i]))
        self.out["prompts"] = entries
        fade = self.s.prompt_crossfade
        if fade:
            p = cat.BY_NAME["prompt_crossfade"]
            self.extras[p.name] = values_text(value_of(p, fade))
            self.unsupported(p, f"Deforum cuts prompts hard, without the {values_text(value_of(p, fade))}-frame "
                             "crossfade (kept for dfm under the `dfm` key)")

    def keyed_prompts(self) -> dict[str, str]:
        """Stills and interpolation rows are not frames: write the scene's own keys."""
        from .lower import forward_fill, join_negatives

        last = max([f for f, _ in self.r.prompts] + [0]) + 1
        negs = forward_fill(self.r.negatives, last)
        out = {}
        for f, text in self.r.prompts:
            p, inline = split_neg(text)
            out[str(f)] = _join_neg(p, join_negatives(str(negs[f]), inline))
        return out

    def schedules(self) -> None:
        env = environment(self.s.frames, self.s.fps, self.s.bpm, self.s.seed)
        for p in cat.SCHEDULES:
            if self.mode not in p.modes:
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
        for p in cat.SETTINGS:
            value = self.s[p.name]
            if p.name in SCENE_SETTINGS or p.export == "local" or self.mode not in p.modes or value is None:
                continue
            if p.name in CONVERTERS:
                mapped = CONVERTERS[p.name](value)
                if mapped is not None:
                    self.out.update(mapped)
                    continue
            elif p.deforum and p.name not in CARRIED_OTHERWISE:
                self.out[p.deforum] = _plain(value)
                continue
            if value == p.default:
                continue
            self.extras[p.name] = values_text(value_of(p, value))
            if p.name not in CARRIED_OTHERWISE:
                self.unsupported(p, "the A1111 extension has no such setting (kept for dfm under the `dfm` key)")


def _at_default(p: Param, values: np.ndarray) -> bool:
    """Whether a schedule's column is its default on every frame (then leaving it out loses nothing)."""
    return isinstance(p.default, (int, float)) and bool(np.all(np.asarray(values) == float(p.default)))


def _plain(v: object) -> object:
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, np.generic):
        return v.item()
    return v


def _join_neg(pos: str, neg: str) -> str:
    return f"{pos} --neg {neg}" if neg else pos


__all__ = ["export_settings"]
