"""ControlNet control images: one unit's source (video, image, folder of frames or loopback), preprocessed
and fitted to the frame, per scene frame, cached by content.

The pipeline is sd-webui-controlnet's: the preprocessor (its "module") runs on the source at
`processor_res` (short side), and its output is then fitted to the frame by the resize mode:

- just_resize: stretched to width × height;
- crop_and_resize (Deforum's "Inner Fit (Scale to Fit)"): scaled to cover the frame, centre cropped;
- resize_and_fill (Deforum's "Outer Fit (Shrink to Fit)"): scaled to fit inside the frame, centred on a
  background of the median colour of the map's border pixels (what sd-webui-controlnet pads with).

Everything up to the fitted map is numpy and OpenCV on uint8 (H, W, 3) RGB arrays, torch-free, so the
motion preview can show what a unit sees without importing torch; `ControlImages.image` moves the map to
the device. A map is computed once per distinct (source pixels, module, thresholds, resolution, size,
resize mode) and kept in a bounded LRU; a held or repeated frame costs a lookup.
"""

from __future__ import annotations

import hashlib
import warnings as py_warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..contract import media
from ..contract.controlnet import ANNOTATOR_REPO, PREPROCESSORS, Preprocessor, UnitSettings
from ..contract.table import Settings
from .errors import RenderError

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from .depth import DepthEstimator

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
MAX_SOURCE_SIDE = 16384  # a source image or video frame larger than this on either side is refused
MAX_SOURCE_PIXELS = 8192 * 8192  # … and so is one with more pixels than this (checked before decoding)
MAX_PROCESSOR_RES = 4096  # the preprocessor's working short side
MAX_WORK_PIXELS = 4096 * 4096  # the preprocessor's working image (short side processor_res, long side by aspect)
CACHE_BYTES = 256 * 2**20  # the in-memory LRU of fitted control maps (a 1024² map is 3 MiB)
SHUFFLE_CELLS = 256  # ContentShuffleDetector's noise cell size (its default `f`)


# ---- pure functions over uint8 (H, W, 3) RGB arrays -------------------------------------------------------------


def pixel_perfect_resolution(src_h: int, src_w: int, target_h: int, target_w: int, resize_mode: str) -> int:
    """sd-webui-controlnet's `pixel_perfect_resolution`: the processor resolution (short side) at which the
    preprocessed map lands on the frame's pixels one to one. Covering modes (crop_and_resize, just_resize)
    take the larger of the two scale factors, resize_and_fill the smaller."""
    k_h, k_w = target_h / src_h, target_w / src_w
    k = min(k_h, k_w) if resize_mode == "resize_and_fill" else max(k_h, k_w)
    return int(np.round(k * min(src_h, src_w)))


def hwc3(x: np.ndarray) -> np.ndarray:
    """A grey (H, W), (H, W, 1) or RGBA map as (H, W, 3) uint8 RGB (alpha composited over white, as
    controlnet-aux's HWC3 does)."""
    if x.dtype != np.uint8:
        x = np.clip(x, 0, 255).astype(np.uint8)
    if x.ndim == 2:
        x = x[:, :, None]
    c = x.shape[2]
    if c == 3:
        return x
    if c == 1:
        return np.repeat(x, 3, axis=2)
    alpha = x[:, :, 3:4].astype(np.float32) / 255.0
    return (x[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)).clip(0, 255).round().astype(np.uint8)


def colour_count(x: np.ndarray, cap: int = 256) -> int:
    """The number of distinct RGB colours in `x`, counted up to `cap` (enough to pick an interpolation)."""
    packed = (x[:, :, 0].astype(np.uint32) << 16) | (x[:, :, 1].astype(np.uint32) << 8) | x[:, :, 2]
    return min(cap, len(np.unique(packed)))


