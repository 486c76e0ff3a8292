"""The public Python API: each stage on its own, and the chain.

    >>> table = dfm.api.compile_text(open("scene.dfm").read(), "scene.dfm")
    >>> table["zoom"][:3]

Nothing here imports torch: `render` loads the runtime lazily.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .compiler.compile import CompileResult, compile_source, schedule_values
from .contract.table import FrameTable
from .dsl import ir
from .dsl.diagnostics import DfmError, Diagnostic
from .dsl.parser import ParseResult
from .dsl.parser import parse as _parse


def parse(text: str, path: str = "<string>") -> ParseResult:
    """Text → Scene IR plus syntax diagnostics."""
    return _parse(text, path)


def check_text(text: str, path: str = "<string>", *, base_dir: str | Path | None = None) -> list[Diagnostic]:
    """Every diagnostic of a scene (syntax, catalogue, keys, per-frame values), sorted by position: all
    that `compile_result` reports, those it finds in the FrameTable included, without building the table."""
    return compile_source(text, path, base_dir=base_dir, build_table=False).diagnostics


def compile_result(text: str, path: str = "<string>", *, base_dir: str | Path | None = None,
                   preview: bool = False) -> CompileResult:
    """The whole compile result (diagnostics, settings, table); `preview`: for a preview without a model, where
    what only a render needs (a ControlNet preprocessor's weights) is a warning."""
    return compile_source(text, path, base_dir=base_dir, preview=preview)


def compile_text(text: str, path: str = "<string>", *, base_dir: str | Path | None = None) -> FrameTable:
    """Text → FrameTable; raises DfmError carrying every diagnostic when the scene has errors."""
    result = compile_source(text, path, base_dir=base_dir)
    if result.errors or result.table is None:
        raise DfmError(result.errors or result.diagnostics)
    return result.table


def compile_file(path: str | Path) -> FrameTable:
    p = Path(path)
    return compile_text(p.read_text(encoding="utf-8"), str(p))


def evaluate_schedule(text: str, frames: int, *, fps: float = 15.0, bpm: float | None = None,
                      seed: int = 42) -> np.ndarray:
    """One schedule written as in a scene (`0:(1), 10:(2)` or `1.02`), one float64 per frame; raises
    DfmError on a bad schedule. For tools, tests and benchmarks."""
    values, diagnostics = schedule_values(text, frames, fps=fps, bpm=bpm, seed=seed)
    errors = [d for d in diagnostics if d.is_error]
    if errors or values is None:
        raise DfmError(errors or diagnostics)
    return values


def render(table: FrameTable, out_dir: str | Path, **kwargs):
    """Render a compiled table (see dfm.runtime.render.render for the options)."""
    from .runtime.render import render as _render

    return _render(table, Path(out_dir), **kwargs)


__all__ = ["parse", "check_text", "compile_text", "compile_file", "compile_result", "evaluate_schedule", "render", "ir",
           "DfmError"]
