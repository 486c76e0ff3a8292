"""Prompt embeddings as A1111 makes them, from the pieces the compiler parsed.

Next to each prompt text the FrameTable carries its pieces (`prompt_pieces` …): JSON, a list of
``[text, weight]`` pairs and ``"BREAK"`` markers, written by compiler/prompt_syntax.py. The runtime
reads them as data and encodes them as A1111's `FrozenCLIPEmbedderWithCustomWords` does
(modules/sd_hijack_clip.py, emphasis "Original"):

- **Chunks.** Each piece is tokenized on its own (no BOS/EOS); the tokens fill chunks of 75, each sent
  to CLIP as BOS + 75 + EOS, the short last one padded with the tokenizer's pad token. When a chunk is
  full and a comma lies within its last 20 tokens, the tokens after that comma start the next chunk
  (A1111's default `comma_padding_backtrack` of 20). ``BREAK`` ends a chunk at once. The chunks'
  hidden states are concatenated along the sequence: a prompt of k chunks is (1, 77·k, D).
- **CLIP skip.** With `clip_skip` k > 1 a chunk's hidden state is the output of the k-th layer from the
  end, through the encoder's final layer norm; 1 is the last layer (exactly the plain encoding). A1111
  ignores the setting for SD 2.x models (OpenCLIP, already the penultimate layer), and so does dfm.
- **Weights.** Each token's hidden state is multiplied by its piece's weight (BOS, EOS and padding by
  1), then the chunk is rescaled so that its mean is the mean before weighting. A chunk whose weights
  are all 1 is left untouched, so a plain prompt of up to 75 tokens is exactly the one-pass encoding.

SDXL (two text encoders, as A1111's SDXL conditioner): each encoder tokenizes and chunks the prompt
with its own tokenizer and reads the penultimate layer (no final layer norm; `clip_skip` does not apply,
as in A1111); the weights and the mean rescaling apply per encoder; the two hidden states are joined on
the feature axis (768 + 1280 = 2048). The pooled embedding is text encoder 2's projection of the first
chunk, unweighted (A1111 and diffusers alike). It travels with the hidden states as one extra last row
of the sequence (its first `projection_dim` features, zeros after), so caching, crossfades and guidance
batches treat it as the rest; `models.StableDiffusion.eps` splits it off with the time ids.

Prompts of different lengths meet in two places: classifier-free guidance (the sampler runs the two
separately, as A1111 does) and crossfades, where the shorter is padded with the empty prompt's chunk
(A1111's `pad_cond`) before the lerp.

Rectified-flow models (SD3/SD3.5, Flux) read a prompt as their diffusers pipelines do (`encode_flow`): the
pieces' texts joined, CLIP cut at 77 tokens and T5 padded or cut to the family's length (weights and BREAK
do not apply: `prompt_warnings` says so). SD3: CLIP-L's and CLIP-G's penultimate layers side by side,
zero-padded to T5's width, then the T5 tokens; pooled, both projections joined. Flux: the T5 tokens; pooled,
CLIP-L's pooler output. The pooled vector travels as SDXL's does, one extra last row. Prompt editing and
composable prompts work as for SD (flow_matching.composed_velocity); without an unconditional pass (Flux, SD3
at cfg 1 or below) a composable prompt's parts are a blend of velocities.

Composable prompts and prompt editing (the table format: docs/frametable.md): a pieces value is either
the list above (a plain prompt) or an object `{"parts": [{"weight": W, "schedule": [[END, PIECES], ...]},
...]}`: A1111's `AND` sub-prompts, each with its weight for this frame and the pieces in force up to each
sampler step END (prompt editing, alternation). `RowConditioning` turns a row into the conditioning of
each sampler step (`samplers.StepCond`): the parts with their weights, and the negative embedding when
the step is guided. Every text is encoded once per (pieces, clip skip), whichever part or step uses it
(while it is among the `MAX_CACHED` most recently used: a text new on every frame is not kept for good).
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch import Tensor

from ..contract.controlnet import KONTEXT_CONTROLNET_WHY, SD3_CONTROLNET_WHY, active_units
from ..contract.families import FLOW_PATCH
from ..contract.table import FrameTable
from .errors import RenderError
from .models import FLOW_BASES
from .samplers import SAMPLERS, StepCond

CHUNK_TOKENS = 75  # tokens per chunk between BOS and EOS
COMMA_BACKTRACK = 20  # A1111's comma_padding_backtrack default
EMPTY_PIECES = '[["",1.0]]'  # the pieces of an empty prompt
BREAK = "BREAK"
MAX_PARTS = 32  # AND sub-prompts of one prompt: each costs one more UNet batch item per step
# entries of one part's schedule: strictly ascending steps 0 .. steps × 2 (catalogue max 1000 steps; a
# second-order sampler's schedule spans twice its steps, as A1111's does)
MAX_SCHEDULE = 2001
# embeddings kept (the most recently used): a text that changes every frame must not keep one per frame
MAX_CACHED = 256
MAX_LONG_NOTED = 5  # long prompts named in a warning each; the rest are counted in one
RECOMPILE = "recompile the scene with this dfm (`dfm compile`)"
# (text column, pieces column) of every prompt the loop encodes
PROMPT_COLUMNS = (("prompt", "prompt_pieces"), ("negative_prompt", "negative_prompt_pieces"),
                  ("prompt_from", "prompt_from_pieces"), ("negative_prompt_from", "negative_prompt_from_pieces"))
COLUMNS = (*(p for _, p in PROMPT_COLUMNS), "clip_skip")  # the columns this module reads

Piece = tuple[str, float] | None  # None: a BREAK


@dataclass(frozen=True)
class Chunk:
    tokens: tuple[int, ...]  # BOS, 75 tokens or padding, EOS
    weights: tuple[float, ...]  # one per token


def read_pieces(text: str) -> list[Piece]:
    """A pieces column's value as [(text, weight), …, None for a BREAK]; a malformed one is a RenderError."""
    try:
        data = json.loads(text)
        out: list[Piece] = []
        for p in data:
            if p == BREAK:
                out.append(None)
            elif isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and isinstance(p[1], (int, float)):
                out.append((p[0], float(p[1])))
            else:
                raise ValueError(p)
    except (ValueError, TypeError) as e:
        raise RenderError(f"a prompt's pieces are malformed in the table: {text[:60]!r} ({e})", RECOMPILE) from None
    return out


