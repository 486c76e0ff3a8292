"""The exit codes of every `dfm` command, defined once (docs/commands.md lists them; ruff's convention).

An error a user can fix (any `UserError`) exits with its class's `exit_code`, EXIT_ERRORS unless it says
otherwise: those that mean "this could not even start" (an unreadable file, a missing cluster) say EXIT_USAGE.
"""

from __future__ import annotations

EXIT_OK = 0  # success: the scenes are clean, the outputs written
EXIT_ERRORS = 1  # the scene has errors, `fmt --check` would change a file, a render failed for a reason you can fix
EXIT_USAGE = 2  # bad usage (a missing file, an unknown option) or an internal error (a bug in dfm)
EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, what a shell reports for an interrupted program

__all__ = ["EXIT_ERRORS", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE"]
