"""Upscaling frames with a super-resolution model: ESRGAN and its family, and any other single-image model
spandrel detects from a weights file (Real-ESRGAN, SwinIR, HAT, SPAN, Compact, …).

A finishing step (DESIGN.md): it reads frames (an image, a folder, a video, a render) and writes new files
beside them; it never changes a render's `frames/`. Three parts, each usable alone:

- the model: `load_upscaler` detects the architecture from the file, in eval mode on the chosen device.
  A .safetensors file is read as data; a pickle (.pth/.pt/.ckpt) can run code when loaded, so, as for
  Stable Diffusion checkpoints (model_source.py), it is read only with `allow_pickle`;
- one frame: `upscale_frame` runs the model tile by tile, each tile with `overlap` pixels of context on
  every side that are cut away again, so only one tile's activations live on the device at a time and the
  result is the untiled one (exactly, once the overlap covers the model's receptive field; within a
  rounding step in practice). `--scale` resizes the model's native output afterwards;
- many frames: `upscale_sequence` writes each frame as a PNG into a work folder beside the output with a
  small state file (`upscale.json`); a rerun with the same input, model and scale continues after the last
  whole PNG, and only a finished sequence becomes the output (a folder renamed, or an MP4 encoded).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..contract.files import shown, write_atomic
from .errors import RenderError
from .outdir import UPSCALED_VIDEO

PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt")  # what spandrel reads through torch.load (or TorchScript for .pt)
MODEL_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)
DEFAULT_TILE = 512  # input pixels a side: bounds the activations of one tile (benchmarks/README.md)
DEFAULT_OVERLAP = 32  # context pixels on each side of a tile: what a pixel's output mostly depends on
MIN_TILE = 32
MAX_INPUT_SIDE = 8192
MAX_OUTPUT_SIDE = 16384  # 16K: beyond it no encoder or viewer copes, and one frame would be 768 MB of RGB
MAX_SCALE = 16.0
STATE_FILE = "upscale.json"
WORK_SUFFIX = ".upscaling"  # the work folder of output OUT is OUT.upscaling, beside it


# ---- the model ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upscaler:
    """A loaded super-resolution model: spandrel's descriptor, where it runs, and what it is called."""

    descriptor: object  # spandrel.ImageModelDescriptor (spandrel is imported only when a model loads)
    device: torch.device
    dtype: torch.dtype
    path: Path

    @property
    def scale(self) -> int:
        return int(self.descriptor.scale)

    @property
    def name(self) -> str:
        tags = " ".join(self.descriptor.tags)
        return f"{self.descriptor.architecture.name} {self.scale}x" + (f" ({tags})" if tags else "")

    @property
    def tiles(self) -> bool:
        """False for a model that needs the whole image (spandrel's ModelTiling.INTERNAL)."""
        return self.descriptor.tiling.name != "INTERNAL"


def check_model_file(path: Path, allow_pickle: bool) -> Path:
    """`path` if it is a model file dfm may read: an existing file with a known suffix, a pickle only with
    `allow_pickle`. A RenderError saying what to do otherwise; nothing is read yet."""
    path = Path(path).expanduser()
    if not path.exists():
        raise RenderError(f"upscaler model {path} does not exist", "check the path given to --model")
    if not path.is_file():
        raise RenderError(f"upscaler model {path} is not a file", "point --model at a .safetensors or .pth file")
    suffix = path.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise RenderError(
            f"{path.name} is not an upscaler model file (it ends in {suffix or 'no suffix'!r})",
            "use a .safetensors file (or a .pth/.pt/.ckpt with --allow-pickle) of an ESRGAN-family or other "
            "super-resolution model",
        )
    if suffix in PICKLE_SUFFIXES and not allow_pickle:
        raise RenderError(
            f"{path.name} is a pickle file, which can run code when loaded",
            "convert it to .safetensors, or pass --allow-pickle if you trust the file (it is then read with "
            "spandrel's restricted unpickler)",
        )
    return path


