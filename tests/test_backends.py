"""ivfuse.backends: ONNX export of every deep method, ONNX Runtime / OpenVINO engines, selection,
fallback, cache, and ``ivfuse export``. Tests that need an optional backend skip when it is absent
(``pip install -e ".[fast]"`` installs them; CI does)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import ivfuse
from ivfuse import backends
from ivfuse.backends import engines
from ivfuse.errors import BackendError
from ivfuse.methods import registry

from .conftest import create_or_random, shared_dataset

pytestmark = pytest.mark.usefixtures("torch_one_thread")

INSTALLED = [n for n in engines.ENGINES if engines.installed(n)]
EXPORTER = all(__import__("importlib").util.find_spec(m) is not None for m in ("onnx", "onnxscript"))
needs_engine = pytest.mark.skipif(not (INSTALLED and EXPORTER), reason="no ONNX exporter/engine installed")


def needs(name: str):
    return pytest.mark.skipif(
        not (EXPORTER and engines.installed(name)), reason=f"{name} (ivfuse[fast]) is not installed"
    )


def _gray(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max()) * 255


def _pair(h=45, w=61, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    ir = np.clip(0.4 + 0.3 * np.sin(9 * xx) * np.cos(7 * yy) + 0.1 * rng.random((h, w)), 0, 1)
    vi = np.clip(0.5 + 0.3 * np.cos(13 * xx + 5 * yy) + 0.1 * rng.random((h, w)), 0, 1)
    return ir.astype(np.float32), vi.astype(np.float32)


def _defusion():
    """DeFusion on a random DeNet scaled to outputs in ~[0, 1] (see ``unit_range_denet``)."""
    from ivfuse.methods.defusion import DeFusion, unit_range_denet

    return DeFusion(unit_range_denet(0))


def _ifesnet():
    from ivfuse.methods.ifesnet import Config, IFESNet, IFESNetModel

    torch.manual_seed(0)
    return IFESNet(IFESNetModel(Config()).eval(), tile=32)


FUSERS = {
    "didfuse": lambda: registry.create("didfuse"),
    "jcae": lambda: registry.create("jcae"),
    "sslwaeie": lambda: registry.create("sslwaeie", tile=32),  # 45 x 61 in 4 tiles
    "ifesnet": _ifesnet,  # a random network (not the shipped weights), 4 tiles
    "defusion": _defusion,  # a random network (not the shipped weights), heads scaled
}

#: every deep method of the registry (FUSERS: the ones built with test settings)
DEEP = [m.name for m in registry.available() if m.family != "classical"]


@needs_engine
@pytest.mark.slow
@pytest.mark.parametrize("method", DEEP)
def test_export_round_trip_within_a_hundredth_of_a_gray_level(method):
    """Every deep method's fusion step, exported, gives the eager result on an odd-sized pair
    (tiles, JCAE's padding to even sizes and the crops around the graph included)."""
    ir, vi = _pair()
    for name in INSTALLED:
        fuser = FUSERS[method]() if method in FUSERS else create_or_random(method)
        eager = fuser.fuse(ir, vi)
        eager_maps = {k: m.image.copy() for k, m in fuser.side_maps().items()}
        plan = backends.Plan(name, "fp32", candidates=(name,))
        with warnings.catch_warnings():
            warnings.simplefilter("error", backends.BackendWarning)
            binding = backends.bind(fuser, method, plan)
        assert binding.backend == name
        tol = fuser.graph().tolerance  # 0.01, SSL-WAEIE's tau_i 0.1 (its own fp32 noise, see there)
        assert binding.check_gray is not None and binding.check_gray <= tol
        assert isinstance(fuser.step, backends.GraphStep)
        with warnings.catch_warnings():  # the engine itself fuses the odd-sized pair: no fallback
            warnings.simplefilter("error", backends.BackendWarning)
            got = fuser.fuse(ir, vi)
        assert got.shape == eager.shape
        assert _gray(got, eager) <= (backends.EXACT_GRAY if tol <= backends.EXACT_GRAY else 0.05), (
            method,
            name,
        )
        # side maps (tau_i, W_1/W_2, DeFusion's parts): within fp32 noise. SSL-WAEIE's tau_i is a
        # ratio: eager torch NHWC vs NCHW already differ by 0.056 gray levels on it (0.012 fp32 vs fp64)
        for k, v in eager_maps.items():
            assert _gray(fuser.side_maps()[k].image, v) <= max(tol, 0.1), (method, name, k)


@needs_engine
def test_auto_picks_the_first_installed_engine_and_the_cache_builds_nothing_twice():
    ir, vi = _pair(33, 40)
    ref = ivfuse.load("didfuse", backend="torch").fuse(ir, vi)
    first = ivfuse.load("didfuse")  # auto is the default
    assert first.backend == INSTALLED[0]
    assert first.binding.reason == "auto"
    before = (backends.STATS.exports, backends.STATS.engines)
    second = ivfuse.load("didfuse", backend="auto")
    assert (backends.STATS.exports, backends.STATS.engines) == before  # built nothing
    assert second.backend == first.backend
    assert _gray(second.fuse(ir, vi), ref) <= backends.EXACT_GRAY
    # another size: same engine, nothing rebuilt (dynamic height and width)
    ir2, vi2 = _pair(70, 52, seed=3)
    second.fuse(ir2, vi2)
    assert (backends.STATS.exports, backends.STATS.engines) == before
    # another rule is another graph: exported once more
    loaded = backends.STATS.loaded
    ivfuse.load("didfuse", rule="l1")
    assert backends.STATS.exports + backends.STATS.loaded == before[0] + loaded + 1


@needs_engine
def test_exported_graphs_are_kept_on_disk_for_the_next_process(tmp_path, monkeypatch):
    ir, vi = _pair(33, 40)
    monkeypatch.setenv("IVFUSE_CACHE", str(tmp_path / "cache"))
    backends.clear_cache()
    ref = ivfuse.load("didfuse").fuse(ir, vi)
    files = list((tmp_path / "cache" / "graphs").glob("didfuse-*.onnx"))
    assert len(files) == 1 and files[0].stat().st_size > 100_000
    backends.clear_cache()  # as a new process would start
    exports, loaded = backends.STATS.exports, backends.STATS.loaded
    again = ivfuse.load("didfuse")
    assert (backends.STATS.exports, backends.STATS.loaded) == (exports, loaded + 1)
    assert again.backend == INSTALLED[0] and _gray(again.fuse(ir, vi), ref) == 0.0
    # IVFUSE_CACHE=off: nothing is read or written
    monkeypatch.setenv("IVFUSE_CACHE", "off")
    backends.clear_cache()
    ivfuse.load("didfuse", rule="average")
    assert backends.STATS.exports == exports + 1
    assert list((tmp_path / "cache" / "graphs").glob("*.onnx")) == files
    backends.clear_cache()


def test_a_graph_cached_from_other_source_code_is_not_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("IVFUSE_CACHE", str(tmp_path))
    key = ("didfuse", "0123abcd", "fuse", ())
    here = backends._cache_file(key)
    assert here.parent == tmp_path / "graphs" and here.name.startswith("didfuse-")
    assert backends._cache_file(key) == here  # stable within one source tree
    monkeypatch.setattr(backends, "_code_digest", lambda: "edited-network")
    assert backends._cache_file(key) != here


@needs_engine
def test_folder_of_equal_sized_pairs_reuses_one_engine(tmp_path):
    from ivfuse.data.pairs import Pair

    p = ivfuse.load("didfuse")
    for d in ("ir", "vi"):
        (tmp_path / d).mkdir()
    pairs = []
    for i in range(3):
        ir, vi = _pair(40, 48, seed=i)
        ivfuse.io.write_image(tmp_path / "ir" / f"{i}.png", ir)
        ivfuse.io.write_image(tmp_path / "vi" / f"{i}.png", vi)
        pairs.append(Pair(f"{i}", tmp_path / "ir" / f"{i}.png", tmp_path / "vi" / f"{i}.png"))
    step = p.method.step
    before = (backends.STATS.exports, backends.STATS.engines)
    res = list(ivfuse.api.fuse_pairs(p, pairs, tmp_path / "out"))
    assert [r.status for r in res] == ["fused"] * 3
    assert p.method.step is step
    assert (backends.STATS.exports, backends.STATS.engines) == before


@needs("openvino")
def test_openvino_compiles_once_per_size_keeps_the_last_few_and_matches_the_dynamic_graph():
    from ivfuse.backends.onnx import state_digest

    spec = registry.create("didfuse").graph()
    model = backends.model_bytes("didfuse", spec, state_digest(spec.module))
    rng = np.random.default_rng(3)

    def arrays(h, w):
        return [rng.random((1, 1, h, w), dtype=np.float32) for _ in range(2)]

    eng = engines.OpenVINOEngine(model, threads=1, keep=2)
    dyn = engines.OpenVINOEngine(model, threads=1, static=False)
    assert (eng.compilations, dyn.compilations) == (0, 1)
    a, b, c = arrays(32, 48), arrays(48, 32), arrays(16, 64)
    out_a = eng(a)
    assert eng.compilations == 1
    assert _gray(eng(a)[0], out_a[0]) == 0.0 and eng.compilations == 1  # same size: reused
    # the static and the dynamic graph agree to float32 rounding
    assert _gray(out_a[0], dyn(a)[0]) < 0.01
    eng(b)
    eng(c)
    assert eng.compilations == 3 and len(eng._compiled) == 2  # a was dropped (least recent)
    eng(c)
    eng(a)
    assert eng.compilations == 4
    assert dyn.compilations == 1 and _gray(dyn(b)[0], eng(b)[0]) < 0.01


def test_no_engine_installed_means_torch_without_a_warning(monkeypatch):
    monkeypatch.setattr(engines, "installed", lambda name: False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = ivfuse.load("didfuse")
    assert p.backend == "torch"


def test_a_backend_that_fails_to_build_falls_back_to_torch_with_one_warning(monkeypatch):
    ir, vi = _pair(30, 34)
    ref = ivfuse.load("didfuse", backend="torch").fuse(ir, vi)
    monkeypatch.setattr(engines, "ENGINES", ("openvino", "onnxruntime"))
    monkeypatch.setattr(engines, "installed", lambda name: True)
    backends.clear_cache()

    def broken(name, model, threads, precision="fp32", cache=None):
        raise RuntimeError(f"{name} exploded")

    monkeypatch.setattr(engines, "build", broken)
    monkeypatch.setattr(backends, "model_bytes", lambda method, spec, digest: b"not a model")
    with pytest.warns(backends.BackendWarning) as rec:
        p = ivfuse.load("didfuse", backend="auto")
    assert len(rec) == 1
    assert "openvino" in str(rec[0].message) and "onnxruntime" in str(rec[0].message)
    assert p.backend == "torch"
    assert _gray(p.fuse(ir, vi), ref) == 0.0
    backends.clear_cache()


def test_a_backend_that_fails_while_fusing_warns_once_and_goes_on_in_torch():
    ir, vi = _pair(30, 34)
    fuser = registry.create("didfuse")
    ref = fuser.fuse(ir, vi)

    class Broken:
        name = "broken"

        def __call__(self, arrays):
            raise RuntimeError("device lost")

    spec = fuser.graph()
    binding = backends.Binding("broken", "fp32")
    fuser.bind_step(backends.GraphStep(Broken(), spec, fuser, fuser.eager_step, binding.fallback))
    with pytest.warns(backends.BackendWarning, match="device lost") as rec:
        a = fuser.fuse(ir, vi)
        b = fuser.fuse(ir, vi)
    assert len(rec) == 1
    assert binding.backend == "torch"
    assert _gray(a, ref) == 0.0 and _gray(b, ref) == 0.0
    assert not isinstance(fuser.step, backends.GraphStep) and fuser.step is fuser.eager_step


def test_an_inexact_backend_is_not_taken_by_auto(monkeypatch):
    monkeypatch.setattr(engines, "ENGINES", ("onnxruntime",))
    monkeypatch.setattr(engines, "installed", lambda name: True)
    monkeypatch.setattr(backends, "engine_for", lambda *a, **k: object())
    monkeypatch.setattr(backends, "max_gray_diff", lambda eng, spec: 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # auto: torch is the choice, no warning
        p = ivfuse.load("didfuse")
    assert p.backend == "torch" and "0.5000 gray levels" in p.binding.reason
    # asked for by name, the inexact engine is a failure: one warning, then torch
    with pytest.warns(backends.BackendWarning, match="0.5000 gray levels"):
        p = ivfuse.load("didfuse", backend="onnxruntime")
    assert p.backend == "torch"


def test_a_method_s_own_auto_order(monkeypatch):
    """SSL-WAEIE's tau_i runs slower in OpenVINO than in torch (README): auto tries only ONNX
    Runtime for it and otherwise stays on torch; asked for by name, OpenVINO is still used."""
    tried = []

    def engine_for(method, spec, name, precision):
        tried.append(name)
        return object()

    monkeypatch.setattr(engines, "installed", lambda name: True)
    monkeypatch.setattr(backends, "engine_for", engine_for)
    monkeypatch.setattr(backends, "max_gray_diff", lambda eng, spec: 0.0)
    assert ivfuse.load("sslwaeie").backend == "onnxruntime" and tried == ["onnxruntime"]
    assert ivfuse.load("didfuse").backend == engines.ENGINES[0]  # no order of its own: the default
    tried.clear()
    assert ivfuse.load("sslwaeie", backend="openvino").backend == "openvino" and tried == ["openvino"]
    monkeypatch.setattr(engines, "ENGINES", ("openvino",))
    tried.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch is the choice, not a failure
        p = ivfuse.load("sslwaeie")
    assert p.backend == "torch" and tried == []
    assert p.binding.reason == "auto: this method's engines (onnxruntime) are not installed"


def test_unknown_backend_and_precision_are_refused_with_one_line():
    with pytest.raises(BackendError) as e:
        ivfuse.load("didfuse", backend="tensorrt")
    assert str(e.value) == "unknown backend 'tensorrt'; choose one of: auto, torch, onnxruntime, openvino"
    with pytest.raises(BackendError, match="unknown precision 'fp8'"):
        ivfuse.load("didfuse", precision="fp8")
    with pytest.raises(BackendError, match="no exportable graph"):
        ivfuse.load("lp", backend="onnxruntime")
    assert ivfuse.load("lp").backend == "torch"  # classical: NumPy, nothing to choose


def test_cli_refuses_an_unknown_backend_with_one_line(tmp_path):
    from typer.testing import CliRunner

    from ivfuse.cli import app

    ir, vi = _pair(20, 24)
    ivfuse.io.write_image(tmp_path / "ir.png", ir)
    ivfuse.io.write_image(tmp_path / "vi.png", vi)
    r = CliRunner().invoke(
        app,
        [
            "fuse",
            str(tmp_path / "ir.png"),
            str(tmp_path / "vi.png"),
            "-o",
            str(tmp_path / "f.png"),
            "-m",
            "didfuse",
            "--backend",
            "cuda",
        ],
    )
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert lines == ["error: unknown backend 'cuda'; choose one of: auto, torch, onnxruntime, openvino"]
    assert not (tmp_path / "f.png").exists()


def test_onnxruntime_refuses_bf16():
    if not engines.installed("onnxruntime"):
        pytest.skip("onnxruntime not installed")
    with pytest.raises(BackendError, match="fp32 only"):
        ivfuse.load("didfuse", backend="onnxruntime", precision="bf16")


@needs("openvino")
def test_openvino_bf16_is_opt_in_and_close():
    if not engines.cpu_bf16("openvino"):
        pytest.skip("this CPU has no native bf16 for OpenVINO")
    ir, vi = _pair(48, 64)
    ref = ivfuse.load("didfuse", backend="torch").fuse(ir, vi)
    p = ivfuse.load("didfuse", precision="bf16")
    assert (p.backend, p.binding.precision) == ("openvino", "bf16")
    d = _gray(p.fuse(ir, vi), ref)
    assert 0 < d < 4.0  # bf16 keeps 8 significant bits: measured 1-2 gray levels (README)


@needs_engine
@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_export_file_with_metadata_checked_on_a_random_and_a_real_pair(tmp_path, fmt):
    from ivfuse.backends.export import export_method, read_metadata

    if fmt == "openvino" and not engines.installed("openvino"):
        pytest.skip("openvino not installed")
    tno = shared_dataset("tno")
    rep = export_method(
        "didfuse", tmp_path / "d.onnx", fmt=fmt, check_pair=(tno / "ir" / "001.png", tno / "vi" / "001.png")
    )
    assert rep.path.is_file()
    assert set(rep.checks) == {"random", "real"}
    assert max(rep.checks.values()) <= backends.EXACT_GRAY
    meta = read_metadata(rep.path)
    assert meta["method"] == "didfuse" and meta["graph"] == "fuse"
    assert int(meta["opset"]) >= 17
    assert len(meta["weights_sha256"]) == 64 and len(meta["card_sha256"]) == 64
    assert float(meta["check_real_max_gray"]) <= backends.EXACT_GRAY


def test_export_refuses_a_classical_method_and_an_unknown_format(tmp_path):
    from ivfuse.backends.export import export_method

    with pytest.raises(BackendError, match="no exportable graph"):
        export_method("lp", tmp_path / "x.onnx")
    with pytest.raises(BackendError, match="unknown export format 'tflite'"):
        export_method("didfuse", tmp_path / "x.onnx", fmt="tflite")
