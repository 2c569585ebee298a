"""The seed papers' competitors: DenseFuse, FusionGAN, DeepFuse, IFCNN, U2Fusion. Parameter counts
(hand counts of the papers' layer tables), losses by hand on tiny tensors, a few training steps
(the loss falls, a killed run resumes bit-identically), the CLI for every task, weights errors and
the pickle-free conversion of official checkpoints."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from ivfuse import io
from ivfuse.cli import app
from ivfuse.errors import InputError, WeightsError
from ivfuse.methods import deepfuse, densefuse, fusiongan, ifcnn, registry, u2fusion
from ivfuse.nn import parameter_count
from ivfuse.nn.losses import ssim_map
from ivfuse.train.checkpoint import export_safetensors
from ivfuse.train.trainer import RunOptions, train

pytestmark = pytest.mark.usefixtures("torch_one_thread")

NAMES = ("densefuse", "fusiongan", "deepfuse", "ifcnn", "u2fusion")
MODULES = {
    "densefuse": densefuse,
    "fusiongan": fusiongan,
    "deepfuse": deepfuse,
    "ifcnn": ifcnn,
    "u2fusion": u2fusion,
}


# --------------------------------------------------------------------------------------------
# parameter counts (hand counts from the papers' layer tables, see each module docstring)
# --------------------------------------------------------------------------------------------


def test_parameter_counts():
    d = densefuse.DenseFuseNet()
    assert (parameter_count(d.encoder), parameter_count(d.decoder), parameter_count(d)) == (
        14_032,
        60_161,
        74_193,
    )
    assert parameter_count(deepfuse.DeepFuseNet()) == 88_961
    g = fusiongan.FusionGANModel(fusiongan.Config(patch=120))
    assert parameter_count(g.generator) == 925_633
    assert parameter_count(g.discriminator) == 397_953
    n = ifcnn.IFCNNNet()
    assert parameter_count(n) == 83_587 and parameter_count(n.conv1) == 9_408
    assert parameter_count(u2fusion.DenseGenerator()) == 659_217


# --------------------------------------------------------------------------------------------
# losses by hand
# --------------------------------------------------------------------------------------------


def test_densefuse_loss_by_hand():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 12, 12)
    t = densefuse.densefuse_loss(densefuse.Config(), x, x.clone())
    assert float(t["total"]) == pytest.approx(0.0, abs=1e-6)
    y = x + 0.1
    t = densefuse.densefuse_loss(densefuse.Config(lam=10), x, y)
    ssim = 1 - float(ssim_map(y, x).mean())
    assert float(t["pixel"]) == pytest.approx(0.01, rel=1e-4)
    assert float(t["ssim"]) == pytest.approx(ssim, rel=1e-5)
    assert float(t["total"]) == pytest.approx(0.01 + 10 * ssim, rel=1e-5)


def test_fusiongan_content_loss_on_a_2x2_example():
    f = torch.tensor([[[[0.5, -0.5], [0.0, 1.0]]]])
    ir = torch.tensor([[[[0.0, 0.0], [0.0, 0.0]]]])
    vi = torch.zeros(1, 1, 2, 2)
    # intensity term: mean of f^2 = (0.25 + 0.25 + 0 + 1) / 4 = 0.375
    # Laplacian (zero padding) of f: [[-2.5, 3.5], [1.5, -4.5]] -> mean square (6.25+12.25+2.25+20.25)/4
    lap = fusiongan.laplacian(f)
    torch.testing.assert_close(lap, torch.tensor([[[[-2.5, 3.5], [1.5, -4.5]]]]))
    expect = 0.375 + 5 * (6.25 + 12.25 + 2.25 + 20.25) / 4
    assert float(fusiongan.content_loss(f, ir, vi, xi=5.0)) == pytest.approx(expect)
    # the adversarial terms with the soft labels of this draw
    cfg = fusiongan.Config()
    out = {
        "fused": f,
        "ir": ir,
        "vi": vi,
        "d_fake_g": torch.tensor([[0.5]]),
        "d_fake": torch.tensor([[0.5]]),
        "d_real": torch.tensor([[0.2]]),
    }
    torch.manual_seed(5)
    a, b, c = (float(torch.empty(1).uniform_(*r)) for r in (cfg.label_fake, cfg.label_real, cfg.label_real))
    torch.manual_seed(5)
    t = fusiongan.fusiongan_loss(cfg, out)
    assert 0 <= a <= 0.3 and 0.7 <= b <= 1.2
    assert float(t["adv_g"]) == pytest.approx((0.5 - c) ** 2)
    assert float(t["loss_d"]) == pytest.approx((0.2 - b) ** 2 + (0.5 - a) ** 2)
    assert float(t["total"]) == pytest.approx((0.5 - c) ** 2 + 100 * expect + float(t["loss_d"]))


def test_fusiongan_generator_gets_no_gradient_from_the_discriminator_loss():
    torch.manual_seed(1)
    m = fusiongan.FusionGANModel(fusiongan.Config(patch=32))
    ir, vi = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    fusiongan.fusiongan_loss(m.cfg, m(ir, vi))["loss_d"].backward()
    assert all(p.grad is None for p in m.generator.parameters())
    m.zero_grad(set_to_none=True)
    fusiongan.fusiongan_loss(m.cfg, m(ir, vi))["loss_g"].backward()
    assert all(p.grad is None for p in m.discriminator.parameters())


def test_mef_ssim_by_hand():
    torch.manual_seed(2)
    y1 = torch.rand(1, 1, 16, 16)
    flat = torch.full((1, 1, 16, 16), 0.3)
    # one textured source, one flat: the target patch is the textured one itself -> score 1
    s = deepfuse.mef_ssim_map(y1, flat, y1)
    torch.testing.assert_close(s, torch.ones_like(s), atol=1e-4, rtol=0)
    assert float(
        deepfuse.deepfuse_loss(deepfuse.Config(lum_weight=0), y1, flat, y1)["total"]
    ) == pytest.approx(0, abs=1e-4)
    lum = float(((y1 - (y1 + flat) / 2) ** 2).mean())  # the luminance anchor, by hand
    t = deepfuse.deepfuse_loss(deepfuse.Config(lum_weight=0.1), y1, flat, y1)
    assert float(t["luminance"]) == pytest.approx(lum, rel=1e-5)
    assert float(t["total"]) == pytest.approx(1 - float(t["mef_ssim"]) + 0.1 * lum, rel=1e-5)
    # contrast: the larger one is desired; a copy of the low-contrast source scores less than 1
    y2 = 0.5 + 0.2 * (y1 - 0.5)
    assert float(deepfuse.mef_ssim_map(y1, y2, y2).mean()) < 0.9
    # never above 1, also where both sources are flat (saturated) and the fused image is not
    sat = torch.ones(1, 1, 16, 16)
    assert float(deepfuse.mef_ssim_map(sat, sat * 0.999, y1).max()) <= 1.0 + 1e-6
    assert float(deepfuse.mef_ssim_map(y1, y2, torch.rand(1, 1, 16, 16)).max()) <= 1.0 + 1e-6
    # symmetric in the sources, luminance ignored (a shifted fused image scores the same)
    torch.testing.assert_close(deepfuse.mef_ssim_map(y1, y2, y1), deepfuse.mef_ssim_map(y2, y1, y1))
    torch.testing.assert_close(
        deepfuse.mef_ssim_map(y1, y2, y1 + 0.2), deepfuse.mef_ssim_map(y1, y2, y1), atol=1e-4, rtol=0
    )


def test_ifcnn_loss_and_rules():
    x = torch.rand(1, 3, 8, 8)
    t = ifcnn.ifcnn_loss(ifcnn.Config(), x, x)
    assert float(t["total"]) == 0.0
    a, b = torch.randn(1, 4, 3, 3), torch.randn(1, 4, 3, 3)
    torch.testing.assert_close(ifcnn.FUSE["max"](a, b), torch.where(a > b, a, b))
    torch.testing.assert_close(ifcnn.FUSE["mean"](a, b), (a + b) / 2)
    torch.testing.assert_close(ifcnn.denormalize(ifcnn.normalize(x)), x)


def test_u2fusion_weights_and_loss_by_hand():
    torch.manual_seed(3)
    tex = torch.rand(2, 1, 32, 32)
    flat = torch.full((2, 1, 32, 32), 0.5)
    w = u2fusion.adaptive_weights(tex, flat)
    assert w.shape == (2, 2) and torch.allclose(w.sum(1), torch.ones(2))
    assert bool((w[:, 0] > 0.95).all())  # all the information is in the textured source
    # equal information -> equal weights; the loss by hand
    w = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    f = (tex + flat) / 2
    t = u2fusion.u2fusion_loss(u2fusion.Config(), tex, flat, f, w)
    ls = 0.5 * (1 - ssim_map(f, tex).mean()) + 0.5 * (1 - ssim_map(f, flat).mean())
    lm = 0.5 * ((f - tex) ** 2).mean() + 0.5 * ((f - flat) ** 2).mean()
    assert float(t["total"]) == pytest.approx(float(ls + 20 * lm), rel=1e-5)


# --------------------------------------------------------------------------------------------
# training: the loss falls, a killed run resumes bit-identically
# --------------------------------------------------------------------------------------------


def _images(folder: Path, n: int, size=(40, 44), seed=0, rgb=True) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]] / 10.0
    for i in range(n):
        base = 0.5 + 0.3 * np.sin(xx * (1 + i) + yy) + 0.1 * rng.random(size)
        img = np.clip(base, 0, 1)
        arr = (np.stack([img, img * 0.9, img * 0.8], -1) if rgb else img) * 255
        Image.fromarray(arr.astype(np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def _pairs(root: Path, n: int, size=(40, 44)) -> Path:
    _images(root / "ir", n, size, seed=1, rgb=False)
    _images(root / "vi", n, size, seed=2)
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    _images(root / "natural" / "BSDS500", 4)
    _pairs(root / "flir_train", 4)
    return root


SMALL = {
    "densefuse": (lambda: densefuse.Config(size=24, batch_size=2, lr=1e-3), "natural/BSDS500"),
    "ifcnn": (lambda: ifcnn.Config(crop=20, batch_size=2, lr=1e-3), "natural/BSDS500"),
    "deepfuse": (lambda: deepfuse.Config(crop=20, batch_size=2, lr=1e-3), "natural/BSDS500"),
    "fusiongan": (lambda: fusiongan.Config(patch=32, batch_size=2, lr=1e-4), "flir_train"),
    "u2fusion": (lambda: u2fusion.Config(crop=20, batch_size=4, lr=1e-3), "."),
}


def _spec(name: str, epochs: int):
    make, _ = SMALL[name]
    cfg = make()
    cfg.epochs = epochs
    return MODULES[name].training_spec(cfg)


@pytest.mark.parametrize("name", NAMES)
def test_training_lowers_the_loss_and_resumes_bit_identically(name, data, tmp_path):
    sub = SMALL[name][1]
    card = train(_spec(name, 3), RunOptions(data / sub, tmp_path / "full", seed=1, progress=False))
    assert card["epochs"] == 3
    key = "content" if name == "fusiongan" else "total"  # the GAN's adversarial terms need not fall
    with open(tmp_path / "full" / "losses.csv") as f:
        totals = [float(r[key]) for r in csv.DictReader(f)]
    assert totals[-1] < totals[0], totals
    r = train(_spec(name, 3), RunOptions(data / sub, tmp_path / "part", seed=1, progress=False, stop_after=2))
    assert r == {"stopped_at": 2}
    train(_spec(name, 3), RunOptions(data / sub, tmp_path / "part", seed=1, progress=False, resume=True))
    a, b = (
        load_file(str(tmp_path / "full" / "weights.safetensors")),
        load_file(str(tmp_path / "part" / "weights.safetensors")),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the exported weights load through the registry and fuse
    f = registry.create(name, weights=tmp_path / "full" / "weights.safetensors")
    out = f.fuse(np.full((9, 11), 0.3, np.float32), np.full((9, 11), 0.6, np.float32))
    assert out.shape == (9, 11) and 0 <= out.min() <= out.max() <= 1


# --------------------------------------------------------------------------------------------
# weights: errors, conversion of official checkpoints
# --------------------------------------------------------------------------------------------


def _random_weights(name: str, path: Path) -> Path:
    torch.manual_seed(0)
    spec = MODULES[name].training_spec(SMALL[name][0]())
    model = spec.build_model().eval()
    state = spec.export(model) if spec.export else model.state_dict()
    export_safetensors(path, state, {"method": name})
    return path


@pytest.mark.parametrize("name", NAMES)
def test_weights_errors(name, tmp_path):
    with pytest.raises(WeightsError, match="no .* weights at"):
        registry.create(name, weights=tmp_path / "missing.safetensors")
    other = "didfuse"
    export_safetensors(tmp_path / "foreign.safetensors", {"x": torch.zeros(1)}, {"method": other})
    with pytest.raises(WeightsError, match="not " + name):
        registry.create(name, weights=tmp_path / "foreign.safetensors")
    export_safetensors(tmp_path / "wrong.safetensors", {"x": torch.zeros(1)}, {"method": name})
    with pytest.raises(WeightsError, match="does not match"):
        registry.create(name, weights=tmp_path / "wrong.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(WeightsError, match="not a readable safetensors"):
        registry.create(name, weights=tmp_path / "junk.safetensors")
    if not registry.info(name).weights_shipped:
        with pytest.raises(WeightsError, match=f"ivfuse train {name}"):
            registry.create(name)


def _official_densefuse() -> dict[str, torch.Tensor]:
    """A state dict with the key names of hli1221/densefuse-pytorch's ``DenseFuse_net``."""
    torch.manual_seed(4)
    shapes = {"conv1": (16, 1), "conv2": (64, 64), "conv3": (32, 64), "conv4": (16, 32), "conv5": (1, 16)}
    sd = {}
    for name, (o, i) in shapes.items():
        sd[f"{name}.conv2d.weight"] = torch.randn(o, i, 3, 3) * 0.1
        sd[f"{name}.conv2d.bias"] = torch.randn(o) * 0.1
    for k in range(3):
        sd[f"DB1.denseblock.{k}.dense_conv.conv2d.weight"] = torch.randn(16, 16 * (k + 1), 3, 3) * 0.1
        sd[f"DB1.denseblock.{k}.dense_conv.conv2d.bias"] = torch.randn(16) * 0.1
    return sd


