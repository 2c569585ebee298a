"""The mefb profile: MEFB's 120 stored values (../shared/data/mefb_ref), properties of the metrics new
with it (FMI, TE, QNCIE, QP, QC, QW), MATLAB edge cases, the plain backend, and ``ivfuse eval``
on a folder of multi-exposure pairs."""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ivfuse import metrics as M
from ivfuse.cli import app
from ivfuse.errors import InputError
from ivfuse.io import read_image
from ivfuse.metrics import phase
from ivfuse.metrics.feature import matlab_edge_sobel

from .conftest import SHARED_DATA

MEFB_REF = SHARED_DATA / "mefb_ref"
MEF = SHARED_DATA / "mef_mefb"
EXT = {"Lighthouse": "png", "Knossos6": "tif"}

# MEFB's names (as in reference.csv and MEFB's tables) -> ivfuse's names in the mefb profile
NAMES = {
    "Cross_entropy": "CE",
    "Entropy": "EN",
    "FMI": "FMI",
    "NMI": "NMI",
    "Psnr": "PSNR",
    "Qncie": "QNCIE",
    "TE": "TE",
    "Avg_gradient": "AG",
    "Edge_intensity": "EI",
    "Qabf": "QABF",
    "Qp": "QP",
    "SD": "SD",
    "Spatial_frequency": "SF",
    "Qc": "QC",
    "Qw": "QW",
    "Qy": "QY",
    "MEF_SSIM": "MEF-SSIM",
    "Qcb": "QCB",
    "Qcv": "QCV",
    "VIF": "VIF",
}

#: the values not reproduced to the 5 stored digits, with the largest relative error measured over
#: the 6 triples (README, "mefb profile"): QC and QY weigh local SSIM maps whose constants are
#: 2e-16, so in flat (saturated or black) windows MATLAB's values are decided by floating-point
#: round-off of the window sums, i.e. by MATLAB's own summation order. ivfuse gives flat windows
#: their exact value (QY and QC <= 1; round-off had made a RoadScene pair's QY 198), which moves
#: QY 3.4e-4 to 7.2e-4 from MATLAB's on the three Knossos6 triples (1.3e-4 before); QP differs by up
#: to 8e-4 for a reason not found (its value does not move under 1e-6 perturbations of the inputs)
NOT_EXACT = {"Qc": 5e-3, "Qy": 1e-3, "Qp": 1e-3}


