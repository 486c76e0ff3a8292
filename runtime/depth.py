"""Depth maps for 3D mode: a transformers depth estimator (MiDaS DPT or Depth Anything), loaded lazily.

A depth map here is an (H, W) float32 tensor on the render device in Deforum's depth units: MiDaS
predicts relative inverse depth d (larger = nearer) and Deforum turns it into (50 − d) / 19, so the
camera translation (1/200 per unit) moves near pixels more than far ones. Everything between the frame
and the depth map stays on the device; the processor's config is read, not its PIL/numpy path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from .device import Placement
from .errors import RenderError
from .model_source import HUB_ID, fetch_snapshot, first_line
from .models import quiet_loading

# MiDaS -> Deforum depth: depth = (MIDAS_OFFSET - d) / MIDAS_DIVISOR (helpers/depth.py in the notebook)
MIDAS_OFFSET = 50.0
MIDAS_DIVISOR = 19.0
# Depth Anything's relative disparity has no fixed scale; normalised per frame to [0, 1] and multiplied by
# this it runs 0..31 "MiDaS units", so the farthest pixel gets 50/19 (MiDaS's zero disparity) and the
# nearest exactly 1 (the plane Deforum uses when depth warping is off)
RELATIVE_SPAN = MIDAS_OFFSET - MIDAS_DIVISOR
KINDS = {"midas": "MiDaS DPT", "relative": "Depth Anything (relative)", "metric": "metric depth (metres)"}
_HUB_PATTERNS = ["config.json", "preprocessor_config.json", "*.safetensors"]
_LOAD_HELP = (
    "point depth_model at a local folder saved by transformers (config.json, preprocessor_config.json, "
    "model.safetensors), e.g. Intel/dpt-hybrid-midas or depth-anything/Depth-Anything-V2-Small-hf"
)


# ---- pure functions -------------------------------------------------------------------------------------


def _multiple(val: float, multiple: int, max_val: float | None = None) -> int:
    """transformers' DPT rounding of a side to a multiple (constrain_to_multiple_of)."""
    x = round(val / multiple) * multiple
    if max_val is not None and x > max_val:
        x = math.floor(val / multiple) * multiple
    if x < multiple:
        x = math.ceil(val / multiple) * multiple
    return int(x)


def input_size(
    height: int, width: int, size: tuple[int, int], keep_aspect_ratio: bool, multiple: int
) -> tuple[int, int]:
    """The network input size for a frame, by the rule of transformers' DPT processor (also Depth
    Anything's): scale to `size`, or with `keep_aspect_ratio` by the one factor closer to 1, then round
    each side to `multiple`."""
    scale_h, scale_w = size[0] / height, size[1] / width
    if keep_aspect_ratio:
        if abs(1 - scale_w) < abs(1 - scale_h):
            scale_h = scale_w
        else:
            scale_w = scale_h
    return _multiple(scale_h * height, multiple), _multiple(scale_w * width, multiple)


