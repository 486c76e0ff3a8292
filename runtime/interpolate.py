"""Frame interpolation (`dfm interpolate`, and a render's finishing step): new frames between a clip's frames.

For a clip of F frames and `times` N, every pair of neighbours gets N − 1 new frames at t = k/N (k = 1 … N−1):
(F − 1)·N + 1 frames in all, the last input frame ending the clip. That is what Deforum's RIFE gives for its
"x amount" (its inference_video writes each input frame and N − 1 in-betweens after it, then the last frame),
so a scene moved over from Deforum gets the same length (Deforum's loop also swaps a near-duplicate frame,
SSIM > 0.996, for an interpolated one and repeats frames across a scene cut, SSIM < 0.2: heuristics dfm leaves
out, every pair is interpolated). Played at fps·N the clip keeps its duration (and its soundtrack); with slow
motion the fps stays and the clip is N times longer (the soundtrack no longer fits and is dropped).

Engines, one function shape: `engine(a, b, times)` takes pairs (P, 3, H, W) float [0, 1] on the engine's device
and the times (T,) and returns the in-betweens (P, T, 3, H, W).
- `flow` (default, no weights): optical flow both ways (runtime/flow.py, DIS medium), each frame's pixels
  splatted forward to time t along its flow, occlusions decided by the forward-backward check, then both frames
  pulled to time t and blended by t and by which of them sees each pixel: a moving object moves instead of
  fading out in one place and in at the other.
- `rife`: Practical-RIFE's IFNet v4.6 (`flownet.pkl`, a state dict) — dfm's own implementation of the published
  architecture, see `IFNet`.
- `film`: FILM's TorchScript export (`film_net_fp16.pt`: model(x0, x1, dt) → frame).
Weights come from local files only; a missing file is one RenderError naming what to download and where to put
it. Nothing is ever downloaded.

`interpolate_clip` runs an engine over a clip into an MP4, resumably: every output frame is also written as a PNG
to a work folder beside the output (OUT.interpolating/, with a small state file of the settings and the input's
stamp); a rerun with the same settings and input continues after the last complete frame and, since PNG is lossless,
gives the same bytes as an uninterrupted run; different settings or input start over. The MP4 is written under
a temporary name and renamed; an existing file is never replaced without `force`. The work folder is removed
when the video is complete.
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..contract.errors import UserError
from ..contract.files import read_limited, shown, write_atomic
from .clips import Clip, check_target, open_clip, output_name, write_video
from .device import pick_device
from .errors import RenderError
from .flow import MAX_SIDE as FLOW_MAX_SIDE
from .flow import consistency_mask, estimate_flow, warp_by_flow

ENGINES = ("flow", "rife", "film")
MIN_TIMES, MAX_TIMES = 2, 16  # Deforum's x amount goes to 10; past 16 the in-betweens are a morph, not motion
MAX_OUTPUT_FRAMES = 10_000_000
RIFE_FILE = "flownet.pkl"
RIFE_URL = "the v4.6 link in https://github.com/hzwer/Practical-RIFE's README"
FILM_FILE = "film_net_fp16.pt"
FILM_URL = "https://github.com/dajes/frame-interpolation-pytorch/releases"
DEFAULT_BATCH = 8  # in-betweens per engine call: several pairs at once when times is small
STATE_FILE = "interpolate.json"
WORK_SUFFIX = ".interpolating"
_FRAME = re.compile(r"\d{8}\.png")
# how strongly a reliable flow vector (forward-backward check passed) wins over an unreliable one landing on the
# same pixel: exp(−SPLAT_SHARPNESS) is the weight of a pixel that failed the check (an occluded one)
SPLAT_SHARPNESS = 10.0
CONSISTENCY_BLUR = 2


# ---- frame counts ---------------------------------------------------------------------------------------------


def check_times(times: int) -> int:
    if isinstance(times, bool) or int(times) != times or not MIN_TIMES <= int(times) <= MAX_TIMES:
        raise RenderError(f"--times {times}: the frame rate multiplier must be a whole number {MIN_TIMES} to "
                          f"{MAX_TIMES}", "use --times 2 (twice the frames) or another whole number in range")
    return int(times)


def output_count(frames: int, times: int) -> int:
    """Frames out of a clip of `frames` frames: (frames − 1)·times + 1, as Deforum's RIFE."""
    return (int(frames) - 1) * int(times) + 1


