"""benchmarks/official: the official networks' forwards bench_deep compares with, importable as a
package from the repository root, one per deep method that has one, equal to ivfuse's fuser."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import bench_deep, official
from ivfuse.methods import registry

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_bench_deep_covers_every_deep_method_of_the_registry():
    deep = [m.name for m in registry.available() if m.family != "classical"]
    assert bench_deep.deep_methods() == deep
    assert set(official.methods()) <= set(deep)
    for m in deep:
        variants = bench_deep._all_variants(m)
        assert variants[0] == ("torch", "fp32")
        assert (("torch", "bf16") in variants) == registry.info(m).torch_bf16
        assert (("official", "fp32") in variants) == (m in official.methods())


@pytest.mark.parametrize("method", official.methods())
def test_official_forward_equals_the_fuser(method):
    rng = np.random.default_rng(0)
    ir, vi = rng.random((20, 24), dtype=np.float32), rng.random((20, 24), dtype=np.float32)
    fuser = registry.create(method)
    got = official.forward(method, fuser)(ir, vi)
    assert got.shape == (20, 24)
    assert float(np.abs(got - fuser.fuse(ir, vi)).max()) * 255 <= 0.05