def preprocess(frame: Tensor, size: tuple[int, int], mean: Tensor | None, std: Tensor | None) -> Tensor:
    """(1, 3, H, W) in [0, 1] -> the network input: bicubic resize (antialiased, like PIL), normalised."""
    x = frame.float()
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    if mean is not None and std is not None:
        x = (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    return x


def resize_prediction(pred: Tensor, height: int, width: int) -> Tensor:
    """(1, h, w) or (h, w) network output -> (H, W) float32, bicubic (as Deforum resizes MiDaS's output)."""
    p = pred.float().reshape(1, 1, *pred.shape[-2:])
    if tuple(p.shape[-2:]) != (height, width):
        p = F.interpolate(p, size=(height, width), mode="bicubic", align_corners=False)
    return p[0, 0]


def midas_to_depth(disparity: Tensor) -> Tensor:
    """Deforum's MiDaS conversion: (50 − d) / 19. Large disparities give depths ≤ 0, which warp_3d clamps."""
    return (MIDAS_OFFSET - disparity) / MIDAS_DIVISOR


def relative_to_depth(disparity: Tensor) -> Tensor:
    """Relative disparity of unknown scale (Depth Anything) -> Deforum units: normalised per frame onto
    0..RELATIVE_SPAN, then MiDaS's formula; nearest pixel 1.0, farthest 50/19. A flat map gives 50/19."""
    lo, hi = disparity.min(), disparity.max()
    span = (hi - lo).clamp_min(1e-12)
    return midas_to_depth((disparity - lo) / span * RELATIVE_SPAN)


def to_deforum_depth(prediction: Tensor, kind: str) -> Tensor:
    if kind == "midas":
        return midas_to_depth(prediction)
    if kind == "relative":
        return relative_to_depth(prediction)
    if kind == "metric":
        return prediction  # already a distance; used as z directly
    raise ValueError(f"unknown depth kind {kind!r}")


def blend_flat(depth: Tensor, midas_weight: float) -> Tensor:
    """`midas_weight` · depth + (1 − midas_weight) · a flat plane at the map's mean depth.

    Deforum blends MiDaS with AdaBins by this weight; AdaBins is not available, so the rest of the weight
    goes to a plane at the same mean distance: parallax shrinks by midas_weight while the average speed of
    the flight stays as it was. midas_weight ≥ 1 keeps the map as it is."""
    w = float(midas_weight)
    if w >= 1.0:
        return depth
    return w * depth + (1.0 - w) * depth.mean()


# The depth a 16-bit depth map's white stands for, per kind of model: the farthest a MiDaS or relative
# map can be in Deforum units (disparity 0: 50/19), 100 m for metric models. One fixed scale for every
# frame, so a compositor reads the same distance from the same value all through the render.
DEPTH_MAP_MAX = {"midas": MIDAS_OFFSET / MIDAS_DIVISOR, "relative": MIDAS_OFFSET / MIDAS_DIVISOR, "metric": 100.0}
DEPTH_MAP_UNITS = {"midas": "Deforum depth units", "relative": "Deforum depth units", "metric": "metres"}


def depth_image(depth: Tensor, kind: str = "midas") -> Tensor:
    """A depth map (H, W) as the uint16 values of depth/NNNNN.png, still on the device (int32: torch has
    no uint16 arithmetic everywhere): value = depth / DEPTH_MAP_MAX[kind] · 65535, clipped; far = white
    (Deforum saves the depth, not the disparity)."""
    scaled = (depth.float() / DEPTH_MAP_MAX[kind]).clamp(0, 1) * 65535
    return scaled.round().to(torch.int32)


def depth_map_scale(kind: str) -> dict:
    """How to read depth/NNNNN.png back, for the manifest."""
    return {"format": "16-bit single-channel PNG", "depth": "value / 65535 * max", "max": DEPTH_MAP_MAX[kind],
            "units": DEPTH_MAP_UNITS[kind], "far": "white"}


# ---- finding and loading a model --------------------------------------------------------------------------


def resolve_depth_folder(spec: str, base_dirs: tuple[Path, ...] = (), allow_pickle: bool = False) -> Path:
    """The local folder of depth model `spec`: an existing folder (relative paths tried against
    `base_dirs`, then the working directory), or a hub id's snapshot in the local cache (downloaded
    only when the hub is reachable and HF_HUB_OFFLINE is not set)."""
    raw = Path(spec).expanduser()
    candidates = [raw] if raw.is_absolute() else [*(b / raw for b in base_dirs), raw]
    for c in candidates:
        if c.is_dir():
            if not (c / "config.json").is_file():
                raise RenderError(f"depth model folder {c} has no config.json", _LOAD_HELP)
            return c.resolve()
        if c.is_file():
            raise RenderError(f"depth_model {spec} is a file; a depth model is a folder", _LOAD_HELP)
    if spec.startswith((".", "/", "~")) or "\\" in spec or not HUB_ID.match(spec):
        raise RenderError(f"depth model folder {spec} does not exist", _LOAD_HELP)
    return _hub_snapshot(spec, allow_pickle)


def _hub_snapshot(repo_id: str, allow_pickle: bool) -> Path:
    patterns = _HUB_PATTERNS + (["*.bin"] if allow_pickle else [])
    try:
        return fetch_snapshot(repo_id, patterns, "depth model", _LOAD_HELP)
    except RenderError as e:
        # a model missing from the cache is the usual first 3D render offline: name every way on, not only
        # "point depth_model at a folder" (fetch_snapshot's message is pinned by the model-loading tests)
        if "not in the local Hugging Face cache" not in e.message:
            raise
        raise RenderError(e.message, _missing_help(repo_id, allow_pickle)) from None


def _missing_help(repo_id: str, allow_pickle: bool = False) -> str:
    """The three ways on when depth model `repo_id` is not cached: download it, use a folder, or no depth."""
    include = " ".join(f'--include "{p}"' for p in ["*.json", "*.safetensors"] + (["*.bin"] if allow_pickle else []))
    return (
        f"download it once while online: `hf download {repo_id} {include}`; "
        "or point depth_model (or --depth-model) at a local folder saved by transformers (config.json, "
        "preprocessor_config.json, model.safetensors); "
        "or render without depth: `use_depth_warping off` (and `save_depth_maps off`): the 3D camera then "
        "moves a flat plane, as in Deforum"
    )


def depth_kind(config) -> str:
    """How to read the model's output: MiDaS disparity, relative disparity, or metric depth."""
    model_type = getattr(config, "model_type", "")
    if model_type == "dpt":
        return "midas"
    if model_type == "depth_anything":
        return "metric" if getattr(config, "depth_estimation_type", "relative") == "metric" else "relative"
    raise RenderError(
        f"depth models of type {model_type!r} are not supported",
        "use a MiDaS DPT model (Intel/dpt-hybrid-midas, Intel/dpt-large, Intel/dpt-beit-large-512) or "
        "Depth Anything (depth-anything/Depth-Anything-V2-Small-hf)",
    )


def square_only(config) -> bool:
    """transformers' ViT and hybrid DPT (Intel/dpt-large, Intel/dpt-hybrid-midas) reshape the tokens
    to a sqrt(n)² grid, so only square inputs work; BEiT-backbone DPT and Depth Anything take any shape."""
    return getattr(config, "model_type", "") == "dpt" and (
        bool(getattr(config, "is_hybrid", False)) or getattr(config, "backbone_config", None) is None
    )


@dataclass(frozen=True)
class InputSpec:
    """The processor settings a depth prediction needs, read once from preprocessor_config.json."""

    size: tuple[int, int]
    keep_aspect_ratio: bool
    multiple: int
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None

    @classmethod
    def from_processor(cls, proc) -> InputSpec:
        size = getattr(proc, "size", None)
        height = _size_field(size, "height") or _size_field(size, "shortest_edge") or 384
        width = _size_field(size, "width") or height
        normalize = bool(getattr(proc, "do_normalize", True))
        return cls(
            size=(int(height), int(width)),
            keep_aspect_ratio=bool(getattr(proc, "keep_aspect_ratio", False)),
            multiple=int(getattr(proc, "ensure_multiple_of", 1) or 1),
            mean=tuple(float(v) for v in proc.image_mean) if normalize else None,
            std=tuple(float(v) for v in proc.image_std) if normalize else None,
        )


def _size_field(size, name: str) -> int | None:
    value = size.get(name) if isinstance(size, dict) else getattr(size, name, None)
    return int(value) if value else None


class DepthEstimator:
    """A depth model loaded on first use; `predict` maps a frame to a depth map in Deforum units."""

    def __init__(
        self,
        spec: str,
        placement: Placement,
        *,
        midas_weight: float,  # the scene's: no default of the runtime's own
        base_dirs: tuple[Path, ...] = (),
        allow_pickle: bool = False,
    ) -> None:
        self.spec = spec
        self.placement = placement
        self.midas_weight = float(midas_weight)
        self.base_dirs = base_dirs
        self.allow_pickle = allow_pickle
        self.calls = 0

    @cached_property
    def folder(self) -> Path:
        return resolve_depth_folder(self.spec, self.base_dirs, self.allow_pickle)

    @cached_property
    def model(self):
        from transformers import AutoModelForDepthEstimation

        folder = self.folder
        kwargs = {"local_files_only": True, "dtype": self.placement.dtype}
        if not self.allow_pickle:
            kwargs["use_safetensors"] = True
        try:
            with quiet_loading():
                model = AutoModelForDepthEstimation.from_pretrained(str(folder), **kwargs)
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            pickle_only = not any(folder.glob("*.safetensors")) and any(folder.glob("*.bin"))
            help = (
                "its weights are pickle files (.bin): pass --allow-pickle if you trust them, or convert them "
                "to .safetensors"
                if pickle_only and not self.allow_pickle
                else _LOAD_HELP
            )
            raise RenderError(f"could not load depth model {self.spec}: {first_line(e)}", help) from None
        depth_kind(model.config)  # refuse unknown model types before the first frame
        return model.to(self.placement.device).eval().requires_grad_(False)

    @cached_property
    def inputs(self) -> InputSpec:
        from transformers import AutoImageProcessor

        try:
            proc = AutoImageProcessor.from_pretrained(str(self.folder), local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise RenderError(
                f"could not read the image processor of depth model {self.spec}: {first_line(e)}",
                "the folder needs the preprocessor_config.json saved with the model",
            ) from None
        return InputSpec.from_processor(proc)

    @cached_property
    def kind(self) -> str:
        return depth_kind(self.model.config)

    def load(self) -> None:
        """Load everything now (the render does this in its load stage, before the first frame)."""
        _ = self.model, self.inputs, self.kind

    def network_size(self, height: int, width: int) -> tuple[int, int]:
        spec = self.inputs
        if square_only(self.model.config):
            # resize to the model's square input and the prediction back (Deforum keeps MiDaS's aspect
            # ratio at 384; transformers' DPT-Large/hybrid cannot)
            side = _multiple(spec.size[0], spec.multiple)
            return side, side
        return input_size(height, width, spec.size, spec.keep_aspect_ratio, spec.multiple)

    @cached_property
    def _normalisation(self) -> tuple[Tensor | None, Tensor | None]:
        """The processor's mean and std on the device, made once (not a host-to-device copy per frame)."""
        spec, dev = self.inputs, self.placement.device
        mean = torch.tensor(spec.mean, device=dev) if spec.mean is not None else None
        std = torch.tensor(spec.std, device=dev) if spec.std is not None else None
        return mean, std

    @torch.no_grad()
    def raw(self, frame: Tensor) -> Tensor:
        """The model's own output for `frame` (1, 3, H, W in [0, 1]), resized to (H, W)."""
        _, _, h, w = frame.shape
        dev = self.placement.device
        mean, std = self._normalisation
        x = preprocess(frame.to(dev), self.network_size(h, w), mean, std)
        self.calls += 1
        pred = self.model(pixel_values=x.to(self.placement.dtype)).predicted_depth
        return resize_prediction(pred, h, w)

    def predict(self, frame: Tensor) -> Tensor:
        """Depth map (H, W) of `frame` in Deforum units, blended with a flat plane by midas_weight."""
        return blend_flat(to_deforum_depth(self.raw(frame), self.kind), self.midas_weight)


__all__ = [
    "DepthEstimator",
    "blend_flat",
    "depth_image",
    "depth_map_scale",
    "input_size",
    "midas_to_depth",
    "relative_to_depth",
    "resolve_depth_folder",
]
