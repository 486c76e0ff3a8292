"""Which files the studio page may read: a file inside one of a few roots (the output folder, a sweep
folder, the page's own assets; from the scene's folder, its soundtrack only), resolved through symlinks, and
nothing else. Any other request (`..`, an absolute path, a percent-encoded separator or dot left in the path,
a NUL, a link that leads out, a hidden name such as .git, as written or once resolved) gets no file, which
the server answers with 404: the page cannot be used to read a user's other files."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath


def safe_file(root: Path | None, relative: str) -> Path | None:
    """The file `relative` (a URL path, already percent-decoded once by the server) names inside `root`, or
    None when it is not a plain relative path to an existing file whose real location is inside `root` and
    outside its hidden folders (.git, .ssh, .dfm-state), as named and once links are resolved."""
    if root is None or not plain_relative(relative) or any(p.startswith(".") for p in relative.split("/")):
        return None
    try:
        base = root.resolve(strict=True)
        target = (base / relative).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, a symlink loop, a name the OS refuses
        return None
    if not target.is_relative_to(base) or not target.is_file():
        return None
    # the resolved path too: a symlink with an ordinary name may lead into .git or .dfm-state
    if any(part.startswith(".") for part in target.relative_to(base).parts):
        return None
    return target


def plain_relative(relative: str) -> bool:
    """A relative POSIX path of ordinary names: no empty path, no NUL, no backslash, no `%` (what is still
    percent-encoded after the server decoded the URL once was encoded twice: an attempt to slip `..` or `/`
    past a check), no absolute path, no `.` or `..` part."""
    if not relative or any(c in relative for c in ("\0", "\\", "%")) or len(relative) > 4096:
        return False
    if relative.startswith("/") or os.path.isabs(relative):
        return False
    parts = PurePosixPath(relative).parts
    return all(part not in (".", "..", "") for part in parts) and ".." not in relative.split("/")


__all__ = ["plain_relative", "safe_file"]