def _official_ifcnn() -> dict[str, torch.Tensor]:
    """A state dict with the key names of uzeful/IFCNN's ``IFCNN`` (saved from DataParallel)."""
    torch.manual_seed(5)
    sd = {"module.conv1.weight": torch.randn(64, 3, 7, 7) * 0.05}
    for c in ("conv2", "conv3"):
        sd[f"module.{c}.conv.weight"] = torch.randn(64, 64, 3, 3) * 0.05
        sd[f"module.{c}.bn.weight"] = torch.rand(64) + 0.5
        sd[f"module.{c}.bn.bias"] = torch.randn(64) * 0.1
        sd[f"module.{c}.bn.running_mean"] = torch.randn(64) * 0.1
        sd[f"module.{c}.bn.running_var"] = torch.rand(64) + 0.5
        sd[f"module.{c}.bn.num_batches_tracked"] = torch.tensor(100)
    sd["module.conv4.weight"] = torch.randn(3, 64, 1, 1) * 0.05
    sd["module.conv4.bias"] = torch.zeros(3)
    return sd


@pytest.mark.parametrize("name,make", [("densefuse", _official_densefuse), ("ifcnn", _official_ifcnn)])
def test_official_checkpoint_converts_without_pickle_code(name, make, tmp_path):
    from scripts.convert_official import convert, main

    sd = make()
    torch.save(sd, tmp_path / "official.pth")
    assert main([name, str(tmp_path / "official.pth"), str(tmp_path / "ours.safetensors")]) == 0
    assert (tmp_path / "ours.safetensors").read_bytes()[8:9] == b"{"
    f = registry.create(name, weights=tmp_path / "ours.safetensors")
    # the converted network computes what the official layers compute (checked on one tensor)
    ours = dict(f.net.state_dict())
    mapped = MODULES[name].convert_official(sd)
    assert all(torch.equal(ours[k], mapped[k].to(ours[k].dtype)) for k in mapped)
    out = f.fuse(
        np.random.default_rng(0).random((10, 12), dtype=np.float32), np.full((10, 12), 0.5, np.float32)
    )
    assert out.shape == (10, 12)
    # a foreign checkpoint is refused by its keys
    torch.save({"encoder.weight": torch.zeros(1)}, tmp_path / "foreign.pth")
    with pytest.raises(KeyError, match="unknown"):
        convert(name, tmp_path / "foreign.pth", tmp_path / "x.safetensors")
    # a pickle carrying code is refused by torch.load(weights_only=True)
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil.pth").write_bytes(pickle.dumps(Evil(), protocol=2))  # torch.load's own protocol
    with pytest.raises(Exception):  # noqa: B017 (torch raises UnpicklingError or RuntimeError)
        convert(name, tmp_path / "evil.pth", tmp_path / "y.safetensors")
    assert not (tmp_path / "y.safetensors").exists()


