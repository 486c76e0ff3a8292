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


MAX_SETTINGS_BYTES = 128 * 2**20  # a Deforum settings file is a few kB; a Parseq manifest ~1 kB a frame
MAX_SETTINGS_STRING = 2 * 2**20  # characters in one value: a scene statement holds at most this many (the parser's)
MAX_SETTINGS_DEPTH = 100  # levels of nesting: Deforum's and Parseq's files have 3 or 4


def load_settings(data: Mapping | str | bytes) -> dict:
    """The settings object, or SettingsError with a reason a person can act on. Sizes are bounded before
    anything is built from them: the text's, its nesting (json's parser recurses: a deep file would be a
    RecursionError) and each string's (a 100 MB value would reach the formatter)."""
    if isinstance(data, (str, bytes)):
        if len(data) > MAX_SETTINGS_BYTES:
            raise SettingsError(f"the file is {len(data):,} characters long (at most {MAX_SETTINGS_BYTES:,})",
                                help="a Deforum settings file is a few kB: check that this is the file you meant")
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise SettingsError(f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
                                help="a Deforum settings file is one JSON object; check commas and quotes "
                                "near that spot") from None
        except RecursionError:
            raise SettingsError(f"the JSON is nested more than {MAX_SETTINGS_DEPTH} levels deep",
                                help="a Deforum settings file is one object of settings, nested a few levels "
                                "at most") from None
        except UnicodeDecodeError as exc:
            raise SettingsError(f"not UTF-8 text ({exc.reason} at byte {exc.start})",
                                help="save the settings file as UTF-8") from None
        except ValueError as exc:  # an integer of more than 4,300 digits (Python's limit on int())
            raise SettingsError(f"not readable JSON: {str(exc)[:200]}",
                                help="check the numbers in the file") from None
    if not isinstance(data, Mapping):
        raise SettingsError(f"expected a JSON object of settings, got {type(data).__name__}",
                            help="a Deforum settings file looks like {\"W\": 512, \"H\": 512, …}")
    _check_sizes(data)
    return dict(data)


def _check_sizes(data: Mapping) -> None:
    """SettingsError naming the first value nested past MAX_SETTINGS_DEPTH or a string longer than
    MAX_SETTINGS_STRING. Walked with a stack, not recursion, for the same reason json needs the bound."""
    stack: list[tuple[str, object, int]] = [("", data, 0)]
    while stack:
        where, value, depth = stack.pop()
        if len(where) > MAX_SETTINGS_STRING:  # a key is a value too
            raise SettingsError(f"a key of {len(where):,} characters (at most {MAX_SETTINGS_STRING:,}): "
                                f"`{where[:80]}…`", help="shorten that key, or leave it out")
        if isinstance(value, str) and len(value) > MAX_SETTINGS_STRING:
            raise SettingsError(f"`{where[:80]}` is a text of {len(value):,} characters (at most "
                                f"{MAX_SETTINGS_STRING:,})", help="shorten that value, or leave the key out")
        if isinstance(value, Mapping | list | tuple):
            if depth >= MAX_SETTINGS_DEPTH:
                raise SettingsError(f"`{where[:80]}` is nested more than {MAX_SETTINGS_DEPTH} levels deep",
                                    help="a Deforum settings file is one object of settings, nested a few "
                                    "levels at most")
            items = value.items() if isinstance(value, Mapping) else enumerate(value)
            # the path is kept short for the message, except a too-long key itself, refused above
            stack.extend((f"{where[:200]}.{k}" if where else str(k), v, depth + 1) for k, v in items)


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


__all__ = ["MAX_SETTINGS_BYTES", "MAX_SETTINGS_STRING", "SettingsError",
           "ImportResult", "ExportResult", "Exporter", "Level", "Unsupported", "load_settings",
           "number_text", "number_keys"]
