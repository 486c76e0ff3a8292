"""The camera's motion as numbers: the per-frame matrices and poses of 2D and 3D mode (numpy, no torch).

One definition of the motion maths, shared by the renderer (runtime/warp.py applies it to a frame tensor
with `grid_sample` on the device) and the motion preview (runtime/preview.py applies it to a test card
with OpenCV on the host, so `dfm preview` never imports torch). The 3×3 matrices follow OpenCV's
conventions (pixel centres at integer coordinates, forward maps from source to destination), so a matrix
can be given to `cv2.warpPerspective` as it is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

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


# the row's columns each camera reads (a table without one is refused before any model loads)
COLUMNS_2D = ("angle", "zoom", "translation_x", "translation_y", "transform_center_x", "transform_center_y")
FLIP_COLUMNS = ("perspective_flip_theta", "perspective_flip_phi", "perspective_flip_gamma", "perspective_flip_fv")
COLUMNS_3D = ("translation_x", "translation_y", "translation_z", "rotation_3d_x", "rotation_3d_y", "rotation_3d_z",
              "fov")  # fov: warp.warp_3d


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


# ---- 3D: Deforum's camera pose (pytorch3d FoV cameras) -----------------------------------------------------

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


def is_still_3d(row: Mapping[str, object]) -> bool:
    return all(
        float(row[k]) == 0.0
        for k in ("translation_x", "translation_y", "translation_z", "rotation_3d_x", "rotation_3d_y", "rotation_3d_z")
    )


# ---- 3D: the per-pixel motion (numpy twin of warp.offsets_3d, for the host) --------------------------------


def screen_offsets(
    depth: np.ndarray, rotation: np.ndarray, translation: np.ndarray, fov: float, aspect: float = 1.0
) -> np.ndarray:
    """warp.offsets_3d on the host: the screen-space motion (H, W, 2) of every pixel, in grid_sample's
    normalised units, for a depth map (H, W). Same points, projection and behind-the-camera rule, written
    per coordinate over the (H, W) grid (X·R + T as three weighted sums: faster than an (N, 3) @ (3, 3)
    product in numpy); float64 here, float32 on the device (tests/test_preview.py pins the two together)."""
    h, w = depth.shape
    xs = np.linspace(-1.0, 1.0, w)[None, :]
    ys = np.linspace(-1.0, 1.0, h)[:, None]
    z = np.maximum(np.asarray(depth, dtype=np.float64), DEPTH_MIN)
    r, t = np.asarray(rotation, dtype=np.float64), np.asarray(translation, dtype=np.float64)
    mx, my, mz = (xs * r[0, j] + ys * r[1, j] + z * r[2, j] + t[j] for j in range(3))
    tan_half = math.tan(math.radians(fov) / 2)
    behind = mz <= DEPTH_MIN  # seen behind the new camera: no image there; pushed far outside the grid
    with np.errstate(divide="ignore", invalid="ignore"):
        new_x = np.where(behind, 1e6, mx / (tan_half * aspect * mz))
        new_y = np.where(behind, 1e6, my / (tan_half * mz))
    out = np.empty((h, w, 2))
    out[..., 0] = new_x - xs / (tan_half * aspect * z)
    out[..., 1] = new_y - ys / (tan_half * z)
    return out


def source_pixels(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each destination pixel samples the source, in pixels (cv2.remap's map_x, map_y, float32): the
    identity grid minus the offsets, as warp_3d hands it to grid_sample (align_corners=False). A point
    behind the camera (offset 1e6) lands far outside the frame, where the border mode fills it."""
    h, w = offsets.shape[:2]
    far = 4.0 * max(h, w)  # outside by more than a frame is outside: keeps cv2's fixed-point maps in range
    xs = np.arange(w, dtype=np.float64)[None, :] - offsets[..., 0] * (w / 2)
    ys = np.arange(h, dtype=np.float64)[:, None] - offsets[..., 1] * (h / 2)
    return np.clip(xs, -far, far).astype(np.float32), np.clip(ys, -far, far).astype(np.float32)
