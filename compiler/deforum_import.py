"""Deforum settings → .dfm: the Deforum notebook's or the A1111 extension's settings file as a checked scene.

`import_settings(data)` reads a settings file (JSON text or a mapping) and returns a canonical, checked
`.dfm` text plus a warning for every key it could not carry exactly. Every key ends up in `mapped_keys`
or `warned_keys`; nothing is dropped silently.

The importer works in passes over the file's keys, each taking the keys it understands (`take`): the
scene (with the settings whose converter reads early: size), seed, sampler, prompts (`deforum_prompts`), init
image, gated schedules, the settings Deforum spells its own way (each read by its `deforum_dialect` converter,
whose `write` the export uses), then every key the catalogue knows (`Param.deforum`, then dfm's names and
aliases), then the feature groups dfm does not have (`deforum_names.FEATURES`), then whatever is left
(unknown). It builds IR statements (`scene_writer`), never .dfm text: the formatter prints them, and any
statement the compiler rejects becomes a comment with a warning.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping

from ..contract.modes import mode as mode_of
from ..dsl import ir
from ..dsl.parser import parse_statement
from . import catalogue as cat
from .catalogue import Kind, Param
from .deforum_controlnet import import_units
from .deforum_dialect import finite, reads, truthy
from .deforum_names import (
    DEFAULT_SEED_SCHEDULE,
    FEATURES,
    GATES,
    REMOVED_KEYS,
    RENAMED_KEYS,
    Impact,
    ImportNote,
    a1111_sampler,
    param_for_key,
)
from .deforum_prompts import read_prompts
from .deforum_schedules import frame_of, split_deforum_keys
from .expressions import environment
from .interop import ImportResult, load_settings
from .scene_writer import SceneWriter, comment, expression, number, statement, string, word
from .scene_writer import key as make_key
from .scene_writer import keys as key_list


def import_settings(data: Mapping | str | bytes, source: str = "settings") -> ImportResult:
    """A Deforum settings file (notebook or A1111 extension) as a checked, canonical .dfm text."""
    return _Importer(load_settings(data), source).run()


class _Importer:
    def __init__(self, data: dict, source: str):
        self.source = source
        self.original = data
        self.data: dict = {}
        self.origin: dict[str, str] = {}  # key used here -> key in the file
        self.mapped: set[str] = set()
        self.warned: set[str] = set()
        self.warnings: list[str] = []  # ImportNote, each with its impact on the render
        self.settings: dict[str, tuple[ir.Value, ...]] = {}  # dfm name -> the statement's values
        self.schedules: dict[str, tuple[ir.Value, ...] | ir.Comment] = {}  # dfm name -> (keys or expression,)
        self.comments: list[ir.Comment] = []  # after the settings
        self.prompt_lines: list[ir.Statement] = []
        self.unused_in_mode: list[str] = []
        self.schedule_keys: dict[str, str] = {}  # dfm schedule name -> the file key it came from
        self.inactive: list[str] = []
        self.inactive_keys: list[str] = []
        self.seed_behaviour: str | None = None  # as imported
        self.null_keys: list[str] = []  # keys saved without a value: dfm's defaults are used

    # -- bookkeeping
    def has(self, key: str) -> bool:
        return key in self.data

    def take(self, key: str) -> object:
        return self.data.pop(key, None)

    def file_keys(self, keys: Iterable[str]) -> set[str]:
        """The names these keys have in the file (before renames), for keys the file has."""
        return {o for k in keys if (o := self.origin.get(k, k)) in self.original}

    def map(self, *keys: str) -> None:
        self.mapped |= self.file_keys(keys)

    def warn(self, message: str, keys: Iterable[str] = (), impact: Impact = Impact.DIFFERS) -> None:
        """A warning; `impact` says whether the render differs from Deforum's (the default, to be safe)."""
        file_keys = self.file_keys(keys)
        self.warnings.append(ImportNote(message, impact, tuple(sorted(file_keys))))
        self.warned |= file_keys

    # -- the passes
    def run(self) -> ImportResult:
        self.rename_deprecated()
        self.scene_settings()
        self.seed()
        self.sampler()
        read_prompts(self)
        self.init()
        self.steps()
        self.gated_schedules()
        self.convert(early=False)
        self.dfm_extras()
        import_units(self)
        self.catalogue_keys()
        self.seed_schedule()
        self.features()
        self.unknown()
        self.summaries()
        writer = self.assemble()
        writer.check(self.rejected)
        return ImportResult(writer.text(), self.warnings, self.mapped, self.warned)

    def rename_deprecated(self) -> None:
        for key, value in self.original.items():
            new = RENAMED_KEYS.get(key)
            if key in REMOVED_KEYS:
                self.warn(f"ignored `{key}`: {REMOVED_KEYS[key]}", [key])
            elif new is not None and new in self.original:
                self.warn(f"ignored the deprecated `{key}`: the file also has its new name `{new}`", [key],
                          Impact.NO_EFFECT)
            elif new is not None:
                self.data[new] = value
                self.origin[new] = key
            else:
                self.data[key] = value

    # scene: mode, frames, fps, size
    def scene_settings(self) -> None:
        mode_p = cat.BY_NAME["mode"]
        raw_mode = self.take("animation_mode")
        mode = cat.resolve_choice(mode_p, str(raw_mode)) if raw_mode is not None else None
        if raw_mode is not None and mode is None:
            self.warn(f"animation_mode `{raw_mode}` is not a dfm mode; using {mode_p.default}", ["animation_mode"])
        elif raw_mode is not None:
            self.map("animation_mode")
        self.mode = mode or str(mode_p.default)
        self.settings["mode"] = (word(self.mode),)
        raw_frames = self.original.get(self.origin.get("max_frames", "max_frames"))
        frames = self.number("max_frames", int)
        self.frames = min(frames, cat.MAX_FRAMES) if frames and frames >= 1 else int(cat.BY_NAME["frames"].default)
        if frames is not None and self.frames != frames and not mode_of(self.mode).reads_video:
            # a changed frame count changes every schedule's timing: never silently (video mode renders the
            # whole extraction, whatever max_frames says)
            self.warn(f"`max_frames` is {raw_frames!r}: dfm needs 1 to {cat.MAX_FRAMES} frames; {self.frames} is "
                      "used", ["max_frames"])
        # Deforum's video mode renders the whole extraction
        if frames is not None and not mode_of(self.mode).reads_video:
            self.settings["frames"] = (number(self.frames),)
        raw_fps = self.original.get(self.origin.get("fps", "fps"))
        fps = self.number("fps", float)
        self.fps = fps if fps and fps > 0 else float(cat.BY_NAME["fps"].default)
        if fps is not None and self.fps != fps:
            self.warn(f"`fps` is {raw_fps!r}: dfm needs a rate above 0; {self.fps:g} is used", ["fps"])
        if fps is not None:
            self.settings["fps"] = (number(self.fps),)
        self.convert(early=True)

    def convert(self, early: bool) -> None:
        """The settings Deforum spells its own way, each read by its converter (`deforum_dialect`)."""
        for converter in reads(early):
            converter.read(self)

    def number(self, key: str, kind: type) -> float | int | None:
        if not self.has(key):
            return None
        raw = self.take(key)
        x = finite(raw)
        if x is None:
            self.warn(f"`{key}` is {raw!r}, not a number: ignored", [key])
            return None
        value = kind(x)
        self.map(key)
        return value

    def seed(self) -> None:
        raw = self.take("seed") if self.has("seed") else None
        behaviour = self.take("seed_behavior")
        iter_n = self.take("seed_iter_N")
        args: list[ir.Value] = [number(self.seed_value(raw))]
        if behaviour is not None:
            b = str(behaviour).lower()
            if b == "schedule" and self.mode not in cat.SEEDED_MODES:
                self.warn(f"seed_behavior `schedule` is read in 2D, 3D and video modes, not in {self.mode}: "
                          "using iter", ["seed_behavior"])
                b = "iter"
            elif b in cat.SEED_BEHAVIOURS:
                self.map("seed_behavior")
            else:
                self.warn(f"seed_behavior `{behaviour}` has no dfm equivalent (dfm has "
                          f"{', '.join(cat.SEED_BEHAVIOURS)}); using iter", ["seed_behavior"])
                b = "iter"
            args.append(word(b))
            self.seed_behaviour = b
            n = finite(iter_n)
            if b == "iter" and n is not None and int(n) > 1:
                args.append(number(int(n)))
        if iter_n is not None and finite(iter_n) is None:
            self.warn(f"seed_iter_N {iter_n!r} is not a number: ignored", ["seed_iter_N"])
        elif iter_n is not None:
            self.map("seed_iter_N")
        self.settings["seed"] = tuple(args)

    def seed_value(self, raw: object) -> int:
        x = finite(raw)
        seed = int(x) if x is not None else None
        if raw is not None and x is None:
            self.warn(f"seed {raw!r} is not a number", ["seed"])
        if seed is None or seed < 0:
            canon = json.dumps(self.original, sort_keys=True, default=str).encode()
            fixed = int.from_bytes(hashlib.sha256(canon).digest()[:4], "big")
            if raw is not None:
                self.warn(f"seed {raw} (a random seed in Deforum) fixed to {fixed}, derived from the file, so the "
                          "render is reproducible: change it to taste", ["seed"], Impact.NOTE)
            return fixed
        if seed > 2**32 - 1:
            self.warn(f"seed {seed} wrapped to {seed % 2**32} (dfm seeds are 32-bit)", ["seed"])
            seed %= 2**32
        else:
            self.map("seed")
        return seed

    def sampler(self) -> None:
        if not self.has("sampler"):
            return
        raw = self.take("sampler")
        # A1111 1.9+ keeps the schedule type apart ("DPM++ 2M" + "Karras"): read both as one dfm sampler
        schedule = self.take("scheduler") if self.has("scheduler") else None
        keys = ["sampler", "scheduler"] if schedule is not None else ["sampler"]
        p = cat.BY_NAME["sampler"]
        name, why = a1111_sampler(str(raw), None if schedule is None else str(schedule))
        if name is not None:
            self.settings["sampler"] = (word(name),)
            self.map(*keys)
            if why:
                self.warn(f"sampler `{raw}`{f' ({schedule})' if schedule else ''} is approximated by {name}: {why}",
                          keys)
        else:
            self.warn(f"sampler `{raw}`{f' ({schedule})' if schedule else ''} is not supported: {why}; dfm's "
                      f"default {p.default} is used (pick one of {', '.join(p.choices)})", keys)

    # init image and frame 0
    def init(self) -> None:
        """use_init + init_image + strength (the init's strength, not the schedule)."""
        use_init = truthy(self.take("use_init")) if self.has("use_init") else False
        self.map("use_init")
        image, strength = self.take("init_image"), self.take("strength")
        if use_init and image:
            self.settings["init_image"] = (string(str(image)),)
            self.map("init_image")
            if finite(strength) is not None:
                self.settings["init_strength"] = (number(min(1.0, max(0.0, finite(strength)))),)
                self.map("strength")
            elif strength is not None:
                self.warn(f"`strength` is {strength!r}, not a number: dfm's default init strength is used",
                          ["strength"])
        elif image:
            self.inactive.append("init_image (use_init is off)")
            self.inactive_keys.append("init_image")
            self.warned.add("init_image")
        if strength is not None and not (use_init and image):
            self.map("strength")  # the init image's strength: no effect without one, in Deforum too
        if image is None and "init_image" in self.original:
            self.map("init_image")
        if self.has("strength_0_no_init"):
            if truthy(self.take("strength_0_no_init")) or use_init:
                self.map("strength_0_no_init")
            else:
                self.warn("strength_0_no_init is off: dfm always renders frame 0 from noise when there is no "
                          "init image", ["strength_0_no_init"])

    def steps(self) -> None:
        scheduled = truthy(self.take("enable_steps_scheduling")) if self.has("enable_steps_scheduling") else False
        self.map("enable_steps_scheduling")
        if scheduled and self.has("steps_schedule"):
            self.schedule("steps", "steps_schedule", self.take("steps_schedule"))
            if self.has("steps"):
                self.take("steps")
                self.map("steps")  # overridden by the schedule, in Deforum too
        elif self.has("steps"):
            self.schedule("steps", "steps", self.take("steps"))

    def gated_schedules(self) -> None:
        """Keys whose switch is off: Deforum ignores them, so does the import (noted if not default)."""
        for switch, on, keys in GATES:
            value = self.data.get(switch, self.original.get(switch))
            enabled = str(value).lower() == on if isinstance(on, str) else truthy(value)
            if enabled:
                continue
            for key in keys:
                if not self.has(key):
                    continue
                raw = self.take(key)
                p = param_for_key(key)
                if p is not None and p.kind is Kind.SCHEDULE and _is_constant(raw, float(p.default)):
                    self.map(key)
                elif raw in (None, ""):
                    self.map(key)
                else:
                    self.inactive.append(f"{key} ({switch} is {value if value is not None else 'unset'})")
                    self.inactive_keys.append(self.origin.get(key, key))
                    self.warned.add(self.origin.get(key, key))
        for switch, _, _ in GATES:
            if self.has(switch) and param_for_key(switch) is None:
                self.take(switch)
                self.map(switch)

    def seed_schedule(self) -> None:
        """`seed_behavior schedule`: the file's seed_schedule, or Deforum's default one written out; a seed of
        −1 (a new random seed per run in Deforum) is one drawn from the start seed in dfm."""
        if self.seed_behaviour != "schedule":
            return
        raw = self.original.get("seed_schedule")
        if "seed_schedule" not in self.schedules and raw is None:
            node = self.schedule_value("seed_schedule", "seed_behavior", DEFAULT_SEED_SCHEDULE)
            if node is not None:
                self.schedules["seed_schedule"] = (node,)
                self.warn(f"seed_behavior `schedule` without a seed_schedule: Deforum's default one is written out "
                          f"({DEFAULT_SEED_SCHEDULE}: the start seed on the first and last frames)", [], Impact.NOTE)
            raw = DEFAULT_SEED_SCHEDULE
        if re.search(r"\(\s*-1\s*\)", str(raw)):
            self.warn("seed_schedule: a seed of -1 is a new random seed on every Deforum run; dfm draws it from the "
                      "start seed and the frame, the same on every run", ["seed_schedule"], Impact.NOTE)

    def dfm_extras(self) -> None:
        """Settings dfm wrote for itself (see `export_settings`): copied back verbatim."""
        if not self.has("dfm"):
            return
        extra = self.take("dfm")
        values = extra.get("settings", {}) if isinstance(extra, Mapping) else {}
        if not isinstance(values, Mapping):
            self.warn("dfm: `settings` is not an object; ignored", ["dfm"])
            return
        self.map("dfm")
        for name, text in values.items():
            p = cat.lookup(name)
            st = parse_statement(f"{p.name} {text}") if p is not None else None
            if p is None:
                self.warn(f"dfm: unknown setting `{name}` ignored", ["dfm"])
            elif st is None or not st.args:
                self.comments.append(comment(f"{p.name} {text}   # not dfm syntax"))
                self.warn(f"dfm: `{name}` = {text!r} is not dfm syntax: left as a comment", ["dfm"])
            else:
                (self.schedules if p.kind is Kind.SCHEDULE else self.settings)[p.name] = st.args

    def catalogue_keys(self) -> None:
        for key in list(self.data):
            p = param_for_key(key)
            if p is None or p.kind is Kind.PROMPT or key in ("prompt",):
                continue
            value = self.take(key)
            if self.mode not in p.modes:
                if not (p.kind is Kind.SCHEDULE and _is_constant(value, _default(p))):
                    self.unused_in_mode.append(key)
                else:
                    self.map(key)
                continue
            if p.kind is Kind.SCHEDULE:
                self.schedule(p.name, key, value)
            else:
                self.setting(p, key, value)

    def setting(self, p: Param, key: str, value: object) -> None:
        if value is None:
            self.null_keys.append(key)
            return
        args = _setting_args(p, value)
        if args is None:
            self.warn(f"`{key}` = {value!r} is not a valid {p.name}; dfm's default is used", [key])
            return
        if p.name in self.settings and key != p.name:
            self.warn(f"`{key}` repeats {p.name}; the first value is kept", [key])
            return
        self.settings[p.name] = args
        self.map(key)

    def schedule(self, name: str, key: str, value: object) -> None:
        node = self.schedule_value(name, key, value)
        if node is None:
            return
        first = self.schedule_keys.get(name)
        if first is not None:
            if not self.outranks(name, key):
                self.warn(f"`{key}` repeats {name}; `{first}` is used", [key])
                return
            self.mapped -= self.file_keys([first])
            self.warn(f"`{first}` repeats {name}; `{key}` is used", [first])
        self.schedules[name] = (node,)
        self.schedule_keys[name] = key
        self.map(key)

    def outranks(self, name: str, key: str) -> bool:
        """Which of two keys for one schedule Deforum reads, whatever their order in the file: the
        schedule key (`cfg_scale_schedule`) in animated modes, the flat one (`scale`) for stills."""
        own = key == cat.BY_NAME[name].deforum
        return own if self.mode in cat.ANIMATED else not own

    def schedule_value(self, name: str, key: str, value: object) -> ir.Value | None:
        """A Deforum schedule (a string of keys, or a notebook number) as a key list or an expression."""
        if value is None:
            self.null_keys.append(key)
            return None
        if isinstance(value, bool):
            self.warn(f"`{key}` = {value!r} is not a schedule; left out", [key])
            return None
        if isinstance(value, (int, float)):
            return number(value)
        text = " ".join(str(value).split())
        found = split_deforum_keys(text)
        if not found:
            expr = expression(text)
            if expr is not None:
                self.warn(f"`{key}` = {text!r} has no frame key (Deforum would fail on it): read as the constant "
                          f"{text}", [key], Impact.NOTE)
                return expr
            self.unreadable(name, key, text, f"`{key}` = {text!r} is not a schedule dfm can read")
            return None
        return self.rekey(name, key, text, found)

    def rekey(self, name: str, key: str, text: str, found: list[tuple[str, str, str]]) -> ir.KeyList | None:
        """The schedule with every key at a whole frame inside the scene (`"max_f-2"` -> 118)."""
        env = environment(self.frames, self.fps, None, 0)
        out = []
        for frame_text, value, curve in found:
            f = int(frame_text) if frame_text.isdigit() else frame_of(frame_text, env)
            if f is None or f < 0:
                self.warn(f"`{key}`: key {frame_text!r} is not a frame; that key is left out", [key])
            elif f >= self.frames:
                self.warn(f"`{key}`: key at frame {f} is past the last frame {self.frames - 1}; left out "
                          "(Deforum ignores it too)", [key], Impact.NO_EFFECT)
            elif (expr := expression(value.strip())) is None:
                note = f"the value at frame {f} is not a dfm expression"
                self.schedules.setdefault(name, comment(f"{name} {text}   # {note}"))
                self.warn(f"`{key}`: the value ({value.strip()}) at frame {f} is not a dfm expression: left as a "
                          "comment", [key])
                return None
            else:
                out.append((f, make_key(f, expr, curve)))
        if not out:
            self.warn(f"`{key}`: no key inside the scene; dfm's default is used", [key])
            return None
        return key_list(self.deforum_order(key, out))

    def deforum_order(self, key: str, keys: list[tuple[int, ir.Key]]) -> list[ir.Key]:
        """The keys as Deforum reads them: by frame, the last of two keys on one frame kept (its parser fills
        a dict and its series is indexed by frame). Written in order, since dfm's own keys must be."""
        frames = [f for f, _ in keys]
        last = {f: i for i, f in enumerate(frames)}
        order = sorted(last.values(), key=lambda i: frames[i])
        if any(b < a for a, b in zip(frames, frames[1:], strict=False)):
            self.warn(f"`{key}`: keys at frames {', '.join(map(str, frames))} are out of order; sorted as "
                      f"Deforum reads them ({', '.join(str(frames[i]) for i in order)})", [key], Impact.NOTE)
        dropped = sorted({f for i, f in enumerate(frames) if last[f] != i})
        if dropped:
            self.warn(f"`{key}`: two keys at frame {', '.join(map(str, dropped))}; the last one is kept, as in "
                      "Deforum", [key], Impact.NOTE)
        return [keys[i][1] for i in order]

    def unreadable(self, name: str, key: str, text: str, why: str) -> None:
        """A schedule that is not one: kept as a comment after the settings."""
        self.comments.append(comment(f"{name} {text}   # not readable as a schedule"))
        self.warn(f"{why}: left as a comment", [key])

    def features(self) -> None:
        for feat in FEATURES:
            keys = [k for k in self.data if re.fullmatch(feat.pattern, k)]
            if not keys:
                continue
            rest, in_use = [], []
            for k in keys:
                value = self.take(k)
                if k in feat.off and value in feat.off[k]:
                    self.map(k)
                else:
                    rest.append(k)
                    if k in feat.off:
                        in_use.append(f"{k} = {value!r}")
            # a switch outside the feature's keys (noise_type for perlin noise) was read by another pass
            in_use += [f"{s} = {self.original[s]!r}" for s, values in feat.off.items()
                       if not re.fullmatch(feat.pattern, s) and s in self.original and self.original[s] not in values]
            switched = bool(feat.off)
            if not rest:
                continue
            noun = "key" if len(rest) == 1 else "keys"
            note = (f" — IN USE in this file ({', '.join(in_use)}): the render will differ" if in_use
                    else " (switched off in this file: nothing is lost)" if switched else "")
            impact = Impact.DIFFERS if in_use or not (switched or feat.harmless) else Impact.NO_EFFECT
            self.warn(f"ignored {len(rest)} {feat.label} {noun} ({_group_names(rest)}): {feat.reason}{note}", rest,
                      impact)

    def unknown(self) -> None:
        keys = sorted(self.data)
        if keys:
            noun = "key" if len(keys) == 1 else "keys"
            self.warn(f"ignored {len(keys)} unknown {noun}: {', '.join(keys)}", keys)
            self.data.clear()

    def summaries(self) -> None:
        if self.null_keys:
            keys = self.null_keys
            self.warn(f"{len(keys)} {'key has' if len(keys) == 1 else 'keys have'} no value (null), so dfm's "
                      f"defaults are used: {_group_names(keys)}", keys, Impact.NO_EFFECT)
        if self.unused_in_mode:
            keys = self.unused_in_mode
            self.warn(f"left out {len(keys)} keys not used in mode {self.mode}: {', '.join(keys)}", keys,
                      Impact.NO_EFFECT)
        if self.inactive:
            self.warnings.append(ImportNote("left out (switched off in the file, so Deforum ignores them too): "
                                            + "; ".join(self.inactive), Impact.NO_EFFECT,
                                            tuple(sorted(self.inactive_keys))))

    # -- the scene
    def assemble(self) -> SceneWriter:
        """Header, settings (in catalogue order) and comments, prompts, schedules: one paragraph each."""
        writer = SceneWriter()
        writer.paragraph([comment(f"imported from {self.source} by `dfm import`: review the warnings it printed"),
                          statement(cat.VERSION_STATEMENT, number(cat.FORMAT_VERSION))])
        writer.paragraph([statement(p.name, *self.settings[p.name]) for p in cat.SETTINGS if p.name in self.settings]
                         + self.comments)
        writer.paragraph(self.prompt_lines)
        writer.paragraph([_item(p.name, self.schedules[p.name]) for p in cat.SCHEDULES if p.name in self.schedules])
        return writer

    def rejected(self, st: ir.Statement, why: str) -> None:
        """A statement the compiler rejects (the writer leaves it as a comment): its keys become warned."""
        name = st.name
        self.warn(f"`{name}` could not be imported ({why}): left as a comment", [])

        def stands_for(k: str) -> bool:
            p = param_for_key(k)
            return p is not None and p.name == name

        self.mapped -= {k for k in self.mapped if stands_for(k)}
        self.warned.update(k for k in self.original if stands_for(k))


