"""What the commands share at the terminal: reading a scene, printing diagnostics and their summary,
writing an output, a progress bar. Used by app/commands/, app/watch.py and app/demo.py; it imports none
of them, so they can all import it without a cycle. Heavy or slow modules are imported inside the
functions that need them (`dfm check` must start in a fraction of a second).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from ..contract.errors import UserError
from .exit_codes import EXIT_USAGE


class UsageError(UserError):
    """Bad usage: a missing file, options that do not go together (exit 2)."""

    exit_code = EXIT_USAGE


def read_source(path: str, limit: int | None = None, what: str = "scene") -> str:
    """The text of a scene file (or, with `limit` and `what`, another text file), or of standard input for
    "-". At most `limit` bytes (a scene's: 4 bytes a character of the parser's MAX_SOURCE_LENGTH, which
    then says exactly how long it is) are read: a 2 GB file or /dev/zero is refused, not read whole."""
    from ..contract.files import kind_of, read_limited, shown

    if limit is None:
        from ..dsl.parser import MAX_SOURCE_LENGTH

        limit = 4 * MAX_SOURCE_LENGTH
    if path == "-":
        text = sys.stdin.read(limit + 1)  # characters, not bytes: a bound all the same
        if len(text) > limit:
            raise UsageError(f"standard input is more than {limit:,} characters, more than a {what} can be")
        return text
    kind = kind_of(path)  # a path the OS refuses is a FileError naming it
    if kind is None:
        raise UsageError(f"{shown(path)}: no such file")
    if kind == "folder":
        raise UsageError(f"{shown(path)}: is a folder; give .dfm files" if what == "scene" else
                         f"{shown(path)}: is a folder; give a {what}")
    data = read_limited(path, limit, what, UsageError)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{shown(path)}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")  # as a file opened as text reads (universal newlines)


def color(stream: TextIO) -> bool:
    return stream.isatty() and not os.environ.get("NO_COLOR")


def print_diagnostics(diags, sources: dict[str, str], fmt: str, stream: TextIO) -> None:
    from ..dsl.diagnostics import render_concise, render_full, render_json

    if fmt == "json":
        print(render_json(diags), file=stream)
        return
    for d in diags:
        text = render_concise(d) if fmt == "concise" else render_full(d, sources.get(d.path, ""), color(stream))
        print(text + ("" if fmt == "concise" else "\n"), file=stream)


def summary(diags, files: int) -> str:
    from ..dsl.diagnostics import Severity

    e = sum(d.is_error for d in diags)
    w = sum(d.severity is Severity.WARNING for d in diags)
    notes = len(diags) - e - w  # what the compiler found out (a detected tempo): not problems
    also = f" ({notes} note{'s' * (notes != 1)})" if notes else ""
    if not e and not w:
        return f"ok: {files} file{'s' * (files != 1)} checked, no problems{also}"
    return f"{e} error{'s' * (e != 1)}, {w} warning{'s' * (w != 1)} in {files} file{'s' * (files != 1)}{also}"


def compile_file(path: str, *, notes: bool = False, preview: bool = False):
    """The compile result of a file; prints diagnostics and returns None on errors. Notes (a detected tempo,
    the model family's defaults: DFM206/DFM207) only with `notes`: `check` and `render` say them, the
    commands run again and again while editing (compile, plot, preview, export) would repeat them."""
    from ..api import compile_result
    from ..dsl.diagnostics import Severity

    text = read_source(path)
    result = compile_result(text, path, preview=preview)
    shown = [d for d in result.diagnostics if notes or d.severity is not Severity.NOTE]
    if shown:
        print_diagnostics(shown, {path: text}, "full", sys.stderr)
    if result.errors or result.table is None:
        print(summary(shown, 1), file=sys.stderr)
        return None
    return result


def emit(data: str | Callable[[TextIO], None], out: str | None, source: str | None = None) -> None:
    """`data` (a text, or a function writing it to a stream) to stdout or the file `out`; never over `source`,
    the scene it was made from."""
    from ..contract.files import write_atomic

    if out in (None, "-"):
        if callable(data):
            data(sys.stdout)
        else:
            sys.stdout.write(data)
    else:
        if source not in (None, "-") and Path(out).exists() and Path(out).samefile(source):
            raise UsageError(f"-o {out} is the scene itself; writing there would replace it. Choose another file")
        write_atomic(out, data)
        print(f"wrote {out}", file=sys.stderr)


class Progress:
    """A tqdm bar (frame, frames/s, ETA) that appears with the first frame, not while models load;
    with `quiet`, one that draws nothing. `label` names the work (render, preview). Called as
    `progress(done, total)`."""

    def __init__(self, quiet: bool = False, label: str = "render") -> None:
        self.quiet = quiet
        self.label = label
        self.bar = None

    def __call__(self, done: int, total_: int) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total_, unit="frame", dynamic_ncols=True, desc=self.label)
        self.bar.total = total_
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def progress_bar(quiet: bool = False, label: str = "render") -> Progress:
    return Progress(quiet, label)


__all__ = ["Progress", "UsageError", "color", "compile_file", "emit", "print_diagnostics", "progress_bar",
           "read_source", "summary"]
