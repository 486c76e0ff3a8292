"""`dfm plot FILE`: draw the schedules that vary (PNG)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..console import UsageError, compile_file
from ..exit_codes import EXIT_ERRORS, EXIT_OK
from ..render_args import default_output


def add_parser(sub) -> None:
    p = sub.add_parser("plot", help="draw the schedules that vary (PNG)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("-o", "--output", metavar="PNG")
    p.add_argument("--params", metavar="A,B", help="only these columns")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = compile_file(args.file)
    if result is None:
        return EXIT_ERRORS
    from ..plot import plot_table, select_columns  # matplotlib: only when drawing

    params = [p.strip() for p in args.params.split(",") if p.strip()] if args.params else None
    try:
        select_columns(result.table, params)  # an unknown name: an error before anything is recorded or written
        out = Path(args.output) if args.output else default_output(args.file, "plot.png")
        plot_table(result.table, out, params)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(f"wrote {out}", file=sys.stderr)
    return EXIT_OK
