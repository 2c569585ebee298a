"""Classical baselines (issue 2, point 6): the fuser contract, the synthetic-scene behaviour,
and known answers per method."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ivfuse.data.synthetic import night_scene
from ivfuse.errors import InputError, MethodError
from ivfuse.methods import available, create
from ivfuse.methods.classical import _dualtree, pyramid
from ivfuse.methods.classical._common import box_mean, guided_filter, pyramid_depth
from ivfuse.methods.classical.gradient_transfer import tv_energy, tv_l1

from .conftest import shared_dataset

CLASSICAL = [i.name for i in available() if i.family == "classical"]
GRAY = 1.0 / 255.0


def test_all_baselines_registered_with_a_paper():
    assert set(CLASSICAL) == {"average", "max", "lp", "dwt", "dtcwt", "gff", "gtf"}
    for info in available():
        if info.family == "classical":
            assert info.paper and info.summary and not info.trainable and info.weights is None


# ---------------------------------------------------------------- the fuser contract


@pytest.mark.parametrize("name", CLASSICAL)
def test_shape_dtype_range_odd_size(name, rng):
    ir = rng.random((37, 53), dtype=np.float32)
    vi = rng.random((37, 53), dtype=np.float32)
    ir0, vi0 = ir.copy(), vi.copy()
    out = create(name).fuse(ir, vi)
    assert out.shape == (37, 53) and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(ir, ir0)  # inputs are not modified
    np.testing.assert_array_equal(vi, vi0)


@pytest.mark.parametrize("shape", [(5, 7), (1, 1), (1, 9), (9, 1), (2, 3), (6, 6), (33, 8)])
@pytest.mark.parametrize("name", CLASSICAL)
def test_tiny_and_thin_sizes(name, shape, rng):
    ir = rng.random(shape, dtype=np.float32)
    vi = rng.random(shape, dtype=np.float32)
    out = create(name).fuse(ir, vi)
    assert out.shape == shape and out.dtype == np.float32
    assert np.isfinite(out).all() and 0.0 <= out.min() and out.max() <= 1.0
    # Equal sources still come back unchanged at these sizes.
    np.testing.assert_allclose(create(name).fuse(vi, vi), vi, atol=GRAY)


@pytest.mark.parametrize("name", CLASSICAL)
def test_float64_input_gives_float32(name, rng):
    a = rng.random((16, 20))
    assert create(name).fuse(a, 1.0 - a).dtype == np.float32


@pytest.mark.parametrize("name", CLASSICAL)
def test_bad_arrays_raise_input_error(name):
    fuser = create(name)
    with pytest.raises(InputError, match="sizes differ"):
        fuser.fuse(np.zeros((8, 9), np.float32), np.zeros((9, 8), np.float32))
    with pytest.raises(InputError, match="2-D"):
        fuser.fuse(np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 3), np.float32))
    with pytest.raises(InputError, match="empty"):
        fuser.fuse(np.zeros((0, 8), np.float32), np.zeros((0, 8), np.float32))


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("lp", {"levels": 0}),
        ("dwt", {"wavelet": "no-such-wavelet"}),
        ("dwt", {"mode": "nope"}),
        ("dtcwt", {"levels": -1}),
        ("gff", {"eps1": 0}),
        ("gff", {"r2": 2.5}),
        ("gtf", {"lam": -1.0}),
        ("gtf", {"max_iter": 0}),
    ],
)
def test_bad_parameters_raise_method_error(name, kwargs):
    with pytest.raises(MethodError):
        create(name, **kwargs)


# ---------------------------------------------------------------- the synthetic night scene


@pytest.fixture(scope="module")
def scene():
    sc = night_scene()
    vi = (sc.vi @ np.array([0.299, 0.587, 0.114])).astype(np.float32)
    return sc, vi


@pytest.fixture(scope="module")
def fused_scene(scene):
    sc, vi = scene
    return {name: create(name).fuse(sc.ir, vi) for name in CLASSICAL}


def _target_contrast(img, targets):
    """Mean inside the warm targets minus the mean of a ring 3..6 px around them."""
    ring = ndimage.binary_dilation(targets, iterations=6) & ~ndimage.binary_dilation(targets, iterations=2)
    return float(img[targets].mean() - img[ring].mean())


def _texture(img, mask):
    """Mean gradient magnitude inside ``mask``."""
    gy, gx = np.gradient(img.astype(np.float64))
    return float(np.hypot(gx, gy)[mask].mean())


def _local_std(img, mask, size=5):
    img = img.astype(np.float64)
    m = ndimage.uniform_filter(img, size)
    var = ndimage.uniform_filter(img * img, size) - m * m
    return float(np.sqrt(np.maximum(var, 0.0))[mask].mean())


@pytest.mark.parametrize("name", CLASSICAL)
def test_synthetic_scene_keeps_ir_targets(name, scene, fused_scene):
    sc, vi = scene
    c_f = _target_contrast(fused_scene[name], sc.targets)
    c_vi = _target_contrast(vi, sc.targets)
    assert c_f > c_vi + 0.1, f"{name}: target contrast {c_f:.3f} vs VI {c_vi:.3f}"


@pytest.mark.parametrize("name", CLASSICAL)
def test_synthetic_scene_keeps_vi_texture(name, scene, fused_scene):
    sc, vi = scene
    f = fused_scene[name]
    g_f, g_ir = _texture(f, sc.texture), _texture(sc.ir, sc.texture)
    s_f, s_ir = _local_std(f, sc.texture), _local_std(sc.ir, sc.texture)
    assert g_f > g_ir, f"{name}: texture gradient {g_f:.4f} vs IR {g_ir:.4f}"
    assert s_f > s_ir, f"{name}: texture local std {s_f:.4f} vs IR {s_ir:.4f}"


@pytest.mark.parametrize("name", CLASSICAL)
def test_fusing_an_image_with_itself_returns_it(name, scene):
    sc, vi = scene
    for img in (vi, sc.ir):
        out = create(name).fuse(img, img)
        assert np.abs(out - img).max() <= GRAY


def test_multiscale_methods_keep_vi_texture_nearly_fully(scene, fused_scene):
    """Max-abs detail selection keeps (almost) all of the visible texture, unlike averaging."""
    sc, vi = scene
    g_vi = _texture(vi, sc.texture)
    for name in ("lp", "dwt", "dtcwt", "gff", "gtf"):
        assert _texture(fused_scene[name], sc.texture) > 0.9 * g_vi, name
    assert _texture(fused_scene["average"], sc.texture) < 0.6 * g_vi


# ---------------------------------------------------------------- pixel rules


def test_average_and_max_known_answers(rng):
    a = rng.random((7, 9), dtype=np.float32)
    b = rng.random((7, 9), dtype=np.float32)
    np.testing.assert_allclose(create("average").fuse(a, b), (a + b) / 2, atol=1e-7)
    np.testing.assert_array_equal(create("max").fuse(a, b), np.maximum(a, b))


# ---------------------------------------------------------------- pyramids and wavelets


def _checker(shape, amp=0.1):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (((yy + xx) % 2) * 2 - 1) * amp


@pytest.mark.parametrize("shape", [(37, 53), (64, 48), (5, 7)])
def test_laplacian_pyramid_perfect_reconstruction(shape, rng):
    x = rng.random(shape)
    depth = pyramid_depth(shape, 6, pyramid.COARSEST)
    pyr = pyramid.laplacian_pyramid(x, depth)
    assert len(pyr) == depth + 1
    np.testing.assert_allclose(pyramid.reconstruct(pyr), x, atol=1e-12)


def test_pyramid_depth_follows_size():
    assert pyramid_depth((5, 7), 4, 3) == 1
    assert pyramid_depth((4, 100), 4, 3) == 0
    assert pyramid_depth((256, 320), 4, 3) == 4
    assert pyramid_depth((40, 40), 10, 3) == 4  # 40 -> 20 -> 10 -> 5 -> 3, then 2 < 3


@pytest.mark.parametrize(
    "name, kwargs, shape, atol",
    [
        ("lp", {}, (37, 53), 1e-6),  # the 1-4-6-4-1 kernel has a zero at Nyquist: exact
        ("dwt", {"wavelet": "haar"}, (32, 48), 1e-6),  # the checker is all diagonal detail
        ("dtcwt", {}, (37, 53), 1e-3),
    ],
)
def test_max_abs_details_and_averaged_base(name, kwargs, shape, atol):
    """A flat source has no detail: fused = base average + the textured source's details."""
    flat = np.full(shape, 0.5, np.float32)
    textured = (0.5 + _checker(shape)).astype(np.float32)
    fuser = create(name, **kwargs)
    np.testing.assert_allclose(fuser.fuse(textured, flat), textured, atol=atol)
    np.testing.assert_allclose(fuser.fuse(flat, textured), textured, atol=atol)
    # Two constants: only the base is left, and it is averaged.
    np.testing.assert_allclose(
        fuser.fuse(np.full(shape, 0.2, np.float32), np.full(shape, 0.6, np.float32)), 0.4, atol=1e-5
    )


