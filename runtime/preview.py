"""Motion preview: the scene's camera run over a test card with no model, in seconds.

The renderer's motion maths (runtime/camera.py: the 2D matrices, the perspective flip, the 3D camera
pose) moves a test card frame after frame, so a user sees what the motion schedules do (drift, zoom
speed, turns, perspective flips) before spending GPU time. A fixed frame outline and centre cross are
drawn on top of every frame, unwarped, as the reference the card moves against.

The warp itself is OpenCV on the host (numpy and cv2 only: the preview never imports torch, so it starts
in a fraction of a second). cv2's interpolation differs from the renderer's `grid_sample` by rounding and
at the borders, so a preview frame can differ from the same warp on the device by a grey level or two;
the motion is the same (tests/test_preview.py compares the two).

A scene with ControlNet units shows, right of each camera frame, one panel per active unit: the control
image that unit's ControlNet will see on that frame (runtime/control_images.py, the renderer's own
code). A loopback unit sees the camera frame (what the previous frame, warped, would be); what needs a
model the preview does not run (the depth preprocessor, a controlnet-aux detector whose weights are not
downloaded) gets a labelled grey panel instead of failing the preview. torch is imported only when a unit
needs it (a video source, a controlnet-aux detector).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from ..contract import hybrid as hybrid_contract
from ..contract.controlnet import PREPROCESSORS, UnitSettings, active_units
from ..contract.files import write_atomic
from ..contract.modes import mode as mode_of
from ..contract.table import FrameTable
from .camera import camera_3d, is_still_3d, matrix_2d, screen_offsets, source_pixels
from .encoder import Soundtrack, VideoEncoder
from .errors import RenderError

# the renderer's border, padding and sampling modes as OpenCV flags (grid_sample's "reflection" with
# align_corners=False mirrors about the pixel edges: cv2's BORDER_REFLECT, edge pixel repeated)
CV2_BORDERS = {
    "replicate": cv2.BORDER_REPLICATE,
    "wrap": cv2.BORDER_WRAP,
    "reflect": cv2.BORDER_REFLECT,
    "zeros": cv2.BORDER_CONSTANT,
}
CV2_PADDING = {"border": cv2.BORDER_REPLICATE, "reflection": cv2.BORDER_REFLECT, "zeros": cv2.BORDER_CONSTANT}
CV2_SAMPLING = {"bicubic": cv2.INTER_CUBIC, "bilinear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}
STRIP_FRAMES = 6  # the contact strip: this many evenly spaced frames side by side,
STRIP_WIDTH = 160  # each this many pixels wide (the camera's part of a frame with control panels)
PANEL_GREY = 96  # the background of a placeholder panel


def motion_card(width: int, height: int) -> np.ndarray:
    """An RGB float image in [0, 1]: colour quadrants, a grid every 32 px, circles and a diagonal."""
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


def to_uint8(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) float [0, 1] -> uint8, rounded (as the renderer's output.to_uint8)."""
    return (np.clip(frame, 0.0, 1.0) * 255).round().astype(np.uint8)