def test_densefuse_l1_rule_and_tiles(tmp_path):
    w = _random_weights("densefuse", tmp_path / "w.safetensors")
    rng = np.random.default_rng(1)
    ir, vi = rng.random((2, 70, 83), dtype=np.float32)
    for rule in ("sum", "l1"):
        whole = registry.create("densefuse", weights=w, rule=rule, tile=None).fuse(ir, vi)
        tiled = registry.create("densefuse", weights=w, rule=rule, tile=32).fuse(ir, vi)
        assert np.abs(whole - tiled).max() < 1e-5
    net, _ = densefuse.load_weights(w)
    t = lambda a: torch.from_numpy(a)[None, None]  # noqa: E731
    with torch.no_grad():
        ref = net.decoder(densefuse.RULES["l1"](net.encoder(t(ir)), net.encoder(t(vi))))
    out = registry.create("densefuse", weights=w, rule="l1", output="clip").fuse(ir, vi)
    np.testing.assert_allclose(out, np.clip(ref[0, 0].numpy(), 0, 1), atol=1e-6)
    # default output: the decoded plane stretched to its own range (the authors' saved results)
    r = ref[0, 0].numpy()
    stretched = registry.create("densefuse", weights=w, rule="l1").fuse(ir, vi)
    np.testing.assert_allclose(stretched, (r - r.min()) / (r.max() - r.min()), atol=1e-5)
    with pytest.raises(InputError, match="minmax"):
        registry.create("densefuse", weights=w, output="scale")


