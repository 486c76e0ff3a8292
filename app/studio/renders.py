"""A render started from the studio page: `python -m dfm render SCENE --out OUT --quiet` in a subprocess, so
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


class RenderRunner:
    def __init__(self, scene: Path, out: Path, on_change: Callable[[], None]) -> None:
        self.scene, self.out, self.on_change = scene, out, on_change
        self.proc: asyncio.subprocess.Process | None = None
        self.log: deque[str] = deque(maxlen=LOG_LINES)
        self.returncode: int | None = None
        self.started: float | None = None
        self.stopping = False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "dfm", "render", str(self.scene), "--out", str(self.out), "--quiet"]

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
        assert proc.stdout is not None
        async for raw in proc.stdout:
            self.log.append(raw.decode("utf-8", "replace").rstrip())
            self.on_change()
        self.returncode = await proc.wait()
        self.log.append(f"(dfm render exited with {self.returncode})")
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


__all__ = ["RenderRunner"]
