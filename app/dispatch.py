"""Running a parsed command: its exit code, and every error it raises printed the one way.

app/cli.py parses the command line and calls `run_command`; `dfm demo` calls it too for the render it
starts, so its errors read as `dfm render`'s. It imports no command, so any of them may import it.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..contract.errors import UserError
from .exit_codes import EXIT_ERRORS, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE


def run_command(args: argparse.Namespace) -> int:
    """`args.func(args)`, with what it raises turned into a message on standard error and an exit code."""
    try:
        return args.func(args)
    except UserError as exc:  # every stage's error a user can fix (UsageError, RenderError, ClusterError, ...)
        print(f"dfm {args.command}: error: {exc.message}" + (f"\nhelp: {exc.help}" if exc.help else ""),
              file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_ERRORS)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except OSError as exc:  # a read-only folder, a full disk: the user's to fix, not a bug
        where = f" {exc.filename}" if exc.filename else ""
        print(f"dfm {args.command}: error: cannot write or read{where}: {exc.strerror or exc}\n"
              "help: check the folder's permissions and free space, or choose another path", file=sys.stderr)
        return EXIT_ERRORS
    except Exception as exc:  # an internal error: never a bare traceback for the user
        if os.environ.get("DFM_DEBUG"):
            raise
        print(f"dfm {args.command}: internal error: {type(exc).__name__}: {exc}\n"
              "This is a bug in dfm; please report it with the scene (DFM_DEBUG=1 shows the traceback).",
              file=sys.stderr)
        return EXIT_USAGE
