"""What the commands that render (`render`, `preview`, `batch`, and their `--watch`) make of their arguments:
the output path, the table to render, the speed-up switches, the Ray options. Argparse only: no torch."""

from __future__ import annotations

import argparse
from pathlib import Path

from .console import UsageError


def render_out(args: argparse.Namespace, table) -> Path:
    """The folder `dfm render` writes: --out, else the scene's output_dir, else outputs/<scene name>/."""
    if args.out:
        return Path(args.out)
    s = table.settings
    return Path(s.output_dir) if s.output_dir else Path("outputs") / Path(args.file).stem


def preview_out(args: argparse.Namespace) -> Path:
    """The file `dfm preview` writes: -o, else outputs/<scene name>/preview.mp4."""
    return Path(args.output) if args.output else Path("outputs") / Path(args.file).stem / "preview.mp4"


def scene_table(result, args: argparse.Namespace):
    """The table to render: the compiled one, silent with --no-audio."""
    return result.table.with_settings(audio=None) if getattr(args, "no_audio", False) else result.table


def speedups(args: argparse.Namespace):
    """The render's speed-up switches (runtime/speedups.py: no torch import); None: the defaults."""
    from ..runtime.speedups import from_args

    return from_args(args)


def ray_arguments(p: argparse.ArgumentParser, ray_help: str) -> None:
    """--ray, --workers and --cpus-per-worker, as `render` and `batch` take them."""
    p.add_argument("--ray", metavar="ADDRESS", help=ray_help + "; needs pip install 'dfm[ray]'")
    p.add_argument("--workers", type=int, metavar="N", help="with --ray: N workers (default: one per GPU of the "
                   "cluster, or one per --cpus-per-worker CPUs without GPUs)")
    p.add_argument("--cpus-per-worker", type=int, default=1, metavar="N", help="with --ray on CPUs: the cores (torch "
                   "threads) of each worker (default 1)")


def check_ray_options(args: argparse.Namespace) -> None:
    if not args.ray and (args.workers is not None or args.cpus_per_worker != 1):
        raise UsageError("--workers and --cpus-per-worker apply with --ray only")


__all__ = ["check_ray_options", "preview_out", "ray_arguments", "render_out", "scene_table", "speedups"]
