"""Paths a scene names: relative to the scene file's folder, checked for existence when that is known."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..dsl import ir
from .catalogue import Param

if TYPE_CHECKING:
    from .context import CompileContext


def scene_relative(text: str, base_dir: Path | None) -> Path:
    """`text` (`~` expanded) as a path: absolute as written, else relative to the scene's folder if known."""
    raw = os.path.expanduser(text)
    return Path(raw) if os.path.isabs(raw) or base_dir is None else base_dir / raw


def path_value(ctx: CompileContext, p: Param, v: ir.String) -> str | None:
    """A path setting's value; a file that must exist and does not yet is a warning (DFM403), not an error:
    it may be made before the render."""
    full = scene_relative(v.value, ctx.base_dir)
    if ctx.base_dir is not None and p.must_exist:
        found = exists(ctx, p.name, full, v)
        if found is None:
            return None
        if not found:
            ctx.warn("DFM403", f"{p.name}: `{v.value}` does not exist (yet)", v.span, parameter=p.name,
                     help="paths are relative to the scene file; `dfm render` needs it to exist")
    return str(full)


def exists(ctx: CompileContext, name: str, path: Path, v: ir.String) -> bool | None:
    """Whether `path` exists; None after a diagnostic when the OS cannot even tell (a name too long,
    a NUL byte, a permission error)."""
    try:
        if "\0" in str(path):  # Path.exists() says False; opening it later would raise
            raise ValueError("it holds a NUL character")
        return path.exists()
    except (OSError, ValueError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        ctx.err("DFM403", f"{name}: the path `{v.value[:60]}{'…' if len(v.value) > 60 else ''}` cannot be "
                f"used: {why}", v.span, parameter=name, help="write the path of an existing file")
        return None


MAX_FOLDER_FILES = 20_000  # files looked at when a folder is searched by stem


def stem_index(folder: Path, suffixes: tuple[str, ...], *, model_folders: bool = False) -> dict[str, Path]:
    """Lower-cased file stem -> the first file (in sorted order, subfolders included) with one of `suffixes`,
    as A1111 indexes its model folders; with `model_folders`, also each subfolder holding a config.json (a
    diffusers model) by its name. At most MAX_FOLDER_FILES files are looked at; an unreadable folder is empty."""
    index: dict[str, Path] = {}
    seen = 0
    try:
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            here = Path(root)
            if model_folders and here != folder and (here / "config.json").is_file():
                index.setdefault(here.name.lower(), here)
            for f in sorted(files):
                seen += 1
                if seen > MAX_FOLDER_FILES:
                    return index
                p = here / f
                if p.suffix.lower() in suffixes:
                    index.setdefault(p.stem.lower(), p)
    except OSError:
        pass
    return index
