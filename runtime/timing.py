"""Per-stage wall-clock timing of a render (warp, encode, denoise, decode, write, ...)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch


class StageTimer:
    """Accumulates seconds per stage. With `sync=True` it waits for the GPU at stage boundaries, so a
    stage's time is its own and not the queue of launches before it (use in benchmarks: it costs
    throughput)."""

    def __init__(self, device: torch.device | None = None, sync: bool = False) -> None:
        self.seconds: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self._sync = sync and device is not None and device.type == "cuda"

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        if self._sync:
            torch.cuda.synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            if self._sync:
                torch.cuda.synchronize()
            self.add(stage, time.perf_counter() - start)

    def add(self, stage: str, seconds: float, count: int = 1) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
        self.counts[stage] = self.counts.get(stage, 0) + count

    def report(self) -> dict[str, float]:
        return {k: round(v, 6) for k, v in self.seconds.items()}
