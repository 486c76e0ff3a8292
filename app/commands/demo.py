"""`dfm demo [FILE]`: table, plot and motion preview, then a few-step render if a model is reachable
(what `make demo` runs; app/demo.py does the work)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="the demo: table, plot and motion preview, then a few-step render if a model "
                       "is reachable (what `make demo` runs)")
    p.add_argument("file", nargs="?", metavar="FILE", help="the scene (default: examples/demo.dfm)")
    p.add_argument("--out", metavar="DIR", default="outputs/demo", help="output folder (default: outputs/demo)")
    p.add_argument("--model", metavar="M", help="hub id, diffusers folder or .safetensors; overrides the scene")
    p.add_argument("--device", default="auto", metavar="D", help="auto (cuda, mps, cpu), cuda, cuda:1, mps, cpu")
    p.add_argument("--yes", action="store_true", help="on a CPU, start at once (no countdown to interrupt)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    return run_demo(args)