def _item(name: str, value: tuple[ir.Value, ...] | ir.Comment) -> ir.Statement | ir.Comment:
    return value if isinstance(value, ir.Comment) else statement(name, *value)


def _default(p: Param) -> float:
    return float(p.default) if isinstance(p.default, (int, float)) else math.nan


def _is_constant(raw: object, value: float) -> bool:
    """Whether a Deforum schedule (or number) is the constant `value`."""
    if isinstance(raw, bool):
        return False
    if isinstance(raw, (int, float)):
        return float(raw) == value
    keys = split_deforum_keys(str(raw)) if isinstance(raw, str) else None
    if not keys:
        return False
    texts = {v.strip() for _, v, _ in keys}
    try:
        return len(texts) == 1 and float(texts.pop()) == value
    except ValueError:
        return False


def _setting_args(p: Param, value: object) -> tuple[ir.Value, ...] | None:
    """A static setting's Deforum value as the statement's values, or None if it is not one."""
    try:
        if p.type == "bool":
            return (word("on" if truthy(value) else "off"),)
        if p.type == "enum":
            choice = cat.resolve_choice(p, str(value))
            return (word(choice),) if choice is not None else None
        if p.type in ("path", "string", "model"):
            return (string(str(value)),) if value not in (None, "") else None
        if p.type in ("int", "float"):
            x = float(value)
            if p.type == "int":
                x = float(int(x))
            return (number(x),) if p.in_range(x) else None
    except (TypeError, ValueError):
        return None


def _group_names(keys: list[str]) -> str:
    """'cn_1_* … cn_5_*' for numbered families, else the names (shortened when many)."""
    units = sorted({m.group(1) for k in keys if (m := re.match(r"(cn_\d+)_", k))})
    if units and len(units) == len({k.split("_", 2)[1] for k in keys if k.startswith("cn_")}) and len(units) > 1:
        return f"{units[0]}_* … {units[-1]}_*"
    if len(keys) <= 8:
        return ", ".join(keys)
    return ", ".join(keys[:5]) + f", … {keys[-1]}"


__all__ = ["import_settings"]
