"""ControlNet control images: sources (video, image, folder, loopback) by scene frame, sd-webui-controlnet's
resize modes and preprocessors, the content cache, saved frames, missing weights, and the preview panels."""

import dataclasses

import cv2
import numpy as np
import pytest
import torch
from tiny_models import write_lossless_clip

from dfm.contract.controlnet import UnitSettings
from dfm.contract.table import Settings
from dfm.runtime import RenderError
from dfm.runtime import control_images as ci
from dfm.runtime.control_images import ControlImages, border_colour, fit, pixel_perfect_resolution

COLOURS = [((37 * k) % 256, (255 - 29 * k) % 256, (90 + 71 * k) % 256) for k in range(12)]
STRIPES = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
CPU = torch.device("cpu")


def settings(**kw) -> Settings:
    return Settings({"mode": "2d", "extract_from_frame": 0, "extract_nth_frame": 1, "extract_to_frame": -1,
                     "annotator_dir": None, **kw})


def unit(source, module="none", **kw) -> UnitSettings:
    base = dict(number=1, model="m", module=module, source=None if source is None else str(source), mask=None,
                loopback=False, processor_res=64, threshold_a=None, threshold_b=None, resize_mode="just_resize",
                control_mode="balanced", pixel_perfect=False)
    return UnitSettings(**{**base, **kw})


def write_png(path, rgb: np.ndarray):
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def write_video(path, frames):
    return write_lossless_clip(path, frames)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """12 frames of 48×40, frame k a solid COLOURS[k], lossless."""
    return write_video(tmp_path_factory.mktemp("cn") / "clip.mkv",
                       [np.full((40, 48, 3), c, np.uint8) for c in COLOURS])


