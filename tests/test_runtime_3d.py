"""3D mode: the depth-warped camera against a numpy re-derivation of Deforum's projection and the signs the
reference lists, the depth models (tiny DPT and Depth Anything saved and loaded like hub folders), depth
once per frame from the newest image, and the flythrough example rendered end to end."""

import json
import math
import re
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny_models import make_table, save_depth_models

from dfm.api import compile_text
from dfm.runtime import RenderError
from dfm.runtime.checks import check_table
from dfm.runtime.depth import (
    DepthEstimator,
    blend_flat,
    depth_image,
    depth_map_scale,
    input_size,
    midas_to_depth,
    relative_to_depth,
    resolve_depth_folder,
)
from dfm.runtime.device import pick_device
from dfm.runtime.frame import FrameRenderer
from dfm.runtime.render import render
from dfm.runtime.timing import StageTimer
from dfm.runtime.warp import camera_3d, offsets_3d, warp_3d

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
STILL = {
    "translation_x": 0.0,
    "translation_y": 0.0,
    "translation_z": 0.0,
    "rotation_3d_x": 0.0,
    "rotation_3d_y": 0.0,
    "rotation_3d_z": 0.0,
    "fov": 40.0,
    "near": 200.0,
    "far": 10000.0,
}


def motion(**kw):
    return {**STILL, **kw}


def blob(h=64, w=64, cx=None, cy=None, r=5.0):
    """(1, 3, H, W) dark frame with a bright Gaussian spot at (cx, cy) (default: the centre)."""
    cx = (w - 1) / 2 if cx is None else cx
    cy = (h - 1) / 2 if cy is None else cy
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    spot = torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * r * r))
    return spot.expand(1, 3, h, w).clone()


def centroid(frame):
    m = frame[0, 0].double()
    h, w = m.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    return float((m * xs).sum() / m.sum()), float((m * ys).sum() / m.sum())


# ---- the warp -----------------------------------------------------------------------------------------------


def numpy_offsets(depth, row, aspect=1.0):
    """Deforum's transform_image_3d offsets re-derived from the reference: pytorch3d row vectors
    X_cam = X·R + T with R = Rx·Ry·Rz (XYZ), T = (−tx, ty, −tz)/200, x_ndc = x/(tan(fov/2)·ar·z),
    y_ndc = y/(tan(fov/2)·z)."""
    h, w = depth.shape
    y, x = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    pts = np.stack([x.ravel(), y.ravel(), depth.ravel()], axis=1).astype(np.float64)
    a, b, c = (math.radians(row[k]) for k in ("rotation_3d_x", "rotation_3d_y", "rotation_3d_z"))
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    t = np.array([-row["translation_x"], row["translation_y"], -row["translation_z"]]) / 200.0
    tan = math.tan(math.radians(row["fov"]) / 2)

    def project(p):
        return np.stack([p[:, 0] / (tan * aspect * p[:, 2]), p[:, 1] / (tan * p[:, 2])], axis=1)

    return (project(pts @ (rx @ ry @ rz) + t) - project(pts)).reshape(h, w, 2)


def synthetic_depth(h=48, w=64):
    """A slanted floor (0.8 near the bottom to 2.5 at the top) with a near box in the middle."""
    ys = np.linspace(2.5, 0.8, h)[:, None] * np.ones((1, w))
    ys[16:32, 24:40] = 0.9
    return ys.astype(np.float32)