@dataclass(frozen=True)
class Part:
    """One AND sub-prompt of a row: its weight and the pieces in force up to each step (END, pieces)."""

    weight: float
    schedule: tuple[tuple[int, str], ...]

    def at(self, step: int) -> str:
        """The pieces at sampler step `step` (A1111's `reconstruct_cond_batch`: the first entry whose END is
        at or after the step; past the last entry, the last one)."""
        k = bisect_left(self.ends, step)  # ends ascend strictly: a binary search, not a scan per step
        return self.schedule[min(k, len(self.schedule) - 1)][1]

    @cached_property
    def ends(self) -> list[int]:
        return [end for end, _ in self.schedule]


@dataclass(frozen=True)
class Prompt:
    """A pieces column's value read: its parts, and whether it was written as a composite object."""

    parts: tuple[Part, ...]
    composite: bool

    @property
    def guides(self) -> bool:
        """Whether it needs the unconditional pass whatever the cfg scale (several parts, or a weight != 1)."""
        return self.composite and (len(self.parts) > 1 or any(p.weight != 1.0 for p in self.parts))

    @property
    def texts(self) -> list[str]:
        """Every pieces value it encodes, once each, in order."""
        return list(dict.fromkeys(pieces for part in self.parts for _, pieces in part.schedule))


def schedule_multiplier(sampler: str) -> int:
    """Prompt-schedule steps per sampler step: the scheduler's order (2 for Heun and DPM2, which A1111
    marks `second_order` and schedules over steps × 2, one step per UNet evaluation), else 1."""
    spec = SAMPLERS.get(sampler)
    return int(spec.cls.order) if spec is not None else 1


# every multiplier a sampler of this runtime has: a row alone does not say its sampler (the table does)
_MULTIPLIERS = tuple(sorted({int(spec.cls.order) for spec in SAMPLERS.values()}))


def read_prompt(value: str, steps: int | tuple[int, ...] | None = None) -> Prompt:
    """A pieces column's value in either form (a plain list, or the composite object) as a Prompt; a
    malformed one is a RenderError. With `steps` (the row's schedule steps: its `steps` × the sampler's
    `schedule_multiplier`), each schedule must end at that step; a tuple accepts any of its values."""
    ends = None if steps is None else tuple(int(n) for n in (steps if isinstance(steps, tuple) else (steps,)))
    if not value.lstrip().startswith("{"):
        # a plain prompt: the value itself is the pieces (read when encoded), in force at every step
        return Prompt((Part(1.0, ((max(max(ends or (0,)), 0), value),)),), composite=False)
    try:
        data = json.loads(value)
        if not isinstance(data, dict) or set(data) != {"parts"} or not isinstance(data["parts"], list):
            raise ValueError('an object with one key, "parts", a list')
        if not data["parts"]:
            raise ValueError("0 parts")
        if len(data["parts"]) <= MAX_PARTS:
            parts = tuple(_read_part(p, ends) for p in data["parts"])
    except (ValueError, TypeError, RenderError) as e:
        why = e.message if isinstance(e, RenderError) else str(e)
        raise RenderError(f"a composite prompt is malformed in the table: {value[:60]!r} ({why})", RECOMPILE) from None
    if len(data["parts"]) > MAX_PARTS:  # a real prompt, not a broken table: each part is UNet work per step
        raise RenderError(f"a prompt has {len(data['parts'])} AND parts; the runtime renders at most {MAX_PARTS}",
                          f"split it into at most {MAX_PARTS} sub-prompts (each costs one more UNet pass per step)")
    return Prompt(parts, composite=True)


