"""Camera motion as pure functions of a frame tensor and one FrameTable row.

Frames are float32 tensors (1, 3, H, W) in [0, 1] on the render device. The motion maths (the 2D
matrices, the perspective flip, the 3D camera pose) live in runtime/camera.py, numpy only, shared with
the motion preview; this module applies them with `grid_sample` on the device and re-exports camera's
names, so `from .warp import matrix_2d` keeps working.

Nothing here waits for the device: the pixel grids are made once per size and device and cached, and
the per-frame matrices (a few floats from the host) go up through pinned memory without blocking (a copy
from pageable memory would wait for every kernel queued before it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .camera import (  # noqa: F401 - re-exported: the renderer, the tests and the benchmarks import them from here
    BORDERS,
    DEPTH_MIN,
    PADDING_MODES,
    SAMPLING_MODES,
    TRANSLATION_SCALE,
    camera_3d,
    is_still_3d,
    matrix_2d,
    perspective_flip,
    rotation_xyz,
    rotation_zoom,
)

# ---- device constants -----------------------------------------------------------------------------------


def to_device(values: np.ndarray, device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
    """A small host array on `device`: on CUDA through pinned memory, non-blocking (the values are cast on
    the host either way, so the result is the same)."""
    host = torch.as_tensor(np.asarray(values), dtype=dtype)
    if device.type == "cuda":
        return host.pin_memory().to(device, non_blocking=True)
    return host.to(device)


@lru_cache(maxsize=8)
def _pixel_points(h: int, w: int, device: torch.device) -> Tensor:
    """(H, W, 3) homogeneous pixel coordinates (x, y, 1), float32: warp_matrix's destination pixels."""
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=torch.float32),
        torch.arange(w, device=device, dtype=torch.float32),
        indexing="ij",
    )
    return torch.stack([xs, ys, torch.ones_like(xs)], dim=-1)


@lru_cache(maxsize=8)
def _view_points(h: int, w: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """(x, y) of offsets_3d's points, linspace(-1, 1) across each side, flattened."""
    ys, xs = torch.meshgrid(
        torch.linspace(-1.0, 1.0, h, device=device), torch.linspace(-1.0, 1.0, w, device=device), indexing="ij"
    )
    return xs.flatten(), ys.flatten()


@lru_cache(maxsize=8)
def _identity_grid(h: int, w: int, device: torch.device) -> Tensor:
    """affine_grid of the identity (1, H, W, 2), align_corners=False: warp_3d's undisplaced sample points."""
    identity = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], device=device)
    return F.affine_grid(identity, [1, 1, h, w], align_corners=False)


# ---- applying a matrix ----------------------------------------------------------------------------------


