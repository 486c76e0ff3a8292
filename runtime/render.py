"""The render loop: one FrameTable in, frames/, video.mp4, table.csv and manifest.json out.

Per frame (Deforum's order): advance every live diffusion by this frame's warp (2D, or 3D with a depth
map predicted from the newest diffusion); if the row is diffused, take its source -- the newest diffusion
(warped through this frame) -> colour coherence -> contrast -> unsharp mask -> noise, or in video mode
the row's input video frame -> img2img with the row's strength (`effective_steps`), cfg, seed and
prompt; then write the row's blend of the older and newer diffusions (cadence). Rows are read, never
recomputed, and each frame sees only the columns it reads (`dfm.contract.changes.RowReads`). Behind every written
frame the writer saves the state for the next one (`resume.py`), so a killed render continues where it
stopped; and the latents of every diffusion, so a render of an edited scene into the same folder keeps
the frames the edit cannot change (`dfm.contract.changes.compare`) and restarts at the first one it can.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..contract import changes
from ..contract.files import file_mode
from ..contract.table import FrameTable, MissingSetting, Settings, TableError
from . import effects, incremental, networks, resume, samplers, speedups
from .depth import DepthEstimator, depth_image, depth_map_scale
from .device import Placement, pick_device
from .encoder import Soundtrack, VideoEncoder
from .errors import RenderError
from .models import StableDiffusion, family_warnings, resolve_source
from .outdir import (
    Output,
    clear_old_frames,
    clear_temp_files,
    dfm_manifest,
    open_output,
    owned_frames,
    remove_if_empty,
    unwritable,
)
from .output import FrameWriter, HostCopies, HostCopy, package_versions, write_json, write_text_atomic
from .prompts import COLUMNS as PROMPT_COLUMNS
from .prompts import PromptEmbeddings, PromptEncoder, prompt_warnings
from .timing import StageTimer
from .video_input import VideoFrames, video_selection
from .warp import BORDERS, PADDING_MODES, SAMPLING_MODES, warp_2d, warp_3d

SUPPORTED_MODES = ("none", "2d", "3d", "video", "interpolation")
# modes whose frames each start from pure noise
INDEPENDENT_MODES = ("none", "interpolation")
# modes whose frames start from the previous frame moved by a camera
CAMERA_MODES = changes.CAMERA_MODES
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
    # UNet batch items (each AND part and each unconditional pass of an evaluation is one): the table's
    # Σ unet_evals, PLMS's warm-up and the second-order samplers' second evaluations included
    unet_evals: int = 0
    dtype: str = ""
    warnings: list[str] = field(default_factory=list)
    depth_calls: int = 0  # depth model runs (3D)
    depth_maps: int = 0  # depth/NNNNN.png written
    resumed_at: int = 0  # the first frame this run rendered (> 0: continued from a checkpoint, or frames kept)
    kept_frames: int = 0  # frames of the previous render in the folder this run kept (incremental re-render)
    kept: str = ""  # what it kept and why: "frames 0–59 kept: the first change is the prompt at frame 60"


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


# ---- checks before any model loads --------------------------------------------------------------------

# Every setting the runtime reads (the compiler resolves them all; model_sha256 is the compiler's own): a
# table without one is refused before anything loads, never rendered with a default of the runtime's.
SETTINGS_READ = (
    "mode", "size", "fps", "model", "model_sha256", "sampler", "init_image", "border", "perspective_flip",
    "color_coherence", "color_force_grayscale", "use_depth_warping", "depth_model", "midas_weight",
    "padding_mode", "sampling_mode", "save_depth_maps", "video_init_path", "extract_nth_frame",
    "extract_from_frame", "extract_to_frame", "video_mask_path", "save_video", "video_crf", "audio", "audio_offset",
    "seed_resize_from", "lora", "embedding",
)
# the columns the frame loop reads in every mode, and those of the modes with a camera: dfm.contract.changes lists them
# with the rows that read them (one list for the loop and for the rule of what an edit changes)
ROW_COLUMNS = (*(c for c in changes.DIFFUSION if c != networks.WEIGHTS_COLUMN),  # only with a LoRA (networks.prepare)
               *changes.STRUCTURE, *PROMPT_COLUMNS, "subseed", "subseed_strength")
MODE_COLUMNS = {
    "2d": (*changes.INIT_EFFECTS, *changes.MOTION["2d"], *changes.FLIP),
    "3d": (*changes.INIT_EFFECTS, *changes.MOTION["3d"]),
}


def check_table(table: FrameTable) -> None:
    """Refuse what this runtime cannot render, before loading anything (in video mode this reads the
    input video's frame count). A table that breaks the contract is a RenderError too."""
    try:
        _check_contract(table)
        _check_values(table)
    except TableError as e:
        raise RenderError(e.message, e.help) from None


def _check_contract(table: FrameTable) -> None:
    s = table.settings
    missing = [name for name in SETTINGS_READ if name not in s]
    if missing:
        raise MissingSetting("the table has no setting " + ", ".join(f"`{name}`" for name in missing))
    table.require((*ROW_COLUMNS, *MODE_COLUMNS.get(s.mode, ())))


def _check_values(table: FrameTable) -> None:
    s = table.settings
    mode = s.mode
    if mode not in SUPPORTED_MODES:
        raise RenderError(f"mode {mode!r} is not supported by this runtime", "use one of " + ", ".join(SUPPORTED_MODES))
    if len(table) == 0:
        raise RenderError("the scene has no frames", "set frames (or duration) to at least 1")
    if s.sampler not in samplers.SAMPLERS:
        raise RenderError(
            f"sampler {s.sampler!r} is not available", "use one of " + ", ".join(samplers.SAMPLERS)
        )
    if s.border not in BORDERS:
        raise RenderError(f"border {s.border!r} is not known", "use one of " + ", ".join(BORDERS))
    if s.color_coherence not in effects.COLOR_SPACES:
        raise RenderError(
            f"color_coherence {s.color_coherence!r} is not known",
            "use one of " + ", ".join(effects.COLOR_SPACES),
        )
    init = s.init_image
    if init and not Path(str(init)).is_file():
        raise RenderError(f"init image {init} does not exist", "check the path of init_image")
    width, height = s.width, s.height
    if width % 8 or height % 8:
        raise RenderError(
            f"size {width}x{height} is not a multiple of 8", "use a size like 512x512 or 768x512"
        )
    if mode == "3d":
        for name, allowed in (("padding_mode", PADDING_MODES), ("sampling_mode", SAMPLING_MODES)):
            if s[name] not in allowed:
                raise RenderError(f"{name} {s[name]!r} is not known", "use one of " + ", ".join(allowed))
    if mode == "video":
        video_selection(s, len(table))


def needs_depth(settings: Settings) -> bool:
    """Deforum loads a depth model in 3D for depth warping or for saving depth maps."""
    return settings.mode == "3d" and bool(settings.use_depth_warping or settings.save_depth_maps)


def mode_warnings(settings: Settings) -> list[str]:
    """Settings the scene sets that this mode does not use."""
    mode = settings.mode
    out = []
    if settings.save_depth_maps and mode != "3d":
        out.append(f"save_depth_maps applies to mode 3d only; no depth maps are written in mode {mode}")
    if mode == "video" and settings.video_mask_path:
        out.append("video_mask_path is not supported yet and is ignored: every pixel follows the prompt")
    return out


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


def last_references(table: FrameTable) -> dict[int, int]:
    """For each diffusion frame, the last row that blends it (cadence) - after that its buffer can go."""
    last: dict[int, int] = {}
    cols = table.columns
    for name in ("tween_from", "tween_to"):
        for i, k in enumerate(np.asarray(cols[name]).tolist()):
            if k >= 0:
                last[int(k)] = max(last.get(int(k), -1), i)
    for i in range(len(table)):
        if bool(cols["diffused"][i]):
            last.setdefault(i, i)
    return last


# ---- one frame --------------------------------------------------------------------------------------------


class FrameRenderer:
    """A render in progress: the model, the prompt cache, the state and the stage timer."""

    def __init__(
        self,
        table: FrameTable,
        sd: StableDiffusion,
        timer: StageTimer,
        *,
        depth: DepthEstimator | None = None,
        video: VideoFrames | None = None,
        on_depth: Callable[[int, Tensor], None] | None = None,
    ) -> None:
        s = table.settings
        self.table = table
        self.sd = sd
        self.timer = timer
        self.device = sd.placement.device
        self.mode = s.mode
        self.width, self.height = s.width, s.height
        self.sampler = s.sampler
        self.border = s.border
        self.flip = bool(s.perspective_flip)
        self.color_space = s.color_coherence
        self.grayscale = bool(s.color_force_grayscale)
        self.init_image = s.init_image
        self.padding_mode = s.padding_mode
        self.sampling_mode = s.sampling_mode
        self.depth_warping = bool(s.use_depth_warping)
        self.depth = depth
        self.video = video
        self.on_depth = on_depth  # receives (frame index, depth map) when depth maps are saved
        self.prompts = PromptEmbeddings(PromptEncoder(sd))
        # the LoRA weights of each frame, and a prompt cache per text-encoder LoRA weights (runtime/networks.py)
        self.networks = networks.for_renderer(table, sd, self.prompts, lambda: PromptEmbeddings(PromptEncoder(sd)))
        self.unet_evals = 0  # batch items sent to the UNet (a composite prompt's parts each count)
        self.state = RenderState()
        self.last_ref = last_references(table)
        # the latents of each diffusion are kept where later frames start from it (2D/3D): a restart at any
        # frame replays the frames before it, decoding these instead of sampling again (`replay`)
        self.keeps_latents = self.mode in CAMERA_MODES
        self.new_latents: tuple[int, Tensor] | None = None  # the latents of the frame just rendered, to keep
        self._replay: Callable[[int], Tensor] | None = None  # while replaying: the latents of diffusion i
        self._last_depth: tuple[Tensor, Tensor] | None = None  # (image, its depth map): see predict_depth

    def warp(self, frame: Tensor, row: Mapping[str, object], depth: Tensor | None = None) -> Tensor:
        if self.mode == "2d":
            return warp_2d(frame, row, border=self.border, flip=self.flip)
        if self.mode == "3d":
            return warp_3d(
                frame,
                depth if self.depth_warping else None,
                row,
                padding_mode=self.padding_mode,
                sampling_mode=self.sampling_mode,
            )
        return frame  # modes without a camera

    def predict_depth(self, i: int, image: Tensor) -> Tensor | None:
        """Depth map of `image` for frame i (3D mode with a depth model), handed to `on_depth` as well.

        The last prediction is kept by the image's identity (the loop never changes a tensor in place):
        frame 0's own map, saved with the depth maps, is that of diffusion 0, which frame 1 warps next."""
        if self.depth is None:
            return None
        last = self._last_depth
        if last is not None and last[0] is image:
            depth = last[1]
        else:
            with self.timer("depth"):
                depth = self.depth.predict(image)
            self._last_depth = (image, depth)
        if self.on_depth is not None:
            self.on_depth(i, depth)
        return depth

    def advance(self, i: int, row: Mapping[str, object]) -> None:
        """Warp every live diffusion through frame i (Deforum's cadence advances both images each frame).

        In 3D one depth map is predicted per frame, from the newest diffusion just before it is warped,
        and used for every image warped at this frame (Deforum's tweens do the same with turbo_next)."""
        st = self.state
        if self.mode not in CAMERA_MODES or i <= st.at:
            st.at = max(st.at, i)
            return
        live = [k for k in st.buffers if k < i]
        depth = self.predict_depth(i, st.buffers[max(live)]) if live and self.mode == "3d" else None
        with self.timer("warp"):
            for k in live:
                st.buffers[k] = self.warp(st.buffers[k], row, depth)
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
        if self.networks is not None and self._replay is None:  # a replay decodes kept latents: no model runs
            self.prompts = self.networks.apply(row, i)
        steps_run = int(row["effective_steps"])
        source = self.source(i, row, steps_run)
        if source is not None and steps_run < 1:
            image = source  # strength 1: keep the frame (no VAE round trip, no noise)
        else:
            latents = self.latents(i, row, source)
            with self.timer("decode"):
                image = self.sd.decode_latents(latents)
        if self.grayscale:
            image = effects.grayscale(image)
        return image

    def source(self, i: int, row: Mapping[str, object], steps_run: int) -> Tensor | None:
        """What diffused row i starts from: its input video frame, the previous frame warped through i and
        prepared (colour coherence, contrast, unsharp, noise), the init image, or None (txt2img)."""
        seed = int(row["seed"])
        source = None
        if self.mode == "video":
            with self.timer("video_input"):
                source = self.video.frame(i)  # no warp, no effects: Deforum's video mode img2imgs the frame as is
        elif self.mode in CAMERA_MODES:
            prev = self.state.newest(before=i)
            if prev is not None:
                noise_gen = samplers.frame_generator(seed + PIXEL_NOISE_SEED_OFFSET, self.device)
                source = self.prepare_init(self.state.buffers[prev], row, noise_gen, steps_run)
            elif self.init_image:
                source = load_init_image(str(self.init_image), self.width, self.height, self.device)
        return source

    def latents(self, i: int, row: Mapping[str, object], source: Tensor | None) -> Tensor:
        """The final latents of diffused row i: sampled from `source` (or from noise), or, while
        replaying, the ones the first render kept."""
        if self._replay is not None:
            return self._replay(i).to(self.device)
        seed = int(row["seed"])
        gen = samplers.frame_generator(seed, self.device)
        steps, steps_run = int(row["steps"]), int(row["effective_steps"])
        cfg = float(row["cfg_scale"])
        # a guidance-embedded UNet (LCM distilled with w embedding) takes the scale itself: no unconditional
        # pass ever runs; the model wires the scale into its own input
        embedded = bool(getattr(self.sd, "guidance_embedded", False))
        if embedded:  # the row's scale, embedded by StableDiffusion.eps (timestep_cond) on every step
            self.sd.set_guidance_scale(cfg)
        with self.timer("text"):  # cfg <= 1 and a plain prompt: conditional only (diffusers)
            conditioning = self.prompts.conditioning(row, cfg, guidance_embedded=embedded)
        scheduler = samplers.make_scheduler(self.sampler, self.sd.scheduler_config)
        spec = samplers.SAMPLERS[self.sampler]
        init_latents, shape = None, None
        scale = self.sd.latent_scale
        resize, from_size = None, self.table.settings.seed_resize_from  # (w, h) pixels, None: off
        if from_size is not None:  # A1111's "resize seed from": the noise is drawn at the latent (h, w) of that size
            resize = (int(from_size[1]) // scale, int(from_size[0]) // scale)
        if source is None:
            shape = (1, int(self.sd.unet.config.in_channels), self.height // scale, self.width // scale)
        else:
            with self.timer("encode"):
                init_latents = self.sd.encode_image(source)
        eps = samplers.CountedEps(self.sd.eps)  # the UNet's batch items: parts + 1 per guided step
        with self.timer("denoise"):
            latents = samplers.denoise(
                eps,
                scheduler,
                conditioning=conditioning,
                cfg_scale=cfg,
                steps=steps,
                effective_steps=steps_run,
                generator=gen,
                takes_generator=spec.takes_generator,
                init_latents=init_latents,
                shape=shape,
                subseed=int(row["subseed"]),
                subseed_strength=float(row["subseed_strength"]),
                resize_from=resize,
            )
        self.unet_evals += eps.evals
        if self.keeps_latents:
            self.new_latents = (i, latents)
        return latents

    def replay(self, rows: Callable[[int], Mapping[str, object]], stop: int, latents: Callable[[int], Tensor]) -> None:
        """Bring the state to the one after frame `stop - 1` without sampling: run frames 0..stop-1 again
        (every warp, depth map, effect and blend, as the first render ran them), each diffusion decoded
        from the latents the first render kept (`latents(i)`, on the CPU). Nothing is written; the
        sampler and the text encoder do not run. `rows(i)` gives row i as the frame loop does."""
        on_depth, self.on_depth = self.on_depth, None  # the depth maps of these frames are on disk
        self._replay = latents
        try:
            for i in range(stop):
                self.frame(i, rows(i))
        finally:
            self.on_depth, self._replay = on_depth, None
            self.new_latents = None

    def frame(self, i: int, row: Mapping[str, object]) -> Tensor:
        """Advance the state by row i and return the frame to write."""
        st = self.state
        self.advance(i, row)
        if bool(row["diffused"]):
            st.buffers[i] = self.diffuse(i, row)
        out = self.compose(i, row)
        if i == 0 and self.mode == "3d" and self.on_depth is not None:
            self.predict_depth(0, out)  # frame 0 warps nothing; its depth map is that of the frame itself
        newest = st.newest()
        for k in [k for k in st.buffers if k != newest and self.last_ref.get(k, -1) <= i]:
            del st.buffers[k]
        st.next_frame = i + 1
        return out

    def compose(self, i: int, row: Mapping[str, object]) -> Tensor:
        """The written frame: (1 - tween)·older + tween·newer, or the newer alone."""
        st = self.state
        to = int(row["tween_to"])
        frm = int(row["tween_from"])
        tween = float(row["tween"])
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


class RenderInterrupted(KeyboardInterrupt):
    """Ctrl-C during a render, raised once every finished frame and its checkpoint are on disk: the same
    render resumes at `next_frame`."""

    def __init__(self, next_frame: int, total: int) -> None:
        super().__init__(f"interrupted at frame {next_frame} of {total}")
        self.next_frame = next_frame
        self.total = total


class RenderCancelled(RenderInterrupted):
    """The caller's `cancel()` said stop (watch mode, when the scene changed): raised at the next frame
    boundary once the frames so far and their checkpoint are on disk, like RenderInterrupted."""


@dataclass
class _Start:
    """Where a render begins: which rows it renders, from what state, and what it keeps."""

    fingerprint: dict[str, str]
    checkpoint: resume.Checkpoint | None  # the same render, interrupted: continued from its state
    warnings: list[str]
    todo: np.ndarray  # one bool per row: this run renders it; the others are on disk and stay
    latents: Callable[[int], Tensor] | None = None  # 2D/3D incremental: what the replay to `frame` decodes
    kept: str = ""  # what an incremental render keeps and why
    keep_video: bool = False  # nothing changes the video: the previous one stays

    @property
    def frame(self) -> int:
        """The first frame this run renders (the row count when it renders none)."""
        hits = np.flatnonzero(self.todo)
        return int(hits[0]) if len(hits) else len(self.todo)

    @property
    def kept_frames(self) -> int:
        return int((~self.todo).sum())

    @property
    def replays(self) -> bool:
        """The state at `frame` is rebuilt by replaying the frames before it (2D/3D incremental)."""
        return self.checkpoint is None and self.latents is not None and 0 < self.frame < len(self.todo)


def _find_start(table, sd, depth, out: Output, restart: bool) -> _Start:
    """Where this render begins; reads the folder, changes nothing (a checkpoint that is not continued
    is removed later, in `_prepare_output`, once the models are loaded).

    The same render, interrupted, continues from its checkpoint. Otherwise, where the folder holds the
    frames of another table (the record of an earlier render), the frames the edit cannot change are kept
    (`incremental.plan`). `restart` renders everything."""
    fp = resume.fingerprint(table, sd, depth)
    n = len(table)
    if restart:
        return _Start(fp, None, [], np.ones(n, dtype=bool))
    found, why = resume.load(out.root, fp, n, out.resumable, rebuild=lambda k: _fresh_state_at(table, k))
    record = resume.read_record(out.root)
    if found is not None:
        todo = np.arange(n) >= found.next_frame
        if table.settings.mode not in CAMERA_MODES and record is not None and record.fingerprint == fp:
            # frames an incremental render of this table kept, after the ones it has rendered
            kept, _ = incremental.whole_frames(record.valid & todo, out.resumable, stop_at_first=False)
            todo &= ~kept
        return _Start(fp, found, [why] if why else [], todo)
    if why and resume.checkpoint_info(out.root)[0] == fp:
        # this very render's checkpoint, refused because a frame it counts on is damaged: start over, as
        # a resume does (the record would keep the frames before the damaged one)
        return _Start(fp, None, [why], np.ones(n, dtype=bool))
    finished = dfm_manifest(out.root) is not None
    plan = incremental.plan(table, fp, record, out.root, out.resumable, finished)
    if plan is None:
        return _Start(fp, None, [why] if why else [], np.ones(n, dtype=bool))
    # a checkpoint of the earlier table is not continued: say so only when nothing is kept either
    warnings = [why] if why and plan.todo.all() else []
    return _Start(fp, None, warnings, plan.todo, plan.latents, plan.message, plan.keep_video)


def _fresh_state_at(table: FrameTable, k: int) -> resume.Checkpoint | None:
    """The state before frame k where it can be built without the frames before it: in the modes whose
    frames each start from noise, when every row from k on is diffused and blends no diffusion before k
    (nothing is handed on, so the empty state is the state). None elsewhere."""
    if table.settings.mode not in INDEPENDENT_MODES:
        return None
    cols = table.columns
    for i in range(k, len(table)):
        if not bool(cols["diffused"][i]):
            return None
        blended = [int(cols["tween_to"][i])] + ([int(cols["tween_from"][i])] if float(cols["tween"][i]) < 1.0 else [])
        if any(0 <= j < k for j in blended):
            return None
    return resume.Checkpoint(next_frame=k, at=k - 1, buffers={}, color_ref=None)


def _restore(renderer: FrameRenderer, checkpoint: resume.Checkpoint) -> None:
    device = renderer.device
    renderer.state = RenderState(
        next_frame=checkpoint.next_frame,
        at=checkpoint.at,
        buffers={k: v.to(device) for k, v in checkpoint.buffers.items()},
        color_ref=checkpoint.color_ref.to(device) if checkpoint.color_ref is not None else None,
    )


class _Checkpointer:
    """Queues a checkpoint behind every written frame: the writer thread saves the state after frame i
    once frame i's PNG (and depth map) is on disk, so a checkpoint never counts on a missing file."""

    def __init__(self, out_dir: Path, fingerprint: dict[str, str], writer: FrameWriter,
                 depth_writer: FrameWriter | None, total: int, start: int) -> None:
        self.out_dir = out_dir
        self.fingerprint = fingerprint
        self.writer = writer
        self.depth_writer = depth_writer
        self.total = total
        self.saved_next_frame = start  # where a resume would start now (set on the writer thread)
        self.copies = HostCopies()  # a tensor unchanged since the last checkpoint is not copied again

    def snapshot(self, state: RenderState) -> resume.Snapshot | None:
        """The checkpoint of `state` (its tensors' host copies started), None after the last frame."""
        if state.next_frame >= self.total:
            return None  # the last frame: success removes the checkpoint anyway
        return resume.Snapshot(state, self.fingerprint, self.copies)

    def after(self, state: RenderState, latents: tuple[int, Tensor] | None = None,
              snap: resume.Snapshot | None = None) -> None:
        if latents is not None:  # kept for a later incremental render, saved before the checkpoint
            index, host = latents[0], HostCopy(latents[1])
            self.writer.put_task(lambda: resume.save_latents(self.out_dir, index, host.tensor()))
        snap = snap or self.snapshot(state)
        if snap is None:
            return
        depth_items = self.depth_writer.queued if self.depth_writer is not None else 0
        self.writer.put_task(lambda: self._save(snap, depth_items))

    def _save(self, snap: resume.Snapshot, depth_items: int) -> None:
        if self.depth_writer is not None and not self.depth_writer.wait_done(depth_items):
            return  # a depth map this checkpoint counts on was not written: keep the older one
        snap.save(self.out_dir)
        self.saved_next_frame = snap.next_frame


class _Writers:
    """The background writers of a render: frames (feeding the video), depth maps, and the checkpoint
    queued behind each frame."""

    def __init__(self, table: FrameTable, out: Output, begin: _Start, depth_kind: str = "midas") -> None:
        s = table.settings
        self.depth_kind = depth_kind  # the depth model's kind sets the depth maps' scale
        mode = file_mode(out.video)  # a rewritten video keeps the mode of the one it replaces
        video = None
        if not begin.keep_video:  # (it stays when neither its frames nor its settings change)
            out.video.unlink(missing_ok=True)  # a stale video would not match the new frames
            if s.save_video and s.mode != "none":  # stills make no video
                video = VideoEncoder(out.video, s.width, s.height, float(s.fps), int(s.video_crf), mode,
                                     soundtrack=Soundtrack.of(s.audio, s.audio_offset, len(table), s.fps))
        self.kept_video = out.video if begin.keep_video and out.video.is_file() else None
        self.frames = FrameWriter(out.frames, video)
        self.frames.replay_video(begin.frame)  # the stream cannot be appended to: it restarts from the PNGs
        self.depth: FrameWriter | None = None
        if out.save_maps:
            out.depth.mkdir(exist_ok=True)
            self.depth = FrameWriter(out.depth)
        self.checkpoints = _Checkpointer(out.root, begin.fingerprint, self.frames, self.depth, len(table),
                                         begin.frame)

    @property
    def on_depth(self) -> Callable[[int, Tensor], None] | None:
        depth, kind = self.depth, self.depth_kind
        return (lambda i, d: depth.put_depth(i, depth_image(d, kind))) if depth is not None else None

    def put(self, i: int, frame: Tensor, state: RenderState, latents: tuple[int, Tensor] | None = None) -> None:
        # the checkpoint's copies first: the frame is usually the newest diffusion, so its copy is reused
        snap = self.checkpoints.snapshot(state)
        self.frames.put(i, frame, snap.copy_of(frame) if snap is not None else None)
        self.checkpoints.after(state, latents, snap)

    def keep(self, i: int) -> None:
        """Frame i stays as it is on disk (incremental render of an independent mode): the video reads it."""
        self.frames.replay_video(i + 1, start=i)

    def flush(self) -> None:
        """After an exception: write what is queued (depth first: the checkpoints wait on it)."""
        for w in (self.depth, self.frames):
            if w is not None:
                w.flush()

    def close(self, timer: StageTimer) -> Path | None:
        """Wait for every frame, finish the video (returned, or None) and add the writers' times."""
        frames, depth = self.frames, self.depth
        with timer("write_wait"):
            video = frames.close() or self.kept_video
            if depth is not None:
                depth.close()
        timer.add("write", frames.seconds + (depth.seconds if depth else 0.0))
        timer.add("write_queue_wait", frames.wait_seconds + (depth.wait_seconds if depth else 0.0))
        return video


@dataclass(frozen=True)
class _Calls:
    """The model call counters at one moment (a report counts this render's calls only)."""

    unet: int
    text_encoder: int
    depth: int

    @classmethod
    def of(cls, sd: StableDiffusion, depth: DepthEstimator | None) -> _Calls:
        return cls(sd.unet_calls, sd.text_encoder_calls, depth.calls if depth is not None else 0)


def _depth_in_use(settings: Settings, depth: DepthEstimator | None) -> DepthEstimator | None:
    """The depth model of a render: `depth` where the mode uses one (then it must be given), else None."""
    if not needs_depth(settings):
        return None
    if depth is None:
        raise RenderError(
            "this 3D render needs a depth model (use_depth_warping or save_depth_maps)",
            "pass run_render a DepthEstimator (render() resolves the scene's depth_model)",
        )
    return depth


def _prepare_output(table: FrameTable, out: Output, begin: _Start) -> None:
    """Ready the output folder once the models are loaded, just before the first frame is written: the
    frames dfm may write recorded first (so a kill from here on leaves a folder dfm knows as its own), then
    the record of which frames on disk are this table's (those kept), then the previous render's manifest,
    a checkpoint not continued, dfm's temporary files, and dfm's frames and latents this render does not
    keep removed; table.csv written. Files dfm did not write stay."""
    root = out.root
    kept = ~begin.todo
    n = len(table)

    def keeps(i: int) -> bool:
        return i < n and bool(kept[i])

    try:
        owned = owned_frames(root)
        resume.write_owner(root, max(owned, n))
        resume.write_record(root, table, begin.fingerprint, kept)
        if dfm_manifest(root) is not None:
            (root / "manifest.json").unlink()  # it describes frames about to be replaced
        if begin.checkpoint is None:
            resume.state_path(root).unlink(missing_ok=True)  # never continue, nor later mix in, another state
        clear_temp_files(out)
        out.frames.mkdir(exist_ok=True)
        clear_old_frames(out.frames, keeps, owned)
        clear_old_frames(out.depth, keeps, owned)
        # the latents of the diffusions before the first frame rendered are this table's; later ones are not
        start = begin.frame
        resume.remove_latents(root, lambda i: i < start and table.settings.mode in CAMERA_MODES, owned)
        write_text_atomic(root / "table.csv", table.to_csv())
    except OSError as e:
        raise unwritable(root, e) from None


def unet_batches(table: FrameTable) -> tuple[int, ...]:
    """The UNet batch sizes this table uses (CFG doubles it), for the compile warm-up. Composite prompts
    (`AND`) batch more; their first frame compiles that size."""
    guided = np.asarray(table["cfg_scale"], dtype=float) > 1.0
    return tuple(sorted({2 if g else 1 for g in guided.tolist()}))


def _load_models(sd: StableDiffusion, depth: DepthEstimator | None, timer: StageTimer, table: FrameTable,
                 options: speedups.Speedups | None) -> None:
    with timer("load"):
        if depth is not None:
            depth.load()
        sd.load()
        networks.prepare(table, sd, sd.allow_pickle)  # LoRAs and embeddings: a file that does not fit fails here
        batches = unet_batches(table)
    # attention, memory format, VAE tiling, torch.compile (its warm-up timed as the stage "compile")
    speedups.apply(sd, options, size=(table.settings.width, table.settings.height), batches=batches, timer=timer)


def _video_input(table: FrameTable, device: torch.device) -> VideoFrames | None:
    """Video mode's input frames (opened at the first frame; nothing is decoded before)."""
    s = table.settings
    if s.mode != "video":
        return None
    path = Path(str(s.video_init_path)).expanduser()  # as video_selection reads it
    return VideoFrames(path, video_selection(s, len(table)), s.width, s.height, device)


def _frame_loop(renderer: FrameRenderer, table: FrameTable, begin: _Start, writers: _Writers,
                progress: Callable[[int, int], None] | None, cancel: Callable[[], bool] | None,
                timer: StageTimer) -> None:
    """Render the rows `begin` asks for, in order, each frame queued with the checkpoint behind it (a
    kept frame is only read into the video); first, for an incremental render in 2D/3D, replay the
    frames before the first one. Each frame gets the columns it reads and no others. On any exception
    the queued frames are good and their checkpoints save work, so they are written (a writer that failed
    drops its queue instead) and the checkpoint stays for the next run; Ctrl-C becomes RenderInterrupted,
    `cancel()` turning true RenderCancelled (both at a frame boundary)."""
    n = len(table)
    reads = changes.RowReads(table)

    def row(i: int) -> dict[str, object]:
        full = table.row(i)
        return {k: full[k] for k in reads.at(i)}

    start = begin.frame
    try:
        with torch.inference_mode():
            if begin.replays:
                with timer("replay"):
                    renderer.replay(row, start, begin.latents)
            for i in range(start, n):
                if not begin.todo[i]:
                    writers.keep(i)
                else:
                    if cancel is not None and cancel():
                        raise RenderCancelled(writers.checkpoints.saved_next_frame, n)
                    frame = renderer.frame(i, row(i))
                    latents, renderer.new_latents = renderer.new_latents, None
                    writers.put(i, frame, renderer.state, latents)
                if progress is not None:
                    progress(i + 1, n)
    except BaseException as exc:
        writers.flush()
        if isinstance(exc, KeyboardInterrupt):
            kind = RenderCancelled if isinstance(exc, RenderCancelled) else RenderInterrupted
            raise kind(writers.checkpoints.saved_next_frame, n) from exc
        raise
    finally:
        if renderer.video is not None:
            renderer.video.close()


def _finish(sd: StableDiffusion, depth: DepthEstimator | None, out: Output, writers: _Writers, begin: _Start,
            timer: StageTimer, before: _Calls, warnings: list[str], unet_evals: int = 0) -> RenderReport:
    """Close the writers (the video is finished) and report what this run did."""
    video = writers.close(timer)
    encoder = writers.frames.video
    if encoder is not None and encoder.warning:
        warnings = [*warnings, encoder.warning]
    after = _Calls.of(sd, depth)
    return RenderReport(
        out_dir=out.root,
        frames=begin.kept_frames + writers.frames.written,
        video=video,
        timings=timer.report(),
        unet_calls=after.unet - before.unet,
        unet_evals=unet_evals,
        text_encoder_calls=after.text_encoder - before.text_encoder,
        device=str(sd.placement.device),
        dtype=str(sd.placement.dtype).replace("torch.", ""),
        warnings=warnings,
        depth_calls=after.depth - before.depth,
        depth_maps=(begin.kept_frames if out.save_maps else 0) + (writers.depth.written if writers.depth else 0),
        resumed_at=begin.frame,
        kept_frames=begin.kept_frames if begin.checkpoint is None else 0,
        kept=begin.kept,
    )


def run_render(
    table: FrameTable,
    sd: StableDiffusion,
    out_dir: Path,
    *,
    scene_text: str = "",
    scene_path: str = "",
    progress: Callable[[int, int], None] | None = None,
    timer: StageTimer | None = None,
    depth: DepthEstimator | None = None,
    restart: bool = False,
    on_resume: Callable[[int, int], None] | None = None,
    on_keep: Callable[[str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    speed: speedups.Speedups | None = None,
) -> RenderReport:
    """Render `table` with an already resolved model (render() resolves it; benchmarks and tests pass
    their own, and their own timer).

    `depth` is the depth model, required where the mode uses one (3D with use_depth_warping or
    save_depth_maps) and ignored elsewhere. A checkpoint in `out_dir` of the same render is continued
    (`on_resume(frame, total)` is told) unless `restart`; a render of another table there keeps the
    frames the difference cannot change (`on_keep(message)` is told what and why, before the first
    frame). Ctrl-C raises RenderInterrupted once the frames so far are safely written; `cancel()`
    returning true stops the same way at the next frame, raising RenderCancelled. `speed` holds the
    speed-up switches (runtime/speedups.py; None: the defaults)."""
    check_table(table)
    s = table.settings
    depth = _depth_in_use(s, depth)
    timer = timer or StageTimer(sd.placement.device)
    out = Output(Path(out_dir), save_maps=depth is not None and bool(s.save_depth_maps))

    # nothing in the folder changes until the models are loaded: a render that fails before its first
    # frame leaves the folder as it found it
    made = open_output(out.root)
    # the switches change the frames' bytes: the resume fingerprint compares them (applied at load)
    speedups.record(sd, speedups.describe(speed, sd.placement.device.type, (s.width, s.height)))
    try:
        begin = _find_start(table, sd, depth, out, restart)
        started = time.time()
        if begin.checkpoint is not None and on_resume is not None:
            on_resume(begin.frame, len(table))
        if begin.kept and on_keep is not None:
            on_keep(begin.kept)
        if begin.todo.any():  # with nothing to render, nothing needs the models
            _load_models(sd, depth, timer, table, speed)
    except BaseException:
        if made:
            remove_if_empty(out.root)
        raise
    warnings = begin.warnings + prompt_warnings(table, sd) + mode_warnings(s) + family_warnings(table, sd)
    _prepare_output(table, out, begin)

    writers = _Writers(table, out, begin, depth.kind if depth is not None else "midas")
    renderer = FrameRenderer(table, sd, timer, depth=depth, video=_video_input(table, sd.placement.device),
                             on_depth=writers.on_depth)
    if begin.checkpoint is not None:
        _restore(renderer, begin.checkpoint)
    before = _Calls.of(sd, depth)
    _frame_loop(renderer, table, begin, writers, progress, cancel, timer)

    report = _finish(sd, depth, out, writers, begin, timer, before, warnings, renderer.unet_evals)
    try:
        write_json(out.root / "manifest.json", manifest(table, sd, report, scene_text, scene_path, started, depth))
        resume.write_record(out.root, table, begin.fingerprint, np.ones(len(table), dtype=bool))  # all valid
    except OSError as e:
        raise unwritable(out.root, e) from None
    resume.remove(out.root)  # done: nothing is left to resume (the record and the latents stay)
    return report


def resolve_depth(settings: Settings, placement: Placement, *, override: str | None, scene_path: str,
                  allow_pickle: bool) -> DepthEstimator | None:
    """The depth model a render of these settings uses, its folder resolved now (a missing model fails
    before the SD model loads); None where the mode uses none. `override` replaces the scene's
    depth_model; the scene's own relative paths are tried against the scene's folder first."""
    if not needs_depth(settings):
        return None
    spec = override or settings.depth_model
    if not spec:
        raise RenderError(
            "3D needs a depth model for use_depth_warping or save_depth_maps",
            'set depth_model "Intel/dpt-hybrid-midas" (or a local folder), or use_depth_warping off',
        )
    base_dirs = (Path(scene_path).resolve().parent,) if scene_path and override is None else ()
    est = DepthEstimator(
        spec,
        placement,
        midas_weight=float(settings.midas_weight),
        base_dirs=base_dirs,
        allow_pickle=allow_pickle,
    )
    _ = est.folder
    return est


def resolve_model(settings: Settings, placement: Placement, *, override: str | None, scene_path: str,
                  allow_pickle: bool) -> StableDiffusion:
    """The SD model of a render, found (not loaded): `override` replaces the scene's model, and the
    scene's sha256 then no longer applies; the scene's own relative paths are tried against its folder."""
    scene_model = settings.model
    spec = override or scene_model
    if not spec:
        raise RenderError("no model given", "set `model` in the scene or pass --model")
    sha = settings.model_sha256 if (override is None or override == scene_model) else None
    base_dirs = (Path(scene_path).resolve().parent,) if scene_path and override is None else ()
    return StableDiffusion(resolve_source(str(spec), base_dirs), placement, allow_pickle=allow_pickle, sha256=sha)


def manifest(
    table: FrameTable,
    sd: StableDiffusion,
    report: RenderReport,
    scene_text: str,
    scene_path: str,
    started: float,
    depth: DepthEstimator | None = None,
) -> dict:
    s = table.settings
    src = sd.source
    out = {
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
            "path": str(sd.folder or src.path or ""),
            "sha256": sd.sha256,
        },
        "mode": s.mode,
        "size": [s.width, s.height],
        "fps": s.fps,
        "sampler": s.sampler,
        "device": report.device,
        "dtype": report.dtype,
        "frames": report.frames,
        "video": report.video.name if report.video else None,
        "unet_calls": report.unet_calls,
        "unet_evals": report.unet_evals,
        "text_encoder_calls": report.text_encoder_calls,
        # the speed-up switches the frames were made under, as the resume fingerprint compares them
        "speedups": speedups.recorded(sd) or speedups.describe(None, sd.placement.device.type, (s.width, s.height)),
        "depth_calls": report.depth_calls,
        "depth_maps": report.depth_maps,
        "resumed_at": report.resumed_at,
        "kept_frames": report.kept_frames,
        "kept": report.kept,
        "timings": report.timings,
        "warnings": report.warnings,
        "versions": package_versions(),
        "started": _dt.datetime.fromtimestamp(started, _dt.timezone.utc).isoformat(timespec="seconds"),
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if depth is not None:
        out["depth_model"] = {"spec": depth.spec, "path": str(depth.folder), "kind": depth.kind}
        if report.depth_maps:
            out["depth_map_scale"] = depth_map_scale(depth.kind)
    return out


def render(
    table: FrameTable,
    out_dir: Path,
    *,
    scene_text: str = "",
    scene_path: str = "",
    model: str | None = None,
    device: str = "auto",
    allow_pickle: bool = False,
    progress: Callable[[int, int], None] | None = None,
    depth_model: str | None = None,
    restart: bool = False,
    on_resume: Callable[[int, int], None] | None = None,
    on_keep: Callable[[str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    models: dict | None = None,
    dtype: str = "auto",
    speed: speedups.Speedups | None = None,
) -> RenderReport:
    """Render a compiled scene into `out_dir` (frames/, video.mp4, table.csv, manifest.json; depth/ with
    save_depth_maps).

    `model` overrides the scene's model (the scene's sha256 then no longer applies), `depth_model` the
    scene's depth model. Errors the user can fix raise RenderError.

    A render killed at any point continues to the same bytes: a checkpoint of the same render in
    `out_dir/.dfm-state` is resumed (`on_resume(frame, total)` is told) unless `restart`; Ctrl-C
    raises RenderInterrupted (a KeyboardInterrupt) saying where the next run starts. A render of an
    edited scene into the folder of an earlier one keeps every frame the edit cannot change and renders
    from the first one it can (`on_keep(message)` says which and why), to the bytes of a full render.
    `cancel()` true stops at the next frame (RenderCancelled). `models`, a dict the caller keeps between
    renders (watch mode), holds the loaded models so that the next render of the same model reuses them.
    `dtype` (auto, fp16, bf16, fp32) and `speed` (runtime/speedups.py) are the speed-up switches of
    `dfm render`; each that changes the frames' arithmetic is part of the resume fingerprint."""
    check_table(table)
    s = table.settings
    placement = pick_device(device, dtype)
    timer = StageTimer(placement.device)
    depth = resolve_depth(s, placement, override=depth_model, scene_path=scene_path, allow_pickle=allow_pickle)
    with timer("load"):
        sd = resolve_model(s, placement, override=model, scene_path=scene_path, allow_pickle=allow_pickle)
    if models is not None:  # the same model resolved the same way: the one already loaded
        sd = models.setdefault(("sd", sd.source, str(placement.device), str(placement.dtype), sd.sha256,
                                allow_pickle), sd)
        if depth is not None:
            depth = models.setdefault(("depth", depth.spec, str(depth.folder), str(placement.device),
                                       float(s.midas_weight)), depth)
    return run_render(
        table,
        sd,
        Path(out_dir),
        scene_text=scene_text,
        scene_path=scene_path,
        progress=progress,
        timer=timer,
        depth=depth,
        restart=restart,
        on_resume=on_resume,
        on_keep=on_keep,
        cancel=cancel,
        speed=speed,
    )


__all__ = ["RenderCancelled", "RenderInterrupted", "RenderReport", "RenderState", "render", "run_render"]
