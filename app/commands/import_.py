"""`dfm import SETTINGS`: a Deforum settings file or a Parseq manifest → a .dfm scene.
(The module's name ends in `_`: `import` is a keyword.)"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..console import UsageError, emit, read_source
from ..exit_codes import EXIT_ERRORS, EXIT_OK


def add_parser(sub) -> None:
    p = sub.add_parser("import", help="Deforum settings file or Parseq manifest → .dfm")
    p.add_argument("settings", metavar="SETTINGS")
    p.add_argument("-o", "--output", metavar="SCENE")
    p.add_argument("--force", action="store_true", help="replace an existing scene file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ...compiler.deforum_import import import_settings
    from ...compiler.interop import SettingsError, load_settings
    from ...compiler.parseq import from_parseq_manifest

    text = read_source(args.settings)
    try:
        data = load_settings(text)
        is_parseq = "rendered_frames" in data  # a Parseq manifest rather than Deforum settings
        result = (from_parseq_manifest if is_parseq else import_settings)(data, source=args.settings)
    except SettingsError as exc:
        print(f"{args.settings}: error: {exc.message}", file=sys.stderr)
        if getattr(exc, "help", None):
            print(f"help: {exc.help}", file=sys.stderr)
        return EXIT_ERRORS
    for w in result.warnings:
        print(f"{args.settings}: warning: {w}", file=sys.stderr)
    out = args.output or (str(Path(args.settings).with_suffix(".dfm")) if args.settings != "-" else "-")
    if out != "-" and Path(out).exists() and not args.force:
        raise UsageError(f"{out} exists; importing again would replace your edits. Pass --force to replace it, "
                         "or -o NEW.dfm")
    emit(result.text, out, args.settings)
    return EXIT_OK