def warp_matrix(frame: Tensor, matrix: np.ndarray, border: str = "replicate") -> Tensor:
    """Resample `frame` (N, C, H, W) through the forward 3×3 pixel matrix `matrix`, bilinear, like
    cv2.warpPerspective(frame, matrix, (W, H)) with the matching border mode."""
    if border not in BORDERS:
        raise ValueError(f"border must be one of {BORDERS}, not {border!r}")
    _, _, h, w = frame.shape
    # float32 on the device (MPS has no float64); sub-1e-3 pixel error at 4096 px
    inv = to_device(np.linalg.inv(matrix), frame.device)
    pts = _pixel_points(h, w, frame.device) @ inv.T  # destination pixel -> source pixel
    sx, sy = pts[..., 0] / pts[..., 2], pts[..., 1] / pts[..., 2]
    src = frame
    if border == "wrap":
        # grid_sample cannot wrap: fold the coordinates into the image and pad it circularly by one pixel
        # so the bilinear taps across the seam read the opposite edge
        sx, sy = torch.remainder(sx, w) + 1, torch.remainder(sy, h) + 1
        src = F.pad(frame, (1, 1, 1, 1), mode="circular")
        w_src, h_src = w + 2, h + 2
    else:
        w_src, h_src = w, h
    # normalised coordinates for align_corners=False: pixel i covers [i - 0.5, i + 0.5]
    grid = torch.stack([(2 * sx + 1) / w_src - 1, (2 * sy + 1) / h_src - 1], dim=-1).to(frame.dtype)
    grid = grid.unsqueeze(0).expand(frame.shape[0], -1, -1, -1)
    padding = {"replicate": "border", "wrap": "border", "reflect": "reflection", "zeros": "zeros"}[border]
    return F.grid_sample(src, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def warp_2d(
    frame: Tensor, row: Mapping[str, object], *, border: str = "replicate", flip: bool = False
) -> Tensor:
    """Deforum's 2D motion of one frame (angle, zoom, translation, centre, optional perspective flip)."""
    _, _, h, w = frame.shape
    return warp_matrix(frame, matrix_2d(row, w, h, flip), border)


# ---- 3D: Deforum's transform_image_3d (pytorch3d FoV cameras, re-derived in plain torch) ------------------


def _project(points: Tensor, tan_half_fov: float, aspect: float) -> Tensor:
    """FoVPerspectiveCameras' projection of view-space points (N, 3), x and y only: x / (tan·ar·z),
    y / (tan·z). Its z row (the only place znear/zfar enter) is discarded by Deforum, so it is not computed."""
    z = points[:, 2]
    return torch.stack([points[:, 0] / (tan_half_fov * aspect * z), points[:, 1] / (tan_half_fov * z)], dim=1)


def offsets_3d(depth: Tensor, rotation: np.ndarray, translation: np.ndarray, fov: float, aspect: float = 1.0) -> Tensor:
    """Screen-space motion (H, W, 2) of every pixel when the camera moves by (rotation, translation).

    The points are x = linspace(-1, 1, W), y = linspace(-1, 1, H), z = depth; the old camera sits at the
    origin, the new one maps a point X (row vector) to X·R + T. The offset is the difference of the two
    projections, in grid_sample's normalised units (xy_new − xy_old, as Deforum). camera.screen_offsets is
    the same on the host in numpy (the motion preview's)."""
    h, w = depth.shape
    dev = depth.device
    xs, ys = _view_points(h, w, dev)
    z = depth.to(torch.float32).clamp_min(DEPTH_MIN)
    pts = torch.stack([xs, ys, z.flatten()], dim=1)
    r = to_device(rotation, dev)
    t = to_device(translation, dev)
    tan_half = math.tan(math.radians(fov) / 2)
    moved = pts @ r + t
    # a point the new camera sees behind itself has no image; push it far outside the grid so the padding
    # mode fills it instead of a mirrored projection
    behind = moved[:, 2] <= DEPTH_MIN
    xy_new = _project(torch.where(behind[:, None], pts, moved), tan_half, aspect)
    xy_new = torch.where(behind[:, None], torch.full_like(xy_new, 1e6), xy_new)
    return (xy_new - _project(pts, tan_half, aspect)).reshape(h, w, 2)


def warp_3d(
    frame: Tensor,
    depth: Tensor | None,
    row: Mapping[str, object],
    *,
    padding_mode: str = "border",
    sampling_mode: str = "bicubic",
) -> Tensor:
    """Deforum's 3D camera motion of one frame (transform_image_3d): every pixel at its depth (or at z = 1
    without a depth map) is seen from a camera moved by the row's translation_* and rotation_3d_* with the
    row's fov, aspect ratio 1 (as in Deforum 0.7.1); `near`/`far` cannot change the result.

    `frame` is (N, 3, H, W) in [0, 1]; `depth` is (H, W) in Deforum's depth units. A camera that does not
    move returns the frame itself: grid_sample at pixel centres is off by float rounding, which repeated
    warps would accumulate."""
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, not {padding_mode!r}")
    if sampling_mode not in SAMPLING_MODES:
        raise ValueError(f"sampling_mode must be one of {SAMPLING_MODES}, not {sampling_mode!r}")
    if is_still_3d(row):
        return frame
    n, _, h, w = frame.shape
    if depth is None:
        depth = torch.ones((h, w), device=frame.device)
    elif depth.shape != (h, w):
        raise ValueError(f"depth map is {tuple(depth.shape)}, the frame is {h}×{w}")
    rotation, translation = camera_3d(row)
    offset = offsets_3d(depth, rotation, translation, float(row["fov"]))
    grid = _identity_grid(h, w, frame.device) - offset.unsqueeze(0)
    grid = grid.to(frame.dtype).expand(n, -1, -1, -1)
    out = F.grid_sample(frame, grid, mode=sampling_mode, padding_mode=padding_mode, align_corners=False)
    return out.clamp(0.0, 1.0)  # bicubic overshoots; Deforum clamps to 0..255 as well