def resize_map(x: np.ndarray, width: int, height: int) -> np.ndarray:
    """A control map resized as sd-webui-controlnet's `high_quality_resize` does, less its edge thinning:
    a binary map (two colours, black and white: canny, mlsd) is resized in grey and thresholded again
    (Otsu), so edges stay hard; a map of a few flat colours (2 < colours < 200: segmentation) uses nearest
    neighbour, so no new colours appear; anything else area to shrink, bicubic to enlarge."""
    h, w = x.shape[:2]
    if (w, h) == (width, height):
        return x
    colours = colour_count(x)
    # sd-webui-controlnet tests min < 16 and max > 240 over all channels, which takes two saturated colours
    # (pure green and pure blue) for black and white; a binary map here is also grey
    binary = colours == 2 and int(x.min()) < 16 and int(x.max()) > 240 and bool((x == x[:, :, :1]).all())
    shrink = width * height < w * h
    if 2 < colours < 200:
        interpolation = cv2.INTER_NEAREST
    else:
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    y = cv2.resize(x, (width, height), interpolation=interpolation)
    if binary:
        grey = y.astype(np.float32).mean(axis=2).clip(0, 255).astype(np.uint8)
        _, grey = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        y = np.repeat(grey[:, :, None], 3, axis=2)
    return y


def border_colour(x: np.ndarray) -> np.ndarray:
    """The median colour of the map's outermost rows and columns: resize_and_fill's background, as
    sd-webui-controlnet pads (so a white-background line drawing is padded white, a depth map's far plane
    with its far colour)."""
    edges = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]], axis=0)
    return np.median(edges, axis=0).astype(np.uint8)


def fit(x: np.ndarray, width: int, height: int, resize_mode: str) -> np.ndarray:
    """`x` (H, W, 3) fitted to width × height by `resize_mode` (RESIZE_MODES; see the module docstring).

    crop_and_resize crops the source to the frame's aspect ratio first and then resizes: the same picture
    as scaling to cover and cropping (sd-webui-controlnet's order), without allocating the oversized
    intermediate an extreme aspect ratio would need."""
    h, w = x.shape[:2]
    if resize_mode == "just_resize":
        return resize_map(x, width, height)
    if resize_mode == "crop_and_resize":
        k = max(height / h, width / w)
        crop_w, crop_h = min(w, max(1, round(width / k))), min(h, max(1, round(height / k)))
        left, top = (w - crop_w) // 2, (h - crop_h) // 2
        return resize_map(x[top:top + crop_h, left:left + crop_w], width, height)
    if resize_mode == "resize_and_fill":
        k = min(height / h, width / w)
        new_w, new_h = min(width, max(1, round(w * k))), min(height, max(1, round(h * k)))
        out = np.empty((height, width, 3), np.uint8)
        out[:] = border_colour(x)
        top, left = (height - new_h) // 2, (width - new_w) // 2
        out[top:top + new_h, left:left + new_w] = resize_map(x, new_w, new_h)
        return out
    raise ValueError(f"unknown resize mode {resize_mode!r}")


def working_size(h: int, w: int, res: int) -> tuple[int, int]:
    """The size (h, w) of a source scaled so its short side is `res`, as sd-webui-controlnet's
    `resize_image_with_pad` computes it; refused when it would exceed MAX_WORK_PIXELS."""
    k = res / min(h, w)
    size = int(np.round(h * k)), int(np.round(w * k))
    if size[0] * size[1] > MAX_WORK_PIXELS:
        raise RenderError(
            f"a {w}×{h} control source at processor_res {res} needs a {size[1]}×{size[0]} working image, larger "
            f"than the {MAX_WORK_PIXELS} pixels allowed",
            "use a smaller processor_res, or a source closer to the frame's aspect ratio",
        )
    return max(1, size[0]), max(1, size[1])


def resize_with_pad(x: np.ndarray, res: int) -> tuple[np.ndarray, tuple[int, int]]:
    """sd-webui-controlnet's `resize_image_with_pad`: short side to `res` (area to shrink, bicubic to
    enlarge), then edge-padded on the right and bottom to multiples of 64; returns the padded image and the
    (h, w) to crop the processed result back to."""
    h, w = x.shape[:2]
    th, tw = working_size(h, w, res)
    if (th, tw) != (h, w):
        x = cv2.resize(x, (tw, th), interpolation=cv2.INTER_CUBIC if res > min(h, w) else cv2.INTER_AREA)
    pad_h, pad_w = -th % 64, -tw % 64
    return np.pad(x, [[0, pad_h], [0, pad_w], [0, 0]], mode="edge"), (th, tw)


def canny(x: np.ndarray, res: int, low: float, high: float) -> np.ndarray:
    """Canny edges (OpenCV) of `x` at processor resolution `res`: white edges on black, (h, w, 3)."""
    padded, (th, tw) = resize_with_pad(x, res)
    edges = cv2.Canny(padded, float(low), float(high))[:th, :tw]
    return hwc3(edges)


