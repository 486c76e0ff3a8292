"""The exit codes of every `dfm` command, as the application imports them: defined once, beside `UserError`
in contract/errors.py, so the scale-out code (which the application uses, never the other way) says them too."""

from __future__ import annotations

from ..contract.errors import EXIT_ERRORS, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

__all__ = ["EXIT_ERRORS", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE"]