@pytest.mark.parametrize(
    "row",
    [
        motion(translation_x=3.0, translation_y=-2.0, translation_z=7.0),
        motion(rotation_3d_x=1.5, rotation_3d_y=-2.0, rotation_3d_z=4.0, fov=60.0),
        motion(translation_x=-1.0, translation_z=4.0, rotation_3d_y=0.7, rotation_3d_z=-1.0, fov=25.0),
    ],
)
def test_offsets_match_a_numpy_rederivation_of_the_projection(row):
    depth = synthetic_depth()
    r, t = camera_3d(row)
    got = offsets_3d(torch.from_numpy(depth), r, t, row["fov"]).numpy()
    want = numpy_offsets(depth.astype(np.float64), row)
    assert got.shape == (48, 64, 2)
    assert np.abs(got - want).max() < 1e-5 * max(1.0, np.abs(want).max())
    assert np.abs(want).max() > 1e-3  # the motion moves pixels: the comparison is not of zeros
    # near pixels (the box) move further than the far floor behind them under translation
    if row["translation_x"] and not row["rotation_3d_y"]:
        assert abs(got[24, 32, 0]) > abs(got[2, 32, 0])


def test_the_warp_samples_the_identity_grid_minus_the_offsets():
    row = motion(translation_x=5.0, rotation_3d_z=3.0, translation_z=6.0)
    depth = synthetic_depth()
    frame = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(1))
    off = torch.from_numpy(numpy_offsets(depth.astype(np.float64), row)).float()
    ident = F.affine_grid(torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]]), [1, 1, 48, 64], align_corners=False)
    want = F.grid_sample(frame, ident - off[None], mode="bilinear", padding_mode="zeros", align_corners=False)
    got = warp_3d(frame, torch.from_numpy(depth), row, padding_mode="zeros", sampling_mode="bilinear")
    assert torch.allclose(got, want.clamp(0, 1), atol=1e-4)


def test_identity_motion_is_exact():
    frame = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(2))
    depth = torch.from_numpy(synthetic_depth(40, 56))
    r, t = camera_3d(STILL)
    assert torch.count_nonzero(offsets_3d(depth, r, t, 40.0)) == 0
    for mode in ("bicubic", "bilinear", "nearest"):
        assert torch.equal(warp_3d(frame, depth, STILL, padding_mode="border", sampling_mode=mode), frame)


def test_translation_z_zooms_in_about_the_centre():
    frame = torch.zeros(1, 3, 64, 64)
    frame[..., 24:40, 24:40] = 1.0  # a centred square
    out = warp_3d(frame, None, motion(translation_z=20.0), sampling_mode="bilinear")
    before = int((frame[0, 0] > 0.5).sum())
    after = int((out[0, 0] > 0.5).sum())
    assert after > 1.15 * before  # grows...
    cx, cy = centroid(out)
    assert abs(cx - 31.5) < 0.05 and abs(cy - 31.5) < 0.05  # ...about the centre
    assert torch.allclose(out, out.flip(-1), atol=1e-5) and torch.allclose(out, out.flip(-2), atol=1e-5)
    back = warp_3d(frame, None, motion(translation_z=-20.0), sampling_mode="bilinear")
    assert int((back[0, 0] > 0.5).sum()) < before  # flying backwards zooms out


@pytest.mark.parametrize(
    ("key", "value", "dx", "dy"),
    [
        ("translation_x", 10.0, -1, 0),  # the opposite of 2D: the camera moves right, content left
        ("translation_y", 10.0, 0, 1),  # content down
        ("rotation_3d_y", 3.0, -1, 0),  # content left
        ("rotation_3d_x", 3.0, 0, 1),  # content down
    ],
)
def test_signs_of_translation_and_rotation(key, value, dx, dy):
    frame = blob()
    x0, y0 = centroid(frame)
    x1, y1 = centroid(warp_3d(frame, None, motion(**{key: value}), padding_mode="zeros"))
    assert np.sign(round(x1 - x0, 2)) == dx and np.sign(round(y1 - y0, 2)) == dy
    assert max(abs(x1 - x0), abs(y1 - y0)) > 1.0


@pytest.mark.parametrize("degrees", [2.0, -2.0])
def test_rotation_3d_z_turns_counter_clockwise(degrees):
    frame = blob(cx=48.0, cy=31.5, r=3.0)  # right of the centre
    x, y = centroid(warp_3d(frame, None, motion(rotation_3d_z=degrees), padding_mode="zeros"))
    angle = math.degrees(math.atan2(-(y - 31.5), x - 31.5))  # on screen, y points down
    # positive turns up and round to the left: counter-clockwise. Deforum subtracts projected (NDC)
    # offsets from the sampling grid, so the screen turns by about rz / tan(fov / 2), 2.7× at fov 40
    assert angle == pytest.approx(degrees / math.tan(math.radians(20)), rel=0.05)