def model_dtype(device: torch.device, supports_half: bool, supports_bf16: bool) -> torch.dtype:
    """fp16 on CUDA where the architecture allows it (half the memory and twice the speed of fp32 for the
    ESRGAN family, whose published weights are fp16-safe); else bf16 on Ampere+; else fp32."""
    if device.type == "cuda":
        if supports_half:
            return torch.float16
        if supports_bf16 and torch.cuda.get_device_capability(device)[0] >= 8:
            return torch.bfloat16
    return torch.float32


def load_upscaler(path: Path, *, allow_pickle: bool = False, device: str = "auto") -> Upscaler:
    """The super-resolution model in `path`, its architecture detected from the weights, in eval mode on
    `device` (auto: the GPU when there is one). Every failure is a RenderError naming the file."""
    from .device import pick_device

    path = check_model_file(path, allow_pickle)
    placement = pick_device(device)
    try:
        from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError
    except ImportError:
        raise RenderError("upscaling needs the spandrel package", "pip install 'spandrel>=0.4'") from None
    loader = ModelLoader(device="cpu")  # onto the device after the checks: a refused model never uses GPU memory
    try:
        state = loader.load_state_dict_from_file(path)
    except Exception as e:  # noqa: BLE001 - safetensors, torch.load and the unpickler each raise their own
        raise RenderError(
            f"{path.name} could not be read as a model file: {type(e).__name__}: {_first_line(e)}",
            "check that the file is complete and is a weights file (.safetensors, or a .pth with --allow-pickle)",
        ) from None
    try:
        descriptor = loader.load_from_state_dict(state)
    except UnsupportedModelError:
        raise RenderError(
            f"{path.name} holds no model architecture spandrel recognises",
            "use the weights of an ESRGAN-family (ESRGAN, Real-ESRGAN, BSRGAN), SwinIR, HAT, SPAN or other "
            "super-resolution model spandrel supports",
        ) from None
    except Exception as e:  # noqa: BLE001 - a state dict that matched an architecture but not its shapes
        raise RenderError(
            f"{path.name} looks like a model spandrel knows, but its weights do not fit it: {_first_line(e)}",
            "check that the file is complete and unmodified",
        ) from None
    if not isinstance(descriptor, ImageModelDescriptor) or descriptor.purpose not in ("SR", "Restoration"):
        purpose = getattr(descriptor, "purpose", "unknown")
        raise RenderError(
            f"{path.name} is a {descriptor.architecture.name} model for {purpose}, not a single-image "
            "super-resolution model",
            "use an upscaling model (ESRGAN family, SwinIR, HAT, SPAN, …)",
        )
    if descriptor.input_channels not in (1, 3) or descriptor.output_channels not in (1, 3):
        raise RenderError(
            f"{path.name} takes {descriptor.input_channels} channels and gives {descriptor.output_channels}; "
            "dfm upscales RGB (or grey) frames",
            "use a model for RGB images",
        )
    dtype = model_dtype(placement.device, descriptor.supports_half, descriptor.supports_bfloat16)
    descriptor.to(placement.device).to(dtype).eval()
    return Upscaler(descriptor, placement.device, dtype, path)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


# ---- one frame ---------------------------------------------------------------------------------------------


