"""Dense optical flow between two frames, warping along it, its forward-backward check, and a cache.

Convention, used by every function here: `estimate_flow(a, b)` returns F (H, W, 2), float32, in pixels,
(dx, dy) on a's pixel grid: the content at pixel x of `a` is at x + F(x) in `b`, so b(x + F(x)) ≈ a(x).
Then:
- pulling b back onto a is exact in a's grid: a ≈ b sampled at x + F(x), `warp_by_flow(b, F, -1)` (what
  `cv2.remap(b, x + F)` does);
- pushing a towards b samples a at x − F(x), `warp_by_flow(a, F, 1)`: it takes the flow at the destination
  pixel instead of the source, exact for smooth flow and off by the flow's change across a motion edge (the
  same approximation as Deforum's `image_transform_optical_flow`).

The methods: DIS (OpenCV, medium preset; "fine" is the medium preset refined down to full resolution, as
Deforum builds it, since OpenCV has no fine preset), Farneback (OpenCV) and RAFT (torchvision's RAFT-large,
from its local weights file only; a render never downloads). Frames are RGB uint8 (H, W, 3) numpy arrays; the
render's float tensors convert with `to_uint8`. Every size is bounded and bad input is a RenderError.
"""

from __future__ import annotations

import hashlib
import pickle
from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..contract.hybrid import FLOW_METHODS, RAFT_WEIGHTS_FILE
from .errors import RenderError

MIN_SIDE = 16  # DIS and Farneback's pyramids need a few pixels per level
MAX_SIDE = 4096  # the largest frame a scene can have (catalogue `size`)
MAX_FACTOR = 1000.0  # a flow factor beyond this is a mistake, not a motion
RAFT_URL = "https://download.pytorch.org/models/" + RAFT_WEIGHTS_FILE
RAFT_ITERATIONS = 12  # torchvision's default number of flow updates
RAFT_MIN_SIDE = 128  # RAFT's correlation pyramid halves 1/8 resolution three more times: padded up to this
# forward-backward check (Sundaram, Brox & Keutzer 2010): a round trip |F + B| is unreliable past
# ALPHA·(|F|² + |B|²) + BETA, so the tolerance grows with the motion
CONSISTENCY_ALPHA = 0.01
CONSISTENCY_BETA = 0.5


# ---- frames -------------------------------------------------------------------------------------------------


