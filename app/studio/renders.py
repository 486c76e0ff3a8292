"""A render started from the studio page: `python -m dfm render SCENE [--out OUT] --quiet` in a subprocess, so
it follows exactly the rules of `dfm render` typed in a terminal (the output folder's checks, resume from a
checkpoint, the incremental re-render that keeps what an edit cannot change, never overwriting a user's
file) and torch loads in that process, never in the studio's. Stop sends SIGINT, as Ctrl-C would: the
render checkpoints and a later render continues it. One render at a time."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

LOG_LINES = 200  # what the page shows of the render's messages
MAX_LINE = 4096  # bytes of one message kept: a longer line (a dumped array) is cut, never held whole
CHUNK = 65536
PUBLISH_S = 0.2  # the log is sent to the page at most this often: a chatty render is a few events a second


class RenderRunner:
    def __init__(self, scene: Path, out: Path | None, on_change: Callable[[], None]) -> None:
        self.scene, self.out, self.on_change = scene, out, on_change  # out: the user's --out, or None
        self.proc: asyncio.subprocess.Process | None = None
        self.log: deque[str] = deque(maxlen=LOG_LINES)
        self.returncode: int | None = None
        self.started: float | None = None
        self.stopping = False
        self._flush: asyncio.TimerHandle | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def command(self) -> list[str]:
        out = ["--out", str(self.out)] if self.out is not None else []
        return [sys.executable, "-m", "dfm", "render", str(self.scene), *out, "--quiet"]

    async def start(self) -> None:
        """Start the render (the caller has checked that none runs)."""
        self.log.clear()
        self.returncode, self.started, self.stopping = None, time.time(), False
        # its own session: a Ctrl-C in the studio's terminal reaches the studio only, which then sends the
        # render exactly one SIGINT (a second one could cut its checkpoint short)
        self.proc = await asyncio.create_subprocess_exec(*self.command(), stdin=asyncio.subprocess.DEVNULL,
                                                         stdout=asyncio.subprocess.PIPE,
                                                         stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        self.log.append("$ dfm render " + " ".join(self.command()[4:]))
        asyncio.get_running_loop().create_task(self._follow(self.proc))
        self.on_change()

    async def _follow(self, proc: asyncio.subprocess.Process) -> None:
        """Read the render's output to its end in chunks (a line iterator raises on a line over 64 KiB, and
        a reader that stops leaves the pipe full and the render blocked)."""
        assert proc.stdout is not None
        pending = b""
        while chunk := await proc.stdout.read(CHUNK):
            lines, pending = split_lines(pending, chunk)
            self.log.extend(line.decode("utf-8", "replace").rstrip() for line in lines)
            if lines:
                self._log_changed()
        if pending:
            self.log.append(pending.decode("utf-8", "replace").rstrip())
        self.returncode = await proc.wait()
        self.log.append(f"(dfm render exited with {self.returncode})")
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self.on_change()

    def _log_changed(self) -> None:
        """New lines: tell the page within PUBLISH_S (with the state it then has), not once per line."""
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(PUBLISH_S, self._publish_log)

    def _publish_log(self) -> None:
        self._flush = None
        self.on_change()

    def stop(self) -> bool:
        """SIGINT to the render (it checkpoints and exits); False when none runs."""
        if not self.running:
            return False
        assert self.proc is not None
        self.stopping = True
        self.proc.send_signal(signal.SIGINT)
        self.on_change()
        return True

    def state(self) -> dict:
        return {"running": self.running, "stopping": self.stopping and self.running,
                "pid": self.proc.pid if self.proc is not None else None, "returncode": self.returncode,
                "started": self.started, "log": list(self.log)}

    async def close(self) -> None:
        """The studio is closing: stop a render it started, as Ctrl-C would, and let it checkpoint."""
        if self.running and self.stop():
            assert self.proc is not None
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except asyncio.TimeoutError:
                self.proc.kill()


def split_lines(pending: bytes, chunk: bytes) -> tuple[list[bytes], bytes]:
    """The complete lines of `pending + chunk` and the unfinished rest, each cut to MAX_LINE bytes (so what
    is held between chunks stays bounded however long a line is)."""
    *lines, rest = (pending + chunk).split(b"\n")
    return [line[:MAX_LINE] for line in lines], rest[:MAX_LINE]


__all__ = ["RenderRunner", "split_lines"]
