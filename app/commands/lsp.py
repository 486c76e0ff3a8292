"""`dfm lsp`: the language server for editors, over stdin/stdout (app/lsp/ does the work)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("lsp", help="the language server for editors (LSP over stdin/stdout)")
    p.add_argument("--stdio", action="store_true", help="talk over stdin/stdout (the default; accepted because "
                   "some clients pass it)")
    p.add_argument("--log-file", metavar="FILE", help="write the server's log here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..lsp.server import serve  # pygls: only for this command

    return serve(log_file=args.log_file)