def output_fps(fps: float, times: int, slow_mo: bool) -> float:
    """The rate of the interpolated clip: fps·times (same duration), or fps with slow motion (times longer)."""
    return float(fps) if slow_mo else float(fps) * int(times)


# ---- flow engine --------------------------------------------------------------------------------------------


def _to_numpy(frame: Tensor) -> np.ndarray:
    return np.ascontiguousarray((frame.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy())


def _splat(values: Tensor, flow: Tensor, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Each pixel's `values` (C, H, W) pushed to x + flow(x) (flow (2, H, W) in pixels), spread bilinearly over the
    four pixels around it with `weight` (H, W): (Σ w·values, Σ w, Σ bilinear share) per destination pixel. The
    last is how much of the source lands there (the splat density): 0 where nothing lands (a disocclusion)."""
    c, h, w = values.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=flow.device, dtype=flow.dtype),
                            torch.arange(w, device=flow.device, dtype=flow.dtype), indexing="ij")
    x, y = (xs + flow[0]).reshape(-1), (ys + flow[1]).reshape(-1)
    x0, y0 = x.floor(), y.floor()
    fx, fy = x - x0, y - y0
    flat, weight = values.reshape(c, -1), weight.reshape(-1)
    sums = torch.zeros(c, h * w, device=values.device, dtype=values.dtype)
    wsum = torch.zeros(h * w, device=values.device, dtype=values.dtype)
    density = torch.zeros(h * w, device=values.device, dtype=values.dtype)
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        xi, yi = x0 + dx, y0 + dy
        share = (fx if dx else 1 - fx) * (fy if dy else 1 - fy)
        # a corner outside the frame gets no share (no boolean indexing: it is slow, and sizes would vary)
        share = share * ((xi >= 0) & (xi < w) & (yi >= 0) & (yi < h))
        index = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).long()
        ws = share * weight
        sums.index_add_(1, index, flat * ws)
        wsum.index_add_(0, index, ws)
        density.index_add_(0, index, share)
    return sums.reshape(c, h, w), wsum.reshape(h, w), density.reshape(h, w)


def _fill_holes(sums: Tensor, weights: Tensor, eps: float = 1e-6) -> Tensor:
    """sums / weights (C, H, W) / (H, W), where nothing landed filled from the nearest coarser level that has
    something (a pyramid of the same sums): a disoccluded pixel takes the motion around it."""
    levels = [(sums, weights)]
    while (levels[-1][1] <= eps).any() and min(levels[-1][1].shape) > 1:
        s, w = levels[-1]
        levels.append((F.avg_pool2d(s[None], 2, ceil_mode=True)[0],
                       F.avg_pool2d(w[None, None], 2, ceil_mode=True)[0, 0]))
    s, w = levels[-1]
    filled = s / w.clamp_min(eps)
    for s, w in reversed(levels[:-1]):
        up = F.interpolate(filled[None], size=w.shape, mode="bilinear", align_corners=False)[0]
        filled = torch.where(w > eps, s / w.clamp_min(eps), up)
    return filled


def flow_inbetween(a: Tensor, b: Tensor, forward: Tensor, backward: Tensor, reliable_a: Tensor, reliable_b: Tensor,
                   t: float) -> Tensor:
    """The frame at time t between `a` and `b` ((3, H, W) float), from the flows a → b and b → a ((2, H, W),
    runtime/flow.py's convention: b(x + forward(x)) ≈ a(x)) and how reliable each is ((H, W) in [0, 1]).

    Each frame's pixels are splatted to where they are at t (a's along t·forward, b's along (1 − t)·backward),
    carrying the flow back to their source; where several land on one pixel, those whose flow passed the
    forward-backward check win (an occluded background pixel gives way to the object in front of it). Each frame
    is then pulled along its flow field at t, and the two are blended by (1 − t, t) times how much of each frame
    lands on the pixel: a region uncovered at t comes from the frame that sees it."""
    ends = []
    for image, flow, reliable, share in ((a, forward, reliable_a, t), (b, backward, reliable_b, 1.0 - t)):
        weight = torch.exp(SPLAT_SHARPNESS * (reliable - 1.0))
        sums, wsum, density = _splat(-share * flow, share * flow, weight)
        back = _fill_holes(sums, wsum)  # at time t: where this frame's pixel came from
        pulled = warp_by_flow(image[None], back.permute(1, 2, 0), -1.0)[0]
        ends.append((pulled, density.clamp(0, 1)))
    (pa, da), (pb, db) = ends
    wa, wb = (1.0 - t) * da, t * db
    total = wa + wb
    seen = total > 1e-3
    wa = torch.where(seen, wa, torch.full_like(wa, 1.0 - t))  # seen by neither (rare): the plain blend
    wb = torch.where(seen, wb, torch.full_like(wb, t))
    return (pa * wa + pb * wb) / (wa + wb)


def frame_flows(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The flows a → b and b → a (DIS medium). Frames past runtime/flow.py's largest side are measured on a copy
    reduced to fit, the flows scaled back up: motion that large is smooth at that scale."""
    h, w = a.shape[:2]
    scale = max(h, w) / FLOW_MAX_SIDE
    if scale <= 1:
        return estimate_flow(a, b, "dis_medium"), estimate_flow(b, a, "dis_medium")
    size = (max(16, round(w / scale)), max(16, round(h / scale)))
    sa, sb = (cv2.resize(x, size, interpolation=cv2.INTER_AREA) for x in (a, b))
    ups = []
    for f in (estimate_flow(sa, sb, "dis_medium"), estimate_flow(sb, sa, "dis_medium")):
        f = cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR)
        ups.append(np.ascontiguousarray(f * np.array([w / size[0], h / size[1]], np.float32)))
    return ups[0], ups[1]


def flow_engine(device: torch.device) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """The `flow` engine on `device`: DIS flows on the CPU (OpenCV), the splatting and warping on `device`."""

    def run(a: Tensor, b: Tensor, times: Tensor) -> Tensor:
        out = []
        for pa, pb in zip(a, b, strict=True):
            na, nb = _to_numpy(pa), _to_numpy(pb)
            fwd, bwd = frame_flows(na, nb)
            rel_a = consistency_mask(fwd, bwd, CONSISTENCY_BLUR)
            rel_b = consistency_mask(bwd, fwd, CONSISTENCY_BLUR)
            tensors = [torch.from_numpy(x).to(device) for x in (fwd, bwd, rel_a, rel_b)]
            fwd_t, bwd_t = tensors[0].permute(2, 0, 1), tensors[1].permute(2, 0, 1)
            out.append(torch.stack([flow_inbetween(pa, pb, fwd_t, bwd_t, tensors[2], tensors[3], float(t))
                                    for t in times.tolist()]))
        return torch.stack(out)

    return run


# ---- RIFE ---------------------------------------------------------------------------------------------------


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1), nn.LeakyReLU(0.2, True))