# --------------------------------------------------------------------------------------------
# CLI end to end, every task of every method
# --------------------------------------------------------------------------------------------

runner = CliRunner()
CASES = [(n, t) for n in NAMES for t in registry.info(n).tasks]


@pytest.mark.parametrize("name,task", CASES)
def test_cli_fuse_every_task(name, task, tmp_path):
    w = _random_weights(name, tmp_path / "w.safetensors")
    rng = np.random.default_rng(2)
    a = (rng.random((30, 37, 3)) * 255).astype(np.uint8)
    b = (rng.random((30, 37, 3)) * 255).astype(np.uint8)
    if task == "ivif":
        a = a[..., 0]
    io.write_image(tmp_path / "a.png", a)
    io.write_image(tmp_path / "b.png", b)
    r = runner.invoke(
        app,
        [
            "fuse",
            str(tmp_path / "a.png"),
            str(tmp_path / "b.png"),
            "-o",
            str(tmp_path / "f.png"),
            "-m",
            name,
            "--task",
            task,
            "-p",
            f"weights={w}",
        ],
    )
    assert r.exit_code == 0, r.output
    out = io.read_image(tmp_path / "f.png")
    assert out.shape == (30, 37, 3) and out.dtype == np.uint8


FAMILY = {"densefuse": "self-supervised", "ifcnn": "supervised", "deepfuse": "unsupervised",
          "fusiongan": "unsupervised", "u2fusion": "unsupervised"}  # fmt: skip


