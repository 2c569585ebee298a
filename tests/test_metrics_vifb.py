"""The vifb profile reproduces the 78 MATLAB values of ../shared/data/vifb_ref/reference.csv."""

from __future__ import annotations

import csv
import math
from collections import defaultdict

import numpy as np
import pytest

from ivfuse import metrics as M
from ivfuse.io import read_image

from .conftest import SHARED_DATA

VIFB_REF = SHARED_DATA / "vifb_ref"

# VIFB's file names -> ivfuse's names in the vifb profile
NAMES = {
    "Entropy": "EN",
    "Cross_entropy": "CE",
    "Mutinf": "MI",
    "Psnr": "PSNR",
    "Rmse": "RMSE",
    "Avg_gradient": "AG",
    "Edge_intensity": "EI",
    "Spatial_frequency": "SF",
    "Variance": "SD",
    "Ssim": "SSIM",
    "Qabf": "QABF",
    "Qcb": "QCB",
    "Qcv": "QCV",
}


def _reference() -> dict[tuple[str, str], dict[str, float]]:
    if not (VIFB_REF / "reference.csv").is_file():
        pytest.skip(f"VIFB reference data not available at {VIFB_REF}")
    table: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    with open(VIFB_REF / "reference.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            table[(row["method"], row["image"])][row["metric"]] = float(row["value"])
    return table


def _triple(method: str, image: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        read_image(VIFB_REF / "fused" / f"{image}_{method}.jpg"),
        read_image(VIFB_REF / "ir" / f"{image}.jpg"),
        read_image(VIFB_REF / "vi" / f"{image}.jpg"),
    )


def test_reference_file_has_78_values():
    ref = _reference()
    assert sum(len(v) for v in ref.values()) == 78
    assert {k for v in ref.values() for k in v} == set(NAMES)


@pytest.mark.parametrize("method", ["GFF", "GTF", "U2Fusion"])
@pytest.mark.parametrize("image", ["kettle", "running"])
def test_vifb_profile_reproduces_matlab(method, image):
    expected = _reference()[(method, image)]
    fused, ir, vi = _triple(method, image)
    got = M.evaluate(fused, ir, vi)  # default profile vifb, default 13 metrics
    assert list(got) == list(NAMES.values())
    for vifb_name, value in expected.items():
        v = got[NAMES[vifb_name]]
        # VIFB stores 5 significant digits: the best possible agreement is rel. error <= 5e-5
        assert math.isclose(v, value, rel_tol=5e-5), (method, image, vifb_name, v, value)


def test_public_functions_agree_with_evaluate():
    """The pure per-metric functions give exactly what evaluate() (with shared caches) gives."""
    _reference()
    fused, ir, vi = _triple("GTF", "running")  # gray 1-channel IR, colour VI and F
    got = M.evaluate(fused, ir, vi)
    direct = {
        "EN": M.entropy(fused),
        "CE": M.cross_entropy(fused, ir, vi),
        "MI": M.mutual_information(fused, ir, vi),
        "PSNR": M.psnr_vifb(fused, ir, vi),
        "RMSE": M.rmse_vifb(fused, ir, vi),
        "AG": M.average_gradient(fused),
        "EI": M.edge_intensity(fused),
        "SF": M.spatial_frequency(fused),
        "SD": M.standard_deviation(fused),
        "SSIM": M.ssim_fusion(fused, ir, vi),
        "QABF": M.qabf(fused, ir, vi),
        "QCB": M.qcb(fused, ir, vi),
        "QCV": M.qcv(fused, ir, vi),
    }
    for k, v in direct.items():
        assert got[k] == pytest.approx(v, rel=1e-12, abs=1e-12), k


def test_paths_are_accepted_and_vifb_names_are_aliases():
    expected = _reference()[("U2Fusion", "kettle")]
    got = M.evaluate(
        VIFB_REF / "fused" / "kettle_U2Fusion.jpg",
        str(VIFB_REF / "ir" / "kettle.jpg"),
        VIFB_REF / "vi" / "kettle.jpg",
        metrics="Mutinf,Qcb",
    )
    assert list(got) == ["MI", "QCB"]
    assert got["MI"] == pytest.approx(expected["Mutinf"], rel=5e-5)
    assert got["QCB"] == pytest.approx(expected["Qcb"], rel=5e-5)
