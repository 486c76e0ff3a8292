"""`dfm batch`: many scenes and their variations, one after the other here or across a Ray cluster.

Everything is planned on the driver before anything renders. Each scene file is read, each
combination of `--vary` values is written into its text (`--vary seed=1..8` replaces the scene's `seed`
statement, or adds one) and the text is compiled and checked as `dfm check` would, so a bad value is a
diagnostic with its line before any model loads. Each job is then a FrameTable (the contract: workers
never parse) handed to a `RenderWorker` (`scaleout/cluster.py`), which renders it into `OUT/<scene name>/`,
or `OUT/<scene name>/<variation>/` in a sweep, exactly as `dfm render --out` would: the same files,
resumed from the same checkpoints. A rerun of the batch continues every unfinished scene and skips
the finished ones.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import itertools
import json
import math
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from ..compiler import catalogue
from ..contract.errors import EXIT_USAGE, UserError
from ..contract.files import write_atomic
from ..contract.table import FrameTable
from ..dsl.diagnostics import Diagnostic
from ..dsl.formatter import format_string
from .cluster import Queue, WorkerLost, run_queue

MAX_JOBS = 10_000  # a sweep larger than this is a typo (seed=1..100000), not a plan
SUMMARY_FILE = "batch.json"


class BatchError(UserError):
    """A batch that cannot be planned as asked (bad --vary, two scenes with one name): exit 2."""

    exit_code = EXIT_USAGE


# ---- variations --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variation:
    """`--vary NAME=VALUES`: one parameter (its catalogue name) and the values it takes, as scene text."""

    name: str
    values: tuple[str, ...]


_RANGE = re.compile(r"(\d+)\.\.(\d+)")


def parse_vary(spec: str) -> Variation:
    """`seed=1..8` (whole numbers, both ends included), `strength=0.5,0.6`, or values separated by `|`
    when they hold commas themselves (`strength=0:(0.5), 10:(0.7)|0:(0.6)`). Values are scene text, as
    after the parameter's name in a scene; a prompt's may be written without quotes."""
    name, sep, text = spec.partition("=")
    name, text = name.strip(), text.strip()
    if not sep or not name:
        raise BatchError(f"--vary {spec!r} is not NAME=VALUES", "e.g. --vary seed=1..8 or --vary strength=0.5,0.6")
    param = catalogue.lookup(name)
    if param is None:
        guess = catalogue.did_you_mean(name, catalogue.all_names())
        raise BatchError(f"--vary {name}: there is no parameter `{name}`",
                         f"did you mean `{guess}`?" if guess else "docs/language.md lists the parameters")
    m = _RANGE.fullmatch(text)
    if m:
        lo, hi = int(m.group(1)), int(m.group(2))
        if hi < lo:
            raise BatchError(f"--vary {name}={text}: the range ends before it starts", f"write {hi}..{lo}")
        if hi - lo >= MAX_JOBS:
            raise BatchError(f"--vary {name}={text} is {hi - lo + 1} values", f"vary at most {MAX_JOBS} at once")
        values = [str(v) for v in range(lo, hi + 1)]
    else:
        values = [v.strip() for v in text.split("|" if "|" in text else ",")]
    if not text or any(not v for v in values):
        raise BatchError(f"--vary {spec!r} has an empty value", "separate values with commas: strength=0.5,0.6")
    twice = sorted(v for v, n in Counter(values).items() if n > 1)
    if twice:
        raise BatchError(f"--vary {name}: {', '.join(twice)} is given twice", "give each value once")
    return Variation(param.name, tuple(values))


def _value_text(param: catalogue.Param, value: str) -> str:
    if param.kind is catalogue.Kind.PROMPT and value[:1] not in ('"', "'"):
        return format_string(value)
    return value


def vary_text(text: str, path: str, values: Sequence[tuple[str, str]]) -> str:
    """The scene text with each (parameter, value) written in: the parameter's statement replaced by
    `name value` (every statement of it: a varied prompt is the only prompt), or added at the end when
    the scene has none. `seed` keeps the scene's seed behaviour (`seed 5 fixed` becomes `seed 3 fixed`)
    unless the value gives one."""
    from ..api import parse

    statements = parse(text, path).scene.statements
    edits: list[tuple[int, int, str]] = []
    added: list[str] = []
    for name, value in values:
        param = catalogue.BY_NAME[name]
        mine = [st for st in statements if (p := catalogue.lookup(st.name)) is not None and p.name == param.name]
        line = f"{param.name} {_value_text(param, value)}"
        if not mine:
            added.append(line)
            continue
        first = mine[0]
        if param.name == "seed" and first.args and " " not in value:
            edits.append((first.args[0].span.start, first.args[0].span.end, value))
        else:
            edits.append((first.span.start, first.span.end, line))
        edits += [(st.span.start, st.span.end, "") for st in mine[1:]]
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    if added:
        text = text + ("" if not text or text.endswith("\n") else "\n") + "\n".join(added) + "\n"
    return text


MAX_LABEL = 100  # characters of a variation's folder name: a file system allows 255 bytes in one name


def variation_label(values: Sequence[tuple[str, str]]) -> str:
    """The folder of a variation: `seed=3,strength=0.5` (characters a file name should not hold become _).
    A longer one (a varied prompt) is cut and ends in a hash of the whole, so that it is a name the file
    system takes and two long values still have two folders."""
    label = ",".join(f"{name}={_safe(value)}" for name, value in values)
    if len(label) <= MAX_LABEL:
        return label
    digest = hashlib.sha256(repr(tuple(values)).encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{label[:MAX_LABEL - 13].rstrip('_,=')}-{digest}"


def _safe(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", value).strip("_") or "_"


# ---- planning ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One render of a batch: a scene (maybe varied), its checked table and its output folder."""

    scene: str  # the scene file as given
    values: tuple[tuple[str, str], ...]  # its variation: (parameter, value), () for the scene as written
    key: str  # `stem` or `stem/seed=3,strength=0.5`: its folder under the batch's output
    out_dir: Path
    text: str  # the scene text rendered (varied), for the manifest
    table: FrameTable = field(repr=False)


