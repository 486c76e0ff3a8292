"""dfm's runtime: renders a FrameTable with diffusers models.

Entry point: ``from dfm.runtime.render import render``. Importing this package is cheap; torch and
diffusers are imported by the submodules, so commands that never render (check, fmt, compile) do not
pay for them. (The package does not re-export ``render``: the submodule of the same name would shadow
it as soon as it is imported.)
"""

from __future__ import annotations

from .errors import RenderError

__all__ = ["RenderError"]
