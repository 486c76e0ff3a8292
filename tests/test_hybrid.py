"""Hybrid video (issue 23): the composite mask of each type and its shaping, hybrid motion by matrix and by
optical flow, their places in the frame, the first video frame as init, early errors, and the preview.

The footage is synthetic and lossless (FFV1): a smooth random texture seen through a window that moves a
few pixels per frame, so "the output follows the video" is a measurable statement."""

import cv2
import numpy as np
import pytest
import torch
from tiny_models import make_table, write_lossless_clip

from dfm.runtime import RenderError
from dfm.runtime import hybrid as hy
from dfm.runtime.flow import FlowCache
from dfm.runtime.render import render

SIZE = 64
STEP = (2, 1)  # the window's motion per frame (x, y), pixels: the scene moves by minus this
FRAMES = 8


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random colour texture, uint8 RGB: features for the tracker and flow, no aliasing."""
    rng = np.random.default_rng(seed)
    noise = rng.random((h, w, 3)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 2.0)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return (smooth * 255).round().astype(np.uint8)


def window(canvas: np.ndarray, k: int) -> np.ndarray:
    x, y = 8 + STEP[0] * k, 8 + STEP[1] * k
    return canvas[y:y + SIZE, x:x + SIZE].copy()


def write_clip(path, frames) -> None:
    write_lossless_clip(path, frames)


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    """(path, frames): FRAMES frames of a textured scene panning by STEP per frame."""
    canvas = texture(SIZE + 16 + STEP[1] * FRAMES, SIZE + 16 + STEP[0] * FRAMES)
    frames = [window(canvas, k) for k in range(FRAMES)]
    path = tmp_path_factory.mktemp("hybrid") / "pan.mkv"
    write_clip(path, frames)
    return path, frames


def png(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def hybrid_table(n, footage, model, mode="2d", **kw):
    table = make_table(n, mode=mode, video_init_path=str(footage[0]), model=model, strength=1.0,
                       color_coherence="none", **kw)
    return init_strength_steps(table)


def init_strength_steps(table):
    """Frame 0 starting from the first video frame is img2img at the row's strength, as from an init image
    (Deforum sets init_image to it): its effective_steps set as compiler/lower.py sets an init image's."""
    from dfm.compiler.lower import effective_steps

    eff = np.asarray(table["effective_steps"]).copy()
    eff[0] = effective_steps(np.asarray(table["strength"][:1], float), np.asarray(table["steps"][:1]))[0]
    return table.with_columns(effective_steps=eff)


def interior_error(a: np.ndarray, b: np.ndarray, margin: int = 12) -> float:
    return float(np.abs(a.astype(float) - b.astype(float))[margin:-margin, margin:-margin].mean())


# ---- the mask -----------------------------------------------------------------------------------------------

ROW = {"hybrid_comp_alpha": 1.0, "hybrid_comp_mask_blend_alpha": 0.5, "hybrid_comp_mask_contrast": 1.0,
       "hybrid_comp_mask_auto_contrast_cutoff_low": 0.0, "hybrid_comp_mask_auto_contrast_cutoff_high": 100.0}


def test_blend_mask_is_the_grey_blend_and_difference_is_where_the_frames_differ():
    black, white = np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 255, np.uint8)
    blend = hy.raw_mask("blend", black, white, blend_alpha=0.25)
    assert np.allclose(blend, 0.25, atol=1e-6)
    half = black.copy()
    half[:, :4] = 255  # the previous frame is white on the left; the video black everywhere
    diff = hy.raw_mask("difference", half, black)
    assert np.allclose(diff[:, :4], 1.0) and np.allclose(diff[:, 4:], 0.0)
    assert hy.raw_mask("none", half, black) is None
    near_far = np.tile(np.linspace(0, 1, 8, dtype=np.float32), (8, 1))
    assert np.array_equal(hy.raw_mask("depth", half, black, depth=near_far), near_far)
    assert np.array_equal(hy.raw_mask("video_depth", half, black, video_depth=near_far[::-1]), near_far[::-1])
    with pytest.raises(ValueError):
        hy.raw_mask("depth", half, black)