def test_near_and_far_change_nothing_and_fov_does():
    frame = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    depth = torch.from_numpy(synthetic_depth(32, 32))
    base = warp_3d(frame, depth, motion(translation_x=4.0, translation_z=5.0))
    other = warp_3d(frame, depth, motion(translation_x=4.0, translation_z=5.0, near=1.0, far=50.0))
    assert torch.equal(base, other)
    wide = warp_3d(frame, depth, motion(translation_x=4.0, translation_z=5.0, fov=90.0))
    assert (wide - base).abs().max() > 0.05


def test_without_depth_every_pixel_is_at_z_one():
    frame = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(4))
    row = motion(translation_x=3.0, rotation_3d_y=1.0, translation_z=8.0)
    assert torch.equal(warp_3d(frame, None, row), warp_3d(frame, torch.ones(32, 48), row))


def test_depth_at_or_below_zero_is_clamped_not_exploded():
    frame = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    depth = torch.from_numpy(synthetic_depth(32, 32))
    depth[:8] = 0.0
    depth[8:12] = -3.0
    for mode in ("border", "reflection", "zeros"):
        out = warp_3d(frame, depth, motion(translation_x=2.0, translation_z=3.0), padding_mode=mode)
        assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert torch.isfinite(offsets_3d(depth, *camera_3d(motion(translation_z=3.0)), 40.0)).all()


def test_padding_and_sampling_modes():
    frame = torch.full((1, 3, 32, 32), 0.5)
    frame[..., ::2, :] = 1.0
    row = motion(translation_x=20.0)  # content moves left: a band at the right comes from outside
    zeros = warp_3d(frame, None, row, padding_mode="zeros", sampling_mode="nearest")
    border = warp_3d(frame, None, row, padding_mode="border", sampling_mode="nearest")
    assert zeros[..., -1].max() == 0 and border[..., -1].min() >= 0.5
    assert set(torch.unique(border).tolist()) <= {0.5, 1.0}  # nearest only copies pixels
    with pytest.raises(ValueError, match="padding_mode"):
        warp_3d(frame, None, row, padding_mode="wrap")
    with pytest.raises(ValueError, match="sampling_mode"):
        warp_3d(frame, None, row, sampling_mode="area")


# ---- depth models --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def depth_models(tmp_path_factory):
    return save_depth_models(tmp_path_factory.mktemp("depth"))


def smooth_frame(h=64, w=96):
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    img = torch.stack([xx, yy, xx * yy], 0)[None]
    return (img * 255).round() / 255


