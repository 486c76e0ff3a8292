"""The `dfm` command line: check, fmt, compile, plot, import, export, render, batch, preview, diff, lsp,
explain, demo, interpolate, upscale, studio. Each command is a module of app/commands/ (its arguments and its
handler); this file lists them in help order, parses, and hands the command to app/dispatch.py, which
prints any error it raises.

Exit codes (as ruff; app/exit_codes.py): 0 clean; 1 errors found (or `fmt --check` would change a file);
2 bad usage or an internal error; 130 interrupted. Heavy modules (torch, diffusers, matplotlib) are
imported only by the commands that need them, so `dfm check` starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from .commands import (
    batch,
    check,
    demo,
    diff,
    explain,
    export,
    fmt,
    import_,
    interpolate,
    lsp,
    plot,
    preview,
    render,
    studio,
    upscale,
)
from .commands import compile as compile_command
from .dispatch import run_command
from .exit_codes import EXIT_USAGE

COMMANDS = (check, fmt, compile_command, plot, import_, export, render, batch, preview, studio, diff, lsp, explain,
            demo, interpolate, upscale)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="dfm", description="Scene scripts (.dfm) to Stable Diffusion animations.")
    ap.add_argument("--version", action="version", version=f"dfm {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return run_command(args)
