"""`dfm fmt FILE...`: rewrite scenes in the canonical layout (`--check`, `--diff`: write nothing)."""

from __future__ import annotations

import argparse
import difflib
import sys

from ..console import read_source
from ..exit_codes import EXIT_ERRORS, EXIT_OK


def add_parser(sub) -> None:
    p = sub.add_parser("fmt", help="rewrite scenes in the canonical layout")
    p.add_argument("files", nargs="+", metavar="FILE")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file would change")
    g.add_argument("--diff", action="store_true", help="print the changes instead of writing them")
    p.set_defaults(func=run)


def rename_map() -> dict[str, str]:
    """Each alias and the parameter name the formatter writes for it."""
    from ...compiler import catalogue

    return {alias: name for alias, name in catalogue.ALIASES.items()}


def run(args: argparse.Namespace) -> int:
    from ...contract.files import write_atomic
    from ...dsl.formatter import format_source

    rename = rename_map()
    changed, failed = [], False
    for path in args.files:
        text = read_source(path)
        try:
            new = format_source(text, rename, path)
        except ValueError as exc:
            print(f"{exc}\nhelp: run `dfm check {path}` for the details", file=sys.stderr)
            failed = True
            continue
        if path == "-":
            sys.stdout.write(new)
            continue
        if new != text:
            changed.append(path)
            if args.diff:
                sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), new.splitlines(True), path, path))
            elif not args.check:
                write_atomic(path, new)
    if path != "-":
        _report(args, changed)
    if failed:
        return EXIT_ERRORS
    return EXIT_ERRORS if changed and (args.check or args.diff) else EXIT_OK


def _report(args: argparse.Namespace, changed: list[str]) -> None:
    verb = "would reformat" if (args.check or args.diff) else "reformatted"
    for p in changed:
        print(f"{verb} {p}", file=sys.stderr)
    print(f"{len(changed)} file{'s' * (len(changed) != 1)} {verb}, "
          f"{len(args.files) - len(changed)} unchanged", file=sys.stderr)
