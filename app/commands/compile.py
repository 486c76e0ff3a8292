"""`dfm compile FILE`: the per-frame table, as CSV, JSON or a Parseq manifest."""

from __future__ import annotations

import argparse
import json
import sys

from ..console import compile_file, emit
from ..exit_codes import EXIT_ERRORS, EXIT_OK


def add_parser(sub) -> None:
    p = sub.add_parser("compile", help="print the per-frame table")
    p.add_argument("file", metavar="FILE")
    p.add_argument("-o", "--output", metavar="OUT", help="write here instead of standard output")
    p.add_argument("--format", choices=("csv", "json", "parseq"), default="csv")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = compile_file(args.file)
    if result is None:
        return EXIT_ERRORS
    table = result.table
    if args.format == "csv":  # written a chunk of rows at a time: a long table is never one string
        data = table.write_csv
    elif args.format == "json":
        data = table.write_json
    else:
        from ...compiler.parseq import to_parseq_manifest

        warnings: list[str] = []
        data = json.dumps(to_parseq_manifest(table, warnings), ensure_ascii=False, indent=2) + "\n"
        for w in warnings:
            print(f"{args.file}: warning: {w}", file=sys.stderr)
    emit(data, args.output, args.file)
    return EXIT_OK
