"""`dfm preview FILE`: the camera motion over a test card, no model (seconds), and a strip of six of its frames
(PNG: viewable without a video player); `--watch` previews on each save. A scene with ControlNet units shows
each unit's control image beside the camera."""

from __future__ import annotations

import argparse
import sys

from ..console import compile_file, progress_bar
from ..exit_codes import EXIT_ERRORS, EXIT_OK
from ..render_args import preview_out, scene_table


def add_parser(sub) -> None:
    p = sub.add_parser("preview", help="the camera motion over a test card, and each ControlNet unit's control "
                       "image beside it, no model (seconds)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("-o", "--output", metavar="MP4", help="default: outputs/<scene name>/preview.mp4; the strip "
                   "of six frames goes beside it (NAME_strip.png)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-audio", action="store_true", help="the preview without the scene's soundtrack")
    p.add_argument("--watch", action="store_true", help="preview again on each save of FILE (Ctrl-C stops)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.watch:
        from ..watch import watch_preview

        return watch_preview(args)
    result = compile_file(args.file, preview=True)  # missing preprocessor weights: a placeholder panel
    if result is None:
        return EXIT_ERRORS
    from ...runtime.preview import render_preview, strip_path

    out = preview_out(args)
    progress = progress_bar(args.quiet, "preview")
    try:
        path = render_preview(scene_table(result, args), out, progress=progress, strip=strip_path(out),
                              warn=lambda text: print(f"warning: {text}", file=sys.stderr))
    finally:
        progress.close()
    print(f"wrote {path} and {strip_path(path)}", file=sys.stderr)
    return EXIT_OK