def output_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The size of a `width` x `height` frame upscaled `scale` times (rounded, at least one pixel)."""
    return max(1, round(width * scale)), max(1, round(height * scale))


def check_sizes(width: int, height: int, native: int, scale: float | None) -> None:
    """Refuse a frame or a scale dfm will not upscale: bounded input and output sides, 0 < scale <= 16."""
    if scale is not None and not (0 < scale <= MAX_SCALE and math.isfinite(scale)):
        raise RenderError(f"--scale {scale} is out of range", f"use a scale above 0 and at most {MAX_SCALE:g}")
    if max(width, height) > MAX_INPUT_SIDE:
        raise RenderError(f"a {width}x{height} frame is larger than dfm upscales ({MAX_INPUT_SIDE} a side)",
                          "downscale the input first")
    for factor in {native, scale or native}:
        w, h = output_size(width, height, factor)
        if max(w, h) > MAX_OUTPUT_SIDE:
            raise RenderError(
                f"upscaling {width}x{height} by {factor:g} gives {w}x{h}, more than {MAX_OUTPUT_SIDE} a side",
                "use a smaller --scale or a model with a smaller factor",
            )


def tile_size(tile: int | None) -> int | None:
    """The tile a `--tile` value asks for: None (not given) the default, 0 whole frames (None), else at
    least MIN_TILE."""
    if tile is None:
        return DEFAULT_TILE
    if tile == 0:
        return None
    if tile < MIN_TILE:
        raise RenderError(f"--tile {tile} is too small", f"use at least {MIN_TILE} pixels, or 0 for whole frames")
    return tile


def tile_spans(length: int, tile: int) -> list[tuple[int, int]]:
    """[start, end) spans of about equal length, each at most `tile`, covering 0..length (equal spans:
    no thin last tile with little context of its own)."""
    count = max(1, math.ceil(length / tile))
    return [(length * i // count, length * (i + 1) // count) for i in range(count)]


def _to_input(frame: np.ndarray, model: Upscaler) -> Tensor:
    """(H, W, 3) uint8 -> (1, C, H, W) in [0, 1] on the model's device and dtype (grey for a 1-channel model)."""
    pixels = np.ascontiguousarray(frame) if frame.flags.writeable else frame.copy()  # decoders hand out read-only
    x = torch.from_numpy(pixels).to(model.device).permute(2, 0, 1)[None].float() / 255
    if model.descriptor.input_channels == 1:
        x = (x * torch.tensor([0.299, 0.587, 0.114], device=model.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return x.to(model.dtype)


def _to_uint8(y: Tensor) -> np.ndarray:
    """(1, C, h, w) in [0, 1] -> (h, w, 3) uint8 on the host, rounded (a grey output repeated to RGB)."""
    if y.shape[1] == 1:
        y = y.expand(-1, 3, -1, -1)
    return (y[0].float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def resize(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """`frame` resized to `width` x `height`: area averaging to shrink (no aliasing), Lanczos to enlarge."""
    import cv2

    h, w = frame.shape[:2]
    if (w, h) == (width, height):
        return frame
    shrink = width * height < w * h
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LANCZOS4)


def upscale_frame(model: Upscaler, frame: np.ndarray, tile: int | None = DEFAULT_TILE,
                  overlap: int = DEFAULT_OVERLAP, scale: float | None = None) -> np.ndarray:
    """`frame` ((H, W, 3) uint8 RGB) upscaled by the model, as (H*s, W*s, 3) uint8 RGB; resized to `scale`
    times the input when `scale` differs from the model's factor.

    With `tile`, the frame is cut into tiles of at most `tile` pixels a side, run one at a time, each with
    `overlap` pixels of the frame around it as context; only the tile's own part of the output is kept.
    Tiles never see a border the whole frame does not have, so tiled and untiled agree within a rounding
    step. `tile` None (or a frame that fits in one tile, or a model that must see the whole image) runs
    the frame whole."""
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 frame, got {frame.dtype} {frame.shape}")
    if tile is not None and tile < MIN_TILE:
        raise RenderError(f"--tile {tile} is too small", f"use at least {MIN_TILE} pixels, or 0 for no tiling")
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    h, w = frame.shape[:2]
    s = model.scale
    check_sizes(w, h, s, scale)
    x = _to_input(frame, model)
    with torch.inference_mode():
        if tile is None or not model.tiles or (h <= tile and w <= tile):
            out = _to_uint8(model.descriptor(x))
        else:
            out = np.empty((h * s, w * s, 3), np.uint8)
            for y0, y1 in tile_spans(h, tile):
                for x0, x1 in tile_spans(w, tile):
                    cy, cx = max(0, y0 - overlap), max(0, x0 - overlap)
                    y = model.descriptor(x[..., cy:min(h, y1 + overlap), cx:min(w, x1 + overlap)])
                    core = y[..., (y0 - cy) * s:(y1 - cy) * s, (x0 - cx) * s:(x1 - cx) * s]
                    out[y0 * s:y1 * s, x0 * s:x1 * s] = _to_uint8(core)
    if scale is not None:
        out = resize(out, *output_size(w, h, scale))
    return out


# ---- one image ---------------------------------------------------------------------------------------------

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def read_image(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB; its size is checked from the header before it is decoded, so
    a decompression bomb is refused unread."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if max(image.size) > MAX_INPUT_SIDE:
                raise RenderError(f"{shown(path)} is {image.size[0]}x{image.size[1]}, larger than dfm upscales "
                                  f"({MAX_INPUT_SIDE} a side)", "downscale it first")
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise RenderError(f"cannot read the image {shown(path)}: {_first_line(e)}",
                          "use a PNG, JPG or WebP image") from None


def encode_image(frame: np.ndarray, suffix: str) -> bytes:
    """(H, W, 3) uint8 RGB as the bytes of a `suffix` file (.png, .jpg, …)."""
    import cv2

    from .output import encode_png

    if suffix.lower() == ".png":
        return encode_png(frame)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if suffix.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(suffix.lower(), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise RenderError(f"cannot encode a {suffix} image", "write a .png instead")
    return buf.tobytes()


def upscale_image(model: Upscaler, source: Path, out: Path, *, tile: int | None = DEFAULT_TILE,
                  overlap: int = DEFAULT_OVERLAP, scale: float | None = None, force: bool = False) -> Path:
    """The image `source` upscaled into the image file `out` (its format from its suffix), written by temp +
    rename; an existing `out` only with `force`, and never the source itself."""
    source, out = Path(source), Path(out)
    check_image_target(out, force, source)
    frame = upscale_frame(model, read_image(source), tile, overlap, scale)
    write_atomic(out, encode_image(frame, out.suffix))
    return out


def check_image_target(out: Path, force: bool, source: Path) -> None:
    """An image may be written at `out`: an image suffix, not a folder, new unless `force`, never the input."""
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise RenderError(f"the output {shown(out)} is not an image file", "name it NAME.png (or .jpg, .webp)")
    if out.is_dir():
        raise RenderError(f"the output {shown(out)} is a folder", "name the image file to write, e.g. -o out.png")
    refuse_existing(out, force, source)


def refuse_existing(out: Path, force: bool, source: Path) -> None:
    """Never write over a user's file unasked (an existing output needs `force`), nor ever over the input."""
    if not out.exists():
        return
    if source.exists() and out.samefile(source):
        raise RenderError(f"the output {shown(out)} is the input", "choose another output (-o)")
    if not force:
        raise RenderError(f"{shown(out)} already exists; dfm does not write over it unless told to",
                          "choose another output (-o), or pass --force to replace it")


# ---- many frames: the work folder and resume ---------------------------------------------------------------


def work_folder(out: Path) -> Path:
    """Where the frames of output `out` collect until the last one is done: `OUT.upscaling/` beside it."""
    return out.with_name(out.name + WORK_SUFFIX)


def work_frame(work: Path, index: int) -> Path:
    return work / f"{index:06d}.png"


def _read_state(work: Path) -> dict | None:
    try:
        data = json.loads((work / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("dfm_upscale") == 1 else None


def frames_done(work: Path, total: int) -> int:
    """How many frames from the first are whole PNGs in `work` (each was written by temp + rename, so a
    file there is whole; the PNG end check guards against a disk that lied)."""
    from .record import png_complete

    done = 0
    while done < total and png_complete(work_frame(work, done)):
        done += 1
    return done


def open_work(work: Path, fingerprint: dict, total: int) -> int:
    """Make or reuse the work folder of a job with `fingerprint`; return how many frames are already done.

    An earlier run's folder with the same fingerprint continues; one of another job (other input, model or
    scale) is emptied of its frames first. A folder that is not a dfm work folder is refused: its files are
    someone else's."""
    if work.exists():
        state = _read_state(work) if work.is_dir() else None
        if state is None:
            raise RenderError(f"{shown(work)} exists and is not a dfm upscale work folder",
                              "move it away, or choose another output (-o): dfm keeps frames there while it works")
        if state.get("fingerprint") == fingerprint and state.get("frames") == total:
            return frames_done(work, total)
        clear_work(work, keep_folder=True)
    work.mkdir(parents=True, exist_ok=True)
    state = {"dfm_upscale": 1, "fingerprint": fingerprint, "frames": total}
    write_atomic(work / STATE_FILE, json.dumps(state, indent=1) + "\n")
    return 0


def _ours(name: str) -> bool:
    """A file dfm writes in a work folder: a frame NNNNNN.png, the state, or a temp or staged file."""
    return (name.endswith(".png") and name[:-4].isdigit()) or name == STATE_FILE or (
        name.startswith(".") and name.endswith((".tmp", ".rename")))


def clear_work(work: Path, keep_folder: bool = False) -> None:
    """Remove the files dfm wrote in a work folder (and then the folder, if that empties it): a stray file of
    the user's survives, and keeps the folder."""
    for p in work.iterdir():
        if _ours(p.name):
            p.unlink(missing_ok=True)
    if not keep_folder:
        try:
            work.rmdir()
        except OSError:
            pass


def upscale_sequence(model: Upscaler, frames: Iterator[np.ndarray], work: Path, *, start: int, total: int,
                     tile: int | None = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP, scale: float | None = None,
                     progress: Callable[[int, int], None] | None = None) -> None:
    """Upscale frames `start`..`total`-1 (`frames` yields them from `start` on) into `work`, a PNG each.

    Each PNG is encoded and written (temp + rename) on one helper thread while the model runs on the next
    frame; at most one write is pending, so memory stays at two frames. A kill at any point leaves only
    whole frames for the rerun to keep."""
    from concurrent.futures import Future, ThreadPoolExecutor

    from .output import encode_png

    def write(index: int, frame: np.ndarray) -> None:
        write_atomic(work_frame(work, index), encode_png(frame))

    if progress is not None:
        progress(start, total)
    pending: Future | None = None
    with ThreadPoolExecutor(1, thread_name_prefix="dfm-upscale-writer") as pool:
        for index in range(start, total):
            frame = next(frames, None)
            if frame is None:
                raise RenderError(f"the input ended after {index} of {total} frames", "check that it is whole")
            result = upscale_frame(model, frame, tile, overlap, scale)
            if pending is not None:
                pending.result()  # raises the write's error, if any
                if progress is not None:
                    progress(index, total)
            pending = pool.submit(write, index, result)
        if pending is not None:
            pending.result()
    if progress is not None:
        progress(total, total)


def work_frames(work: Path, total: int) -> Iterator[np.ndarray]:
    """The finished frames of a work folder, in order, as (H, W, 3) uint8 RGB."""
    from .output import read_png

    for index in range(total):
        yield read_png(work_frame(work, index))


def frame_names(files: tuple[Path, ...], count: int) -> list[str]:
    """The names of the output frames: the input's own (as .png) when a folder of frames gave them and they
    stay distinct, else NNNNN.png like a render's frames."""
    names = [p.stem + ".png" for p in files]
    if len(names) == count and len(set(names)) == count:
        return names
    return [f"{i:05d}.png" for i in range(count)]


def publish_folder(work: Path, out: Path, names: list[str]) -> Path:
    """The finished work folder's frames as the folder `out`, frame i named `names[i]`. A new `out` is the
    work folder renamed (the frames appear all at once); an existing one (--force) gets the frames moved in,
    over files of the same names, and keeps its other files."""
    if out.exists():
        for index, name in enumerate(names):
            os.replace(work_frame(work, index), out / name)
        clear_work(work)
        return out
    # two steps, as a name may be another frame's NNNNNN.png; the state goes last, so a run killed in between
    # still owns the folder (and redoes the frames it no longer finds under their numbers)
    staged = [work / f".{i:06d}.rename" for i in range(len(names))]
    for index, tmp in enumerate(staged):
        os.replace(work_frame(work, index), tmp)
    for tmp, name in zip(staged, names, strict=True):
        os.replace(tmp, work / name)
    (work / STATE_FILE).unlink()
    os.replace(work, out)
    return out


@dataclass(frozen=True)
class Finished:
    """What `upscale_clip` wrote: the output, its frame count, the frames an earlier run had done, and a
    warning ("" when none: e.g. a soundtrack ffmpeg could not add)."""

    path: Path
    frames: int
    resumed: int
    warning: str = ""


def check_folder_target(out: Path, force: bool, source: Path) -> None:
    """A folder of frames may be written at `out`: not a file, not the input folder, and new unless `force`."""
    if out.exists() and not out.is_dir():
        raise RenderError(f"the output {shown(out)} is a file, not a folder",
                          "name a new folder with -o, or NAME.mp4 for a video")
    if out.exists() and source.exists() and out.samefile(source):
        raise RenderError(f"the output {shown(out)} is the input folder", "choose another output (-o)")
    refuse_existing(out, force, source)


def check_clip_target(clip, out: Path, force: bool) -> bool:
    """Whether `out` is a video (NAME.mp4) or else a folder of frames, once it is known dfm may write it
    there (never over the input, an existing output only with `force`): checked before a model loads."""
    from . import clips

    out = Path(out).expanduser()
    if out.suffix.lower() == ".mp4":
        clips.check_target(out, force, inputs=[clip.path, *clip.files])
        return True
    check_folder_target(out, force, clip.path)
    return False


def upscale_clip(model: Upscaler, clip, out: Path, *, tile: int | None = DEFAULT_TILE,
                 overlap: int = DEFAULT_OVERLAP, scale: float | None = None, force: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> Finished:
    """Every frame of `clip` (runtime/clips.py's Clip) upscaled into `out`: an MP4 with the clip's soundtrack
    when `out` ends in .mp4, else a folder of PNGs. Resumable: the frames collect in `work_folder(out)`, and
    a rerun of the same job continues there; `out` appears only when every frame is done."""
    from . import clips

    out = Path(out).expanduser()
    video = check_clip_target(clip, out, force)
    size = output_size(clip.width, clip.height, scale or model.scale)
    check_sizes(clip.width, clip.height, model.scale, scale)
    if video and max(size) > clips.MAX_SIDE:
        raise RenderError(f"the upscaled video would be {size[0]}x{size[1]}, more than {clips.MAX_SIDE} a side",
                          "use a smaller --scale, or write a folder of PNGs (-o FOLDER)")
    work = work_folder(out)
    start = open_work(work, job_fingerprint(clip, model, scale), clip.count)
    upscale_sequence(model, clip.frames(start), work, start=start, total=clip.count, tile=tile, overlap=overlap,
                     scale=scale, progress=progress)
    if not video:
        return Finished(publish_folder(work, out, frame_names(clip.files, clip.count)), clip.count, start)
    written = clips.write_video(out, work_frames(work, clip.count), clip.fps, audio=clip.audio, force=force,
                                count=clip.count)
    clear_work(work)
    return Finished(written.path, written.frames, start, written.warning)


def job_fingerprint(clip, model: Upscaler, scale: float | None) -> dict:
    """What a rerun must match to continue a work folder: the input (its files' names, sizes and times), the
    model's bytes and the scale. Not the tile size: tiled and untiled frames agree."""
    from .hashing import cached_sha256

    return {"input": clip.stamp(), "model_sha256": cached_sha256(model.path), "scale": scale}


# ---- the finishing step of a render ------------------------------------------------------------------------



def finish_upscale(render_dir: Path, model: Path, scale: float | None, tile: int | None, allow_pickle: bool, *,
                   device: str = "auto", progress: Callable[[int, int], None] | None = None) -> Path:
    """Upscale a finished render's frames into `render_dir/video_upscaled.mp4`, with the render's soundtrack;
    `frames/` and `video.mp4` are left as they are. `scale` None keeps the model's factor; `tile` reads as
    `dfm upscale --tile`: None for the default (DEFAULT_TILE), 0 for whole frames. The file is the render's
    own, so a newer run replaces it; an interrupted one continues from its work folder
    (`video_upscaled.mp4.upscaling/`)."""
    from .clips import open_clip

    render_dir = Path(render_dir)
    tile = tile_size(tile)
    clip = open_clip(render_dir)
    upscaler = load_upscaler(Path(model), allow_pickle=allow_pickle, device=device)
    return upscale_clip(upscaler, clip, render_dir / UPSCALED_VIDEO, tile=tile, scale=scale, force=True,
                        progress=progress).path
