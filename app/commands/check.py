"""`dfm check FILE...`: report every mistake in scenes, before any GPU work."""

from __future__ import annotations

import argparse
import sys

from ..console import UsageError, print_diagnostics, read_source, summary
from ..exit_codes import EXIT_ERRORS, EXIT_OK, EXIT_USAGE


def add_parser(sub) -> None:
    p = sub.add_parser("check", help="report every mistake in scenes, before any GPU work")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--format", choices=("full", "concise", "json"), default="full")
    p.add_argument("--strict", action="store_true", help="warnings fail too")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ...api import check_text

    all_diags, sources, unreadable = [], {}, []
    for path in args.files:
        try:  # a missing file is reported after the others, which are still checked
            text = read_source(path)
        except UsageError as exc:
            unreadable.append(str(exc))
            continue
        sources[path] = text
        all_diags += check_text(text, path)
    print_diagnostics(all_diags, sources, args.format, sys.stdout)
    if args.format != "json":
        print(summary(all_diags, len(sources)), file=sys.stderr)
    for why in unreadable:
        print(f"dfm check: error: {why}", file=sys.stderr)
    if unreadable:
        return EXIT_USAGE
    failed = any(d.is_error for d in all_diags) or (args.strict and any(d.is_warning for d in all_diags))
    return EXIT_ERRORS if failed else EXIT_OK
