"""Watch mode: `dfm render FILE --watch` and `dfm preview FILE --watch`.

Render (or preview) once, then wait for saves of FILE (watchfiles: the operating system's file events,
no polling of our own). On each save that changes the text the scene is checked: with errors they are
printed and the last good render stays; otherwise the job in flight is cancelled at its next frame
boundary (its frames and checkpoint are safe on disk) and the new one starts. A render then keeps every
frame the edit cannot change (incremental re-render), and the loaded model is reused. Ctrl-C stops
(exit code 130; an interrupted render resumes with the same command).

`Watcher` is the loop, testable without a file system watcher: `run(changes)` takes any iterable whose
items mean "the file may have changed".
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .console import UsageError, color, progress_bar
from .exit_codes import EXIT_INTERRUPTED, EXIT_OK
from .render_args import preview_out, render_out, scene_table, speedups


class Cancel(threading.Event):
    """Set when the job in flight must stop at its next frame; `reason` says why ("the scene changed",
    or "interrupted" for Ctrl-C)."""

    reason = ""


Job = Callable[[object, Cancel], object]  # (compile result, cancel) -> what it made


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Watcher:
    """Runs `job` on the scene at `path` once, then again after each change of its text (the job in flight
    cancelled first). `results` holds what each job returned or raised, in order."""

    def __init__(self, path: Path, job: Job, *, echo: Callable[[str], None] = _say,
                 stop: threading.Event | None = None, preview: bool = False) -> None:
        self.path = Path(path)
        self.preview = preview  # compiled for a preview: what only a render needs is a warning
        self.job = job
        self.echo = echo
        self.stop = stop or threading.Event()  # set: the default watcher returns
        self.results: list[object] = []
        self._text: str | None = None
        self._thread: threading.Thread | None = None
        self._cancel: Cancel | None = None

    # -- the jobs

    def check(self) -> bool:
        """Read and check the scene; if it changed and has no errors, cancel the job in flight and start
        one on it. True if a job started."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:  # an editor half-way through a save: the next event comes
            self.echo(f"{self.path}: cannot read it ({exc}); waiting for the next save")
            return False
        if text == self._text:
            return False
        self._text = text
        from ..api import compile_result
        from ..dsl.diagnostics import render_full

        result = compile_result(text, str(self.path), preview=self.preview)
        colored = color(sys.stderr)
        for d in result.diagnostics:
            self.echo(render_full(d, text, colored) + "\n")
        if result.errors or result.table is None:
            self.echo(f"{self.path} has errors: the last good render stays; waiting for the next save")
            return False
        self.cancel("the scene changed")
        cancel = Cancel()
        self._cancel = cancel
        self._thread = threading.Thread(target=self._work, args=(result, cancel), name="dfm-watch-job", daemon=True)
        self._thread.start()
        return True

    def _work(self, result, cancel: Cancel) -> None:
        try:
            out = self.job(result, cancel)
        except BaseException as exc:  # noqa: BLE001 - reported here; the watcher goes on
            out = exc
            if not _expected(exc):
                self.echo(f"internal error: {type(exc).__name__}: {exc}\nThis is a bug in dfm; please report it "
                          "with the scene (DFM_DEBUG=1 shows the traceback).")
                if os.environ.get("DFM_DEBUG"):
                    import traceback

                    traceback.print_exception(exc)
            _drop_tracebacks(exc)  # kept in `results`: its frames would keep the render's tensors alive
        self.results.append(out)

    def cancel(self, reason: str) -> None:
        """Stop the job in flight at its next frame boundary and wait for it."""
        if self._thread is not None and self._thread.is_alive():
            assert self._cancel is not None
            self._cancel.reason = reason
            self._cancel.set()
            self._thread.join()

    def wait(self) -> None:
        """Wait for the job in flight to finish."""
        if self._thread is not None:
            self._thread.join()

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the loop

    def changes(self) -> Iterator[object]:
        """Batches of file events for the scene (watchfiles on its folder, so that an editor's save by
        rename is seen too), until `stop` is set."""
        import watchfiles

        name = self.path.name

        def ours(change, path: str) -> bool:
            return Path(path).name == name

        yield from watchfiles.watch(self.path.resolve().parent, watch_filter=ours, debounce=400, step=50,
                                    stop_event=self.stop, recursive=False)

    def run(self, changes: Iterable[object] | None = None) -> int:
        """Run the job, then again after each item of `changes` (default: saves of the file, until `stop`)
        that changed the text. At the end the job in flight is waited for; Ctrl-C cancels it (130)."""
        self.echo(f"watching {self.path} (Ctrl-C stops)")
        try:
            self.check()
            for _ in (self.changes() if changes is None else changes):
                self.check()
            self.wait()
        except KeyboardInterrupt:
            self.cancel("interrupted")
            return EXIT_INTERRUPTED
        return EXIT_OK


