"""Camera motion as pure functions of a frame tensor and one FrameTable row.

Frames are float32 tensors (1, 3, H, W) in [0, 1] on the render device. The 3×3 matrices follow
OpenCV's conventions (pixel centres at integer coordinates, forward maps from source to destination),
so a matrix can be checked against `cv2.warpPerspective`; the warp itself is `grid_sample` on the device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

BORDERS = ("replicate", "wrap", "reflect", "zeros")


# ---- matrices (float64 numpy: a handful of scalars per frame) ------------------------------------------


def translation(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def rotation_zoom(angle: float, zoom: float, cx: float, cy: float) -> np.ndarray:
    """Rotate by `angle` degrees counter-clockwise (as seen on screen) and scale by `zoom` about (cx, cy).

    Same matrix as cv2.getRotationMatrix2D, which Deforum uses."""
    a = zoom * math.cos(math.radians(angle))
    b = zoom * math.sin(math.radians(angle))
    return np.array([[a, b, (1 - a) * cx - b * cy], [-b, a, b * cx + (1 - a) * cy], [0.0, 0.0, 1.0]])


def _perspective_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The homography taking 4 points `src` to `dst` (what cv2.getPerspectiveTransform solves)."""
    a = np.zeros((8, 8))
    b = np.zeros(8)
    for i, ((x, y), (u, v)) in enumerate(zip(src, dst, strict=True)):
        a[2 * i] = [x, y, 1, 0, 0, 0, -u * x, -u * y]
        a[2 * i + 1] = [0, 0, 0, x, y, 1, -v * x, -v * y]
        b[2 * i], b[2 * i + 1] = u, v
    h = np.linalg.solve(a, b)
    return np.append(h, 1.0).reshape(3, 3)


def perspective_flip(
    width: int, height: int, theta: float, phi: float, gamma: float, fv: float
) -> np.ndarray:
    """Deforum's 2D perspective flip (its `warpMatrix` with scale 1, then the side-length shift).

    The image is a plane facing a camera with field of view `fv`, rotated by phi (x axis), gamma (y axis)
    and theta (z axis) in degrees; the matrix maps its corners to where the camera sees them."""
    half = math.radians(fv / 2)
    diag = math.hypot(width, height)
    side = diag / math.cos(half)
    h = diag / (2 * math.sin(half))
    near, far = h - diag / 2, h + diag / 2
    t = np.eye(4)
    t[2, 3] = -h
    p = np.zeros((4, 4))
    p[0, 0] = p[1, 1] = 1 / math.tan(half)
    p[2, 2] = -(far + near) / (far - near)
    p[2, 3] = -(2 * far * near) / (far - near)
    p[3, 2] = -1.0
    r = _rot_x(phi) @ _rot_y(gamma) @ _rot_z(theta)
    f = p @ t @ r
    corners = np.array(
        [
            [-width / 2, height / 2, 0, 1],
            [width / 2, height / 2, 0, 1],
            [width / 2, -height / 2, 0, 1],
            [-width / 2, -height / 2, 0, 1],
        ]
    )
    proj = corners @ f.T
    proj = proj[:, :2] / proj[:, 3:4]
    src = corners[:, :2] + [width / 2, height / 2]
    dst = (proj + 1) * side / 2
    m = _perspective_from_points(src, dst)
    # Deforum right-multiplies the shift that recentres the side×side canvas; at zero rotation the
    # product is the identity
    return m @ translation((width - side) / 2, (height - side) / 2)


def _rot_x(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[1, 0, 0, 0], [0, c, -s, 0], [0, s, c, 0], [0, 0, 0, 1.0]])


def _rot_y(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, 0, s, 0], [0, 1, 0, 0], [-s, 0, c, 0], [0, 0, 0, 1.0]])


def _rot_z(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])


def matrix_2d(row: Mapping[str, object], width: int, height: int, flip: bool = False) -> np.ndarray:
    """One frame's 2D motion: translate (pixels), then rotate and zoom about the transform centre, then
    the optional perspective flip. Unlike Deforum, the flip keeps the translation (Deforum passes the
    translation matrix as numpy's `out` argument and so drops it)."""
    cx = float(row["transform_center_x"]) * width
    cy = float(row["transform_center_y"]) * height
    m = rotation_zoom(float(row["angle"]), float(row["zoom"]), cx, cy)
    m = m @ translation(float(row["translation_x"]), float(row["translation_y"]))
    if flip:
        m = (
            perspective_flip(
                width,
                height,
                float(row["perspective_flip_theta"]),
                float(row["perspective_flip_phi"]),
                float(row["perspective_flip_gamma"]),
                float(row["perspective_flip_fv"]),
            )
            @ m
        )
    return m


# ---- applying a matrix ----------------------------------------------------------------------------------


