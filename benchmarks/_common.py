"""Set-up shared by the benchmarks that build the test suite's tiny models; import it before torch.

Offline (no hub look-ups), quiet model loading, and `tests/` importable for `tiny_models`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))  # the tiny model builder and the table helper


@contextlib.contextmanager
def workdir(given: Path | None, prefix: str):
    """The folder to build models and renders in: `given` (kept afterwards), else a temporary one."""
    if given is not None:
        yield given
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


def write_json(path: Path, data) -> Path:
    """`data` as indented JSON at `path` (its folder made); returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return path


def median_seconds(fn, repeat: int) -> float:
    """The median wall time of `repeat` calls of `fn`, after one warm-up call (thread pools, allocators,
    oneDNN / cuDNN algorithm choice, a first model allocation)."""
    import statistics
    import time

    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def release_memory(device=None) -> None:
    """Free what dropped modules held: Python's garbage, then CUDA's cached blocks (on `device`'s kind, or
    wherever CUDA is available), so the next figures count only what is loaded then."""
    import gc

    import torch

    gc.collect()
    if (device.type == "cuda") if device is not None else torch.cuda.is_available():
        torch.cuda.empty_cache()
