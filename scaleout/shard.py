"""`dfm render --ray`: one scene's frames split across workers, assembled into what a local render writes.

Only scenes whose frames do not depend on each other split: stills (`mode none`), interpolation, and
video input (each row img2imgs its own input frame: no warp, no colour coherence and no cadence carry
anything from one frame to the next). In 2D and 3D every frame is the previous one moved by the camera,
so frame i cannot start before frame i - 1 is done; those scenes render on one worker, and `dfm batch`
parallelises across scenes instead.

The sharded render is the one render job (`runtime/job.py` `run_job`) with the pool as its frame source
(`PoolFrames`): the job decides which rows to render (a checkpoint of the same render continues, one that
counts on a damaged frame starts over; an edited scene keeps the frames the edit cannot change) and readies
the folder, exactly as for a local render; one worker reports resume's fingerprint, and the driver hands
out chunks of the rows in order (`RenderWorker.render_rows`). It writes each returned PNG atomically as it
arrives, and keeps the record of the frames on disk and the checkpoint at the first one missing, so a
killed sharded render continues with or without `--ray` and renders no frame twice. Once every frame is
written it encodes the video from the PNGs (lossless, so ffmpeg gets the uint8 frames a local render gives
it, and the same bytes come out) and writes table.csv and manifest.json.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..contract.controlnet import control_folder
from ..contract.files import write_atomic
from ..contract.table import FrameTable
from .cluster import Queue, WorkerLost, run_queue

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
    frame and video bytes on the same device type, resumed and kept as `render()` resumes and keeps (the
    same render job, `runtime.job.run_job`, with the pool as its frame source). A scene whose frames depend
    on each other is a RenderError; Ctrl-C raises RenderInterrupted (the same command resumes). `speed`
    holds the speed-up switches (runtime/speedups.Speedups; None: the defaults), applied on every worker as
    `render(speed=)` applies them; the precision is the pool's (`open_pool(dtype=)`)."""
    from ..runtime.actor import SceneTask
    from ..runtime.job import run_job
    from ..runtime.outdir import Output

    check_shardable(table)
    task = SceneTask(f"shard-{uuid.uuid4().hex[:8]}", table, str(out_dir), scene_text=scene_text,
                     scene_path=scene_path, model=model, speed=speed)
    frames = PoolFrames(table, pool, task, Path(out_dir), progress=progress, chunk=chunk)
    return run_job(table, Output(Path(out_dir), save_maps=False), frames, fingerprint=frames.fingerprint,
                   manifest=frames.manifest, restart=restart, on_resume=on_resume, on_keep=on_keep)