def _read_part(data: object, ends: tuple[int, ...] | None) -> Part:
    if not isinstance(data, dict) or set(data) != {"weight", "schedule"}:
        raise ValueError('a part is an object with "weight" and "schedule"')
    weight, schedule = data["weight"], data["schedule"]
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not np.isfinite(weight):
        raise ValueError(f"a part's weight is {weight!r}, not a number")
    if not isinstance(schedule, list) or not 1 <= len(schedule) <= MAX_SCHEDULE:
        raise ValueError(f"a part's schedule is a list of 1 to {MAX_SCHEDULE} [END, PIECES] entries")
    entries: list[tuple[int, str]] = []
    for entry in schedule:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], int)
                and not isinstance(entry[0], bool) and isinstance(entry[1], list)):
            raise ValueError(f"a schedule entry is {str(entry)[:40]}, not [END step, pieces list]")
        if entries and entry[0] <= entries[-1][0]:
            raise ValueError(f"schedule steps {entries[-1][0]}, {entry[0]} are not strictly ascending")
        pieces = json.dumps(entry[1], ensure_ascii=False, separators=(",", ":"))  # the plain form's own spelling
        read_pieces(pieces)
        entries.append((entry[0], pieces))
    if ends is not None and entries[-1][0] not in ends:
        raise ValueError(f"a schedule ends at step {entries[-1][0]}, but the row's schedule has "
                         f"{' or '.join(map(str, ends))} steps")
    return Part(float(weight), tuple(entries))


def make_chunks(tokenized: Sequence[tuple[Sequence[int], float] | None], *, bos: int, eos: int, pad: int,
                comma: int | None) -> list[Chunk]:
    """A1111's `tokenize_line` after tokenizing: (tokens, weight) per piece, None for a BREAK -> chunks."""
    chunks: list[Chunk] = []
    tokens: list[int] = []
    weights: list[float] = []
    last_comma = -1

    def next_chunk() -> None:
        nonlocal tokens, weights, last_comma
        fill = CHUNK_TOKENS - len(tokens)
        chunks.append(Chunk((bos, *tokens, eos, *[pad] * fill), (1.0, *weights, 1.0, *[1.0] * fill)))
        tokens, weights, last_comma = [], [], -1

    for piece in tokenized:
        if piece is None:
            next_chunk()
            continue
        ids, weight = piece
        for token in ids:
            if token == comma:
                last_comma = len(tokens)
            elif (len(tokens) == CHUNK_TOKENS and last_comma != -1
                  and len(tokens) - last_comma <= COMMA_BACKTRACK):
                keep = last_comma + 1
                moved, moved_w = tokens[keep:], weights[keep:]
                tokens, weights = tokens[:keep], weights[:keep]
                next_chunk()
                tokens, weights = moved, moved_w
            if len(tokens) == CHUNK_TOKENS:
                next_chunk()
            tokens.append(token)
            weights.append(weight)
    if tokens or not chunks:
        next_chunk()
    return chunks


def _comma_id(tok) -> int | None:
    """The id of CLIP's "," word (",</w>"), None when the vocabulary lacks it; one lookup, where
    `get_vocab()` would copy the whole vocabulary on every prompt encoded."""
    token_id = tok.convert_tokens_to_ids(",</w>")
    return None if token_id is None or token_id == tok.unk_token_id else int(token_id)


def clip_skip_applies(text_encoder_config) -> bool:
    """A1111 applies CLIP skip to SD 1.x's CLIP ViT-L only, not to SD 2.x's OpenCLIP ViT-H (width 1024)."""
    return int(text_encoder_config.hidden_size) != 1024


