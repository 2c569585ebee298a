"""Shared fixtures. Tests that need ../shared/data skip cleanly when it is absent."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
#: Exported graphs of the backends (ivfuse.backends.cache_dir) go to a folder of this test session,
#: not to the user's ~/.cache.
os.environ.setdefault("IVFUSE_CACHE", tempfile.mkdtemp(prefix="ivfuse-test-cache-"))

#: The folder of the public image sets: $IVFUSE_SHARED_DATA, else the library's data root
#: $IVFUSE_DATA (the folder `ivfuse bench` reads named sets from), else ../shared/data.
SHARED_DATA = Path(
    os.environ.get("IVFUSE_SHARED_DATA") or os.environ.get("IVFUSE_DATA") or REPO.parent / "shared" / "data"
)


def shared_dataset(name: str) -> Path:
    """Path of ``../shared/data/<name>``, or skip the test when it is not there."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"shared data set {name!r} not available at {path}")
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="module")
def torch_one_thread():
    """Tiny tensors: one torch thread is fastest and leaves the other core to other jobs. Use with
    ``pytestmark = pytest.mark.usefixtures("torch_one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def create_or_random(name: str, **options):
    """``registry.create(name, **options)``; for a trainable method whose weights are not shipped
    (yet), its fuser on the network of its training spec at a seeded random initialisation (what
    ``benchmarks/bench_deep.py`` times in that case), so the contract and backend tests still run."""
    import torch

    from ivfuse.methods import registry

    info = registry.info(name)
    if info.weights_shipped or not info.trainable:
        return registry.create(name, **options)
    torch.manual_seed(0)
    config, training_spec = registry.training(name)
    return info.fuser(training_spec(config()).build_model().eval(), **options)