@pytest.mark.parametrize("name", ["lp", "dwt", "dtcwt"])
def test_multiscale_equal_sources_reconstruct_exactly(name, rng):
    x = rng.random((45, 61), dtype=np.float32)
    np.testing.assert_allclose(create(name).fuse(x, x), x, atol=1e-5)


@pytest.mark.parametrize("shape, levels", [((64, 96), 4), ((32, 32), 1), ((48, 16), 3)])
def test_dualtree_perfect_reconstruction(shape, levels, rng):
    x = rng.standard_normal(shape)
    p = _dualtree.forward(x, levels)
    assert len(p.highpasses) == levels
    assert p.highpasses[-1].shape == (6, shape[0] >> levels, shape[1] >> levels)
    np.testing.assert_allclose(_dualtree.inverse(p), x, atol=1e-10)


def test_dualtree_rejects_sizes_that_do_not_divide():
    with pytest.raises(ValueError):
        _dualtree.forward(np.zeros((30, 32)), 2)


def test_dualtree_subbands_are_analytic_and_oriented():
    """Levels >= 2: each complex wavelet keeps > 99 % of its energy in one half of the
    frequency plane (the two trees form Hilbert pairs), the diagonal ones in one quadrant,
    and the six sub-bands of a level point in six different directions."""
    n, levels = 64, 3
    fy = np.fft.fftfreq(n)[:, None]
    fx = np.fft.fftfreq(n)[None, :]
    halves = [fy > 0, fy < 0, fx > 0, fx < 0]
    quadrants = [(fy > 0) & (fx > 0), (fy > 0) & (fx < 0), (fy < 0) & (fx > 0), (fy < 0) & (fx < 0)]
    for level in (1, 2):  # 0-based: levels 2 and 3
        peaks = set()
        for k in range(6):
            parts = []
            for value in (1.0, 1j):
                p = _dualtree.forward(np.zeros((n, n)), levels)
                h = p.highpasses[level]
                h[k, h.shape[1] // 2, h.shape[2] // 2] = value
                parts.append(_dualtree.inverse(p))
            spec = np.abs(np.fft.fft2(parts[0] + 1j * parts[1])) ** 2
            total = spec.sum()
            assert max(spec[np.broadcast_to(m, spec.shape)].sum() for m in halves) > 0.99 * total
            if k >= 4:  # high-pass along both axes
                assert max(spec[np.broadcast_to(m, spec.shape)].sum() for m in quadrants) > 0.99 * total
            peaks.add(np.unravel_index(np.argmax(spec), spec.shape))
        assert len(peaks) == 6


def test_dtcwt_is_nearly_shift_invariant():
    """The energy of a level's complex coefficients barely moves when the input shifts by one
    pixel, unlike the real DWT's detail energy."""
    n = 64
    x = np.zeros((n, n))
    x[:, 30:] = 1.0  # vertical step edge
    energies_dt, energies_dwt = [], []
    import pywt

    for shift in range(4):
        xs = np.roll(x, shift, axis=1)
        p = _dualtree.forward(xs, 3)
        energies_dt.append(float((np.abs(p.highpasses[2]) ** 2).sum()))
        c = pywt.wavedec2(xs, "db2", mode="periodization", level=3)
        energies_dwt.append(float(sum((d**2).sum() for d in c[1])))
    spread = lambda e: (max(e) - min(e)) / max(e)  # noqa: E731
    assert spread(energies_dt) < 0.05
    assert spread(energies_dwt) > 2 * spread(energies_dt)


# ---------------------------------------------------------------- guided filter and GFF


def _naive_box_mean(x, r):
    h, w = x.shape
    out = np.empty_like(x)
    for i in range(h):
        for j in range(w):
            out[i, j] = x[max(i - r, 0) : i + r + 1, max(j - r, 0) : j + r + 1].mean()
    return out


def _naive_guided_filter(guide, src, r, eps):
    """He et al.'s Algorithm 1 written with explicit windows."""
    h, w = guide.shape
    a = np.empty_like(guide)
    b = np.empty_like(guide)
    for i in range(h):
        for j in range(w):
            gi = guide[max(i - r, 0) : i + r + 1, max(j - r, 0) : j + r + 1]
            pi = src[max(i - r, 0) : i + r + 1, max(j - r, 0) : j + r + 1]
            a[i, j] = ((gi * pi).mean() - gi.mean() * pi.mean()) / (gi.var() + eps)
            b[i, j] = pi.mean() - a[i, j] * gi.mean()
    return _naive_box_mean(a, r) * guide + _naive_box_mean(b, r)


@pytest.mark.parametrize("r", [1, 2, 4, 30])
def test_box_mean_matches_naive(r, rng):
    x = rng.random((9, 13))
    np.testing.assert_allclose(box_mean(x, r), _naive_box_mean(x, r), atol=1e-12)


@pytest.mark.parametrize("r, eps", [(1, 1e-6), (2, 0.01), (3, 0.3), (45, 0.3)])
def test_guided_filter_matches_naive_loop(r, eps, rng):
    guide = rng.random((11, 14))
    src = (rng.random((11, 14)) > 0.5).astype(float)
    np.testing.assert_allclose(
        guided_filter(guide, src, r, eps), _naive_guided_filter(guide, src, r, eps), atol=1e-10
    )


def test_guided_filter_known_answers(rng):
    guide = rng.random((20, 24))
    # A constant input stays that constant, whatever the guide.
    np.testing.assert_allclose(guided_filter(guide, np.full((20, 24), 0.7), 3, 0.01), 0.7, atol=1e-12)
    # Filtering an image guided by itself with a tiny eps preserves it (edge-preserving limit).
    np.testing.assert_allclose(guided_filter(guide, guide, 2, 1e-10), guide, atol=1e-5)
    # A huge eps turns it into a (double) box mean of the input.
    big = guided_filter(guide, guide, 2, 1e9)
    np.testing.assert_allclose(big, box_mean(box_mean(guide, 2), 2), atol=1e-6)
    # A batch of pairs filters each pair independently.
    g2, p2 = rng.random((2, 10, 12)), rng.random((2, 10, 12))
    batch = guided_filter(g2, p2, 2, 0.05)
    np.testing.assert_allclose(batch[1], guided_filter(g2[1], p2[1], 2, 0.05), atol=1e-12)


def test_gff_weights_are_a_partition_of_unity(scene):
    sc, vi = scene
    fuser = create("gff")
    wb, wd = fuser.weights(sc.ir.astype(np.float64), vi.astype(np.float64))
    for w in (wb, wd):
        assert w.shape == (2, *vi.shape) and w.min() >= 0.0
        np.testing.assert_allclose(w.sum(axis=0), 1.0, atol=1e-12)
    # Detail weights follow saliency sharply: on the textured background VI dominates.
    assert wd[1][sc.texture].mean() > 0.7


# ---------------------------------------------------------------- gradient transfer (TV-L1)


def test_gtf_lambda_zero_returns_infrared(rng):
    ir = rng.random((23, 31), dtype=np.float32)
    vi = rng.random((23, 31), dtype=np.float32)
    np.testing.assert_allclose(create("gtf", lam=0.0).fuse(ir, vi), ir, atol=1e-6)
    np.testing.assert_allclose(create("gtf", lam=1e-4).fuse(ir, vi), ir, atol=GRAY)


def test_gtf_large_lambda_returns_shifted_visible(rng):
    """lam -> inf forces x = F - VI to a constant (the median of IR - VI)."""
    ir = rng.random((24, 30), dtype=np.float32) * 0.3 + 0.4
    vi = rng.random((24, 30), dtype=np.float32) * 0.3 + 0.2
    out = create("gtf", lam=1000.0, max_iter=3000).fuse(ir, vi)
    x = out - vi
    assert float(x.std()) < 0.01
    assert abs(float(x.mean()) - float(np.median(ir - vi))) < 0.02


@pytest.mark.parametrize("lam, kept", [(2.0, True), (12.0, False)])
def test_tv_l1_square_known_answer(lam, kept):
    """TV-L1 keeps a convex shape when lam * perimeter < area (Chan & Esedoglu 2005):
    a 24 x 24 square has area / perimeter = 6."""
    u = np.zeros((48, 48), np.float32)
    u[12:36, 12:36] = 1.0
    x, info = tv_l1(u, lam, max_iter=3000)
    assert info.converged
    inside = x[16:32, 16:32].mean()
    if kept:
        assert inside > 0.95 and np.abs(x - u).mean() < 0.02
    else:
        assert np.abs(x).max() < 0.05


def test_tv_l1_reaches_the_minimum(scene):
    sc, vi = scene
    u = (sc.ir - vi)[64:160, 96:224]
    x, info = tv_l1(u, 4.0)
    assert info.converged and info.iterations < 1000
    x_ref, _ = tv_l1(u, 4.0, max_iter=3000, tol=0.0)
    e, e_ref = tv_energy(x, u, 4.0), tv_energy(x_ref, u, 4.0)
    assert e_ref <= e < 1.005 * e_ref
    assert e < tv_energy(u, u, 4.0) and e < tv_energy(np.full_like(u, np.median(u)), u, 4.0)
    assert np.abs(x - x_ref).mean() < 0.25 * GRAY


# ---------------------------------------------------------------- real pairs (TNO)


@pytest.mark.data
@pytest.mark.parametrize("name", CLASSICAL)
def test_tno_pair(name):
    from PIL import Image

    root = shared_dataset("tno")
    ir_file = sorted((root / "ir").glob("*.png"))[0]
    ir = np.asarray(Image.open(ir_file).convert("L"), np.float32)[:121, :143] / 255.0
    vi = np.asarray(Image.open(root / "vi" / ir_file.name).convert("L"), np.float32)[:121, :143]
    out = create(name).fuse(ir, vi / 255.0)
    assert out.shape == (121, 143) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0 and out.std() > 0.01