class PromptEncoder:
    """Pieces -> text encoder hidden states, as A1111 computes them (see the module docstring). Touches
    the model only when first called."""

    def __init__(self, sd) -> None:
        self.sd = sd

    @property
    def packs_pooled(self) -> bool:
        """Whether the embeddings end with a pooled row (SDXL, SD3, Flux)."""
        return getattr(self.sd, "family", "sd15") in ("sdxl", *FLOW_BASES)

    @property
    def flow(self) -> bool:
        return getattr(self.sd, "family", "sd15") in FLOW_BASES

    def chunks(self, pieces: str, tok=None) -> list[Chunk]:
        tok = self.sd.tokenizer if tok is None else tok
        parts = read_pieces(pieces)
        texts = [p[0] for p in parts if p is not None]
        ids = iter(tok(texts, add_special_tokens=False, truncation=False, verbose=False).input_ids if texts else [])
        tokenized = [None if p is None else (next(ids), p[1]) for p in parts]
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        return make_chunks(tokenized, bos=tok.bos_token_id, eos=tok.eos_token_id, pad=pad,
                           comma=_comma_id(tok))

    @torch.no_grad()
    def __call__(self, pieces: str, clip_skip: int = 1) -> Tensor:
        """The hidden states (1, 77·chunks, D) of one prompt, in float32 (SDXL: plus the pooled row)."""
        if self.flow:
            return self.encode_flow(pieces)
        if self.packs_pooled:
            return self.encode_sdxl(pieces)
        skip = int(clip_skip) if clip_skip_applies(self.sd.text_encoder_config) else 1
        return torch.cat([self.encode_chunk(c, skip) for c in self.chunks(pieces)], dim=1)

    def encode_sdxl(self, pieces: str) -> Tensor:
        """(1, 77·chunks + 1, D1 + D2): both encoders' weighted penultimate layers side by side, then the
        pooled row (see the module docstring)."""
        sd = self.sd
        per_encoder, pooled = [], None
        for tok, encoder in ((sd.tokenizer, sd.text_encoder), (sd.tokenizer_2, sd.text_encoder_2)):
            chunks = self.chunks(pieces, tok)
            zs = []
            for k, chunk in enumerate(chunks):
                z, out = self.encode_chunk(chunk, 2, encoder, final_norm=False)
                zs.append(z)
                if k == 0 and encoder is sd.text_encoder_2:
                    pooled = out.text_embeds.float()
            per_encoder.append(torch.cat(zs, dim=1))
        if per_encoder[0].shape[1] != per_encoder[1].shape[1]:
            raise RenderError("the two SDXL tokenizers split a prompt into different chunk counts",
                              "use a model whose tokenizer/ and tokenizer_2/ share one vocabulary")
        return with_pooled_row(torch.cat(per_encoder, dim=2), pooled)

    def encode_flow(self, pieces: str) -> Tensor:
        """(1, tokens + 1, D) of an SD3 or Flux model: the token sequence its transformer reads, then the pooled
        row (see the module docstring); as diffusers' `encode_prompt` computes them for the pieces' text."""
        sd = self.sd
        text = flow_text(pieces)
        t5 = self._t5(text)
        if sd.family == "flux":
            ids = self._clip_ids(sd.tokenizer, text)
            sd.text_encoder_calls += 1
            pooled = sd.text_encoder(ids, output_hidden_states=False).pooler_output.float()
            hidden = t5
        else:
            clips, pooleds = [], []
            for tok, encoder in ((sd.tokenizer, sd.text_encoder), (sd.tokenizer_2, sd.text_encoder_2)):
                sd.text_encoder_calls += 1
                out = encoder(self._clip_ids(tok, text), output_hidden_states=True)
                pooleds.append(out[0].float())
                clips.append(out.hidden_states[-2].float())
            clip = torch.cat(clips, dim=-1)
            if clip.shape[-1] > t5.shape[-1]:
                raise RenderError(f"this SD3 model's CLIP features ({clip.shape[-1]}) are wider than its T5's "
                                  f"({t5.shape[-1]})", "use an SD3 / SD3.5 model as diffusers saves it")
            hidden = torch.cat([torch.nn.functional.pad(clip, (0, t5.shape[-1] - clip.shape[-1])), t5], dim=-2)
            pooled = torch.cat(pooleds, dim=-1)
        if pooled.shape[-1] > hidden.shape[-1]:
            raise RenderError(f"a pooled text embedding of {pooled.shape[-1]} is wider than the token features "
                              f"({hidden.shape[-1]})", "use an SD3 / Flux model as diffusers saves it")
        return with_pooled_row(hidden, pooled)

    def _clip_ids(self, tok, text: str) -> Tensor:
        return tok(text, padding="max_length", max_length=tok.model_max_length, truncation=True,
                   return_tensors="pt").input_ids.to(self.sd.placement.device)

    def _t5(self, text: str) -> Tensor:
        """The T5 token embeddings (1, t5_max_length, width): zeros for an SD3 model without its T5 (diffusers)."""
        sd = self.sd
        n = int(sd.t5_max_length)
        if sd.t5_encoder is None:
            width = int(sd.unet.config.joint_attention_dim)
            return torch.zeros(1, n, width, device=sd.placement.device)
        ids = sd.t5_tokenizer(text, padding="max_length", max_length=n, truncation=True, add_special_tokens=True,
                              return_tensors="pt").input_ids.to(sd.placement.device)
        sd.text_encoder_calls += 1
        return sd.t5_encoder(ids)[0].float()

    def encode_chunk(self, chunk: Chunk, clip_skip: int, encoder=None, final_norm: bool = True):
        """One chunk's hidden states (1, 77, D), weighted: one text encoder call per chunk, as A1111 makes
        (a batch of chunks would differ from them in the last bits). With an explicit `encoder` (SDXL)
        returns (hidden states, the encoder's output)."""
        sd = self.sd
        ids = torch.tensor([chunk.tokens], dtype=torch.long, device=sd.placement.device)
        explicit = encoder is not None
        encoder = sd.text_encoder if encoder is None else encoder
        sd.text_encoder_calls += 1
        out = None
        if clip_skip > 1:
            out = encoder(ids, output_hidden_states=True)
            hidden = out.hidden_states[-clip_skip]
            z = (_final_layer_norm(encoder)(hidden) if final_norm else hidden).float()
        else:
            z = encoder(ids)[0].float()
        if not all(w == 1.0 for w in chunk.weights):
            w = torch.tensor(chunk.weights, dtype=torch.float32, device=z.device)
            weighted = z * w[None, :, None]
            z = weighted * (z.mean() / weighted.mean())
        return (z, out) if explicit else z