def invert(x: np.ndarray) -> np.ndarray:
    """255 − x (sd-webui-controlnet's invert, at the source's own size: white lines on black)."""
    return 255 - x


def thresholds(unit: UnitSettings) -> tuple[float | None, float | None]:
    """The unit's threshold_a / threshold_b, the preprocessor's defaults where unset (None if unused). A
    negative value is unset too: sd-webui-controlnet's API (and so Deforum's files) writes -1 for "default"."""
    defaults = [v for _, v in PREPROCESSORS[unit.module].thresholds] + [None, None]

    def pick(value: float | None, default: float | None) -> float | None:
        return default if value is None or value < 0 else value

    return pick(unit.threshold_a, defaults[0]), pick(unit.threshold_b, defaults[1])


def source_digest(x: np.ndarray) -> str:
    """A digest of an image's pixels and shape: the cache key of everything computed from it."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(x.shape).encode())
    h.update(np.ascontiguousarray(x).data)
    return h.hexdigest()


# ---- reading sources --------------------------------------------------------------------------------------------


def _check_size(path: Path, w: int, h: int) -> None:
    if w < 1 or h < 1 or w > MAX_SOURCE_SIDE or h > MAX_SOURCE_SIDE or w * h > MAX_SOURCE_PIXELS:
        raise RenderError(
            f"control source {path} is {w}×{h}; control sources may be at most {MAX_SOURCE_SIDE} pixels a side "
            f"and {MAX_SOURCE_PIXELS} pixels in all",
            "scale it down (the control image is fitted to the frame size anyway)",
        )


def read_image(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB; its size is checked from the header before any decoding."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            _check_size(path, *im.size)
            if im.mode.startswith("I"):  # 16-bit grey (a depth map): PIL's RGB conversion would clip it
                wide = np.asarray(im).astype(np.float64)
                arr = np.clip(np.round(wide / 257.0), 0, 255).astype(np.uint8)
            else:
                rgb = im.convert("RGBA" if "A" in im.getbands() or im.mode == "P" else "RGB")
                arr = np.asarray(rgb, dtype=np.uint8)
    except RenderError:
        raise
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        raise RenderError(f"cannot read control image {path}: {e}", "use a PNG, JPEG or WebP image") from None
    return hwc3(arr)


def _video_size(path: Path) -> tuple[int, int]:
    """(width, height) of a video's frames, read from ffmpeg's header before any frame is decoded."""
    try:
        meta = media.header(path)
    except media.MediaError as e:
        raise RenderError(e.message.replace("the video", "control video", 1), e.help) from None
    w, h = (int(v) for v in meta["size"])
    return w, h


def _select(settings: Settings, total: int) -> media.Selection:
    """Which video frames the scene's frames 0, 1, 2 … use: in video mode the frames video-input mode
    uses (extract_from_frame, every extract_nth_frame-th, up to extract_to_frame), so a control video cut
    from the same clip stays in step with it; in other modes every frame from the first."""
    if settings.mode == "video":
        return media.select(total, int(settings["extract_from_frame"]), int(settings["extract_nth_frame"]),
                            int(settings["extract_to_frame"]))
    return media.select(total, 0, 1, -1)


class FrameSource:
    """The frames of a control source (a video, an image or a folder of frames) by scene frame, as
    (H, W, 3) uint8 RGB; past its last frame it holds the last one. Only the current frame is held."""

    def __init__(self, path: str, settings: Settings, what: str) -> None:
        self.path = Path(path).expanduser()
        self.what = what  # "controlnet unit 1 source", for messages
        self._memo: tuple[int, np.ndarray, str] | None = None  # (index, pixels, digest) of the last frame read
        self._video = None
        self._image: np.ndarray | None = None
        if self.path.is_dir():
            self.kind = "folder"
            self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not self.files:
                raise RenderError(f"{what} folder {self.path} has no image files",
                                  f"put the frames there as {', '.join(sorted(IMAGE_SUFFIXES))} files")
            self.count = len(self.files)
        elif not self.path.is_file():
            raise RenderError(f"{what} {self.path} does not exist", "check the unit's vid_path")
        elif self.path.suffix.lower() in IMAGE_SUFFIXES:
            self.kind = "image"
            self._image = read_image(self.path)
            self.count = 1
        else:
            self.kind = "video"
            try:
                total = media.count_frames(self.path)
            except media.MediaError as e:
                raise RenderError(e.message, e.help) from None
            if total < 1:
                raise RenderError(f"{what} {self.path} has no video frames", "check the unit's vid_path")
            self._video_wh = _video_size(self.path)
            _check_size(self.path, *self._video_wh)
            self.selection = _select(settings, total)
            self.count = self.selection.count
            if self.count < 1:
                raise RenderError(f"{what} {self.path} has no frames from extract_from_frame on",
                                  "use a lower extract_from_frame or a longer video")

    def frame(self, i: int) -> tuple[np.ndarray, str]:
        """Scene frame i's source pixels and their digest."""
        index = min(max(i, 0), self.count - 1)
        if self._memo is not None and self._memo[0] == index:
            return self._memo[1], self._memo[2]
        if self.kind == "image":
            assert self._image is not None
            pixels = self._image
        elif self.kind == "folder":
            pixels = read_image(self.files[index])
        else:
            pixels = self._video_frame(index)
        self._memo = (index, pixels, source_digest(pixels))
        return pixels, self._memo[2]

    def _video_frame(self, row: int) -> np.ndarray:
        import torch

        from .video_input import VideoFrames

        if self._video is None:
            w, h = self._video_wh
            # the project's video reader, at the video's own size (the resize mode fits it later)
            self._video = VideoFrames(self.path, self.selection, w, h, torch.device("cpu"))
        frame = self._video.frame(row)
        return (frame[0] * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()

    def close(self) -> None:
        if self._video is not None:
            self._video.close()
            self._video = None


# ---- preprocessors ----------------------------------------------------------------------------------------------


def annotator_folder(pre: Preprocessor, annotator_dir: str | None) -> Path:
    """The folder holding all of `pre`'s weight files: annotator_dir, else a snapshot of ANNOTATOR_REPO in
    the local Hugging Face cache (never downloaded here); in either, the files may sit at the top or under
    annotator/ckpts/ (the lllyasviel/ControlNet layout). The places and layouts are the compiler's (its
    DFM407 check), so a scene that compiled finds its weights. A RenderError names any file missing and
    where to put it."""
    from ..contract.families import hub_cache_dir

    places = [Path(annotator_dir).expanduser()] if annotator_dir else []
    snaps = hub_cache_dir() / ("models--" + ANNOTATOR_REPO.replace("/", "--")) / "snapshots"
    try:
        places += sorted((p for p in snaps.iterdir() if p.is_dir()), reverse=True)
    except OSError:
        pass
    missing = list(pre.weights)
    for place in places:
        for folder in (place, place / "annotator" / "ckpts"):
            lacking = [f for f in pre.weights if not (folder / f).is_file()]
            if not lacking:
                return folder
            if len(lacking) < len(missing):
                missing = lacking
    where = f"annotator_dir ({annotator_dir}) or " if annotator_dir else ""
    files = " ".join(missing)
    them = "them" if len(missing) > 1 else "it"
    raise RenderError(
        f"the {pre.name} preprocessor needs the weight file{'s' if len(missing) > 1 else ''} {files}, not found "
        f"in {where}the local Hugging Face cache of {ANNOTATOR_REPO}",
        f"download {them} once while online: `hf download {ANNOTATOR_REPO} {files}`; or put {them} in a folder "
        "and set annotator_dir to it",
    )


def load_detector(pre: Preprocessor, annotator_dir: str | None, device: object = None) -> object:
    """The controlnet-aux detector of `pre`, its weights read from `annotator_folder` (none for the weight-free
    ones); missing weights or a missing controlnet-aux are RenderErrors."""
    folder = annotator_folder(pre, annotator_dir) if pre.weights else None
    try:
        with py_warnings.catch_warnings():  # controlnet-aux registers timm models and warns on import
            py_warnings.simplefilter("ignore")
            import controlnet_aux
    except ImportError as e:
        raise RenderError(f"the {pre.name} preprocessor needs controlnet-aux: {e}",
                          "pip install controlnet-aux (or use the canny, invert or depth preprocessor)") from None
    cls = getattr(controlnet_aux, str(pre.aux_class))
    if folder is None:
        return cls()
    try:
        detector = cls.from_pretrained(str(folder))
    except Exception as e:  # noqa: BLE001 - any failure to load third-party weights is the user's file
        raise RenderError(f"could not load the {pre.name} preprocessor's weights from {folder}: "
                          f"{media.last_line(e)}",
                          f"download {' '.join(pre.weights)} again from {ANNOTATOR_REPO}") from None
    if device is not None and hasattr(detector, "to"):  # weight-free detectors have no device
        detector = detector.to(device)
    return detector


def run_detector(detector: object, pre: Preprocessor, x: np.ndarray, res: int, a: float | None, b: float | None,
                 seed: int) -> np.ndarray:
    """A controlnet-aux detector on `x` at processor resolution `res`, as (h, w, 3) uint8. The source is
    scaled to the working size first (short side `res`): the detectors resize it there anyway, and
    LineartStandardDetector answers at its input's size, which must not be the source's (up to
    MAX_SOURCE_PIXELS)."""
    call: Callable = detector  # type: ignore[assignment]
    th, tw = working_size(*x.shape[:2], res)
    if (th, tw) != x.shape[:2]:
        x = cv2.resize(x, (tw, th), interpolation=cv2.INTER_AREA if th < x.shape[0] else cv2.INTER_CUBIC)
    if pre.aux_class == "LineartStandardDetector":  # takes no image_resolution: answers at the input's size
        return hwc3(np.asarray(call(x, detect_resolution=res, output_type="np")))
    kwargs: dict[str, object] = {"detect_resolution": res, "image_resolution": res, "output_type": "np"}
    if pre.aux_class == "MLSDdetector":
        kwargs.update(thr_v=a, thr_d=b)
    if pre.aux_class == "ContentShuffleDetector":
        # it draws its flow from numpy's global RNG: seed it from the source for a deterministic map, and
        # give the caller's RNG state back
        state = np.random.get_state()
        np.random.seed(seed)
        try:
            return hwc3(np.asarray(call(x, f=SHUFFLE_CELLS, **kwargs)))
        finally:
            np.random.set_state(state)
    return hwc3(np.asarray(call(x, **kwargs)))


def depth_control(x: np.ndarray, res: int, depth: DepthEstimator) -> np.ndarray:
    """dfm's depth model on `x` (short side scaled to `res`) as a control map: normalised to [0, 1] over
    the frame, near white (ControlNet depth models are trained on MiDaS's inverse depth)."""
    import torch

    th, tw = working_size(*x.shape[:2], res)
    small = cv2.resize(x, (tw, th), interpolation=cv2.INTER_AREA if th < x.shape[0] else cv2.INTER_CUBIC)
    frame = torch.from_numpy(small).permute(2, 0, 1)[None].float().div(255.0).to(depth.placement.device)
    raw = depth.raw(frame).float()
    near = -raw if depth.kind == "metric" else raw  # metric models give distance, the others disparity
    lo, hi = near.min(), near.max()
    norm = (near - lo) / (hi - lo).clamp_min(1e-12)
    return hwc3((norm * 255).round().to(torch.uint8).cpu().numpy())


# ---- one unit ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MapKey:
    """What a fitted control map depends on: the cache key."""

    digest: str
    module: str
    a: float | None
    b: float | None
    res: int
    width: int
    height: int
    resize_mode: str


class ControlImages:
    """One ControlNet unit's control image (and mask) for each scene frame, on the render device.

    `image(i)` is the unit's source for frame i run through its preprocessor and fitted to the frame;
    with `save_dir`, each frame's map is also written there as NNNNN.png. Maps are cached by content, so a
    still source, a held last frame or a repeated video frame is preprocessed once."""

    def __init__(
        self,
        unit: UnitSettings,
        settings: Settings,
        width: int,
        height: int,
        device: torch.device | str,
        *,
        depth: DepthEstimator | None = None,
        save_dir: Path | None = None,
        frame_count: int | None = None,
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        if unit.module not in PREPROCESSORS:
            raise RenderError(f"controlnet unit {unit.number}: unknown preprocessor {unit.module!r}",
                              f"use one of {', '.join(PREPROCESSORS)}")
        self.unit = unit
        self.pre = PREPROCESSORS[unit.module]
        self.width, self.height = int(width), int(height)
        if not (0 < self.width <= MAX_SOURCE_SIDE and 0 < self.height <= MAX_SOURCE_SIDE):
            raise RenderError(f"controlnet unit {unit.number}: a {self.width}×{self.height} frame is out of range",
                              f"frames are 1 to {MAX_SOURCE_SIDE} pixels a side")
        self.device = device
        self.depth = depth
        self.save_dir = Path(save_dir) if save_dir is not None else None
        # instead of `save_dir`: where each saved map's PNG goes, (frame, bytes) (a Ray worker returns them to
        # the driver, which writes them into the render folder)
        self.sink: Callable[[int, bytes], None] | None = None
        self.annotator_dir = settings.annotator_dir
        self.a, self.b = thresholds(unit)
        if not unit.pixel_perfect and not 1 <= unit.processor_res <= MAX_PROCESSOR_RES:
            raise RenderError(f"controlnet unit {unit.number}: processor_res {unit.processor_res} is out of range",
                              f"use 64 to {MAX_PROCESSOR_RES} (512 is sd-webui-controlnet's default)")
        name = f"controlnet unit {unit.number}"
        self.source = None if unit.loopback or unit.source is None else FrameSource(unit.source, settings,
                                                                                   f"{name} source")
        self.mask_source = None if unit.mask is None else FrameSource(unit.mask, settings, f"{name} mask")
        self._warnings: list[str] = []
        self._cache: OrderedDict[MapKey, np.ndarray] = OrderedDict()
        self._cache_used = 0
        self.cache_bytes = int(cache_bytes)
        self._detector: object | None = None
        self._on_device: tuple[MapKey | None, Tensor] | None = None  # the last map moved to the device
        self.computed = 0  # maps preprocessed (cache misses): what the cache saves shows in tests
        if frame_count is not None:
            for src in (self.source, self.mask_source):
                if src is not None and src.kind != "image" and src.count < frame_count:
                    self._hold_warning(src, frame_count)

    # ---- public --------------------------------------------------------------------------------------------

    def array(self, i: int, loopback: np.ndarray | None = None) -> np.ndarray | None:
        """Frame i's control map as (height, width, 3) uint8 RGB, or None (a loopback unit without a frame).
        `loopback` is the frame's img2img source as uint8 RGB (loopback units only)."""
        key, fitted = self._fitted(i, loopback)
        if fitted is None:
            return None
        self._save(i, fitted)
        return fitted

    def image(self, i: int, loopback: Tensor | None = None) -> Tensor | None:
        """Frame i's control image, (1, 3, H, W) float32 in [0, 1] on the device; None: no control on frame i
        (a loopback unit given no frame). Consecutive frames with the same map get the same tensor: do not
        modify it in place."""
        import torch

        if self.unit.loopback:
            if loopback is None:
                return None
            if self.pre.name in ("none", "invert") and tuple(loopback.shape[-2:]) == (self.height, self.width):
                # no host round trip for the cheap modules on a frame of the right size
                img = loopback.float().clamp(0, 1)
                img = 1.0 - img if self.pre.name == "invert" else img
                if self.save_dir is not None or self.sink is not None:
                    self._save(i, _to_uint8(img))
                return img.to(self.device)
            host = _to_uint8(loopback)
        else:
            host = None
        key, fitted = self._fitted(i, host)
        if fitted is None:
            return None
        self._save(i, fitted)
        if self._on_device is not None and self._on_device[0] == key:
            return self._on_device[1]
        t = torch.from_numpy(fitted.copy()).to(self.device)  # the cached map is read-only; torch wants its own
        t = t.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
        self._on_device = (key, t)
        return t

    def mask_array(self, i: int) -> np.ndarray | None:
        """Frame i's mask as (height, width) uint8 (255: control applies), or None without a mask."""
        if self.mask_source is None:
            return None
        pixels, digest = self._read(self.mask_source, i)
        key = MapKey(digest, "mask", None, None, 0, self.width, self.height, self.unit.resize_mode)
        return self._lookup(key, lambda: fit(pixels, self.width, self.height, self.unit.resize_mode))[:, :, 0]

    def mask(self, i: int) -> Tensor | None:
        """Frame i's mask, (1, 1, H, W) float32 in [0, 1] on the device (white: control applies), or None."""
        import torch

        m = self.mask_array(i)
        if m is None:
            return None
        return torch.from_numpy(m.copy()).to(self.device)[None, None].float().div_(255.0)

    def warnings(self) -> list[str]:
        """Things a user should know, each once: a source shorter than the scene (its last frame is held)."""
        return list(self._warnings)

    def close(self) -> None:
        for src in (self.source, self.mask_source):
            if src is not None:
                src.close()

    # ---- internals -----------------------------------------------------------------------------------------

    def _hold_warning(self, src: FrameSource, frames: int | None = None) -> None:
        what = "video frames" if src.kind == "video" else "images"
        text = (f"{src.what} {src.path.name} has {src.count} {what}"
                + (f" for {frames} scene frames" if frames is not None else "")
                + f"; frames from {src.count} on hold its last one")
        if not any(w.startswith(f"{src.what} {src.path.name} ") for w in self._warnings):
            self._warnings.append(text)

    def _read(self, src: FrameSource, i: int) -> tuple[np.ndarray, str]:
        if i >= src.count and src.kind != "image":
            self._hold_warning(src)
        return src.frame(i)

    def _fitted(self, i: int, loopback: np.ndarray | None) -> tuple[MapKey | None, np.ndarray | None]:
        if self.unit.loopback:
            if loopback is None:
                return None, None
            pixels, digest = loopback, source_digest(loopback)
        elif self.source is None:
            return None, None
        else:
            pixels, digest = self._read(self.source, i)
        res = self._processor_res(pixels)
        key = MapKey(digest, self.pre.name, self.a, self.b, res, self.width, self.height, self.unit.resize_mode)
        return key, self._lookup(key, lambda: self._compute(pixels, res, digest))

    def _processor_res(self, pixels: np.ndarray) -> int:
        if not self.unit.pixel_perfect:
            return self.unit.processor_res
        h, w = pixels.shape[:2]
        res = pixel_perfect_resolution(h, w, self.height, self.width, self.unit.resize_mode)
        return min(max(res, 1), MAX_PROCESSOR_RES)

    def _lookup(self, key: MapKey, compute: Callable[[], np.ndarray]) -> np.ndarray:
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        value = compute()
        value.setflags(write=False)  # shared by every frame that hits it
        self._cache[key] = value
        self._cache_used += value.nbytes
        while self._cache_used > self.cache_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cache_used -= old.nbytes
        return value

    def _compute(self, pixels: np.ndarray, res: int, digest: str) -> np.ndarray:
        """Preprocess and fit one source image (a cache miss)."""
        self.computed += 1
        return fit(self._preprocess(pixels, res, digest), self.width, self.height, self.unit.resize_mode)

    def _preprocess(self, x: np.ndarray, res: int, digest: str) -> np.ndarray:
        name = self.pre.name
        if name == "none":
            return x
        if name == "invert":
            return invert(x)
        if name == "canny":
            return canny(x, res, float(self.a if self.a is not None else 100.0),
                         float(self.b if self.b is not None else 200.0))
        if name == "depth":
            if self.depth is None:
                raise RenderError(f"controlnet unit {self.unit.number}: the depth preprocessor needs a depth model",
                                  "set depth_model in the scene (as 3D mode does)")
            return depth_control(x, res, self.depth)
        if self._detector is None:
            self._detector = load_detector(self.pre, self.annotator_dir, self.device)
        return run_detector(self._detector, self.pre, x, res, self.a, self.b, int(digest[:8], 16))

    def _save(self, i: int, fitted: np.ndarray) -> None:
        if self.save_dir is None and self.sink is None:
            return
        from ..contract.files import write_atomic
        from .output import encode_png
        from .record import frame_name

        if self.sink is not None:
            self.sink(i, encode_png(fitted))
        else:
            write_atomic(self.save_dir / frame_name(i), encode_png(fitted))


def _to_uint8(frame: Tensor) -> np.ndarray:
    """(1, 3, H, W) float [0, 1] on any device -> (H, W, 3) uint8 RGB on the host (rounded, as the renderer's)."""
    import torch

    return (frame[0].float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()


__all__ = [
    "ControlImages",
    "FrameSource",
    "annotator_folder",
    "canny",
    "fit",
    "invert",
    "load_detector",
    "pixel_perfect_resolution",
    "resize_map",
]
