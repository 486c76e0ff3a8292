"""The one shape of an error a user can fix: what went wrong (`message`) and how to fix it (`help`).

Every stage raises its own subclass (RenderError, TableError, MediaError, SettingsError …) so callers can
tell them apart; the command line prints any of them as `error: message` and `help: help`. Standard library
only: the compiler and the runtime both use it without knowing each other.
"""

from __future__ import annotations


class UserError(Exception):
    def __init__(self, message: str, help: str | None = "") -> None:  # noqa: A002 - `help` is the contract's name
        super().__init__(message)
        self.message = message
        self.help = help or ""

    def __str__(self) -> str:
        return f"{self.message}\nhelp: {self.help}" if self.help else self.message