class ResConv(nn.Module):
    """A 3×3 convolution with a learnt per-channel scale on a residual path (IFNet v4.6's `ResConv`)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones(1, c, 1, 1))
        self.relu = nn.LeakyReLU(0.2, True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.conv(x) * self.beta + x)


class IFBlock(nn.Module):
    """One scale of IFNet: image pair (+ time, mask, flow so far) at 1/scale → a flow update (4: t→0, t→1) and a
    mask update. Downsampled 4× by two strided convolutions, eight residual convolutions, then back up 4× by a
    transposed convolution and a pixel shuffle."""

    def __init__(self, cin: int, c: int) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(_conv(cin, c // 2), _conv(c // 2, c))
        self.convblock = nn.Sequential(*(ResConv(c) for _ in range(8)))
        self.lastconv = nn.Sequential(nn.ConvTranspose2d(c, 4 * 6, 4, 2, 1), nn.PixelShuffle(2))

    def forward(self, x: Tensor, flow: Tensor | None, scale: float) -> tuple[Tensor, Tensor]:
        x = F.interpolate(x, scale_factor=1.0 / scale, mode="bilinear", align_corners=False)
        if flow is not None:
            flow = F.interpolate(flow, scale_factor=1.0 / scale, mode="bilinear", align_corners=False) / scale
            x = torch.cat((x, flow), 1)
        out = self.lastconv(self.convblock(self.conv0(x)))
        out = F.interpolate(out, scale_factor=scale, mode="bilinear", align_corners=False)
        return out[:, :4] * scale, out[:, 4:5]


def backwarp(image: Tensor, flow: Tensor) -> Tensor:
    """`image` (N, C, H, W) sampled at x + flow(x) (flow (N, 2, H, W) in pixels), bilinear, border replicated, on
    the corner-aligned grid RIFE was trained with."""
    n, _, h, w = image.shape
    ys = torch.linspace(-1.0, 1.0, h, device=image.device, dtype=image.dtype)
    xs = torch.linspace(-1.0, 1.0, w, device=image.device, dtype=image.dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack((gx + flow[:, 0] / ((w - 1) / 2.0), gy + flow[:, 1] / ((h - 1) / 2.0)), dim=-1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


class IFNet(nn.Module):
    """Practical-RIFE's IFNet, v4.6 layout (the one Deforum ships as RIFE46): four IFBlocks at 1/8, 1/4, 1/2 and
    full scale (192, 128, 96 and 64 channels); the first sees the pair and the time (7 channels), the others the
    pair warped by the flow so far, the time and the mask (8) plus that flow (4). The frame is the two warped
    images blended by the sigmoid of the mask ("fast mode": v4.6 has no refinement network).

    Written for dfm from the published architecture (state-dict names block{0-3}.conv0.{0,1}.0,
    convblock.{0-7}.conv/beta, lastconv.0, as in Practical-RIFE's train_log/IFNet_HDv3.py of v4.6). The layout was
    confirmed against several public re-implementations, not against the release file itself (not available
    here): a file of another version fails to load with a message saying so."""

    SCALES = (8.0, 4.0, 2.0, 1.0)
    ALIGN = 32  # the 1/8 scale is halved twice more inside a block: sides must divide by 32

    def __init__(self) -> None:
        super().__init__()
        self.block0 = IFBlock(7, 192)
        self.block1 = IFBlock(8 + 4, 128)
        self.block2 = IFBlock(8 + 4, 96)
        self.block3 = IFBlock(8 + 4, 64)

    def forward(self, img0: Tensor, img1: Tensor, timestep: Tensor) -> Tensor:
        """img0, img1 (N, 3, H, W) in [0, 1], H and W multiples of ALIGN; timestep (N, 1, H, W) → (N, 3, H, W)."""
        flow: Tensor | None = None
        mask: Tensor | None = None
        warped0, warped1 = img0, img1
        for block, scale in zip((self.block0, self.block1, self.block2, self.block3), self.SCALES, strict=True):
            if flow is None or mask is None:
                flow, mask = block(torch.cat((img0, img1, timestep), 1), None, scale)
            else:
                dflow, dmask = block(torch.cat((warped0, warped1, timestep, mask), 1), flow, scale)
                flow, mask = flow + dflow, mask + dmask
            warped0, warped1 = backwarp(img0, flow[:, :2]), backwarp(img1, flow[:, 2:4])
        alpha = torch.sigmoid(mask)
        return warped0 * alpha + warped1 * (1 - alpha)


def _pad_to(x: Tensor, align: int) -> Tensor:
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % align, 0, -h % align))


def load_rife(path: Path, device: torch.device) -> IFNet:
    """IFNet v4.6 with the state dict at `path` (Practical-RIFE's flownet.pkl: keys may carry DataParallel's
    `module.` prefix, which is dropped; keys of no IFNet v4.6 tensor are ignored, as Practical-RIFE's loader
    does), in eval mode on `device`. Only tensors are unpickled (weights_only)."""
    missing_weights("rife", path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError) as e:
        raise RenderError(f"cannot read RIFE weights {shown(path)}: {e}",
                          f"replace it with Practical-RIFE v4.6's {RIFE_FILE} ({RIFE_URL})") from None
    if not isinstance(state, dict):
        raise RenderError(f"{shown(path)} is not a state dict", f"use Practical-RIFE v4.6's {RIFE_FILE}")
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    model = IFNet()
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or wrong:
        which = ", ".join((missing or wrong)[:3])
        raise RenderError(f"{shown(path)} is not a RIFE v4.6 flownet: {len(missing)} tensors missing, {len(wrong)} of "
                          f"another shape ({which}, …)",
                          f"use Practical-RIFE v4.6's {RIFE_FILE} (other RIFE versions have other layouts), or "
                          "--engine flow")
    model.load_state_dict({k: state[k] for k in own})
    return model.to(device).eval().requires_grad_(False)


def rife_engine(model: IFNet, device: torch.device) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    def run(a: Tensor, b: Tensor, times: Tensor) -> Tensor:
        p, t = a.shape[0], times.shape[0]
        h, w = a.shape[-2:]
        x0 = _pad_to(a, IFNet.ALIGN).repeat_interleave(t, 0)
        x1 = _pad_to(b, IFNet.ALIGN).repeat_interleave(t, 0)
        ts = times.to(device, a.dtype).repeat(p).view(-1, 1, 1, 1).expand(-1, 1, *x0.shape[-2:])
        with torch.inference_mode():
            out = model(x0, x1, ts)
        return out[..., :h, :w].reshape(p, t, 3, h, w)

    return run


# ---- FILM ---------------------------------------------------------------------------------------------------


FILM_ALIGN = 64  # FILM's feature pyramid: sides padded to a multiple of 64, as its reference code does


def load_film(path: Path, device: torch.device) -> torch.jit.ScriptModule:
    """FILM's TorchScript model at `path`, on `device`: half precision on CUDA (the fp16 export), float on the
    CPU (whose half kernels are missing or slow), as Deforum runs it."""
    missing_weights("film", path)
    try:
        with warnings.catch_warnings():  # torch 2.x calls TorchScript deprecated; FILM ships only as TorchScript
            warnings.simplefilter("ignore", FutureWarning)
            model = torch.jit.load(str(path), map_location="cpu")
    except (OSError, RuntimeError, ValueError) as e:
        raise RenderError(f"cannot load the FILM model {shown(path)}: {str(e).strip().splitlines()[0]}",
                          f"replace it with {FILM_FILE} from {FILM_URL}, or use --engine flow") from None
    model.eval()
    model = model.half() if device.type == "cuda" else model.float()
    return model.to(device)


def film_engine(model: torch.jit.ScriptModule, device: torch.device) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    dtype = torch.float16 if device.type == "cuda" else torch.float32

    def run(a: Tensor, b: Tensor, times: Tensor) -> Tensor:
        p, t = a.shape[0], times.shape[0]
        h, w = a.shape[-2:]
        x0 = _pad_to(a, FILM_ALIGN).repeat_interleave(t, 0).to(dtype)
        x1 = _pad_to(b, FILM_ALIGN).repeat_interleave(t, 0).to(dtype)
        dt = times.to(device, dtype).repeat(p).view(-1, 1)
        with torch.inference_mode():
            out = model(x0, x1, dt)
        return out[..., :h, :w].float().reshape(p, t, 3, h, w)

    return run


# ---- engines ------------------------------------------------------------------------------------------------


def default_weights(engine: str, hub_dir: str | Path | None = None) -> Path:
    """Where dfm looks for an engine's weights without --weights: torch's hub folder (torch.hub.get_dir(), which
    follows $TORCH_HOME, else ~/.cache/torch), checkpoints/rife-v4.6/flownet.pkl or checkpoints/film_net_fp16.pt."""
    base = Path(hub_dir if hub_dir is not None else torch.hub.get_dir()) / "checkpoints"
    return base / "rife-v4.6" / RIFE_FILE if engine == "rife" else base / FILM_FILE


def missing_weights(engine: str, path: Path) -> None:
    """One line, when `path` is not a file: what to download, from where, where to put it, and the engine that
    needs nothing."""
    if Path(path).is_file():
        return
    what = (f"Practical-RIFE v4.6's {RIFE_FILE} (from {RIFE_URL})" if engine == "rife"
            else f"FILM's {FILM_FILE} (from {FILM_URL})")
    raise RenderError(f"--engine {engine} needs {what}: download it to {shown(path)} (or name the file with "
                      "--weights), or use --engine flow, which needs no weights", "")


@dataclass(frozen=True)
class Engine:
    """An interpolation engine ready to run: `run(a, b, times)` (module docstring) on `device`, and a `stamp`
    of what it is (name, weights file) for the resume state."""

    name: str
    device: torch.device
    stamp: str
    run: Callable[[Tensor, Tensor, Tensor], Tensor]


def _file_stamp(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def load_engine(name: str, weights: Path | None = None, device: str = "auto") -> Engine:
    """The engine `name` (flow, rife, film) on `device` (auto, cpu, cuda, cuda:N, mps); `weights` defaults to
    `default_weights(name)` for rife and film, and is refused for flow."""
    if name not in ENGINES:
        raise RenderError(f"unknown interpolation engine {name!r}", f"use one of {', '.join(ENGINES)}")
    dev = pick_device(device, "fp32").device
    if name == "flow":
        if weights is not None:
            raise RenderError("--weights is for --engine rife or film; the flow engine needs none",
                              "leave out --weights, or choose --engine rife or film")
        return Engine(name, dev, "flow|dis_medium", flow_engine(dev))
    path = Path(weights).expanduser() if weights is not None else default_weights(name)
    if name == "rife":
        run = rife_engine(load_rife(path, dev), dev)
    else:
        run = film_engine(load_film(path, dev), dev)
    return Engine(name, dev, f"{name}|{_file_stamp(path)}", run)


def _batches(frames: Iterator[np.ndarray], group: int) -> Iterator[tuple[list[np.ndarray], np.ndarray | None]]:
    """Consecutive frames in groups of `group` pairs: (the group's first frames, the next frame after them)."""
    chunk: list[np.ndarray] = []
    for frame in frames:
        chunk.append(frame)
        if len(chunk) == group + 1:
            yield chunk[:-1], chunk[-1]
            chunk = chunk[-1:]
    if chunk:
        yield chunk, None


def _to_tensor(frames: list[np.ndarray], device: torch.device) -> Tensor:
    return torch.from_numpy(np.stack(frames)).to(device).permute(0, 3, 1, 2).float().div_(255.0)


def pairs_per_call(times: int, batch: int = DEFAULT_BATCH) -> int:
    """How many pairs `interpolate` hands the engine at once: as many as `batch` in-betweens allow, at least one."""
    return max(1, int(batch) // (int(times) - 1))


def interpolate(frames: Iterable[np.ndarray], times: int, engine: Engine, *, skip: int = 0,
                batch: int = DEFAULT_BATCH) -> Iterator[np.ndarray]:
    """The interpolated clip of `frames` (RGB uint8, one size): each frame, then times − 1 frames at t = k/times
    towards the next, the last frame last: (F − 1)·times + 1 frames. The first `skip` output frames are left out,
    and the pairs they cover are not computed (a resume). Up to `batch` in-betweens go to the engine at once."""
    times = check_times(times)
    ts = torch.arange(1, times, dtype=torch.float32) / times
    group = pairs_per_call(times, batch)
    index = 0  # the output index of the next frame
    for firsts, after in _batches(iter(frames), group):
        seconds = firsts[1:] + ([after] if after is not None else [])
        pairs = len(seconds)
        count = pairs * times + (len(firsts) - pairs)  # the last chunk ends with the clip's last frame
        if index + count <= skip:  # the whole group lies before the resume point
            index += count
            continue
        middles = None
        if pairs:
            a = _to_tensor(firsts[:pairs], engine.device)
            b = _to_tensor(seconds, engine.device)
            middles = engine.run(a, b, ts.to(engine.device))
        for p, first in enumerate(firsts):
            if index >= skip:
                yield first
            index += 1
            if p < pairs and middles is not None:
                for k in range(times - 1):
                    if index >= skip:
                        yield _to_numpy(middles[p, k])
                    index += 1


# ---- the resumable job ----------------------------------------------------------------------------------------


def work_dir(out: Path) -> Path:
    """The folder of an interpolation's frames in progress, beside OUT: OUT.interpolating/ (as `dfm upscale`'s
    OUT.upscaling/)."""
    return out.with_name(out.name + WORK_SUFFIX)


@dataclass(frozen=True)
class Interpolated:
    """What `interpolate_clip` wrote."""

    path: Path
    frames: int
    fps: float
    resumed_at: int  # the first frame computed by this run (0: a fresh run)
    notes: tuple[str, ...] = ()


def _state(clip: Clip, engine: Engine, times: int, total: int) -> dict:
    return {"dfm_interpolate": 1, "input": clip.stamp(), "engine": engine.stamp, "device": str(engine.device),
            "times": times, "frames": total, "size": [clip.width, clip.height]}


def _read_state(folder: Path) -> dict | None:
    try:
        data = json.loads(read_limited(folder / STATE_FILE, 1 << 20).decode("utf-8"))
    except (OSError, ValueError, RecursionError, UserError):  # an unreadable state is none
        return None
    return data if isinstance(data, dict) and data.get("dfm_interpolate") == 1 else None


def _open_work(folder: Path, state: dict) -> int:
    """Prepare the work folder for `state`: the number of complete frames it already holds for it (0: a new or
    started-over folder). A folder that is not an interpolation's work folder of dfm is refused, never emptied."""
    if folder.exists() and not folder.is_dir():
        raise RenderError(f"{shown(folder)} is a file; dfm needs that name for the frames in progress",
                          "move the file away, or choose another output name")
    if folder.is_dir():
        found = _read_state(folder)
        if found is None:
            if any(folder.iterdir()):
                raise RenderError(f"{shown(folder)} exists and is not dfm's (no {STATE_FILE}); dfm keeps the frames "
                                  "in progress there", "move that folder away, or choose another output name")
        elif found == state:
            done = 0
            while (folder / f"{done:08d}.png").is_file() and done < state["frames"]:
                done += 1
            return done
        else:
            _clear_work(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / STATE_FILE, json.dumps(state, indent=1) + "\n")
    return 0


def _clear_work(folder: Path) -> None:
    """Remove what dfm wrote in its work folder (frames, their temporary files, the state); other files stay."""
    for p in folder.iterdir():
        if p.is_file() and (_FRAME.fullmatch(p.name) or p.name == STATE_FILE or
                            re.fullmatch(r"\.(?:\d{8}\.png|" + re.escape(STATE_FILE) + r")\.\w{8}\.tmp", p.name)):
            p.unlink()


def _remove_work(folder: Path) -> None:
    _clear_work(folder)
    try:
        folder.rmdir()
    except OSError:  # someone put a file of theirs there: leave it, and the folder
        pass


def _write_png(path: Path, frame: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RenderError(f"cannot encode {path.name}", "this is a bug in dfm: please report it")
    write_atomic(path, buf.tobytes())


def _read_png(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise RenderError(f"cannot read {shown(path)}", "delete the folder to start over")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def interpolate_clip(clip: Clip, out: Path, *, times: int, engine: Engine, slow_mo: bool = False, force: bool = False,
                     progress: Callable[[int, int], None] | None = None, batch: int = DEFAULT_BATCH) -> Interpolated:
    """`clip` interpolated `times` by `engine` into the MP4 `out` (see the module: frame count, rate, soundtrack,
    the resumable work folder). An existing `out` is refused unless `force`, and `out` is never the input.
    `progress(done, total)` follows the frames."""
    times = check_times(times)
    total = output_count(clip.count, times)
    if total > MAX_OUTPUT_FRAMES:
        raise RenderError(f"{clip.count:,} frames × {times} would be {total:,} frames, more than dfm writes in one "
                          f"video ({MAX_OUTPUT_FRAMES:,})", "split the clip, or use a smaller --times")
    out = check_target(out, force, inputs=(clip.path, *clip.files[:1]))
    fps = output_fps(clip.fps, times, slow_mo)
    notes = []
    audio = clip.audio
    if audio is not None and slow_mo:
        audio = None
        notes.append(f"slow motion makes the clip {times}× longer: the soundtrack no longer fits and was left out")
    folder = work_dir(out)
    done = _open_work(folder, _state(clip, engine, times, total))
    # the input frame to start reading at: the first of the engine call that holds the first frame still to
    # compute, so every call gets the same pairs as in an uninterrupted run (a GPU's kernels may round
    # differently for another batch) and a resumed video has the same bytes
    group = pairs_per_call(times, batch)
    start = done // times // group * group

    def frames() -> Iterator[np.ndarray]:
        for j in range(done):  # the frames a previous run finished: the same pixels, losslessly
            yield _read_png(folder / f"{j:08d}.png")
        j = done
        for frame in interpolate(clip.frames(start), times, engine, skip=done - start * times, batch=batch):
            _write_png(folder / f"{j:08d}.png", frame)
            j += 1
            if progress is not None:
                progress(j, total)
            yield frame

    if progress is not None:
        progress(done, total)
    written = write_video(out, frames(), fps, audio=audio, force=force, count=total)
    if written.frames != total:
        raise RenderError(f"wrote {written.frames} frames instead of {total}", "this is a bug in dfm: please report it")
    if written.warning:
        notes.append(written.warning)
    _remove_work(folder)
    return Interpolated(out, total, fps, done, tuple(notes))


def finish_interpolation(render_dir: Path, times: int, engine: str, weights: Path | None, slow_mo: bool, *,
                         device: str = "auto", progress: Callable[[int, int], None] | None = None) -> Path:
    """A finished render's frames interpolated `times` by `engine` into `video_x{N}.mp4` (`video_x{N}_slowmo.mp4`
    with `slow_mo`) beside its video.mp4, with video.mp4's soundtrack unless `slow_mo`; returns that path.

    Call it after the render has written manifest.json (its frame count and fps are read from there). frames/ is
    only read. The file is dfm's own in dfm's render folder, so a rerun replaces the one an earlier render left;
    the frames in progress go to video_x{N}.mp4.interpolating/ there, so a stopped finishing step resumes, and
    are removed once the video is written. Errors are RenderErrors (a missing weights file: what to download,
    and where)."""
    times = check_times(times)
    clip = open_clip(Path(render_dir))
    if clip.kind != "render":
        raise RenderError(f"{render_dir} is not a finished dfm render (no manifest.json)",
                          "interpolate after the render has finished")
    out = Path(render_dir) / f"video{output_name(times, slow_mo)}.mp4"
    ready = load_engine(engine, weights, device)
    return interpolate_clip(clip, out, times=times, engine=ready, slow_mo=slow_mo, force=True, progress=progress).path


__all__ = ["ENGINES", "Engine", "IFNet", "Interpolated", "check_times", "default_weights", "finish_interpolation",
           "flow_inbetween", "output_name",
           "interpolate", "interpolate_clip", "load_engine", "load_film", "load_rife", "missing_weights",
           "output_count", "output_fps", "work_dir"]
