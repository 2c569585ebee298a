"""ivfuse.nn.losses: SSIM/DSSIM (kornia <= 0.4 definition) and Sobel gradient loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ivfuse.nn.losses import dssim, gaussian_window, gradient_l1, sobel_gradient, ssim_map


def _ssim_numpy(x: np.ndarray, y: np.ndarray, pad_mode: str) -> np.ndarray:
    """Independent per-pixel SSIM by explicit window sums (float64)."""
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    g /= g.sum()
    w = np.outer(g, g)

    def filt(a):
        p = np.pad(a, 5, mode=pad_mode)
        out = np.zeros_like(a)
        for i in range(a.shape[0]):
            for j in range(a.shape[1]):
                out[i, j] = (p[i : i + 11, j : j + 11] * w).sum()
        return out

    c1, c2 = 0.01**2, 0.03**2
    mx, my = filt(x), filt(y)
    vx = filt(x * x) - mx * mx
    vy = filt(y * y) - my * my
    cxy = filt(x * y) - mx * my
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def test_gaussian_window_normalised_and_symmetric():
    w = gaussian_window(11, 1.5)
    assert w.shape == (11, 11)
    assert float(w.sum()) == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(w, w.t()) and torch.allclose(w, w.flip(0))
    assert int(w.argmax()) == 5 * 11 + 5


@pytest.mark.parametrize("padding,np_mode", [("reflect", "reflect"), ("zeros", "constant")])
def test_ssim_map_matches_hand_computation(padding, np_mode):
    rng = np.random.default_rng(0)
    x = rng.random((19, 23))
    y = np.clip(x + 0.2 * rng.standard_normal(x.shape), 0, 1)
    ref = _ssim_numpy(x, y, np_mode)
    tx = torch.from_numpy(x)[None, None]
    ty = torch.from_numpy(y)[None, None]
    got = ssim_map(tx, ty, padding=padding)[0, 0].numpy()
    np.testing.assert_allclose(got, ref, atol=1e-10)
    ref_loss = np.mean(np.clip(1 - ref, 0, 1) / 2)
    assert float(dssim(tx, ty, padding=padding)) == pytest.approx(ref_loss, abs=1e-12)


def test_dssim_zero_for_identical_and_clamped():
    x = torch.rand(2, 1, 16, 16)
    assert float(dssim(x, x)) == pytest.approx(0.0, abs=1e-6)
    # anti-correlated images: SSIM < 0 somewhere, 1 - SSIM > 1 is clamped to 1 -> at most 0.5
    y = 1 - x
    assert float(ssim_map(x, y).min()) < 0
    d = float(dssim(x, y))
    assert 0.0 < d <= 0.5


def test_losses_validate_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        dssim(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9))
    with pytest.raises(ValueError, match="N, C, H, W"):
        gradient_l1(torch.rand(8, 8), torch.rand(8, 8))
    with pytest.raises(ValueError, match="padding"):
        ssim_map(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), padding="wrap")


def test_sobel_on_a_ramp():
    a = 0.3
    cols = torch.arange(7, dtype=torch.float64) * a
    x = cols.expand(5, 7)[None, None].clone()
    g = sobel_gradient(x)
    assert g.shape == (1, 1, 2, 5, 7)
    gx, gy = g[0, 0, 0], g[0, 0, 1]
    # interior: (1 + 2 + 1) * 2a / 8 = a; border columns use replicate padding -> a / 2
    torch.testing.assert_close(gx[:, 1:-1], torch.full((5, 5), a, dtype=torch.float64))
    torch.testing.assert_close(gx[:, 0], torch.full((5,), a / 2, dtype=torch.float64))
    torch.testing.assert_close(gx[:, -1], torch.full((5,), a / 2, dtype=torch.float64))
    assert float(gy.abs().max()) < 1e-12
    # transposed image: the y component carries the ramp
    gt = sobel_gradient(x.transpose(-1, -2))[0, 0]
    torch.testing.assert_close(gt[1], gx.t())
    # unnormalised kernels are 8x larger
    torch.testing.assert_close(sobel_gradient(x, normalized=False), 8 * g)


def test_gradient_l1_by_hand():
    rng = np.random.default_rng(1)
    x = rng.random((6, 5))
    y = rng.random((6, 5))
    kx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], float) / 8

    def sob(a):
        p = np.pad(a, 1, mode="edge")
        gx = np.zeros_like(a)
        gy = np.zeros_like(a)
        for i in range(a.shape[0]):
            for j in range(a.shape[1]):
                win = p[i : i + 3, j : j + 3]
                gx[i, j] = (win * kx).sum()
                gy[i, j] = (win * kx.T).sum()
        return gx, gy

    (ax, ay), (bx, by) = sob(x), sob(y)
    ref = (np.abs(ax - bx).mean() + np.abs(ay - by).mean()) / 2
    got = gradient_l1(torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None])
    assert float(got) == pytest.approx(ref, abs=1e-12)


def test_ssim_map_is_float32_accurate_under_bf16_autocast():
    """Bright flat patches: bfloat16 local variances (E[x^2] - E[x]^2) are off by more than c2,
    so the bfloat16 map was wrong by 0.17 here (its values are below 0.09) and infinite on JCAE's
    first bf16 step at 360 x 280. It is computed in float32 whatever the inputs' precision, and
    returned in their promoted dtype."""
    from ivfuse.nn.losses import ssim_map

    g = torch.Generator().manual_seed(0)
    y = 0.7 + 0.002 * torch.rand(2, 1, 40, 48, generator=g)  # a bright, nearly flat target
    x = 0.03 + 0.002 * torch.rand(2, 1, 40, 48, generator=g)  # an untrained decoder's output
    ref = ssim_map(x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = ssim_map(x.bfloat16(), y)
        both = ssim_map(x.bfloat16(), y.bfloat16())
    assert got.dtype == torch.float32 and both.dtype == torch.bfloat16
    assert bool(torch.isfinite(got).all()) and bool(torch.isfinite(both.float()).all())
    assert float((got - ref).abs().max()) < 2e-2  # x rounded to bf16 on the way in, nothing else
    assert float((both.float() - ref).abs().max()) < 5e-2
