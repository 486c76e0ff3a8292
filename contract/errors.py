"""The one shape of an error a user can fix: what went wrong (`message`) and how to fix it (`help`).

Every stage raises its own subclass (RenderError, TableError, MediaError, SettingsError …) so callers can
tell them apart; the command line prints any of them as `error: message` and `help: help`. Standard library
only: the compiler and the runtime both use it without knowing each other.
"""

from __future__ import annotations

# The exit codes of every `dfm` command, defined once (docs/commands.md lists them). An error a user can fix
# exits with its class's `exit_code`: EXIT_ERRORS unless it says otherwise; those that mean "this could not
# even start" (an unreadable file, a missing cluster) say EXIT_USAGE.
EXIT_OK = 0  # success: the scenes are clean, the outputs written
EXIT_ERRORS = 1  # the scene has errors, `fmt --check` would change a file, a render failed for a reason you can fix
EXIT_USAGE = 2  # bad usage (a missing file, an unknown option) or an internal error (a bug in dfm)
EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, what a shell reports for an interrupted program


class UserError(Exception):
    exit_code = EXIT_ERRORS

    def __init__(self, message: str, help: str | None = "") -> None:  # noqa: A002 - `help` is the contract's name
        super().__init__(message)
        self.message = message
        self.help = help or ""

    def __str__(self) -> str:
        return f"{self.message}\nhelp: {self.help}" if self.help else self.message