def test_the_composite_keeps_the_frame_where_the_mask_is_white_then_blends_by_alpha():
    # Deforum's Image.composite(prev, video, mask): the previous frame where white, the video where black
    prev, video = np.zeros((4, 4, 3), np.float32), np.ones((4, 4, 3), np.float32)
    mask = np.zeros((4, 4, 1), np.float32)
    mask[:, 2:] = 1.0
    out = hy.composite(prev, video, mask, 1.0)
    assert (out[:, 2:] == 0).all() and (out[:, :2] == 1).all()
    assert np.allclose(hy.composite(prev, video, mask, 0.5)[:, :2], 0.5)
    assert hy.composite(prev, video, None, 1.0) is video  # no mask: the video frame itself
    assert hy.composite(prev, video, None, 0.0) is prev
    t_prev, t_video = torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4)
    assert torch.equal(hy.composite(t_prev, t_video, torch.zeros(1, 1, 4, 4), 1.0), t_video)  # exact at the ends
    assert torch.equal(hy.composite(t_prev, t_video, torch.ones(1, 1, 4, 4), 1.0), t_prev)


def test_invert_equalise_contrast_and_auto_contrast():
    ramp = np.tile(np.linspace(0.4, 0.6, 64, dtype=np.float32), (64, 1))  # a narrow band of greys
    cs = hy.CompositeSettings(stage="normal", mask="blend")
    assert np.allclose(hy.shape_mask(ramp, hy.CompositeSettings(invert=True), ROW), 1 - ramp, atol=1e-6)
    eq = hy.equalize(ramp)
    assert eq.min() < 0.05 and eq.max() > 0.9  # spread over the full range, order kept
    assert (np.diff(eq[0]) >= 0).all()
    assert np.array_equal(hy.equalize(np.full((4, 4), 0.3, np.float32)), np.full((4, 4), 0.3, np.float32))
    flat = hy.shape_mask(ramp, cs, {**ROW, "hybrid_comp_mask_contrast": 0.0})
    assert np.allclose(flat, ramp.mean(), atol=1e-6)  # contrast 0: the mean grey everywhere
    steep = hy.contrast(ramp, 10.0)
    assert steep.min() == 0.0 and steep.max() == 1.0
    auto = hy.shape_mask(ramp, hy.CompositeSettings(auto_contrast=True),
                         {**ROW, "hybrid_comp_mask_auto_contrast_cutoff_low": 25.0,
                          "hybrid_comp_mask_auto_contrast_cutoff_high": 75.0})
    assert auto.min() == 0.0 and auto.max() == 1.0
    assert np.isclose((auto == 0).mean(), 0.25, atol=0.07) and np.isclose((auto == 1).mean(), 0.25, atol=0.07)
    level = np.full((4, 4), 0.5, np.float32)
    assert np.array_equal(hy.auto_contrast(level, 0, 100), level)  # flat: left alone, no division by zero
    both = hy.shape_mask(ramp, hy.CompositeSettings(equalize="both"), ROW)
    assert both.min() < 0.05 and both.max() > 0.9


# ---- hybrid motion ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["perspective", "affine"])
def test_matrix_motion_recovers_a_known_shift(kind):
    canvas = texture(96, 96, seed=3)
    a, b = canvas[10:74, 10:74], canvas[12:76, 7:71]  # content moves by (+3, -2) from a to b
    m = hy.motion_matrix(a, b, kind)
    assert m.shape == (3, 3)
    assert np.allclose(m[:2, 2], (3, -2), atol=0.3) and np.allclose(m[:2, :2], np.eye(2), atol=0.02)
    moved = hy.move_host(a, m)
    assert interior_error(moved, b, 8) < 0.25 * interior_error(a, b, 8)


def test_flow_motion_moves_the_frame_along_the_video():
    canvas = texture(96, 96, seed=4)
    a, b = canvas[10:74, 10:74], canvas[11:75, 8:72]  # (+2, -1)
    motions = hy.Motions(hy.MotionSettings(kind="optical_flow", method="dis_medium"))
    flow = motions.between(a, b)
    assert flow.shape == (64, 64, 2)
    assert np.allclose(np.median(flow[16:-16, 16:-16], axis=(0, 1)), (2, -1), atol=0.3)
    dev = hy.move(torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255, flow, 1.0)
    moved = (dev[0].permute(1, 2, 0) * 255).round().byte().numpy()
    assert interior_error(moved, b) < 0.3 * interior_error(a, b)
    assert interior_error(hy.move_host(a, flow), moved) < 1.0  # the preview's host warp is the same motion
    half = hy.move(torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255, flow, 0.0)
    assert torch.equal(half, torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255)  # factor 0: no motion


