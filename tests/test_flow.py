"""Optical flow (runtime/flow.py) and optical-flow cadence (FrameRenderer.compose): the estimates on a known
motion, the warp and the consistency check they feed, tweens that travel instead of ghosting, RAFT's local
weights, and redo generation."""

import types

import cv2
import numpy as np
import pytest
import torch
from tiny_models import make_table

from dfm.contract.hybrid import RAFT_WEIGHTS_FILE
from dfm.runtime import effects
from dfm.runtime import flow as fl
from dfm.runtime.errors import RenderError
from dfm.runtime.frame import FrameRenderer
from dfm.runtime.frame_loop import row_view
from dfm.runtime.timing import StageTimer

SIZE = 128
BORDER = 16  # flow near the frame's edge sees content come in from nowhere: judge the interior


def texture(h, w, seed=0, sigma=2.0):
    """Smooth random RGB texture, uint8, using the full range (a flow estimator needs gradients)."""
    noise = np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)
    tex = cv2.GaussianBlur(noise, (0, 0), sigma)
    tex = (tex - tex.min()) / (tex.max() - tex.min())
    return (tex * 255).round().astype(np.uint8)


def translated_pair(dx, size=SIZE, seed=0):
    """(a, b): b is a moved right by `dx` whole pixels (b(x + dx) = a(x)), both cut from one larger texture."""
    canvas = texture(size + 2 * 32, size + 2 * 32, seed)
    return canvas[32:32 + size, 32:32 + size], canvas[32:32 + size, 32 - dx:32 - dx + size]


def to_tensor(img):
    return torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)


def interior(a):
    return a[BORDER:-BORDER, BORDER:-BORDER]


# ---- estimating -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["dis_medium", "dis_fine", "farneback"])
def test_flow_of_a_3px_translation_is_3px(method):
    a, b = translated_pair(3)
    flow = fl.estimate_flow(a, b, method)
    assert flow.shape == (SIZE, SIZE, 2) and flow.dtype == np.float32
    mean = interior(flow).reshape(-1, 2).mean(axis=0)
    assert abs(mean[0] - 3.0) <= 0.3 and abs(mean[1]) <= 0.3, mean
    back = fl.estimate_flow(b, a, method)  # the convention's direction: b -> a is the opposite motion
    assert abs(interior(back).reshape(-1, 2).mean(axis=0)[0] + 3.0) <= 0.3


def test_bad_frames_and_methods_are_render_errors():
    a, b = translated_pair(3)
    with pytest.raises(RenderError, match="unknown optical flow method"):
        fl.estimate_flow(a, b, "deepflow")
    with pytest.raises(RenderError, match="RGB uint8"):
        fl.estimate_flow(a.astype(np.float32), b, "dis_medium")
    with pytest.raises(RenderError, match="different sizes"):
        fl.estimate_flow(a, b[:64], "dis_medium")
    with pytest.raises(RenderError, match="each side must be"):
        fl.estimate_flow(a[:8, :8], b[:8, :8], "dis_medium")
    with pytest.raises(RenderError, match="flow factor"):
        fl.warp_by_flow(to_tensor(a), np.zeros((SIZE, SIZE, 2), np.float32), float("nan"))
    with pytest.raises(RenderError, match="shape"):
        fl.warp_by_flow(to_tensor(a), np.zeros((SIZE, SIZE - 1, 2), np.float32), 1.0)


# ---- warping --------------------------------------------------------------------------------------------------


def test_warp_by_flow_moves_content_by_the_flow():
    a, b = translated_pair(5)
    shift = np.zeros((SIZE, SIZE, 2), np.float32)
    shift[..., 0] = 5.0
    pushed = fl.warp_by_flow(to_tensor(a), shift, 1.0)  # a moved right by 5 is b
    pulled = fl.warp_by_flow(to_tensor(b), shift, -1.0)  # b pulled back by 5 is a
    assert torch.allclose(pushed[..., 5:], to_tensor(b)[..., 5:], atol=1e-5)
    assert torch.allclose(pulled[..., :-5], to_tensor(a)[..., :-5], atol=1e-5)
    assert torch.equal(pushed[..., :5], to_tensor(a)[..., :1].expand(-1, -1, -1, 5))  # border replicated
    half = fl.warp_by_flow(to_tensor(a), shift, 0.4)  # a fraction of the flow: 2 px
    assert torch.allclose(half[..., 2:], to_tensor(a)[..., :-2], atol=1e-5)
    assert fl.warp_by_flow(to_tensor(a), shift, 0.0) is not None
    # an estimated flow does the same job: b pulled back along it is a, in the interior
    flow = fl.estimate_flow(a, b, "dis_fine")
    back = fl.to_uint8(fl.warp_by_flow(to_tensor(b), flow, -1.0)).astype(np.float32)
    assert np.abs(interior(back) - interior(a).astype(np.float32)).mean() < 1.0


# ---- consistency ----------------------------------------------------------------------------------------------


