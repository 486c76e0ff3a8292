"""Errors a user can fix. The CLI prints `message` and `help` on two lines and exits 1."""

from __future__ import annotations

from ..contract.errors import UserError


class RenderError(UserError):
    """A render failed for a reason the user can act on (a missing model, a bad hash, ...)."""