def test_consistency_check_keeps_reliable_flow_and_each_pair_is_measured_once():
    canvas = texture(96, 96, seed=5)
    a, b = canvas[10:74, 10:74], canvas[10:74, 12:76]
    flows = FlowCache()
    motions = hy.Motions(hy.MotionSettings(kind="optical_flow", consistency=True, blur=2), flows)
    first = motions.between(a, b)
    assert flows.misses == 2  # forward and backward
    again = motions.between(a, b)
    assert flows.misses == 2 and np.array_equal(first, again)
    assert np.allclose(np.median(first[16:-16, 16:-16], axis=(0, 1)), (-2, 0), atol=0.3)
    matrices = hy.Motions(hy.MotionSettings(kind="affine"))
    for _ in range(3):
        matrices.between(a, b)
    assert matrices.matrices.computed == 1


# ---- renders ----------------------------------------------------------------------------------------------------


def test_optical_flow_motion_makes_the_render_follow_the_video(tiny_models, footage, tmp_path):
    """Acceptance (2): strength 1 (0 steps: each frame is kept), hybrid motion by optical flow, the first
    video frame as init: every frame k is much closer to video frame k than video frame 0 is."""
    table = hybrid_table(FRAMES, footage, str(tiny_models["folder"]), hybrid_motion="optical_flow")
    report = render(table, tmp_path, device="cpu")
    assert report.unet_calls == 0 and "hybrid" in report.timings
    video = footage[1]
    assert np.array_equal(png(tmp_path / "frames/00000.png"), video[0])  # the first video frame as init
    for k in range(1, FRAMES):
        got = png(tmp_path / f"frames/{k:05d}.png")
        assert interior_error(got, video[k]) < 0.5 * interior_error(video[0], video[k]), k


@pytest.mark.parametrize("kind", ["perspective", "affine"])
def test_matrix_motion_makes_the_render_follow_the_video(tiny_models, footage, tmp_path, kind):
    table = hybrid_table(5, footage, str(tiny_models["folder"]), hybrid_motion=kind)
    render(table, tmp_path, device="cpu")
    video = footage[1]
    for k in range(1, 5):
        got = png(tmp_path / f"frames/{k:05d}.png")
        assert interior_error(got, video[k]) < 0.5 * interior_error(video[0], video[k]), k


@pytest.mark.parametrize("stage", ["normal", "after_generation"])
def test_a_full_composite_is_the_video_frame_itself(tiny_models, footage, tmp_path, stage):
    """Acceptance (3): compositing with alpha 1 and no mask, strength 1, colour coherence none: each frame is
    the video frame, whatever the camera does (here a turn and a zoom)."""
    table = hybrid_table(4, footage, str(tiny_models["folder"]), hybrid_composite=stage, angle=5.0, zoom=1.1)
    render(table, tmp_path, device="cpu")
    for k in range(4):
        assert np.array_equal(png(tmp_path / f"frames/{k:05d}.png"), footage[1][k]), k


def test_before_motion_composites_then_the_camera_moves_it(tiny_models, footage, tmp_path):
    from dfm.runtime.warp import warp_2d

    table = hybrid_table(3, footage, str(tiny_models["folder"]), hybrid_composite="before_motion", angle=5.0)
    render(table, tmp_path, device="cpu")
    for k in (1, 2):
        video = torch.from_numpy(footage[1][k]).permute(2, 0, 1)[None].float() / 255
        want = (warp_2d(video, table.row(k))[0].permute(1, 2, 0) * 255).round().byte().numpy()
        assert np.abs(png(tmp_path / f"frames/{k:05d}.png").astype(int) - want).max() <= 1, k


def test_a_masked_composite_follows_the_mask(tiny_models, footage, tmp_path):
    """A difference mask against a black init: the black frame stays where the video is bright (they differ
    most), the video shows where it is dark (Deforum's polarity)."""
    black = tmp_path / "black.png"
    cv2.imwrite(str(black), np.zeros((SIZE, SIZE, 3), np.uint8))
    table = hybrid_table(2, footage, str(tiny_models["folder"]), hybrid_composite="normal", init_image=str(black),
                         hybrid_use_first_frame_as_init_image=False, hybrid_comp_mask_type="difference")
    render(table, tmp_path / "out", device="cpu")
    assert not png(tmp_path / "out/frames/00000.png").any()
    got, video = png(tmp_path / "out/frames/00001.png").astype(float), footage[1][1].astype(float)
    mask = video @ hy.LUMA / 255  # |black − video| in grey
    assert np.abs(got - video * (1 - mask[..., None])).max() <= 2


