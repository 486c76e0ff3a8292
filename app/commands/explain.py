"""`dfm explain CODE`: what a diagnostic code means, and how to fix it."""

from __future__ import annotations

import argparse

from ..console import UsageError
from ..exit_codes import EXIT_OK


def add_parser(sub) -> None:
    p = sub.add_parser("explain", help="explain a diagnostic code, e.g. DFM011")
    p.add_argument("code")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ...dsl.codes import CODES, explain

    text = explain(args.code)
    if text is None:
        raise UsageError(f"unknown code {args.code!r}; codes are {', '.join(sorted(CODES))}")
    print(text)
    return EXIT_OK
