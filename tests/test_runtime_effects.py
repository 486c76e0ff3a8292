"""Image effects against numpy/OpenCV references: colour spaces, histogram matching (colour coherence),
unsharp mask, contrast, noise, cadence blend."""

import cv2
import numpy as np
import pytest
import torch

from dfm.runtime import effects


def rand_image(seed=0, h=24, w=32):
    return np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)


def to_tensor(img):
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).unsqueeze(0).contiguous()


def to_numpy(t):
    return t[0].permute(1, 2, 0).numpy()


def np_match_histograms(source, reference):
    """Reference implementation (skimage.exposure.match_histograms, per channel) in plain numpy."""
    out = np.empty_like(source, dtype=np.float64)
    for c in range(source.shape[-1]):
        src, ref = source[..., c].ravel(), reference[..., c].ravel()
        s_values, s_idx, s_counts = np.unique(src, return_inverse=True, return_counts=True)
        r_values, r_counts = np.unique(ref, return_counts=True)
        s_q = np.cumsum(s_counts) / src.size
        r_q = np.cumsum(r_counts) / ref.size
        out[..., c] = np.interp(s_q, r_q, r_values)[s_idx].reshape(source.shape[:-1])
    return out


def test_hsv_matches_opencv_and_round_trips():
    img = rand_image(1)
    ours = to_numpy(effects.rgb_to_hsv(to_tensor(img)))
    np.testing.assert_allclose(ours, cv2.cvtColor(img, cv2.COLOR_RGB2HSV), atol=2e-3)
    back = to_numpy(effects.hsv_to_rgb(effects.rgb_to_hsv(to_tensor(img))))
    np.testing.assert_allclose(back, img, atol=1e-5)


def test_lab_matches_opencv_and_round_trips():
    img = rand_image(2)
    ours = to_numpy(effects.rgb_to_lab(to_tensor(img)))
    # OpenCV's float path interpolates a gamma table and quantises a/b to 1/32: within 0.5 of the exact formula
    np.testing.assert_allclose(ours, cv2.cvtColor(img, cv2.COLOR_RGB2Lab), atol=0.5)
    back = to_numpy(effects.lab_to_rgb(effects.rgb_to_lab(to_tensor(img))))
    np.testing.assert_allclose(back, img, atol=1e-4)


def test_histogram_matching_equals_numpy_reference_with_ties():
    src = (np.random.default_rng(3).integers(0, 50, (20, 30, 3)) / 49).astype(np.float32)  # many ties
    ref = np.random.default_rng(4).random((16, 16, 3)).astype(np.float32) ** 2
    got = to_numpy(effects.match_histograms(to_tensor(src), to_tensor(ref)))
    np.testing.assert_allclose(got, np_match_histograms(src, ref), atol=1e-6)


@pytest.mark.parametrize("space", ["rgb", "hsv", "lab"])
def test_color_coherence_equals_numpy_reference(space):
    src, ref = rand_image(5), rand_image(6) * 0.5 + 0.25
    to_space = {
        "rgb": lambda x: x,
        "hsv": lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2HSV),
        "lab": lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2Lab),
    }[space]
    from_space = {
        "rgb": lambda x: x,
        "hsv": lambda x: cv2.cvtColor(x, cv2.COLOR_HSV2RGB),
        "lab": lambda x: cv2.cvtColor(x, cv2.COLOR_Lab2RGB),
    }[space]
    expected = from_space(np_match_histograms(to_space(src), to_space(ref)).astype(np.float32)).clip(0, 1)
    got = to_numpy(effects.color_coherence(to_tensor(src), to_tensor(ref), space))
    # the matching is exact; OpenCV's float Lab conversion is approximate (see test above)
    tol = {"rgb": 1e-6, "hsv": 2e-3, "lab": 2e-2}[space]
    assert np.abs(got - expected).max() < tol
    assert np.abs(got - expected).mean() < tol / 5


def test_color_coherence_gives_the_reference_distribution():
    src, ref = rand_image(7), rand_image(8) ** 3
    got = to_numpy(effects.color_coherence(to_tensor(src), to_tensor(ref), "rgb"))
    for c in range(3):  # same size: matching is a permutation of the reference values
        np.testing.assert_allclose(np.sort(got[..., c].ravel()), np.sort(ref[..., c].ravel()), atol=1e-6)
    assert effects.color_coherence(to_tensor(src), to_tensor(ref), "none") is not None


def test_unsharp_mask_equals_opencv_reference():
    img = rand_image(9)
    kernel, sigma, amount = 5, 1.0, 0.7
    blurred = cv2.GaussianBlur(img, (kernel, kernel), sigma)  # default border: reflect-101
    expected = np.clip((amount + 1) * img - amount * blurred, 0, 1)
    got = to_numpy(effects.unsharp_mask(to_tensor(img), kernel, sigma, amount, 0.0))
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_unsharp_threshold_keeps_low_contrast_pixels_and_zero_amount_is_off():
    img = rand_image(10)
    t = to_tensor(img)
    assert effects.unsharp_mask(t, 5, 1.0, 0.0, 0.0) is t
    blurred = cv2.GaussianBlur(img, (5, 5), 1.0)
    got = to_numpy(effects.unsharp_mask(t, 5, 1.0, 0.5, 40.0))
    low = np.abs(img - blurred) < 40 / 255
    assert low.any() and (~low).any()
    np.testing.assert_allclose(got[low], img[low])
    np.testing.assert_allclose(got[~low], np.clip(1.5 * img - 0.5 * blurred, 0, 1)[~low], atol=1e-5)


def test_gaussian_kernel_matches_opencv_including_size_from_sigma():
    for kernel, sigma in [(5, 1.0), (7, 2.5), (0, 1.2)]:
        ours = effects.gaussian_kernel_1d(kernel, sigma, torch.device("cpu")).numpy()
        size = kernel or int(round(sigma * 6 + 1)) | 1
        np.testing.assert_allclose(ours, cv2.getGaussianKernel(size, sigma).ravel(), atol=1e-6)


def test_contrast_scales_and_clips():
    t = to_tensor(rand_image(11))
    assert effects.contrast(t, 1.0) is t
    np.testing.assert_allclose(effects.contrast(t, 0.5).numpy(), t.numpy() * 0.5, atol=1e-7)
    assert float(effects.contrast(t, 3.0).max()) <= 1.0


def test_noise_is_seeded_and_has_deforums_scale():
    t = torch.full((1, 3, 64, 64), 0.5)
    a = effects.add_noise(t, 0.2, torch.Generator().manual_seed(3))
    b = effects.add_noise(t, 0.2, torch.Generator().manual_seed(3))
    c = effects.add_noise(t, 0.2, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # 0.2 is the std in [-1, 1] pixel units, so 0.1 on [0, 1] frames
    assert abs(float((a - t).std()) - 0.1) < 0.005
    assert effects.add_noise(t, 0.0, torch.Generator()) is t


def test_blend_and_grayscale():
    a, b = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    assert torch.allclose(effects.blend(a, b, 0.25), torch.full_like(a, 0.25))
    img = rand_image(12)
    gray = to_numpy(effects.grayscale(to_tensor(img)))
    expected = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    for c in range(3):
        np.testing.assert_allclose(gray[..., c], expected, atol=1e-5)