def overlay(frame: np.ndarray) -> np.ndarray:
    """The fixed reference drawn over a frame (uint8 RGB): an inset outline and the centre cross."""
    out = frame.copy()
    h, w = out.shape[:2]
    m = max(2, min(w, h) // 10)
    cv2.rectangle(out, (m, m), (w - 1 - m, h - 1 - m), (255, 255, 255), 1)
    cv2.line(out, (w // 2 - m // 2, h // 2), (w // 2 + m // 2, h // 2), (255, 255, 255), 1)
    cv2.line(out, (w // 2, h // 2 - m // 2), (w // 2, h // 2 + m // 2), (255, 255, 255), 1)
    return out


def warp_card(card: np.ndarray, matrix: np.ndarray, border: str) -> np.ndarray:
    """`card` (H, W, 3) through the forward pixel matrix, bilinear: what warp.warp_matrix does on the device.
    An affine matrix (no perspective flip) takes cv2.warpAffine, the cheaper of the two."""
    h, w = card.shape[:2]
    mode = CV2_BORDERS[border]
    if np.array_equal(matrix[2], (0.0, 0.0, 1.0)):
        return cv2.warpAffine(card, matrix[:2], (w, h), flags=cv2.INTER_LINEAR, borderMode=mode)
    return cv2.warpPerspective(card, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=mode)


def warp_flat_3d(frame: np.ndarray, row, padding_mode: str, sampling_mode: str) -> np.ndarray:
    """warp.warp_3d without a depth map (the card is the plane z = 1), on the host: float32 (H, W, 3)."""
    if is_still_3d(row):
        return frame
    h, w = frame.shape[:2]
    rotation, translation = camera_3d(row)
    map_x, map_y = source_pixels(screen_offsets(np.ones((h, w)), rotation, translation, float(row["fov"])))
    out = cv2.remap(frame, map_x, map_y, CV2_SAMPLING[sampling_mode], borderMode=CV2_PADDING[padding_mode])
    return np.clip(out, 0.0, 1.0, out=out)  # bicubic overshoots; warp_3d clamps too


def preview_frames(table: FrameTable) -> Iterator[np.ndarray]:
    """The card moved by each row's motion, as uint8 RGB frames with the reference overlay."""
    for frame in camera_frames(table):
        yield overlay(frame)


def camera_frames(table: FrameTable) -> Iterator[np.ndarray]:
    """The card moved by each row's motion, as uint8 RGB frames (no overlay: what a render would warp).

    In 2D the per-frame matrices are composed and the original card is warped once per frame, so the
    preview stays sharp however long the scene (warping the previous frame, as the renderer must, would
    blur the card a little more on every frame). In 3D the card is a flat plane (no depth model runs),
    warped frame after frame as the renderer does. Modes without a camera show the card still."""
    s = table.settings
    mode = mode_of(s.mode)
    if mode.camera and hybrid_contract.uses_video(s):
        yield from hybrid_frames(table)
        return
    card = motion_card(s.width, s.height)
    card_u8 = to_uint8(card)
    frame, frame_u8, total, flip = card, card_u8, np.eye(3), bool(s.perspective_flip)
    for i in range(len(table)):
        if i == 0 or not mode.camera:  # motion applies to the previous frame; frame 0 is the card
            yield card_u8
            continue
        row = table.row(i)
        if not mode.uses_depth:
            total = matrix_2d(row, s.width, s.height, flip) @ total
            yield warp_card(card_u8, total, s.border)
        else:
            if not is_still_3d(row):  # a still camera leaves the frame as it is (warp_3d returns it)
                frame = warp_flat_3d(frame, row, s.padding_mode, s.sampling_mode)
                frame_u8 = to_uint8(frame)
            yield frame_u8


def camera_step(frame: np.ndarray, row, settings) -> np.ndarray:
    """One row's camera motion applied to the previous preview frame (uint8 RGB), as the renderer does."""
    if not mode_of(settings.mode).uses_depth:
        return warp_card(frame, matrix_2d(row, settings.width, settings.height, bool(settings.perspective_flip)),
                         settings.border)
    if is_still_3d(row):
        return frame
    return to_uint8(warp_flat_3d(frame.astype(np.float32) / 255, row, settings.padding_mode, settings.sampling_mode))


def hybrid_frames(table: FrameTable) -> Iterator[np.ndarray]:
    """The card under a scene's hybrid video, frame after frame as the renderer treats its previous frame (so
    it blurs a little more each frame, as a render's would): composited before the camera (before_motion),
    moved by the camera, then by the video's own motion (runtime/hybrid.py, the renderer's code), composited
    (normal, after_generation) on the diffused rows. No depth model runs: a depth mask composites unmasked.
    Imports torch (the video reader), as only a hybrid scene's preview must."""
    from . import hybrid as hy

    s = table.settings
    video, close = _host_video(table)
    motions = hy.Motions(hy.MotionSettings.of(s))
    cs = hy.CompositeSettings.of(s)
    border = CV2_BORDERS.get(s.border, cv2.BORDER_REPLICATE)

    def blend(frame: np.ndarray, i: int, row) -> np.ndarray:
        if cs.stage == "none" or not bool(row["diffused"]):
            return frame
        shown = hy.CompositeSettings(cs.stage, "none", cs.invert, cs.equalize, cs.auto_contrast) \
            if cs.mask in ("depth", "video_depth") else cs
        mask = hy.comp_mask(shown, row, frame, video(i))
        out = hy.composite(frame.astype(np.float32) / 255, video(i).astype(np.float32) / 255,
                           None if mask is None else mask[..., None], float(row["hybrid_comp_alpha"]))
        return to_uint8(out)

    frame = to_uint8(motion_card(s.width, s.height))
    try:
        yield frame
        for i in range(1, len(table)):
            row = table.row(i)
            if cs.stage == "before_motion":
                frame = blend(frame, i, row)
            frame = camera_step(frame, row, s)
            if motions.ms.kind != "none":
                motion = motions.between(frame if motions.ms.use_prev else video(i - 1), video(i))
                frame = hy.move_host(frame, motion, float(row["hybrid_flow_factor"]), border)
            if cs.stage in ("normal", "after_generation"):
                frame = blend(frame, i, row)
            yield frame
    finally:
        close()


def _host_video(table: FrameTable) -> tuple[Callable[[int], np.ndarray], Callable[[], None]]:
    """Frame i of a scene's hybrid video as uint8 RGB on the host: the video's selected frames (the
    renderer's reader), or the init image as a still; and how to close the reader."""
    s = table.settings
    if s.hybrid_use_init_image:
        bgr = cv2.imread(str(s.init_image))
        if bgr is None:
            raise RenderError(f"cannot read init image {s.init_image}", "use a PNG or JPEG file")
        still = cv2.cvtColor(cv2.resize(bgr, (s.width, s.height), interpolation=cv2.INTER_LANCZOS4),
                             cv2.COLOR_BGR2RGB)
        return (lambda i: still), (lambda: None)
    import torch

    from .flow import to_uint8 as tensor_to_uint8
    from .video_input import VideoFrames, video_selection

    if not s.video_init_path:
        raise RenderError("hybrid video needs an input video", 'set video_init_path "clip.mp4" in the scene')
    frames = VideoFrames(Path(str(s.video_init_path)).expanduser(), video_selection(s, len(table)), s.width,
                         s.height, torch.device("cpu"))
    memo: dict[int, np.ndarray] = {}  # frames i-1 and i: the reader only goes forward

    def frame(i: int) -> np.ndarray:
        if i not in memo:
            memo[i] = tensor_to_uint8(frames.frame(i))
            for old in [k for k in memo if k < i - 1]:
                del memo[old]
        return memo[i]

    return frame, frames.close


def label(panel: np.ndarray, lines: list[str]) -> np.ndarray:
    """`lines` written at the top left of a uint8 RGB panel, white on a dark band, small enough for 64 px."""
    out = panel.copy()
    h, w = out.shape[:2]
    scale = max(0.25, min(w, h) / 512)
    step = max(8, int(round(22 * scale)))
    thick = max(1, int(round(scale * 1.5)))
    out[: min(h, step * len(lines) + step // 3), :] //= 3
    for k, text in enumerate(lines):
        cv2.putText(out, text, (2, step * (k + 1) - step // 4), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.6,
                    (255, 255, 255), thick, cv2.LINE_AA)
    return out


def placeholder(width: int, height: int, lines: list[str]) -> np.ndarray:
    """A grey panel saying why a unit's control image is not shown."""
    return label(np.full((height, width, 3), PANEL_GREY, np.uint8), lines)


def _unit_title(unit: UnitSettings) -> str:
    return f"cn {unit.number}: {unit.module}" + (" (loopback)" if unit.loopback else "")


def _why_not_shown(unit: UnitSettings, settings) -> list[str] | None:
    """The lines of a unit's placeholder when the preview cannot show its control image, else None."""
    pre = PREPROCESSORS.get(unit.module)
    if pre is None:
        return None  # ControlImages says what is wrong
    if pre.name == "depth":
        return [_unit_title(unit), "depth model:", "not run in preview"]
    if pre.weights:
        from .control_images import annotator_folder

        try:
            annotator_folder(pre, settings.annotator_dir)
        except RenderError:
            return [_unit_title(unit), "weights missing:", *pre.weights]
    return None


class ControlPanels:
    """The control panels of a preview: one per active unit, each the scene's size, right of the camera."""

    def __init__(self, table: FrameTable) -> None:
        from .control_images import ControlImages

        s = table.settings
        self.width, self.height = s.width, s.height
        self.units = active_units(s)
        self.placeholders: dict[int, np.ndarray] = {}
        self.images: dict[int, ControlImages] = {}
        self._errors: list[str] = []  # why a unit's panel became a placeholder mid-preview
        for unit in self.units:
            why = _why_not_shown(unit, s)
            if why is not None:
                self.placeholders[unit.number] = placeholder(self.width, self.height, why)
            else:
                self.images[unit.number] = ControlImages(unit, s, self.width, self.height, "cpu",
                                                         frame_count=len(table))

    def __len__(self) -> int:
        return len(self.units)

    def panel(self, unit: UnitSettings, i: int, camera: np.ndarray) -> np.ndarray:
        """Unit `unit`'s panel on frame i; `camera` is the frame without the overlay (a loopback's source)."""
        held = self.placeholders.get(unit.number)
        if held is not None:
            return held
        try:
            img = self.images[unit.number].array(i, camera if unit.loopback else None)
        except RenderError as e:
            if PREPROCESSORS[unit.module].aux_class is None:
                raise  # a bad source or setting: the render would fail on it too
            # weights that are there but do not load: show why, once, and go on with the motion
            self.placeholders[unit.number] = placeholder(self.width, self.height,
                                                         [_unit_title(unit), "could not load", "its weights"])
            self._errors.append(e.message)
            return self.placeholders[unit.number]
        if img is None:
            return placeholder(self.width, self.height, [_unit_title(unit), "no control"])
        return label(img, [_unit_title(unit)])

    def beside(self, i: int, camera: np.ndarray) -> np.ndarray:
        """The camera frame `camera` (uint8 RGB, no overlay) with its overlay, and frame i's panels to its
        right."""
        return np.concatenate([overlay(camera), *(self.panel(u, i, camera) for u in self.units)], axis=1)

    def warnings(self) -> list[str]:
        return [w for c in self.images.values() for w in c.warnings()] + self._errors

    def close(self) -> None:
        for c in self.images.values():
            c.close()


def with_control_panels(table: FrameTable, warn: Callable[[str], None] | None = None) -> Iterator[np.ndarray]:
    """The preview frames (`preview_frames`) with each active unit's control image beside each; the same
    frames for a scene without units. A loopback unit gets the camera frame without the overlay, as a
    render's previous frame has none. `warn` hears, once the frames are done, what the units had to say (a
    source shorter than the scene holds its last frame)."""
    if not active_units(table.settings):
        yield from preview_frames(table)
        return
    panels = ControlPanels(table)
    try:
        for i, frame in enumerate(camera_frames(table)):
            yield panels.beside(i, frame)
        if warn is not None:
            for w in panels.warnings():
                warn(w)
    finally:
        panels.close()


def strip_path(video: Path) -> Path:
    """Where the contact strip of the preview `video` goes: beside it, preview.mp4 -> preview_strip.png."""
    return video.with_name(f"{video.stem}_strip.png")


def strip_picks(frames: int, count: int = STRIP_FRAMES) -> set[int]:
    """The frame indices of the contact strip: `count` evenly spaced, the first and the last included."""
    return set(np.linspace(0, frames - 1, min(count, frames)).round().astype(int).tolist()) if frames else set()


def write_strip(tiles: list[np.ndarray], path: Path, width: int = STRIP_WIDTH) -> Path:
    """`tiles` (uint8 RGB frames) scaled to `width` pixels wide, side by side, as a PNG (atomically; a new
    file follows the umask): a still of the motion that needs no video player."""
    scaled = [cv2.resize(t, (width, max(1, round(t.shape[0] * width / t.shape[1]))), interpolation=cv2.INTER_AREA)
              for t in tiles]
    ok, png = cv2.imencode(".png", cv2.cvtColor(np.concatenate(scaled, axis=1), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise OSError(f"could not encode {path}")
    write_atomic(path, png.tobytes())
    return path


def render_preview(table: FrameTable, out_path: Path, *, progress: Callable[[int, int], None] | None = None,
                   strip: Path | None = None, warn: Callable[[str], None] | None = None) -> Path:
    """Write the preview video (H.264 at the scene's fps; with ControlNet units, one control panel per unit
    right of the camera), and with `strip` its contact strip there (PNG, `STRIP_FRAMES` frames: see
    `write_strip`); returns the video's path. `warn` hears the control sources' warnings."""
    s = table.settings
    panels = 1 + len(active_units(s))  # the camera, then one control panel per unit
    out_path.parent.mkdir(parents=True, exist_ok=True)
    video = VideoEncoder(out_path, s.width * panels, s.height, float(s.fps), 23,
                         soundtrack=Soundtrack.of(s.audio, s.audio_offset, len(table), s.fps))
    picks = strip_picks(len(table)) if strip is not None else set()
    tiles = []
    try:
        for i, frame in enumerate(with_control_panels(table, warn)):
            video.add(frame)
            if i in picks:
                tiles.append(frame)
            if progress is not None:
                progress(i + 1, len(table))
    except BaseException:
        video.abort()
        raise
    path = video.close()
    if strip is not None and tiles:
        write_strip(tiles, strip, STRIP_WIDTH * panels)
    return path