def with_pooled_row(hidden: Tensor, pooled: Tensor) -> Tensor:
    """`hidden` (1, tokens, D) with one last row holding `pooled` (its first features, zeros after): how a pooled
    vector (SDXL's, SD3's, Flux's) travels with the token embeddings through the prompt caches and blends."""
    row = torch.zeros(1, 1, hidden.shape[2], dtype=hidden.dtype, device=hidden.device)
    row[0, 0, : pooled.shape[-1]] = pooled[0]
    return torch.cat([hidden, row], dim=1)


def flow_text(pieces: str) -> str:
    """The text a flow model reads for a pieces value: the pieces' texts joined (weights and BREAKs dropped)."""
    return "".join(p[0] for p in read_pieces(pieces) if p is not None)


def _final_layer_norm(encoder) -> torch.nn.Module:
    """The final layer norm of a CLIPTextModel (transformers >= 5.6 dropped the `text_model` level)."""
    inner = getattr(encoder, "text_model", encoder)
    return inner.final_layer_norm


class PromptEmbeddings:
    """Text embeddings computed once per distinct (pieces, clip skip), blended per row as the table says; the
    MAX_CACHED most recently used are kept (a text new on every frame would otherwise keep one per frame)."""

    def __init__(self, encode: Callable[[str, int], Tensor]) -> None:
        self._encode = encode
        self._cache: dict[tuple[str, int], Tensor] = {}
        self._prompts: dict[tuple[str, int | None], Prompt] = {}  # cleared past MAX_CACHED (text, no tensors)

    def __call__(self, pieces: str, clip_skip: int = 1) -> Tensor:
        key = (pieces, int(clip_skip))
        z = self._cache.pop(key, None)
        if z is None:
            z = self._encode(*key)
            while len(self._cache) >= MAX_CACHED:  # a prompt new on every frame (a backtick expression)
                del self._cache[next(iter(self._cache))]  # the least recently used
        self._cache[key] = z  # last: the most recently used
        return z

    def blended(self, pieces: str, from_pieces: str, blend: float, clip_skip: int, has_from: bool) -> Tensor:
        w = float(blend)
        if w >= 1.0 or not has_from or from_pieces == pieces:
            return self(pieces, clip_skip)
        a, b = self(from_pieces, clip_skip), self(pieces, clip_skip)
        if a.shape != b.shape:  # prompts of different chunk counts: pad the shorter with the empty prompt
            empty = self(EMPTY_PIECES, clip_skip)
            if getattr(self._encode, "packs_pooled", False):  # SDXL: pad before the pooled row, keep it last
                length = max(a.shape[1], b.shape[1]) - 1
                a, b = (torch.cat([_padded(x[:, :-1], length, empty[:, :-1]), x[:, -1:]], dim=1) for x in (a, b))
            else:
                a, b = (_padded(x, max(a.shape[1], b.shape[1]), empty) for x in (a, b))
        return torch.lerp(a, b, w)

    def prompt(self, value: str, steps: int | tuple[int, ...] | None = None) -> Prompt:
        """A pieces value read (once per distinct value and step count)."""
        key = (value, steps)
        if key not in self._prompts:
            if len(self._prompts) >= MAX_CACHED:
                self._prompts.clear()
            self._prompts[key] = read_prompt(value, steps)
        return self._prompts[key]

    def conditioning(self, row: Mapping[str, object], cfg_scale: float, *,
                     guidance_embedded: bool = False) -> RowConditioning:
        """The per-step conditioning of one diffused row (see RowConditioning)."""
        return RowConditioning(self, row, cfg_scale, guidance_embedded=guidance_embedded)


