"""LoRAs and textual-inversion embeddings at render time, read from the table as data.

The compiler (compiler/networks.py) lists the scene's LoRAs in `settings.lora` (paths or hub ids) and
embeddings in `settings.embedding`, and writes each frame's weights in the column `lora_weights` (JSON:
``[unet, text_encoder]`` per LoRA). Here, before the first frame (`prepare`, the render's load stage):

- each LoRA is read (safetensors; a pickle only with --allow-pickle, tensors only), converted by
  diffusers' loader mixins (`lora_state_dict`: A1111/kohya keys and diffusers' own) and checked layer by
  layer against the model (a LoRA for another family, or of other shapes, is a RenderError naming the
  file), then loaded through peft as one adapter per LoRA into the UNet, and into each text encoder
  its file has weights for;
- when the weights are the same on every frame, the adapters are set once and fused into the UNet's
  weights (no LoRA matmuls per step); when they change, the adapters stay apart and each diffused frame
  sets its weights (`set_adapters`) before its UNet calls. A frame whose weights are all 0 disables the
  adapters, so it is exactly the frame of a render without the LoRA;
- each embedding's vectors become new rows of the text encoder's token embedding, and a tokenizer
  wrapper puts their ids where a prompt uses the token (a whole word, any case: the compiler's rule), so
  a multi-vector embedding takes its n positions in the chunk, as in A1111.

Text-encoder LoRAs change prompt embeddings: one prompt cache per distinct tuple of text-encoder weights
(`FrameNetworks.apply` hands the frame its cache), so no embedding made under other weights is reused; the
last few used are kept, so weights animated over every frame do not keep one per frame.

What is loaded stays on the model (`sd`, reused by watch mode) with the key of what was asked; a render
that asks for other networks removes it first (adapters deleted, embedding rows cut, tokenizers back).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ..contract import changes
from ..contract.table import FrameTable
from .errors import RenderError
from .fingerprint import network_files
from .model_source import first_line
from .prompts import CHUNK_TOKENS

WEIGHTS_COLUMN = "lora_weights"
ADAPTER_PREFIX = "dfm_lora_"
PICKLE_SUFFIXES = (".pt", ".ckpt", ".bin", ".pth")
MAX_VECTORS = CHUNK_TOKENS  # one chunk
# prompt caches kept at once (the most recently used): text-encoder weights animated over the frames make a
# new one per frame, each holding every prompt's embeddings on the device
MAX_PROMPT_CACHES = 8
_ATTR = "_dfm_networks"  # where the installed networks live on the StableDiffusion object
# (tokenizer attribute, text encoder attribute, the key of an SDXL embedding's vectors for them)
_ENCODERS = (("tokenizer", "text_encoder", "clip_l"), ("tokenizer_2", "text_encoder_2", "clip_g"))


def token_pattern(token: str) -> str:
    """An embedding's token as a whole word, any case (compiler/networks.py finds its uses the same way)."""
    return r"(?<![\w])" + re.escape(token) + r"(?![\w])"


def row_weights(value: object, count: int, frame: object = "?") -> list[tuple[float, float]]:
    """A `lora_weights` cell as [(unet, text_encoder)] per LoRA; malformed is a RenderError."""
    try:
        data = json.loads(str(value))
        out = [(float(u), float(t)) for u, t in data]
        if len(out) != count:
            raise ValueError(f"{len(out)} entries for {count} LoRAs")
    except (ValueError, TypeError) as e:
        raise RenderError(f"frame {frame}: the LoRA weights in the table are malformed ({e})",
                          "recompile the scene with this dfm (`dfm compile`)") from None
    return out


# ---- reading files ------------------------------------------------------------------------------------------


