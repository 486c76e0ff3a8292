"""A Stable Diffusion model's family (1.x, 2.x, SDXL and their variants), told from its files, never configured.

The rules are contract/families.py's, shared with the compiler: an SDXL folder has a `text_encoder_2/` (or a
UNet whose `addition_embed_type` is "text_time"); single files are told apart by their keys; a UNet with
`time_cond_proj_dim` is a guidance-embedded LCM. A single file gets its config folder here (`config_skeleton`),
and `family_warnings` says where the render's family would have compiled the scene otherwise. SD3/SD3.5 and
Flux are told by the same rules (their transformer's config, a single file's keys).
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

from ..contract import families
from ..contract.errors import UserError
from .errors import RenderError
from .model_source import first_line

CONFIGS = Path(__file__).parent / "configs"
# where the CLIP tokenizer of each family may already sit in the local Hugging Face cache
_TOKENIZER_CACHE = {
    "sd15": [
        ("openai/clip-vit-large-patch14", ""),
        ("stable-diffusion-v1-5/stable-diffusion-v1-5", "tokenizer/"),
        ("runwayml/stable-diffusion-v1-5", "tokenizer/"),
        ("CompVis/stable-diffusion-v1-4", "tokenizer/"),
    ],
    "sdxl": [
        ("openai/clip-vit-large-patch14", ""),
        ("stabilityai/stable-diffusion-xl-base-1.0", "tokenizer/"),
        ("stabilityai/sdxl-turbo", "tokenizer/"),
    ],
    "sd21": [
        ("stabilityai/stable-diffusion-2-1", "tokenizer/"),
        ("stabilityai/stable-diffusion-2-1-base", "tokenizer/"),
        ("stabilityai/stable-diffusion-2", "tokenizer/"),
    ],
}
FAMILY_NAMES = {"sd15": "Stable Diffusion 1.x", "sd21": "Stable Diffusion 2.x", "sdxl": "Stable Diffusion XL"}


def detect_family(path: Path, allow_pickle: bool) -> str | None:
    """The base architecture (sd15 / sd21 / sdxl) of a single file from its keys and shapes
    (contract/families.py `family_from_keys`: no weight is read of a .safetensors); None when unknown. A
    refiner or an inpainting UNet (9 input channels) is a RenderError naming it."""
    fam = file_key_family(path, allow_pickle)
    return fam.base if fam is not None else None


def file_key_family(path: Path, allow_pickle: bool) -> families.Family | None:
    """The family of a single file told by its keys (None: of no known family)."""
    try:
        if path.suffix.lower() == ".safetensors":
            shapes, meta = families.safetensors_header(path)
        else:
            state = load_pickle_weights(path)
            shapes, meta = {k: list(getattr(v, "shape", ())) for k, v in state.items()}, {}
        return families.family_from_keys(shapes, path.name, meta)
    except UserError as e:
        raise RenderError(e.message, e.help) from None


def folder_family(folder: Path, what: str) -> str:
    """The base architecture of a diffusers folder (sd15 / sd21 / sdxl) from model_index.json and
    unet/config.json (contract/families.py `folder_family`). Unsupported pipelines (SD3, Flux, inpainting, an
    SDXL refiner alone) are a RenderError."""
    return folder_model_family(folder, what).base


def folder_model_family(folder: Path, what: str, name: str | None = None) -> families.Family:
    """The full family of a diffusers folder (`name`, a hub id, helps tell a turbo model): the contract's, from
    model_index.json and the configs (no weights read); a pipeline dfm does not render is a RenderError."""
    try:
        return families.folder_family(folder, what, name=name)
    except families.UnsupportedModel as e:  # (a Flux Fill told by its configs or its name, say)
        raise RenderError(e.message, e.help) from None


def flow_file_family(path: Path) -> str | None:
    """"SD3" or "Flux" for a single .safetensors file of those models, told by its keys (header only), else None."""
    try:
        shapes, _ = families.safetensors_header(path)
    except UserError:
        return None
    for key in shapes:
        k = key.removeprefix("model.diffusion_model.")
        if k.startswith("joint_blocks."):
            return "SD3"
        if k.startswith(("double_blocks.", "single_blocks.")):
            return "Flux"
    return None


def load_pickle_weights(path: Path) -> dict:
    """A .ckpt's state dict, read with `weights_only=True` (tensors only, no code)."""
    import torch  # here, not above: telling a family from a .safetensors needs no torch

    # mmap (no copy of a multi-GB file in memory) works for torch's zip format only; a legacy pickle file (saved
    # before torch 1.6, or with _use_new_zipfile_serialization=False) is read whole, still as weights only
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as e:  # pickle errors come in many classes
        raise RenderError(
            f"{path} cannot be read as weights only: {first_line(e)}",
            "convert the checkpoint to .safetensors; dfm never runs code from a checkpoint",
        ) from None
    while isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return state


