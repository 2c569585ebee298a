"""Known answers and properties of the metrics (small synthetic images, no shared data needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ivfuse import metrics as M
from ivfuse.errors import InputError
from ivfuse.metrics import filters, validation

H, W = 72, 96


def _scene(seed: int) -> np.ndarray:
    """A textured uint8 test image: gradient, blobs, stripes and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    img = 60 + 80 * x / W + 40 * np.sin(x / (3 + seed)) * np.cos(y / 5)
    cy, cx = rng.uniform(10, H - 10), rng.uniform(10, W - 10)
    img += 90 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 60)
    img += rng.normal(0, 6, size=img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def triple() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ir, vi = _scene(1), _scene(2)
    fused = np.clip(0.5 * ir.astype(float) + 0.5 * vi + 3, 0, 255).astype(np.uint8)
    return fused, ir, vi


SOURCE_METRICS = [
    "CE", "MI", "PSNR", "RMSE", "SSIM", "QABF", "QCB", "QCV",
    "NMI", "QY", "IFC", "CC", "SCD", "VIFP", "VIFF", "MEF-SSIM",
]  # fmt: skip
SYMMETRIC = [m for m in SOURCE_METRICS if m != "VIFF"]  # VIFF breaks gain ties towards IR


# ---------------------------------------------------------------------------- hand-computed


def test_entropy_known_answers():
    half = np.zeros((4, 8), np.uint8)
    half[:, 4:] = 255
    assert M.entropy(half) == pytest.approx(1.0)
    all_levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert M.entropy(all_levels) == pytest.approx(8.0)
    assert M.entropy(all_levels, base=math.e) == pytest.approx(8.0 * math.log(2))
    assert M.entropy(np.full((5, 5), 7, np.uint8)) == 0.0


def test_gld_and_forward_ag_by_hand():
    f = np.array([[0, 1, 4], [3, 7, 2], [5, 5, 9]], dtype=np.uint8)
    # GLD, IFESNet eq. 18: pixels (i, j) with i < M, j < N, divided by (M-1)(N-1) = 4
    gld = (abs(0 - 3) + abs(0 - 1) + abs(1 - 7) + abs(1 - 4) + abs(3 - 5) + abs(3 - 7) + abs(7 - 5)
           + abs(7 - 2)) / 4  # fmt: skip
    assert M.gray_level_difference(f) == pytest.approx(gld)
    ag = (
        math.sqrt(((3 - 0) ** 2 + (1 - 0) ** 2) / 2)
        + math.sqrt(((7 - 1) ** 2 + (4 - 1) ** 2) / 2)
        + math.sqrt(((5 - 3) ** 2 + (7 - 3) ** 2) / 2)
        + math.sqrt(((5 - 7) ** 2 + (2 - 7) ** 2) / 2)
    ) / 4
    assert M.average_gradient(f, scheme="forward") == pytest.approx(ag)
    assert M.evaluate(f, metrics=["AG_FWD", "GLD"]) == pytest.approx({"AG_FWD": ag, "GLD": gld})


def test_vifb_average_gradient_and_sf_by_hand():
    f = np.array([[0, 1], [3, 7]], dtype=np.uint8)
    # MATLAB gradient on a 2x2 image: one-sided differences everywhere
    gx = np.array([[1, 1], [4, 4]])
    gy = np.array([[3, 6], [3, 6]])
    ag = np.sqrt((gx**2 + gy**2) / 2).sum() / 1
    assert M.average_gradient(f) == pytest.approx(ag)
    # SF: squared row and column differences over M N = 4
    rf = ((1 - 0) ** 2 + (7 - 3) ** 2) / 4
    cf = ((3 - 0) ** 2 + (7 - 1) ** 2) / 4
    assert M.spatial_frequency(f) == pytest.approx(math.sqrt(rf + cf))


def test_spatial_frequency_puts_colour_channels_side_by_side():
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 50
    # constant channels: only the two seams contribute, each 2 rows of one difference
    rf = (2 * 10**2 + 2 * 30**2) / (2 * 6)
    assert M.spatial_frequency(rgb) == pytest.approx(math.sqrt(rf))


def test_sd_global_and_column_mean():
    f = np.array([[0, 10], [4, 10]], dtype=np.uint8)
    assert M.standard_deviation(f) == pytest.approx(np.std(f.astype(float)))
    # column means 2 and 10: deviations (-2, 2, 0, 0)
    assert M.standard_deviation(f, mean="column") == pytest.approx(math.sqrt(8 / 4))


def test_scd_and_cc_by_hand():
    a = np.array([[10, 20, 30], [40, 50, 70]], dtype=np.uint8)
    b = np.array([[5, 9, 2], [8, 1, 3]], dtype=np.uint8)
    f = np.array([[12, 25, 28], [45, 49, 66]], dtype=np.uint8)
    af, bf, ff = (x.astype(float).ravel() for x in (a, b, f))

    def r(x, y):
        x, y = x - x.mean(), y - y.mean()
        return (x * y).sum() / math.sqrt((x * x).sum() * (y * y).sum())

    # a = visible, b = infrared
    assert M.scd(f, b, a) == pytest.approx(r(ff - bf, af) + r(ff - af, bf))
    assert M.correlation_coefficient(f, b, a) == pytest.approx((r(ff, af) + r(ff, bf)) / 2)


def test_vifb_rmse_and_psnr_by_hand():
    s = np.full((4, 5), 100, np.uint8)
    f = s + 4  # constant difference d = 4: e = sqrt(20 * 16) / 20 = 4 / sqrt(20)
    e = 4 / math.sqrt(20)
    assert M.rmse_vifb(f, s, s) == pytest.approx(e)
    assert M.psnr_vifb(f, s, s) == pytest.approx(20 * math.log10(255 / math.sqrt(e)))


def test_cross_entropy_is_kl_on_common_support():
    s = np.array([[0, 0, 1, 1]], dtype=np.uint8).repeat(2, axis=0)  # p_S = (.5, .5)
    f = np.array([[0, 1, 1, 2]], dtype=np.uint8).repeat(2, axis=0)  # p_F = (.25, .5, .25)
    kl = 0.5 * math.log2(0.5 / 0.25) + 0.5 * math.log2(0.5 / 0.5)
    assert M.cross_entropy(f, s, s) == pytest.approx(kl)


def test_reference_psnr_and_ssim():
    gt = _scene(3)
    f = gt.astype(np.int16) + 5
    f = np.clip(f, 0, 255).astype(np.uint8)
    mse = np.mean((f.astype(float) - gt) ** 2)
    assert M.psnr(f, gt) == pytest.approx(10 * math.log10(255**2 / mse))
    assert M.psnr(gt, gt) == math.inf
    assert M.ssim_ref(gt, gt) == pytest.approx(1.0)
    assert M.ssim_ref(f, gt) < 1.0
    got = M.evaluate(f, reference=gt, metrics=["PSNR_REF", "SSIM_REF"])
    assert got["PSNR_REF"] == pytest.approx(M.psnr(f, gt))


def test_qabf_of_identical_images_shows_vifb_tie_rule():
    f = _scene(4)
    # g_X == g_F everywhere: VIFB's tie rule takes G = g_F (x255, large) instead of 1, and the
    # orientation agreement is 1, so Q = Tg * Ta / (1 + exp(-22 * (1 - 0.8))) wherever g > 0
    expected = 0.9994 * 0.9879 / (1 + math.exp(-22 * 0.2))
    assert M.qabf(f, f, f) == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------------------- maxima / identities


def test_sources_equal_to_fused_give_the_ideal_values():
    f = _scene(5)
    got = M.evaluate(f, f, f, metrics="all")
    en = M.entropy(f)
    assert got["MI"] == pytest.approx(2 * en * math.log(2))  # nats in the vifb profile
    assert got["NMI"] == pytest.approx(2.0)
    assert got["CC"] == pytest.approx(1.0)
    assert got["CE"] == pytest.approx(0.0, abs=1e-12)
    assert got["SSIM"] == pytest.approx(2.0)
    assert got["QY"] == pytest.approx(1.0)
    assert got["QCB"] == pytest.approx(1.0)
    assert got["QCV"] == pytest.approx(0.0, abs=1e-9)
    assert got["VIFF"] == pytest.approx(1.0, abs=1e-6)
    assert got["VIFP"] == pytest.approx(2.0, abs=1e-6)
    assert got["MEF-SSIM"] == pytest.approx(1.0, abs=1e-6)
    assert got["RMSE"] == 0.0 and got["PSNR"] == math.inf
    ma = M.evaluate(f, f, f, metrics=["MI", "VIF"], profile="ma2019")
    assert ma["MI"] == pytest.approx(2 * en)  # bits in ma2019
    assert ma["VIF"] == pytest.approx(1.0, abs=1e-6)


def test_ideal_values_are_upper_bounds(triple):
    fused, ir, vi = triple
    got = M.evaluate(fused, ir, vi, metrics="all")
    assert 0 < got["NMI"] < 2 and 0 < got["CC"] < 1 and 0 < got["QY"] < 1
    assert 0 < got["SSIM"] < 2 and 0 < got["QCB"] < 1 and got["QCV"] > 0
    assert 0 < got["VIFF"] < 1 and 0 < got["MEF-SSIM"] < 1 and got["IFC"] > 0


@pytest.mark.parametrize("name", ["IFC", "VIFF", "VIFP", "QABF", "SSIM", "QY"])
def test_noise_in_the_fused_image_lowers_fidelity(triple, name):
    fused, ir, vi = triple
    rng = np.random.default_rng(0)
    noisy = np.clip(fused + rng.normal(0, 25, fused.shape), 0, 255).astype(np.uint8)
    clean = M.evaluate(fused, ir, vi, metrics=[name])[name]
    assert M.evaluate(noisy, ir, vi, metrics=[name])[name] < clean


@pytest.mark.parametrize("name", SYMMETRIC)
def test_swapping_ir_and_vi_leaves_symmetric_metrics_unchanged(triple, name):
    fused, ir, vi = triple
    a = M.evaluate(fused, ir, vi, metrics=[name])[name]
    b = M.evaluate(fused, vi, ir, metrics=[name])[name]
    assert a == pytest.approx(b, rel=1e-9, abs=1e-12)


def test_fused_only_metrics_ignore_the_sources(triple):
    fused, ir, vi = triple
    names = ["EN", "SD", "SF", "AG", "EI", "GLD", "AG_FWD"]
    alone = M.evaluate(fused, metrics=names)
    assert M.evaluate(fused, ir, vi, metrics=names) == alone
    assert M.evaluate(fused, vi, ir, metrics=names) == alone


# ---------------------------------------------------------------------------- conventions


def test_mi_bits_vs_nats_and_sum(triple):
    fused, ir, vi = triple
    nats = M.mutual_information(fused, ir, vi)
    bits = M.mutual_information(fused, ir, vi, base=2, stretch=False)
    assert bits == pytest.approx(nats / math.log(2))
    assert M.evaluate(fused, ir, vi, metrics=["MI"], profile="ma2019")["MI"] == pytest.approx(bits)
    mean = M.mutual_information(fused, ir, vi, combine="mean")
    assert mean == pytest.approx(nats / 2)


def test_ma2019_uses_column_mean_sd_and_viff(triple):
    fused, ir, vi = triple
    ma = M.evaluate(fused, ir, vi, profile="ma2019")
    assert list(ma) == ["EN", "MI", "SD", "SF", "VIF", "AG"]
    assert ma["SD"] == pytest.approx(M.standard_deviation(fused, mean="column"))
    assert ma["VIF"] == pytest.approx(M.viff(fused, ir, vi))
    assert ma["AG"] == pytest.approx(M.average_gradient(fused))


def test_vifb_colour_rule_is_mean_over_channels(triple):
    fused, ir, vi = triple
    rgb_f = np.stack([fused, np.roll(fused, 3, axis=1), 255 - fused], axis=-1)
    rgb_vi = np.stack([vi, vi // 2, np.roll(vi, 5, axis=0)], axis=-1)
    for name in ["MI", "QABF", "SSIM", "CE", "QCB", "EN"]:
        got = M.evaluate(rgb_f, ir, rgb_vi, metrics=[name])[name]
        per = [M.evaluate(rgb_f[..., k], ir, rgb_vi[..., k], metrics=[name])[name] for k in range(3)]
        assert got == pytest.approx(np.mean(per), rel=1e-12), name
        # a 3-channel IR with equal channels (VIFB's JPEGs) is the same as a gray IR
        ir3 = np.repeat(ir[..., None], 3, axis=-1)
        assert M.evaluate(rgb_f, ir3, rgb_vi, metrics=[name])[name] == pytest.approx(got, rel=1e-12)


def test_ma2019_converts_colour_with_rgb2gray(triple):
    fused, ir, vi = triple
    rgb = np.stack([fused, vi, ir], axis=-1)
    gray = M.rgb2gray(rgb)
    expected = np.floor(rgb.astype(float) @ np.array(validation.RGB2GRAY) + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(gray, expected)
    assert M.evaluate(rgb, ir, vi, profile="ma2019") == M.evaluate(gray, ir, vi, profile="ma2019")


def test_uint16_and_float_inputs_are_on_the_8bit_scale(triple):
    fused, ir, vi = triple
    names = ["EN", "MI", "SSIM", "QABF", "SD"]
    ref = M.evaluate(fused, ir, vi, metrics=names)
    as16 = [x.astype(np.uint16) * 257 for x in (fused, ir, vi)]
    assert M.evaluate(*as16, metrics=names) == pytest.approx(ref, rel=1e-12)
    asf = [x.astype(np.float32) for x in (fused, ir, vi)]
    assert M.evaluate(*asf, metrics=names) == pytest.approx(ref, rel=1e-6)


def test_opencv_and_scipy_filter_paths_agree(triple):
    """The OpenCV filters (and exact integer Sobel) give what scipy.ndimage gives in float64."""
    fused, ir, vi = triple
    rgb = np.stack([fused, vi, 255 - ir], axis=-1)
    fast = M.evaluate(rgb, ir, vi, metrics="all")
    with M.filter_impl("scipy"):
        slow = M.evaluate(rgb, ir, vi, metrics="all")
    assert M.get_filter_impl() == "opencv"
    assert fast == pytest.approx(slow, rel=1e-9, abs=1e-9, nan_ok=True)


# ---------------------------------------------------------------------------- input validation


def test_registry_lists_every_metric_with_a_source():
    infos = M.list_metrics()
    assert {(m.profile, m.name) for m in infos} >= {("vifb", "QCV"), ("ma2019", "VIF"), ("vifb", "IFC")}
    for m in infos:
        assert m.direction in ("higher", "lower") and m.source and m.family in (
            "information", "statistics", "structural", "visual", "reference",
        )  # fmt: skip
    assert len(M.get_profile("vifb").default) == 13


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metrics": ["NOPE"]}, "unknown metric 'NOPE'"),
        ({"metrics": ["VIF"]}, "VIFP"),
        ({"profile": "matlab"}, "unknown metric profile"),
        ({"metrics": ["PSNR_REF"]}, "needs a reference image"),
    ],
)
def test_bad_requests_raise_input_error(triple, kwargs, message):
    fused, ir, vi = triple
    with pytest.raises(InputError, match=message):
        M.evaluate(fused, ir, vi, **kwargs)


def test_bad_inputs_raise_input_error(triple):
    fused, ir, vi = triple
    with pytest.raises(InputError, match="fused image is 96x72"):
        M.evaluate(fused, ir[:-1], vi)
    with pytest.raises(InputError, match=r"\(H, W, 3\)"):
        M.evaluate(np.zeros((8, 8, 4), np.uint8))
    with pytest.raises(InputError, match="NaN"):
        M.entropy(np.full((8, 8), np.nan))
    with pytest.raises(InputError, match="needs the infrared and visible"):
        M.evaluate(fused, metrics=["MI"])
    with pytest.raises(InputError, match="both the infrared and the visible"):
        M.evaluate(fused, ir)
    with pytest.raises(InputError, match="needs the source images"):
        M.qabf(fused, None, vi)
    with pytest.raises(InputError, match="smaller than"):
        M.ssim_fusion(fused[:8, :8], ir[:8, :8], vi[:8, :8])
    with pytest.raises(InputError, match="values above 255"):
        M.entropy(np.full((8, 8), 1000, np.int32))
    with pytest.warns(UserWarning, match="0..255 scale"):
        M.entropy(np.full((8, 8), 0.5))
    with pytest.raises(InputError, match="file not found"):
        M.evaluate("/nonexistent/fused.png", metrics=["EN"])


def _mef_ssim_patchwise(seq: list[np.ndarray], f: np.ndarray) -> float:
    """One scale of MEF-SSIM written patch by patch, the way mef_ssim.m states it."""
    w, eps = 11, np.finfo(float).eps
    t = np.arange(w) - 5.0
    g1 = np.exp(-(t * t) / (2 * 1.5**2))
    win = np.outer(g1, g1) / np.outer(g1, g1).sum()
    c = (0.03 * 255) ** 2
    m, n = f.shape
    q = []
    for i in range(m - w + 1):
        for j in range(n - w + 1):
            xs = [s[i : i + w, j : j + w].ravel() for s in seq]
            mus = [x.mean() for x in xs]
            ed = [math.sqrt(max(((x - mu) ** 2).sum(), 0)) + 0.001 for x, mu in zip(xs, mus, strict=True)]
            den = sum(np.linalg.norm(x - mu) for x, mu in zip(xs, mus, strict=True))
            tot = sum(xs)
            r = (np.linalg.norm(tot - tot.mean()) + eps) / (den + eps)
            r = 1 - eps if r > 1 else (eps if r < 0 else r)
            p = min(math.tan(math.pi / 2 * r), 10.0)
            wts = [(e / w) ** p + eps for e in ed]
            wts = [v / sum(wts) for v in wts]
            rb = sum(wk * (x - mu) / e for wk, x, mu, e in zip(wts, xs, mus, ed, strict=True))
            if np.linalg.norm(rb) > 0:
                rb = rb / np.linalg.norm(rb) * max(ed)
            fv = f[i : i + w, j : j + w].ravel()
            wv = win.ravel()
            m1, m2 = (wv * rb).sum(), (wv * fv).sum()
            s1, s2 = (wv * (rb - m1) ** 2).sum(), (wv * (fv - m2) ** 2).sum()
            s12 = (wv * (rb - m1) * (fv - m2)).sum()
            q.append((2 * s12 + c) / (s1 + s2 + c))
    return float(np.mean(q))


def test_mef_ssim_scale_matches_a_patchwise_implementation():
    from ivfuse.metrics.structural import _mef_ssim_scale

    a = _scene(6)[:24, :30].astype(float)
    b = np.clip(a * 0.4 + _scene(7)[:24, :30] * 0.6, 0, 255)
    f = np.clip(0.5 * a + 0.5 * b + np.random.default_rng(3).normal(0, 4, a.shape), 0, 255)
    assert _mef_ssim_scale([a, b], f) == pytest.approx(_mef_ssim_patchwise([a, b], f), rel=1e-9)


# ---------------------------------------------------------------------------- QY in flat windows


def _qy_two_pass(fused: np.ndarray, ir: np.ndarray, vi: np.ndarray) -> float:
    """Yang's Q_Y for gray images, written independently of ivfuse: every 7 x 7 window's statistics
    by the two-pass formulas (var = sum w (x - mu)^2), whose round-off in a flat window is ~1e-28,
    far below C = 2e-16 (``E[x^2] - mu^2`` leaves ~1e-11 there). Sources A = visible, B = infrared."""
    g = filters.fspecial_gaussian_1d(7, 1.5)
    w = np.outer(g, g)
    c = 2e-16

    def windows(x):
        return np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), (7, 7))

    def stats(x):
        win = windows(x)
        mu = (win * w).sum((-2, -1))
        return win - mu[..., None, None], mu

    def ssim(x, y):
        (dx, mx), (dy, my) = stats(x), stats(y)
        vx, vy, cxy = ((d * e * w).sum((-2, -1)) for d, e in ((dx, dx), (dy, dy), (dx, dy)))
        s = (2 * mx * my + c) * (2 * cxy + c) / ((mx * mx + my * my + c) * (vx + vy + c))
        return s, vx, vy

    s_ab, va, vb = ssim(vi, ir)
    s_af, s_bf = ssim(vi, fused)[0], ssim(ir, fused)[0]
    lam = va / (va + vb)
    q = np.where(s_ab >= 0.75, lam * s_af + (1 - lam) * s_bf, np.maximum(s_af, s_bf))
    return float(q.mean())