def read_tensors(path: Path, allow_pickle: bool, what: str) -> dict:
    """A file's tensors: .safetensors always, a pickle only with --allow-pickle (tensors only)."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise RenderError(f"{what} {path} does not exist", "check the path (relative paths are relative to the scene)")
    if suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise RenderError(f"{what} {path.name} is a pickle file, which can run code when loaded",
                              "convert it to .safetensors, or pass --allow-pickle if you trust the file (it is "
                              "then read with weights_only)")
        from .models import load_pickle_weights

        return load_pickle_weights(path)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise RenderError(f"{what} {path.name} cannot be read: {first_line(e)[:200]}",
                          "re-download the file; it should be a .safetensors file") from None


def lora_file(source: str) -> Path:
    """A LoRA source as a local file: a path, or the weights file of a hub repository (from the cache)."""
    path = Path(source).expanduser()
    # the compiler made scene-relative paths absolute and kept hub ids (owner/name) as written
    weights = path.suffix.lower() in (".safetensors", *PICKLE_SUFFIXES)
    if path.is_absolute() or source.startswith((".", "~")) or weights or path.exists():
        return path
    from .models import fetch_snapshot

    folder = fetch_snapshot(source, ["*.safetensors"], "LoRA", "download it once, or name a local file")
    files = sorted(folder.rglob("*.safetensors"))
    preferred = [f for f in files if f.name == "pytorch_lora_weights.safetensors"]
    if preferred or len(files) == 1:
        return (preferred or files)[0]
    raise RenderError(f"LoRA {source}: {'no' if not files else len(files)} .safetensors files in the repository",
                      "name the file: download it and write its path in the `lora` statement")


def embedding_vectors(data: Mapping, name: str) -> dict[str, Tensor]:
    """An embedding's vectors, (n, width) each: {"": …} for one text encoder, {"clip_l", "clip_g"} for SDXL.
    A1111's formats: `string_to_param` (.pt), `emb_params`, the SDXL pair, or one tensor (diffusers)."""
    if "clip_l" in data and "clip_g" in data:
        found = {"clip_l": data["clip_l"], "clip_g": data["clip_g"]}
    elif "string_to_param" in data and isinstance(data["string_to_param"], Mapping) and data["string_to_param"]:
        found = {"": next(iter(data["string_to_param"].values()))}
    elif "emb_params" in data:
        found = {"": data["emb_params"]}
    elif len(data) == 1:
        found = {"": next(iter(data.values()))}
    else:
        raise RenderError(f"embedding {name} is not a textual-inversion embedding (keys: "
                          f"{', '.join(list(map(str, data))[:5])})", "use an A1111 or diffusers embedding file")
    out = {}
    for k, v in found.items():
        if not isinstance(v, Tensor) or v.ndim not in (1, 2) or v.numel() == 0:
            raise RenderError(f"embedding {name}: its vectors are not a 1- or 2-dimensional tensor",
                              "use an A1111 or diffusers embedding file")
        v = v.detach().float().reshape(-1, v.shape[-1])
        if v.shape[0] > MAX_VECTORS:
            raise RenderError(f"embedding {name} has {v.shape[0]} vectors, more than a chunk holds ({MAX_VECTORS})",
                              "use an embedding of fewer vectors")
        out[k] = v
    return out


# ---- checking a LoRA against the model ----------------------------------------------------------------------


def _check_layers(state: dict, model: torch.nn.Module, part: str, name: str) -> int:
    """Every LoRA layer (peft keys `<module>.lora_A.weight`/`lora_B.weight`) names a module of `model` whose
    shape it fits; the count of layers. Else a RenderError naming the file: most often a LoRA of another
    model family (an SDXL LoRA on an SD 1.5 UNet)."""
    modules = dict(model.named_modules())
    layers: dict[str, dict[str, Tensor]] = {}
    for key, value in state.items():
        for kind in ("lora_A", "lora_B"):
            marker = f".{kind}."
            if marker in key:
                layers.setdefault(key.split(marker)[0], {})[kind] = value
    missing = [m for m in layers if m not in modules]
    if missing:
        raise RenderError(f"LoRA {name}: {len(missing)} of its {len(layers)} {part} layers are not in this model "
                          f"(e.g. `{missing[0]}`)", "use a LoRA made for this model's family (SD 1.x, SD 2.x or "
                          "SDXL)")
    for path, ab in layers.items():
        module = getattr(modules[path], "base_layer", modules[path])
        a, b = ab.get("lora_A"), ab.get("lora_B")
        if isinstance(module, torch.nn.Linear):
            fan_in, fan_out = module.in_features, module.out_features
        elif isinstance(module, torch.nn.Conv2d):
            fan_in, fan_out = module.in_channels, module.out_channels
        else:
            raise RenderError(f"LoRA {name}: `{path}` is a {type(module).__name__}, not a layer a LoRA adapts",
                              "use a LoRA made for this model")
        if a is None or b is None or a.ndim < 2 or b.ndim < 2 or a.shape[1] != fan_in or b.shape[0] != fan_out \
                or a.shape[0] != b.shape[1]:
            shapes = f"A {list(a.shape) if a is not None else None}, B {list(b.shape) if b is not None else None}"
            raise RenderError(f"LoRA {name}: layer `{path}` has shapes {shapes}, the model's is {fan_in} → {fan_out}",
                              "use a LoRA made for this model's family (SD 1.x, SD 2.x or SDXL)")
    return len(layers)


