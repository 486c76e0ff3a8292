"""`dfm studio FILE`: a local page that shows the scene live while it is edited (schedules as charts, the
motion preview), while it renders (each frame as it lands, progress, ETA, the video) and across a sweep
(an X/Y/Z grid of a `dfm batch --vary` folder). app/studio/ holds the server and the page; this module reads
the arguments, binds the port (a port in use is a one-line error, exit 2) and starts it. No torch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..console import UsageError
from ..exit_codes import EXIT_OK
from ..studio import DEFAULT_PORT, LOOPBACK


def add_parser(sub) -> None:
    p = sub.add_parser("studio", help="a local page showing the scene live: charts, motion preview, the render as "
                       "it lands, a sweep's grid")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--out", metavar="DIR", help="the output folder to show (default: what `dfm render` uses, "
                   "outputs/<scene name>)")
    p.add_argument("--sweep", metavar="DIR", help="a `dfm batch --vary` output folder to show as an X/Y/Z grid "
                   "(default: found in the output folder or beside it)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, metavar="P",
                   help=f"the port (default {DEFAULT_PORT}; 0: any free port)")
    p.add_argument("--host", default="127.0.0.1", metavar="ADDRESS", help="the address to listen on (default "
                   "127.0.0.1, this machine only; the page has no authentication)")
    p.add_argument("--no-browser", action="store_true", help="print the address, do not open a browser")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..console import read_source
    from ..studio.scene import load_scene
    from ..studio.server import Config, PortTaken, bind, serve

    if args.file == "-":
        raise UsageError("dfm studio watches a scene file: give its path, not standard input")
    read_source(args.file)  # a missing file or a folder is a usage error here, not a page of diagnostics
    if args.sweep and not Path(args.sweep).is_dir():
        raise UsageError(f"--sweep {args.sweep}: no such folder")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: a port is 0 to 65535 (0: any free port)")
    try:
        sock = bind(args.host, args.port)
    except PortTaken as exc:
        if exc.in_use:
            raise UsageError(f"port {args.port} on {args.host} is in use by another program (or another dfm "
                             "studio); choose another with --port P, or --port 0 for any free port") from None
        raise UsageError(f"cannot listen on {args.host} port {args.port}: {exc.reason}; check --host, or choose "
                         "another port with --port P (--port 0: any free port)") from None
    if args.host not in LOOPBACK:
        print(f"warning: listening on {args.host}: anyone who can reach this address sees the page and can start "
              "renders; it has no authentication", file=sys.stderr)
    view = load_scene(Path(args.file))
    config = Config(scene=Path(args.file), out=Path(args.out) if args.out else None,
                    sweep=Path(args.sweep) if args.sweep else None, host=args.host)
    serve(config, sock, view, open_browser=not args.no_browser)
    return EXIT_OK