def test_qy_of_a_flat_source_and_fused_image_is_their_luminance_similarity():
    """Visible flat at 200 and fused flat at 248: every window's SSIM(A, F) is exactly the luminance
    term 2 * 200 * 248 / (200^2 + 248^2). Before flat windows were computed exactly, E[x^2] - mu^2
    round-off made that SSIM 7.1e4 and QY the same (QY above 1 on RoadScene: 5.7 for `max`)."""
    rng = np.random.default_rng(3)
    ir = rng.integers(0, 200, (24, 30), dtype=np.uint8)  # textured: SSIM(A, B) ~ 0, the max branch
    vi = np.full((24, 30), 200, np.uint8)
    fused = np.full((24, 30), 248, np.uint8)
    got = M.qy(fused, ir, vi)
    assert got == pytest.approx(2 * 200 * 248 / (200**2 + 248**2), rel=1e-12)
    assert got == pytest.approx(_qy_two_pass(fused, ir, vi), rel=1e-9)
    # both sources flat: l = var_A / (var_A + var_B) is 0/0 in every window, all are dropped
    assert math.isnan(M.qy(fused, np.full((24, 30), 90, np.uint8), vi))


def test_qy_of_a_partly_saturated_pair_matches_two_pass_statistics():
    """A scene whose right part is a saturated plateau in the visible image and flat in the fused
    one (as in RoadScene's skies): within [-1, 1] and equal to the two-pass computation."""
    ir = _scene(7)[:40, :56]
    vi = _scene(8)[:40, :56].copy()
    vi[:, 30:] = 200  # plateau, 26 px wide: 20 columns of flat 7 x 7 windows
    fused = ((ir.astype(np.uint16) + vi) // 2).astype(np.uint8)
    fused[:, 30:] = 248
    got = M.qy(fused, ir, vi)
    assert -1 <= got <= 1
    assert got == pytest.approx(_qy_two_pass(fused, ir, vi), rel=1e-9)
    # colour visible (vifb: per RGB channel, IR replicated) with the plateau saturated in one channel
    rgb = np.stack([vi, vi // 2, np.where(vi == 200, 255, vi)], axis=-1).astype(np.uint8)
    frgb = np.stack([fused, fused // 2, np.where(fused == 248, 250, fused)], axis=-1).astype(np.uint8)
    per_channel = [_qy_two_pass(frgb[..., k], ir, rgb[..., k]) for k in range(3)]
    assert M.qy(frgb, ir, rgb) == pytest.approx(np.mean(per_channel), rel=1e-9)
