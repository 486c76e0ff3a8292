"""`dfm interpolate INPUT --times N`: more frames between a clip's frames, for smoother motion at N times the
frame rate, or N times slower motion (--slow-mo). INPUT is a video, a folder of PNG/JPG frames or a dfm render
folder; the engine is optical flow (no weights), RIFE v4.6 or FILM (local weights files). Resumable: a stopped
run goes on from its last finished frame when run again."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from ..console import progress_bar
from ..exit_codes import EXIT_INTERRUPTED, EXIT_OK

ENGINES = ("flow", "rife", "film")  # runtime/interpolate.py's ENGINES, named here so `dfm --help` imports no torch


def add_parser(sub) -> None:
    p = sub.add_parser("interpolate", help="more frames between a clip's frames (optical flow, RIFE or FILM): "
                       "smoother motion, or slow motion")
    p.add_argument("input", metavar="INPUT", help="a video, a folder of PNG/JPG frames, or a dfm render folder")
    p.add_argument("--times", type=int, required=True, metavar="N",
                   help="N−1 new frames between each pair: (F−1)·N+1 frames at N times the fps (2 to 16)")
    p.add_argument("--engine", choices=ENGINES, default="flow",
                   help="flow (default: optical flow, no weights), rife (Practical-RIFE v4.6 flownet.pkl) or film "
                   "(film_net_fp16.pt)")
    p.add_argument("--weights", metavar="PATH", help="the rife or film weights file (default: torch's hub folder, "
                   "checkpoints/rife-v4.6/flownet.pkl or checkpoints/film_net_fp16.pt)")
    p.add_argument("--slow-mo", action="store_true",
                   help="keep the fps: the clip plays N times slower (and without its soundtrack)")
    p.add_argument("--fps", type=float, metavar="F", help="the frame rate of a folder of frames (default 15), or "
                   "in place of a render folder's")
    p.add_argument("--device", default="auto", metavar="D", help="auto (cuda, mps, cpu), cuda, cuda:1, mps, cpu")
    p.add_argument("--force", action="store_true", help="replace the output file if it exists")
    p.add_argument("-o", "--output", metavar="OUT.mp4", help="default: a render folder's video_xN.mp4 in it; "
                   "NAME_xN.mp4 beside a video or a frames folder (_xN_slowmo with --slow-mo)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def output_name(times: int, slow_mo: bool) -> str:
    """The suffix of a default output: _x2, _x2_slowmo (runtime/clips.py's, imported only when used: the
    command line imports this module at start, before any OpenCV)."""
    from ...runtime.clips import output_name as name

    return name(times, slow_mo)


def default_output(input_path: Path, kind: str, times: int, slow_mo: bool) -> Path:
    """Where `dfm interpolate` writes without -o: in a render folder video_xN.mp4 (beside its video.mp4), beside
    a video NAME_xN.mp4, beside a folder of frames FOLDER_xN.mp4."""
    suffix = output_name(times, slow_mo)
    if kind == "render":
        return input_path / f"video{suffix}.mp4"
    if kind == "video":
        return input_path.with_name(f"{input_path.stem}{suffix}.mp4")
    return input_path.resolve().with_name(f"{input_path.resolve().name}{suffix}.mp4")


def run(args: argparse.Namespace) -> int:
    from ...runtime.clips import check_target, open_clip
    from ...runtime.interpolate import check_times, load_engine, work_dir

    times = check_times(args.times)
    clip = open_clip(args.input, args.fps)
    out = Path(args.output) if args.output else default_output(clip.path, clip.kind, times, args.slow_mo)
    check_target(out, args.force, inputs=(clip.path,))  # before any model loads
    weights = Path(args.weights) if args.weights else None
    engine = load_engine(args.engine, weights, args.device)
    say(args, f"interpolating {clip.path} ({clip.count} frames, {clip.width}x{clip.height} at {clip.fps:g} fps) "
              f"×{times} with {args.engine} on {engine.device} into {out}")
    progress = progress_bar(args.quiet, "interpolate")
    try:
        result = _interpolate(clip, out, times, engine, args.slow_mo, args.force, progress)
    except KeyboardInterrupt:
        progress.close()
        print(f"stopped: the finished frames are in {work_dir(out)}; run the same command again to go on from there",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        progress.close()
    if result.resumed_at:
        say(args, f"went on from frame {result.resumed_at} of an earlier run")
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    say(args, f"wrote {result.path}: {result.frames} frames at {result.fps:g} fps")
    return EXIT_OK


def _interpolate(clip, out: Path, times: int, engine, slow_mo: bool, force: bool,
                 progress: Callable[[int, int], None] | None):
    from ...runtime.interpolate import interpolate_clip

    return interpolate_clip(clip, out, times=times, engine=engine, slow_mo=slow_mo, force=force, progress=progress)


def say(args: argparse.Namespace, words: str) -> None:
    if not args.quiet:
        print(words, file=sys.stderr, flush=True)


def finish_interpolation(render_dir: Path, times: int, engine: str, weights: Path | None, slow_mo: bool, *,
                         device: str = "auto", progress: Callable[[int, int], None] | None = None) -> Path:
    """runtime/interpolate.py's `finish_interpolation`: a finished render's frames interpolated beside its video."""
    from ...runtime.interpolate import finish_interpolation as finish

    return finish(render_dir, times, engine, weights, slow_mo, device=device, progress=progress)


__all__ = ["ENGINES", "add_parser", "default_output", "finish_interpolation", "run"]
