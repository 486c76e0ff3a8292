"""`dfm render --ray`: one scene's frames split across workers, assembled into what a local render writes.

Only scenes whose frames do not depend on each other split: stills (`mode none`), interpolation, and
video input (each row img2imgs its own input frame: no warp, no colour coherence and no cadence carry
anything from one frame to the next). In 2D and 3D every frame is the previous one moved by the camera,
so frame i cannot start before frame i - 1 is done; those scenes render on one worker, and `dfm batch`
parallelises across scenes instead.

The driver has one worker report resume's fingerprint, decides which rows to render as `run_render`
does (a checkpoint of the same render continues; an edited scene keeps the frames the edit cannot
change), readies the folder the same way, and hands out chunks of those rows in order
(`RenderWorker.render_rows`). It writes each returned PNG atomically as it arrives, and keeps the
record of the frames on disk and the checkpoint at the first one missing, so a killed sharded render
continues with or without `--ray` and renders no frame twice. Once every frame is written it encodes
the video from the PNGs (lossless, so ffmpeg gets the uint8 frames a local render gives it, and the
same bytes come out) and writes table.csv and manifest.json.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .cluster import Queue, WorkerLost, run_queue
from ..contract.files import file_mode, write_atomic
from ..contract.table import FrameTable

if TYPE_CHECKING:  # the runtime loads torch: imported where a render needs it
    from ..runtime.speedups import Speedups

CHUNK_MAX = 16  # rows per call: small enough to spread a scene evenly and lose little to a kill
LOST_RETRIES = 2  # a chunk whose worker died runs again this many times
RECORD_SECONDS = 2.0  # how often the record of the frames on disk is rewritten while frames arrive
# fingerprint entries every worker must agree on: the frames of workers that differ here would differ
MUST_AGREE = ("table", "device", "dtype", "speedups")


def chunks(rows: list[int], workers: int, most: int = CHUNK_MAX) -> list[list[int]]:
    """`rows` (ascending) in consecutive chunks, about four per worker, at most `most` rows each."""
    size = max(1, min(most, math.ceil(len(rows) / max(1, 4 * workers))))
    return [rows[a:a + size] for a in range(0, len(rows), size)]


def check_shardable(table: FrameTable) -> None:
    """A RenderError unless the frames of `table` can render apart from one another (before any worker
    starts)."""
    from ..runtime.actor import row_dependency
    from ..runtime.errors import RenderError

    why = row_dependency(table)
    if why is not None:
        raise RenderError(f"this scene cannot be split across workers: {why}",
                          "render it without --ray; `dfm batch --ray` renders many scenes at once")


def render_sharded(
    table: FrameTable,
    out_dir: Path,
    pool,
    *,
    scene_text: str = "",
    scene_path: str = "",
    model: str | None = None,
    restart: bool = False,
    progress: Callable[[int, int], None] | None = None,
    on_resume: Callable[[int, int], None] | None = None,
    on_keep: Callable[[str], None] | None = None,
    chunk: int = CHUNK_MAX,
    speed: Speedups | None = None,
):
    """Render `table` on the workers of `pool` into `out_dir`: the files `render()` writes, the same
    frame and video bytes on the same device type, resumed and kept as `render()` resumes and keeps. A
    scene whose frames depend on each other is a RenderError; Ctrl-C raises RenderInterrupted (the same
    command resumes). `speed` holds the speed-up switches (runtime/speedups.Speedups; None: the defaults),
    applied on every worker as `render(speed=)` applies them; the precision is the pool's (`open_pool(dtype=)`)."""
    from ..runtime import resume
    from ..runtime.actor import SceneTask
    from ..runtime.encoder import Soundtrack
    from ..runtime.errors import RenderError
    from ..runtime.outdir import open_output, remove_if_empty
    from ..runtime.output import VideoEncoder, frame_name, read_png, write_json
    from ..runtime.render import RenderInterrupted, RenderReport, RenderState

    check_shardable(table)
    n = len(table)
    root = Path(out_dir)
    task = SceneTask(f"shard-{uuid.uuid4().hex[:8]}", table, str(root), scene_text=scene_text,
                     scene_path=scene_path, model=model, speed=speed)
    shared = pool.share(task)
    made = open_output(root)
    try:
        setup = pool.result(pool.call(_first_worker(pool), "open_rows", shared))
        if setup.error:
            raise RenderError(setup.error, setup.help)
        fp = setup.fingerprint
        begin = _find_start(table, fp, root, restart)
        began = time.time()
        if begin.checkpoint and on_resume is not None:
            on_resume(begin.first, n)
        if begin.kept and on_keep is not None:
            on_keep(begin.kept)
    except BaseException:
        if made:
            remove_if_empty(root)
        raise
    video_mode = _prepare_output(root, table, fp, begin)

    frames_dir = root / "frames"
    on_disk = ~begin.todo  # kept frames, then every frame written
    state = {"prefix": _prefix(on_disk), "unet": 0, "evals": 0, "text": 0, "timings": {},
             "recorded": time.monotonic()}
    tries: dict[int, int] = {}

    def record(force: bool = False) -> None:
        """The record of the frames on disk (out of order, so a resume keeps them all), at most every
        RECORD_SECONDS; and the checkpoint at the first frame not on disk."""
        p = _prefix(on_disk)
        if p != state["prefix"] and p < n:  # the state before frame p is empty: these frames hand on nothing
            resume.Snapshot(RenderState(next_frame=p, at=p - 1), fp).save(root)
        state["prefix"] = p
        if force or time.monotonic() - state["recorded"] >= RECORD_SECONDS:
            resume.write_record(root, table, fp, on_disk)
            state["recorded"] = time.monotonic()

    def submit(slot, rows: list[int]) -> tuple:
        return ("render_rows", shared, rows)

    def done(slot, rows: list[int], result) -> None:
        if result.error:
            if result.internal:
                raise RuntimeError(f"worker {slot.name}: {result.error}")
            raise RenderError(result.error, result.help)
        if result.fingerprint:
            _check_agrees(fp, result.fingerprint, slot.name, RenderError)
        for i, png in result.frames:
            write_atomic(frames_dir / frame_name(i), png)
            on_disk[i] = True
        state["unet"] += result.unet_calls
        state["evals"] += result.unet_evals
        state["text"] += result.text_encoder_calls
        for k, v in result.timings.items():
            state["timings"][k] = state["timings"].get(k, 0.0) + v
        record()
        if progress is not None:
            progress(int(on_disk.sum()), n)

    def lost(slot, rows: list[int], error: WorkerLost) -> bool:
        tries[rows[0]] = tries.get(rows[0], 0) + 1
        if tries[rows[0]] > LOST_RETRIES:
            raise RenderError(f"workers died {tries[rows[0]]} times rendering frames {rows[0]}..{rows[-1]} ({error})",
                              "run the same command again: it resumes from the frames on disk")
        return True

    todo_rows = [int(i) for i in np.flatnonzero(begin.todo)]
    try:
        run_queue(pool, Queue(chunks(todo_rows, len(pool.slots), chunk)), submit=submit, done=done, lost=lost)
    except BaseException as e:
        record(force=True)  # what is on disk stays: the same command continues from it
        if isinstance(e, KeyboardInterrupt):
            pool.close()
            raise RenderInterrupted(state["prefix"], n) from e
        raise
    finally:
        for slot in list(pool.slots):
            pool.call(slot, "close_rows", task.key)

    timings = state["timings"]
    video = root / "video.mp4" if begin.keep_video and (root / "video.mp4").is_file() else None
    s = table.settings
    if video is None and s.save_video and s.mode != "none":  # stills make no video
        t0 = time.perf_counter()
        encoder = VideoEncoder(root / "video.mp4", s.width, s.height, float(s.fps), int(s.video_crf), video_mode,
                               soundtrack=Soundtrack.of(s.audio, s.audio_offset, len(table), s.fps))
        try:
            for i in range(n):
                encoder.add(read_png(frames_dir / frame_name(i)))
        except BaseException:
            encoder.abort()
            raise
        video = encoder.close()
        timings["write"] = timings.get("write", 0.0) + time.perf_counter() - t0
    kept = int((~begin.todo).sum())
    report = RenderReport(
        out_dir=root, frames=n, video=video, timings={k: round(v, 6) for k, v in timings.items()},
        unet_calls=state["unet"], unet_evals=state["evals"], text_encoder_calls=state["text"],
        device=setup.device, dtype=setup.dtype,
        warnings=begin.warnings + setup.warnings, resumed_at=begin.first,
        # begin.checkpoint is a bool here (not run_render's Checkpoint): a resumed render kept no frames
        kept_frames=0 if begin.checkpoint else kept, kept=begin.kept,
    )
    manifest = pool.result(pool.call(_first_worker(pool), "rows_manifest", shared, report, began))
    write_json(root / "manifest.json", manifest)
    resume.write_record(root, table, fp, np.ones(n, dtype=bool))  # every frame is this table's
    resume.remove(root)  # the checkpoint goes; the record stays for the next incremental render
    return report


