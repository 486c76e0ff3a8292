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
    p.add_argument("--all-warnings", action="store_true",
                   help="print every warning, also those for keys that do nothing to the render")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ...compiler.deforum_import import import_settings
    from ...compiler.interop import MAX_SETTINGS_BYTES, SettingsError, load_settings
    from ...compiler.parseq import from_parseq_manifest

    text = read_source(args.settings, MAX_SETTINGS_BYTES, "settings file")  # bounded: never read a 2 GB file whole
    try:
        data = load_settings(text)
        is_parseq = "rendered_frames" in data  # a Parseq manifest rather than Deforum settings
        result = (from_parseq_manifest if is_parseq else import_settings)(data, source=args.settings)
    except SettingsError as exc:
        print(f"{args.settings}: error: {exc.message}", file=sys.stderr)
        if getattr(exc, "help", None):
            print(f"help: {exc.help}", file=sys.stderr)
        return EXIT_ERRORS
    out = args.output or (str(Path(args.settings).with_suffix(".dfm")) if args.settings != "-" else "-")
    if out != "-" and Path(out).exists() and not args.force:
        raise UsageError(f"{out} exists; importing again would replace your edits. Pass --force to replace it, "
                         "or -o NEW.dfm")
    for line in summary(result.warnings, args.settings, every=args.all_warnings):
        print(line, file=sys.stderr)
    emit(result.text, out, args.settings)
    return EXIT_OK


def summary(warnings: list[str], source: str, every: bool = False) -> list[str]:
    """The import's warnings as the user needs them: first what makes the render differ from Deforum's, then
    what is worth knowing, then one line for all that was left out because it does nothing (switched off,
    at its default, unused in the mode), whose warnings only `every` prints."""
    from ...compiler.deforum_names import Impact, impact_of

    by = {i: [w for w in warnings if impact_of(w) is i] for i in Impact}
    lines = []
    if by[Impact.DIFFERS]:
        lines.append(f"{source}: the render will differ from Deforum's:")
        lines += [f"{source}: warning: {w}" for w in by[Impact.DIFFERS]]
    lines += [f"{source}: note: {w}" for w in by[Impact.NOTE]]
    quiet = by[Impact.NO_EFFECT]
    if every:
        lines += [f"{source}: left out: {w}" for w in quiet]
    elif quiet:
        keys = sum(len(getattr(w, "keys", ())) for w in quiet)
        count = f"{keys} keys" if keys else f"{len(quiet)} groups of keys"
        lines.append(f"{source}: left out {count} that do nothing to the render (switched off in the file, at "
                     "their defaults or unused in this mode); --all-warnings lists them")
    return lines