def _has_tokenizer(folder: Path) -> bool:
    return (folder / "tokenizer.json").is_file() or (
        (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()
    )


def _cached_tokenizer(family: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    for repo, prefix in _TOKENIZER_CACHE.get(family, []):
        vocab = try_to_load_from_cache(repo, prefix + "vocab.json")
        merges = try_to_load_from_cache(repo, prefix + "merges.txt")
        if isinstance(vocab, str) and isinstance(merges, str):
            return Path(vocab).parent
    return None


def config_skeleton(path: Path, allow_pickle: bool, workdir: Path, family: str | None = None, *,
                    prediction: str | None = None) -> Path:
    """The config folder (model_index.json, component configs, tokenizer) for a single-file checkpoint.

    In order: a diffusers config folder next to the file (its model_index.json); else dfm's shipped
    skeleton for the detected family, with the tokenizer from a `tokenizer/` folder next to the file or
    from the local Hugging Face cache. The tokenizer files (1.5 MB) are not shipped."""
    here = path.parent
    if (here / "model_index.json").is_file():
        if not _has_tokenizer(here / "tokenizer"):
            raise RenderError(
                f"the config folder next to {path.name} has no tokenizer",
                f"add tokenizer/vocab.json and tokenizer/merges.txt (or tokenizer.json) to {here}",
            )
        if (here / "text_encoder_2").is_dir() and not _has_tokenizer(here / "tokenizer_2"):
            raise RenderError(
                f"the SDXL config folder next to {path.name} has no tokenizer_2",
                f"add tokenizer_2/vocab.json and tokenizer_2/merges.txt (the same files as tokenizer/) to {here}",
            )
        return here
    family = family or detect_family(path, allow_pickle)
    if family is None:
        raise RenderError(
            f"cannot tell which model family {path.name} is (not SD 1.x, 2.x or SDXL by its weights)",
            "put the model's diffusers config folder (model_index.json, */config.json, "
            f"tokenizer/) next to the file in {here}",
        )
    tokenizer = here / "tokenizer" if _has_tokenizer(here / "tokenizer") else _cached_tokenizer(family)
    if tokenizer is None:
        repo = _TOKENIZER_CACHE[family][0][0]
        raise RenderError(
            f"{path.name} looks like {FAMILY_NAMES[family]} but its CLIP tokenizer files are missing: "
            "a single-file checkpoint has no tokenizer and dfm does not ship the 1.5 MB vocabulary",
            f"put vocab.json and merges.txt of {repo} in {here / 'tokenizer'}, or download {repo} into the "
            "Hugging Face cache once while online",
        )
    skeleton = workdir / family
    shutil.copytree(CONFIGS / family, skeleton)
    if prediction is not None:  # the SD 2.x skeleton is 768-v's: an epsilon model (2.1 base, SD-Turbo) says so
        sched = skeleton / "scheduler" / "scheduler_config.json"
        sched.write_text(json.dumps({**json.loads(sched.read_text(encoding="utf-8")), "prediction_type": prediction}),
                         encoding="utf-8")
    # SDXL's two tokenizers share CLIP's vocabulary (tokenizer_2 pads with "!": its shipped config says so)
    for part in ("tokenizer", "tokenizer_2") if family == "sdxl" else ("tokenizer",):
        for name in ("vocab.json", "merges.txt"):
            if (tokenizer / name).is_file():
                shutil.copy2(tokenizer / name, skeleton / part / name)
    return skeleton