@dataclass
class _Start:
    """Which rows a sharded render renders (the others are on disk and stay), as `render()` decides."""

    todo: np.ndarray
    checkpoint: bool = False  # the same render, interrupted, continued
    warnings: list[str] = field(default_factory=list)
    kept: str = ""  # an incremental render's message: what it keeps and why
    keep_video: bool = False

    @property
    def first(self) -> int:
        hits = np.flatnonzero(self.todo)
        return int(hits[0]) if len(hits) else len(self.todo)


def _find_start(table: FrameTable, fp: dict[str, str], root: Path, restart: bool) -> _Start:
    """The rows to render, by run_render's rule for frames that hand nothing on: the same render,
    interrupted, continues from its checkpoint and keeps the frames its record lists; a render of
    another table keeps the frames the edit cannot change (`incremental.plan`); `restart` renders all."""
    from ..runtime import incremental, resume
    from ..runtime.outdir import dfm_manifest

    n = len(table)
    if restart:
        return _Start(np.ones(n, dtype=bool))
    folders = (root / "frames",)
    found, why = resume.load(root, fp, n, folders, rebuild=lambda k: resume.Checkpoint(k, k - 1, {}, None))
    record = resume.read_record(root)
    warnings = [why] if why else []
    if found is not None:
        todo = np.arange(n) >= found.next_frame
        if record is not None and record.fingerprint == fp:
            kept, _ = incremental.whole_frames(record.valid & todo, folders, stop_at_first=False)
            todo &= ~kept
        return _Start(todo, True, warnings)
    plan = incremental.plan(table, fp, record, root, folders, dfm_manifest(root) is not None)
    if plan is None:
        return _Start(np.ones(n, dtype=bool), False, warnings)
    return _Start(plan.todo, False, warnings if plan.todo.all() else [], plan.message, plan.keep_video)


