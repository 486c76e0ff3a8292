"""Motion preview: the scene's camera run over a test card with no model, in seconds.

The same warp the renderer uses moves a test card frame after frame, so a user sees what the motion
schedules do (drift, zoom speed, turns, perspective flips) before spending GPU time. A fixed frame
outline and centre cross are drawn on top of every frame, unwarped, as the reference the card moves
against.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from ..table import FrameTable
from .output import VideoEncoder, to_uint8
from .warp import matrix_2d, warp_3d, warp_matrix


def motion_card(width: int, height: int) -> np.ndarray:
    """An RGB float image in [0, 1]: colour quadrants, a grid every 32 px, circles and a diagonal."""
    import cv2

    img = np.zeros((height, width, 3), np.float32)
    img[: height // 2, : width // 2] = (0.85, 0.35, 0.30)
    img[: height // 2, width // 2 :] = (0.30, 0.65, 0.35)
    img[height // 2 :, : width // 2] = (0.30, 0.40, 0.85)
    img[height // 2 :, width // 2 :] = (0.85, 0.80, 0.30)
    for x in range(0, width, 32):
        img[:, x] = 0.95
    for y in range(0, height, 32):
        img[y, :] = 0.95
    r = min(width, height)
    for k in (0.15, 0.3, 0.45):
        cv2.circle(img, (width // 2, height // 2), int(r * k), (0.05, 0.05, 0.05), max(1, r // 128))
    cv2.line(img, (0, 0), (width - 1, height - 1), (1.0, 1.0, 1.0), max(1, r // 128))
    return img


def overlay(frame: np.ndarray) -> np.ndarray:
    """The fixed reference drawn over a frame (uint8 RGB): an inset outline and the centre cross."""
    import cv2

    out = frame.copy()
    h, w = out.shape[:2]
    m = max(2, min(w, h) // 10)
    cv2.rectangle(out, (m, m), (w - 1 - m, h - 1 - m), (255, 255, 255), 1)
    cv2.line(out, (w // 2 - m // 2, h // 2), (w // 2 + m // 2, h // 2), (255, 255, 255), 1)
    cv2.line(out, (w // 2, h // 2 - m // 2), (w // 2, h // 2 + m // 2), (255, 255, 255), 1)
    return out


def preview_frames(table: FrameTable, device: str = "cpu") -> Iterator[np.ndarray]:
    """The card moved by each row's motion, as uint8 RGB frames with the reference overlay.

    The per-frame transforms are composed and the original card is warped once per frame, so the
    preview stays sharp however long the scene (warping the previous frame, as the renderer must,
    would blur the card a little more on every frame). In 3D the card is a flat plane (no depth model
    runs), warped frame after frame."""
    s = table.settings
    card = torch.from_numpy(motion_card(s.width, s.height)).permute(2, 0, 1)[None].to(device)
    frame, total = card, np.eye(3)
    for i in range(len(table)):
        if i > 0 and s.mode == "2d":  # motion applies to the previous frame; frame 0 is the card itself
            total = matrix_2d(table.row(i), s.width, s.height, bool(s.perspective_flip)) @ total
            frame = warp_matrix(card, total, s.border)
        elif i > 0 and s.mode == "3d":  # no depth model here: the card is a flat plane facing the camera
            frame = warp_3d(frame, None, table.row(i), padding_mode=s.padding_mode, sampling_mode=s.sampling_mode)
        yield overlay(to_uint8(frame).cpu().numpy())


def render_preview(table: FrameTable, out_path: Path, *, progress: Callable[[int, int], None] | None = None) -> Path:
    """Write the preview video (H.264 at the scene's fps); returns its path."""
    s = table.settings
    out_path.parent.mkdir(parents=True, exist_ok=True)
    video = VideoEncoder(out_path, s.width, s.height, float(s.fps), 23)
    try:
        for i, frame in enumerate(preview_frames(table)):
            video.add(frame)
            if progress is not None:
                progress(i + 1, len(table))
    except BaseException:
        video.abort()
        raise
    return video.close()
