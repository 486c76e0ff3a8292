"""One frame of a render: the state one frame hands to the next, and the renderer that advances it by a row.

Per frame (Deforum's order, `FrameRenderer.frame`): advance every live diffusion by this frame's warp (2D,
or 3D with a depth map predicted from the newest diffusion); if the row is diffused, take its source -- the
newest diffusion warped through this frame and prepared by the image effects in `INIT_EFFECTS` order, or in
video mode the row's input video frame -- and img2img it with the row's strength (`effective_steps`), cfg,
seed and prompt; then write the row's blend of the older and newer diffusions (cadence). Rows are read,
never recomputed; the mode's properties (contract/modes.py) say where a frame starts from. With hybrid
video (runtime/hybrid.py) the video's motion follows the camera warp on every live image, and its frame
is composited into the init before the warp (before_motion), after it (normal) or into the diffused image
(after_generation); the first video frame can be frame 0's init.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..contract.hybrid import uses_video as hybrid_in_video
from ..contract.modes import mode as mode_of
from ..contract.table import FrameTable
from . import controlnet, effects, hybrid, networks, samplers
from .depth import DepthEstimator
from .errors import RenderError
from .flow import estimate_flow, flow_tween, shared_cache, to_uint8, warp_by_flow
from .models import StableDiffusion
from .prompts import PromptEmbeddings, PromptEncoder, flow_refusals
from .timing import StageTimer
from .video_input import VideoFrames
from .warp import warp_2d, warp_3d

PIXEL_NOISE_SEED_OFFSET = 2**32  # the pixel noise of a frame gets its own stream, apart from the latent noise
REDO_SEED_OFFSET = 2**33  # the trial diffusion of optical_flow_redo_generation: a stream apart from both
# the parameter columns a diffusion's sampling reads (`FrameRenderer.latents`), besides the derived ones
SAMPLER_COLUMNS = ("steps", "cfg_scale", "subseed", "subseed_strength")


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
        control_dir: Path | None = None,
    ) -> None:
        s = table.settings
        self.table = table
        self.sd = sd
        self.timer = timer
        self.device = sd.placement.device
        self.mode = mode_of(s.mode)
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
        flow_refusals(table, sd)  # what SD3/Flux cannot do yet: refused before the first frame
        self.prompts = PromptEmbeddings(PromptEncoder(sd))
        # the LoRA weights of each frame, and a prompt cache per text-encoder LoRA weights (runtime/networks.py)
        self.networks = networks.for_renderer(table, sd, self.prompts, lambda: PromptEmbeddings(PromptEncoder(sd)))
        self.unet_evals = 0  # batch items sent to the UNet (a composite prompt's parts each count)
        # the ControlNet units and their control images (saved under `control_dir` when given); () without units
        self.control_units = controlnet.renderer_units(table, self.device, depth=depth, save_dir=control_dir)
        self.controlnet_calls = 0  # ControlNet calls made (one per unit on at a UNet call)
        self.state = RenderState()
        self.last_ref = last_references(table)
        # the latents of each diffusion are kept where later frames start from it (2D/3D): a restart at any
        # frame replays the frames before it, decoding these instead of sampling again (`replay`)
        self.keeps_latents = self.mode.keeps_latents
        self.new_latents: tuple[int, Tensor] | None = None  # the latents of the frame just rendered, to keep
        self._replay: Callable[[int], Tensor] | None = None  # while replaying: the latents of diffusion i
        self._last_depth: tuple[Tensor, Tensor] | None = None  # (image, its depth map): see predict_depth
        self._new_scheduler: Callable[[], object] | None = None  # a fresh scheduler for each diffusion
        # optical-flow cadence and redo generation: "none" or a flow method (runtime/flow.py); the flows are
        # cached by the frames' contents for the process, so a resumed or replayed render measures none twice
        self.cadence_flow = str(s.optical_flow_cadence)
        self.redo_flow = str(s.optical_flow_redo_generation)
        self.flows = shared_cache()
        # hybrid video (runtime/hybrid.py): composited into the frames and moving them; None when not used
        self.hybrid = self._hybrid_video(s)
        # before_motion: (frame i, the init composited before frame i's warp, then warped and moved)
        self._hybrid_init: tuple[int, Tensor] | None = None

    def warp(self, frame: Tensor, row: Mapping[str, object], depth: Tensor | None = None) -> Tensor:
        """`frame` moved by row's camera: 2D, or 3D through `depth` (None: a flat plane)."""
        if not self.mode.camera:
            return frame
        if not self.mode.uses_depth:
            return warp_2d(frame, row, border=self.border, flip=self.flip)
        return warp_3d(frame, depth if self.depth_warping else None, row, padding_mode=self.padding_mode,
                       sampling_mode=self.sampling_mode)

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
        state = self.state
        if not self.mode.camera or i <= state.at:
            state.at = max(state.at, i)
            return
        live = [k for k in state.buffers if k < i]
        depth = self.predict_depth(i, state.buffers[max(live)]) if live and self.mode.uses_depth else None
        pre = self.hybrid_before_motion(i, row, state.buffers[max(live)]) if live else None
        with self.timer("warp"):
            for k in live:
                state.buffers[k] = self.warp(state.buffers[k], row, depth)
            pre = self.warp(pre, row, depth) if pre is not None else None
        self._hybrid_init = (i, pre) if pre is not None else None
        if self.hybrid is not None and live:
            self.hybrid_motion(i, row, live)
        state.at = i

    # ---- hybrid video (runtime/hybrid.py): where each step sits in the frame ----------------------------

    def _hybrid_video(self, s) -> hybrid.HybridVideo | None:
        """The hybrid video of a 2D/3D scene that composites or moves with one: the input video's frames, or
        with hybrid_use_init_image the init image as a still."""
        if not self.mode.camera or not hybrid_in_video(s):
            return None
        if s.hybrid_use_init_image:
            still = load_init_image(str(s.init_image), self.width, self.height, self.device)
            frames = lambda i: still  # noqa: E731 - the still is every frame of the "video"
        elif self.video is None:
            raise RuntimeError("a hybrid video scene's renderer was given no video frames (frame_loop.video_input)")
        else:
            frames = self.video.frame
        return hybrid.HybridVideo(frames, s, border=self.border, depth=self.depth, flows=self.flows,
                                  estimate=self.estimate_flow)

    def _frame_depth(self) -> Tensor | None:
        """In 3D, the depth map this frame predicted (of the newest diffusion): the composite's depth mask."""
        return self._last_depth[1] if self._last_depth is not None and self.mode.uses_depth else None

    def hybrid_before_motion(self, i: int, row: Mapping[str, object], newest: Tensor) -> Tensor | None:
        """before_motion compositing: video frame i composited into the newest image before this frame's
        camera warp, as diffused row i's init only (the image itself stays as the tweens show it)."""
        h = self.hybrid
        if h is None or h.cs.stage != "before_motion" or not bool(row["diffused"]):
            return None
        with self.timer("hybrid"):
            return h.composite(i, newest, row, self._frame_depth())

    def hybrid_motion(self, i: int, row: Mapping[str, object], live: list[int]) -> None:
        """Every live image (and a before_motion init) moved by frame i's hybrid motion, after the camera:
        one motion per frame, measured between video frames i-1 and i, or from the newest image to frame i."""
        state = self.state
        with self.timer("hybrid"):
            motion = self.hybrid.motion(i, state.buffers[max(live)])
            if motion is None:
                return
            for k in live:
                state.buffers[k] = self.hybrid.move(state.buffers[k], motion, row)
            if self._hybrid_init is not None:
                self._hybrid_init = (i, self.hybrid.move(self._hybrid_init[1], motion, row))

    def hybrid_init(self, i: int, row: Mapping[str, object], image: Tensor) -> Tensor:
        """What diffused row i's init effects start from: the newest image, or its composite with video frame
        i (normal: after the warp; before_motion: made by `advance`)."""
        h = self.hybrid
        if h is None:
            return image
        if h.cs.stage == "before_motion" and self._hybrid_init is not None and self._hybrid_init[0] == i:
            return self._hybrid_init[1]
        if h.cs.stage != "normal":
            return image
        with self.timer("hybrid"):
            return h.composite(i, image, row, self._frame_depth())

    def prepare_init(
        self, image: Tensor, row: Mapping[str, object], noise_gen: torch.Generator, steps_run: int
    ) -> Tensor:
        """The warped previous frame through each of INIT_EFFECTS, in its order."""
        with self.timer("effects"):
            for effect in INIT_EFFECTS:
                image = effect.apply(self, image, row, noise_gen, steps_run)
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
            if self.redo_flow != "none" and self._replay is None and self.mode.camera and source is not None \
                    and self.state.newest(before=i) is not None:
                source = self.redo_source(i, row, source)
            latents = self.latents(i, row, source)
            with self.timer("decode"):
                image = self.sd.decode_latents(latents)
        if self.hybrid is not None and self.hybrid.cs.stage == "after_generation" and i > 0:
            with self.timer("hybrid"):
                image = self.hybrid.composite(i, image, row, self._frame_depth())
        if self.grayscale:
            image = effects.grayscale(image)
        return image

    def redo_source(self, i: int, row: Mapping[str, object], source: Tensor) -> Tensor:
        """Optical-flow redo generation: diffuse row i once from `source` (the prepared previous frame) with
        a seed of its own, measure the flow from `source` to that trial image, and return `source` moved
        along it by the row's redo_flow_factor; the row then diffuses from that for real, with its own seed.

        Deforum (render.py) draws the trial's seed from Python's global RNG and moves the *trial image*
        along the flow, replacing the noised init with it; here the seed is the row's plus REDO_SEED_OFFSET
        (deterministic, resumable) and the previous frame moves, so the frame keeps its content and takes
        the motion the trial showed. The trial's latents are not kept: a replay decodes the final ones."""
        trial_row = {**row, "seed": int(row["seed"]) + REDO_SEED_OFFSET}
        latents = self.latents(i, trial_row, source)
        with self.timer("decode"):
            trial = self.sd.decode_latents(latents)
        with self.timer("flow"):
            flow = self.flows.flow(to_uint8(source), to_uint8(trial), self.redo_flow, self.estimate_flow)
        return warp_by_flow(source, flow, float(row["redo_flow_factor"]))

    def source(self, i: int, row: Mapping[str, object], steps_run: int) -> Tensor | None:
        """What diffused row i starts from: its input video frame, the previous frame warped through i and
        prepared by INIT_EFFECTS, the init image, or None (txt2img)."""
        seed = int(row["seed"])
        source = None
        if self.mode.reads_video:
            with self.timer("video_input"):
                source = self.video.frame(i)  # no warp, no effects: Deforum's video mode img2imgs the frame as is
        elif self.mode.camera:
            prev = self.state.newest(before=i)
            if prev is not None:
                noise_gen = samplers.frame_generator(seed + PIXEL_NOISE_SEED_OFFSET, self.device)
                init = self.hybrid_init(i, row, self.state.buffers[prev])
                source = self.prepare_init(init, row, noise_gen, steps_run)
            elif self.hybrid is not None and self.hybrid.first_as_init:
                source = self.hybrid.frame(0)  # Deforum's hybrid_use_first_frame_as_init_image
            elif self.init_image:
                source = load_init_image(str(self.init_image), self.width, self.height, self.device)
        return source

    def latents(self, i: int, row: Mapping[str, object], source: Tensor | None) -> Tensor:
        """The final latents of diffused row i: sampled from `source` (or from noise), or, while
        replaying, the ones the first render kept."""
        if self._replay is not None:
            return self._replay(i).to(self.device)
        if getattr(self.sd, "is_flow", False):
            latents = self.flow_latents(i, row, source)
            if self.keeps_latents:
                self.new_latents = (i, latents)
            return latents
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
        if self._new_scheduler is None:  # the model's config is read once it is loaded
            self._new_scheduler = samplers.scheduler_maker(self.sampler, self.sd.scheduler_config)
        scheduler = self._new_scheduler()
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
        control = self.frame_control(i, row, source)
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
                control=control,
            )
        self.unet_evals += eps.evals
        self.controlnet_calls += control.calls if control is not None else 0
        if self.keeps_latents:
            self.new_latents = (i, latents)
        return latents

    def flow_latents(self, i: int, row: Mapping[str, object], source: Tensor | None) -> Tensor:
        """The final latents of diffused row i on a rectified-flow model (SD3/SD3.5, Flux), sampled by
        runtime/flow_matching.py as the models' own img2img pipelines sample: the row's steps, effective steps,
        seed, subseed and cfg_scale (SD3: classifier-free guidance with the negative prompt above 1; Flux-dev:
        the scale the transformer embeds, no unconditional pass; Flux-schnell: none). Flux's ControlNet units
        act on the steps of their windows (`flow_velocity_at`). Flux.1 Kontext reads the frame's img2img source
        as its context image too (the warped previous frame: the edit the prompt asks is made to it)."""
        from .flow_matching import flow_denoise

        sd = self.sd
        gen = samplers.frame_generator(int(row["seed"]), self.device)
        steps, steps_run = int(row["steps"]), int(row["effective_steps"])
        cfg = float(row["cfg_scale"])
        flux = sd.family == "flux"
        # Flux runs a negative pass only above true_cfg_scale 1 (diffusers' "true CFG"; else its negative is not
        # even encoded), SD3 only above cfg 1: without one, a composable prompt's parts are a blend, their
        # weights summing to 1
        true_cfg = float(row["true_cfg_scale"]) if flux else 0.0
        guide = (true_cfg if true_cfg > 1.0 and str(row["negative_prompt"]) else 0.0) if flux else cfg
        conditioning = self.prompts.conditioning(row, guide, guidance_embedded=guide <= 1.0)
        conds: dict[int, tuple] = {}

        def step_conds(k: int):
            step = conditioning(k)  # one StepCond per distinct set of texts: converted once each
            got = conds.get(id(step))
            if got is None:
                got = conds[id(step)] = (tuple((w, sd.flow_cond(e)) for w, e in step.parts),
                                         sd.flow_cond(step.uncond) if step.uncond is not None else None)
            return got

        with self.timer("text"):
            step_conds(0)
        if self._new_scheduler is None:  # the model's config is read once it is loaded
            self._new_scheduler = samplers.scheduler_maker(self.sampler, sd.scheduler_config)
        scale = sd.latent_scale
        resize, from_size = None, self.table.settings.seed_resize_from
        if from_size is not None:  # A1111's "resize seed from", as in `latents`
            resize = (int(from_size[1]) // scale, int(from_size[0]) // scale)
        latent_hw = (self.height // scale, self.width // scale)
        init_latents, shape = None, None
        if source is None:
            shape = (1, sd.latent_channels, *latent_hw)
        else:
            with self.timer("encode"):
                init_latents = sd.encode_image(source)
        mu, sigmas = sd.flow_schedule(steps, *latent_hw)
        evals = [0]
        context = init_latents if sd.model_family.name == "flux-kontext" else None

        def velocity(latents: Tensor, t: Tensor, c, guidance: float | None = None, control=None) -> Tensor:
            evals[0] += int(latents.shape[0])
            return sd.velocity(latents, t, c, guidance, control, context)

        control = self.frame_control(i, row, source) if flux else None
        with self.timer("denoise"):
            latents = flow_denoise(
                velocity, self._new_scheduler(), cond=None, uncond=None, cfg_scale=guide,
                steps=steps, effective_steps=steps_run, generator=gen, init_latents=init_latents, shape=shape,
                mu=mu, sigmas=sigmas, guidance=cfg if flux else None, subseed=int(row["subseed"]),
                subseed_strength=float(row["subseed_strength"]), resize_from=resize, step_conds=step_conds,
                velocity_at=flow_velocity_at(velocity, control))
        self.unet_evals += evals[0]
        self.controlnet_calls += control.calls if control is not None else 0
        return latents

    def frame_control(self, i: int, row: Mapping[str, object],
                      source: Tensor | None) -> controlnet.FrameControl | controlnet.FluxFrameControl | None:
        """The ControlNet control of diffused row i (None without units, or when none acts on this frame; a Flux
        model's FluxFrameControl); `source` is what the frame img2imgs from, a loopback unit's control image."""
        if not self.control_units:
            return None
        with self.timer("control"):
            return controlnet.frame_control(self.sd, self.control_units, i, row, source)

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
        state = self.state
        self.advance(i, row)
        if bool(row["diffused"]):
            state.buffers[i] = self.diffuse(i, row)
        out = self.compose(i, row)
        if i == 0 and self.mode.uses_depth and self.on_depth is not None:
            self.predict_depth(0, out)  # frame 0 warps nothing; its depth map is that of the frame itself
        newest = state.newest()
        for k in [k for k in state.buffers if k != newest and self.last_ref.get(k, -1) <= i]:
            del state.buffers[k]
        state.next_frame = i + 1
        return out

    def compose(self, i: int, row: Mapping[str, object]) -> Tensor:
        """The written frame: (1 - tween)·older + tween·newer, or the newer alone; with optical-flow cadence
        the two are first moved along the flow between them (`flow_blend`)."""
        state = self.state
        to = int(row["tween_to"])
        frm = int(row["tween_from"])
        tween = float(row["tween"])
        if to < 0:
            to = state.newest()
        if to is None or to not in state.buffers:
            raise RuntimeError(f"frame {i}: the table blends diffusion {to}, which was never rendered")
        if frm < 0 or tween >= 1.0:
            return state.buffers[to]
        if frm not in state.buffers:
            raise RuntimeError(f"frame {i}: the table blends diffusion {frm}, which was never rendered")
        if self.cadence_flow != "none":
            return self.flow_blend(state.buffers[frm], state.buffers[to], tween, float(row["cadence_flow_factor"]))
        with self.timer("blend"):
            return effects.blend(state.buffers[frm], state.buffers[to], tween)

    def flow_blend(self, older: Tensor, newer: Tensor, tween: float, factor: float) -> Tensor:
        """Optical-flow cadence: the tween at weight `tween` between two diffusions, as they are at this frame
        (both carried through the same camera), moved along the flow F from the older to the newer: the older
        pushed forward by F·tween·factor, the newer pulled back by F·(1 − tween)·factor, then cross-faded
        (runtime/flow.py `flow_tween`), so moving content travels from one place to the other instead of
        fading out in one and in at the other.

        Where Deforum's arithmetic differs (render.py's tween loop), on purpose: Deforum measures the flow
        once per pair, halves it, pre-warps the newer image back by the half, carries the flow field through
        each frame's camera warp as if it were an image, and then warps both images *in place* by the same
        half flow × tween at every tween, so the displacements pile up frame after frame and neither image
        reaches the other's position at the weights it is shown. Here each tween's displacement is exactly
        proportional to its weight and both images meet at one place; the flow is measured between the two
        images as they are at this frame, which makes the camera's effect on it exact and keeps resume exact
        (the flow is a function of the saved buffers). The cost: with a moving camera the pair changes every
        frame, so one flow per tween frame (see benchmarks/bench_flow.py); with a still camera the content
        cache makes it one per pair."""
        with self.timer("flow"):
            flow = self.flows.flow(to_uint8(older), to_uint8(newer), self.cadence_flow, self.estimate_flow)
        with self.timer("blend"):
            return flow_tween(older, newer, flow, tween, factor)

    def estimate_flow(self, a: np.ndarray, b: np.ndarray, method: str) -> np.ndarray:
        """runtime/flow.py's estimate_flow on this render's device (RAFT runs there)."""
        return estimate_flow(a, b, method, device=self.device)


def flow_velocity_at(velocity: Callable, control: controlnet.FluxFrameControl | None):
    """flow_matching's `velocity_at` for a frame's Flux ControlNet units: step k of n runs the velocity with
    the units on at that step, or without any (None: no unit on this frame)."""
    if control is None:
        return None

    def at(k: int, n: int):
        step = control.at(k, n)
        if step is None:
            return velocity
        return lambda latents, t, c, guidance=None: velocity(latents, t, c, guidance, step)

    return at


# ---- the image effects on the warped previous frame ------------------------------------------------------


@dataclass(frozen=True)
class ImageEffect:
    """One step of the preparation of the warped previous frame before img2img (a diffused row after the
    first, in a mode with a camera)."""

    name: str
    columns: tuple[str, ...]  # the row's columns it reads (a table without one is refused before any load)
    apply: Callable[[FrameRenderer, Tensor, Mapping[str, object], torch.Generator, int], Tensor]


def _color_coherence(r: FrameRenderer, image: Tensor, row, noise_gen, steps_run: int) -> Tensor:
    if r.color_space == "none":
        return image
    if r.state.color_ref is None:
        r.state.color_ref = image  # the first warped frame is the reference, itself unmatched
        return image
    return effects.color_coherence(image, r.state.color_ref, r.color_space)


def _grayscale(r: FrameRenderer, image: Tensor, row, noise_gen, steps_run: int) -> Tensor:
    return effects.grayscale(image) if r.grayscale else image


def _contrast(r: FrameRenderer, image: Tensor, row, noise_gen, steps_run: int) -> Tensor:
    return effects.contrast(image, float(row["contrast"]))


def _unsharp_mask(r: FrameRenderer, image: Tensor, row, noise_gen, steps_run: int) -> Tensor:
    return effects.unsharp_mask(image, int(row["kernel"]), float(row["sigma"]), float(row["amount"]),
                                float(row["threshold"]))


def _noise(r: FrameRenderer, image: Tensor, row, noise_gen, steps_run: int) -> Tensor:
    if steps_run < 1:  # with 0 steps the frame is kept as is: nothing would remove the noise
        return image
    return effects.add_noise(image, float(row["noise"]), noise_gen)


# The one place their order is written (Deforum's): docs/render.md points here.
INIT_EFFECTS: tuple[ImageEffect, ...] = (
    ImageEffect("color_coherence", (), _color_coherence),
    ImageEffect("grayscale", (), _grayscale),
    ImageEffect("contrast", ("contrast",), _contrast),
    ImageEffect("unsharp_mask", ("kernel", "sigma", "amount", "threshold"), _unsharp_mask),
    ImageEffect("noise", ("noise",), _noise),
)


__all__ = ["INIT_EFFECTS", "PIXEL_NOISE_SEED_OFFSET", "SAMPLER_COLUMNS", "FrameRenderer", "ImageEffect", "RenderState",
           "last_references", "load_init_image"]
