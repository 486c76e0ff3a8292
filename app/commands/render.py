"""`dfm render FILE`: frames, video.mp4, table.csv and manifest.json; `--watch` renders again on each save,
`--ray` splits the frames across Ray workers."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from ..console import compile_file, progress_bar
from ..exit_codes import EXIT_ERRORS, EXIT_INTERRUPTED, EXIT_OK
from ..render_args import check_ray_options, ray_arguments, render_out, scene_table, speedups


def add_parser(sub) -> None:
    p = sub.add_parser("render", help="render frames, video.mp4, table.csv and manifest.json")
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE")
    p.add_argument("--out", metavar="DIR", help="output folder (default: outputs/<scene name>)")
    p.add_argument("--model", metavar="M", help="hub id, diffusers folder or .safetensors; overrides the scene")
    p.add_argument("--depth-model", metavar="M", help="3D: hub id or local folder of a depth model; overrides "
                   "the scene's depth_model")
    p.add_argument("--device", default="auto", metavar="D", help="auto (cuda, mps, cpu), cuda, cuda:1, mps, cpu")
    p.add_argument("--allow-pickle", action="store_true", help="allow loading a .ckpt (pickle) checkpoint")
    p.add_argument("--restart", action="store_true", help="render from frame 0 even if an interrupted render "
                   "of the same scene left a checkpoint in the output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-audio", action="store_true", help="video.mp4 without the scene's soundtrack")
    p.add_argument("--watch", action="store_true", help="render, then again on each save of FILE, keeping the "
                   "frames the edit cannot change (Ctrl-C stops)")
    from ...runtime.speedups import add_arguments as speed_arguments  # argparse only: no torch

    speed_arguments(p)
    ray_arguments(p, "split the frames across Ray workers (stills, interpolation, video input): ADDRESS "
                  "(host:6379, ray://host:10001), auto (the cluster `ray start` runs here) or local")


def parse(argv: list[str]) -> argparse.Namespace:
    """`dfm render ARGV`'s arguments, parsed without the other commands (`dfm demo` renders through this)."""
    p = argparse.ArgumentParser(prog="dfm render")
    add_arguments(p)
    p.set_defaults(func=run, command="render")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    # the speed-up switches (--dtype, --attention, ...) apply with --watch and --ray too: app/watch.py
    # passes them to each render, and the Ray workers apply them as render() does (runtime/actor.py)
    if args.watch:
        from ..watch import watch_render

        return watch_render(args)
    result = compile_file(args.file, notes=True)  # the model family's notes (DFM206/207) belong to a render
    if result is None:
        return EXIT_ERRORS
    out = render_out(args, result.table)
    table = result.table
    # said before the runtime (torch, diffusers) is imported: that alone takes seconds
    say(args, f"rendering {args.file}: {len(table)} frames, mode {table.settings.mode}, "
              f"{table.settings.width}x{table.settings.height}, into {out}")
    if not args.ray and not args.restart:
        kept = up_to_date(args, scene_table(result, args), out)
        if kept is not None:
            say(args, f"{kept}; {out} is up to date, nothing was written")
            return EXIT_OK
    say(args, "starting the runtime (torch, diffusers: seconds on a first run)")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from ...runtime.render import RenderInterrupted, render

    def on_resume(frame: int, total: int) -> None:
        print(f"resuming at frame {frame} of {total} (--restart renders from frame 0)", file=sys.stderr)

    def on_keep(message: str) -> None:  # an incremental re-render: what it keeps of the folder's render, and why
        print(message, file=sys.stderr)

    check_ray_options(args)
    progress = measured_eta(table, progress_bar(args.quiet), args)
    try:
        if args.ray:  # the frames split across Ray workers (scaleout/shard.py)
            report = _render_on_ray(args, result, out, progress, on_resume, on_keep)
        else:
            report = render(scene_table(result, args), out, scene_text=result.scene.source, scene_path=args.file,
                            model=args.model, device=args.device, allow_pickle=args.allow_pickle,
                            progress=progress, depth_model=args.depth_model, restart=args.restart,
                            on_resume=on_resume, on_keep=on_keep, dtype=args.dtype, speed=speedups(args),
                            on_stage=lambda words: say(args, words))
    except RenderInterrupted as exc:
        progress.close()
        print(interrupted_words(exc.next_frame, exc.total, out), file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:  # a RenderError (any UserError) is printed by app/dispatch.py
        progress.close()
    for w in report.warnings:
        print(f"{args.file}: warning: {w}", file=sys.stderr)
    if not args.quiet:
        print(f"wrote {report.frames} frames to {report.out_dir}" +
              (f" and {report.video}" if report.video else ""), file=sys.stderr)
    return EXIT_OK


def up_to_date(args: argparse.Namespace, table, out: Path) -> str | None:
    """What a render that keeps every frame would say, found without importing torch (runtime/uptodate.py):
    a rerun that changes no frame ends in a moment, loading no model."""
    from ...runtime.uptodate import kept_whole  # torch-free

    return kept_whole(table, out, model=args.model, device=args.device, dtype=args.dtype, speed=speedups(args),
                      scene_path=args.file, allow_pickle=args.allow_pickle)


def measured_eta(table, progress, args: argparse.Namespace):
    """`progress`, and one line once a diffused frame has been timed: how long the rest takes, from the seconds
    per UNet evaluation that frame measured and the evaluations the table says are left (`unet_evals`; a guess
    from the hardware would be off by far more). The first frame carries one-off costs: the second is timed."""
    evals = [int(v) for v in table["unet_evals"].tolist()]
    state = {"last": None, "said": bool(args.quiet)}

    def step(done: int, total: int) -> None:
        progress(done, total)
        now = time.perf_counter()
        last, state["last"] = state["last"], (done, now)
        if state["said"] or last is None or done != last[0] + 1 or evals[done - 1] == 0 or done >= total:
            return  # the first call, a kept frame, a tween (no UNet) or the last frame: nothing to time
        per_eval = (now - last[1]) / evals[done - 1]
        left = per_eval * sum(evals[done:])
        state["said"] = True
        _write(f"about {_duration(left)} to go ({per_eval:.2f} s per UNet evaluation, measured on frame "
               f"{done - 1}; {sum(evals[done:])} evaluations left)")

    step.close = progress.close  # type: ignore[attr-defined]
    return step


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _write(line: str) -> None:
    """A line on standard error that does not break the progress bar."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)


def say(args: argparse.Namespace, words: str) -> None:
    """One line of what the render is doing, on standard error (not with --quiet)."""
    if not args.quiet:
        print(words, file=sys.stderr, flush=True)


def interrupted_words(next_frame: int, total: int, out: Path) -> str:
    """The one line a stopped render ends with: what is on disk, and how to go on."""
    if next_frame == 0:
        done = "no frame was finished"
    else:
        frames = "frame 0 is" if next_frame == 1 else f"frames 0–{next_frame - 1} are"
        done = f"{frames} in {out / 'frames'}"
    return (f"stopped at frame {next_frame} of {total}: {done}; run the same command again to go on from frame "
            f"{next_frame} (--restart renders from frame 0)")


def _render_on_ray(args: argparse.Namespace, result, out: Path, progress, on_resume, on_keep):
    from ...scaleout.cluster import open_pool
    from ...scaleout.shard import check_shardable, render_sharded

    check_shardable(result.table)  # before Ray starts
    with open_pool(args.ray, device=args.device, dtype=args.dtype, allow_pickle=args.allow_pickle,
                   workers=args.workers, cpus_per_worker=args.cpus_per_worker, limit=len(result.table)) as pool:
        return render_sharded(scene_table(result, args), out, pool, scene_text=result.scene.source,
                              scene_path=args.file, model=args.model, restart=args.restart, progress=progress,
                              on_resume=on_resume, on_keep=on_keep, speed=speedups(args))