def _reference() -> dict[tuple[str, str], dict[str, float]]:
    if not (MEFB_REF / "reference.csv").is_file() or not MEF.is_dir():
        pytest.skip(f"MEFB reference data not available at {MEFB_REF}")
    table: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    with open(MEFB_REF / "reference.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            table[(row["method"], row["image"])][row["metric"]] = float(row["value"])
    return table


def _triple(method: str, image: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        read_image(MEFB_REF / "fused" / f"{image}_{method}.{EXT[image]}"),
        read_image(MEF / "under" / f"{image}.png"),
        read_image(MEF / "over" / f"{image}.png"),
    )


def test_reference_file_has_120_values():
    ref = _reference()
    assert sum(len(v) for v in ref.values()) == 120
    assert {k for v in ref.values() for k in v} == set(NAMES)


def test_profile_has_mefb_metrics_in_mefb_order():
    prof = M.get_profile("mefb")
    assert prof.default == tuple(NAMES.values())
    for mefb_name, name in NAMES.items():  # MEFB's names are aliases
        assert M.registry.lookup(prof, mefb_name).name == name


@pytest.mark.parametrize("method", ["GFF", "MEFNet", "U2Fusion"])
@pytest.mark.parametrize("image", ["Lighthouse", "Knossos6"])
def test_mefb_profile_reproduces_matlab(method, image):
    expected = _reference()[(method, image)]
    fused, a, b = _triple(method, image)
    got = M.evaluate(fused, a, b, profile="mefb")  # A = under-exposed first, B second
    assert list(got) == list(NAMES.values())
    for mefb_name, value in expected.items():
        v = got[NAMES[mefb_name]]
        # 5 significant digits stored: the best possible agreement is rel. error <= 5e-5
        tol = NOT_EXACT.get(mefb_name, 5e-5)
        assert math.isclose(v, value, rel_tol=tol), (method, image, mefb_name, v, value)


def test_public_functions_agree_with_evaluate():
    _reference()
    fused, a, b = _triple("GFF", "Lighthouse")
    fused, a, b = fused[:120, :160], a[:120, :160], b[:120, :160]  # a crop: the same code, faster
    got = M.evaluate(fused, a, b, metrics="FMI,TE,QNCIE,QP,QC,QW,VIF,SF", profile="mefb")
    direct = {
        "FMI": M.fmi(fused, a, b),
        "TE": M.tsallis_entropy(fused, a, b),
        "QNCIE": M.qncie(fused, a, b),
        "QP": M.qp(fused, a, b),
        "QC": M.qc(fused, a, b),
        "QW": M.qw(fused, a, b),
        "VIF": M.viff(fused, b, a),  # VIFF's argument order is VIFB's (ir = img2 = B)
        "SF": float(np.mean([M.spatial_frequency(fused[:, :, k]) for k in range(3)])),
    }
    for k, v in direct.items():
        assert got[k] == pytest.approx(v, rel=1e-12, abs=1e-12), k


# ---------------------------------------------------------------------------- synthetic images


def _scene(seed: int, h: int = 64, w: int = 72, color: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 110 + 70 * np.sin(x / (3.0 + seed % 4)) * np.cos(y / 5.0) + rng.normal(0, 12, (h, w))
    img = np.stack([base, base * 0.8 + 20, 255 - base * 0.9], axis=2) if color else base
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def mef_triple():
    a = (_scene(1).astype(float) * 0.45).astype(np.uint8)  # darker
    b = np.clip(_scene(2).astype(float) * 1.3 + 40, 0, 255).astype(np.uint8)  # brighter, some saturated
    f = ((a.astype(int) + b) // 2).astype(np.uint8)
    return f, a, b


@pytest.mark.parametrize("name", ["FMI", "QC", "QW"])
def test_fused_equal_to_both_sources_gives_the_maximum(name):
    x = _scene(5)
    v = M.evaluate(x, x, x, metrics=name, profile="mefb")[name]
    assert v == pytest.approx(1.0, abs=1e-9)


def test_qp_of_identical_images_is_just_below_one():
    """metricsQp.m masks the source feature maps (PC > 0.1) but not F's, so even F = A = B
    correlates a masked map with an unmasked one: slightly below 1, never above."""
    x = _scene(5)
    v = M.qp(x, x, x)
    assert 0.999 < v <= 1.0


@pytest.mark.parametrize("name", ["FMI", "QNCIE", "QP", "QC", "QW", "TE"])
def test_bounded_and_finite_on_real_looking_input(mef_triple, name):
    f, a, b = mef_triple
    v = M.evaluate(f, a, b, metrics=name, profile="mefb")[name]
    assert math.isfinite(v)
    if name != "TE":
        assert -1e-12 <= v <= 1 + 1e-12


@pytest.mark.parametrize("name", ["TE", "QNCIE", "QW", "NMI"])
def test_symmetric_in_the_two_sources(mef_triple, name):
    f, a, b = mef_triple
    ab = M.evaluate(f, a, b, metrics=name, profile="mefb")[name]
    ba = M.evaluate(f, b, a, metrics=name, profile="mefb")[name]
    assert ab == pytest.approx(ba, rel=1e-12)


def test_source_order_is_a_then_b(mef_triple):
    """QC clips its weight at 0 and 1, so it is not symmetric: evaluate(f, a, b) is MEFB's
    metricsQc(imgA, imgB, fused)."""
    f, a, b = mef_triple
    got = M.evaluate(f, a, b, metrics="QC,VIF", profile="mefb")
    assert got["QC"] == M.qc(f, a, b)
    assert got["VIF"] == pytest.approx(M.viff(f, b, a), rel=1e-12)  # ties of VIFF go to B


def test_qp_computes_the_sources_maps_once(monkeypatch, mef_triple):
    """Phase congruency maps are kept by pixel content: a second fused image of the same pair
    costs three new maps (its channels), not nine, and gives the value a fresh start gives."""
    M.clear_buffers()
    calls = []
    orig = phase._phasecong
    monkeypatch.setattr(phase, "_phasecong", lambda x: calls.append(1) or orig(x))
    f, a, b = mef_triple
    f2 = (f.astype(float) * 0.9).astype(np.uint8)
    v1 = M.qp(f, a, b)
    assert len(calls) == 9
    v2 = M.qp(f2, a, b)
    assert len(calls) == 12
    M.clear_buffers()
    assert M.qp(f2, a, b) == v2 and len(calls) == 21
    assert M.qp(f, a, b) == v1


@pytest.mark.parametrize("n", [9, 40000, 100001])
def test_order_statistics_are_exact(n):
    """The banded selection behind the phase congruency noise median equals a full sort, also
    for heavy ties and for a band that misses (all values equal but a few)."""
    rng = np.random.default_rng(n)
    cases = [rng.exponential(size=n), np.round(rng.normal(size=n), 1), np.r_[np.zeros(n - 5), np.ones(5)]]
    for x in cases:
        x = x.astype(np.float32)
        ranks = (n // 2 - 1, n // 2)
        want = np.sort(x)[list(ranks)]
        assert np.array_equal(phase._order_statistics(x.copy(), ranks), want)


def test_ssim_extra_is_the_mean_over_the_sources(mef_triple):
    """SSIM is not a MEFB metric (not in the default set); for DeFusion's Table 1 it is the mean of
    VIFB's SSIM over the two sources."""
    f, a, b = mef_triple
    assert "SSIM" not in M.get_profile("mefb").default
    got = M.evaluate(f, a, b, metrics="SSIM", profile="mefb")["SSIM"]
    assert got == pytest.approx(M.ssim_fusion(f, a, b) / 2, rel=1e-12)


def test_tsallis_hand_computed():
    """Two levels (0, 255) half and half, F = A = B: the joint histogram is diag(1/2, 1/2), every
    product of marginals 1/4, so I_q = (1 - 2 (1/2)^q / (1/4)^(q-1)) / (1 - q)."""
    x = np.zeros((8, 8), np.uint8)
    x[:, 4:] = 255
    q = 1.85
    one = (1 - 2 * 0.5**q / 0.25 ** (q - 1)) / (1 - q)
    assert M.tsallis_entropy(x, x, x) == pytest.approx(2 * one, rel=1e-12)


def test_qncie_hand_computed_for_identical_images():
    """F = A = B: every NCC is H / 8 = c (entropy in bits over log2 256), R = (1 - c) I + c J has the
    eigenvalues 1 + 2c, 1 - c, 1 - c, and Q_NCIE = 1 + sum (l / 3) log_256 (l / 3)."""
    x = _scene(5, color=False)
    c = M.entropy(x) / 8.0
    lam = np.array([1 + 2 * c, 1 - c, 1 - c])
    want = 1 + float((lam / 3 * np.log(lam / 3) / np.log(256)).sum())
    assert M.qncie(x, x, x) == pytest.approx(want, rel=1e-12)
    assert 0 < want < 1


def test_matlab_edge_thins_a_step_to_one_column():
    """A vertical step: |bx| = 50 on the two columns beside it, b = 2500 > 4 mean(b) = 1250; the
    thinning keeps the column whose left neighbour is not larger and whose right one is smaller."""
    x = np.zeros((16, 16), np.uint8)
    x[:, 8:] = 100
    e = matlab_edge_sobel(x)
    expected = np.zeros((16, 16), bool)
    expected[:, 8] = True
    assert np.array_equal(e, expected)


def test_matlab_edge_cases():
    const = np.full((32, 40, 3), 90, np.uint8)
    # no edges anywhere: every patch equals F's, FMI is 1 (as fmi.m gives)
    assert M.fmi(const, const, const) == 1.0
    # no pixel has phase congruency above 0.1: Q_P is 0 / 0, NaN as in MATLAB
    assert math.isnan(M.qp(const[:, :, 0], const[:, :, 0], const[:, :, 0]))
    with pytest.raises(InputError, match="at least 11 pixels"):
        M.qp(np.zeros((8, 20)), np.zeros((8, 20)), np.zeros((8, 20)))


def test_gray_sources_with_colour_fused_use_the_red_channel():
    """Every MEFB wrapper evaluates fused(:,:,1) when both sources are gray."""
    f = _scene(7)
    a, b = _scene(8, color=False), _scene(9, color=False)
    got = M.evaluate(f, a, b, metrics="EN,QW", profile="mefb")
    red = M.evaluate(f[:, :, 0], a, b, metrics="EN,QW", profile="mefb")
    assert got == red


def test_scipy_filter_impl_agrees(mef_triple):
    f, a, b = mef_triple
    names = "FMI,TE,QNCIE,QP,QC,QW,SF,VIF"
    fast = M.evaluate(f, a, b, metrics=names, profile="mefb")
    old = M.set_filter_impl("scipy")
    try:
        plain = M.evaluate(f, a, b, metrics=names, profile="mefb")
    finally:
        M.set_filter_impl(old)
    for k in fast:
        # QC's weight in windows where a source is flat (B is saturated in places) is a ratio of
        # round-off noise, so two summation orders give different values: the reason it cannot
        # reproduce MEFB's digits either (NOT_EXACT)
        tol = 1e-3 if k == "QC" else 1e-9
        assert plain[k] == pytest.approx(fast[k], rel=tol, abs=1e-12), k


# ---------------------------------------------------------------------------- CLI


runner = CliRunner()


@pytest.fixture
def mef_folders(tmp_path):
    pairs = tmp_path / "pairs"
    for d in ("under", "over"):
        (pairs / d).mkdir(parents=True)
    (tmp_path / "fused").mkdir()
    images = {}
    for i, stem in enumerate(["s1", "s2"]):
        a = (_scene(20 + i).astype(float) * 0.5).astype(np.uint8)
        b = np.clip(_scene(30 + i).astype(float) * 1.2 + 30, 0, 255).astype(np.uint8)
        f = ((a.astype(int) * 2 + b) // 3).astype(np.uint8)
        Image.fromarray(a).save(pairs / "under" / f"{stem}.png")
        Image.fromarray(b).save(pairs / "over" / f"{stem}.png")
        Image.fromarray(f).save(tmp_path / "fused" / f"{stem}_avg.png")
        images[stem] = (f, a, b)
    return tmp_path, images


def test_cli_eval_mef_pairs(mef_folders):
    root, images = mef_folders
    out = root / "res.json"
    metrics = "CE,QCV,MEF-SSIM,QC,FMI"
    r = runner.invoke(
        app,
        ["eval", "--profile", "mefb", "--pairs", str(root / "pairs"), "--fused", str(root / "fused"),
         "--suffix", "_avg", "-m", metrics, "--json", str(out)],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["profile"] == "mefb" and doc["metrics"] == metrics.split(",")
    for entry in doc["images"]:
        f, a, b = images[entry["name"]]
        want = M.evaluate(f, a, b, metrics=metrics, profile="mefb")
        for k, v in want.items():
            assert entry["metrics"][k] == pytest.approx(v, rel=1e-12), k
    # --a/--b name the same folders in the same order
    r2 = runner.invoke(
        app,
        ["eval", "--profile", "mefb", "--a", str(root / "pairs" / "under"),
         "--b", str(root / "pairs" / "over"), "--fused", str(root / "fused"), "--suffix", "_avg",
         "-m", metrics, "--json", str(root / "r2.json")],
    )  # fmt: skip
    assert r2.exit_code == 0, r2.output
    assert json.loads((root / "r2.json").read_text())["images"] == doc["images"]


def test_cli_eval_source_options_conflict_or_missing(mef_folders):
    root, _ = mef_folders
    both = ["--pairs", str(root / "pairs"), "--a", str(root), "--b", str(root), "--fused", str(root)]
    r = runner.invoke(app, ["eval", *both])
    assert r.exit_code == 2 and "one way only" in r.output
    r = runner.invoke(app, ["eval", "--pairs", str(root / "fused"), "--fused", str(root / "fused")])
    assert r.exit_code == 2 and "expected sub-folders" in r.output
    r = runner.invoke(app, ["eval", "--a", str(root), "--fused", str(root / "fused")])
    assert r.exit_code == 2 and "--a and --b" in r.output
