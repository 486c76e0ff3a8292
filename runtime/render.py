"""The render loop: one FrameTable in, frames/, video.mp4, table.csv and manifest.json out.

Per frame (Deforum's order): advance every live diffusion by this frame's warp; if the row is diffused,
take the newest diffusion (warped through this frame) -> colour coherence -> contrast -> unsharp mask
-> noise -> img2img with the row's strength (`effective_steps`), cfg, seed and prompt; then write the
row's blend of the older and newer diffusions (cadence). Rows are read, never recomputed.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import effects, samplers
from .device import pick_device
from .errors import RenderError
from .models import StableDiffusion, resolve_source
from .output import FrameWriter, VideoEncoder, package_versions, write_json, write_text_atomic
from .timing import StageTimer
from .warp import BORDERS, warp_2d

SUPPORTED_MODES = (
    "none",
    "2d",
    "interpolation",
)  # 3d and video: the loop has room, the sources do not exist yet
# modes whose frames each start from pure noise; the others start from the previous frame
INDEPENDENT_MODES = ("none", "interpolation")
PIXEL_NOISE_SEED_OFFSET = 2**32  # the pixel noise of a frame gets its own stream, apart from the latent noise


@dataclass
class RenderReport:
    out_dir: Path
    frames: int
    video: Path | None
    timings: dict[str, float]
    unet_calls: int
    text_encoder_calls: int
    device: str = ""
    dtype: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass
class RenderState:
    """Everything one frame hands to the next; with the table, enough to resume exactly.

    `buffers` maps the frame index of each diffusion still needed to its image warped through frame
    `at`. No random state: every draw comes from a generator seeded from the row."""

    next_frame: int = 0
    at: int = -1
    buffers: dict[int, Tensor] = field(default_factory=dict)
    color_ref: Tensor | None = None

    def newest(self, before: int | None = None) -> int | None:
        keys = [k for k in self.buffers if before is None or k < before]
        return max(keys) if keys else None


class PromptEmbeddings:
    """Text embeddings computed once per distinct text, blended per row as the table says."""

    def __init__(self, encode: Callable[[str], Tensor]) -> None:
        self._encode = encode
        self._cache: dict[str, Tensor] = {}

    def __call__(self, text: str) -> Tensor:
        if text not in self._cache:
            self._cache[text] = self._encode(text)
        return self._cache[text]

    def blended(self, text: str, from_text: object, blend: object) -> Tensor:
        w = 1.0 if blend is None else float(blend)
        if w >= 1.0 or not from_text or from_text == text:
            return self(text)
        return torch.lerp(self(str(from_text)), self(text), w)

    def for_row(self, row: Mapping[str, object], guided: bool) -> tuple[Tensor, Tensor | None]:
        cond = self.blended(str(row["prompt"]), row.get("prompt_from"), row.get("prompt_blend"))
        if not guided:
            return cond, None
        uncond = self.blended(
            str(row.get("negative_prompt") or ""), row.get("negative_prompt_from"), row.get("negative_blend")
        )
        return cond, uncond


# ---- checks before any model loads --------------------------------------------------------------------


def check_table(table) -> None:
    """Refuse what this runtime cannot render, before loading anything."""
    s = table.settings
    mode = s.get("mode", "2d")
    if mode not in SUPPORTED_MODES:
        what = {"3d": "3D mode (depth-warped camera)", "video": "video input mode"}.get(
            mode, f"mode {mode!r}"
        )
        raise RenderError(
            f"{what} is not supported by this runtime yet", "use mode 2d (or none / interpolation) for now"
        )
    if len(table) == 0:
        raise RenderError("the scene has no frames", "set frames (or duration) to at least 1")
    sampler = s.get("sampler", "euler_a")
    if sampler not in samplers.SAMPLERS:
        raise RenderError(
            f"sampler {sampler!r} is not available", "use one of " + ", ".join(samplers.SAMPLERS)
        )
    border = s.get("border", "replicate")
    if border not in BORDERS:
        raise RenderError(f"border {border!r} is not known", "use one of " + ", ".join(BORDERS))
    if s.get("color_coherence", "none") not in effects.COLOR_SPACES:
        raise RenderError(
            f"color_coherence {s.get('color_coherence')!r} is not known",
            "use one of " + ", ".join(effects.COLOR_SPACES),
        )
    init = s.get("init_image")
    if init and not Path(str(init)).is_file():
        raise RenderError(f"init image {init} does not exist", "check the path of init_image")
    width, height = s.width, s.height
    if width % 8 or height % 8:
        raise RenderError(
            f"size {width}x{height} is not a multiple of 8", "use a size like 512x512 or 768x512"
        )


def load_init_image(path: str, width: int, height: int, device: torch.device) -> Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size != (width, height):
                im = im.resize((width, height), Image.Resampling.LANCZOS)
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError) as e:
        raise RenderError(f"cannot read init image {path}: {e}", "use a PNG or JPEG file") from None
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).to(device)


def last_references(table) -> dict[int, int]:
    """For each diffusion frame, the last row that blends it (cadence) - after that its buffer can go."""
    last: dict[int, int] = {}
    cols = table.columns
    n = len(table)
    for name in ("tween_from", "tween_to"):
        if name in cols:
            for i, k in enumerate(np.asarray(cols[name]).tolist()):
                if k >= 0:
                    last[int(k)] = max(last.get(int(k), -1), i)
    for i in range(n):
        if bool(cols["diffused"][i]):
            last.setdefault(i, i)
    return last


# ---- one frame --------------------------------------------------------------------------------------------


class FrameRenderer:
    """A render in progress: the model, the prompt cache, the state and the stage timer."""

    def __init__(self, table, sd: StableDiffusion, timer: StageTimer) -> None:
        s = table.settings
        self.table = table
        self.sd = sd
        self.timer = timer
        self.device = sd.placement.device
        self.mode = s.get("mode", "2d")
        self.width, self.height = s.width, s.height
        self.sampler = s.get("sampler", "euler_a")
        self.border = s.get("border", "replicate")
        self.flip = bool(s.get("perspective_flip", False))
        self.color_space = s.get("color_coherence", "none") or "none"
        self.grayscale = bool(s.get("color_force_grayscale", False))
        self.init_image = s.get("init_image")
        self.prompts = PromptEmbeddings(sd.encode_text)
        self.state = RenderState()
        self.last_ref = last_references(table)

    def warp(self, frame: Tensor, row: Mapping[str, object]) -> Tensor:
        if self.mode == "2d":
            return warp_2d(frame, row, border=self.border, flip=self.flip)
        return frame  # modes without a camera

    def advance(self, i: int, row: Mapping[str, object]) -> None:
        """Warp every live diffusion through frame i (Deforum's cadence advances both images each frame)."""
        st = self.state
        if self.mode in INDEPENDENT_MODES or i <= st.at:
            st.at = max(st.at, i)
            return
        with self.timer("warp"):
            for k in st.buffers:
                if k < i:
                    st.buffers[k] = self.warp(st.buffers[k], row)
        st.at = i

    def prepare_init(
        self, image: Tensor, row: Mapping[str, object], noise_gen: torch.Generator, steps_run: int
    ) -> Tensor:
        """Colour coherence -> grayscale -> contrast -> unsharp -> noise on the warped previous frame."""
        st = self.state
        with self.timer("effects"):
            if self.color_space != "none":
                if st.color_ref is None:
                    st.color_ref = image  # the first warped frame is the reference, itself unmatched
                else:
                    image = effects.color_coherence(image, st.color_ref, self.color_space)
            if self.grayscale:
                image = effects.grayscale(image)
            image = effects.contrast(image, float(row["contrast"]))
            image = effects.unsharp_mask(
                image, int(row["kernel"]), float(row["sigma"]), float(row["amount"]), float(row["threshold"])
            )
            if steps_run > 0:  # with 0 steps the frame is kept as is: nothing would remove the noise
                image = effects.add_noise(image, float(row["noise"]), noise_gen)
        return image

    def diffuse(self, i: int, row: Mapping[str, object]) -> Tensor:
        """The image of diffused row i."""
        seed = int(row["seed"])
        gen = samplers.frame_generator(seed, self.device)
        steps, steps_run = int(row["steps"]), int(row["effective_steps"])
        cfg = float(row["cfg_scale"])
        source = None
        if self.mode not in INDEPENDENT_MODES:
            prev = self.state.newest(before=i)
            if prev is not None:
                noise_gen = samplers.frame_generator(seed + PIXEL_NOISE_SEED_OFFSET, self.device)
                source = self.prepare_init(self.state.buffers[prev], row, noise_gen, steps_run)
            elif self.init_image:
                source = load_init_image(str(self.init_image), self.width, self.height, self.device)
        if source is not None and steps_run < 1:
            image = source  # strength 1: keep the frame (no VAE round trip, no noise)
        else:
            with self.timer("text"):
                cond, uncond = self.prompts.for_row(row, guided=cfg != 1.0)
            scheduler = samplers.make_scheduler(self.sampler, self.sd.scheduler_config)
            spec = samplers.SAMPLERS[self.sampler]
            init_latents, shape = None, None
            if source is None:
                scale = self.sd.latent_scale
                shape = (1, int(self.sd.unet.config.in_channels), self.height // scale, self.width // scale)
            else:
                with self.timer("encode"):
                    init_latents = self.sd.encode_image(source)
            with self.timer("denoise"):
                latents = samplers.denoise(
                    self.sd.eps,
                    scheduler,
                    cond=cond,
                    uncond=uncond,
                    cfg_scale=cfg,
                    steps=steps,
                    effective_steps=steps_run,
                    generator=gen,
                    takes_generator=spec.takes_generator,
                    init_latents=init_latents,
                    shape=shape,
                )
            with self.timer("decode"):
                image = self.sd.decode_latents(latents)
        if self.grayscale:
            image = effects.grayscale(image)
        return image

    def frame(self, i: int, row: Mapping[str, object]) -> Tensor:
        """Advance the state by row i and return the frame to write."""
        st = self.state
        self.advance(i, row)
        if bool(row["diffused"]):
            st.buffers[i] = self.diffuse(i, row)
        out = self.compose(i, row)
        newest = st.newest()
        for k in [k for k in st.buffers if k != newest and self.last_ref.get(k, -1) <= i]:
            del st.buffers[k]
        st.next_frame = i + 1
        return out

    def compose(self, i: int, row: Mapping[str, object]) -> Tensor:
        """The written frame: (1 - tween)·older + tween·newer, or the newer alone."""
        st = self.state
        to = int(row.get("tween_to", -1))
        frm = int(row.get("tween_from", -1))
        tween = float(row.get("tween", 1.0))
        if to < 0:
            to = st.newest()
        if to is None or to not in st.buffers:
            raise RuntimeError(f"frame {i}: the table blends diffusion {to}, which was never rendered")
        if frm < 0 or tween >= 1.0:
            return st.buffers[to]
        if frm not in st.buffers:
            raise RuntimeError(f"frame {i}: the table blends diffusion {frm}, which was never rendered")
        with self.timer("blend"):
            return effects.blend(st.buffers[frm], st.buffers[to], tween)


# ---- the whole render -------------------------------------------------------------------------------------


def prompt_warnings(table, sd: StableDiffusion) -> list[str]:
    limit = sd.tokenizer.model_max_length
    out = []
    for text in sorted({t for pair in table.distinct_prompts() for t in pair if t}):
        n = sd.token_count(text)
        if n > limit:
            out.append(f"prompt {text[:40]!r}… is {n} tokens; the text encoder reads the first {limit}")
    return out


def _clear_old_frames(frames_dir: Path) -> None:
    for p in frames_dir.iterdir():
        if re.fullmatch(r"\d{5}\.png", p.name):
            p.unlink()


def run_render(
    table,
    sd: StableDiffusion,
    out_dir: Path,
    *,
    scene_text: str = "",
    scene_path: str = "",
    progress: Callable[[int, int], None] | None = None,
    timer: StageTimer | None = None,
) -> RenderReport:
    """Render `table` with an already resolved model (benchmarks and tests pass their own timer)."""
    check_table(table)
    s = table.settings
    timer = timer or StageTimer(sd.placement.device)
    out_dir = Path(out_dir)
    frames_dir = out_dir / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    _clear_old_frames(frames_dir)
    started = time.time()
    write_text_atomic(out_dir / "table.csv", table.to_csv())

    with timer("load"):
        for part in ("tokenizer", "text_encoder", "unet", "vae"):
            getattr(sd, part)
        _ = sd.scheduler_config
    warnings = prompt_warnings(table, sd)

    n = len(table)
    save_video = bool(s.get("save_video", True)) and s.get("mode", "2d") != "none"  # stills make no video
    video_path = out_dir / "video.mp4"
    video_path.unlink(missing_ok=True)  # a stale video would not match the new frames
    video = (
        VideoEncoder(video_path, s.width, s.height, float(s.get("fps", 15)), int(s.get("video_crf", 17)))
        if save_video
        else None
    )
    writer = FrameWriter(frames_dir, video)
    renderer = FrameRenderer(table, sd, timer)
    unet0, text0 = sd.unet_calls, sd.text_encoder_calls
    try:
        with torch.inference_mode():
            for i in range(n):
                frame = renderer.frame(i, table.row(i))
                writer.put(i, frame)
                if progress is not None:
                    progress(i + 1, n)
    except BaseException:
        writer.abort()
        raise
    with timer("write_wait"):
        video_out = writer.close()
    timer.add("write", writer.seconds)
    timer.add("write_queue_wait", writer.wait_seconds)

    report = RenderReport(
        out_dir=out_dir,
        frames=writer.written,
        video=video_out,
        timings=timer.report(),
        unet_calls=sd.unet_calls - unet0,
        text_encoder_calls=sd.text_encoder_calls - text0,
        device=str(sd.placement.device),
        dtype=str(sd.placement.dtype).replace("torch.", ""),
        warnings=warnings,
    )
    write_json(out_dir / "manifest.json", manifest(table, sd, report, scene_text, scene_path, started))
    return report


def manifest(
    table, sd: StableDiffusion, report: RenderReport, scene_text: str, scene_path: str, started: float
) -> dict:
    s = table.settings
    src = sd.source
    return {
        "dfm_manifest": 1,
        "scene": {
            "path": scene_path,
            "sha256": hashlib.sha256(scene_text.encode("utf-8")).hexdigest(),
            "text": scene_text,
        },
        "table": {
            "format_version": table.format_version,
            "rows": len(table),
            "file": "table.csv",
            "sha256": hashlib.sha256(table.to_csv().encode("utf-8")).hexdigest(),
        },
        "model": {
            "spec": src.spec,
            "kind": src.kind,
            "path": str(getattr(sd, "folder", None) or src.path or ""),
            "sha256": sd.sha256,
        },
        "mode": s.get("mode"),
        "size": [s.width, s.height],
        "fps": s.get("fps"),
        "sampler": s.get("sampler"),
        "device": report.device,
        "dtype": report.dtype,
        "frames": report.frames,
        "video": report.video.name if report.video else None,
        "unet_calls": report.unet_calls,
        "text_encoder_calls": report.text_encoder_calls,
        "timings": report.timings,
        "warnings": report.warnings,
        "versions": package_versions(),
        "started": _dt.datetime.fromtimestamp(started, _dt.timezone.utc).isoformat(timespec="seconds"),
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def render(
    table,
    out_dir: Path,
    *,
    scene_text: str = "",
    scene_path: str = "",
    model: str | None = None,
    device: str = "auto",
    allow_pickle: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> RenderReport:
    """Render a compiled scene into `out_dir` (frames/, video.mp4, table.csv, manifest.json).

    `model` overrides the scene's model (the scene's sha256 then no longer applies). Errors the user can
    fix raise RenderError."""
    check_table(table)
    s = table.settings
    placement = pick_device(device)
    timer = StageTimer(placement.device)
    scene_model = s.get("model")
    spec = model or scene_model
    if not spec:
        raise RenderError("no model given", "set `model` in the scene or pass --model")
    sha = s.get("model_sha256") if (model is None or model == scene_model) else None
    base_dirs = (Path(scene_path).resolve().parent,) if scene_path and model is None else ()
    with timer("load"):
        sd = StableDiffusion(
            resolve_source(str(spec), base_dirs), placement, allow_pickle=allow_pickle, sha256=sha
        )
    return run_render(
        table, sd, Path(out_dir), scene_text=scene_text, scene_path=scene_path, progress=progress, timer=timer
    )


__all__ = ["RenderReport", "RenderState", "render", "run_render"]
