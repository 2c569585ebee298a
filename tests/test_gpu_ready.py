"""Issue 25 on a CPU: devices, batched folders, the stable SSL-WAEIE contribution map, JCAE without
device mixing, the device-side CUD augmentation, time-budgeted and initialised training.
Tests that need a GPU are marked ``cuda`` and skip without one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import ivfuse
from ivfuse import devices
from ivfuse.cli import app
from ivfuse.devices import DeviceError, parse_device
from ivfuse.errors import InputError

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("torch_one_thread")
HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _pairs(root, n=5, sizes=((36, 44), (30, 40)), colour=False, seed=0):
    """``root/ir`` + ``root/vi`` PNG pairs of two sizes (equal sizes get batched)."""
    rng = np.random.default_rng(seed)
    (root / "ir").mkdir(parents=True)
    (root / "vi").mkdir(parents=True)
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        yy, xx = np.mgrid[:h, :w]
        a = np.clip(128 + 90 * np.sin(xx / (2 + i)) + rng.normal(0, 10, (h, w)), 0, 255).astype(np.uint8)
        b = np.clip(100 + 80 * np.cos(yy / (3 + i)) + rng.normal(0, 10, (h, w)), 0, 255).astype(np.uint8)
        if colour and i % 2:
            b = np.stack([b, np.roll(b, 2, axis=1), 255 - b], -1)
        Image.fromarray(a).save(root / "ir" / f"{i:03d}.png")
        Image.fromarray(b).save(root / "vi" / f"{i:03d}.png")
    return root


# --------------------------------------------------------------------------------------------
# devices


def test_parse_device_without_a_gpu(monkeypatch):
    monkeypatch.setattr(devices, "cuda_available", lambda: False)
    assert parse_device("auto") == "cpu" and parse_device(None) == "cpu"
    assert parse_device("CPU") == "cpu" and parse_device(torch.device("cpu")) == "cpu"
    for asked in ("cuda", "cuda:0", "cuda:1"):
        with pytest.raises(DeviceError, match="no CUDA device") as e:
            parse_device(asked)
        assert e.value.exit_code == 2 and "\n" not in str(e.value)
    for bad in ("gpu", "cuda:x", "mps:0", ""):
        with pytest.raises(DeviceError, match="unknown device"):
            parse_device(bad)


def test_parse_device_with_gpus(monkeypatch):
    monkeypatch.setattr(devices, "cuda_available", lambda: True)
    monkeypatch.setattr(devices, "_cuda_count", lambda: 2)
    assert parse_device("auto") == "cuda:0" and parse_device("cuda") == "cuda:0"
    assert parse_device("cuda:1") == "cuda:1"
    with pytest.raises(DeviceError, match=r"sees 2 CUDA GPU\(s\)"):
        parse_device("cuda:2")


@pytest.mark.skipif(HAS_CUDA, reason="the refusal is for machines without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cli_refuses_cuda_without_a_gpu(tmp_path, device):
    root = _pairs(tmp_path / "d", n=1)
    cases = [
        ("fuse", root / "ir" / "000.png", root / "vi" / "000.png", "-o", tmp_path / "f.png", "-m", "didfuse"),
        ("fuse", "--pairs", root, "-o", tmp_path / "out", "-m", "lp"),
        ("bench", "--dataset", root, "--methods", "lp", "--out", tmp_path / "bench"),
        ("train", "didfuse", "--data", root, "--out", tmp_path / "run", "--epochs", "1", "--no-progress"),
    ]
    for args in cases:
        r = run(*args, "--device", device)
        assert r.exit_code == 2, (args, r.output)
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and "no CUDA device" in lines[0], r.output
    assert not (tmp_path / "f.png").exists() and not (tmp_path / "run" / "weights.safetensors").exists()


@pytest.mark.skipif(HAS_CUDA, reason="the refusal is for machines without CUDA")
def test_api_load_refuses_cuda_without_a_gpu():
    with pytest.raises(DeviceError):
        ivfuse.load("didfuse", device="cuda")
    p = ivfuse.load("didfuse", device="auto", backend="torch")
    assert p.device == "cpu" and str(p.method.device) == "cpu"


def test_backend_plan_respects_the_device():
    from ivfuse.backends import plan
    from ivfuse.errors import BackendError

    for engine in ("onnxruntime", "openvino"):
        with pytest.raises(BackendError, match="runs on the CPU"):
            plan("didfuse", engine, "fp32", deep=True, options={"device": "cuda:0"}, torch_precision=True)
    assert (
        plan("didfuse", "auto", "fp32", deep=True, options={"device": "cuda:0"}, torch_precision=True).backend
        == "torch"
    )
    bf = plan("didfuse", "auto", "bf16", deep=True, options={"device": "cuda:0"}, torch_precision=True)
    assert (bf.backend, bf.precision) == ("torch", "bf16")


def test_half_precision_plans():
    from ivfuse.backends import plan
    from ivfuse.errors import BackendError

    gpu, cpu = {"device": "cuda:0"}, {"device": "cpu"}
    fp16 = plan("jcae", "auto", "fp16", deep=True, options=gpu, torch_precision=False)
    assert (fp16.backend, fp16.precision, fp16.autocast) == ("torch", "fp16", "fp16")
    # a method with a bf16 path of its own keeps it; the others get bfloat16 autocast
    own = plan("didfuse", "torch", "bf16", deep=True, options=gpu, torch_precision=True)
    assert own.torch_options == {"precision": "bf16"} and own.autocast is None
    auto = plan("jcae", "torch", "bf16", deep=True, options=cpu, torch_precision=False)
    assert (auto.backend, auto.autocast, auto.torch_options) == ("torch", "bf16", {})
    with pytest.raises(BackendError, match="fp16 is for CUDA"):
        plan("jcae", "auto", "fp16", deep=True, options=cpu, torch_precision=False)
    with pytest.raises(BackendError, match="unknown precision"):
        plan("jcae", "auto", "fp8", deep=True, options=gpu, torch_precision=False)


def test_sslwaeie_refuses_half_precision_on_every_engine():
    """tau_i is a ratio of energy differences: bf16 moved the fused image by 61-83 gray levels on
    real pairs (measured), so half precision is refused with one line, whatever the backend."""
    from ivfuse.errors import MethodError

    for backend in ("auto", "torch"):
        with pytest.raises(MethodError, match="runs in fp32 only") as e:
            ivfuse.load("sslwaeie", backend=backend, precision="bf16")
        assert e.value.exit_code == 2


def test_cli_refuses_fp16_on_the_cpu(tmp_path):
    root = _pairs(tmp_path / "d", n=1)
    r = run(
        "fuse",
        root / "ir" / "000.png",
        root / "vi" / "000.png",
        "-o",
        tmp_path / "f.png",
        "-m",
        "jcae",
        "--device",
        "cpu",
        "--precision",
        "fp16",
    )
    assert r.exit_code == 2 and "fp16 is for CUDA" in r.output
    assert not (tmp_path / "f.png").exists()


@pytest.mark.filterwarnings("ignore:precision='bf16'")
@pytest.mark.parametrize("method", ["jcae", "ifcnn"])
def test_bf16_autocast_keeps_batching_and_stays_close(method):
    """The eager step under bfloat16 autocast: float32 results within 2.5 gray levels of fp32 on
    the synthetic scene (bf16 keeps 8 significant bits; measured 1.6-1.9 on real TNO pairs for
    JCAE), really in bf16 (not equal to fp32), and fuse_batch still batches with equal results."""
    from ivfuse.data.synthetic import night_scene

    scene = night_scene(64, 80, seed=1)
    vi = (scene.vi @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.float32)
    fp32 = ivfuse.load(method, device="cpu", backend="torch").method.fuse(scene.ir, vi)
    p = ivfuse.load(method, device="cpu", backend="torch", precision="bf16")
    assert (p.backend, p.binding.precision) == ("torch", "bf16") and "autocast" in p.binding.reason
    fuser = p.method
    assert fuser.step_precision == "bf16" and fuser.step is fuser.eager_step
    half = fuser.fuse(scene.ir, vi)
    assert half.dtype == np.float32
    d = float(np.abs(half - fp32).max()) * 255
    assert 0 < d <= 2.5
    batch = fuser.fuse_batch([scene.ir] * 3, [vi] * 3, batch_size=3)
    for b in batch:
        assert float(np.abs(b - half).max()) * 255 <= 0.5
    with pytest.raises(InputError, match="already runs in bf16"):
        fuser.autocast("fp16")


def test_classical_method_on_cuda_runs_on_the_cpu_with_a_note(monkeypatch):
    import ivfuse.api as api_mod

    monkeypatch.setattr(devices, "cuda_available", lambda: True)
    monkeypatch.setattr(devices, "_cuda_count", lambda: 1)
    with pytest.warns(devices.DeviceNote, match="runs in NumPy on the CPU"):
        p = api_mod.load("lp", device="cuda")
    assert p.device == "cpu"


def test_tf32_policy_is_per_method():
    from ivfuse.methods.didfuse import DIDFuse

    class Exact:
        pass

    class Fast:
        tf32 = True

    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        assert devices.tf32_policy(DIDFuse) is False  # default: fp32-exact
        assert devices.apply_tf32(Fast) is True
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert devices.apply_tf32(Exact()) is False
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = True
        devices.apply_tf32(Exact, "cpu")  # a CPU fuser leaves the switches alone
        assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


# --------------------------------------------------------------------------------------------
# batched inference


#: every deep method of the registry: the five seed methods and the papers' competitors
DEEP = tuple(m.name for m in ivfuse.list_methods() if m.family != "classical")


@pytest.mark.parametrize("method", DEEP)
def test_fuse_batch_equals_one_by_one(method):
    fuser = ivfuse.load(method, device="cpu", backend="torch").method
    rng = np.random.default_rng(3)
    shapes = [(34, 46), (34, 46), (34, 46), (27, 31)]
    irs = [rng.random(s, dtype=np.float32) for s in shapes]
    vis = [rng.random(s, dtype=np.float32) for s in shapes]
    one = [fuser.fuse(a, b) for a, b in zip(irs, vis, strict=True)]
    both = fuser.fuse_batch(irs, vis, batch_size=2)
    assert [o.shape for o in both] == shapes
    # SSL-WAEIE's tau_i is a ratio of energies that are near zero over much of an image: another
    # batch size rounds them differently (other convolution kernels), which moves the result by
    # up to 0.15 gray levels on these noise images (measured); within its 0.5-gray stability bound
    tol = 0.5 / 255 if method == "sslwaeie" else 1e-5
    for a, b in zip(one, both, strict=True):
        assert float(np.abs(a - b).max()) <= tol


@pytest.mark.parametrize("method", ["didfuse", "lp"])
def test_batched_folder_equals_one_by_one(tmp_path, method):
    root = _pairs(tmp_path / "d", n=5, colour=True)
    r1 = run(
        "fuse", "--pairs", root, "-o", tmp_path / "one", "-m", method, "--device", "cpu", "--backend", "torch"
    )
    assert r1.exit_code == 0, r1.output
    r2 = run("fuse", "--pairs", root, "-o", tmp_path / "many", "-m", method, "--device", "cpu",
             "--backend", "torch", "--batch-size", "3", "--workers", "2")  # fmt: skip
    assert r2.exit_code == 0, r2.output
    assert "5 fused, 0 skipped, 0 failed" in r2.output
    for f in sorted((tmp_path / "one").iterdir()):
        a = np.asarray(Image.open(f), dtype=np.int16)
        b = np.asarray(Image.open(tmp_path / "many" / f.name), dtype=np.int16)
        assert a.shape == b.shape and int(np.abs(a - b).max()) == 0, f.name


def test_batched_folder_reports_bad_pairs_and_skips_existing(tmp_path):
    root = _pairs(tmp_path / "d", n=4)
    (root / "vi" / "001.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    out.mkdir()
    (out / "002.png").write_bytes(b"keep")
    pipe = ivfuse.load("didfuse", device="cpu", backend="torch")
    from ivfuse.data.pairs import discover

    pairs = discover(None, None, root).pairs
    res = list(ivfuse.api.fuse_pairs(pipe, pairs, out, batch_size=2, workers=2))
    assert [r.stem for r in res] == ["000", "001", "002", "003"]
    assert [r.status for r in res] == ["fused", "failed", "skipped", "fused"]
    assert (out / "002.png").read_bytes() == b"keep"


# --------------------------------------------------------------------------------------------
# correctness prepared for CUDA


def test_jcae_fold_input_creates_every_tensor_on_the_weights_device():
    from ivfuse.methods.jcae import JCAENet, fold_input

    torch.manual_seed(0)
    ref = JCAENet().eval()
    x = torch.rand(1, 1, 20, 22)
    with torch.no_grad():
        want = ref.fuse(x, x.flip(-1))
    meta = JCAENet().to("meta")  # a CPU tensor mixed into a meta net raises
    folded = fold_input(meta)
    assert all(p.device.type == "meta" for p in folded.parameters())
    cpu = fold_input(ref)  # and the fold is still the same function on the CPU
    from ivfuse.methods.jcae import fuse_features

    with torch.no_grad():
        f = cpu.encode(x, x.flip(-1))
        got = sum(cpu.decoder(t) for t in fuse_features(f, "paper"))
    assert torch.allclose(got[..., :20, :22], want, atol=1e-5)


def test_sslwaeie_tau_is_stable_where_energies_vanish():
    from ivfuse.methods.sslwaeie import guarded_tau, stable_tau

    torch.manual_seed(0)
    de_i = torch.rand(1, 1, 32, 32) * 5
    de_v = torch.rand(1, 1, 32, 32) * 5
    de_i[..., :4, :] = 1e-6  # both energies tiny: the old ratio is decided by rounding noise
    de_v[..., :4, :] = 0.0
    old = guarded_tau(de_i, de_v)
    new = stable_tau(de_i, de_v)
    flipped_i, flipped_v = de_i.clone(), de_v.clone()
    flipped_i[..., :4, :], flipped_v[..., :4, :] = 0.0, 1e-6  # a perturbation of 1e-6 absolute
    assert float((guarded_tau(flipped_i, flipped_v) - old).abs().max()) > 0.3  # the old map flips
    assert float((stable_tau(flipped_i, flipped_v) - new).abs().max()) < 1e-3  # the new one does not
    assert torch.allclose(new[..., :4, :], torch.full_like(new[..., :4, :], 0.5), atol=1e-3)
    big = (de_i + de_v) >= 2e-2 * (de_i + de_v).mean()
    assert torch.equal(new[big], old[big])  # Eq. (7) unchanged where the energies are not tiny
    assert torch.allclose(stable_tau(de_v, de_i), 1 - new, atol=1e-6)  # symmetric
    assert float(new.min()) >= 0 and float(new.max()) <= 1


def test_sslwaeie_fusion_is_stable_under_tiny_perturbations():
    from ivfuse.data.synthetic import night_scene
    from ivfuse.methods.sslwaeie import guarded_tau

    scene = night_scene(96, 128, seed=2)
    ir = scene.ir.astype(np.float32)
    vi = (scene.vi @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.float32)
    fuser = ivfuse.load("sslwaeie", device="cpu", backend="torch").method
    base = fuser.fuse(ir, vi)
    rng = np.random.default_rng(0)
    for _ in range(2):
        d = rng.choice([-1e-6, 1e-6], size=ir.shape).astype(np.float32)
        moved = fuser.fuse(np.clip(ir + d, 0, 1), vi)
        assert float(np.abs(moved - base).max()) * 255 < 0.5
    # float64 evaluation of the same network: within 0.5 gray levels
    net64 = fuser.net.double()
    try:
        with torch.inference_mode():
            e = net64.energies(
                torch.from_numpy(ir)[None, None].double(), torch.from_numpy(vi)[None, None].double()
            )
            from ivfuse.methods.sslwaeie import stable_tau

            tau64 = stable_tau(e[:, :1], e[:, 1:]).float().numpy()[0, 0]
            # where the energies are large, the fused image is the old formula's
            s = e[:, :1] + e[:, 1:]
            big = (s >= 2e-2 * s.mean()).numpy()[0, 0]
            old = guarded_tau(e[:, :1], e[:, 1:]).float().numpy()[0, 0]
    finally:
        fuser.net.float()
    f64 = tau64 * ir + (1 - tau64) * vi
    assert float(np.abs(np.clip(f64, 0, 1) - base).max()) * 255 < 0.5
    assert np.allclose(tau64[big], old[big], atol=1e-6)


def test_sslwaeie_tiles_and_whole_image_agree():
    fuser = ivfuse.load("sslwaeie", device="cpu", backend="torch", tile=None).method
    tiled = ivfuse.load("sslwaeie", device="cpu", backend="torch", tile=48).method
    rng = np.random.default_rng(1)
    ir, vi = rng.random((70, 90), dtype=np.float32), rng.random((70, 90), dtype=np.float32)
    assert float(np.abs(fuser.fuse(ir, vi) - tiled.fuse(ir, vi)).max()) * 255 < 0.05


# --------------------------------------------------------------------------------------------
# DeFusion's device-side CUD augmentation


def _natural(folder, n=3):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    for i in range(n):
        img = rng.integers(0, 256, (40 + 4 * i, 52, 3), dtype=np.uint8)
        Image.fromarray(img).save(folder / f"img{i}.png")
    return folder


def _mask_checks(m1, m2, p, cfg):
    assert set(torch.unique(m1).tolist()) <= {0.0, 1.0} and set(torch.unique(m2).tolist()) <= {0.0, 1.0}
    assert bool(((m1 + m2) >= 1).all())  # every pixel is visible in at least one view
    assert float(p.min()) >= cfg.keep_min and float(p.max()) < cfg.keep_min + 1 / cfg.keep_div
    from ivfuse.data.gpu_augment import expected_coverage

    cov = (m1.flatten(1).mean(1) + m2.flatten(1).mean(1)) / 2
    gap = float((cov - expected_coverage(p)).mean())
    assert abs(gap) < 0.03, gap


def test_mask_properties_on_both_paths():
    from ivfuse.data.gpu_augment import cud_masks_batch
    from ivfuse.methods.defusion import Config, cud_masks

    cfg = Config(crop=52)
    torch.manual_seed(0)
    loader = [cud_masks(52, cfg) for _ in range(300)]
    m1 = torch.stack([a for a, _, _ in loader])
    m2 = torch.stack([b for _, b, _ in loader])
    p = torch.tensor([q for _, _, q in loader])
    _mask_checks(m1, m2, p, cfg)
    torch.manual_seed(0)
    d1, d2, dp = cud_masks_batch(300, 52, cfg, "cpu")
    assert d1.shape == (300, 1, 52, 52)
    _mask_checks(d1, d2, dp, cfg)
    # same distribution: mean coverage and the share of pixels visible in both views agree
    for a, b in ((m1, d1), (m2, d2), (m1 * m2, d1 * d2)):
        assert abs(float(a.mean()) - float(b.mean())) < 0.03
    # the masks are grids: constant over each coarse cell of a 13 x 13 grid times a fine one
    assert float(d1.mean()) > 0.3


def test_device_batch_matches_the_loader_items(tmp_path):
    from ivfuse.data.gpu_augment import ImageCache, cud_batch, jitter_batch
    from ivfuse.data.natural import color_jitter
    from ivfuse.methods.defusion import Config, CUDPretext

    root = _natural(tmp_path / "nat")
    cfg = Config(crop=24)
    cache = ImageCache(CUDPretext(root, cfg).files).to("cpu")
    torch.manual_seed(1)
    b = cud_batch(cache, torch.tensor([0, 2, 1, 0]), cfg)
    assert b["x"].shape == (4, 3, 24, 24) and b["m1"].shape == (4, 1, 24, 24)
    for k in ("x", "x1", "x2"):
        assert float(b[k].min()) >= 0 and float(b[k].max()) <= 1
    keep = b["m1"].expand_as(b["x"]) == 1
    assert torch.equal(b["x1"][keep], b["x"][keep])  # Eq. (1): visible pixels are the scene's
    # the batched jitter is the loader's jitter for the same factors and order
    img = torch.rand(3, 10, 12)
    torch.manual_seed(5)
    want = color_jitter(img.clone(), (0.1, 1.0), (0.1, 1.0), (0.1, 1.0))
    torch.manual_seed(5)
    order = torch.randperm(4)
    f = torch.empty(3)
    for k in range(3):
        f[k] = torch.empty(1).uniform_(0.1, 1.0)
    got = jitter_batch(img[None], f[None], order[None])[0]
    assert torch.allclose(got, want, atol=1e-6)


def test_defusion_trains_with_device_augmentation(tmp_path):
    from ivfuse.methods.defusion import Config, training_spec
    from ivfuse.train.trainer import RunOptions, train

    root = _natural(tmp_path / "nat", n=4)
    spec = training_spec(Config(crop=16, batch_size=2, epochs=1, schedule_scale=1.0, augment="device"))
    card = train(spec, RunOptions(data=root, out=tmp_path / "run", seed=0, progress=False))
    assert card["config"]["augment"] == "device" and np.isfinite(card["final_losses"]["total"])
    assert card["iterations"] == 2


# --------------------------------------------------------------------------------------------
# training that fits a loan


def _didfuse_run(tmp_path, name, *extra):
    root = tmp_path / "pairs"
    if not root.exists():
        _pairs(root, n=6, sizes=((36, 44),))
    return run("train", "didfuse", "--data", root, "--out", tmp_path / name, "--epochs", "2", "--crop", "24",
               "--batch-size", "2", "--no-progress", "--threads", "1", *extra)  # fmt: skip


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def test_time_budget_stops_cleanly_and_resume_continues_exactly(tmp_path):
    full = _didfuse_run(tmp_path, "full")
    assert full.exit_code == 0, full.output
    # a budget far below one step: one step runs, then the run stops in the middle of epoch 1
    part = _didfuse_run(tmp_path, "part", "--time-budget", "0.000001")
    assert part.exit_code == 0, part.output
    assert "time budget" in part.output
    card = json.loads((tmp_path / "part" / "card.json").read_text())
    tb = card["time_budget"]
    assert tb["stopped_by_budget"] is True and tb["seconds"] == pytest.approx(1e-6)
    assert card["iterations"] == tb["iterations"] == 1 and card["iterations_planned"] == 6
    assert card["device"].startswith("cpu") and tb["device"] == card["device"]
    assert (tmp_path / "part" / "weights.safetensors").is_file()
    assert (tmp_path / "part" / "checkpoint.pt").is_file()
    from ivfuse.train.ship import export_run  # shipping the stopped run: its own card, said so

    shipped = export_run(tmp_path / "part", tmp_path / "s.safetensors", tmp_path / "s.json", "didfuse")
    assert shipped["time_budget"]["stopped_by_budget"] is True and shipped["reduced_scale"] is True
    assert "stopped by the time budget" in shipped["note"] and "after 1 of 6" in shipped["note"]
    ck = torch.load(tmp_path / "part" / "checkpoint.pt", map_location="cpu", weights_only=False)
    s = _weights(tmp_path / "s.safetensors")
    assert all(torch.equal(v, s[k]) for k, v in ck["model"].items())
    again = _didfuse_run(tmp_path, "part", "--resume")
    assert again.exit_code == 0, again.output
    a, b = (
        _weights(tmp_path / "full" / "weights.safetensors"),
        _weights(tmp_path / "part" / "weights.safetensors"),
    )
    for k in a:
        assert torch.equal(a[k], b[k]), k
    card = json.loads((tmp_path / "part" / "card.json").read_text())
    assert card["iterations"] == 6 and card["time_budget"] is None and card["epochs"] == 2


def test_init_starts_from_weights_with_a_fresh_optimiser(tmp_path):
    first = _didfuse_run(tmp_path, "first")
    assert first.exit_code == 0, first.output
    src = tmp_path / "first" / "weights.safetensors"
    r = _didfuse_run(tmp_path, "second", "--init", src, "--lr", "1e-30")
    assert r.exit_code == 0, r.output
    card = json.loads((tmp_path / "second" / "card.json").read_text())
    from ivfuse.methods._torch import sha256_file

    assert card["init_weights"]["path"] == str(src) and card["init_weights"]["sha256"] == sha256_file(src)
    assert card["init_weights"]["optimizer"] == "fresh"
    a, b = _weights(src), _weights(tmp_path / "second" / "weights.safetensors")
    for k in a:  # lr 1e-30: the weights are the initial ones (BatchNorm statistics move on)
        if "running_" not in k and "num_batches" not in k:
            assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k
    bad = _didfuse_run(tmp_path, "third", "--init", tmp_path / "missing.safetensors")
    assert bad.exit_code != 0 and "missing.safetensors" in bad.output


def test_init_loads_into_the_matching_part_of_the_model():
    from torch import nn

    from ivfuse.train.trainer import _load_init  # noqa: F401  (the generic match is by key set)

    inner = nn.Sequential(nn.Conv2d(1, 2, 3))
    outer = nn.Module()
    outer.net = inner
    outer.register_buffer("iteration", torch.zeros((), dtype=torch.int64))
    names = [n for n, m in outer.named_modules() if set(m.state_dict()) == set(inner.state_dict())]
    assert names == ["net"]


def test_bf16_training_runs_on_the_cpu(tmp_path):
    r = _didfuse_run(tmp_path, "bf16", "--precision", "bf16", "--log-every", "2")
    assert r.exit_code == 0, r.output
    card = json.loads((tmp_path / "bf16" / "card.json").read_text())
    assert card["precision"] == "bf16" and np.isfinite(card["final_losses"]["total"])
    assert card["deterministic"] is True


# --------------------------------------------------------------------------------------------
# the GPU benchmark's CPU mode, and the checks that need CUDA


def test_bench_gpu_quick_on_the_cpu(tmp_path):
    from benchmarks import bench_gpu

    lines = bench_gpu.main(["--device", "cpu", "--quick", "--methods", "didfuse,sslwaeie"])
    text = "\n".join(lines)
    assert "didfuse" in text and "ms/pair" in text and "pairs/s" in text
    half = lines[lines.index(next(x for x in lines if x.startswith("(b') bf16"))) :]
    row = next(x for x in half if x.startswith("didfuse"))
    assert 0 < float(row.split()[1]) <= 1.0  # DIDFuse's mixed bf16 path: within one gray level
    assert any(x.startswith("sslwaeie") and "fp32 only" in x for x in half)


def test_bench_train_step_times_each_precision_in_its_own_process(tmp_path, capsys):
    """benchmarks/bench_train_step.py: fp32 and bf16 DeFusion steps on random natural images, each
    in a fresh process, with the paired speed-up and the projection of --iterations steps."""
    from benchmarks import bench_gpu, bench_train_step

    root = bench_gpu._natural(None, tmp_path, 4)
    out = tmp_path / "steps.json"
    args = [
        "--method",
        "defusion",
        "--data",
        str(root),
        "--set",
        "crop=32",
        "--set",
        "batch_size=2",
        "--steps",
        "2",
        "--rounds",
        "1",
        "--threads",
        "1",
        "--iterations",
        "3600",
        "--json",
        str(out),
    ]
    assert bench_train_step.main(args) == 0  # fmt: skip
    got = json.loads(out.read_text())
    (rnd,) = got["rounds"]
    for p in ("fp32", "bf16"):
        assert rnd[p]["batch"] == 2 and len(rnd[p]["steps_s"]) == 2 and rnd[p]["step_s"] > 0
        hours = got["summary"][p]["hours_for_iterations"]  # 3600 steps: hours = seconds per step
        assert hours == pytest.approx(rnd[p]["step_s"] + rnd[p]["load_s"])
    assert got["summary"]["bf16"]["speedup_vs_fp32"] == [rnd["fp32"]["step_s"] / rnd["bf16"]["step_s"]]
    assert "speed-up over fp32" in capsys.readouterr().out


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("method", DEEP)
def test_cuda_result_within_half_a_gray_level_of_the_cpu(method):
    from ivfuse.data.synthetic import night_scene

    scene = night_scene(128, 160, seed=0)
    vi = (scene.vi @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.float32)
    cpu = ivfuse.load(method, device="cpu", backend="torch").method.fuse(scene.ir, vi)
    gpu = ivfuse.load(method, device="cuda", backend="torch").method.fuse(scene.ir, vi)
    assert float(np.abs(cpu - gpu).max()) * 255 <= 0.5


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("method", [m for m in DEEP if m != "sslwaeie"])  # SSL-WAEIE refuses half precision
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_half_precision_within_two_gray_levels(method, precision):
    from ivfuse.data.synthetic import night_scene

    scene = night_scene(128, 160, seed=0)
    vi = (scene.vi @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.float32)
    fp32 = ivfuse.load(method, device="cuda", backend="torch").method.fuse(scene.ir, vi)
    half = ivfuse.load(method, device="cuda", backend="torch", precision=precision).method.fuse(scene.ir, vi)
    assert float(np.abs(fp32 - half).max()) * 255 <= (2.0 if precision == "fp16" else 4.0)


@pytest.mark.cuda
@needs_cuda
def test_cuda_batch_equals_one_by_one():
    fuser = ivfuse.load("didfuse", device="cuda", backend="torch").method
    rng = np.random.default_rng(0)
    irs = [rng.random((64, 80), dtype=np.float32) for _ in range(5)]
    vis = [rng.random((64, 80), dtype=np.float32) for _ in range(5)]
    one = [fuser.fuse(a, b) for a, b in zip(irs, vis, strict=True)]
    for a, b in zip(one, fuser.fuse_batch(irs, vis, batch_size=4), strict=True):
        assert float(np.abs(a - b).max()) * 255 <= 0.5


@pytest.mark.cuda
@needs_cuda
def test_cuda_mask_properties_on_the_gpu():
    from ivfuse.data.gpu_augment import cud_masks_batch
    from ivfuse.methods.defusion import Config

    cfg = Config(crop=64)
    m1, m2, p = cud_masks_batch(200, 64, cfg, "cuda")
    assert m1.device.type == "cuda"
    _mask_checks(m1.cpu(), m2.cpu(), p.cpu(), cfg)
