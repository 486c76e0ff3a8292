"""What every compiler pass shares: the scene, where its relative paths start, and the diagnostics list.

The passes (statements.py → scene_settings.py → scene_prompts.py → schedule_keys.py → frame_values.py →
render_warnings.py, run in order by compile.py) take and return plain values; they report problems here,
so every diagnostic of a scene lands in one list, in the order the passes find them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..dsl import ir
from ..dsl.diagnostics import Diagnostic, error, note, warning
from . import catalogue as cat

# where a diagnostic of a scene with no statements points: its first character
SCENE_START = ir.Span(1, 1, 1, 2, 0, 1)


@dataclass
class Setting:
    """A setting's value as one statement gave it."""

    value: object
    statement: ir.Statement


@dataclass
class CompileContext:
    """The scene under compilation and its diagnostics (compile.py adds what networks.Networks needs)."""

    scene: ir.Scene
    base_dir: Path | None
    diags: list[Diagnostic] = field(default_factory=list)
    # the scene's constants and audio features, once the settings are known (validate_frames blames with it)
    env: dict = field(default_factory=dict)
    path: str = field(init=False)  # the scene's, on every diagnostic
    has_audio: bool = field(init=False)  # an `audio` statement makes `bass`, `onset`… legal in expressions
    # a compile for a preview without a model (`dfm preview`): what only a render needs (a preprocessor's
    # weights) is a warning, since the preview shows a placeholder instead
    preview: bool = False

    def __post_init__(self) -> None:
        self.path = self.scene.path
        self.has_audio = any(cat.ALIASES.get(st.name) == "audio" for st in self.scene.statements)

    def err(self, code: str, message: str, span: ir.Span, **kw) -> None:
        self.diags.append(error(code, message, span, path=self.path, **kw))

    def warn(self, code: str, message: str, span: ir.Span, **kw) -> None:
        self.diags.append(warning(code, message, span, path=self.path, **kw))

    def note(self, code: str, message: str, span: ir.Span, **kw) -> None:
        self.diags.append(note(code, message, span, path=self.path, **kw))

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self.diags)

    def first_span(self) -> ir.Span:
        """The first statement, where a problem of the whole scene is shown."""
        return self.scene.statements[0].span if self.scene.statements else SCENE_START