class PoolFrames:
    """The frame source of a sharded job: chunks of the rows to render handed to the pool's workers in
    order (`RenderWorker.render_rows`), each PNG written atomically as it arrives; the record of the frames
    on disk and the checkpoint at the first one missing kept as they arrive, so a killed sharded render
    continues with or without `--ray` and renders no frame twice; the video encoded from the PNGs at the end
    (lossless, so ffmpeg gets the uint8 frames a local render gives it, and the same bytes come out)."""

    def __init__(self, table: FrameTable, pool, task, root: Path, *,
                 progress: Callable[[int, int], None] | None, chunk: int) -> None:
        self.table, self.pool, self.task, self.root = table, pool, task, root
        self.progress, self.chunk = progress, chunk
        self.shared = pool.share(task)
        self.setup = None

    def fingerprint(self) -> dict[str, str]:
        """resume's fingerprint as the first worker that is up computes it (the driver has no model)."""
        from ..runtime.errors import RenderError

        setup = self.pool.result(self.pool.call(_first_worker(self.pool), "open_rows", self.shared))
        if setup.error:
            raise RenderError(setup.error, setup.help)
        self.setup = setup
        return setup.fingerprint

    def load(self, start) -> None:
        """Nothing here: each worker loads its model at its first rows (a render that keeps every frame loads
        none)."""

    def warnings(self) -> list[str]:
        return list(self.setup.warnings)

    def manifest(self, report, started: float) -> dict:
        return self.pool.result(self.pool.call(_first_worker(self.pool), "rows_manifest", self.shared, report,
                                               started))

    def run(self, start, video_mode: int):
        from ..runtime.job import FramesDone, writes_video

        done = _Arrivals(self.table, self.root, start, self.progress)
        self._render(done, [int(i) for i in np.flatnonzero(start.todo)])
        video = self.root / "video.mp4" if start.keep_video and (self.root / "video.mp4").is_file() else None
        if video is None and writes_video(self.table):
            video = self._encode_video(video_mode, done.timings)
        return FramesDone(
            written=int(start.todo.sum()), video=video, timings={k: round(v, 6) for k, v in done.timings.items()},
            unet_calls=done.unet, unet_evals=done.evals, text_encoder_calls=done.text,
            device=self.setup.device, dtype=self.setup.dtype)

    def _render(self, arrivals: _Arrivals, rows: list[int]) -> None:
        from ..runtime.errors import RenderError
        from ..runtime.job import RenderInterrupted

        pool, tries = self.pool, {}

        def submit(slot, rows: list[int]) -> tuple:
            return ("render_rows", self.shared, rows)

        def done(slot, rows: list[int], result) -> None:
            if result.error:
                if result.internal:
                    raise RuntimeError(f"worker {slot.name}: {result.error}")
                raise RenderError(result.error, result.help)
            if result.fingerprint:
                _check_agrees(self.setup.fingerprint, result.fingerprint, slot.name, RenderError)
            arrivals.add(result)

        def lost(slot, rows: list[int], error: WorkerLost) -> bool:
            tries[rows[0]] = tries.get(rows[0], 0) + 1
            if tries[rows[0]] > LOST_RETRIES:
                raise RenderError(f"workers died {tries[rows[0]]} times rendering frames {rows[0]}..{rows[-1]} "
                                  f"({error})", "run the same command again: it resumes from the frames on disk")
            return True

        try:
            run_queue(pool, Queue(chunks(rows, len(pool.slots), self.chunk)), submit=submit, done=done, lost=lost)
        except BaseException as e:
            arrivals.record(force=True)  # what is on disk stays: the same command continues from it
            if isinstance(e, KeyboardInterrupt):
                pool.close()
                raise RenderInterrupted(arrivals.prefix, len(self.table)) from e
            raise
        finally:
            for slot in list(pool.slots):
                pool.call(slot, "close_rows", self.task.key)

    def _encode_video(self, video_mode: int, timings: dict[str, float]) -> Path:
        from ..runtime.encoder import Soundtrack
        from ..runtime.output import VideoEncoder, frame_name, read_png

        s, n = self.table.settings, len(self.table)
        t0 = time.perf_counter()
        encoder = VideoEncoder(self.root / "video.mp4", s.width, s.height, float(s.fps), int(s.video_crf),
                               video_mode, soundtrack=Soundtrack.of(s.audio, s.audio_offset, n, s.fps))
        try:
            for i in range(n):
                encoder.add(read_png(self.root / "frames" / frame_name(i)))
        except BaseException:
            encoder.abort()
            raise
        video = encoder.close()
        timings["write"] = timings.get("write", 0.0) + time.perf_counter() - t0
        return video


class _Arrivals:
    """The frames the workers returned, written as they arrive, with the counts they cost; the record of
    the frames on disk (out of order, so a resume keeps them all) and the checkpoint at the first missing."""

    def __init__(self, table: FrameTable, root: Path, start, progress: Callable[[int, int], None] | None) -> None:
        self.table, self.root, self.fingerprint, self.progress = table, root, start.fingerprint, progress
        self.on_disk = ~start.todo  # kept frames, then every frame written
        self.prefix = _prefix(self.on_disk)
        self.unet = self.evals = self.text = 0
        self.timings: dict[str, float] = {}
        self.recorded = time.monotonic()

    def add(self, result) -> None:
        from ..runtime.record import append_hashes, frame_digest, frame_name

        for i, png in result.frames:
            write_atomic(self.root / "frames" / frame_name(i), png)
            self.on_disk[i] = True
        for unit, i, png in getattr(result, "controls", ()):  # save_control_frames: as a local render names them
            folder = self.root / control_folder(unit)
            folder.mkdir(exist_ok=True)
            write_atomic(folder / frame_name(i), png)
        append_hashes(self.root, [(i, frame_digest(png)) for i, png in result.frames])
        self.unet += result.unet_calls
        self.evals += result.unet_evals
        self.text += result.text_encoder_calls
        for k, v in result.timings.items():
            self.timings[k] = self.timings.get(k, 0.0) + v
        self.record()
        if self.progress is not None:
            self.progress(int(self.on_disk.sum()), len(self.table))

    def record(self, force: bool = False) -> None:
        """The record of the frames on disk, at most every RECORD_SECONDS; and the checkpoint at the first
        frame not on disk."""
        from ..runtime import resume
        from ..runtime.frame import RenderState

        n, p = len(self.table), _prefix(self.on_disk)
        if p != self.prefix and p < n:  # the state before frame p is empty: these frames hand on nothing
            resume.Snapshot(RenderState(next_frame=p, at=p - 1), self.fingerprint).save(self.root)
        self.prefix = p
        if force or time.monotonic() - self.recorded >= RECORD_SECONDS:
            resume.write_record(self.root, self.table, self.fingerprint, self.on_disk)
            self.recorded = time.monotonic()


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


__all__ = ["check_shardable", "chunks", "render_sharded"]
