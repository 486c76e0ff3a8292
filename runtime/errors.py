"""Errors a user can fix. The CLI prints `message` and `help` on two lines and exits 1."""

from __future__ import annotations


class RenderError(Exception):
    """A render failed for a reason the user can act on (a missing model, a bad hash, ...)."""

    def __init__(self, message: str, help: str = "") -> None:  # noqa: A002 - `help` is the contract's name
        super().__init__(message)
        self.message = message
        self.help = help

    def __str__(self) -> str:
        return f"{self.message}\nhelp: {self.help}" if self.help else self.message