def test_hybrid_off_and_a_zero_alpha_composite_change_no_byte(tiny_models, footage, tmp_path):
    model = str(tiny_models["folder"])
    base = make_table(4, mode="2d", model=model, strength=0.5, angle=2.0, cadence=2)
    render(base, tmp_path / "off", device="cpu")
    zero = base.with_settings(hybrid_composite="normal", video_init_path=str(footage[0]),
                              hybrid_use_first_frame_as_init_image=False)
    zero = zero.with_columns(hybrid_comp_alpha=np.zeros(4))
    render(zero, tmp_path / "zero", device="cpu")
    for k in range(4):
        a = (tmp_path / f"off/frames/{k:05d}.png").read_bytes()
        assert a == (tmp_path / f"zero/frames/{k:05d}.png").read_bytes(), k


def test_cadence_moves_every_live_image_and_3d_works(tiny_models, footage, tmp_path):
    model = str(tiny_models["folder"])
    table = hybrid_table(6, footage, model, hybrid_motion="optical_flow", cadence=3)
    render(table, tmp_path / "2d", device="cpu")
    video = footage[1]
    for k in (1, 2, 4, 5):  # tweens: the older diffusion moved with the video as well
        got = png(tmp_path / f"2d/frames/{k:05d}.png")
        assert interior_error(got, video[k]) < 0.5 * interior_error(video[0], video[k]), k
    flat3d = make_table(3, mode="3d", video_init_path=str(footage[0]), model=model, strength=1.0,
                        use_depth_warping=False, hybrid_motion="affine", hybrid_composite="normal",
                        hybrid_comp_alpha=0.5)
    report = render(flat3d, tmp_path / "3d", device="cpu")
    assert report.frames == 3 and report.depth_calls == 0


@pytest.mark.parametrize("k", [2, 3])
def test_a_diffused_hybrid_render_resumes_to_identical_bytes(tiny_models, footage, tmp_path, k):
    """Strength 0.5 (the UNet runs), cadence 2, flow motion from the previous image, a blend-masked composite:
    a render stopped after frame k continues to the bytes of an uninterrupted one."""
    from render_outputs import Boom, outputs, stop_at

    table = init_strength_steps(make_table(5, mode="2d", video_init_path=str(footage[0]), model=str(
        tiny_models["folder"]), strength=0.5, cadence=2, hybrid_motion="optical_flow",
        hybrid_motion_use_prev_img=True, hybrid_composite="normal", hybrid_comp_mask_type="blend",
        hybrid_comp_alpha=0.7, translation_x=1.0))
    render(table, tmp_path / "whole", device="cpu")
    with pytest.raises(Boom):
        render(table, tmp_path / "cut", device="cpu", progress=stop_at(k))
    report = render(table, tmp_path / "cut", device="cpu")
    assert report.resumed_at == k
    assert outputs(tmp_path / "cut") == outputs(tmp_path / "whole")


def test_an_edit_late_in_a_hybrid_render_keeps_the_frames_before_it(tiny_models, footage, tmp_path):
    """An incremental render replays the kept frames (hybrid motion and composite included) and renders the
    rest to the bytes of a fresh render of the edited scene."""
    from render_outputs import outputs

    def scene(alpha3: float):
        alpha = np.full(5, 0.6)
        alpha[3:] = alpha3
        table = make_table(5, mode="2d", video_init_path=str(footage[0]), model=str(tiny_models["folder"]),
                           strength=0.5, hybrid_motion="affine", hybrid_composite="normal", hybrid_comp_alpha=alpha)
        return init_strength_steps(table)

    render(scene(0.6), tmp_path / "edit", device="cpu")
    report = render(scene(0.2), tmp_path / "edit", device="cpu")
    assert report.kept_frames == 3
    render(scene(0.2), tmp_path / "fresh", device="cpu")
    assert outputs(tmp_path / "edit") == outputs(tmp_path / "fresh")


@pytest.mark.parametrize(("mode", "mask", "calls"), [("3d", "depth", 2), ("3d", "video_depth", 4),
                                                    ("2d", "depth", 2), ("2d", "video_depth", 2)])
