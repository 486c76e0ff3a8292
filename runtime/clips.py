"""Clips for the finishing steps (`dfm interpolate`, `dfm upscale`): reading frames from a video, a folder of
images or a dfm render folder, and writing frames to an MP4 with the clip's soundtrack.

An input is one of:
- a video file (anything ffmpeg decodes): its frames and frame rate, its own audio as the soundtrack;
- a folder of PNG/JPG images, in natural name order (`f2.png` before `f10.png`; zero-padded names sort the
  same either way), at `fps` (default DEFAULT_FOLDER_FPS), without sound;
- a dfm render folder (manifest.json, frames/NNNNN.png): the frames the manifest counts, at the table's fps
  (the manifest's `fps`), and the audio of its video.mp4 when it has some: that track is already the scene's
  `audio` cut from `audio_offset` to the render's length, so it stays in sync without reading the scene.

Frames are RGB uint8 (H, W, 3) numpy arrays, read one at a time (a long clip costs no memory), every one the
size of the first. Writing goes through runtime/encoder.py's VideoEncoder (H.264, bit-exact flags: the same
frames give the same file) to a temporary name, renamed when complete; an existing file is refused unless
the caller passes `force`. No torch here.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..contract import media
from ..contract.files import kind_of, read_limited, shown
from .encoder import Soundtrack, VideoEncoder, temp_paths
from .errors import RenderError

MAX_SIDE = 8192  # the largest frame side a finishing step reads or writes
MIN_SIDE = 16  # optical flow's pyramids need a few pixels per level (runtime/flow.py)
MAX_FRAMES = 1_000_000  # ~9 hours at 30 fps: anything longer is a mistake, not a clip
MAX_FPS = 1000.0
DEFAULT_FOLDER_FPS = 15.0  # a folder of images says nothing about its rate: Deforum's default fps
DEFAULT_CRF = 17  # the catalogue's video_crf default: what a render's video.mp4 uses
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
MANIFEST_LIMIT = 64 << 20  # a manifest holds the scene text and the timings: tens of KiB, never this


@dataclass(frozen=True)
class Clip:
    """A clip to read: where its frames come from, how many, their size and rate, and its soundtrack."""

    kind: str  # "video", "folder" or "render"
    path: Path  # the video file, or the folder
    fps: float
    count: int
    width: int
    height: int
    audio: Path | None  # a media file whose first audio stream is the clip's soundtrack, else None
    files: tuple[Path, ...] = ()  # the frame files of a folder or a render, in order

    def frames(self, start: int = 0) -> Iterator[np.ndarray]:
        """The frames from `start` on, RGB uint8 (H, W, 3), one at a time."""
        return read_frames(self, start)

    def stamp(self) -> str:
        """A short hash of what the clip is made of (each file's name, size and modification time): a finishing
        step's saved progress belongs to one stamp, and a changed input starts it over."""
        digest = hashlib.sha256(f"{self.kind}|{self.count}|{self.fps!r}|{self.width}x{self.height}".encode())
        for p in self.files or (self.path,):
            st = p.stat()
            digest.update(f"|{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
        return digest.hexdigest()[:32]


# ---- opening --------------------------------------------------------------------------------------------------


def open_clip(path: str | Path, fps: float | None = None) -> Clip:
    """The clip at `path`: a video file, a dfm render folder or a folder of images (see the module). `fps` sets
    the rate of a folder of images (default DEFAULT_FOLDER_FPS) and overrides that of a render folder; a video
    keeps its own (an `fps` for a video is a RenderError, not silently ignored). Everything is checked here,
    before any frame is read: a missing input, no frames, a frame side outside MIN_SIDE..MAX_SIDE, too many
    frames."""
    path = Path(path).expanduser()
    if fps is not None:
        fps = check_fps(fps)
    kind = kind_of(path)
    if kind is None:
        raise RenderError(f"the input {shown(path)} does not exist",
                          "name a video file, a folder of PNG/JPG frames or a dfm render folder")
    if kind == "other":
        raise RenderError(f"the input {shown(path)} is not a regular file or folder (a pipe or a device)",
                          "save the video to a file and name that")
    if kind == "file":
        if fps is not None:
            raise RenderError(f"--fps {fps:g} is for a folder of frames; {shown(path)} is a video with its own rate",
                              "leave out --fps (to change a video's rate, use --slow-mo or re-encode it)")
        return _open_video(path)
    if (path / "manifest.json").is_file() or (path / "frames").is_dir():
        return _open_render(path, fps)
    return _open_folder(path, fps)


def check_fps(fps: float) -> float:
    fps = float(fps)
    if not (np.isfinite(fps) and 0 < fps <= MAX_FPS):
        raise RenderError(f"a frame rate of {fps:g} fps", f"use a rate above 0 and at most {MAX_FPS:g} fps")
    return fps


def _check_size(width: int, height: int, where: Path) -> None:
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise RenderError(f"the frames of {shown(where)} are {width}x{height}; each side must be {MIN_SIDE} to "
                          f"{MAX_SIDE} pixels", "resize the input first")


def _check_count(count: int, where: Path) -> int:
    if count < 1:
        raise RenderError(f"{shown(where)} has no frames", "name a video or a folder holding PNG/JPG frames")
    if count > MAX_FRAMES:
        raise RenderError(f"{shown(where)} has {count:,} frames, more than a clip can have ({MAX_FRAMES:,})",
                          "split it into shorter clips")
    return count


def _open_video(path: Path) -> Clip:
    try:
        meta = media.header(path)
    except media.MediaError as e:
        raise RenderError(e.message.replace(str(path), shown(path)), e.help) from None
    width, height = (int(v) for v in meta["size"])
    _check_size(width, height, path)
    try:
        fps = check_fps(meta.get("fps") or 0.0)
    except RenderError:
        raise RenderError(f"the video {shown(path)} has no usable frame rate ({meta.get('fps')!r})",
                          "re-encode it with a constant frame rate (ffmpeg -r)") from None
    try:
        count = media.count_frames(path)
    except media.MediaError as e:
        raise RenderError(e.message, e.help) from None
    return Clip("video", path, fps, _check_count(count, path), width, height, path if has_audio(path) else None)


_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key putting `f2` before `f10`: digit runs compare as numbers, the rest as (case-folded) text."""
    return tuple((0, int(part), part) if part.isdigit() else (1, 0, part.casefold())
                 for part in _DIGITS.split(name) if part)


def _image_size(path: Path) -> tuple[int, int]:
    image = _read_image(path)
    return image.shape[1], image.shape[0]


def _open_folder(path: Path, fps: float | None) -> Clip:
    try:
        files = sorted((p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and p.is_file()),
                       key=lambda p: natural_key(p.name))
    except OSError as e:
        raise RenderError(f"cannot list the folder {shown(path)}: {e.strerror or e}", "check its permissions") from None
    if not files:
        raise RenderError(f"the folder {shown(path)} holds no PNG or JPG frames",
                          "name a video, a folder of .png/.jpg frames or a dfm render folder")
    _check_count(len(files), path)
    width, height = _image_size(files[0])
    _check_size(width, height, files[0])
    return Clip("folder", path, fps if fps is not None else DEFAULT_FOLDER_FPS, len(files), width, height, None,
                tuple(files))


def read_manifest(folder: Path) -> dict | None:
    """A dfm render's manifest.json in `folder`, or None when there is none; an unreadable one is a RenderError."""
    target = folder / "manifest.json"
    if not target.is_file():
        return None
    try:
        data = json.loads(read_limited(target, MANIFEST_LIMIT, "manifest", RenderError).decode("utf-8"))
    except (ValueError, RecursionError) as e:
        raise RenderError(f"{shown(target)} is not valid JSON: {e}", "render the scene again to rewrite it") from None
    if not isinstance(data, dict) or "dfm_manifest" not in data:
        raise RenderError(f"{shown(target)} is not a dfm render's manifest",
                          "name the render's frames/ folder instead, with --fps")
    return data


def _open_render(path: Path, fps: float | None) -> Clip:
    manifest = read_manifest(path)
    frames_dir = path / "frames"
    if manifest is None:
        raise RenderError(f"{shown(path)} has no manifest.json: the render is unfinished",
                          f"finish the render (run it again), or name {shown(frames_dir)} with --fps")
    count = manifest.get("frames")
    if not isinstance(count, int) or isinstance(count, bool):
        raise RenderError(f"{shown(path / 'manifest.json')} gives no frame count", "render the scene again")
    _check_count(count, path)
    files = tuple(frames_dir / f"{i:05d}.png" for i in range(count))
    missing = next((p for p in files if not p.is_file()), None)
    if missing is not None:
        raise RenderError(f"the render {shown(path)} lists {count} frames but {missing.name} is missing from frames/",
                          "render the scene again to restore its frames")
    if fps is None:
        try:
            fps = check_fps(manifest.get("fps"))
        except (RenderError, TypeError, ValueError):
            raise RenderError(f"{shown(path / 'manifest.json')} gives no usable fps ({manifest.get('fps')!r})",
                              "give the rate with --fps") from None
    width, height = _image_size(files[0])
    _check_size(width, height, files[0])
    video = path / str(manifest.get("video") or "video.mp4")
    audio = video if video.is_file() and has_audio(video) else None
    return Clip("render", path, fps, count, width, height, audio, files)


def has_audio(path: Path) -> bool:
    """Whether ffmpeg finds an audio stream in `path` (it reads the header only)."""
    import imageio_ffmpeg

    proc = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
                          capture_output=True, check=False, timeout=60)
    return re.search(r"Stream #\S+.*: Audio:", proc.stderr.decode("utf-8", "replace")) is not None


# ---- reading ------------------------------------------------------------------------------------------------


def _read_image(path: Path) -> np.ndarray:
    # IMREAD_COLOR: grey, alpha and 16-bit images all arrive as 8-bit BGR
    data = np.fromfile(path, dtype=np.uint8) if path.is_file() else None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
    if image is None:
        raise RenderError(f"cannot read the image {shown(path)}", "replace it with a valid PNG or JPG")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_frames(clip: Clip, start: int = 0) -> Iterator[np.ndarray]:
    """The frames of `clip` from `start` on, RGB uint8 (H, W, 3), one at a time; a frame of another size than the
    first, or a video shorter than counted, is a RenderError."""
    if not 0 <= start <= clip.count:
        raise ValueError(f"start {start} outside the clip's {clip.count} frames")
    if clip.kind == "video":
        yield from _video_frames(clip, start)
        return
    for p in clip.files[start:]:
        image = _read_image(p)
        if image.shape[:2] != (clip.height, clip.width):
            raise RenderError(f"{shown(p)} is {image.shape[1]}x{image.shape[0]}, the first frame "
                              f"{clip.width}x{clip.height}", "make every frame the same size")
        yield image


def _video_frames(clip: Clip, start: int) -> Iterator[np.ndarray]:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(clip.path), pix_fmt="rgb24")
    try:
        next(reader)  # the metadata
        index = 0
        for raw in reader:
            if index >= clip.count:
                break
            if index >= start:
                yield np.frombuffer(raw, dtype=np.uint8).reshape(clip.height, clip.width, 3)
            index += 1
        if index < clip.count:
            raise RenderError(f"the video {shown(clip.path)} ended at frame {index} of {clip.count}",
                              "the video is shorter than ffmpeg reported; re-encode it")
    finally:
        reader.close()  # stops ffmpeg


