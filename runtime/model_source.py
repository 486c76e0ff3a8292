"""Where a Stable Diffusion model comes from: a hub id, a diffusers folder or a single file, resolved but not loaded.

A hub id is resolved to a local snapshot of only the files a render needs; a missing model fails at once
with a RenderError instead of retrying the network (models.py loads everything with `local_files_only=True`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..contract.errors import UserError
from ..contract.files import kind_of
from .errors import RenderError
from .hashing import verify_sha256

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# files a render needs from a hub repo: no safety checker, no fp16/ema variants, no .bin unless asked
_HUB_PATTERNS = [
    "model_index.json",
    "scheduler/*.json",
    "tokenizer/*",
    "unet/config.json",
    "vae/config.json",
    "text_encoder/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/diffusion_pytorch_model.safetensors",
    "text_encoder/model.safetensors",
    "tokenizer_2/*",  # SDXL's second tokenizer and text encoder (absent from SD 1.x/2.x repos)
    "text_encoder_2/config.json",
    "text_encoder_2/model.safetensors",
    # SD3 / Flux (absent from SD repos): the transformer, the T5 encoder (text_encoder_2 in Flux, _3 in SD3) and
    # its tokenizer, in the sharded files these repos ship (never an fp16 variant: no pattern names one)
    "transformer/config.json",
    "transformer/diffusion_pytorch_model.safetensors",
    "transformer/diffusion_pytorch_model-*-of-*.safetensors",
    "transformer/diffusion_pytorch_model.safetensors.index.json",
    "text_encoder_2/model-*-of-*.safetensors",
    "text_encoder_2/model.safetensors.index.json",
    "text_encoder_3/config.json",
    "text_encoder_3/model.safetensors",
    "text_encoder_3/model-*-of-*.safetensors",
    "text_encoder_3/model.safetensors.index.json",
    "tokenizer_3/*",
]
LOAD_HELP = "point --model at a local diffusers folder or a .safetensors file"


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from, resolved but not loaded."""

    kind: str  # "folder" | "file" | "hub"
    spec: str  # what the user wrote
    path: Path | None  # the folder or file (for a hub id: None until its snapshot is found)

    def describe(self) -> str:
        return {"folder": "diffusers folder", "file": "checkpoint", "hub": "hub model"}[
            self.kind
        ] + f" {self.spec}"


def resolve_source(spec: str, base_dirs: tuple[Path, ...] = ()) -> ModelSource:
    """Decide what `spec` names: an existing file or folder (relative paths tried against `base_dirs`,
    then the working directory), or else a hub id."""
    raw = Path(spec).expanduser()
    candidates = [raw] if raw.is_absolute() else [*(b / raw for b in base_dirs), raw]
    for c in candidates:
        try:
            kind = kind_of(c)  # a path the OS refuses (too long, a NUL byte): an error naming it, not OSError
        except UserError as e:
            raise RenderError(f"model {e.message}", e.help) from None
        if kind == "file":
            return ModelSource("file", spec, c.resolve())
        if kind == "folder":
            if not (c / "model_index.json").is_file() and not (c / "unet").is_dir():
                raise RenderError(
                    f"model folder {c} is not a diffusers model (no model_index.json, no unet/)",
                    "point --model at a folder saved by diffusers' save_pretrained, or a .safetensors file",
                )
            return ModelSource("folder", spec, c.resolve())
    looks_like_file = raw.suffix.lower() in SINGLE_FILE_SUFFIXES
    if looks_like_file or spec.startswith((".", "/", "~")) or "\\" in spec or not HUB_ID.match(spec):
        what = "model file" if looks_like_file else "model folder"
        raise RenderError(f"{what} {spec} does not exist", f"check the path, or {LOAD_HELP}")
    return ModelSource("hub", spec, None)


@dataclass(frozen=True)
class ModelRequest:
    """The model a render asks for: the spec, the folders its relative path is tried against, and the sha256
    it must have (the scene's; none once --model overrides the scene's model)."""

    spec: str
    base_dirs: tuple[Path, ...]
    sha256: str | None


def model_request(scene_model: object, scene_sha256: object, *, override: str | None,
                  scene_path: str) -> ModelRequest:
    """`override` replaces the scene's model, and the scene's sha256 then no longer applies; the scene's own
    relative paths are tried against the scene's folder."""
    spec = override or scene_model
    if not spec:
        raise RenderError("no model given", "set `model` in the scene or pass --model")
    sha = scene_sha256 if (override is None or override == scene_model) else None
    base_dirs = (Path(scene_path).resolve().parent,) if scene_path and override is None else ()
    return ModelRequest(str(spec), base_dirs, str(sha) if sha else None)


def model_identity(source: ModelSource, *, allow_pickle: bool, sha256: str | None) -> tuple[Path | None, str | None]:
    """The diffusers folder a model loads from (None for a single file: one pipeline converts it) and its
    checked sha256, without loading it; a pickle file without `allow_pickle`, a sha256 for anything but a
    single file, a wrong sha256 or a hub model not in reach are RenderErrors."""
    checked = None
    if source.kind == "file" and source.path.suffix.lower() in PICKLE_SUFFIXES and not allow_pickle:
        raise RenderError(
            f"{source.path.name} is a pickle checkpoint, which can run code when loaded",
            "convert it to .safetensors, or pass --allow-pickle if you trust the file (it is then read with "
            "weights_only)",
        )
    if sha256:
        if source.kind != "file":
            raise RenderError(
                f"a sha256 was given for {source.describe()}, but only a single model file can be checked",
                "remove the sha256, or point the model at a .safetensors file",
            )
        checked = verify_sha256(source.path, sha256)
    if source.kind == "hub":
        return hub_snapshot(source.spec, allow_pickle), checked
    return (source.path if source.kind == "folder" else None), checked


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_snapshot(repo_id: str, allow_pickle: bool) -> Path:
    """The local snapshot folder of a hub model, downloading only when the hub is reachable and allowed."""
    return fetch_snapshot(repo_id, _HUB_PATTERNS + (["*/*.bin"] if allow_pickle else []), "model", LOAD_HELP)


def fetch_snapshot(repo_id: str, patterns: list[str], what: str, load_help: str) -> Path:
    """`snapshot_download` that fails at once with a RenderError instead of retrying or tracing back."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    offline = _hub_offline()
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=offline))
    except LocalEntryNotFoundError:
        why = "the hub is offline (HF_HUB_OFFLINE is set)" if offline else "the hub could not be reached"
        raise RenderError(
            f"{what} {repo_id} is not in the local Hugging Face cache and {why}",
            f"download it once while online, or {load_help}",
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise RenderError(
            f"could not fetch {what} {repo_id} from the hub: {first_line(e)}",
            f"check the id (owner/name) and your access to it, or {load_help}",
        ) from None


def first_line(e: BaseException) -> str:
    """The first line of an error's message (its class name when it has none): what a RenderError quotes."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__

