"""LoRAs and textual-inversion embeddings: the `lora` and `embedding` statements, `<lora:…>` tags.

Pure and torch-free (`dfm check` and the language server run it on every keystroke): a `.safetensors`
file is checked by its header alone, which is JSON after an 8-byte length, so no tensor is read.

- ``lora "film.safetensors" 0:(0), 2s:(0.8)`` (or ``lora "x" 0.8``, or ``lora "x"`` for weight 1, or a hub
  id ``lora "owner/name" …``): a LoRA whose weight is a schedule like any other, evaluated per frame,
  valid in [-4, 4] (a warning beyond ±2, where LoRAs usually break the image).
- ``<lora:name:w>`` / ``<lyco:name:w>`` in a prompt: A1111's extra-network tag. The file is
  ``lora_dir/name.safetensors`` (also ``.pt``/``.ckpt``, or a file of that stem in a subfolder, as A1111
  indexes its Lora folder); the weight defaults to 1; ``<lora:name:te:unet>`` (or ``te=``/``unet=``)
  weighs the text encoder and the UNet apart, as A1111 reads it. A tag applies on the frames whose
  positive prompt in force contains it; during a `prompt_crossfade` its weight fades with the prompt
  (blend · w(new) + (1 − blend) · w(old)). Tags in a negative prompt load nothing (A1111 activates the
  networks of the positive prompt only): a warning.
- ``embedding "easynegative.safetensors"``, and every file of `embeddings_dir` whose stem a prompt
  (positive or negative) uses as a word: textual-inversion embeddings. The token is the file stem (as in
  A1111), matched as a whole word, case-insensitively (CLIP lowercases text).

A LoRA named by a statement and by tags is one LoRA: the weights add up. The table's settings `lora`
(sources: resolved paths or hub ids) and `embedding` (paths) list them; the column `lora_weights` holds,
per frame, a JSON list aligned with `lora`: ``[unet_weight, text_encoder_weight]`` per LoRA.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..contract.table import FrameTable
from ..dsl import ir
from . import catalogue as cat
from .expressions import check_expr, is_plain_number
from .paths import stem_index
from .prompt_syntax import LOADED_NETWORKS
from .schedules import CURVES, ResolvedKey, evaluate_keys

STATEMENTS = ("lora", "embedding")
WEIGHT_MIN, WEIGHT_MAX = -4.0, 4.0  # the valid range of a LoRA weight
WEIGHT_WARN = 2.0  # beyond ±2 a LoRA usually breaks the image: a warning
MAX_LORAS = 32  # per scene: each is an adapter in the UNet, evaluated at every step
MAX_EMBEDDINGS = 256
MAX_HEADER_BYTES = 64 * 2**20  # a LoRA's header is a few hundred KiB; beyond this the file is not safetensors
MAX_VECTORS = 75  # an embedding's vectors must fit one 75-token chunk (A1111's limit too)
NETWORK_SUFFIXES = (".safetensors", ".pt", ".ckpt")  # A1111's Lora folder; .pt/.ckpt are pickles
EMBEDDING_SUFFIXES = (".safetensors", ".pt", ".bin")
PICKLE_SUFFIXES = (".pt", ".ckpt", ".bin")
TAG = re.compile(rf"<({'|'.join(LOADED_NETWORKS)}):([^>]+)>")  # A1111's re_extra_net, for the kinds dfm loads
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
WEIGHTS_COLUMN = "lora_weights"


def token_pattern(token: str) -> re.Pattern:
    """Where a prompt uses an embedding: its token as a whole word, any case (runtime/networks.py matches
    the same way)."""
    return re.compile(r"(?<![\w])" + re.escape(token) + r"(?![\w])", re.IGNORECASE)


class NetworkFileError(ValueError):
    """A LoRA or embedding file that cannot be what the scene says it is."""


def safetensors_header(path: Path) -> dict:
    """The tensor table of a .safetensors file: {name: {"dtype", "shape", "data_offsets"}} (the
    "__metadata__" entry left out), read without torch."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise NetworkFileError("it is too short to be a .safetensors file")
            size = int.from_bytes(head, "little")
            if not 2 <= size <= MAX_HEADER_BYTES:
                raise NetworkFileError("it is not a .safetensors file (its header length is implausible)")
            data = f.read(size)
    except OSError as e:
        raise NetworkFileError(f"it cannot be read: {e.strerror or e}") from None
    if len(data) < size:
        raise NetworkFileError("it is cut short (the header is incomplete)")
    try:
        table = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise NetworkFileError("its header is not valid JSON: not a .safetensors file") from None
    except RecursionError:  # json's parser recurses: a header of deeply nested lists is not a tensor table
        raise NetworkFileError("its header is nested too deeply: not a .safetensors file") from None
    if not isinstance(table, dict):
        raise NetworkFileError("its header is not a tensor table: not a .safetensors file")
    return {k: v for k, v in table.items() if k != "__metadata__" and isinstance(v, dict)}