def _peft_keys(state: dict, unet: bool, flat_text_model: bool) -> dict:
    """A diffusers-format part (prefix removed) in the peft naming its loader uses, for `_check_layers`."""
    from diffusers.utils.state_dict_utils import (
        convert_state_dict_to_diffusers,
        convert_state_dict_to_peft,
        convert_unet_state_dict_to_peft,
    )

    if unet:
        first = next(iter(state))
        return state if "lora_A" in first else convert_unet_state_dict_to_peft(state)
    out = convert_state_dict_to_peft(convert_state_dict_to_diffusers(state))
    return {k.removeprefix("text_model."): v for k, v in out.items()} if flat_text_model else out


# ---- what is installed on the model -------------------------------------------------------------------------


@dataclass
class _Lora:
    adapter: str
    source: str
    unet: bool  # the file has UNet layers
    encoders: tuple[str, ...]  # the text encoder attributes it has layers for


class EmbeddingTokenizer:
    """A tokenizer that gives each embedding token its own ids (new rows of the text encoder's token
    embedding); everything else is the wrapped tokenizer's."""

    def __init__(self, inner, tokens: dict[str, list[int]]) -> None:
        self._inner = inner
        self._ids = {k.lower(): v for k, v in tokens.items()}
        alternatives = sorted(self._ids, key=len, reverse=True)  # the longest token first
        self._pattern = re.compile("|".join(token_pattern(t) for t in alternatives), re.IGNORECASE)

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def __len__(self) -> int:
        return len(self._inner)

    def __call__(self, text, *args, **kwargs):
        texts = [text] if isinstance(text, str) else list(text)
        plain = kwargs.get("add_special_tokens") is False and not args and not kwargs.get("return_tensors") \
            and not kwargs.get("padding")
        if not plain or not any(self._pattern.search(t) for t in texts):
            return self._inner(text, *args, **kwargs)  # the encoder's own calls (fixed-length, tensors)
        ids = [self._encode(t, kwargs) for t in texts]
        from transformers import BatchEncoding

        return BatchEncoding({"input_ids": ids[0] if isinstance(text, str) else ids})

    def _encode(self, text: str, kwargs: dict) -> list[int]:
        out: list[int] = []
        at = 0
        for m in self._pattern.finditer(text):
            if m.start() > at:
                out += self._inner(text[at:m.start()], **kwargs).input_ids
            out += self._ids[m.group(0).lower()]
            at = m.end()
        if at < len(text):
            out += self._inner(text[at:], **kwargs).input_ids
        return out