def warp_matrix(frame: Tensor, matrix: np.ndarray, border: str = "replicate") -> Tensor:
    """Resample `frame` (N, C, H, W) through the forward 3×3 pixel matrix `matrix`, bilinear, like
    cv2.warpPerspective(frame, matrix, (W, H)) with the matching border mode."""
    if border not in BORDERS:
        raise ValueError(f"border must be one of {BORDERS}, not {border!r}")
    _, _, h, w = frame.shape
    # float32 on the device (MPS has no float64); sub-1e-3 pixel error at 4096 px
    inv = torch.as_tensor(np.linalg.inv(matrix), dtype=torch.float32, device=frame.device)
    ys, xs = torch.meshgrid(
        torch.arange(h, device=frame.device, dtype=torch.float32),
        torch.arange(w, device=frame.device, dtype=torch.float32),
        indexing="ij",
    )
    pts = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1) @ inv.T  # destination pixel -> source pixel
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

PADDING_MODES = ("border", "reflection", "zeros")
SAMPLING_MODES = ("bicubic", "bilinear", "nearest")
TRANSLATION_SCALE = 1.0 / 200.0  # Deforum's: translation_* of 1 moves the camera 1/200 of the view's half-width
DEPTH_MIN = 1e-2  # depths at or below 0 flip or explode the projection (Deforum does not guard); clamp here


def rotation_xyz(rx: float, ry: float, rz: float) -> np.ndarray:
    """pytorch3d's euler_angles_to_matrix(radians(rx, ry, rz), "XYZ") = Rx·Ry·Rz (angles in degrees)."""
    return _rot_x(rx)[:3, :3] @ _rot_y(ry)[:3, :3] @ _rot_z(rz)[:3, :3]


def camera_3d(row: Mapping[str, object]) -> tuple[np.ndarray, np.ndarray]:
    """The new camera's pose for one frame: R (3×3) and T (3,), as Deforum builds them. The signs make
    +translation_z fly forward, +translation_x move the content left and +translation_y move it down."""
    r = rotation_xyz(float(row["rotation_3d_x"]), float(row["rotation_3d_y"]), float(row["rotation_3d_z"]))
    t = np.array(
        [
            -float(row["translation_x"]) * TRANSLATION_SCALE,
            float(row["translation_y"]) * TRANSLATION_SCALE,
            -float(row["translation_z"]) * TRANSLATION_SCALE,
        ]
    )
    return r, t


def _project(points: Tensor, tan_half_fov: float, aspect: float) -> Tensor:
    """FoVPerspectiveCameras' projection of view-space points (N, 3), x and y only: x / (tan·ar·z),
    y / (tan·z). Its z row (the only place znear/zfar enter) is discarded by Deforum, so it is not computed."""
    z = points[:, 2]
    return torch.stack([points[:, 0] / (tan_half_fov * aspect * z), points[:, 1] / (tan_half_fov * z)], dim=1)


def offsets_3d(depth: Tensor, rotation: np.ndarray, translation: np.ndarray, fov: float, aspect: float = 1.0) -> Tensor:
    """Screen-space motion (H, W, 2) of every pixel when the camera moves by (rotation, translation).

    The points are x = linspace(-1, 1, W), y = linspace(-1, 1, H), z = depth; the old camera sits at the
    origin, the new one maps a point X (row vector) to X·R + T. The offset is the difference of the two
    projections, in grid_sample's normalised units (xy_new − xy_old, as Deforum)."""
    h, w = depth.shape
    dev = depth.device
    ys, xs = torch.meshgrid(
        torch.linspace(-1.0, 1.0, h, device=dev), torch.linspace(-1.0, 1.0, w, device=dev), indexing="ij"
    )
    z = depth.to(torch.float32).clamp_min(DEPTH_MIN)
    pts = torch.stack([xs.flatten(), ys.flatten(), z.flatten()], dim=1)
    r = torch.as_tensor(rotation, dtype=torch.float32, device=dev)
    t = torch.as_tensor(translation, dtype=torch.float32, device=dev)
    tan_half = math.tan(math.radians(fov) / 2)
    moved = pts @ r + t
    # a point the new camera sees behind itself has no image; push it far outside the grid so the padding
    # mode fills it instead of a mirrored projection
    behind = moved[:, 2] <= DEPTH_MIN
    xy_new = _project(torch.where(behind[:, None], pts, moved), tan_half, aspect)
    xy_new = torch.where(behind[:, None], torch.full_like(xy_new, 1e6), xy_new)
    return (xy_new - _project(pts, tan_half, aspect)).reshape(h, w, 2)


def is_still_3d(row: Mapping[str, object]) -> bool:
    return all(
        float(row[k]) == 0.0
        for k in ("translation_x", "translation_y", "translation_z", "rotation_3d_x", "rotation_3d_y", "rotation_3d_z")
    )


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
    identity = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], device=frame.device)
    grid = F.affine_grid(identity, [1, 1, h, w], align_corners=False) - offset.unsqueeze(0)
    grid = grid.to(frame.dtype).expand(n, -1, -1, -1)
    out = F.grid_sample(frame, grid, mode=sampling_mode, padding_mode=padding_mode, align_corners=False)
    return out.clamp(0.0, 1.0)  # bicubic overshoots; Deforum clamps to 0..255 as well