@dataclass
class Plan:
    jobs: list[Job]
    diagnostics: list[Diagnostic]  # every scene's (each distinct warning once per scene)
    sources: dict[str, str]  # diagnostic path -> the text it points into (a variation's own text)

    @property
    def errors(self) -> bool:
        return any(d.is_error for d in self.diagnostics)


def plan(scenes: Sequence[tuple[str, str]], variations: Sequence[Variation], out: Path) -> Plan:
    """The jobs of `scenes` ((path, text) pairs) times every combination of `variations`, each compiled
    and checked. Raises BatchError for a batch that cannot be laid out; scene errors are diagnostics."""
    from ..api import compile_result

    names = [v.name for v in variations]
    if len(set(names)) != len(names):
        raise BatchError("--vary names the same parameter twice", "give each parameter one --vary with all its values")
    stems: dict[str, str] = {}
    for path, _ in scenes:
        stem = Path(path).stem
        if stem in stems and stems[stem] != path:
            raise BatchError(f"{stems[stem]} and {path} would both render into {out / stem}",
                             "rename one of them, or render them in separate batches (--out)")
        stems[stem] = path
    count = math.prod(len(v.values) for v in variations) * len(stems)  # before the combinations exist
    if count > MAX_JOBS:
        raise BatchError(f"the batch would render {count} scenes", f"at most {MAX_JOBS} at once")
    combos = list(itertools.product(*[[(v.name, x) for x in v.values] for v in variations]))
    jobs: list[Job] = []
    diagnostics: list[Diagnostic] = []
    sources: dict[str, str] = {}
    done: set[str] = set()
    for path, text in scenes:
        if path in done:
            continue  # the same file named twice renders once
        done.add(path)
        stem, seen, labels = Path(path).stem, set(), set()
        for combo in combos:
            label = variation_label(combo)
            base, k = label, 2
            while label in labels:  # two values that differ only in characters a folder name drops
                label, k = f"{base}-{k}", k + 1
            labels.add(label)
            varied = vary_text(text, path, combo) if combo else text
            where = f"{path} [{label}]" if combo else path
            result = compile_result(varied, where, base_dir=Path(path).resolve().parent)
            for d in result.diagnostics:
                mark = (d.code, d.message, d.span.line, d.span.col)
                if d.is_error or mark not in seen:
                    seen.add(mark)
                    diagnostics.append(d)
                    sources[where] = varied
            if not result.errors and result.table is not None:
                key = f"{stem}/{label}" if combo else stem
                jobs.append(Job(path, tuple(combo), key, out / key, varied, result.table))
    return Plan(jobs, diagnostics, sources)


def job_model(job: Job, override: str | None) -> tuple:
    """What a job needs loaded, as far as the driver can tell: jobs alike go to the worker holding it."""
    s = job.table.settings
    if override:
        return (override,)
    return (str(s.model), s.model_sha256, str(Path(job.scene).resolve().parent))


# ---- running -----------------------------------------------------------------------------------------------


@dataclass
class SceneResult:
    job: Job
    outcome: object = None  # a runtime.actor.SceneOutcome once it ran (None: not run)
    attempts: int = 0  # starts on a worker (more than one: its worker died and it ran again)

    @property
    def status(self) -> str:
        o = self.outcome
        if o is None:
            return "not run"
        if not o.ok:
            return "failed"
        return "up to date" if o.up_to_date else "done"