@dataclass
class Installed:
    """The networks loaded into one StableDiffusion object, and how to take them out again."""

    key: tuple
    loras: list[_Lora] = field(default_factory=list)
    fused: bool = False
    tokenizers: dict[str, object] = field(default_factory=dict)  # attribute -> the tokenizer before
    rows: dict[str, int] = field(default_factory=dict)  # text encoder attribute -> its token count before
    unet_state: tuple | None = None  # the UNet adapters' last (name, weight) set, None: disabled
    saved: dict[str, Tensor] = field(default_factory=dict)  # fused: the UNet weights before, on the CPU
    te_state: tuple | None = None

    def remove(self, sd) -> None:
        unet = sd.unet
        if self.fused:  # the weights before fusing, as they were (unfusing subtracts: not the same bits)
            with torch.no_grad():
                params = dict(unet.named_parameters())
                for name, value in self.saved.items():
                    params[name].copy_(value)
            self.saved, self.fused = {}, False
        from diffusers.utils import recurse_remove_peft_layers

        # only dfm loads adapters into these models: every LoRA layer goes, back to the plain modules; in every
        # text encoder, not only those of the LoRAs recorded (a load that failed half-way left layers too)
        if _has_lora_layers(unet):
            unet.unload_lora()
        for attr in ("text_encoder", "text_encoder_2") if sd.family == "sdxl" else ("text_encoder",):
            encoder = _part(sd, attr)
            if not _has_lora_layers(encoder):
                continue
            recurse_remove_peft_layers(encoder)
            if getattr(encoder, "peft_config", None) is not None:
                del encoder.peft_config
                encoder._hf_peft_config_loaded = None
        for attr, tok in self.tokenizers.items():
            setattr(sd, attr, tok)
        for attr, rows in self.rows.items():
            _part(sd, attr).resize_token_embeddings(rows)
        self.loras, self.tokenizers, self.rows = [], {}, {}


def prepare(table: FrameTable, sd, allow_pickle: bool) -> Installed | None:
    """Load the table's LoRAs and embeddings into `sd` (its components loaded), replacing what an earlier
    render installed there; fuse the LoRAs when their weights never change. Any file that does not fit the
    model is a RenderError, raised here, before the first frame."""
    settings = table.settings
    sources = tuple(str(x) for x in (settings.lora or ()))
    embeddings = tuple(str(x) for x in (settings.embedding or ()))
    fuse, cells = False, set()
    if sources:
        if WEIGHTS_COLUMN not in table:
            raise RenderError(f"the table lists {len(sources)} LoRAs but has no `{WEIGHTS_COLUMN}` column",
                              "recompile the scene with this dfm (`dfm compile`)")
        cells = set(map(str, table[WEIGHTS_COLUMN].tolist()))
        row_weights(next(iter(cells)), len(sources), 0)  # malformed: a RenderError
        fuse = changes.lora_fused(table)  # the rule incremental re-render knows too
    key = (sources, embeddings, network_files(table).get("network_files", ""), bool(allow_pickle), fuse,
           next(iter(cells)) if fuse else None)
    old: Installed | None = sd.__dict__.get(_ATTR)
    if old is not None and old.key == key:
        return old
    if old is not None:
        old.remove(sd)
        sd.__dict__.pop(_ATTR, None)
    if not sources and not embeddings:
        return None
    new = Installed(key)
    try:
        for j, source in enumerate(sources):
            new.loras.append(_load_lora(sd, source, f"{ADAPTER_PREFIX}{j}", allow_pickle))
        if embeddings:
            _load_embeddings(sd, embeddings, allow_pickle, new)
        active = []
        if fuse:
            weights = row_weights(next(iter(cells)), len(sources), 0)
            active = [(lo.adapter, u) for lo, (u, _) in zip(new.loras, weights, strict=True) if lo.unet and u != 0]
        if active:  # (none: the LoRAs weigh only text encoders; the UNet has nothing to fuse)
            new.saved = _base_weights(sd.unet)
            sd.unet.enable_lora()  # (a disabled LoRA layer unmerges itself at its next call)
            sd.unet.set_adapters([a for a, _ in active], [w for _, w in active])
            sd.unet.fuse_lora(adapter_names=[a for a, _ in active])
            new.fused = True
    except BaseException:
        new.remove(sd)
        raise
    sd.__dict__[_ATTR] = new
    return new


def _has_lora_layers(module: torch.nn.Module) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return any(isinstance(m, BaseTunerLayer) for m in module.modules())


def _part(model, name: str):
    """A component of the model by its attribute name (`text_encoder_2`, `tokenizer_2`: SDXL only)."""
    return getattr(model, name)


