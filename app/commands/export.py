"""`dfm export FILE`: a .dfm scene → an A1111 Deforum settings file."""

from __future__ import annotations

import argparse
import sys

from ..console import compile_file, emit
from ..exit_codes import EXIT_ERRORS, EXIT_OK


def add_parser(sub) -> None:
    p = sub.add_parser("export", help=".dfm → A1111 Deforum settings file")
    p.add_argument("file", metavar="FILE")
    p.add_argument("-o", "--output", metavar="SETTINGS")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = compile_file(args.file)
    if result is None:
        return EXIT_ERRORS
    from ...compiler.deforum_export import export_settings

    exported = export_settings(result)
    for w in exported.warnings:
        print(f"{args.file}: warning: {w}", file=sys.stderr)
    emit(exported.dumps() + "\n", args.output, args.file)
    return EXIT_OK
