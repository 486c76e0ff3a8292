"""`dfm upscale INPUT --model PATH`: frames made larger by a super-resolution model (ESRGAN family, or any
other single-image model spandrel detects). INPUT is an image (-> an image), a folder of frames (-> a folder
of PNGs), a video or a dfm render folder (-> an MP4 with the soundtrack carried over). Resumable: a rerun
of an interrupted video or folder continues where it stopped."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from ..console import UsageError, progress_bar
from ..exit_codes import EXIT_OK

# runtime/upscale.py's names, repeated so that importing this module (every `dfm` start does) loads no torch;
# tests/test_upscale.py checks they agree
UPSCALED_VIDEO = "video_upscaled.mp4"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def finish_upscale(render_dir: Path, model: Path, scale: float | None, tile: int | None, allow_pickle: bool, *,
                   device: str = "auto", progress: Callable[[int, int], None] | None = None) -> Path:
    """The render job's finishing step: `render_dir`'s frames upscaled into `render_dir/video_upscaled.mp4`
    with the render's soundtrack (runtime/upscale.py's `finish_upscale`). `scale` None keeps the model's
    factor; `tile` as --tile: None for the default, 0 for whole frames."""
    from ...runtime.upscale import finish_upscale as finish

    return finish(render_dir, model, scale, tile, allow_pickle, device=device, progress=progress)


def add_parser(sub) -> None:
    p = sub.add_parser("upscale", help="frames made larger by a super-resolution model (ESRGAN family): an image, "
                       "a folder of frames, a video or a render folder")
    p.add_argument("input", metavar="INPUT", help="an image, a folder of PNG/JPG frames, a video, or a dfm render "
                   "folder")
    p.add_argument("--model", required=True, metavar="PATH", help="the upscaler's weights: a .safetensors file "
                   "(a .pth/.pt/.ckpt only with --allow-pickle); its architecture and factor are read from it")
    p.add_argument("-o", "--output", metavar="OUT", help="an image for an image; NAME.mp4 for a video; a folder "
                   "of PNGs otherwise. Default: INPUT_upscaled.png, INPUT_upscaled.mp4, INPUT_upscaled/, and "
                   f"{UPSCALED_VIDEO} inside a render folder")
    p.add_argument("--scale", type=float, metavar="S", help="the output is S times the input: the model's output "
                   "resized (area to shrink, Lanczos to enlarge) when S is not the model's own factor")
    p.add_argument("--tile", type=int, default=None, metavar="T", help="run the model on tiles of at most T "
                   "pixels a side (default 512), each with 32 pixels of context; 0 runs whole frames (more memory)")
    p.add_argument("--fps", type=float, metavar="FPS", help="the rate of a folder of frames written as a video "
                   "(default 15), or a render folder's instead of its own")
    p.add_argument("--allow-pickle", action="store_true", help="read a .pth/.pt/.ckpt model, which can run code "
                   "when loaded: only for a file you trust")
    p.add_argument("--device", default="auto", help="auto (the GPU when there is one), cpu, cuda, cuda:N or mps")
    p.add_argument("--force", action="store_true", help="replace an existing output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def default_output(source: Path, kind: str) -> Path:
    """Where the output goes when -o is not given: beside the input, never over it."""
    if kind == "image":
        return source.with_name(f"{source.stem}_upscaled.png")
    if kind == "render":
        return source / UPSCALED_VIDEO
    if kind == "video":
        return source.with_name(f"{source.stem}_upscaled.mp4")
    return source.with_name(f"{source.name}_upscaled")


def run(args: argparse.Namespace) -> int:
    from ...runtime import upscale

    source = Path(args.input).expanduser()
    tile = upscale.tile_size(args.tile)
    if args.scale is not None:
        upscale.check_sizes(1, 1, 1, args.scale)  # a bad --scale is refused before the model loads
    if source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES:
        if args.fps is not None:
            raise UsageError("--fps is for a folder of frames or a render; the input is an image")
        out = Path(args.output).expanduser() if args.output else default_output(source, "image")
        upscale.check_image_target(out, args.force, source)  # before the model loads: a refusal costs nothing
        model = upscale.load_upscaler(Path(args.model), allow_pickle=args.allow_pickle, device=args.device)
        path = upscale.upscale_image(model, source, out, tile=tile, scale=args.scale, force=args.force)
        print(f"wrote {path} ({model.name})", file=sys.stderr)
        return EXIT_OK
    from ...runtime.clips import open_clip

    clip = open_clip(source, args.fps)
    out = Path(args.output).expanduser() if args.output else default_output(source, clip.kind)
    upscale.check_clip_target(clip, out, args.force)  # before the model loads: a refusal costs nothing
    model = upscale.load_upscaler(Path(args.model), allow_pickle=args.allow_pickle, device=args.device)
    progress = progress_bar(args.quiet, "upscale")
    try:
        done = upscale.upscale_clip(model, clip, out, tile=tile, scale=args.scale, force=args.force,
                                    progress=progress)
    except KeyboardInterrupt:
        progress.close()
        print(f"stopped: the frames done are kept in {upscale.work_folder(out)}; run the same command again to "
              "go on from there", file=sys.stderr)
        raise
    finally:
        progress.close()
    if done.warning:
        print(f"warning: {done.warning}", file=sys.stderr)
    resumed = f"; {done.resumed} frames kept from an earlier run" if done.resumed else ""
    print(f"wrote {done.path}: {done.frames} frames ({model.name}{resumed})", file=sys.stderr)
    return EXIT_OK