def _drop_tracebacks(exc: BaseException | None) -> None:
    """Let go of the frames of `exc` and of the exceptions it chains (a cancelled render's hold its state on
    the device), once it has been reported."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc.__traceback__ = None
        exc = exc.__cause__ or exc.__context__


def _expected(exc: BaseException) -> bool:
    """Outcomes a job reports itself: a cancelled or failed render."""
    from ..runtime.errors import RenderError
    from ..runtime.render import RenderInterrupted

    return isinstance(exc, RenderInterrupted | RenderError | _PreviewCancelled)


# ---- dfm render --watch ---------------------------------------------------------------------------------------


def render_watcher(args, echo: Callable[[str], None] = _say) -> Watcher:
    """The watcher of `dfm render FILE --watch`: each job renders into the output folder, keeping what
    the edit cannot change; the models stay loaded between renders."""
    models: dict = {}  # keyed by the model and its precision: a loaded model is reused at the same --dtype
    speed = speedups(args)  # --attention, --channels-last, --vae-tiling, --compile: the same for every render
    first = [True]

    def job(result, cancel: Cancel):
        from ..runtime.errors import RenderError
        from ..runtime.render import RenderCancelled, render

        out = render_out(args, result.table)
        restart, first[0] = args.restart and first[0], False  # --restart: the first render only
        progress = progress_bar(args.quiet)
        try:
            report = render(scene_table(result, args), out, scene_text=result.scene.source, scene_path=args.file,
                            model=args.model, device=args.device, allow_pickle=args.allow_pickle,
                            progress=progress, depth_model=args.depth_model, restart=restart,
                            on_keep=echo, cancel=cancel.is_set, models=models,
                            dtype=getattr(args, "dtype", "auto"), speed=speed)
        except RenderCancelled as exc:
            progress.close()
            if cancel.reason != "interrupted":  # (Ctrl-C: watch_render says where the next run starts)
                echo(f"render stopped at frame {exc.next_frame}: {cancel.reason}")
            raise
        except RenderError as exc:
            progress.close()
            echo(f"error: {exc.message}" + (f"\nhelp: {exc.help}" if exc.help else ""))
            raise
        progress.close()
        for w in report.warnings:
            echo(f"{args.file}: warning: {w}")
        echo(f"wrote {report.frames} frames to {report.out_dir}" + (f" and {report.video}" if report.video else "")
             + "; waiting for the next save")
        return report

    return Watcher(Path(args.file), job, echo=echo)


def watch_render(args) -> int:
    if args.file == "-":
        raise UsageError("--watch watches a file; standard input cannot be watched")
    if getattr(args, "ray", None):
        raise UsageError("--watch renders on this machine; leave out --ray")
    watcher = render_watcher(args)
    code = watcher.run()
    last = watcher.results[-1] if watcher.results else None
    if code == EXIT_INTERRUPTED and isinstance(last, KeyboardInterrupt) and hasattr(last, "next_frame"):
        _say(f"interrupted at frame {last.next_frame}; run the same command again to resume")
    return code


# ---- dfm preview --watch --------------------------------------------------------------------------------------


class _PreviewCancelled(Exception):
    pass


def preview_watcher(args, echo: Callable[[str], None] = _say) -> Watcher:
    """The watcher of `dfm preview FILE --watch`: each job writes the preview again (a preview in flight
    stops at its next frame)."""
    def job(result, cancel: Cancel):
        from ..runtime.preview import render_preview, strip_path

        out = preview_out(args)
        bar = progress_bar(args.quiet, "preview")

        def progress(done: int, total: int) -> None:
            bar(done, total)
            if cancel.is_set():
                raise _PreviewCancelled

        try:
            path = render_preview(scene_table(result, args), out, progress=progress, strip=strip_path(out))
        except _PreviewCancelled:
            bar.close()
            if cancel.reason != "interrupted":
                echo(f"preview stopped: {cancel.reason}")
            raise
        bar.close()
        echo(f"wrote {path} and {strip_path(path)}; waiting for the next save")
        return path

    return Watcher(Path(args.file), job, echo=echo, preview=True)


def watch_preview(args) -> int:
    if args.file == "-":
        raise UsageError("--watch watches a file; standard input cannot be watched")
    return preview_watcher(args).run()


__all__ = ["Watcher", "preview_watcher", "render_watcher", "watch_preview", "watch_render"]
