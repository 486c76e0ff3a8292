"""`dfm diff OLD NEW`: what changed between two versions of a scene, and from which frame renders differ.

Either side may be a file or a git revision of one (`HEAD:scene.dfm`, `main~3:scenes/a.dfm`), read with
`git show`. Both are compiled, and their FrameTables compared with the dependency rule the renderer uses
(`dfm.contract.changes.compare`): `first_frame` is the frame an incremental re-render of OLD's render starts at,
and the same rule gives each changed statement its own first frame. Statements are matched by parameter
(aliases included) and prompts by their key frame; a statement that changes only its spelling changes no
value. Values that change through other statements (a key in seconds when `fps` changes) are listed
under their column.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..compiler import catalogue as cat
from ..compiler.catalogue import Kind
from ..compiler.lower import CAMERA_SCHEDULES
from ..compiler.units import frames_of
from ..contract import changes
from ..contract.errors import UserError
from ..contract.files import kind_of, shown
from ..contract.modes import MODES
from ..dsl import ir
from ..dsl.parser import MAX_SOURCE_LENGTH
from .exit_codes import EXIT_ERRORS, EXIT_OK, EXIT_USAGE

_CAMERA = {schedule: column for column, schedule in CAMERA_SCHEDULES.items()}  # angle -> cam_angle, ...


def fed_columns(p: cat.Param) -> tuple[str, ...]:
    """The columns a statement of `p` changes: a schedule's own column and its accumulated camera column, and
    the derived columns its catalogue row says it feeds."""
    own = (p.name, *([_CAMERA[p.name]] if p.name in _CAMERA else [])) if p.kind is Kind.SCHEDULE else ()
    return own + p.feeds


def _moves_rows(name: str) -> bool:
    param = cat.BY_NAME.get(name)
    return param is not None and param.moves_rows


class DiffError(UserError):
    """A version that cannot be read (no such file, git cannot show it): exit 2."""

    exit_code = EXIT_USAGE


@dataclass
class Version:
    text: str
    label: str  # the file or revision, as given
    base_dir: Path  # relative paths in the scene are read from here


MAX_SPEC_SHOWN = 100  # characters of a version's name in a message


def load_version(spec: str, cwd: Path | None = None) -> Version:
    """A scene file, or `REV:PATH` read with `git show` (PATH from the repository's top, or from the
    working directory when it starts with ./ or ../). Either is bounded as `dfm check` bounds a scene, and
    must be one file of UTF-8 text."""
    from .console import read_source

    cwd = cwd or Path.cwd()
    path = cwd / spec
    label = shown(spec)
    try:
        kind = kind_of(path)
    except UserError:  # a name the OS refuses (a 5,000-character revision) may still be a git revision
        kind = None
    if kind in ("file", "other"):  # read_source refuses a FIFO or a device with its own message
        return Version(read_source(str(path)), spec, path.resolve().parent)
    if ":" not in spec:
        raise DiffError(f"{label}: no such file (a git revision looks like HEAD:{label})")
    if spec.startswith("-"):  # `git show` would read it as an option (`--output=FILE` writes a file)
        raise DiffError(f"{label}: no such file, and a git revision does not start with `-`")
    rev, _, inside = spec.partition(":")
    # `git show` of a folder prints its listing ("tree HEAD:dir"), which would compile as a scene: ask first
    what = _git(["cat-file", "-t", spec], cwd)
    if what.returncode != 0:
        lines = what.stderr.decode("utf-8", "replace").strip().splitlines()
        why = shown(lines[-1]) if lines else "git cannot read it"
        raise DiffError(f"{label}: not a file, and git cannot read it: {why}")
    kind = what.stdout.decode("utf-8", "replace").strip()
    if kind != "blob":
        raise DiffError(f"{label} is a {kind} in git, not a file", "name a scene file: REV:path/to/scene.dfm")
    size = _git(["cat-file", "-s", spec], cwd).stdout.decode("ascii", "replace").strip()
    limit = 4 * MAX_SOURCE_LENGTH  # as read_source bounds a scene file: git would hand over all of it
    if not size.isdigit() or int(size) > limit:
        raise DiffError(f"{label} is {size} bytes, more than a scene can be ({limit:,})",
                        "check that this is the scene you meant")
    shown_file = _git(["cat-file", "blob", spec], cwd)
    if shown_file.returncode != 0:
        raise DiffError(f"{label}: git cannot read it")
    try:
        text = shown_file.stdout.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DiffError(f"{label}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if inside.startswith(("./", "../")):
        base = (cwd / inside).resolve().parent
    else:
        top = _git(["rev-parse", "--show-toplevel"], cwd).stdout.decode("utf-8", "replace").strip()
        base = (Path(top) / inside).parent if top else cwd
    return Version(text, spec, base)


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """git's output as bytes: a committed file need not be UTF-8 (decoding is the caller's, with an error)."""
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True)
    except OSError as exc:
        raise DiffError(f"cannot run git: {exc}") from None


# ---- statements ----------------------------------------------------------------------------------------------


@dataclass
class Group:
    """The statements of one parameter (one prompt key) in one version of a scene."""

    parameter: str
    kind: str  # "schedule", "setting", "prompt" or "other"
    statements: list[ir.Statement] = field(default_factory=list)
    frame: int | None = None  # a prompt's key frame
    rows: tuple[int, float] | None = None  # a prompt's rows: [start, end)


def _prompt_frame(st: ir.Statement, settings) -> int | None:
    args = st.args
    if len(args) == 1 and isinstance(args[0], ir.String | ir.Composite):
        return 0
    if len(args) == 2 and isinstance(args[0], ir.Number | ir.Time):
        at = args[0]
        unit = at.unit if isinstance(at, ir.Time) else "f"
        try:
            return frames_of(at.value, unit, float(settings.fps), settings.bpm)
        except ValueError:
            return None
    return None


def groups(result) -> dict[tuple, Group]:
    """The statements of a compiled scene by parameter, and prompts by (name, key frame), in order."""
    out: dict[tuple, Group] = {}
    settings = result.settings
    for st in result.scene.statements:
        param = cat.lookup(st.name)
        if st.name == cat.VERSION_STATEMENT or param is None:
            key, g = ("", st.name), Group(st.name, "other")
        elif param.kind is Kind.PROMPT:
            frame = _prompt_frame(st, settings) if settings is not None else None
            key, g = (param.name, frame), Group(param.name, "prompt", frame=frame)
        else:
            key, g = (param.name,), Group(param.name, "setting" if param.kind is Kind.SETTING else "schedule")
        out.setdefault(key, g).statements.append(st)
    for name in ("prompt", "negative"):  # each prompt key holds from its frame to the next key
        keys = sorted(k[1] for k in out if k[0] == name and k[1] is not None)
        for i, k in enumerate(keys):
            out[(name, k)].rows = (0 if i == 0 else k, keys[i + 1] if i + 1 < len(keys) else float("inf"))
    return out


def _text(result, st: ir.Statement) -> str:
    return result.scene.source[st.span.start:st.span.end].strip()


# ---- the comparison ------------------------------------------------------------------------------------------


@dataclass
class Entry:
    parameter: str
    old: list[str]  # the statements as written in OLD (empty: added)
    new: list[str]
    line_old: int | None
    line_new: int | None
    frames: list[tuple[int, int]]  # rows whose values change
    first_frame: int | None  # the first frame whose render differs because of it
    effect: str  # "frames", "video", "values" (changes values), "none" (changes no value a frame reads)
    at: int | None = None  # a prompt's key frame

    def to_json(self) -> dict:
        return {"parameter": self.parameter, "at": self.at, "old": self.old, "new": self.new,
                "line": {"old": self.line_old, "new": self.line_new},
                "frames": [list(r) for r in self.frames], "first_frame": self.first_frame, "effect": self.effect}


@dataclass
class SceneDiff:
    old: str
    new: str
    found: changes.Changes
    entries: list[Entry]

    @property
    def first_frame(self) -> int | None:
        return self.found.first_frame

    def to_json(self) -> dict:
        return {"old": self.old, "new": self.new, "first_frame": self.first_frame, "frames": self.found.frames,
                "rendered": [list(r) for r in changes.ranges(self.found.affected_frames)],
                "summary": self.found.summary(), "changes": [e.to_json() for e in self.entries]}


def _restrict(rows: np.ndarray, span: tuple[int, float] | None) -> np.ndarray:
    if span is None:
        return rows
    return rows[(rows >= span[0]) & (rows < span[1])]


def compare_scenes(old, new, old_label: str = "OLD", new_label: str = "NEW") -> SceneDiff:
    """The differences between two compile results (both with a table), statement by statement."""
    found = changes.compare(old.table, new.table)
    by_column = {c.column: c for c in found.columns}
    by_setting = {s.name: s for s in found.settings}
    g_old, g_new = groups(old), groups(new)
    animated = found.mode in MODES and MODES[found.mode].rows_are_frames  # a prompt key's rows are frames
    keys = [k for k in [*g_new, *(k for k in g_old if k not in g_new)]
            if g_old.get(k) is None or g_new.get(k) is None or g_old[k].statements != g_new[k].statements]
    # statements that move or make rows come last, and take the changed columns no other statement feeds
    keys.sort(key=lambda k: _moves_rows((g_new.get(k) or g_old[k]).parameter))
    entries, claimed = [], set()
    for key in keys:
        a, b = g_old.get(key), g_new.get(key)
        g = b or a
        name = g.parameter
        param = cat.BY_NAME.get(name)
        columns = fed_columns(param) if param is not None else ()
        every = _moves_rows(name)
        if every:
            columns = tuple(c for c in by_column if c not in claimed)
        claimed.update(columns)
        spans = [x.rows for x in (a, b) if x is not None and x.rows is not None] if animated else []
        rows: set[int] = set()
        read: set[int] = set()
        for c in columns:
            change = by_column.get(c)
            if change is None:
                continue
            for part in spans or [None]:
                rows.update(_restrict(change.rows, part).tolist())
                read.update(_restrict(change.read, part).tolist())
        if every and found.frames > found.old_frames:
            added = range(found.old_frames, found.frames)
            rows.update(added)
            read.update(added)
        setting = by_setting.get(name)
        if setting is not None and setting.effect == "frames":
            effect, first = "frames", 0 if found.frames else None
        elif read:
            effect, first = "values", min(read)
        elif setting is not None and setting.effect == "video":
            effect, first = "video", None
        else:
            effect, first = ("values" if rows else "none"), None
        entries.append(Entry(
            parameter=name,
            old=[_text(old, st) for st in (a.statements if a else [])],
            new=[_text(new, st) for st in (b.statements if b else [])],
            line_old=a.statements[0].span.line if a else None,
            line_new=b.statements[0].span.line if b else None,
            frames=changes.ranges(rows), first_frame=first, effect=effect, at=g.frame,
        ))
    entries.sort(key=lambda e: (e.line_new or e.line_old or 0))
    for c in found.columns:  # values changed through other statements
        if c.column not in claimed:
            entries.append(Entry(c.column, [], [], None, None, changes.ranges(c.rows.tolist()),
                                 int(c.read[0]) if len(c.read) else None, "values" if len(c.read) else "none"))
    return SceneDiff(old_label, new_label, found, entries)


# ---- output ---------------------------------------------------------------------------------------------------


def _frames_text(frames: Iterable[tuple[int, int]]) -> str:
    return ", ".join(changes.span(a, b) for a, b in frames)


def _short(text: str, limit: int = 100) -> str:
    line = text.splitlines()[0] if text else ""
    more = len(text.splitlines()) > 1 or len(line) > limit
    return (line[:limit] + " …") if more else line


def format_text(d: SceneDiff) -> str:
    n, first = d.found.frames, d.first_frame
    if first is None:
        head = f"renders are identical: no frame reads what changed ({n} frames)" if d.entries else \
            "no change: the scenes are the same"
    elif first == 0:
        head = f"renders differ from frame 0: every frame ({n}) renders again"
    elif d.found.independent:
        head = f"renders differ at frames {changes.ranges_text(d.found.affected_frames)} of {n}; the others stay"
    else:
        head = f"renders differ from frame {first}; frames {changes.span(0, first - 1)} stay the same"
    lines = [f"{d.old} → {d.new}: {head}"]
    for e in d.entries:
        where = f" {e.at}" if e.at is not None else ""
        line = e.line_new if e.line_new is not None else e.line_old
        lines.append(f"{e.parameter}{where}" + (f" (line {line})" if line else " (through other statements)"))
        lines += [f"  - {_short(t)}" for t in e.old] + [f"  + {_short(t)}" for t in e.new]
        if e.effect == "frames":
            what = "a setting every frame depends on: renders differ from frame 0"
        elif e.effect == "video":
            what = "changes the video file only, no frame"
        elif e.effect == "none":
            what = "changes no value a frame reads"
        else:
            what = f"values change at frames {_frames_text(e.frames)}" + (
                f"; renders differ from frame {e.first_frame}" if e.first_frame is not None
                else "; no frame reads them")
        lines.append(f"  {what}")
    return "\n".join(lines) + "\n"


def run_diff(old_spec: str, new_spec: str, fmt: str = "text") -> int:
    """The `dfm diff` command: 0 when both versions compile (whatever changed), 1 when one has errors;
    raises DiffError when one cannot be read."""
    from ..api import compile_result
    from ..dsl.diagnostics import render_full

    results = []
    versions = [load_version(old_spec), load_version(new_spec)]  # a DiffError: app/dispatch.py prints it, exit 2
    for v in versions:
        result = compile_result(v.text, v.label, base_dir=v.base_dir)
        if result.errors or result.table is None:
            for diag in result.errors or result.diagnostics:
                print(render_full(diag, v.text, False) + "\n", file=sys.stderr)
            print(f"dfm diff: {v.label} has errors; fix them first (`dfm check`)", file=sys.stderr)
            return EXIT_ERRORS
        results.append(result)
    d = compare_scenes(results[0], results[1], versions[0].label, versions[1].label)
    if fmt == "json":
        print(json.dumps(d.to_json(), ensure_ascii=False, indent=1))
    else:
        sys.stdout.write(format_text(d))
    return EXIT_OK


__all__ = ["DiffError", "Entry", "SceneDiff", "compare_scenes", "format_text", "load_version", "run_diff"]