_LORA_KEY = re.compile(r"lora_down|lora_up|lora_A|lora_B|lora\.down|lora\.up|lora_linear_layer|\.alpha$")
_LOHA_KEY = re.compile(r"hada_w|lokr_w")


def check_lora_header(tensors: dict) -> None:
    """A LoRA's tensor names, as kohya/A1111 (`lora_down`/`lora_up`) or diffusers/peft (`lora_A`/`lora_B`)
    write them; anything else is refused with what the file seems to hold instead."""
    if not tensors:
        raise NetworkFileError("it holds no tensors")
    if not any(_LORA_KEY.search(k) for k in tensors):
        if any(_LOHA_KEY.search(k) for k in tensors):
            raise NetworkFileError("it is a LyCORIS LoHa/LoKr network, which diffusers does not load as a LoRA")
        sample = next(iter(tensors))
        raise NetworkFileError(f"it holds no LoRA weights (lora_down/lora_up or lora_A/lora_B) among its "
                               f"{len(tensors)} tensors (the first is `{sample[:60]}`): a model or another kind "
                               "of network?")


def embedding_vectors(tensors: dict) -> dict[str, tuple[int, ...]]:
    """The vectors of a textual-inversion embedding by where they go: {"": shape} for one text encoder,
    {"clip_l": …, "clip_g": …} for SDXL. A1111's formats: `emb_params`, `string_to_param.*`, the SDXL
    pair, or one tensor of any name (diffusers' learned_embeds)."""
    shapes = {k: tuple(int(x) for x in v.get("shape", ())) for k, v in tensors.items()}
    if "clip_l" in shapes and "clip_g" in shapes:
        found = {"clip_l": shapes["clip_l"], "clip_g": shapes["clip_g"]}
    elif "emb_params" in shapes:
        found = {"": shapes["emb_params"]}
    elif any(k.startswith("string_to_param.") for k in shapes):
        found = {"": next(v for k, v in shapes.items() if k.startswith("string_to_param."))}
    elif len(shapes) == 1:
        found = {"": next(iter(shapes.values()))}
    else:
        raise NetworkFileError(f"it is not a textual-inversion embedding: {len(shapes)} tensors, none of "
                               "emb_params, string_to_param or clip_l/clip_g")
    for shape in found.values():
        if len(shape) not in (1, 2) or not all(shape) or (len(shape) == 2 and shape[0] > MAX_VECTORS):
            raise NetworkFileError(f"its vectors have shape {list(shape)}: an embedding is (vectors ≤ "
                                   f"{MAX_VECTORS}, width)")
    return found


class Context(Protocol):
    """What this module needs of the compiler (compile._Compiler)."""

    base_dir: Path | None
    path: str
    diags: list
    has_audio: bool

    def err(self, code: str, message: str, span: ir.Span, **kw) -> None: ...
    def warn(self, code: str, message: str, span: ir.Span, **kw) -> None: ...
    def key_frame(self, t: ir.Time, settings: dict, p_name: str) -> int | None: ...
    def string_span(self, s: ir.String, start: int, end: int) -> ir.Span: ...
    def validate_frames(self, p: cat.Param, arr: np.ndarray, keys: list[ResolvedKey]) -> None: ...