class RowConditioning:
    """The conditioning of each sampler step of one row, as the table format says:

    - Guidance: the unconditional pass runs when `cfg_scale > 1`, or when the positive prompt (while
      crossfading, either side) is composite with several parts or a weight != 1; never for a
      guidance-embedded model (the UNet takes the scale itself), whose parts' weights are then scaled to
      sum to 1 (a blend of predictions: there is no unconditional one to guide away from).
    - Crossfade (`prompt_blend` b < 1 with a `prompt_from`): two plain prompts are one lerped embedding, as
      ever; otherwise the parts of `prompt_from` with their weights × (1 - b) join those of `prompt` × b.
    - The negative is one embedding per step: lerp(E(negative_from at s), E(negative at s), negative_blend).

    Every text of the row is encoded when this is made (the "text" stage); a step only looks them up. A
    step's StepCond is built once per distinct set of texts in force, so a prompt without editing builds
    one for the whole denoise."""

    def __init__(self, embeddings: PromptEmbeddings, row: Mapping[str, object], cfg_scale: float, *,
                 guidance_embedded: bool = False) -> None:
        self.e = embeddings
        self.skip = int(row["clip_skip"])
        # the strict check of each schedule's end against the sampler is `_distinct`'s, before the first frame
        steps = tuple(int(row["steps"]) * m for m in _MULTIPLIERS)
        self.blend = float(row["prompt_blend"])
        pos = embeddings.prompt(str(row["prompt_pieces"]), steps)
        crossfading = bool(str(row["prompt_from"])) and self.blend < 1.0
        frm = embeddings.prompt(str(row["prompt_from_pieces"]), steps) if crossfading else None
        # both sides plain (or no crossfade of a plain prompt): today's one lerped embedding
        self.lerped = not pos.composite and (frm is None or not frm.composite)
        sides = [(pos, 1.0)] if frm is None else [(frm, 1.0 - self.blend), (pos, self.blend)]
        self.parts = [(part, side_w * part.weight) for side, side_w in sides for part in side.parts]
        guides = pos.guides or (frm is not None and frm.guides)
        self.guided = not guidance_embedded and (float(cfg_scale) > 1.0 or guides)
        if guidance_embedded and not self.lerped:
            total = sum(w for _, w in self.parts)
            if total > 0 and total != 1.0:
                self.parts = [(part, w / total) for part, w in self.parts]
        self.neg = self.neg_from = None
        self.neg_blend = float(row["negative_blend"])
        if self.guided:
            self.neg = self._negative(row, "negative_prompt_pieces", steps)
            if bool(str(row["negative_prompt_from"])) and self.neg_blend < 1.0:
                self.neg_from = self._negative(row, "negative_prompt_from_pieces", steps)
        self._steps: dict[tuple[str, ...], StepCond] = {}
        for prompt in (pos, frm, self.neg, self.neg_from):  # encode every text now, not inside the sampler
            for pieces in (prompt.texts if prompt is not None else []):
                embeddings(pieces, self.skip)

    def _negative(self, row: Mapping[str, object], column: str, steps: tuple[int, ...]) -> Prompt:
        prompt = self.e.prompt(str(row[column]), steps)
        _check_negative(prompt, column)
        return prompt

    @property
    def parts_per_step(self) -> int:
        """Conditional UNet batch items per step."""
        return 1 if self.lerped else len(self.parts)

    @property
    def evals_per_step(self) -> int:
        """UNet batch items per step: the parts, and the unconditional pass when guided."""
        return self.parts_per_step + int(self.guided)

    def __call__(self, step: int) -> StepCond:
        texts = tuple(part.at(step) for part, _ in self.parts)
        negs: tuple[str, ...] = ()
        if self.neg is not None:
            negs = (self.neg.parts[0].at(step),) + (() if self.neg_from is None else (self.neg_from.parts[0].at(step),))
        key = texts + ("",) + negs
        if key not in self._steps:
            if self.lerped:  # texts: (prompt,) or (prompt_from, prompt)
                cond = self.e.blended(texts[-1], texts[0], self.blend, self.skip, len(texts) > 1)
                parts: tuple[tuple[float, Tensor], ...] = ((1.0, cond),)
            else:
                parts = tuple((w, self.e(pieces, self.skip)) for (_, w), pieces in zip(self.parts, texts, strict=True))
            uncond = None
            if negs:
                uncond = self.e.blended(negs[0], negs[-1], self.neg_blend, self.skip, len(negs) > 1)
            self._steps[key] = StepCond(parts, uncond)
        return self._steps[key]