class BatchObserver:
    """What a batch tells while it runs (the CLI draws it; tests record it). Every method may be left out."""

    def started(self, job: Job, worker: str) -> None:
        """`job` went to `worker`."""

    def progress(self, job: Job, resumed_at: int, done: int, total: int) -> None:
        """`done` of `total` frames of `job` are written; this run started at `resumed_at`."""

    def retrying(self, job: Job, worker: str, why: str) -> None:
        """`worker` died while rendering `job`, which goes back in the queue (it resumes)."""

    def finished(self, result: SceneResult) -> None:
        """`result.job` finished, failed or was already rendered."""


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C: the scenes finished so far are in `results`; the same batch run again continues."""

    def __init__(self, results: list[SceneResult]) -> None:
        super().__init__("batch interrupted")
        self.results = results


def run_batch(jobs: Sequence[Job], pool, *, model: str | None = None, depth_model: str | None = None,
              restart: bool = False, retries: int = 1, observer: BatchObserver | None = None,
              summary: Path | None = None) -> list[SceneResult]:
    """Render `jobs` on the workers of `pool` (`dfm.scaleout.cluster.LocalPool` or `RayPool`), the scenes of the
    model a worker holds first. A scene that fails is reported in its result and the others go on; one
    whose worker died runs again (resuming) up to `retries` times. `summary` gets a JSON record of every
    scene (also when interrupted). Ctrl-C raises BatchInterrupted."""
    from ..runtime.actor import SceneOutcome, SceneTask

    watch = observer or BatchObserver()
    results = {j.key: SceneResult(j) for j in jobs}
    by_key = {j.key: j for j in jobs}
    started = _now()

    def submit(slot, job: Job) -> tuple:
        results[job.key].attempts += 1
        watch.started(job, slot.name)
        task = SceneTask(job.key, job.table, str(job.out_dir), scene_text=job.text, scene_path=job.scene,
                         model=model, depth_model=depth_model, restart=restart and results[job.key].attempts == 1)
        return ("render_scene", task)

    def done(slot, job: Job, outcome) -> None:
        results[job.key].outcome = outcome
        watch.finished(results[job.key])

    def lost(slot, job: Job, error: WorkerLost) -> bool:
        r = results[job.key]
        if r.attempts <= retries:
            watch.retrying(job, slot.name, str(error))
            return True
        r.outcome = SceneOutcome(job.key, slot.name, error=f"its worker {slot.name} died while rendering it ({error})",
                                 help="run the batch again: the scene resumes from its last checkpoint")
        watch.finished(r)
        return False

    def poll(progress: dict) -> None:
        for key, (resumed_at, frames, total) in progress.items():
            if key in by_key:
                watch.progress(by_key[key], resumed_at, frames, total)

    pool.report_to(lambda key, resumed_at, frames, total: watch.progress(by_key[key], resumed_at, frames, total))
    queue = Queue(list(jobs), affinity=lambda j: job_model(j, model))
    try:
        run_queue(pool, queue, submit=submit, done=done, lost=lost, poll=poll)
    except KeyboardInterrupt as e:
        pool.close()  # Ray: stops every actor; each scene resumes from its checkpoint
        if summary is not None:
            write_summary(summary, list(results.values()), started)
        raise BatchInterrupted(list(results.values())) from e
    finally:
        pool.report_to(None)
    out = list(results.values())
    if summary is not None:
        write_summary(summary, out, started)
    return out


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def check_summary(path: Path) -> None:
    """A BatchError when `path` (OUT/batch.json) is a file of the user's, not an earlier batch's summary:
    the batch would replace it."""
    if (path.exists() or path.is_symlink()) and read_summary(path) is None:
        raise BatchError(f"{path} exists and is not a dfm batch summary; the batch would replace it",
                         "choose another output folder (--out), or move the file")


def read_summary(path: Path) -> dict | None:
    """A summary as write_summary wrote it (`{"dfm_batch": 1, "scenes": [...]}`), or None when `path` is
    missing, unreadable or not one. json only, no torch: `dfm studio` reads sweeps with it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "dfm_batch" in data else None


