"""The fuser contract (ivfuse.methods.base.Fuser), checked for every method of the registry, and what
the registry knows of each method (fuser class, Config, training spec, paper tables, weights card)."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest

from ivfuse.errors import InputError, MethodError
from ivfuse.methods import registry
from ivfuse.methods.base import Fuser, SideMap, check_pair

from .conftest import create_or_random

pytestmark = pytest.mark.usefixtures("torch_one_thread")

METHODS = [m.name for m in registry.available()]
DEEP = [m.name for m in registry.available() if m.family != "classical"]
#: small test settings (a few tiles on the tiny pairs); other methods run with their defaults
OPTIONS = {"sslwaeie": {"tile": 16}, "ifesnet": {"tile": 16}, "gtf": {"max_iter": 50}}


def _pairs(n=2, h=21, w=26):
    rng = np.random.default_rng(0)
    return [(rng.random((h, w), dtype=np.float32), rng.random((h, w), dtype=np.float32)) for _ in range(n)]


@pytest.fixture(scope="module", params=METHODS)
def fuser(request):
    return request.param, create_or_random(request.param, **OPTIONS.get(request.param, {}))


def test_every_method_is_a_fuser_of_its_registered_class(fuser):
    name, f = fuser
    info = registry.info(name)
    assert isinstance(f, Fuser) and isinstance(f, info.fuser)
    count = f.parameter_count()
    assert type(count) is int and registry.parameter_count(f) == count
    assert (count == 0) == (info.family == "classical")
    assert info.rgb == f.rgb and info.torch_bf16 == f.torch_bf16
    assert info.rgb == (type(f).fuse_rgb is not Fuser.fuse_rgb)


def test_fuse_shape_range_and_fuse_batch_equals_one_by_one(fuser):
    name, f = fuser
    pairs = _pairs()
    ones = [f.fuse(ir, vi) for ir, vi in pairs]
    for out in ones:
        assert out.shape == (21, 26) and out.dtype == np.float32
        assert 0.0 <= out.min() and out.max() <= 1.0
    maps = f.side_maps()
    assert isinstance(maps, dict) and all(isinstance(m, SideMap) for m in maps.values())
    for m in maps.values():
        assert m.image.shape[:2] == (21, 26) and m.path is None  # no path asked for
    batch = f.fuse_batch([p[0] for p in pairs], [p[1] for p in pairs])
    assert isinstance(batch, list) and len(batch) == 2
    # a deep method batches equal-sized pairs into one tensor forward (other kernels, other
    # rounding): within 1e-5; SSL-WAEIE's ratio of near-zero energies within 0.5 gray levels
    tol = 0.5 / 255 if name == "sslwaeie" else 1e-5
    for a, b in zip(batch, ones, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=tol)
    with pytest.raises(InputError, match="sizes differ"):
        f.fuse(pairs[0][0], pairs[0][1][:, :-1])
    with pytest.raises(InputError, match="2-D luma planes"):
        f.fuse(pairs[0][0][..., None], pairs[0][1][..., None])


def test_graph_names_a_step_that_bind_step_replaces(fuser):
    name, f = fuser
    spec = f.graph()
    if name not in DEEP:
        assert spec is None and f.step is None
        with pytest.raises(MethodError):
            f.bind_step(lambda *a: None)
        return
    assert spec.name and f.step is f.eager_step is not None
    ir, vi = _pairs(1)[0]
    ref = f.fuse(ir, vi)
    calls = []
    eager = f.eager_step

    def counting(*tensors):
        calls.append(tensors[0].shape)
        return eager(*tensors)

    f.bind_step(counting)
    try:
        assert f.step is counting
        np.testing.assert_array_equal(f.fuse(ir, vi), ref)
        assert calls, "the bound step was not called"
    finally:
        f.unbind_step()
    assert f.step is eager


def test_to_device(fuser):
    name, f = fuser
    assert f.to("cpu") is f
    if name not in DEEP:
        with pytest.raises(MethodError, match="CPU"):
            f.to("cuda")


def test_side_map_paths_come_from_the_method_option(tmp_path):
    f = registry.create("sslwaeie", tile=16, contributions=str(tmp_path / "{stem}_tau.png"))
    ir, vi = _pairs(1)[0]
    f.fuse(ir, vi)
    assert f.side_maps()["contributions"].path == str(tmp_path / "{stem}_tau.png")


def test_check_pair_is_the_one_input_check():
    a = np.zeros((4, 5), np.float32)
    assert check_pair(a, a)[0].dtype == np.float32
    with pytest.raises(InputError, match=r"A is 5x4 but B is 4x4: sizes differ"):
        check_pair(a, a[:, :4], ("A", "B"))
    with pytest.raises(InputError, match="empty"):
        check_pair(a[:0], a[:0])
    with pytest.raises(InputError, match="too small for X"):
        check_pair(a[:1], a[:1], label="X", min_size=2)
    rgb = np.zeros((4, 5, 3), np.uint8)
    assert check_pair(rgb, a, plane=False, dtype=None)[0].dtype == np.uint8
    with pytest.raises(InputError, match="HxW or HxWx3"):
        check_pair(np.zeros((4, 5, 4)), a, plane=False)


@pytest.mark.parametrize("name", METHODS)
def test_the_registry_knows_what_a_method_offers(name):
    info = registry.info(name)
    if info.trainable:
        config, spec = registry.training(name)
        assert config is info.config and spec is info.training_spec
        assert spec(config()).method == name
    else:
        with pytest.raises(MethodError, match="not trainable"):
            registry.training(name)
    if info.paper_tables:
        files = resources.files("ivfuse.bench.papers")
        assert files.joinpath(info.paper_tables).is_file()
    if info.weights_shipped:
        assert isinstance(info.weights_card, dict)
    assert set(info.as_dict()) >= {"name", "family", "tasks", "paper_tables", "weights_status"}


def test_deep_methods_are_found_without_importing_them():
    assert registry.module_methods() == sorted(DEEP)
    from ivfuse.bench.papers import PAPERS

    assert set(PAPERS) == {m.name for m in registry.with_paper_tables()}