def square_scene(x0, size=160, side=48, y0=56, seed=1):
    """A textured square over a static, dimmer textured background, its left edge at x0. Both textures have
    structure at coarse scales, as images do (pixel noise alone gives a pyramid nothing to follow)."""
    img = texture(size, size, seed=seed, sigma=4.0) // 2 + 64
    img[y0:y0 + side, x0:x0 + side] = texture(side, side, seed=seed + 1, sigma=3.0)
    return img


def test_consistency_marks_the_occluded_region():
    # exact flows: a square [20, 40) moves right by 6; in a, the background [40, 46) goes under it
    fwd = np.zeros((64, 64, 2), np.float32)
    bwd = np.zeros((64, 64, 2), np.float32)
    fwd[20:40, 20:40, 0] = 6.0
    bwd[20:40, 26:46, 0] = -6.0
    mask = fl.consistency_mask(fwd, bwd, blur=0)
    assert mask.shape == (64, 64) and mask.dtype == np.float32
    assert (mask[20:40, 40:46] == 0).all()  # occluded
    assert (mask[20:40, 20:40] == 1).all() and (mask[:, :16] == 1).all() and (mask[45:, :] == 1).all()
    soft = fl.consistency_mask(fwd, bwd, blur=2)
    assert 0 < soft[30, 39] < 1 and soft[30, 43] < 0.5 and soft[5, 5] == 1  # blurred edges, still 1 far away
    # estimated flows of a moving square: the uncovered strip is far less reliable than the still background
    a, b = square_scene(40), square_scene(48)
    mask = fl.consistency_mask(fl.estimate_flow(a, b, "dis_fine"), fl.estimate_flow(b, a, "dis_fine"), blur=0)
    occluded = mask[60:100, 88:96].mean()  # in a, background the square covers in b (rows inside the square)
    background = mask[8:48, 8:152].mean()
    assert background > 0.9 and occluded < 0.5, (background, occluded)


# ---- the cache ------------------------------------------------------------------------------------------------


def test_flow_cache_computes_each_pair_once_and_stays_bounded():
    calls = []

    def estimate(a, b, method):
        calls.append(method)
        return fl.estimate_flow(a, b, method)

    a, b = translated_pair(3)
    cache = fl.FlowCache(max_bytes=2 * SIZE * SIZE * 2 * 4)  # room for two flows
    first = cache.flow(a, b, "dis_medium", estimate)
    again = cache.flow(a.copy(), b.copy(), "dis_medium", estimate)  # same content, other arrays
    assert again is first and calls == ["dis_medium"] and not first.flags.writeable
    cache.flow(a, b, "farneback", estimate)  # the method is part of the key
    cache.flow(b, a, "dis_medium", estimate)  # so is the direction; the oldest entry goes
    assert len(calls) == 3 and len(cache) == 2
    cache.flow(a, b, "dis_medium", estimate)
    assert len(calls) == 4 and cache.hits == 1


# ---- optical-flow cadence -------------------------------------------------------------------------------------


def renderer(table):
    sd = types.SimpleNamespace(family="sd15", placement=types.SimpleNamespace(device=torch.device("cpu")))
    return FrameRenderer(table, sd, StageTimer())


def psnr(x, y):
    mse = float(((x - y) ** 2).mean())
    return 10 * np.log10(1.0 / mse)


def tweens(table, older, newer):
    """Frames 4..6 of a cadence-4 table composed from hand-made diffusions 0 (older) and 4 (newer)."""
    r = renderer(table)
    r.flows = fl.FlowCache()  # not the process's: count this test's flows alone
    r.state.buffers = {0: older, 4: newer}
    row = row_view(table)
    return [r.compose(i, row(i)) for i in (4, 5, 6)], r


def test_flow_cadence_tweens_travel_instead_of_ghosting():
    # the square moves 12 px from diffusion 0 to diffusion 4: 3 px a frame
    x0, step = 40, 12
    older, newer = to_tensor(square_scene(x0)), to_tensor(square_scene(x0 + step))
    flow_table = make_table(8, mode="2d", cadence=4, optical_flow_cadence="dis_fine")
    plain_table = make_table(8, mode="2d", cadence=4)
    weights = [float(w) for w in flow_table["tween"][4:7]]
    assert weights == [0.25, 0.5, 0.75]
    flowed, r = tweens(flow_table, older, newer)
    plain, _ = tweens(plain_table, older, newer)
    for w, f, p in zip(weights, flowed, plain, strict=True):
        truth = to_tensor(square_scene(x0 + round(step * w)))
        assert psnr(f, truth) > psnr(p, truth) + 6.0, (w, psnr(f, truth), psnr(p, truth))
    # one flow per pair: the buffers did not change between the three tweens
    assert r.timer.counts["flow"] == 3 and (r.flows.misses, r.flows.hits) == (1, 2)


