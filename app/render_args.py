"""What the commands that render (`render`, `preview`, `batch`, and their `--watch`) make of their arguments:
the output path, the table to render, the speed-up switches, the Ray options. Argparse only: no torch.

The scene's default folder, outputs/<scene name>/, is shared: `dfm plot` and `dfm preview` write there
first, then `dfm render`. What the first two write there is recorded as dfm's (runtime/outdir.py
`record_files`), so the render accepts the folder, and the render's folder is checked before any model
loads."""

from __future__ import annotations

import argparse
from pathlib import Path

from .console import UsageError


def render_out(args: argparse.Namespace, table) -> Path:
    """The folder `dfm render` writes: --out, else the scene's output_dir, else outputs/<scene name>/.
    A folder the render may not write into (a file; files dfm did not write) raises RenderError here, in a
    fraction of a second, not after torch loads (seconds); with --watch, each render reports it itself
    (app/watch.py prints a job's RenderError only from the render)."""
    from ..runtime.outdir import check_output  # no torch

    out = out_folder(args, table)
    if not getattr(args, "watch", False):
        check_output(out)
    return out


def out_folder(args: argparse.Namespace, table) -> Path:
    """The folder `dfm render` writes, unchecked: --out, else the scene's output_dir, else outputs/<scene
    name>/. `dfm studio` shows this folder; `table` None (a scene that does not compile yet) has no
    output_dir."""
    if args.out:
        return Path(args.out)
    s = table.settings if table is not None else None
    return Path(s.output_dir) if s is not None and s.output_dir else scene_folder(args.file)


def scene_folder(scene: str) -> Path:
    """A scene's default output folder: outputs/<scene name>/."""
    return Path("outputs") / Path(scene).stem


def default_output(scene: str, *names: str) -> Path:
    """The path of `names[0]` in the scene's default folder, all of `names` (the files a command is about to
    write there) recorded as dfm's first, so that a render into the folder later accepts them."""
    from ..runtime.outdir import record_files  # no torch

    folder = scene_folder(scene)
    record_files(folder, names)
    return folder / names[0]


def preview_out(args: argparse.Namespace) -> Path:
    """The file `dfm preview` writes: -o, else outputs/<scene name>/preview.mp4 (recorded as dfm's, with the
    strip beside it)."""
    if args.output:
        return Path(args.output)
    from ..runtime.preview import strip_path

    name = "preview.mp4"
    return default_output(args.file, name, strip_path(Path(name)).name)


def scene_table(result, args: argparse.Namespace):
    """The table to render: the compiled one, silent with --no-audio."""
    return result.table.with_settings(audio=None) if getattr(args, "no_audio", False) else result.table


def speedups(args: argparse.Namespace):
    """The render's speed-up switches (runtime/speedups.py: no torch import); None: the defaults."""
    from ..runtime.speedups import from_args

    return from_args(args)


def ray_arguments(p: argparse.ArgumentParser, ray_help: str) -> None:
    """--ray, --workers and --cpus-per-worker, as `render` and `batch` take them."""
    p.add_argument("--ray", metavar="ADDRESS",
                   help=ray_help + "; needs Ray: pip install -e '.[ray]' (make test installs it)")
    p.add_argument("--workers", type=int, metavar="N", help="with --ray: N workers (default: one per GPU of the "
                   "cluster, or one per --cpus-per-worker CPUs without GPUs)")
    p.add_argument("--cpus-per-worker", type=int, default=1, metavar="N", help="with --ray on CPUs: the cores (torch "
                   "threads) of each worker (default 1)")


def check_ray_options(args: argparse.Namespace) -> None:
    if not args.ray and (args.workers is not None or args.cpus_per_worker != 1):
        raise UsageError("--workers and --cpus-per-worker apply with --ray only")


__all__ = ["check_ray_options", "default_output", "out_folder", "preview_out", "ray_arguments", "render_out",
           "scene_folder", "scene_table", "speedups"]