def write_summary(path: Path, results: Sequence[SceneResult], started: str) -> None:
    """batch.json: every scene of the batch, its folder, status and what it cost (or why it failed)."""
    scenes = []
    for r in results:
        o, rec = r.outcome, {"scene": r.job.scene, "variation": dict(r.job.values), "out": r.job.key,
                             "status": r.status, "attempts": r.attempts}
        if o is not None:
            rec.update(worker=o.worker, seconds=round(o.seconds, 3))
            if o.ok:
                rep = o.report
                rec.update(frames=rep.frames, resumed_at=rep.resumed_at, video=rep.video.name if rep.video else None,
                           model_loaded=o.loaded_model, warnings=rep.warnings)
            else:
                rec.update(error=o.error, help=o.help, internal=o.internal)
                if o.detail:
                    rec["traceback"] = o.detail
        scenes.append(rec)
    data = {"dfm_batch": 1, "started": started, "finished": _now(), "scenes": scenes}
    write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


# ---- what the command line shows ---------------------------------------------------------------------------


class ProgressView(BatchObserver):
    """One progress bar for the whole batch: frames of every scene (so frames/s and the ETA are the
    batch's), the scenes done in its postfix, and a line per scene as it finishes. Frames an earlier run
    rendered (a resume, a scene already finished) leave the total: the rate and ETA are this run's."""

    def __init__(self, jobs: Sequence[Job], stream: TextIO | None = None, quiet: bool = False) -> None:
        from tqdm import tqdm

        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.scenes = len(jobs)
        self.finished_ok = self.failed = 0
        self._seen: dict[str, int] = {}
        self._total = {j.key: len(j.table) for j in jobs}
        self.bar = tqdm(total=sum(self._total.values()), unit="frame", desc="batch", dynamic_ncols=True,
                        file=self.stream, disable=quiet)
        self._postfix()

    def _postfix(self) -> None:
        text = f"scenes {self.finished_ok}/{self.scenes}" + (f", {self.failed} failed" if self.failed else "")
        self.bar.set_postfix_str(text, refresh=True)

    def _write(self, line: str) -> None:
        if not self.quiet:
            self.bar.write(line, file=self.stream)

    def progress(self, job: Job, resumed_at: int, done: int, total: int) -> None:
        if job.key not in self._seen:
            self._seen[job.key] = resumed_at
            self.bar.total -= resumed_at
        if done > self._seen[job.key]:
            self.bar.update(done - self._seen[job.key])
            self._seen[job.key] = done

    def retrying(self, job: Job, worker: str, why: str) -> None:
        self._write(f"retry  {job.key}: its worker {worker} died ({why}); it resumes on another")

    def finished(self, result: SceneResult) -> None:
        key, o = result.job.key, result.outcome
        counted = self._seen.get(key, 0)
        if o is not None and o.ok:
            rep = o.report
            self.progress(result.job, rep.resumed_at if not rep.kept_frames else 0, rep.frames, rep.frames)
            if rep.kept_frames:  # frames kept from the folder's render count as neither work nor rate
                self.bar.n -= rep.kept_frames
                self.bar.total -= rep.kept_frames
            self.finished_ok += 1
            if result.status == "up to date":
                self._write(f"ok     {key}: already rendered ({rep.kept})")
            else:
                how = f"; {rep.kept}" if rep.kept else ""
                how = how or (f", resumed at frame {rep.resumed_at}" if rep.resumed_at else "")
                self._write(f"done   {key}: {rep.frames - rep.kept_frames} frames in {o.seconds:.1f} s{how}")
        else:
            self.bar.total -= self._total[key] - counted
            self._seen[key] = self._total[key]
            self.failed += 1
            self._write(f"failed {key}: {o.error}")
        self.bar.refresh()
        self._postfix()

    def close(self) -> None:
        self.bar.close()


def summary_lines(results: Sequence[SceneResult], out: Path) -> list[str]:
    """The end of a batch: each failure with its help, then one line of counts."""
    lines = []
    for r in results:
        if r.status == "failed":
            o = r.outcome
            lines.append(f"failed {r.job.key} ({r.job.scene}): {'internal error: ' if o.internal else ''}{o.error}")
            if o.help:
                lines.append(f"  help: {o.help}")
            if o.internal:
                lines.append("  This is a bug in dfm; please report it with the scene (batch.json has the traceback).")
    counts = {s: sum(r.status == s for r in results) for s in ("done", "up to date", "failed", "not run")}
    parts = [f"{n} {s}" for s, n in counts.items() if n]
    lines.append(f"batch: {len(results)} scene{'s' * (len(results) != 1)}: {', '.join(parts) or 'nothing to do'} "
                 f"(in {out}; {out / SUMMARY_FILE})")
    return lines


__all__ = ["BatchError", "BatchInterrupted", "BatchObserver", "Job", "Plan", "ProgressView", "SceneResult",
           "Variation", "check_summary", "parse_vary", "plan", "read_summary", "run_batch", "summary_lines",
           "vary_text", "variation_label", "write_summary"]
