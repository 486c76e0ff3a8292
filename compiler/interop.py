"""What every dialect (Deforum settings, Parseq manifests) shares: errors, results, and `unsupported`.

A dialect is a table of names (`deforum_names.py`, the catalogue's `deforum=` and `parseq=` columns) and
a few functions around it (`deforum_import.py`, `deforum_export.py`, `parseq.py`). The pieces here keep
them alike:

- `load_settings` reads a JSON settings object or raises `SettingsError(message, help)`;
- importers return an `ImportResult`, the A1111 exporter an `ExportResult`;
- an exporter is an `Exporter`: everything it cannot write exactly goes through its one method
  `unsupported(param, reason, level)`, which records the loss and words the warning. No exporter writes a
  warning any other way, and none leaves a parameter out without one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from ..contract.errors import UserError
from .catalogue import Param

# ---- errors and results ----------------------------------------------------------------------------


class SettingsError(UserError):
    """A settings file dfm cannot read at all (not JSON, not an object, not a manifest)."""


@dataclass
class ImportResult:
    text: str
    warnings: list[str] = field(default_factory=list)
    mapped_keys: set[str] = field(default_factory=set)  # the file's keys carried exactly (or without effect)
    warned_keys: set[str] = field(default_factory=set)  # the file's keys named in a warning


class Level(str, Enum):
    """How much an unsupported parameter loses in the other dialect."""

    REWRITTEN = "rewritten"  # the values arrive, in another form (per-frame keys for an eased curve)
    LOST = "lost"  # the other tool renders differently (or keeps the value only for dfm)


@dataclass(frozen=True)
class Unsupported:
    """One thing an export could not write as dfm means it."""

    param: str  # the dfm parameter (or table column) concerned
    reason: str
    level: Level

    @property
    def message(self) -> str:
        return f"{self.param}: {self.reason}"


@dataclass
class ExportResult:
    settings: dict
    warnings: list[str] = field(default_factory=list)
    unsupported: list[Unsupported] = field(default_factory=list)  # the same, as records

    def dumps(self) -> str:
        return json.dumps(self.settings, indent=4, ensure_ascii=False)


class Exporter:
    """The base of every exporter: the one path for what a dialect cannot say."""

    def __init__(self) -> None:
        self.notes: list[Unsupported] = []

    def unsupported(self, param: Param | str, reason: str, level: Level = Level.LOST) -> None:
        """Record that `param` could not be written exactly, and why (the warning reads `param: reason`)."""
        name = param.name if isinstance(param, Param) else param
        self.notes.append(Unsupported(name, reason, level))

    @property
    def warnings(self) -> list[str]:
        return [n.message for n in self.notes]


# ---- reading -----------------------------------------------------------------------------------------


def load_settings(data: Mapping | str | bytes) -> dict:
    """The settings object, or SettingsError with a reason a person can act on."""
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise SettingsError(f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
                                help="a Deforum settings file is one JSON object; check commas and quotes "
                                "near that spot") from None
    if not isinstance(data, Mapping):
        raise SettingsError(f"expected a JSON object of settings, got {type(data).__name__}",
                            help="a Deforum settings file looks like {\"W\": 512, \"H\": 512, …}")
    return dict(data)


# ---- numbers -------------------------------------------------------------------------------------------


def number_text(x: float) -> str:
    """The shortest decimal that reads back as x, never in exponent form (Deforum's number keys)."""
    x = float(x)
    if x.is_integer() and abs(x) < 1e16:
        return str(int(x))
    return np.format_float_positional(x, unique=True, trim="-")


def number_keys(values: np.ndarray, start: int, stop: int) -> list[tuple[int, str]]:
    """Number keys reproducing values[start:stop] under linear interpolation (collinear frames dropped).

    Deforum's number keys and Parseq's rendered frames both come back to dfm this way."""
    seg = np.asarray(values[start:stop], dtype=np.float64)
    d2 = np.abs(seg[2:] - 2 * seg[1:-1] + seg[:-2])
    keep = {0, len(seg) - 1, *(np.nonzero(d2 > 1e-13 * np.maximum(1.0, np.abs(seg[1:-1])))[0] + 1).tolist()}
    frames = np.arange(len(seg))
    for _ in range(8):  # collinearity tests can drift over long runs: check the reconstruction
        idx = sorted(keep)
        bad = np.nonzero(np.abs(np.interp(frames, idx, seg[idx]) - seg) > 1e-11 * np.maximum(1.0, np.abs(seg)))[0]
        if not len(bad):
            break
        keep.update(bad.tolist())
    return [(start + i, number_text(seg[i])) for i in sorted(keep)]


__all__ = ["SettingsError", "ImportResult", "ExportResult", "Exporter", "Level", "Unsupported", "load_settings",
           "number_text", "number_keys"]