# ---- writing ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Written:
    """What `write_video` wrote: the file, its frame count, and a warning ("" when none)."""

    path: Path
    frames: int
    warning: str = ""


def check_target(path: Path, force: bool = False, inputs: Iterable[Path] = ()) -> Path:
    """`path` if a video may be written there: not a folder, never one of `inputs` (even with `force`), and not an
    existing file unless `force`. Nothing is changed."""
    path = Path(path).expanduser()
    kind = kind_of(path)
    if kind == "folder":
        raise RenderError(f"the output {shown(path)} is a folder", "name the video file to write, e.g. -o out.mp4")
    if kind is not None:
        for source in inputs:
            if Path(source).exists() and path.samefile(source):
                raise RenderError(f"the output {shown(path)} is the input", "choose another output name")
        if not force:
            raise RenderError(f"{shown(path)} already exists; dfm does not write over a file unless told to",
                              "choose another name, or pass --force to replace it")
    if path.suffix.lower() != ".mp4":
        raise RenderError(f"the output {shown(path)} is not an .mp4 file", "name the output NAME.mp4")
    return path


def write_video(path: Path, frames: Iterable[np.ndarray], fps: float, *, audio: Path | None = None,
                force: bool = False, crf: int = DEFAULT_CRF, count: int | None = None) -> Written:
    """`frames` (RGB uint8, all one size) as H.264 into `path` at `fps`, with the first audio stream of `audio`
    muxed from its start and cut to the video's length (`count` frames / fps: give `count` when the frames come
    from a generator; else they are counted, which needs a list). Written to a temporary name and renamed when
    complete; an existing `path` is a RenderError unless `force`. A soundtrack ffmpeg cannot add leaves the
    silent video and a warning."""
    path = check_target(path, force)
    fps = check_fps(fps)
    if count is None:
        frames = list(frames)
        count = len(frames)
    encoder: VideoEncoder | None = None
    written = 0
    try:
        for frame in frames:
            if encoder is None:
                h, w = _check_frame(frame)
                track = Soundtrack(str(audio), 0.0, count / fps) if audio is not None else None
                encoder = VideoEncoder(path, w, h, fps, int(crf), soundtrack=track)
            elif frame.shape != (h, w, 3):
                raise RenderError(f"frame {written} is {frame.shape[1]}x{frame.shape[0]}, the first {w}x{h}",
                                  "this is a bug in dfm: please report it")
            encoder.add(frame)
            written += 1
    except BaseException:
        if encoder is not None:
            encoder.abort()
        raise
    if encoder is None:
        raise RenderError(f"no frames to write to {shown(path)}", "this is a bug in dfm: please report it")
    encoder.close()
    return Written(path, written, encoder.warning.replace("video.mp4", path.name))