def _base_weights(unet) -> dict[str, Tensor]:
    """A CPU copy of every weight a LoRA layer wraps (what fusing changes)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    out = {}
    for name, module in unet.named_modules():
        if isinstance(module, BaseTunerLayer):
            for pname, p in module.get_base_layer().named_parameters(recurse=False):
                out[f"{name}.base_layer.{pname}"] = p.detach().to("cpu", copy=True)
    return out


def _load_lora(sd, source: str, adapter: str, allow_pickle: bool) -> _Lora:
    path = lora_file(source)
    state = read_tensors(path, allow_pickle, "LoRA")
    if sd.is_flow:
        return _load_flow_lora(sd, state, path.name, source, adapter)
    from diffusers.loaders import StableDiffusionLoraLoaderMixin, StableDiffusionXLLoraLoaderMixin

    xl = sd.family == "sdxl"
    mixin = StableDiffusionXLLoraLoaderMixin if xl else StableDiffusionLoraLoaderMixin
    name = path.name
    try:
        state, alphas = mixin.lora_state_dict(dict(state), unet_config=sd.unet.config)
    except (ValueError, KeyError, RuntimeError, IndexError) as e:
        raise RenderError(f"LoRA {name} cannot be converted: {first_line(e)[:200]}",
                          "use a LoRA in kohya/A1111 or diffusers format") from None
    if not any(k.startswith(("unet.", "text_encoder")) for k in state):  # diffusers' older, unprefixed UNet form
        state = {f"unet.{k}": v for k, v in state.items()}
    parts = {"unet": {}, "text_encoder": {}, "text_encoder_2": {}}
    for k, v in state.items():
        prefix = k.split(".", 1)[0]
        if prefix in parts:
            parts[prefix][k.split(".", 1)[1]] = v
    if parts["text_encoder_2"] and not xl:
        raise RenderError(f"LoRA {name} is an SDXL LoRA (it adapts a second text encoder); this model is "
                          f"{sd.family}", "use a LoRA made for this model's family")
    counted = 0
    unet = sd.unet
    if parts["unet"]:
        counted += _check_layers(_peft_keys(parts["unet"], True, False), unet, "UNet", name)
    encoders = []
    for attr in ("text_encoder", "text_encoder_2"):
        if parts[attr]:
            encoder = _part(sd, attr)
            flat = not hasattr(encoder, "text_model")
            counted += _check_layers(_peft_keys(parts[attr], False, flat), encoder, "text encoder", name)
            encoders.append(attr)
    if not counted:
        raise RenderError(f"LoRA {name} has no layer this model has", "use a LoRA made for this model's family")
    try:
        with _quiet():
            if parts["unet"]:
                mixin.load_lora_into_unet(state, alphas, unet, adapter_name=adapter)
            for attr in encoders:
                mixin.load_lora_into_text_encoder(state, alphas, _part(sd, attr), prefix=attr, adapter_name=adapter)
    except (ValueError, KeyError, RuntimeError) as e:
        raise RenderError(f"LoRA {name} cannot be loaded into this model: {first_line(e)[:200]}",
                          "use a LoRA made for this model's family") from None
    lora = _Lora(adapter, source, bool(parts["unet"]), tuple(encoders))
    # loaded adapters start active at weight 1: off until a frame asks for them
    if lora.unet:
        unet.disable_lora()
    for attr in encoders:
        _set_text_adapters(_part(sd, attr), [], [])
    return lora


# the CLIP encoders a flow model's LoRA may adapt, as diffusers' loaders name them (Flux: CLIP-L; SD3: CLIP-L and
# CLIP-G); their T5 encoders take no LoRA layers in diffusers
_FLOW_ENCODERS = {"flux": ("text_encoder",), "sd3": ("text_encoder", "text_encoder_2")}


def _load_flow_lora(sd, state: dict, name: str, source: str, adapter: str) -> _Lora:
    """A Flux or SD3 LoRA (diffusers' `transformer.` / `text_encoder.` keys, or a format diffusers' loader
    converts: kohya's, BFL's) loaded through diffusers' loader into the transformer and the CLIP encoders it
    adapts, off until a frame asks for it. The frame's pair of weights applies as for SD: the first to the
    transformer, the second to the text encoders."""
    from diffusers.loaders import FluxLoraLoaderMixin, SD3LoraLoaderMixin

    flux = sd.family == "flux"
    mixin = FluxLoraLoaderMixin if flux else SD3LoraLoaderMixin
    try:
        with _quiet():
            if flux:
                state, alphas = FluxLoraLoaderMixin.lora_state_dict(dict(state), return_alphas=True)
            else:
                state, alphas = SD3LoraLoaderMixin.lora_state_dict(dict(state)), None
    except (ValueError, KeyError, RuntimeError, IndexError) as e:
        raise RenderError(f"LoRA {name} cannot be converted: {first_line(e)[:200]}",
                          "use a LoRA in diffusers format (`transformer.` keys)") from None
    title = "Flux" if flux else "SD3"
    allowed = _FLOW_ENCODERS[sd.family]
    encoders = sorted({k.split(".", 1)[0] for k in state if k.startswith("text_encoder")})
    t5 = [e for e in encoders if e not in allowed]
    if t5:
        raise RenderError(f"LoRA {name} adapts {title}'s T5 encoder ({', '.join(t5)}), which diffusers loads no "
                          "LoRA layers into", "use a LoRA that adapts the transformer and the CLIP encoders only")
    part = {k.removeprefix("transformer."): v for k, v in state.items() if k.startswith("transformer.")}
    transformer = sd.unet
    counted = _check_layers(_peft_keys(part, True, False), transformer, "transformer", name) if part else 0
    for attr in encoders:
        layers = {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith(f"{attr}.")}
        encoder = _part(sd, attr)
        counted += _check_layers(_peft_keys(layers, False, not hasattr(encoder, "text_model")), encoder,
                                 "text encoder", name)
    if not counted:
        raise RenderError(f"LoRA {name} has no layer this {title} model has",
                          f"use a LoRA made for {title} (diffusers format, `transformer.` keys)")
    try:
        with _quiet():
            if part:
                transformer.load_lora_adapter(state, prefix="transformer", network_alphas=alphas,
                                              adapter_name=adapter)
            for attr in encoders:
                mixin.load_lora_into_text_encoder(state, alphas, _part(sd, attr), prefix=attr, adapter_name=adapter)
    except (ValueError, KeyError, RuntimeError) as e:
        raise RenderError(f"LoRA {name} cannot be loaded into this model: {first_line(e)[:200]}",
                          f"use a LoRA made for {title}") from None
    if part:
        transformer.disable_lora()  # loaded adapters start active at weight 1: off until a frame asks for them
    for attr in encoders:
        _set_text_adapters(_part(sd, attr), [], [])
    return _Lora(adapter, source, bool(part), tuple(encoders))


def _load_embeddings(sd, paths: tuple[str, ...], allow_pickle: bool, into: Installed) -> None:
    xl = sd.family == "sdxl"
    per_encoder: dict[str, list[tuple[str, Tensor]]] = {}
    for p in paths:
        path = Path(p)
        data = read_tensors(path, allow_pickle, "embedding")
        vectors = embedding_vectors(data, path.name)
        pairs = _ENCODERS if xl else _ENCODERS[:1]
        if xl and "" in vectors:
            raise RenderError(f"embedding {path.name} is for SD 1.x/2.x (one text encoder); this model is SDXL",
                              "use an SDXL embedding (clip_l and clip_g)")
        if not xl and "" not in vectors:
            raise RenderError(f"embedding {path.name} is an SDXL embedding (clip_l/clip_g); this model is {sd.family}",
                              "use an embedding made for this model's family")
        for tok_attr, enc_attr, part in pairs:
            v = vectors[part if xl else ""]
            width = _part(sd, enc_attr).get_input_embeddings().weight.shape[1]
            if v.shape[1] != width:
                raise RenderError(f"embedding {path.name} has vectors of width {v.shape[1]}; this model's text encoder "
                                  f"takes {width}", "use an embedding made for this model's family")
            per_encoder.setdefault(tok_attr, []).append((path.stem, v))
    for tok_attr, enc_attr, _ in _ENCODERS:
        items = per_encoder.get(tok_attr)
        if not items:
            continue
        encoder = _part(sd, enc_attr)
        table = encoder.get_input_embeddings()
        start = int(table.weight.shape[0])
        total = sum(int(v.shape[0]) for _, v in items)
        into.rows[enc_attr] = start
        encoder.resize_token_embeddings(start + total)
        weight = encoder.get_input_embeddings().weight
        ids: dict[str, list[int]] = {}
        at = start
        with torch.no_grad():
            for token, v in items:
                n = int(v.shape[0])
                weight[at:at + n] = v.to(weight.device, weight.dtype)
                ids[token] = list(range(at, at + n))
                at += n
        tok = _part(sd, tok_attr)
        into.tokenizers[tok_attr] = tok
        setattr(sd, tok_attr, EmbeddingTokenizer(tok, ids))


def _set_text_adapters(encoder, names: list[str], weights: list[float]) -> None:
    from diffusers.loaders.lora_base import (
        disable_lora_for_text_encoder,
        enable_lora_for_text_encoder,
        set_adapters_for_text_encoder,
    )

    if not names:
        disable_lora_for_text_encoder(encoder)
        return
    enable_lora_for_text_encoder(encoder)
    set_adapters_for_text_encoder(names, encoder, weights)


class _quiet:
    """diffusers warns about keys of parts it was not asked to load; the layers were checked here."""

    def __enter__(self):
        from diffusers.utils import logging

        self.level = logging.get_verbosity()
        logging.set_verbosity_error()

    def __exit__(self, *exc):
        from diffusers.utils import logging

        logging.set_verbosity(self.level)


# ---- per frame ----------------------------------------------------------------------------------------------


class FrameNetworks:
    """Each diffused frame's LoRA weights set on the model, and the prompt cache for its text-encoder
    weights (see the module docstring)."""

    def __init__(self, installed: Installed, sd, prompts, make_prompts: Callable[[], object]) -> None:
        self.installed = installed
        self.sd = sd
        self.make_prompts = make_prompts
        # text-encoder weights -> PromptEmbeddings, least recently used first (at most MAX_PROMPT_CACHES)
        self.caches: dict[tuple, object] = {(): prompts}

    def apply(self, row: Mapping[str, object], frame: int):
        """Set row `frame`'s weights (UNet, text encoders) and return the prompt cache it must use."""
        inst = self.installed
        loras = inst.loras
        if not loras:
            return self.caches[()]
        weights = row_weights(row[WEIGHTS_COLUMN], len(loras), frame)
        if not inst.fused:
            unet_on = tuple((lo.adapter, u) for lo, (u, _) in zip(loras, weights, strict=True) if lo.unet and u != 0)
            if unet_on != inst.unet_state:
                if unet_on:
                    self.sd.unet.enable_lora()
                    self.sd.unet.set_adapters([a for a, _ in unet_on], [w for _, w in unet_on])
                else:
                    self.sd.unet.disable_lora()
                inst.unet_state = unet_on
        te_on = tuple((lo.adapter, t) for lo, (_, t) in zip(loras, weights, strict=True) if lo.encoders and t != 0)
        if te_on != inst.te_state:
            for attr in {e for lo in loras for e in lo.encoders}:
                mine = [(a, t) for a, t in te_on if attr in next(lo.encoders for lo in loras if lo.adapter == a)]
                _set_text_adapters(getattr(self.sd, attr), [a for a, _ in mine], [t for _, t in mine])
            inst.te_state = te_on
        cache = self.caches.pop(te_on, None)
        if cache is None:
            cache = self.make_prompts()
            while len(self.caches) >= MAX_PROMPT_CACHES:
                del self.caches[next(iter(self.caches))]  # the least recently used
        self.caches[te_on] = cache  # last: the most recently used
        return cache


def for_renderer(table: FrameTable, sd, prompts, make_prompts: Callable[[], object]) -> FrameNetworks | None:
    """The per-frame side of the table's networks on `sd` (None: no LoRA). A model already loaded gets them
    now if its loader did not install them (after run_render's load stage, which local renders and Ray's
    row renderer both run, this finds them installed); a model not loaded renders nothing (every frame kept)."""
    if "unet" in sd.__dict__:
        prepare(table, sd, sd.allow_pickle)
    installed = sd.__dict__.get(_ATTR)
    if installed is None or not installed.loras:
        return None
    installed.unet_state = installed.te_state = None  # unknown: the first frame sets both
    return FrameNetworks(installed, sd, prompts, make_prompts)


__all__ = ["EmbeddingTokenizer", "FrameNetworks", "Installed", "embedding_vectors", "for_renderer",
           "network_files", "prepare", "read_tensors", "row_weights"]