def test_registry_metadata():
    for name in NAMES:
        info = registry.info(name)
        assert info.trainable and info.weights == f"{name}.safetensors"
        assert info.family == FAMILY[name] and "20" in info.paper
    assert registry.info("ifcnn").tasks == ("ivif", "mef", "mff") and registry.info("ifcnn").rgb
    assert registry.info("deepfuse").tasks == ("ivif", "mef")
    assert json.dumps(densefuse.Config().to_dict())


def test_mef_ssim_map_is_float32_accurate_under_bf16_autocast():
    """Bright, faintly textured exposures: the MEF-SSIM map's local variances are taken in float32
    under bf16 autocast (as ``nn.losses.ssim_map``), so a bf16 DeepFuse step sees the float32 loss."""
    g = torch.Generator().manual_seed(1)
    y1 = 0.8 + 0.004 * torch.rand(1, 1, 32, 40, generator=g)
    y2 = 0.6 + 0.004 * torch.rand(1, 1, 32, 40, generator=g)
    fused = 0.7 + 0.004 * torch.rand(1, 1, 32, 40, generator=g)
    ref = deepfuse.mef_ssim_map(y1, y2, fused)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = deepfuse.mef_ssim_map(y1, y2, fused)
        low = deepfuse.mef_ssim_map(y1.bfloat16(), y2.bfloat16(), fused.bfloat16())
    assert got.dtype == torch.float32 and low.dtype == torch.bfloat16
    torch.testing.assert_close(got, ref)  # autocast changes nothing: float32 inside
    assert bool(torch.isfinite(low.float()).all())
