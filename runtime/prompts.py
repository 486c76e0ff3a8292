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
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..table import FrameTable
from .errors import RenderError

CHUNK_TOKENS = 75  # tokens per chunk between BOS and EOS
COMMA_BACKTRACK = 20  # A1111's comma_padding_backtrack default
EMPTY_PIECES = '[["",1.0]]'  # the pieces of an empty prompt
BREAK = "BREAK"
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
        raise RenderError(f"a prompt's pieces are malformed in the table: {text[:60]!r} ({e})",
                          "recompile the scene with this dfm (`dfm compile`)") from None
    return out


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
        """Whether the embeddings end with a pooled row (SDXL)."""
        return getattr(self.sd, "family", "sd15") == "sdxl"

    def chunks(self, pieces: str, tok=None) -> list[Chunk]:
        tok = self.sd.tokenizer if tok is None else tok
        parts = read_pieces(pieces)
        texts = [p[0] for p in parts if p is not None]
        ids = iter(tok(texts, add_special_tokens=False, truncation=False, verbose=False).input_ids if texts else [])
        tokenized = [None if p is None else (next(ids), p[1]) for p in parts]
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        return make_chunks(tokenized, bos=tok.bos_token_id, eos=tok.eos_token_id, pad=pad,
                           comma=tok.get_vocab().get(",</w>"))

    @torch.no_grad()
    def __call__(self, pieces: str, clip_skip: int = 1) -> Tensor:
        """The hidden states (1, 77·chunks, D) of one prompt, in float32 (SDXL: plus the pooled row)."""
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
        hidden = torch.cat(per_encoder, dim=2)
        row = torch.zeros(1, 1, hidden.shape[2], dtype=hidden.dtype, device=hidden.device)
        row[0, 0, : pooled.shape[-1]] = pooled[0]
        return torch.cat([hidden, row], dim=1)

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


def _final_layer_norm(encoder) -> torch.nn.Module:
    """The final layer norm of a CLIPTextModel (transformers >= 5.6 dropped the `text_model` level)."""
    inner = getattr(encoder, "text_model", encoder)
    return inner.final_layer_norm


class PromptEmbeddings:
    """Text embeddings computed once per distinct (pieces, clip skip), blended per row as the table says."""

    def __init__(self, encode: Callable[[str, int], Tensor]) -> None:
        self._encode = encode
        self._cache: dict[tuple[str, int], Tensor] = {}

    def __call__(self, pieces: str, clip_skip: int = 1) -> Tensor:
        key = (pieces, int(clip_skip))
        if key not in self._cache:
            self._cache[key] = self._encode(*key)
        return self._cache[key]

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

    def for_row(self, row: Mapping[str, object], guided: bool) -> tuple[Tensor, Tensor | None]:
        skip = int(row["clip_skip"])
        cond = self.blended(str(row["prompt_pieces"]), str(row["prompt_from_pieces"]), float(row["prompt_blend"]),
                            skip, bool(str(row["prompt_from"])))
        if not guided:
            return cond, None
        uncond = self.blended(str(row["negative_prompt_pieces"]), str(row["negative_prompt_from_pieces"]),
                              float(row["negative_blend"]), skip, bool(str(row["negative_prompt_from"])))
        return cond, uncond


def _padded(z: Tensor, length: int, empty: Tensor) -> Tensor:
    repeats = (length - z.shape[1]) // empty.shape[1]
    return torch.cat([z, empty.repeat(1, repeats, 1)], dim=1) if repeats > 0 else z


def _distinct(table: FrameTable) -> Iterator[tuple[str, str]]:
    """Every (text, pieces) pair of the table's prompts, once each, in first-use order."""
    seen: dict[tuple[str, str], None] = {}
    for text_col, pieces_col in PROMPT_COLUMNS:
        for pair in zip(table[text_col].tolist(), table[pieces_col].tolist(), strict=True):
            seen.setdefault((str(pair[0]), str(pair[1])), None)
    return iter(seen)


def prompt_warnings(table: FrameTable, sd) -> list[str]:
    """Checked once the model is loaded, before the first frame: a clip_skip deeper than the text encoder
    is a RenderError; a clip_skip on an SD 2.x model and a prompt longer than one chunk are warnings."""
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
    s = table.settings
    if xl and int(s.width) * int(s.height) < 768 * 768:
        out.append(f"SDXL renders at {s.width}x{s.height}, well below the 1024x1024 it was trained at: set `size "
                   "1024x1024` (or another ~1 megapixel size) in the scene; dfm's default size is 512x512 for "
                   "every model")
    encoder = PromptEncoder(sd)
    for text, pieces in _distinct(table):
        chunks = encoder.chunks(pieces)
        if len(chunks) > 1:
            out.append(f"prompt {text[:40]!r}… is {len(chunks)} chunks of {CHUNK_TOKENS} tokens: CLIP reads 77 "
                       "tokens at a time, so each chunk is encoded on its own and the embeddings are joined (as "
                       "A1111 does)")
    return out


__all__ = ["COLUMNS", "Chunk", "PromptEmbeddings", "PromptEncoder", "make_chunks", "prompt_warnings", "read_pieces"]
