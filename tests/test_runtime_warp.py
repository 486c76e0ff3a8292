"""2D motion: the matrices against OpenCV, the torch warp against cv2.warpPerspective, analytic cases."""

import cv2
import numpy as np
import pytest
import torch

from dfm.runtime.warp import matrix_2d, perspective_flip, rotation_zoom, warp_2d, warp_matrix

H, W = 48, 64


def smooth_image(h=H, w=W, seed=0):
    """Smooth random colours: bilinear resampling differences stay small and comparable."""
    rng = np.random.default_rng(seed)
    small = rng.random((6, 8, 3)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def to_tensor(img):
    return torch.from_numpy(img).permute(2, 0, 1).unsqueeze(0).contiguous()


def to_numpy(t):
    return t[0].permute(1, 2, 0).numpy()


def row(**kw):
    base = {
        "angle": 0.0,
        "zoom": 1.0,
        "translation_x": 0.0,
        "translation_y": 0.0,
        "transform_center_x": 0.5,
        "transform_center_y": 0.5,
        "perspective_flip_theta": 0.0,
        "perspective_flip_phi": 0.0,
        "perspective_flip_gamma": 0.0,
        "perspective_flip_fv": 53.0,
    }
    return {**base, **kw}


def test_rotation_matrix_is_opencvs():
    for angle, zoom, cx, cy in [(10.0, 1.0, 32, 24), (-33.0, 1.3, 10.5, 40.0), (90.0, 0.5, 0, 0)]:
        ours = rotation_zoom(angle, zoom, cx, cy)
        theirs = cv2.getRotationMatrix2D((cx, cy), angle, zoom)
        np.testing.assert_allclose(ours[:2], theirs, atol=1e-12)


def test_perspective_from_points_is_opencvs():
    m = perspective_flip(W, H, theta=7.0, phi=12.0, gamma=-9.0, fv=53.0)
    # the same homography solved by OpenCV from the image corners and where m sends them
    src = np.float32([[0, 0], [W, 0], [W, H], [0, H]])
    dst = cv2.perspectiveTransform(src[None], m)[0]
    np.testing.assert_allclose(cv2.getPerspectiveTransform(src, dst), m / m[2, 2], rtol=1e-4, atol=1e-4)


def test_flip_at_rest_is_identity():
    np.testing.assert_allclose(perspective_flip(W, H, 0.0, 0.0, 0.0, 53.0), np.eye(3), atol=1e-9)


@pytest.mark.parametrize(
    "border,cv_border",
    [
        ("replicate", cv2.BORDER_REPLICATE),
        ("wrap", cv2.BORDER_WRAP),
        ("reflect", cv2.BORDER_REFLECT),
        ("zeros", cv2.BORDER_CONSTANT),
    ],
)
@pytest.mark.parametrize(
    "motion",
    [
        dict(angle=15.0, zoom=1.1, translation_x=5.0, translation_y=-3.0),
        dict(angle=-40.0, zoom=0.7, transform_center_x=0.3, transform_center_y=0.8),
        dict(translation_x=20.0, translation_y=11.5),
        dict(
            angle=5.0,
            zoom=1.05,
            translation_x=4.0,
            perspective_flip_theta=4.0,
            perspective_flip_phi=10.0,
            perspective_flip_gamma=-8.0,
            perspective_flip_fv=60.0,
        ),
    ],
)
def test_warp_matches_cv2_warp_perspective(border, cv_border, motion):
    img = smooth_image()
    r = row(**motion)
    flip = "perspective_flip_phi" in motion
    m = matrix_2d(r, W, H, flip=flip)
    expected = cv2.warpPerspective(img, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv_border, borderValue=0)
    got = to_numpy(warp_2d(to_tensor(img), r, border=border, flip=flip))
    # OpenCV quantises sample positions to 1/32 pixel; the image is smooth, so that costs < 1 %
    assert np.abs(got - expected).max() < 0.02
    assert np.abs(got - expected).mean() < 2e-3


def test_positive_angle_turns_counter_clockwise_by_90():
    img = np.random.default_rng(1).random((32, 32, 3)).astype(np.float32)
    # rotate about the array's own centre (15.5, 15.5) so the result lands exactly on pixels
    r = row(angle=90.0, transform_center_x=15.5 / 32, transform_center_y=15.5 / 32)
    got = to_numpy(warp_2d(to_tensor(img), r))
    np.testing.assert_allclose(got, np.rot90(img, k=1), atol=1e-5)  # np.rot90 k=1: counter-clockwise


def test_zoom_two_magnifies_about_the_centre():
    # a linear ramp: bilinear sampling reproduces it exactly, so the expected image is analytic
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    img = np.stack([xs / W, ys / H, (xs + ys) / (W + H)], -1).astype(np.float32)
    got = to_numpy(warp_2d(to_tensor(img), row(zoom=2.0)))
    cx, cy = W / 2, H / 2
    sx, sy = (xs - cx) / 2 + cx, (ys - cy) / 2 + cy  # the source position of each output pixel
    expected = np.stack([sx / W, sy / H, (sx + sy) / (W + H)], -1)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_translation_moves_content_right_and_down_by_whole_pixels():
    img = smooth_image()
    got = to_numpy(warp_2d(to_tensor(img), row(translation_x=3.0, translation_y=2.0), border="zeros"))
    np.testing.assert_allclose(got[2:, 3:], img[:-2, :-3], atol=1e-6)
    assert np.all(got[:2] == 0) and np.all(got[:, :3] == 0)


def test_flip_keeps_the_translation_deforum_drops():
    r = row(translation_x=10.0, perspective_flip_phi=5.0)
    with_t = matrix_2d(r, W, H, flip=True)
    without_t = matrix_2d({**r, "translation_x": 0.0}, W, H, flip=True)
    np.testing.assert_allclose(with_t, without_t @ np.array([[1, 0, 10.0], [0, 1, 0], [0, 0, 1]]), atol=1e-9)


def test_identity_warp_is_exact():
    img = to_tensor(smooth_image())
    for border in ("replicate", "wrap", "reflect", "zeros"):
        torch.testing.assert_close(warp_2d(img, row(), border=border), img, atol=1e-6, rtol=0)


def test_warp_matrix_rejects_unknown_border():
    with pytest.raises(ValueError, match="border"):
        warp_matrix(to_tensor(smooth_image()), np.eye(3), border="mirror")
