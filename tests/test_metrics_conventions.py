"""Named conventions added to reproduce the seed papers' tables (docs/metrics.md, "The seed papers'
conventions"): each is an existing formula with one reading changed, so each is pinned by what it
must equal in terms of the formula it changes."""

from __future__ import annotations

import numpy as np
import pytest

from ivfuse import metrics as M
from ivfuse.errors import InputError


@pytest.fixture(scope="module")
def triple():
    rng = np.random.default_rng(29)
    m, n = 80, 96
    yy, xx = np.mgrid[0:m, 0:n]
    base = 128 + 60 * np.sin(xx / 6.0) * np.cos(yy / 9.0)
    ir = np.clip(base + rng.normal(0, 25, (m, n)), 0, 255).astype(np.uint8)
    vi = np.clip(255 - base + rng.normal(0, 25, (m, n)), 0, 255).astype(np.uint8)
    fused = np.clip(0.6 * ir + 0.4 * vi + rng.normal(0, 6, (m, n)), 0, 255).astype(np.uint8)
    return fused, ir, vi


@pytest.mark.parametrize("profile", ["vifb", "ma2019"])
def test_ifc_mean_is_the_mean_of_the_two_single_source_ifcs(triple, profile):
    """IFC_MEAN = (IFC(VI,F) + IFC(IR,F)) / 2. With both sources equal to S, the summed IFC is
    2 IFC(S,F), which gives each single-source value; their mean must be IFC_MEAN, and half the sum."""
    fused, ir, vi = triple
    got = M.evaluate(fused, ir, vi, ["IFC", "IFC_MEAN"], profile)
    one_ir = M.evaluate(fused, ir, ir, ["IFC"], profile)["IFC"] / 2  # IFC(IR, F)
    one_vi = M.evaluate(fused, vi, vi, ["IFC"], profile)["IFC"] / 2  # IFC(VI, F)
    assert one_ir > 0 and one_vi > 0 and one_ir != pytest.approx(one_vi, rel=1e-3)
    assert got["IFC"] == pytest.approx(one_ir + one_vi, rel=1e-12)
    assert got["IFC_MEAN"] == pytest.approx((one_ir + one_vi) / 2, rel=1e-12)
    assert M.ifc(fused, ir, vi, combine="mean") == pytest.approx(got["IFC_MEAN"], rel=1e-12)
    assert M.ifc(fused, ir, vi) == pytest.approx(got["IFC"], rel=1e-12)  # the default is unchanged


def test_ifc_combine_is_checked(triple):
    with pytest.raises(InputError, match="combine"):
        M.ifc(*triple, combine="max")