def check_frame(frame: np.ndarray, what: str = "frame") -> np.ndarray:
    """`frame` if it is an RGB uint8 (H, W, 3) array within the size bounds, else a RenderError."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        desc = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise RenderError(f"optical flow: the {what} is {desc}, not an RGB uint8 (H, W, 3) image",
                          "this is a bug in dfm: please report it")
    h, w = frame.shape[:2]
    if not (MIN_SIDE <= h <= MAX_SIDE and MIN_SIDE <= w <= MAX_SIDE):
        raise RenderError(f"optical flow: the {what} is {w}x{h}; each side must be {MIN_SIDE} to {MAX_SIDE} pixels",
                          "use a frame size within these bounds")
    return frame


def to_uint8(image: Tensor) -> np.ndarray:
    """A render frame (1, 3, H, W) float in [0, 1], on any device, as RGB uint8 (H, W, 3) on the host."""
    if image.ndim != 4 or image.shape[0] != 1 or image.shape[1] != 3:
        raise RenderError(f"optical flow: a frame of shape {tuple(image.shape)}, not (1, 3, H, W)",
                          "this is a bug in dfm: please report it")
    pixels = (image[0].detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8)
    return np.ascontiguousarray(pixels.permute(1, 2, 0).cpu().numpy())


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def _check_flow(flow: np.ndarray | Tensor, h: int, w: int) -> None:
    shape = tuple(flow.shape)
    if shape != (h, w, 2):
        raise RenderError(f"optical flow: a flow of shape {shape} for a {w}x{h} frame (expected ({h}, {w}, 2))",
                          "this is a bug in dfm: please report it")


def _check_factor(factor: float) -> float:
    factor = float(factor)
    if not np.isfinite(factor) or abs(factor) > MAX_FACTOR:
        raise RenderError(f"optical flow: a flow factor of {factor}; it must be finite and within ±{MAX_FACTOR:g}",
                          "check the flow factor schedule (hybrid_flow_factor, cadence_flow_factor, redo_flow_factor)")
    return factor


# ---- estimating ------------------------------------------------------------------------------------------------


def _dis(a: np.ndarray, b: np.ndarray, fine: bool) -> np.ndarray:
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    if fine:  # OpenCV has no "fine" preset: Deforum's is medium refined down to the full resolution (scale 0)
        dis.setFinestScale(0)
    return dis.calc(_gray(a), _gray(b), None)


def _farneback(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # five pyramid levels follow motions of ~100 px at 512; the polynomial fit (5, 1.2) is OpenCV's suggestion.
    # Deforum 1.8 passed its previous flow as the preset argument and crashed (issue #961): no flow is reused here.
    return cv2.calcOpticalFlowFarneback(_gray(a), _gray(b), None, pyr_scale=0.5, levels=5, winsize=15,
                                        iterations=3, poly_n=5, poly_sigma=1.2,
                                        flags=cv2.OPTFLOW_FARNEBACK_GAUSSIAN)


def raft_weights_path(hub_dir: str | Path | None = None) -> Path:
    """Where torch keeps RAFT-large's weights: <torch hub dir>/checkpoints/ (torch.hub.get_dir() follows
    $TORCH_HOME, else ~/.cache/torch), or under `hub_dir` when given."""
    return Path(hub_dir if hub_dir is not None else torch.hub.get_dir()) / "checkpoints" / RAFT_WEIGHTS_FILE


@lru_cache(maxsize=2)
def load_raft(path: Path, device: torch.device) -> torch.nn.Module:
    """torchvision's RAFT-large with the weights at `path` (a state dict), on `device`, in eval mode; loaded
    once per (path, device) in a process. Missing or unreadable weights are a RenderError saying where to put
    them: a render never downloads."""
    from torchvision.models.optical_flow import raft_large

    if not path.is_file():
        raise RenderError(f"optical flow method raft needs torchvision's RAFT-large weights, {RAFT_WEIGHTS_FILE}, "
                          f"which are not at {path}",
                          f"download {RAFT_URL} and put it at {path} (the folder follows $TORCH_HOME), or use "
                          "dis_medium, dis_fine or farneback, which need no weights")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = raft_large(weights=None, progress=False)
        model.load_state_dict(state)
    except (OSError, EOFError, RuntimeError, ValueError, KeyError, TypeError, pickle.UnpicklingError) as e:
        raise RenderError(f"cannot load RAFT-large weights from {path}: {e}",
                          f"replace the file with {RAFT_URL}") from None
    return model.to(device).eval().requires_grad_(False)


def _raft(a: np.ndarray, b: np.ndarray, device: torch.device, weights: Path | None) -> np.ndarray:
    model = load_raft(weights if weights is not None else raft_weights_path(), torch.device(device))
    h, w = a.shape[:2]
    # RAFT works at 1/8 resolution: pad (replicating the border) to a multiple of 8, at least RAFT_MIN_SIDE
    ph, pw = max(-(-h // 8) * 8, RAFT_MIN_SIDE), max(-(-w // 8) * 8, RAFT_MIN_SIDE)
    frames = torch.from_numpy(np.stack([a, b])).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # [-1, 1]
    frames = F.pad(frames, (0, pw - w, 0, ph - h), mode="replicate")
    with torch.inference_mode():
        flow = model(frames[:1], frames[1:], num_flow_updates=RAFT_ITERATIONS)[-1]
    return flow[0, :, :h, :w].permute(1, 2, 0).float().cpu().numpy()


def estimate_flow(a: np.ndarray, b: np.ndarray, method: str, *, device: torch.device | str = "cpu",
                  raft_weights: Path | None = None) -> np.ndarray:
    """The optical flow from frame `a` to frame `b` (RGB uint8, same size): (H, W, 2) float32 pixels on a's
    grid, b(x + F(x)) ≈ a(x) (the module's convention). `method` is one of contract.hybrid.FLOW_METHODS;
    `device` and `raft_weights` (default: `raft_weights_path()`) matter to RAFT only."""
    check_frame(a, "first frame")
    check_frame(b, "second frame")
    if a.shape != b.shape:
        raise RenderError(f"optical flow between frames of different sizes, {a.shape[:2]} and {b.shape[:2]}",
                          "this is a bug in dfm: please report it")
    if method in ("dis_medium", "dis_fine"):
        flow = _dis(a, b, fine=method == "dis_fine")
    elif method == "farneback":
        flow = _farneback(a, b)
    elif method == "raft":
        flow = _raft(a, b, torch.device(device), raft_weights)
    else:
        raise RenderError(f"unknown optical flow method {method!r}", f"use one of {', '.join(FLOW_METHODS)}")
    flow = np.ascontiguousarray(flow, dtype=np.float32)
    if not np.isfinite(flow).all():  # a degenerate frame (e.g. NaN weights) must not smear the render
        raise RenderError(f"optical flow ({method}) gave non-finite values", "try another flow method")
    return flow


# ---- using a flow -----------------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _pixel_grid(h: int, w: int, device: torch.device) -> Tensor:
    """(H, W, 2) pixel centres (x, y), float32."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                            torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    return torch.stack([xs, ys], dim=-1)


def warp_by_flow(image: Tensor, flow: np.ndarray | Tensor, factor: float = 1.0) -> Tensor:
    """`image` (N, C, H, W) moved along `factor`·flow: out(x) = image(x − factor·flow(x)), bilinear, the
    border replicated. With the module's convention, `warp_by_flow(a, F, 1)` ≈ b and
    `warp_by_flow(b, F, -1)` ≈ a (exact: b sampled at x + F(x), as cv2.remap)."""
    factor = _check_factor(factor)
    if image.ndim != 4:
        raise RenderError(f"optical flow: warping an image of shape {tuple(image.shape)}, not (N, C, H, W)",
                          "this is a bug in dfm: please report it")
    _, _, h, w = image.shape
    _check_flow(flow, h, w)
    if factor == 0.0:
        return image
    # a copy of a numpy flow: the cache hands out read-only arrays, which torch cannot wrap
    field = flow.to(torch.float32) if isinstance(flow, Tensor) else torch.tensor(flow, dtype=torch.float32)
    field = field.to(image.device)
    src = _pixel_grid(h, w, image.device) - factor * field
    # normalised coordinates for align_corners=False: pixel i covers [i - 0.5, i + 0.5]
    grid = torch.stack([(2 * src[..., 0] + 1) / w - 1, (2 * src[..., 1] + 1) / h - 1], dim=-1)
    grid = grid.to(image.dtype).unsqueeze(0).expand(image.shape[0], -1, -1, -1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)


def consistency_mask(forward: np.ndarray, backward: np.ndarray, blur: int = 0) -> np.ndarray:
    """How reliable each pixel of the forward flow is, (H, W) float32 in [0, 1] (1: reliable), from the
    forward (a → b) and backward (b → a) flows of one pair: a pixel whose round trip x → x + F(x) → back
    by B does not come home (an occlusion, or a wrong match), or whose match lies outside the frame, is 0.
    Blurred by a Gaussian of radius `blur` pixels (0: a hard mask), so a masked flow has no seams."""
    if forward.ndim != 3 or forward.shape[2] != 2:
        raise RenderError(f"consistency check of a flow of shape {forward.shape}, not (H, W, 2)",
                          "this is a bug in dfm: please report it")
    h, w = forward.shape[:2]
    _check_flow(backward, h, w)
    blur = int(blur)
    if not 0 <= blur <= 64:
        raise RenderError(f"consistency blur of {blur} pixels; it must be 0 to 64", "check hybrid_consistency_blur")
    fwd, bwd = forward.astype(np.float32), backward.astype(np.float32)
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    tx, ty = xs + fwd[..., 0], ys + fwd[..., 1]
    back = cv2.remap(bwd, tx, ty, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    error = np.square(fwd + back).sum(axis=-1)
    tolerance = CONSISTENCY_ALPHA * (np.square(fwd).sum(axis=-1) + np.square(back).sum(axis=-1)) + CONSISTENCY_BETA
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    mask = ((error <= tolerance) & inside).astype(np.float32)
    if blur > 0:
        mask = cv2.GaussianBlur(mask, (2 * blur + 1, 2 * blur + 1), 0)
    return mask


def flow_tween(older: Tensor, newer: Tensor, flow: np.ndarray | Tensor, weight: float, factor: float = 1.0) -> Tensor:
    """A cadence tween at `weight` along the flow from `older` to `newer` (module convention): the older
    image pushed forward by weight·factor·flow, the newer pulled back by (1 − weight)·factor·flow, then
    cross-faded (1 − weight)·older' + weight·newer'. With factor 1 both put moving content at the same
    in-between place, so it travels instead of ghosting; factor 0 is the plain cross-fade."""
    weight, factor = float(weight), _check_factor(factor)
    older = warp_by_flow(older, flow, weight * factor)
    newer = warp_by_flow(newer, flow, -(1.0 - weight) * factor)
    return torch.lerp(older, newer, weight)


# ---- the cache ----------------------------------------------------------------------------------------------


def frame_key(frame: np.ndarray) -> bytes:
    """A content hash of an image (shape and bytes)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(frame.shape).encode())
    digest.update(np.ascontiguousarray(frame).tobytes())
    return digest.digest()


class FlowCache:
    """Flows by (method, content of a, content of b), the least recently used dropped past `max_bytes`.

    Keys are content hashes, so a hit is the flow `estimate` would compute again: the cache can never change
    a frame, only save the time (a resumed or replayed render in the same process measures nothing twice).
    The arrays handed out are read-only, since they are shared."""

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        self.max_bytes = int(max_bytes)
        self._flows: OrderedDict[tuple[str, bytes, bytes], np.ndarray] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._flows)

    def flow(self, a: np.ndarray, b: np.ndarray, method: str,
             estimate: Callable[[np.ndarray, np.ndarray, str], np.ndarray] = estimate_flow) -> np.ndarray:
        """The flow from `a` to `b` by `method`, from the cache or from `estimate(a, b, method)`."""
        key = (method, frame_key(check_frame(a, "first frame")), frame_key(check_frame(b, "second frame")))
        found = self._flows.get(key)
        if found is not None:
            self._flows.move_to_end(key)
            self.hits += 1
            return found
        self.misses += 1
        flow = estimate(a, b, method)
        flow.flags.writeable = False
        if flow.nbytes <= self.max_bytes:
            self._flows[key] = flow
            self._bytes += flow.nbytes
            while self._bytes > self.max_bytes:
                _, dropped = self._flows.popitem(last=False)
                self._bytes -= dropped.nbytes
        return flow


@lru_cache(maxsize=1)
def shared_cache() -> FlowCache:
    """The process's flow cache (256 MiB: 128 flows at 512x512), shared by the renders it runs, so a render
    resumed or replayed in the same process reuses the flows it measured. Safe to share because its keys
    are the frames' contents."""
    return FlowCache()


__all__ = ["FLOW_METHODS", "FlowCache", "check_frame", "consistency_mask", "estimate_flow", "flow_tween",
           "frame_key", "load_raft", "raft_weights_path", "shared_cache", "to_uint8", "warp_by_flow"]