def test_depth_masks_load_a_depth_model_in_2d_and_3d(tiny_models, footage, tmp_path, mode, mask, calls):
    """3D predicts the newest diffusion's depth each frame anyway (the depth mask reuses it); 2D loads a depth
    model for the mask alone. The mask is the saved depth maps' scale, far white."""
    from tiny_models import save_depth_models

    depth = save_depth_models(tmp_path / "depth")["dpt"]
    table = hybrid_table(3, footage, str(tiny_models["folder"]), mode=mode, hybrid_composite="normal",
                         hybrid_comp_mask_type=mask, depth_model=str(depth))
    report = render(table, tmp_path / "out", device="cpu")
    assert report.frames == 3 and report.depth_calls == calls


def test_the_init_image_as_a_still_hybrid_video(tiny_models, tmp_path):
    still = texture(SIZE, SIZE, seed=9)
    path = tmp_path / "still.png"
    cv2.imwrite(str(path), cv2.cvtColor(still, cv2.COLOR_RGB2BGR))
    table = make_table(3, mode="2d", model=str(tiny_models["folder"]), strength=1.0, init_image=str(path),
                       hybrid_use_init_image=True, hybrid_composite="after_generation", translation_x=4.0)
    render(table, tmp_path / "out", device="cpu")  # no video_init_path needed
    for k in range(3):
        assert np.array_equal(png(tmp_path / f"out/frames/{k:05d}.png"), still), k


@pytest.mark.parametrize("settings", [{"hybrid_motion": "optical_flow"}, {"hybrid_composite": "normal"}])
def test_hybrid_without_a_video_fails_before_any_model_loads(tmp_path, settings):
    table = make_table(3, mode="2d", model=str(tmp_path / "no-such-model"), **settings)
    with pytest.raises(RenderError) as e:
        render(table, tmp_path / "out", device="cpu")
    assert "needs an input video" in e.value.message and "video_init_path" in e.value.help
    assert not (tmp_path / "out").exists()
    still = make_table(3, mode="2d", model=str(tmp_path / "no-such-model"), hybrid_use_init_image=True, **settings)
    with pytest.raises(RenderError, match="init image"):
        render(still, tmp_path / "out", device="cpu")


def test_a_short_hybrid_video_fails_before_any_model_loads(footage, tmp_path):
    table = make_table(FRAMES + 1, mode="2d", model=str(tmp_path / "no-such-model"),
                       video_init_path=str(footage[0]), hybrid_motion="affine")
    with pytest.raises(RenderError, match=f"gives {FRAMES} frames"):
        render(table, tmp_path / "out", device="cpu")


# ---- the preview ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["optical_flow", "affine"])
def test_the_preview_card_moves_with_the_video(footage, kind):
    from dfm.runtime.preview import camera_frames, motion_card, preview_frames, to_uint8

    table = make_table(5, mode="2d", video_init_path=str(footage[0]), hybrid_motion=kind)
    frames = list(camera_frames(table))
    card = to_uint8(motion_card(SIZE, SIZE))
    assert len(frames) == 5 and np.array_equal(frames[0], card)
    for k in range(1, 5):  # the video's content moves by −STEP a frame: so does the card
        shift = np.float32([[1, 0, -STEP[0] * k], [0, 1, -STEP[1] * k]])
        want = cv2.warpAffine(card, shift, (SIZE, SIZE), borderMode=cv2.BORDER_REPLICATE)
        assert interior_error(frames[k], want) < 0.3 * interior_error(card, want), k
    assert len(list(preview_frames(table))) == 5  # with the overlay too


def test_the_preview_shows_the_composite(footage):
    from dfm.runtime.preview import camera_frames

    table = make_table(3, mode="2d", video_init_path=str(footage[0]), hybrid_composite="normal",
                       hybrid_comp_alpha=0.5)
    frames = list(camera_frames(table))
    for k in (1, 2):  # half the video each frame: much closer to it than the card is
        assert interior_error(frames[k], footage[1][k]) < 0.75 * interior_error(frames[0], footage[1][k])


def test_raft_without_its_weights_fails_before_any_model_loads(footage, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    table = make_table(3, mode="2d", model=str(tmp_path / "no-such-model"), video_init_path=str(footage[0]),
                       hybrid_motion="optical_flow", hybrid_flow_method="raft")
    with pytest.raises(RenderError, match="RAFT-large weights"):
        render(table, tmp_path / "out", device="cpu")
    assert not (tmp_path / "out").exists()
