"""The machinery behind evaluate(): threads, per-channel scheduling, the array pool, row blocks.

Whatever the scheduling, the values must be exactly those of a sequential run.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from ivfuse import metrics as M
from ivfuse.errors import InputError
from ivfuse.metrics import arctan, buffers, filters, planes, scheduler

H, W = 90, 123  # not multiples of the 16-pixel QCV blocks nor of the row blocks


def _img(seed: int, channels: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    img = 90 + 70 * np.sin(x / (3 + seed)) * np.cos(y / 6) + rng.normal(0, 8, (H, W))
    img[: H // 4, : W // 3] = 255  # flat, saturated
    img[-H // 5 :, -W // 4 :] = 0  # flat, black
    if channels:
        img = np.stack([img, 0.7 * img + 30, 0.4 * img + 60], axis=-1)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def rgb_triple() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _img(1, 3), _img(2), _img(3, 3)


@pytest.fixture
def threads():
    old = M.set_threads(None)
    yield
    M.set_threads(old)


def test_threads_give_bit_identical_values(rgb_triple, threads):
    fused, ir, vi = rgb_triple
    results = []
    for n in (1, 2, 3):
        M.set_threads(n)
        results.append(M.evaluate(fused, ir, vi, metrics="all"))
        results.append(M.evaluate(fused, ir, vi, metrics="all", profile="ma2019"))
    for other in results[2:]:
        ref = results[0] if other.keys() == results[0].keys() else results[1]
        assert other.keys() == ref.keys()
        for k in ref:
            assert other[k] == ref[k] or (math.isnan(other[k]) and math.isnan(ref[k])), k


def test_evaluate_equals_the_pure_functions(rgb_triple, threads):
    """Per-channel scheduling, released planes and pooled arrays change nothing."""
    fused, ir, vi = rgb_triple
    M.set_threads(2)
    got = M.evaluate(fused, ir, vi, metrics=["QCB", "QCV", "SSIM", "QABF", "VIFF", "MI", "QY"])
    assert got["QCB"] == pytest.approx(M.qcb(fused, ir, vi), rel=1e-13)
    assert got["QCV"] == pytest.approx(M.qcv(fused, ir, vi), rel=1e-13)
    assert got["SSIM"] == pytest.approx(M.ssim_fusion(fused, ir, vi), rel=1e-13)
    assert got["QABF"] == pytest.approx(M.qabf(fused, ir, vi), rel=1e-13)
    assert got["VIFF"] == pytest.approx(M.viff(fused, ir, vi), rel=1e-13)
    assert got["MI"] == pytest.approx(M.mutual_information(fused, ir, vi), rel=1e-13)
    assert got["QY"] == pytest.approx(M.qy(fused, ir, vi), rel=1e-13)


def test_pooled_arrays_are_not_shared_between_calls(rgb_triple, threads):
    """Arrays go back to the pool after each call; later calls (other sizes too) reuse them."""
    fused, ir, vi = rgb_triple
    M.set_threads(2)
    first = M.evaluate(fused, ir, vi)
    small = [x[5:70, 7:100] for x in (fused, ir, vi)]
    first_small = M.evaluate(*small)
    for _ in range(2):
        assert M.evaluate(fused, ir, vi) == first
        assert M.evaluate(*small) == first_small
    buffers.POOL.clear()
    assert M.evaluate(fused, ir, vi) == first


def test_concurrent_calls_from_user_threads(rgb_triple, threads):
    fused, ir, vi = rgb_triple
    M.set_threads(2)
    expected = M.evaluate(fused, ir, vi)
    out: list[dict[str, float]] = []

    def work() -> None:
        out.append(M.evaluate(fused, ir, vi))

    ts = [threading.Thread(target=work) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert out == [expected] * 3


@pytest.mark.parametrize("n", [1, 2])
def test_the_first_failing_metric_in_request_order_raises(threads, n):
    M.set_threads(n)
    small = np.full((20, 20), 7, np.uint8)
    with pytest.raises(InputError, match="VIF/VIFF need images of at least 48"):
        M.evaluate(small, small, small, metrics=["EN", "VIFF", "IFC"])
    with pytest.raises(InputError, match="IFC needs images of at least 64"):
        M.evaluate(small, small, small, metrics=["EN", "IFC", "VIFF"])
    # and the failure leaves nothing behind
    assert M.evaluate(small, small, small, metrics=["EN"]) == {"EN": 0.0}


def test_thread_settings(threads, monkeypatch):
    assert M.get_threads() >= 1
    assert M.set_threads(3) is None
    assert M.get_threads() == 3
    M.set_threads(None)
    monkeypatch.setenv("IVFUSE_METRICS_THREADS", "1")
    assert M.get_threads() == 1
    monkeypatch.setenv("IVFUSE_METRICS_THREADS", "zero")
    with pytest.raises(ValueError, match="IVFUSE_METRICS_THREADS"):
        M.get_threads()
    with pytest.raises(ValueError, match="positive integer"):
        M.set_threads(0)


@pytest.mark.parametrize("m", [1, 2, 5, 16, 17, 100, 1000])
@pytest.mark.parametrize("width", [1, 3, 640, 5000])
def test_row_blocks_cover_the_rows_once(m, width):
    for start in (0, min(3, m)):
        blocks = buffers.row_blocks(start, m, width)
        rows = [r for sl in blocks for r in range(sl.start, sl.stop)]
        assert rows == list(range(start, m))
    aligned = buffers.aligned_row_blocks(m, width, 16)
    assert [r for sl in aligned for r in range(sl.start, sl.stop)] == list(range(m))
    assert all(sl.start % 16 == 0 for sl in aligned)


def test_array_pool_reuses_and_respects_its_limit():
    pool = buffers.ArrayPool(limit=1000)
    a = pool.take((10, 10))  # 800 bytes
    pool.give(a)
    assert pool.take((10, 10)) is a
    pool.give(a, np.empty((10, 10)))  # the second would exceed the limit
    assert pool.take((10, 10)) is a
    assert pool.take((10, 10)) is not a


def test_integer_valued_inputs_take_the_exact_8bit_paths(rgb_triple):
    fused, ir, vi = rgb_triple
    p = planes.Plane(fused[..., 0].astype(np.float32))
    assert p.u8 is not None and np.array_equal(p.u8, fused[..., 0])
    assert planes.Plane(fused[..., 0].astype(np.uint16) * 257).u8 is not None
    assert planes.Plane(fused[..., 0] + np.float64(0.5)).u8 is None
    got16 = M.evaluate(*(x.astype(np.uint16) * 257 for x in rgb_triple))
    assert got16 == M.evaluate(fused, ir, vi)


def test_engine_releases_every_plane(rgb_triple):
    fused, ir, vi = rgb_triple
    prep = planes.prepare(fused, ir, vi)
    infos = [M.lookup(M.get_profile("vifb"), n) for n in ("SSIM", "QCB", "SF")]
    scheduler.run_jobs([(i.compute, prep) for i in infos])
    used = {id(p): p for t in prep.triples for p in (t.fused, t.vi, t.ir)}
    assert all(not p._memo and not p._owned for p in used.values())
    assert all(not t.memo for t in prep.triples)


@pytest.mark.parametrize("scale", [1e-3, 0.4, 1.0, 2.5, 100.0, 1e30])
def test_arctan_f32_within_3_ulp(scale):
    x = (np.random.default_rng(7).standard_normal(50_003) * scale).astype(np.float32)
    ref = np.arctan(x.astype(np.float64))
    got = arctan.arctan_f32(x)
    assert got.dtype == np.float32
    ulp = np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(got - ref) / ulp) <= 3.0


def test_arctan_f32_special_values_and_in_place():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 1e-40, 3e38], np.float32)
    got = arctan.arctan_f32(x)
    want = np.arctan(x)
    assert np.array_equal(np.signbit(got[:2]), [False, True])
    np.testing.assert_allclose(got, want, rtol=3e-7, atol=0)  # NaN == NaN here
    y = (np.random.default_rng(1).standard_normal((37, 41)) * 5).astype(np.float32)
    expect = arctan.arctan_f32(y.copy())
    assert arctan.arctan_f32(y, out=y) is y and np.array_equal(y, expect)
    with pytest.raises(TypeError):
        arctan.arctan_f32(np.zeros(3))
    with pytest.raises(ValueError, match="contiguous"):
        arctan.arctan_f32(y[:, ::2])
    assert arctan.arctan_f32(np.zeros((0, 5), np.float32)).shape == (0, 5)


def test_qabf_same_with_either_arctan(monkeypatch, rgb_triple):
    fused, ir, vi = rgb_triple
    values = {}
    for simd in (True, False):
        monkeypatch.setattr(arctan, "NUMPY_SIMD_ARCTAN", simd)
        values[simd] = M.qabf(fused, ir, vi)
    assert values[True] == pytest.approx(values[False], rel=1e-6)


def test_qabf_angle_table_matches_direct_arctangent():
    from ivfuse.metrics import structural

    img = _img(4)
    img[10:20, 30:40] = 0  # flat: sx == sy == 0
    img[40:50, 5] = 255  # vertical line: sx == 0 next to it, sy != 0 at its ends
    plane = planes.make_plane(img)
    _, g, alpha, _ = structural._qabf_grad(plane)
    dx, dy = filters.sobel(img, "zero")
    dx, dy = dx.astype(np.float64), dy.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        want = np.where(dx == 0, np.pi / 2, np.arctan(dy / -dx))
    assert alpha.dtype == np.float32
    assert np.abs(alpha - want).max() < 2e-7  # float32 rounding of the ratio and of atan
    assert np.all(alpha[dx == 0] == np.float32(np.pi / 2))
    np.testing.assert_allclose(g, 255 * np.hypot(dx, dy), rtol=1e-6)