def _padded(z: Tensor, length: int, empty: Tensor) -> Tensor:
    repeats = (length - z.shape[1]) // empty.shape[1]
    return torch.cat([z, empty.repeat(1, repeats, 1)], dim=1) if repeats > 0 else z


def _distinct(table: FrameTable) -> Iterator[tuple[str, str]]:
    """Every (text, pieces) pair of the table's prompts, once each, in first-use order; each pieces value
    read against its rows' schedule steps (steps × `schedule_multiplier`) on the way (a malformed one, or a
    negative of several parts, is a RenderError before the first frame rather than in the middle of the render)."""
    seen: dict[tuple[str, str], None] = {}
    checked: set[tuple[str, int]] = set()
    multiplier = schedule_multiplier(str(table.settings.sampler))
    steps = [int(n) * multiplier for n in table["steps"].tolist()]
    for text_col, pieces_col in PROMPT_COLUMNS:
        for text, value, n in zip(table[text_col].tolist(), table[pieces_col].tolist(), steps, strict=True):
            if (str(value), n) not in checked:
                checked.add((str(value), n))
                _check_negative(read_prompt(str(value), n), pieces_col)
            seen.setdefault((str(text), str(value)), None)
    return iter(seen)


def _check_negative(prompt: Prompt, column: str) -> None:
    if column.startswith("negative") and prompt.composite and (len(prompt.parts) != 1 or prompt.parts[0].weight != 1.0):
        raise RenderError(f"the table's `{column}` has {len(prompt.parts)} parts (weights "
                          f"{', '.join(str(p.weight) for p in prompt.parts)}): a negative prompt is one part of "
                          "weight 1 (A1111 has no AND in negatives)", RECOMPILE)


FLOW_TITLES = {"sd3": "SD3", "flux": "Flux"}


def flow_refusals(table: FrameTable, sd) -> None:
    """What a render of `table` cannot do on a rectified-flow model (SD3/SD3.5, Flux) yet, as one RenderError
    naming it, before any weight is read (the model's family is told from its configs): embeddings, ControlNet
    units on SD3 (Flux runs them: runtime/controlnet.py), a sampler of another kind. An SD model given a flow
    sampler is refused too. Nothing to say for an SD model with an SD sampler."""
    s = table.settings
    flow_sampler = bool(getattr(SAMPLERS.get(str(s.sampler)), "flow", False))
    if sd.family not in FLOW_BASES:
        if flow_sampler:
            raise RenderError(f"sampler {s.sampler} is for rectified-flow models (SD3, Flux), but the model is "
                              f"{sd.family}", "choose another sampler, e.g. euler")
        return
    name = FLOW_TITLES[sd.family]
    if not flow_sampler:
        raise RenderError(f"sampler {s.sampler} is not a rectified-flow sampler; {name} models sample with flow_euler",
                          "set `sampler flow_euler`, or leave the sampler out to get the family's default")
    if s.embedding:
        raise RenderError(f"embeddings are not loaded into {name} models yet",
                          "remove `embedding` from the scene for this model")
    if active_units(s) and sd.family == "sd3":
        raise RenderError(f"ControlNet units cannot run with {name} models: {SD3_CONTROLNET_WHY}",
                          "remove the scene's `cn_…` units, or render ControlNet scenes with Flux.1, SDXL or SD 1.x")
    if active_units(s) and sd.model_family.name == "flux-kontext":
        raise RenderError(f"ControlNet units cannot run with Flux.1 Kontext: {KONTEXT_CONTROLNET_WHY}",
                          "remove the scene's `cn_…` units, or render with Flux.1 [dev]")
    unit = FLOW_PATCH  # the VAE's 8 times the transformer's 2x2 patches (1024x1024 is 64x64 tokens)
    if int(s.width) % unit or int(s.height) % unit:
        raise RenderError(f"{name} renders sizes in multiples of {unit}; the scene's is {s.width}x{s.height}",
                          f"set a size whose width and height divide by {unit}, e.g. 1024x1024")