def _prefix(on_disk: np.ndarray) -> int:
    """The first frame not on disk (the length when all are)."""
    hits = np.flatnonzero(~on_disk)
    return int(hits[0]) if len(hits) else len(on_disk)


def _first_worker(pool):
    """The first worker that is up (Ray actors take a moment to start)."""
    while True:
        ready = pool.usable()
        if ready:
            return ready[0]
        time.sleep(0.1)


def _check_agrees(want: dict[str, str], found: dict[str, str], worker: str, error: type) -> None:
    keys = [k for k in want.keys() | found.keys() if k in MUST_AGREE or k.startswith("version:")]
    differ = sorted(k for k in keys if want.get(k) != found.get(k))
    if differ:
        what = ", ".join(f"{k.removeprefix('version:')} {found.get(k)!r} (not {want.get(k)!r})" for k in differ)
        raise error(f"worker {worker} would render other bytes than the first: {what}",
                    "install the same dfm, torch and libraries on every node, with the same kind of GPU")


# ---- the output folder, readied as run_render readies it ------------------------------------------------


def _prepare_output(root: Path, table: FrameTable, fp: dict[str, str], begin: _Start) -> int:
    """Ready the folder as run_render does, with its own rules for what dfm may delete (runtime/render.py's
    clear_temp_files and clear_old_frames): record the frames dfm may write, then which frames on disk
    are this table's (those kept); remove the previous render's manifest, a checkpoint not continued, dfm's
    temporary files, its frames and latents not kept and the video unless it stays; write table.csv.
    Files dfm did not write stay. Returns the mode a new video gets (the old one's)."""
    from ..runtime import resume
    from ..runtime.outdir import Output, clear_old_frames, clear_temp_files, dfm_manifest, owned_frames, unwritable

    n = len(table)
    kept = ~begin.todo
    out = Output(root, False)
    try:
        owned = owned_frames(root)
        resume.write_owner(root, max(owned, n))
        resume.write_record(root, table, fp, kept)
        if dfm_manifest(root) is not None:
            (root / "manifest.json").unlink()
        if not begin.checkpoint:
            resume.state_path(root).unlink(missing_ok=True)
        clear_temp_files(out)
        out.frames.mkdir(exist_ok=True)
        clear_old_frames(out.frames, lambda i: i < n and bool(kept[i]), owned)
        resume.remove_latents(root, lambda i: False, owned)  # these modes keep none
        mode = file_mode(out.video)
        if not begin.keep_video:
            out.video.unlink(missing_ok=True)
        write_atomic(root / "table.csv", table.to_csv())
    except OSError as e:
        raise unwritable(root, e) from None
    return mode


__all__ = ["check_shardable", "chunks", "render_sharded"]