def test_flow_cadence_with_factor_zero_is_the_plain_cross_fade():
    older, newer = to_tensor(square_scene(40)), to_tensor(square_scene(52))
    table = make_table(8, mode="2d", cadence=4, optical_flow_cadence="farneback", cadence_flow_factor=0.0)
    flowed, _ = tweens(table, older, newer)
    for w, f in zip((0.25, 0.5, 0.75), flowed, strict=True):
        assert torch.equal(f, effects.blend(older, newer, w))


def test_without_flow_cadence_compose_is_the_cross_fade_byte_for_byte():
    older, newer = to_tensor(square_scene(40)), to_tensor(square_scene(52))
    table = make_table(8, mode="2d", cadence=4)
    assert table.settings["optical_flow_cadence"] == "none"
    composed, r = tweens(table, older, newer)
    for w, f in zip((0.25, 0.5, 0.75), composed, strict=True):
        assert torch.equal(f, effects.blend(older, newer, w))
    assert "flow" not in r.timer.counts


# ---- RAFT -----------------------------------------------------------------------------------------------------


def test_raft_loads_only_from_the_local_weights_file(tmp_path, monkeypatch):
    from torchvision.models.optical_flow import raft_large

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    a, b = translated_pair(3, size=64)
    with pytest.raises(RenderError) as missing:
        fl.estimate_flow(a, b, "raft")
    text = str(missing.value)
    assert RAFT_WEIGHTS_FILE in text and str(tmp_path / "empty" / "hub" / "checkpoints") in text
    assert "download" in missing.value.help and "dis_medium" in missing.value.help

    # a randomly initialised RAFT-large saved where torch keeps it: loaded, run, sized like the frames
    home = tmp_path / "torch"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(raft_large(weights=None, progress=False).state_dict(), home / "hub" / "checkpoints" / RAFT_WEIGHTS_FILE)
    monkeypatch.setenv("TORCH_HOME", str(home))
    assert fl.raft_weights_path() == home / "hub" / "checkpoints" / RAFT_WEIGHTS_FILE
    a, b = translated_pair(3, size=36)  # not a multiple of 8, below RAFT's minimum: padded, then cut back
    flow = fl.estimate_flow(a, b, "raft")
    assert flow.shape == (36, 36, 2) and flow.dtype == np.float32 and np.isfinite(flow).all()

    (home / "hub" / "checkpoints" / RAFT_WEIGHTS_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(RenderError, match="cannot load RAFT-large weights"):
        fl.load_raft(tmp_path / "torch" / "hub" / "checkpoints" / ".." / "checkpoints" / RAFT_WEIGHTS_FILE,
                     torch.device("cpu"))


# ---- redo generation ------------------------------------------------------------------------------------------


def test_redo_generation_diffuses_twice_and_stays_deterministic(tiny_models, tmp_path):
    from dfm.runtime.render import render

    base = dict(mode="2d", cadence=1, model=str(tiny_models["folder"]), strength=0.5, noise=0.0, translation_x=2.0)
    plain = render(make_table(3, **base), tmp_path / "plain", device="cpu")
    table = make_table(3, optical_flow_redo_generation="dis_medium", **base)
    redo = render(table, tmp_path / "redo", device="cpu")
    render(table, tmp_path / "again", device="cpu")
    # frame 0 has no previous frame; frames 1 and 2 run a trial diffusion first
    steps = [int(s) for s in table["effective_steps"]]
    assert redo.unet_calls - plain.unet_calls == steps[1] + steps[2] > 0
    for i in range(3):
        redo_png = (tmp_path / f"redo/frames/{i:05d}.png").read_bytes()
        assert redo_png == (tmp_path / f"again/frames/{i:05d}.png").read_bytes()
        assert (redo_png == (tmp_path / f"plain/frames/{i:05d}.png").read_bytes()) == (i == 0)


def test_flow_cadence_render_changes_only_the_tweens_and_resumes_exactly(tiny_models, tmp_path):
    from render_outputs import Boom, outputs, stop_at

    from dfm.runtime.render import render

    base = dict(mode="2d", cadence=3, model=str(tiny_models["folder"]), strength=0.4, noise=0.0, translation_x=3.0)
    render(make_table(8, **base), tmp_path / "plain", device="cpu")
    table = make_table(8, optical_flow_cadence="dis_medium", **base)
    render(table, tmp_path / "flow", device="cpu")
    plain, flowed = outputs(tmp_path / "plain"), outputs(tmp_path / "flow")
    tweens_at = [i for i in range(8) if 0 < float(table["tween"][i]) < 1 and int(table["tween_from"][i]) >= 0]
    assert tweens_at == [3, 4, 6]
    for i in range(8):
        name = f"frames/{i:05d}.png"
        assert (plain[name] == flowed[name]) == (i not in tweens_at), i  # a pure diffusion is untouched
    # stopped between the two tweens of a pair (after frame 3), then resumed: the same bytes
    with pytest.raises(Boom):
        render(table, tmp_path / "resumed", device="cpu", progress=stop_at(4))
    render(table, tmp_path / "resumed", device="cpu")
    assert outputs(tmp_path / "resumed") == flowed