def _check_frame(frame: np.ndarray) -> tuple[int, int]:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise RenderError("a frame to write is not an RGB uint8 (H, W, 3) array",
                          "this is a bug in dfm: please report it")
    h, w = frame.shape[:2]
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise RenderError(f"a frame of {w}x{h} to write; each side must be at most {MAX_SIDE}",
                          "this is a bug in dfm: please report it")
    return h, w


def video_duration(path: Path) -> tuple[float, float | None]:
    """(video seconds, audio seconds or None) of a file, from ffmpeg's reading of each stream (a decode pass:
    for checks and tests, not for the hot path)."""
    import imageio_ffmpeg

    def seconds(stream: str) -> float | None:
        proc = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path),
                               "-map", f"0:{stream}:0", "-f", "null", "-"], capture_output=True, check=False,
                              timeout=600)
        times = re.findall(r"time=(\d+):(\d+):(\d+(?:\.\d+)?)", proc.stderr.decode("utf-8", "replace"))
        if proc.returncode != 0 or not times:
            return None
        h, m, s = times[-1]
        return int(h) * 3600 + int(m) * 60 + float(s)

    return seconds("v") or 0.0, seconds("a")


__all__ = ["DEFAULT_FOLDER_FPS", "MAX_FRAMES", "MAX_SIDE", "Clip", "Written", "check_fps", "check_target",
           "has_audio", "natural_key", "open_clip", "read_frames", "read_manifest", "temp_paths", "video_duration",
           "write_video"]


def output_name(times: int, slow_mo: bool) -> str:
    """The suffix of an interpolated video's name: _x2, _x2_slowmo (here, torch-free, for the command too)."""
    return f"_x{times}" + ("_slowmo" if slow_mo else "")
