"""`dfm batch SCENE...`: render many scenes and sweeps of their values (`--vary`), here or on a Ray cluster."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..console import UsageError, print_diagnostics, read_source, summary
from ..exit_codes import EXIT_ERRORS, EXIT_INTERRUPTED, EXIT_OK
from ..render_args import check_ray_options, ray_arguments


def add_parser(sub) -> None:
    p = sub.add_parser("batch", help="render many scenes and sweeps of their values, here or on a Ray cluster")
    p.add_argument("scenes", nargs="+", metavar="SCENE")
    p.add_argument("--out", metavar="DIR", default="outputs", help="each scene renders into DIR/<scene name>/ "
                   "(default: outputs)")
    p.add_argument("--vary", action="append", default=[], metavar="NAME=VALUES", help="render every value: "
                   "seed=1..8, strength=0.5,0.6 (values holding commas: separate them with |); several --vary "
                   "render every combination, each into DIR/<scene name>/<name=value,...>/")
    p.add_argument("--model", metavar="M", help="hub id, diffusers folder or .safetensors; overrides the scenes'")
    p.add_argument("--depth-model", metavar="M", help="3D: a depth model; overrides the scenes' depth_model")
    p.add_argument("--device", default="auto", metavar="D", help="auto (cuda, mps, cpu), cuda, cpu; without --ray "
                   "also cuda:1 or mps")
    p.add_argument("--allow-pickle", action="store_true", help="allow loading a .ckpt (pickle) checkpoint")
    p.add_argument("--restart", action="store_true", help="render every scene from frame 0, even those that are "
                   "finished or have a checkpoint")
    p.add_argument("--retries", type=int, default=1, metavar="N", help="with --ray: run a scene again (it resumes) "
                   "when its worker dies, up to N times (default 1)")
    p.add_argument("--dry-run", action="store_true", help="check every scene and list the folders; render nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    ray_arguments(p, "render on Ray workers, one per GPU: ADDRESS (host:6379, ray://host:10001), auto (the "
                  "cluster `ray start` runs here) or local (start one on this machine)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ...scaleout.batch import SUMMARY_FILE, check_summary, parse_vary, plan

    if "-" in args.scenes:
        raise UsageError("batch renders scene files; standard input has no name to render it under")
    check_ray_options(args)
    scenes = [(path, read_source(path)) for path in args.scenes]
    out = Path(args.out)
    planned = plan(scenes, [parse_vary(v) for v in args.vary], out)
    if planned.diagnostics:
        print_diagnostics(planned.diagnostics, planned.sources, "full", sys.stderr)
    if planned.errors:
        print(summary(planned.diagnostics, len(scenes)) + "; nothing was rendered", file=sys.stderr)
        return EXIT_ERRORS
    check_summary(out / SUMMARY_FILE)
    if args.dry_run:
        for job in planned.jobs:
            print(f"{job.out_dir}\t{len(job.table)} frames\t{job.scene}")
        return EXIT_OK
    return _render(args, planned.jobs, out)


def _render(args: argparse.Namespace, jobs: list, out: Path) -> int:
    """Render the planned jobs (resuming what an earlier run left), then print what became of each."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from ...scaleout.batch import SUMMARY_FILE, BatchInterrupted, ProgressView, run_batch, summary_lines
    from ...scaleout.cluster import open_pool

    view = None
    try:
        with open_pool(args.ray, device=args.device, allow_pickle=args.allow_pickle, workers=args.workers,
                       cpus_per_worker=args.cpus_per_worker, limit=len(jobs)) as pool:
            if args.ray and not args.quiet:
                print(f"batch: {len(jobs)} scenes on {pool.shape.describe()}", file=sys.stderr)
            view = ProgressView(jobs, quiet=args.quiet)
            results = run_batch(jobs, pool, model=args.model, depth_model=args.depth_model,
                                restart=args.restart, retries=args.retries, observer=view,
                                summary=out / SUMMARY_FILE)
    except BatchInterrupted as exc:
        finished = sum(r.status in ("done", "up to date") for r in exc.results)
        print(f"\ninterrupted with {finished} of {len(jobs)} scenes finished; run the same command again "
              "to continue (each scene resumes where it stopped)", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if view is not None:
            view.close()
    for r in results:
        for w in (r.outcome.report.warnings if r.status == "done" else []):
            print(f"{r.job.key}: warning: {w}", file=sys.stderr)
    for line in summary_lines(results, out):
        print(line, file=sys.stderr)
    return EXIT_ERRORS if any(r.status != "done" and r.status != "up to date" for r in results) else EXIT_OK