@dataclass
class _Lora:
    source: str  # a resolved path or a hub id
    label: str  # as the scene names it, for messages
    statement: ir.Statement | None = None  # the `lora` statement, if one names it
    weights: np.ndarray | None = None  # the statement's schedule per frame


@dataclass(frozen=True)
class _Tag:
    source: str
    unet: float
    te: float


class Networks:
    """The LoRAs and embeddings of one scene, collected while the compiler checks it (see the module
    docstring): statements first (`statement`), then each prompt text (`prompt`), the schedules
    (`evaluate`), and finally the table's settings and column (`settle`, `lower`)."""

    def __init__(self, c: Context, settings: dict) -> None:
        self.c = c
        self.settings = settings
        self.loras: dict[str, _Lora] = {}
        self.embeddings: dict[str, tuple[str, ir.Span]] = {}  # token (lowercase) -> (path, where it was named)
        self.tags: dict[str, list[_Tag]] = {}  # positive prompt text -> its tags
        self._folders: dict[str, dict[str, Path]] = {}  # folder -> {stem (lowercase): file}
        self._dir_embeddings: dict[str, Path] | None = None

    # -- statements
    def statement(self, st: ir.Statement) -> None:
        if st.name == "lora":
            self.lora_statement(st)
        else:
            self.embedding_statement(st)

    def lora_statement(self, st: ir.Statement) -> None:
        args = st.args
        if not args or not isinstance(args[0], ir.String) or len(args) > 2:
            self.c.err("DFM105", "`lora` takes a quoted file or hub id, then its weight (a number or keyframes)",
                       st.span, parameter="lora", help='e.g. `lora "film.safetensors" 0.8` or `lora "film.safetensors" '
                       '0:(0), 2s:(0.8)`')
            return
        weight = args[1] if len(args) == 2 else None
        if weight is not None and not isinstance(weight, (ir.KeyList, ir.Number, ir.Variable, ir.Call, ir.Unary,
                                                          ir.Binary)):
            self.c.err("DFM103", "a LoRA's weight is a number, an expression or keyframes", weight.span,
                       parameter="lora", help="e.g. `0.8` or `0:(0), 2s:(0.8)`")
            return
        source = self.lora_source(args[0])
        if source is None:
            return
        if len(self.loras) >= MAX_LORAS and source not in self.loras:
            self.c.err("DFM104", f"more than {MAX_LORAS} LoRAs in one scene", st.span, parameter="lora",
                       help="merge some of them into one file")
            return
        lora = self.loras.setdefault(source, _Lora(source, args[0].value))
        if lora.statement is not None:
            self.c.err("DFM109", f"LoRA `{args[0].value}` is given twice", st.span, parameter="lora",
                       note=f"first given on line {lora.statement.span.line}",
                       help="merge the keys into one statement")
            return
        lora.statement = st
        exprs = [] if weight is None else [k.value for k in weight.keys] if isinstance(weight, ir.KeyList) else [weight]
        problems = [d for e in exprs for d in check_expr(e, self.c.path, "lora", audio=self.c.has_audio)]
        for d in problems:
            self.c.diags.append(d)
        if problems:
            lora.statement = None  # its weight cannot be evaluated: the file is still checked

    def lora_source(self, s: ir.String) -> str | None:
        """The LoRA a statement names: a local file (checked now) or a hub id; None after an error."""
        value = s.value
        raw = os.path.expanduser(value)
        local = value.startswith((".", "/", "~")) or value.lower().endswith((*NETWORK_SUFFIXES, ".bin"))
        full = Path(raw) if os.path.isabs(raw) or self.c.base_dir is None else self.c.base_dir / raw
        if not local and HUB_ID.match(value) and not (self.c.base_dir is not None and full.exists()):
            return value  # fetched at render time (diffusers' hub cache)
        if not local and not HUB_ID.match(value):
            self.c.err("DFM103", f"`{value}` is neither a LoRA file nor a hub id", s.span, parameter="lora",
                       help='name a .safetensors file (relative to the scene) or a hub id such as "owner/name"')
            return None
        if self.c.base_dir is not None:
            self.check_file(full, s.span, "LoRA", check_lora_header)
        return str(full)

    def embedding_statement(self, st: ir.Statement) -> None:
        if len(st.args) != 1 or not isinstance(st.args[0], ir.String):
            self.c.err("DFM105", "`embedding` takes one quoted file", st.span, parameter="embedding",
                       help='e.g. `embedding "embeddings/easynegative.safetensors"`: its token is the file name '
                       "without the extension")
            return
        s = st.args[0]
        raw = os.path.expanduser(s.value)
        full = Path(raw) if os.path.isabs(raw) or self.c.base_dir is None else self.c.base_dir / raw
        if full.suffix.lower() not in EMBEDDING_SUFFIXES:
            self.c.err("DFM103", f"`{s.value}` is not an embedding file", s.span, parameter="embedding",
                       help="an embedding is a .safetensors, .pt or .bin file")
            return
        if self.c.base_dir is not None:
            self.check_file(full, s.span, "embedding", embedding_vectors)
        self.add_embedding(full, s.span)

    def add_embedding(self, path: Path, span: ir.Span) -> None:
        token = path.stem
        other = self.embeddings.get(token.lower())
        if other is not None:
            if other[0] != str(path):
                self.c.err("DFM106", f"two embeddings have the token `{token}`", span, parameter="embedding",
                           note=f"the other is {other[0]}", help="rename one file: the token is its name")
            return
        if len(self.embeddings) >= MAX_EMBEDDINGS:
            self.c.err("DFM104", f"more than {MAX_EMBEDDINGS} embeddings in one scene", span, parameter="embedding")
            return
        self.embeddings[token.lower()] = (str(path), span)

    def check_file(self, path: Path, span: ir.Span, what: str, check) -> bool:
        """`path` exists (else an error: the render needs it) and, for .safetensors, holds what `check` wants."""
        try:
            found = path.is_file()
        except (OSError, ValueError):
            found = False
        if not found:
            self.c.err("DFM403", f"{what} file `{path}` does not exist", span, parameter=what.lower(),
                       help="paths are relative to the scene file")
            return False
        if path.suffix.lower() != ".safetensors":
            return True  # a pickle: read at render time, with --allow-pickle only
        try:
            check(safetensors_header(path))
        except NetworkFileError as e:
            self.c.err("DFM103", f"{what} `{path.name}` cannot be used: {e}", span, parameter=what.lower(),
                       help=f"name a {what} .safetensors file")
            return False
        return True

    # -- prompts
    def prompt(self, s: ir.String, text: str, offset: int, negative: bool) -> None:
        """The `<lora:…>` tags of one prompt text (s.value[offset:offset + len(text)]), checked and resolved;
        the embeddings of embeddings_dir it uses."""
        self.dir_embeddings(text, s.span)
        found: list[_Tag] = []
        for m in TAG.finditer(text):
            span = self.c.string_span(s, offset + m.start(), offset + m.end())
            if negative:
                self.c.warn("DFM502", f"`{m.group(0)}` in a negative prompt loads nothing (A1111 applies the "
                            "networks of the positive prompt only); the tag is left out of the text", span,
                            parameter="negative", help="move the tag to the positive prompt, or remove it")
                continue
            tag = self.tag(m.group(1), m.group(2), span)
            if tag is not None:
                found.append(tag)
        if not negative:
            self.tags[text.strip()] = found

    def tag(self, kind: str, body: str, span: ir.Span) -> _Tag | None:
        items = body.split(":")
        name = items[0].strip()
        positional = [x for x in items[1:] if "=" not in x]
        named = dict(x.split("=", 1) for x in items[1:] if "=" in x)
        numbers: dict[str, float] = {}
        for key, text in (("te", positional[0] if positional else None), ("unet", positional[1] if len(positional) > 1
                          else None), ("te", named.get("te")), ("unet", named.get("unet"))):
            if text is None:
                continue
            try:
                w = float(text)
            except ValueError:
                self.c.err("DFM103", f"`{text.strip()}` in `<{kind}:{body}>` is not a weight", span, parameter="prompt",
                           help=f"write a number, e.g. `<{kind}:{name}:0.8>`")
                return None
            if not math.isfinite(w) or not WEIGHT_MIN <= w <= WEIGHT_MAX:
                self.c.err("DFM104", f"LoRA weight {text.strip()} is outside [{WEIGHT_MIN:g} .. {WEIGHT_MAX:g}]", span,
                           parameter="prompt", help="LoRA weights are usually between 0 and 1")
                return None
            numbers[key] = w
        extra = [k for k in named if k not in ("te", "unet")] + (["4th value"] if len(positional) > 2 else [])
        if extra:
            self.c.warn("DFM502", f"`<{kind}:…>`: {', '.join(extra)} is not implemented and is ignored", span,
                        parameter="prompt", help="dfm reads the name, te and unet weights")
        te = numbers.get("te", 1.0)  # A1111: the first number weighs both, a second the UNet alone
        unet = numbers.get("unet", te)
        if max(abs(te), abs(unet)) > WEIGHT_WARN:
            self.c.warn("DFM401", f"LoRA weight {max(te, unet, key=abs):g} is beyond ±{WEIGHT_WARN:g}: most LoRAs "
                        "break the image there", span, parameter="prompt", help="LoRA weights are usually 0 .. 1")
        source = self.tag_file(name, span)
        if source is None:
            return None
        self.loras.setdefault(source, _Lora(source, name))
        return _Tag(source, unet, te)

    def tag_file(self, name: str, span: ir.Span) -> str | None:
        folder = self.settings.get("lora_dir")
        if not folder:
            self.c.warn("DFM403", f"`<lora:{name}>`: no `lora_dir` is set, so the LoRA cannot be found; the tag is "
                        "left out of the text and the frames render without it", span, parameter="lora_dir",
                        help='set `lora_dir "path/to/Lora"` (A1111: models/Lora), or write a `lora` statement')
            return None
        path = self.find(Path(str(folder)), name)
        if path is None:
            self.c.err("DFM403", f"`<lora:{name}>`: no {name}.safetensors (nor .pt, .ckpt) in {folder}", span,
                       parameter="lora_dir", help="check the name (it is the file name without the extension) and "
                       "lora_dir")
            return None
        if len(self.loras) >= MAX_LORAS and str(path) not in self.loras:
            self.c.err("DFM104", f"more than {MAX_LORAS} LoRAs in one scene", span, parameter="lora")
            return None
        if not self.check_file(path, span, "LoRA", check_lora_header):
            return None
        return str(path)

    def find(self, folder: Path, name: str) -> Path | None:
        """lora_dir/name with one of NETWORK_SUFFIXES, or else a file of that stem anywhere below the folder
        (A1111 indexes its Lora folder recursively), the first in sorted order."""
        for suffix in NETWORK_SUFFIXES:
            p = folder / f"{name}{suffix}"
            try:
                if p.is_file():
                    return p
            except (OSError, ValueError):
                return None
        return self.folder_index(folder, NETWORK_SUFFIXES).get(name.lower())

    def folder_index(self, folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
        key = str(folder)
        if key not in self._folders:
            self._folders[key] = stem_index(folder, suffixes)
        return self._folders[key]

    def dir_embeddings(self, text: str, span: ir.Span) -> None:
        """Every file of embeddings_dir whose token the text uses becomes one of the scene's embeddings."""
        folder = self.settings.get("embeddings_dir")
        if not folder:
            return
        if self._dir_embeddings is None:
            self._dir_embeddings = self.folder_index(Path(str(folder)), EMBEDDING_SUFFIXES)
        lowered = text.lower()
        for stem, path in self._dir_embeddings.items():
            if stem in lowered and stem not in self.embeddings and token_pattern(stem).search(text):
                self.add_embedding(path, span)

    # -- schedules
    def evaluate(self, frames: int, env: dict) -> None:
        """Each `lora` statement's weight per frame, checked against [-4, 4] on every frame (a warning beyond
        ±2)."""
        param = cat.BY_NAME["lora"]
        for lora in self.loras.values():
            st = lora.statement
            if st is None:
                continue
            if len(st.args) == 1:
                lora.weights = np.ones(frames)
                continue
            keys = self.resolve_keys(st.args[1], frames)
            if keys is None:
                continue
            arr = evaluate_keys(keys, frames, env) if keys else np.ones(frames)
            before = len(self.c.diags)
            self.c.validate_frames(param, arr, keys)
            if len(self.c.diags) > before:
                continue
            big = np.abs(arr) > WEIGHT_WARN
            if big.any():
                f = int(np.argmax(big))
                self.c.warn("DFM401", f"LoRA `{lora.label}` weighs {arr[f]:.3g} at frame {f}, beyond ±{WEIGHT_WARN:g}: "
                            "most LoRAs break the image there", st.args[1].span, parameter="lora", frame=f,
                            help="LoRA weights are usually 0 .. 1")
            lora.weights = arr

    def resolve_keys(self, arg: ir.Value, frames: int) -> list[ResolvedKey] | None:
        if not isinstance(arg, ir.KeyList):
            return [ResolvedKey(0, arg, "linear", is_plain_number(arg), arg.span)]
        keys: list[ResolvedKey] = []
        for k in arg.keys:
            f = self.c.key_frame(k.at, self.settings, "lora")
            if f is None:
                return None
            if keys and f <= keys[-1].frame:
                self.c.err("DFM302", f"`lora`: key at frame {f} does not come after frame {keys[-1].frame}",
                           k.at.span, parameter="lora", frame=f, help="write keys in increasing frame order, once each")
                return None
            curve = k.curve or "linear"
            if curve not in CURVES:
                self.c.err("DFM306", f"unknown curve `{k.curve}`", k.curve_span, parameter="lora",
                           help=f"curves: {', '.join(CURVES)}")
                return None
            keys.append(ResolvedKey(f, k.value, curve, is_plain_number(k.value), k.span, k.curve is not None))
        inside = [k for k in keys if k.frame < frames]
        for k in keys[len(inside):]:
            self.c.warn("DFM303", f"`lora`: key at frame {k.frame} is past the last frame ({frames - 1}) and is "
                        "ignored", k.span, parameter="lora", frame=k.frame,
                        help=f"move it to frame {frames - 1} or raise `frames`")
        if not inside:
            self.c.err("DFM303", "`lora`: every key is past the last frame", arg.span, parameter="lora",
                       help=f"the scene has frames 0..{frames - 1}")
            return None
        return inside

    # -- the table
    def settle(self, settings: dict) -> None:
        """The settings the runtime reads: the LoRA sources and embedding files, in the order first named."""
        # None when there are none, as the catalogue's default (exports and `dfm diff` see no change)
        settings["lora"] = tuple(self.loras) or None
        settings["embedding"] = tuple(path for path, _ in self.embeddings.values()) or None

    def lower(self, table: FrameTable) -> FrameTable:
        """The table with `lora_weights` (`[]` on every row when the scene has no LoRA)."""
        n = len(table)
        if not self.loras:
            return table.with_columns(**{WEIGHTS_COLUMN: ["[]"] * n})
        order = list(self.loras)
        index = {s: j for j, s in enumerate(order)}
        base = np.zeros((n, len(order), 2))
        for j, lora in enumerate(self.loras.values()):
            if lora.weights is not None:
                base[:, j, :] = lora.weights[:n, None]
        cache: dict[str, np.ndarray] = {}

        def tag_weights(text: str) -> np.ndarray:
            if text not in cache:
                w = np.zeros((len(order), 2))
                for t in self.tags.get(text.strip(), ()):
                    w[index[t.source]] += (t.unet, t.te)
                cache[text] = w
            return cache[text]

        prompts, froms, blends = table["prompt"], table["prompt_from"], table["prompt_blend"]
        out = []
        for i in range(n):
            w = tag_weights(str(prompts[i]))
            b = float(blends[i])
            if str(froms[i]) and b < 1.0:
                w = b * w + (1.0 - b) * tag_weights(str(froms[i]))
            row = base[i] + w
            out.append(json.dumps([[float(u), float(t)] for u, t in row], separators=(",", ":")))
        return table.with_columns(**{WEIGHTS_COLUMN: out})


__all__ = ["STATEMENTS", "TAG", "WEIGHTS_COLUMN", "NetworkFileError", "Networks", "check_lora_header",
           "embedding_vectors", "safetensors_header", "token_pattern"]