def flow_prompt_warnings(table: FrameTable, sd) -> list[str]:
    """What an SD3 / Flux model reads otherwise than an SD model would (see the module docstring)."""
    name = FLOW_TITLES[sd.family]
    out = []
    if np.any(np.asarray(table["clip_skip"]) != 1):
        out.append(f"clip_skip has no effect on a {name} model (its CLIP encoders are read as diffusers reads them)")
    values = {texts for col in ("prompt_pieces", "negative_prompt_pieces") for v in set(table[col].tolist())
              for texts in read_prompt(str(v)).texts}  # a composite value's texts, each part at each step
    if any(p is None or p[1] != 1.0 for v in values for p in read_pieces(v)):
        out.append(f"attention weights ((word:1.2)) and BREAK have no effect on a {name} model: T5 reads the "
                   "prompt's text as written")
    if sd.family == "flux":
        negatives = {str(v) for v in table["negative_prompt"].tolist()} - {""}
        if negatives and not np.any(np.asarray(table["true_cfg_scale"], dtype=float) > 1.0):
            out.append(f"{sd.model_family.name} ignores negative prompts (guidance-distilled: no unconditional "
                       "pass); the scene's negative prompt is not used (true_cfg_scale above 1 uses it)")
        if not sd.unet.config.guidance_embeds and np.any(np.asarray(table["cfg_scale"], dtype=float) != 0):
            out.append("FLUX.1-schnell takes no guidance scale: cfg_scale is ignored")
    n, tok = int(sd.t5_max_length), sd.t5_tokenizer
    if tok is not None:
        texts = dict.fromkeys(flow_text(t) for v in set(map(str, table["prompt_pieces"].tolist()))
                              for t in read_prompt(v).texts)
        long = [t for t in texts if len(tok(t, truncation=False).input_ids) > n]
        for text in long[:MAX_LONG_NOTED]:
            out.append(f"prompt {text[:40]!r}… is longer than the {n} T5 tokens {name} reads here: the rest is cut")
    return out


def prompt_warnings(table: FrameTable, sd) -> list[str]:
    """Checked once the model is loaded, before the first frame: a clip_skip deeper than the text encoder
    is a RenderError; a clip_skip on an SD 2.x model and a prompt longer than one chunk are warnings. (What a flow
    model cannot render was refused by the load stage: `flow_refusals`.)"""
    if sd.family in FLOW_BASES:
        return flow_prompt_warnings(table, sd)
    config = sd.text_encoder_config
    skips = np.asarray(table["clip_skip"])
    layers = int(config.num_hidden_layers)
    out = []
    if len(skips) and int(skips.max()) > layers:
        f = int(np.argmax(skips > layers))
        raise RenderError(f"clip_skip is {int(skips[f])} at frame {f}, but this model's text encoder has {layers} "
                          "layers", f"keep clip_skip in 1 .. {layers}")
    xl = sd.family == "sdxl"
    if np.any(skips != 1) and xl:
        out.append("clip_skip has no effect on an SDXL model (as in A1111): both text encoders are read at the "
                   "penultimate layer")
    elif np.any(skips != 1) and not clip_skip_applies(config):
        out.append("clip_skip has no effect on an SD 2.x model (as in A1111): its text encoder already ends at the "
                   "penultimate layer")
    # (SDXL below 768x768: runtime/model_family.py family_warnings, with the other model-family warnings)
    encoder = PromptEncoder(sd)
    noted = more = 0  # past MAX_LONG_NOTED long prompts (a backtick expression: another text every frame), a count
    for text, value in _distinct(table):
        chunks = max(len(encoder.chunks(pieces)) for pieces in read_prompt(value).texts)  # every AND part, each edit
        if chunks > 1 and noted < MAX_LONG_NOTED:
            noted += 1
            out.append(f"prompt {text[:40]!r}… is {chunks} chunks of {CHUNK_TOKENS} tokens: CLIP reads 77 "
                       "tokens at a time, so each chunk is encoded on its own and the embeddings are joined (as "
                       "A1111 does)")
        elif chunks > 1:
            more += 1
    if more:
        out.append(f"… and {more} more prompts longer than one chunk of {CHUNK_TOKENS} tokens")
    return out


__all__ = ["COLUMNS", "Chunk", "Part", "Prompt", "PromptEmbeddings", "PromptEncoder", "RowConditioning",
           "flow_refusals", "flow_text", "make_chunks", "prompt_warnings", "read_pieces", "read_prompt",
           "schedule_multiplier"]
