"""`dfm diff OLD NEW`: what changed between two versions of a scene, and the first frame it changes
(app/diff.py does the work)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("diff", help="what changed between two versions of a scene, and the first frame it changes")
    p.add_argument("old", metavar="OLD", help="a scene file, or a git revision of one: HEAD:scene.dfm")
    p.add_argument("new", metavar="NEW", help="a scene file, or a git revision of one")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..diff import run_diff  # numpy and the compiler: only for this command

    return run_diff(args.old, args.new, args.format)
