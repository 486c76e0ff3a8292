"""Writing files so that nothing is ever half-written and no permission is lost: a temp file in the same
folder, then rename. A new file gets the mode the umask gives (like `open`); a rewritten file keeps the
mode it had. And reading them guarded: a path the OS refuses (too long, a NUL byte) or a file that is not a
regular one (a FIFO, a device) or past its limit is a UserError naming the path, shortened, never an
OSError or a read of everything first. Standard library only: the commands and the runtime share this one
implementation."""

from __future__ import annotations

import functools
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from .errors import EXIT_USAGE, UserError

MAX_PATH_SHOWN = 100  # characters of a path in a message: a 5,000-character path would bury the message


@functools.cache
def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it; put it straight back
    os.umask(mask)
    return mask


def file_mode(target: Path) -> int:
    """The mode `target` should have after a write: its own if it exists, else 0666 less the umask."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def write_atomic(path: str | os.PathLike, data: str | bytes | Callable[[TextIO], None]) -> Path:
    """`data` into `path` through a temp file and a rename (the file's mode kept, a new one's from the umask).
    `data` may be a function that writes the text to a stream: a large output is never one string."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = file_mode(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        if callable(data):
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as text:
                data(text)
                os.fchmod(text.fileno(), mode)  # mkstemp makes 0600
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
                os.fchmod(f.fileno(), mode)  # mkstemp makes 0600
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


# ---- reading -----------------------------------------------------------------------------------------------


class FileError(UserError):
    """A path that cannot be read as the file it should be: the command could not even start (exit 2)."""

    exit_code = EXIT_USAGE


def shown(path: str | os.PathLike) -> str:
    """`path` for a message: shortened in the middle past MAX_PATH_SHOWN characters."""
    text = os.fspath(path)
    text = text if isinstance(text, str) else os.fsdecode(text)
    if len(text) <= MAX_PATH_SHOWN:
        return text
    return f"{text[:MAX_PATH_SHOWN * 2 // 3]}…{text[-MAX_PATH_SHOWN // 3:]} ({len(text):,} characters)"


def path_problem(exc: OSError | ValueError) -> str:
    """Why the OS refuses a path, in words (a ValueError is Python's refusal of a NUL byte)."""
    if isinstance(exc, ValueError):
        return "it holds a NUL character"
    return exc.strerror or str(exc)  # "File name too long", "Permission denied", ...


def file_error(path: str | os.PathLike, exc: OSError | ValueError, what: str = "file",
               cls: type[UserError] = FileError) -> UserError:
    """The UserError for a path the OS refused: what, which path (shortened) and how to fix it."""
    return cls(f"{what} {shown(path)} cannot be read: {path_problem(exc)}",
               f"check the {what}'s permissions, or use a shorter path (a name is at most 255 bytes)")


def kind_of(path: str | os.PathLike) -> str | None:
    """"file", "folder", "other" (a FIFO, a device, a socket) or None when nothing is there. A path the
    OS refuses (too long, a NUL byte, no permission) is FileError, not an OSError."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError) as exc:
        raise file_error(path, exc, "path") from None
    return "file" if stat.S_ISREG(mode) else "folder" if stat.S_ISDIR(mode) else "other"


def read_limited(path: str | os.PathLike, limit: int, what: str = "file",
                 cls: type[UserError] = FileError) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; else `cls` saying why. Opened non-blocking
    and checked with fstat before a byte is read: a FIFO would block and /dev/zero never ends."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise cls(f"{shown(path)}: no such file", f"check the {what}'s path") from None
        raise file_error(path, exc, what, cls) from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise cls(f"{shown(path)} is a folder, not a {what}", f"name a {what}")
        if not stat.S_ISREG(st.st_mode):
            raise cls(f"{shown(path)} is not a regular file (a pipe or a device)",
                      f"save the {what} to a file and name that")
        if st.st_size > limit:
            raise cls(f"{shown(path)} is {st.st_size:,} bytes, more than a {what} can be ({limit:,})",
                      f"check that this is the {what} you meant")
        data = f.read(limit + 1)  # the size may have grown since fstat
    if len(data) > limit:
        raise cls(f"{shown(path)} is more than {limit:,} bytes, more than a {what} can be",
                  f"check that this is the {what} you meant")
    return data