def stripes(h=32, w=64) -> np.ndarray:
    """A 2:1 image of four vertical stripes, STRIPES left to right."""
    img = np.zeros((h, w, 3), np.uint8)
    for k, c in enumerate(STRIPES):
        img[:, k * w // 4:(k + 1) * w // 4] = c
    return img


def square(contrast=155, background=100) -> np.ndarray:
    img = np.full((64, 64, 3), background, np.uint8)
    img[16:48, 16:48] = background + contrast
    return img


def colour_of(t: torch.Tensor) -> tuple[int, ...]:
    """The single colour of a control image (asserting it is flat)."""
    u8 = (t[0] * 255).round().to(torch.uint8)
    flat = u8.reshape(3, -1)
    assert (flat == flat[:, :1]).all()
    return tuple(int(v) for v in flat[:, 0])


# ---- resize modes ------------------------------------------------------------------------------------------------


def test_just_resize_stretches_a_2to1_source():
    out = fit(stripes(), 64, 64, "just_resize")
    assert out.shape == (64, 64, 3)
    for k, c in enumerate(STRIPES):  # four stripes, each a quarter of the width, full height
        assert (out[:, k * 16:(k + 1) * 16] == c).all()


def test_crop_and_resize_keeps_the_centre():
    out = fit(stripes(), 64, 64, "crop_and_resize")
    assert out.shape == (64, 64, 3)
    # the outer stripes cut off (bicubic: two colours are not a map of flat colours, so the seam is soft)
    assert (out[:, :30] == STRIPES[1]).all() and (out[:, 34:] == STRIPES[2]).all()


def test_resize_and_fill_pads_top_and_bottom_with_the_border_median():
    src = stripes()
    out = fit(src, 64, 64, "resize_and_fill")
    assert out.shape == (64, 64, 3)
    assert (out[16:48] == src).all()  # the whole source, centred, at scale 1
    pad = border_colour(src)
    assert (out[:16] == pad).all() and (out[48:] == pad).all()
    # a line drawing on white is padded white (the median of its border), not black
    drawing = np.full((32, 64, 3), 255, np.uint8)
    cv2.line(drawing, (5, 5), (60, 28), (0, 0, 0), 2)
    filled = fit(drawing, 64, 64, "resize_and_fill")
    assert (filled[:16] == 255).all() and (filled[48:] == 255).all()


def test_resize_modes_through_control_images(tmp_path):
    path = write_png(tmp_path / "wide.png", stripes())
    for mode, left in (("just_resize", STRIPES[0]), ("crop_and_resize", STRIPES[1])):
        img = ControlImages(unit(path, resize_mode=mode), settings(), 64, 64, CPU).array(0)
        assert tuple(img[40, 2]) == left, mode
    filled = ControlImages(unit(path, resize_mode="resize_and_fill"), settings(), 64, 64, CPU).array(0)
    assert (filled[:16] == filled[0, 0]).all() and tuple(filled[32, 2]) == STRIPES[0]


# ---- preprocessors -----------------------------------------------------------------------------------------------


def test_none_is_the_source_and_invert_inverts(tmp_path):
    src = square()
    path = write_png(tmp_path / "sq.png", src)
    none = ControlImages(unit(path), settings(), 64, 64, CPU).image(0)
    assert none.shape == (1, 3, 64, 64) and none.dtype == torch.float32
    assert (none[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy().tolist() == src.tolist()
    inv = ControlImages(unit(path, module="invert"), settings(), 64, 64, CPU).array(0)
    assert (inv == 255 - src).all()


def test_canny_finds_the_edges_of_a_square(tmp_path):
    path = write_png(tmp_path / "sq.png", square())
    edges = ControlImages(unit(path, module="canny"), settings(), 64, 64, CPU).array(0)
    assert set(np.unique(edges)) == {0, 255}
    on = edges[:, :, 0] > 0
    ring = np.zeros((64, 64), bool)
    ring[14:50, 14:50] = True
    ring[18:46, 18:46] = False
    assert on[ring].sum() > 100  # the square's outline
    assert not on[~ring].any()  # nothing inside or outside it
    assert (edges[:, :, 0] == edges[:, :, 1]).all() and (edges[:, :, 0] == edges[:, :, 2]).all()


def test_canny_thresholds_matter(tmp_path):
    path = write_png(tmp_path / "faint.png", square(contrast=12))
    strict = ControlImages(unit(path, module="canny"), settings(), 64, 64, CPU).array(0)  # 100 / 200
    loose = ControlImages(unit(path, module="canny", threshold_a=5, threshold_b=10), settings(), 64, 64,
                          CPU).array(0)
    assert not strict.any()
    assert loose[:, :, 0].astype(bool).sum() > 100


def test_canny_runs_at_processor_res(tmp_path):
    """At processor_res 16 the edges are found on a 16² image and enlarged: thicker than at 64."""
    path = write_png(tmp_path / "sq.png", square())
    fine = ControlImages(unit(path, module="canny"), settings(), 64, 64, CPU).array(0)
    coarse = ControlImages(unit(path, module="canny", processor_res=16), settings(), 64, 64, CPU).array(0)
    assert coarse.shape == fine.shape == (64, 64, 3)
    assert coarse[:, :, 0].astype(bool).sum() > fine[:, :, 0].astype(bool).sum()


def test_negative_thresholds_mean_the_defaults(tmp_path):
    path = write_png(tmp_path / "sq.png", square())
    default = ControlImages(unit(path, module="canny"), settings(), 64, 64, CPU)
    minus_one = ControlImages(unit(path, module="canny", threshold_a=-1, threshold_b=-1), settings(), 64, 64, CPU)
    assert (default.a, default.b) == (minus_one.a, minus_one.b) == (100.0, 200.0)
    assert (default.array(0) == minus_one.array(0)).all()


def test_a_16_bit_image_is_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 64).round().astype(np.uint16)[None].repeat(8, axis=0)
    cv2.imwrite(str(tmp_path / "d.png"), ramp)
    img = ControlImages(unit(tmp_path / "d.png"), settings(), 64, 8, CPU).array(0)
    assert img[0, 0, 0] == 0 and img[0, -1, 0] == 255 and abs(int(img[0, 32, 0]) - round(32 / 63 * 255)) <= 1


def test_pixel_perfect_resolution():
    # sd-webui-controlnet: covering modes take the larger scale factor × the short side, fill the smaller
    assert pixel_perfect_resolution(512, 1024, 512, 512, "crop_and_resize") == 512
    assert pixel_perfect_resolution(512, 1024, 512, 512, "just_resize") == 512
    assert pixel_perfect_resolution(512, 1024, 512, 512, "resize_and_fill") == 256
    assert pixel_perfect_resolution(300, 400, 768, 512, "crop_and_resize") == round(768 / 300 * 300)
    assert pixel_perfect_resolution(300, 400, 768, 512, "resize_and_fill") == round(512 / 400 * 300)


def test_pixel_perfect_sets_the_processor_res(tmp_path, monkeypatch):
    seen = []
    real = ci.canny
    monkeypatch.setattr(ci, "canny", lambda x, res, a, b: seen.append(res) or real(x, res, a, b))
    path = write_png(tmp_path / "wide.png", np.zeros((100, 200, 3), np.uint8))
    for mode in ("crop_and_resize", "resize_and_fill"):
        ControlImages(unit(path, module="canny", pixel_perfect=True, processor_res=999, resize_mode=mode),
                      settings(), 64, 64, CPU).array(0)
    assert seen == [64, 32]


# ---- sources -----------------------------------------------------------------------------------------------------


def test_a_video_source_follows_the_scene_frames(clip):
    c = ControlImages(unit(clip), settings(), 64, 64, CPU)
    assert [colour_of(c.image(i)) for i in range(5)] == COLOURS[:5]
    assert c.warnings() == []


def test_in_video_mode_the_control_video_follows_the_extraction(clip):
    c = ControlImages(unit(clip), settings(mode="video", extract_nth_frame=2), 64, 64, CPU)
    assert [colour_of(c.image(i)) for i in range(4)] == [COLOURS[2 * i] for i in range(4)]
    later = ControlImages(unit(clip), settings(mode="video", extract_from_frame=3, extract_nth_frame=4), 64, 64, CPU)
    assert [colour_of(later.image(i)) for i in range(3)] == [COLOURS[3], COLOURS[7], COLOURS[11]]


def test_a_short_video_holds_its_last_frame_and_says_so(clip):
    c = ControlImages(unit(clip), settings(), 64, 64, CPU, frame_count=20)
    assert len(c.warnings()) == 1 and "12" in c.warnings()[0] and "last" in c.warnings()[0]
    assert [colour_of(c.image(i)) for i in (10, 11, 12, 19)] == [COLOURS[10]] + [COLOURS[11]] * 3
    assert len(c.warnings()) == 1  # said once
    lazy = ControlImages(unit(clip), settings(), 64, 64, CPU)  # no frame count given: said when it happens
    assert colour_of(lazy.image(15)) == COLOURS[11] and len(lazy.warnings()) == 1


def test_a_folder_source_is_its_files_sorted_by_name(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for name, k in (("f10.png", 2), ("f02.png", 1), ("f01.png", 0)):
        write_png(folder / name, np.full((8, 8, 3), COLOURS[k], np.uint8))
    (folder / "notes.txt").write_text("not a frame")
    c = ControlImages(unit(folder), settings(), 32, 32, CPU, frame_count=4)
    assert [colour_of(c.image(i)) for i in range(4)] == [COLOURS[0], COLOURS[1], COLOURS[2], COLOURS[2]]
    assert len(c.warnings()) == 1


def test_an_image_source_is_the_same_every_frame_and_computed_once(tmp_path, monkeypatch):
    calls = []
    real = ci.canny
    monkeypatch.setattr(ci, "canny", lambda *a: calls.append(1) or real(*a))
    path = write_png(tmp_path / "sq.png", square())
    c = ControlImages(unit(path, module="canny"), settings(), 64, 64, CPU, frame_count=50)
    first = c.image(0)
    assert all(torch.equal(c.image(i), first) for i in range(1, 10))
    assert len(calls) == 1 and c.computed == 1 and c.warnings() == []


def test_the_cache_computes_a_repeated_video_frame_once(tmp_path, monkeypatch):
    a, b = np.full((16, 16, 3), 40, np.uint8), square()[::4, ::4].copy()
    path = write_video(tmp_path / "ab.mkv", [a, a, b, a, b, a])
    calls = []
    real = ci.canny
    monkeypatch.setattr(ci, "canny", lambda *x: calls.append(1) or real(*x))
    c = ControlImages(unit(path, module="canny"), settings(), 32, 32, CPU)
    maps = [c.array(i) for i in range(6)]
    assert len(calls) == 2 and c.computed == 2  # two distinct frames
    assert (maps[0] == maps[5]).all() and (maps[2] == maps[4]).all() and not (maps[0] == maps[2]).all()


def test_the_cache_is_bounded(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for k in range(6):
        write_png(folder / f"{k}.png", np.full((8, 8, 3), COLOURS[k], np.uint8))
    c = ControlImages(unit(folder), settings(), 32, 32, CPU, cache_bytes=2 * 32 * 32 * 3)
    for i in range(6):
        c.array(i)
    assert c._cache_used <= 2 * 32 * 32 * 3 and len(c._cache) == 2
    c.array(0)  # evicted: computed again
    assert c.computed == 7


def test_loopback_returns_the_passed_image_or_none():
    c = ControlImages(unit(None, loopback=True), settings(), 32, 32, CPU)
    assert c.image(0) is None and c.array(0) is None
    frame = torch.rand(1, 3, 32, 32)
    assert torch.equal(c.image(3, frame), frame)
    inv = ControlImages(unit(None, module="invert", loopback=True), settings(), 32, 32, CPU)
    assert torch.allclose(inv.image(0, frame), 1 - frame)
    edges = ControlImages(unit(None, module="canny", loopback=True), settings(), 64, 64, CPU)
    sq = torch.from_numpy(square()).permute(2, 0, 1)[None].float() / 255
    assert edges.image(0, sq).shape == (1, 3, 64, 64) and edges.image(0, sq).amax() == 1.0


def test_a_mask_is_one_channel_white_where_control_applies(tmp_path, clip):
    m = np.zeros((32, 32, 3), np.uint8)
    m[:, 16:] = 255
    c = ControlImages(unit(clip, mask=str(write_png(tmp_path / "m.png", m))), settings(), 64, 64, CPU)
    mask = c.mask(0)
    assert mask.shape == (1, 1, 64, 64) and mask[0, 0, :, :32].max() == 0 and mask[0, 0, :, 32:].min() == 1
    assert ControlImages(unit(clip), settings(), 64, 64, CPU).mask(0) is None


def test_saved_control_frames_are_pngs_named_by_frame(tmp_path, clip):
    out = tmp_path / "out" / "controlnet_1"
    c = ControlImages(unit(clip), settings(), 64, 64, CPU, save_dir=out)
    maps = [c.array(i) for i in range(3)]
    c.image(3)
    assert sorted(p.name for p in out.iterdir()) == ["00000.png", "00001.png", "00002.png", "00003.png"]
    for i in range(3):
        assert (cv2.cvtColor(cv2.imread(str(out / f"{i:05d}.png")), cv2.COLOR_BGR2RGB) == maps[i]).all()


# ---- errors ------------------------------------------------------------------------------------------------------


def test_bad_sources_are_render_errors(tmp_path):
    with pytest.raises(RenderError, match="does not exist"):
        ControlImages(unit(tmp_path / "nope.png"), settings(), 64, 64, CPU)
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(RenderError, match="cannot read control image"):
        ControlImages(unit(tmp_path / "junk.png"), settings(), 64, 64, CPU)
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(RenderError, match="cannot read video"):
        ControlImages(unit(tmp_path / "junk.mp4"), settings(), 64, 64, CPU)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RenderError, match="no image files"):
        ControlImages(unit(tmp_path / "empty"), settings(), 64, 64, CPU)


def test_a_huge_image_is_refused_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr(ci, "MAX_SOURCE_PIXELS", 100)
    path = write_png(tmp_path / "big.png", np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(RenderError, match="20×20"):
        ControlImages(unit(path), settings(), 64, 64, CPU)


class FakeDepth:
    """A depth estimator whose raw output is a left-to-right ramp (disparity, or metres when metric)."""

    def __init__(self, kind):
        from types import SimpleNamespace

        self.kind, self.placement, self.calls = kind, SimpleNamespace(device=CPU), []

    def raw(self, frame):
        self.calls.append(tuple(frame.shape))
        _, _, h, w = frame.shape
        return torch.linspace(1.0, 5.0, w).expand(h, w).clone()


@pytest.mark.parametrize("kind", ["midas", "relative", "metric"])
def test_depth_is_normalised_with_near_white(tmp_path, kind):
    depth = FakeDepth(kind)
    path = write_png(tmp_path / "a.png", np.zeros((100, 200, 3), np.uint8))
    c = ControlImages(unit(path, module="depth", processor_res=32), settings(), 64, 32, CPU, depth=depth)
    img = c.array(0)
    assert depth.calls == [(1, 3, 32, 64)]  # the source at processor_res (short side)
    assert img.shape == (32, 64, 3) and (img[:, :, 0] == img[:, :, 2]).all()
    near_right = kind != "metric"  # a larger disparity is nearer; a larger distance farther
    left, right = int(img[16, 0, 0]), int(img[16, -1, 0])
    assert (left, right) == ((0, 255) if near_right else (255, 0))


def test_depth_runs_the_scenes_depth_model(tmp_path):
    from tiny_models import save_depth_models

    from dfm.runtime.depth import DepthEstimator
    from dfm.runtime.device import pick_device

    folder = save_depth_models(tmp_path / "depth")["dpt"]
    est = DepthEstimator(str(folder), pick_device("cpu"), midas_weight=1.0)
    c = ControlImages(unit(write_png(tmp_path / "a.png", square()), module="depth"), settings(), 64, 64, CPU,
                      depth=est)
    img = c.image(0)
    assert img.shape == (1, 3, 64, 64) and est.calls == 1
    assert float(img.min()) == 0.0 and float(img.max()) == 1.0 and torch.equal(img[:, 0], img[:, 1])


def test_depth_without_a_depth_model_is_a_render_error(tmp_path):
    c = ControlImages(unit(write_png(tmp_path / "a.png", square()), module="depth"), settings(), 64, 64, CPU)
    with pytest.raises(RenderError, match="depth model"):
        c.image(0)


def test_missing_annotator_weights_name_the_files(tmp_path, monkeypatch):
    path = write_png(tmp_path / "a.png", square())
    empty = tmp_path / "annotators"
    empty.mkdir()
    c = ControlImages(unit(path, module="lineart"), settings(annotator_dir=str(empty)), 64, 64, CPU)
    with pytest.raises(RenderError) as e:
        c.image(0)
    assert "sk_model.pth" in e.value.message and "sk_model2.pth" in e.value.message
    assert str(empty) in e.value.message and "annotator_dir" in e.value.help
    assert "lllyasviel/Annotators" in e.value.help
    # without annotator_dir: looked up in the (here empty) Hugging Face cache, never downloaded
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    c = ControlImages(unit(path, module="softedge_hed"), settings(), 64, 64, CPU)
    with pytest.raises(RenderError, match="ControlNetHED.pth") as e:
        c.image(0)
    assert "Hugging Face cache" in e.value.message


def test_annotator_weights_are_found_where_the_compiler_finds_them(tmp_path, monkeypatch):
    from dfm.contract.controlnet import PREPROCESSORS

    pre = PREPROCESSORS["lineart"]
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    mine = tmp_path / "mine"
    (mine / "annotator" / "ckpts").mkdir(parents=True)
    for f in pre.weights:
        (mine / "annotator" / "ckpts" / f).write_bytes(b"x")
    assert ci.annotator_folder(pre, str(mine)) == mine / "annotator" / "ckpts"  # the ControlNet repo's layout
    snap = tmp_path / "hub" / "models--lllyasviel--Annotators" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    for f in pre.weights:
        (snap / f).write_bytes(b"x")
    assert ci.annotator_folder(pre, None) == snap
    assert ci.annotator_folder(pre, str(tmp_path / "empty")) == snap  # annotator_dir first, then the cache


def test_unreadable_annotator_weights_are_a_render_error(tmp_path):
    pytest.importorskip("controlnet_aux")
    folder = tmp_path / "annotators"
    folder.mkdir()
    (folder / "ControlNetHED.pth").write_bytes(b"not a checkpoint")
    c = ControlImages(unit(write_png(tmp_path / "a.png", square()), module="softedge_hed"),
                      settings(annotator_dir=str(folder)), 64, 64, CPU)
    with pytest.raises(RenderError, match="could not load the softedge_hed"):
        c.image(0)


def test_weight_free_aux_detectors_work_offline(tmp_path):
    pytest.importorskip("controlnet_aux")
    path = write_png(tmp_path / "a.png", square())
    lines = ControlImages(unit(path, module="lineart_standard"), settings(), 64, 64, CPU).array(0)
    assert lines.shape == (64, 64, 3)
    grey = lines[:, :, 0].astype(int)
    assert grey[12:52, 12:52].sum() > 0 and grey[28:36, 28:36].max() < grey[12:52, 12:52].max()
    before = np.random.get_state()[1].copy()
    shuffled = [ControlImages(unit(path, module="shuffle"), settings(), 64, 64, CPU).array(0) for _ in range(2)]
    assert shuffled[0].shape == (64, 64, 3) and (shuffled[0] == shuffled[1]).all()  # deterministic
    assert (np.random.get_state()[1] == before).all()  # numpy's global RNG left as it was


# ---- the preview -------------------------------------------------------------------------------------------------


def preview_scene(tmp_path, body: str, frames: int = 4) -> str:
    return f'dfm 1\nsize 64x64\nfps 8\nframes {frames}\nprompt 0 "x"\nzoom 1.05\ncn_1_model "{tmp_path}/cn"\n{body}'


def test_the_preview_shows_each_units_control_image_beside_the_camera(tmp_path):
    from dfm.api import compile_text
    from dfm.runtime.preview import camera_frames, preview_frames, with_control_panels

    sq = write_png(tmp_path / "sq.png", square())
    text = preview_scene(tmp_path, f'cn_1_module canny\ncn_1_vid_path "{sq}"\ncn_2_model "{tmp_path}/cn2"\n'
                                   "cn_2_module invert\ncn_2_loopback_mode true\n")
    table = compile_text(text, str(tmp_path / "s.dfm"))
    camera, raw = list(preview_frames(table)), list(camera_frames(table))
    frames = list(with_control_panels(table))
    assert len(frames) == 4 and all(f.shape == (64, 3 * 64, 3) for f in frames)
    edges = ControlImages(unit(sq, module="canny", processor_res=512, resize_mode="crop_and_resize"), settings(),
                          64, 64, CPU).array(0)
    for i, f in enumerate(frames):
        assert (f[:, :64] == camera[i]).all()
        assert (f[16:, 64:128] == edges[16:]).all()  # below the label band: the unit's canny map
        # loopback: the camera frame, inverted, without the overlay (a render's previous frame has none)
        assert (f[16:, 128:] == 255 - raw[i][16:]).all()


def test_the_preview_shows_a_placeholder_for_missing_weights_and_depth(tmp_path):
    """The compiler refuses missing weights (DFM407), so they go missing after the compile here."""
    from dfm.api import compile_text
    from dfm.contract.controlnet import PREPROCESSORS
    from dfm.runtime.preview import PANEL_GREY, with_control_panels

    sq = write_png(tmp_path / "sq.png", square())
    weights = tmp_path / "annotators"
    weights.mkdir()
    for f in PREPROCESSORS["openpose"].weights:
        (weights / f).write_bytes(b"not a checkpoint")
    text = preview_scene(tmp_path, f'cn_1_module openpose\ncn_1_vid_path "{sq}"\nannotator_dir "{weights}"\n'
                                   f'cn_2_model "{tmp_path}/cn2"\ncn_2_module depth\ncn_2_vid_path "{sq}"\n')
    table = compile_text(text, str(tmp_path / "s.dfm"))
    (weights / "facenet.pth").unlink()
    frames = list(with_control_panels(table))
    for f in frames:
        assert f.shape == (64, 192, 3)
        for panel in (f[:, 64:128], f[:, 128:]):
            assert (panel[-8:] == PANEL_GREY).all() and (panel != PANEL_GREY).any()  # grey, with writing
    # weights that are there but do not load: a placeholder too, and a warning saying why
    (weights / "facenet.pth").write_bytes(b"not a checkpoint")
    said = []
    frames = list(with_control_panels(table, said.append))
    assert all((f[-8:, 64:128] == PANEL_GREY).all() for f in frames)
    assert len(said) == 1 and "could not load the openpose" in said[0]


def test_the_cli_preview_writes_the_panels_into_video_and_strip(tmp_path, capsys):
    import imageio_ffmpeg

    from dfm.app.cli import main
    from dfm.runtime.preview import STRIP_WIDTH

    clip = write_video(tmp_path / "c.mkv", [np.full((40, 48, 3), c, np.uint8) for c in COLOURS[:3]])
    src = tmp_path / "s.dfm"
    src.write_text(preview_scene(tmp_path, f'cn_1_vid_path "{clip}"\n', frames=5))
    assert main(["preview", str(src), "-o", str(tmp_path / "p.mp4"), "--quiet"]) == 0
    reader = imageio_ffmpeg.read_frames(str(tmp_path / "p.mp4"))
    assert tuple(next(reader)["size"]) == (128, 64)
    reader.close()
    strip = cv2.imread(str(tmp_path / "p_strip.png"))
    assert strip.shape[:2] == (STRIP_WIDTH, 5 * 2 * STRIP_WIDTH)
    err = capsys.readouterr().err
    assert "warning: controlnet unit 1 source c.mkv has 3 video frames" in err and "hold its last" in err


def test_a_scene_without_units_previews_as_before(tmp_path):
    from dfm.api import compile_text
    from dfm.runtime.preview import preview_frames, with_control_panels

    table = compile_text('dfm 1\nsize 64x64\nfps 8\nframes 3\nprompt 0 "x"\n', str(tmp_path / "s.dfm"))
    assert all((a == b).all() for a, b in zip(with_control_panels(table),
                                              preview_frames(table), strict=True))


def test_unit_settings_round_trip_through_dataclasses():
    u = unit("/x.png")
    assert dataclasses.replace(u, module="canny").module == "canny"


def test_missing_preprocessor_weights_stop_a_render_but_not_a_preview(tmp_path, capsys):
    """Only a render needs a preprocessor's weights: `dfm check` says DFM407 as an error, `dfm preview` as a
    warning, and previews the unit as a placeholder panel."""
    from dfm.app.cli import main
    from dfm.runtime.preview import PANEL_GREY

    sq = write_png(tmp_path / "sq.png", square())
    empty = tmp_path / "annotators"
    empty.mkdir()
    src = tmp_path / "s.dfm"
    src.write_text(preview_scene(tmp_path, f'cn_1_module lineart\ncn_1_vid_path "{sq}"\nannotator_dir "{empty}"\n'))
    assert main(["check", str(src)]) != 0
    said = capsys.readouterr()
    assert "error[DFM407]" in said.out + said.err
    assert main(["preview", str(src), "-o", str(tmp_path / "p.mp4"), "--quiet"]) == 0
    said = capsys.readouterr()
    assert "warning[DFM407]" in said.out + said.err and "the preview shows a placeholder" in said.out + said.err
    strip = cv2.imread(str(tmp_path / "p_strip.png"))
    assert (tmp_path / "p.mp4").stat().st_size > 0 and (strip == PANEL_GREY).all(axis=2).sum() > 100  # the panel