def hf_reference(folder, frame):
    """What transformers' own processor + model give, resized to the frame (bicubic)."""
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    proc = AutoImageProcessor.from_pretrained(str(folder))
    model = AutoModelForDepthEstimation.from_pretrained(str(folder)).eval()
    rgb = (frame[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    with torch.no_grad():
        pred = model(pixel_values=proc(images=rgb, return_tensors="pt").pixel_values).predicted_depth
    return F.interpolate(pred[:, None], size=frame.shape[-2:], mode="bicubic", align_corners=False)[0, 0]


@pytest.mark.parametrize("kind", ["dpt", "depth_anything"])
def test_depth_model_loads_and_matches_transformers_own_preprocessing(depth_models, kind):
    est = DepthEstimator(str(depth_models[kind]), pick_device("cpu"), midas_weight=1.0)
    frame = smooth_frame()  # 64×96: not square
    raw = est.raw(frame)
    assert raw.shape == (64, 96) and raw.dtype == torch.float32 and est.calls == 1
    ref = hf_reference(depth_models[kind], frame)
    assert (raw - ref).abs().max() < 0.02 * ref.abs().max()  # resize kernels differ a little, nothing else
    assert raw.std() > 0.01 * raw.abs().max()  # a map, not a constant


def test_square_only_dpt_is_fed_a_square(depth_models):
    from transformers import AutoModelForDepthEstimation

    model = AutoModelForDepthEstimation.from_pretrained(str(depth_models["dpt"]))
    with pytest.raises(RuntimeError):  # why the estimator resizes to a square and back
        model(pixel_values=torch.zeros(1, 3, 64, 96))
    est = DepthEstimator(str(depth_models["dpt"]), pick_device("cpu"), midas_weight=1.0)
    assert est.network_size(64, 96) == (64, 64)
    anything = DepthEstimator(str(depth_models["depth_anything"]), pick_device("cpu"), midas_weight=1.0)
    assert anything.network_size(64, 96) == (56, 84)  # keeps the aspect ratio, multiples of 14


def test_input_size_follows_the_dpt_processor_rule():
    assert input_size(512, 768, (518, 518), True, 14) == (518, 784)
    assert input_size(64, 96, (384, 384), False, 32) == (384, 384)
    assert input_size(480, 640, (384, 384), True, 32) == (384, 512)


def test_depth_units_and_midas_weight(depth_models):
    frame = smooth_frame()
    dpt = DepthEstimator(str(depth_models["dpt"]), pick_device("cpu"), midas_weight=1.0)
    raw = dpt.raw(frame)
    assert torch.allclose(dpt.predict(frame), (50 - raw) / 19, atol=1e-6)  # MiDaS: Deforum's (50 - d) / 19
    anything = DepthEstimator(str(depth_models["depth_anything"]), pick_device("cpu"), midas_weight=1.0)
    d = anything.predict(frame)
    assert d.min().item() == pytest.approx(1.0, abs=1e-5) and d.max().item() == pytest.approx(50 / 19, abs=1e-5)
    # nearer (larger disparity) is smaller depth
    ra = anything.raw(frame)
    assert d.flatten()[ra.argmax()] == d.min() and d.flatten()[ra.argmin()] == d.max()
    # midas_weight: w·depth + (1 − w)·mean(depth); 0 is a flat plane at the mean
    half = DepthEstimator(str(depth_models["dpt"]), pick_device("cpu"), midas_weight=0.3).predict(frame)
    full = (50 - raw) / 19
    assert torch.allclose(half, 0.3 * full + 0.7 * full.mean(), atol=1e-5)
    assert torch.allclose(blend_flat(full, 0.0), torch.full_like(full, float(full.mean())))
    assert torch.equal(midas_to_depth(torch.tensor([0.0, 50.0])), torch.tensor([50 / 19, 0.0]))
    assert torch.allclose(relative_to_depth(torch.tensor([2.0, 4.0, 6.0])), torch.tensor([50 / 19, 34.5 / 19, 1.0]))


def test_depth_maps_are_16_bit_values_on_one_fixed_scale_far_white():
    top = 50 / 19  # the farthest a MiDaS map can be in Deforum units
    img = depth_image(torch.tensor([[0.0, top / 2], [top, 2 * top]]))
    assert img.shape == (2, 2) and img.tolist() == [[0, 32768], [65535, 65535]]  # clipped past the scale
    assert depth_image(torch.tensor([[1.0]]), "metric").item() == round(65535 / 100)
    scale = depth_map_scale("midas")
    assert scale["max"] == top and "16-bit" in scale["format"] and scale["far"] == "white"


def test_depth_model_errors_are_render_errors(tmp_path, depth_models):
    with pytest.raises(RenderError, match="does not exist"):
        resolve_depth_folder(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(RenderError, match="config.json"):
        resolve_depth_folder(str(tmp_path / "empty"))
    start = time.perf_counter()
    with pytest.raises(RenderError, match="not in the local Hugging Face cache"):
        resolve_depth_folder("Intel/dpt-hybrid-midas")  # HF_HUB_OFFLINE: fails at once
    assert time.perf_counter() - start < 5
    assert resolve_depth_folder("dpt", base_dirs=(depth_models["dpt"].parent,)) == depth_models["dpt"].resolve()
    from dfm.runtime.depth import depth_kind

    with pytest.raises(RenderError, match="not supported"):
        depth_kind(SimpleNamespace(model_type="glpn"))


def test_an_uncached_depth_model_offline_names_every_way_on():
    # conftest sets HF_HUB_OFFLINE and an empty cache: this id is not there, and nothing touches the network
    start = time.perf_counter()
    with pytest.raises(RenderError) as e:
        resolve_depth_folder("someone/not-a-cached-depth-model")
    assert time.perf_counter() - start < 5
    assert "someone/not-a-cached-depth-model is not in the local Hugging Face cache" in e.value.message
    assert "HF_HUB_OFFLINE" in e.value.message
    help = e.value.help
    # download: the exact command, fetching what the render loads and no pickles
    assert '`hf download someone/not-a-cached-depth-model --include "*.json" --include "*.safetensors"`' in help
    assert "*.bin" not in help
    assert "depth_model" in help and "local folder" in help  # or a folder
    assert "`use_depth_warping off`" in help  # or no depth at all
    with pytest.raises(RenderError) as e:
        resolve_depth_folder("someone/not-a-cached-depth-model", allow_pickle=True)
    assert '--include "*.bin"' in e.value.help


# ---- in the loop -------------------------------------------------------------------------------------------


class RecordingDepth:
    """Stands in for a DepthEstimator: a flat depth map, and a record of which image each frame used."""

    def __init__(self):
        self.seen = []  # (frame index, the image's mean value)

    def predict(self, image):
        self.seen.append(float(image.mean()))
        return torch.full(image.shape[-2:], 1.5)


def test_depth_is_predicted_once_per_frame_from_the_newest_image():
    table = make_table(8, mode="3d", cadence=3, translation_x=1.0, translation_z=2.0)
    sd = SimpleNamespace(family="sd15", placement=pick_device("cpu"), encode_text=None)
    depth = RecordingDepth()
    calls = []

    class Renderer(FrameRenderer):
        def diffuse(self, i, row):  # diffusion k is a flat grey of value k/10, easy to recognise after warps
            return torch.full((1, 3, 16, 16), i / 10)

        def predict_depth(self, i, image):
            calls.append(i)
            return super().predict_depth(i, image)

    renderer = Renderer(table, sd, StageTimer(), depth=depth)
    for i in range(8):
        renderer.frame(i, table.row(i))
    assert calls == [1, 2, 3, 4, 5, 6, 7]  # one depth map per frame, shared by both warps of a tween
    # frames 1-3 warp D0 (frame 3's diffusion starts from it); 4-6 the newer D3, as Deforum's turbo_next
    assert [round(v * 10) for v in depth.seen] == [0, 0, 0, 3, 3, 3, 6]


SCENE_SHRINK = {
    r"^size .*$": "size            64x64",
    r"^duration .*$": "frames          8",
    r"^steps .*$": "steps           2",
}


def flythrough(depth_folder, save_maps=False):
    text = (EXAMPLES / "flythrough_3d.dfm").read_text(encoding="utf-8")
    for pattern, repl in SCENE_SHRINK.items():
        text, n = re.subn(pattern, repl, text, flags=re.M)
        assert n == 1, pattern
    text, n = re.subn(r'^depth_model .*$', f'depth_model       "{depth_folder}"', text, flags=re.M)
    assert n == 1
    if save_maps:
        text += "save_depth_maps on\n"
    return compile_text(text, "flythrough_3d.dfm"), text


def test_flythrough_example_renders_in_3d_with_cadence(tiny_models, depth_models, tmp_path):
    table, text = flythrough(depth_models["dpt"], save_maps=True)
    assert table.settings.mode == "3d" and table.settings.cadence == 3 and len(table) == 8
    check_table(table)  # 3d is no longer refused
    report = render(table, tmp_path, scene_text=text, model=str(tiny_models["folder"]), device="cpu")
    frames = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert frames == [f"{i:05d}.png" for i in range(8)] and report.frames == 8
    assert report.unet_calls == int(table["effective_steps"].sum())
    # one depth map per warped frame (1-7) plus frame 0's own, each written as depth/NNNNN.png; frame 0's is
    # that of diffusion 0, which frame 1 warps: predicted once
    assert report.depth_calls == 7 and report.depth_maps == 8
    maps = sorted(p.name for p in (tmp_path / "depth").iterdir())
    assert maps == [f"{i:05d}.png" for i in range(8)]
    assert (tmp_path / "depth/00000.png").read_bytes() == (tmp_path / "depth/00001.png").read_bytes()
    d = cv2.imread(str(tmp_path / "depth/00004.png"), cv2.IMREAD_UNCHANGED)
    assert d.shape == (64, 64) and d.dtype == np.uint16 and d.max() > d.min()  # 16-bit grey, what compositors read
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["depth_map_scale"]["max"] == pytest.approx(50 / 19)
    assert "depth" in report.timings and (tmp_path / "video.mp4").is_file()
    # the camera moved: consecutive frames differ
    f1 = cv2.imread(str(tmp_path / "frames/00001.png")).astype(int)
    f2 = cv2.imread(str(tmp_path / "frames/00002.png")).astype(int)
    assert np.abs(f1 - f2).mean() > 0.5


def test_3d_render_with_depth_anything_is_deterministic_and_depth_changes_it(tiny_models, depth_models, tmp_path):
    common = dict(mode="3d", cadence=2, model=str(tiny_models["folder"]), size=(64, 48), strength=0.6, noise=0.0)
    motion_cols = dict(translation_x=6.0, translation_z=10.0, rotation_3d_y=1.0, steps=2)
    common["depth_model"] = str(depth_models["depth_anything"])
    a = make_table(5, **common, **motion_cols)
    flat = make_table(5, use_depth_warping=False, **common, **motion_cols)
    ra = render(a, tmp_path / "a", device="cpu")
    render(a, tmp_path / "a2", device="cpu")
    rf = render(flat, tmp_path / "flat", device="cpu")
    assert ra.depth_calls == 4 and rf.depth_calls == 0  # no depth warping, no depth maps: no depth model
    assert not (tmp_path / "a/depth").exists()
    for i in range(5):
        name = f"frames/{i:05d}.png"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "a2" / name).read_bytes()
    last = [cv2.imread(str(tmp_path / k / "frames/00004.png")).astype(int) for k in ("a", "flat")]
    assert np.abs(last[0] - last[1]).max() > 5  # the depth map shapes the warp


def test_3d_errors_before_loading(tmp_path, depth_models, tiny_models):
    missing_depth = make_table(2, mode="3d", model=str(tmp_path / "no-model"), depth_model=str(tmp_path / "no-depth"))
    with pytest.raises(RenderError, match="depth model folder"):
        render(missing_depth, tmp_path / "out", device="cpu")
    bad = make_table(2, mode="3d", depth_model=str(depth_models["dpt"]), padding_mode="wrap")
    with pytest.raises(RenderError, match="padding_mode"):
        check_table(bad)
    no_depth = make_table(2, mode="3d", model=str(tmp_path / "no-model"))
    with pytest.raises(RenderError, match="needs a depth model"):
        render(no_depth, tmp_path / "out", device="cpu")
    assert not (tmp_path / "out").exists()
    # render(depth_model=...) overrides the scene's, as model= does
    model, depth = str(tiny_models["folder"]), str(depth_models["dpt"])
    ok = render(no_depth, tmp_path / "ok", model=model, depth_model=depth, device="cpu")
    manifest = json.loads((tmp_path / "ok/manifest.json").read_text())
    assert ok.depth_calls == 1 and manifest["depth_model"]["kind"] == "midas" and manifest["depth_calls"] == 1
