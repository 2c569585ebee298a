"""DIDFuse: architecture (parameter counts from the official code), loss terms, fusion rules,
inference fuser (ranges, tiling, errors) and the safetensors weight round trip."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from ivfuse.errors import InputError, WeightsError
from ivfuse.methods import registry
from ivfuse.methods.didfuse import (
    PARTS,
    Config,
    DIDFuse,
    DIDFuseNet,
    didfuse_loss,
    display_parts,
    load_weights,
    parameter_count,
)
from ivfuse.nn.fusion import RULES, fuse_l1, l1_activity
from ivfuse.nn.losses import dssim, gradient_l1
from ivfuse.train.checkpoint import export_safetensors

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def net() -> DIDFuseNet:
    torch.manual_seed(0)
    n = DIDFuseNet()
    # non-trivial BN statistics so eval mode differs from the identity normalisation
    with torch.no_grad():
        n.train()
        n(torch.rand(2, 1, 24, 24), torch.rand(2, 1, 24, 24))
    return n.eval()


def test_parameter_counts_match_official_code():
    n = DIDFuseNet()
    assert parameter_count(n) == 260_935
    assert parameter_count(n.encoder) == 111_938
    assert parameter_count(n.decoder) == 148_997
    per_layer = {
        "conv1": 769,
        "conv2": 37_057,
        "conv3": 37_056,
        "conv4": 37_056,
        "conv5": 73_921,
        "conv6": 73_921,
        "conv7": 1_155,
    }
    for name, count in per_layer.items():
        part = n.encoder if hasattr(n.encoder, name) else n.decoder
        assert parameter_count(getattr(part, name)) == count, name
    # reflect padding only in the first and last layer; one PReLU slope per layer at 0.25
    assert n.encoder.conv1.conv.padding_mode == "reflect"
    assert n.decoder.conv7.conv.padding_mode == "reflect"
    assert n.encoder.conv2.conv.padding_mode == "zeros"
    assert n.encoder.conv1.act.weight.shape == (1,)
    assert float(n.encoder.conv1.act.weight.detach()) == pytest.approx(0.25)


def test_training_forward_shapes_and_ranges():
    torch.manual_seed(1)
    n = DIDFuseNet().train()
    vi, ir = torch.rand(3, 1, 20, 17), torch.rand(3, 1, 20, 17)
    with torch.no_grad():
        out = n(vi, ir)
    for k in ("vi_hat", "ir_hat"):
        assert out[k].shape == (3, 1, 20, 17)
        assert float(out[k].min()) > 0 and float(out[k].max()) < 1
    for k in ("B_vi", "D_vi", "B_ir", "D_ir"):
        assert out[k].shape == (3, 64, 20, 17)
        assert float(out[k].abs().max()) < 1


def test_loss_terms_by_hand():
    torch.manual_seed(2)
    n = DIDFuseNet().train()
    vi, ir = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    out = n(vi, ir)
    cfg = Config()
    t = didfuse_loss(cfg, vi, ir, out)
    mse_v = ((vi - out["vi_hat"]) ** 2).mean()
    mse_i = ((ir - out["ir_hat"]) ** 2).mean()
    ds_v, ds_i = dssim(vi, out["vi_hat"]), dssim(ir, out["ir_hat"])
    gb = torch.tanh((out["B_ir"] - out["B_vi"]).abs().mean())
    gd = torch.tanh((out["D_ir"] - out["D_vi"]).abs().mean())
    gr = gradient_l1(vi, out["vi_hat"])
    expect = 2 * (mse_v + 5 * ds_v) + 2 * (mse_i + 5 * ds_i) + gb - 0.5 * gd + 10 * gr
    for k, v in {
        "pixel_vi": mse_v,
        "pixel_ir": mse_i,
        "dssim_vi": ds_v,
        "dssim_ir": ds_i,
        "gap_background": gb,
        "gap_detail": gd,
        "gradient": gr,
        "total": expect,
    }.items():
        assert float(t[k].detach()) == pytest.approx(float(v.detach()), rel=1e-6), k
    # paper variant: alpha1 = 0.05 and squared L2 norms inside tanh / in the pixel term
    with torch.no_grad():
        p = didfuse_loss(Config(alpha1=0.05, feature_gap="sq_l2", pixel_term="sq_l2"), vi, ir, out)
    sq = ((out["B_ir"] - out["B_vi"]) ** 2).sum()
    assert float(p["gap_background"]) == pytest.approx(float(torch.tanh(sq.detach())), rel=1e-6)
    assert float(p["pixel_vi"]) == pytest.approx(float(((vi - out["vi_hat"]) ** 2).sum().detach()), rel=1e-6)
    # the total is differentiable and reaches every parameter
    t["total"].backward()
    assert all(p.grad is not None for p in n.parameters())
    with pytest.raises(ValueError, match="feature_gap"):
        Config(feature_gap="l2")


@pytest.mark.parametrize("rule", sorted(RULES))
def test_fusion_rules_are_symmetric(net, rule):
    torch.manual_seed(3)
    a, b = torch.rand(1, 1, 21, 18), torch.rand(1, 1, 21, 18)
    with torch.no_grad():
        ab, ba = net.fuse(a, b, rule), net.fuse(b, a, rule)
    torch.testing.assert_close(ab, ba, atol=1e-6, rtol=0)
    assert ab.shape == (1, 1, 21, 18)


def test_rule_formulas():
    torch.manual_seed(4)
    a, b = torch.randn(1, 3, 6, 5), torch.randn(1, 3, 6, 5)
    torch.testing.assert_close(RULES["sum"](a, b), a + b)
    torch.testing.assert_close(RULES["average"](a, b), (a + b) / 2)
    # L1: 3x3 box mean (zero padding) of sum_c |x| -> plain ratio weights, same for all channels
    act = a.abs().sum(1)[0]
    p = np.pad(act.numpy(), 1)
    box = np.array([[p[i : i + 3, j : j + 3].sum() / 9 for j in range(5)] for i in range(6)])
    np.testing.assert_allclose(l1_activity(a)[0, 0].numpy(), box, rtol=1e-5)
    wa = l1_activity(a) / (l1_activity(a) + l1_activity(b))
    torch.testing.assert_close(fuse_l1(a, b), wa * a + (1 - wa) * b)
    z = torch.zeros_like(a)
    torch.testing.assert_close(fuse_l1(z, z), z)  # undefined ratio -> equal weights, no NaN


@pytest.mark.filterwarnings("ignore:precision='bf16'")
def test_fuser_output_and_errors(net):
    f = DIDFuse(net, rule="sum")
    rng = np.random.default_rng(0)
    ir = rng.random((23, 31), dtype=np.float32)
    vi = rng.random((23, 31), dtype=np.float32)
    out = f.fuse(ir, vi)
    assert out.dtype == np.float32 and out.shape == (23, 31)
    assert out.min() >= 0 and out.max() <= 1
    # the fuser equals the network's own fusion pass
    with torch.no_grad():
        ref = net.fuse(torch.from_numpy(ir)[None, None], torch.from_numpy(vi)[None, None])
    np.testing.assert_allclose(out, ref[0, 0].numpy(), atol=1e-5)  # folded BN: same function
    bf = DIDFuse(net, rule="sum", precision="bf16").fuse(ir, vi)
    assert np.abs(bf - out).max() * 255 <= 1.0
    with pytest.raises(InputError, match="sizes differ"):
        f.fuse(ir, vi[:, :30])
    with pytest.raises(InputError, match="2-D"):
        f.fuse(ir[None], vi[None])
    with pytest.raises(InputError, match="rule"):
        DIDFuse(net, rule="max")


@pytest.mark.parametrize("rule", ["sum", "l1"])
def test_tiled_equals_untiled(rule):
    torch.manual_seed(7)
    small = DIDFuseNet(channels=16)  # tiling does not depend on the width; keeps the test fast
    with torch.no_grad():
        small(torch.rand(2, 1, 24, 24), torch.rand(2, 1, 24, 24))  # BN statistics
    small.eval()
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:130, 0:170] / 130.0
    ir = np.clip(0.5 + 0.3 * np.sin(6 * xx) + 0.1 * rng.random((130, 170)), 0, 1).astype(np.float32)
    vi = np.clip(0.4 + 0.3 * np.cos(5 * yy) + 0.1 * rng.random((130, 170)), 0, 1).astype(np.float32)
    whole = DIDFuse(small, rule=rule, tile=None).fuse(ir, vi)
    tiled = DIDFuse(small, rule=rule, tile=48, margin=16).fuse(ir, vi)
    assert np.abs(whole - tiled).max() * 255 < 1.0  # within one gray level (in fact ~1e-6)
    assert np.abs(whole - tiled).max() < 1e-4


def test_weights_round_trip_through_safetensors(net, tmp_path):
    path = tmp_path / "w.safetensors"
    export_safetensors(path, net.state_dict(), {"method": "didfuse", "config": {"channels": 64}})
    assert path.read_bytes()[8:9] == b"{"  # a safetensors header, not a pickle
    loaded, meta = load_weights(path)
    assert meta["method"] == "didfuse" and json.loads(meta["config"])["channels"] == 64
    for k, v in net.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    rng = np.random.default_rng(6)
    ir, vi = rng.random((2, 17, 19), dtype=np.float32)
    a = DIDFuse(net, rule="l1").fuse(ir, vi)
    b = registry.create("didfuse", weights=path, rule="l1").fuse(ir, vi)
    np.testing.assert_array_equal(a, b)


def test_registered_with_metadata():
    info = registry.info("didfuse")
    assert info.family == "self-supervised" and info.trainable
    assert info.weights == "didfuse.safetensors" and "IJCAI 2020" in info.paper
    if info.weights_shipped:  # the packaged weights load and fuse
        f = registry.create("didfuse")
        out = f.fuse(np.full((12, 14), 0.3, np.float32), np.full((12, 14), 0.6, np.float32))
        assert out.shape == (12, 14) and 0 <= out.min() <= out.max() <= 1
    else:
        with pytest.raises(WeightsError, match="ivfuse train didfuse"):
            registry.create("didfuse")


def test_fold_batchnorm_is_the_same_function(net):
    from ivfuse.methods.didfuse import fold_batchnorm

    before = {k: v.clone() for k, v in net.state_dict().items()}
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert parameter_count(folded) == 260_935 - 2 * (6 * 64 + 1)  # BN affine parameters gone
    torch.manual_seed(8)
    a, b = torch.rand(1, 1, 19, 22), torch.rand(1, 1, 19, 22)
    with torch.no_grad():
        torch.testing.assert_close(folded.fuse(a, b, "l1"), net.fuse(a, b, "l1"), atol=1e-5, rtol=0)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())  # original intact


@pytest.mark.filterwarnings("ignore:precision='bf16'")
def test_bf16_stays_within_one_gray_level_with_trained_weights():
    """Mixed bf16 (interior only) vs fp32 with the shipped weights on the synthetic scene."""
    if not registry.info("didfuse").weights_shipped:
        pytest.skip("no shipped DIDFuse weights")
    from ivfuse.data.synthetic import night_scene

    s = night_scene(96, 128, seed=3)
    vi = s.vi.mean(axis=2) if s.vi.ndim == 3 else s.vi
    fp32 = registry.create("didfuse").fuse(s.ir, vi)
    bf16 = registry.create("didfuse", precision="bf16").fuse(s.ir, vi)
    assert 0 < np.abs(bf16 - fp32).max() * 255 <= 1.0


def test_bf16_warns_on_cpus_without_native_bfloat16(net, monkeypatch):
    import ivfuse.methods._torch as mod

    monkeypatch.setattr(mod, "cpu_has_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="emulated"):
        DIDFuse(net, precision="bf16")
    monkeypatch.setattr(mod, "cpu_has_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DIDFuse(net, precision="bf16")
        DIDFuse(net)


def test_training_step_updates_batchnorm_twice_per_modality():
    """One training step = the official protocol: the encoder runs on the visible batch, then on
    the infrared batch, each normalised by its own batch statistics, and every BN layer's running
    statistics take two momentum-0.1 updates (visible first), with unbiased variances."""
    from ivfuse.methods.didfuse import training_spec

    torch.manual_seed(3)
    n = DIDFuseNet().train()
    vi, ir = torch.rand(4, 1, 12, 12), torch.rand(4, 1, 12, 12) * 0.5 + 0.3
    with torch.no_grad():
        zv, zi = n.encoder.conv1.conv(vi), n.encoder.conv1.conv(ir)  # pre-step weights
    mean, var = torch.zeros(64), torch.ones(64)
    for z in (zv, zi):  # by hand: r <- 0.9 r + 0.1 batch statistic
        mean = 0.9 * mean + 0.1 * z.mean(dim=(0, 2, 3))
        var = 0.9 * var + 0.1 * z.var(dim=(0, 2, 3), unbiased=True)
    joint = torch.cat([zv, zi])  # what one pass over a concatenated batch would record instead
    mean_joint = 0.1 * joint.mean(dim=(0, 2, 3))

    stage = training_spec(Config()).stages[0]
    opt = stage.optimizer(n.parameters())
    terms = stage.loss(n, {"vi": vi, "ir": ir})
    opt.zero_grad()
    terms["total"].backward()
    opt.step()

    bn = n.encoder.conv1.bn
    torch.testing.assert_close(bn.running_mean, mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_var, var, rtol=1e-5, atol=1e-6)
    assert float((bn.running_mean - mean_joint).abs().max()) > 1e-3  # the test tells them apart
    for m in n.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            assert int(m.num_batches_tracked) == 2
            assert m.momentum == 0.1 and m.eps == 1e-5


def test_official_imagefolder_batch_order(tmp_path):
    """The official loader sorts IR1.jpg ... IR180.jpg as strings (torchvision ImageFolder)."""
    from PIL import Image

    from ivfuse.data.training import CenterCropPairs
    from ivfuse.methods.didfuse import imagefolder_key, order_pairs, training_spec

    stems = [f"{i:03d}" for i in range(1, 181)]
    order = sorted(stems, key=imagefolder_key)
    official = sorted(f"IR{i}.jpg" for i in range(1, 181))  # what ImageFolder lists
    assert order == [f"{int(name[2:-4]):03d}" for name in official]
    tens = [f"{i}" for i in range(100, 120)]
    assert order[:24] == ["001", "010", *tens[:10], "011", *tens[10:], "012"]
    assert order[168:] == ["089", "009", *(f"0{i}" for i in range(90, 100))]  # the short batch

    for mod in ("ir", "vi"):
        (tmp_path / mod).mkdir()
    for i in range(1, 13):  # pair i: infrared filled with i, visible with 100 + i
        Image.fromarray(np.full((10, 11), i, np.uint8)).save(tmp_path / "ir" / f"{i:03d}.png")
        Image.fromarray(np.full((10, 11), 100 + i, np.uint8)).save(tmp_path / "vi" / f"{i:03d}.png")
    ds = training_spec(Config(crop=8)).dataset(tmp_path)  # default: the official order
    got = [round(float(x.mean()) * 255) for x in ds.ir]
    assert got == [1, 10, 11, 12, 2, 3, 4, 5, 6, 7, 8, 9]
    assert [round(float(x.mean()) * 255) - 100 for x in ds.vi] == got  # pairs stay together
    assert [p.stem for p in ds.pairs] == [f"{i:03d}" for i in got]
    plain = training_spec(Config(crop=8, order="stem")).dataset(tmp_path)
    assert [round(float(x.mean()) * 255) for x in plain.ir] == list(range(1, 13))
    with pytest.raises(ValueError, match="order"):
        Config(order="random")
    with pytest.raises(ValueError, match="order"):
        order_pairs(CenterCropPairs(tmp_path, crop=8), "numeric")


def test_bn_init_option():
    """bn_init="uniform" draws every BN scale from U(0, 1) (PyTorch <= 1.1); default: ones."""
    from ivfuse.methods.didfuse import training_spec

    torch.manual_seed(0)
    bns = [m for m in training_spec(Config()).build_model().modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 7 and all(bool((m.weight == 1).all()) for m in bns)
    torch.manual_seed(0)
    net = training_spec(Config(bn_init="uniform")).build_model()
    gammas = torch.cat([m.weight.detach() for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)])
    assert gammas.numel() == 6 * 64 + 1
    assert float(gammas.min()) >= 0 and float(gammas.max()) < 1 and 0.4 < float(gammas.mean()) < 0.6
    with pytest.raises(ValueError, match="bn_init"):
        Config(bn_init="zeros")


# ---------------------------------------------------------------------------- Fig. 3: parts=DIR


def _planes(h: int = 29, w: int = 37) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[:h, :w]
    ir = np.clip(0.5 + 0.35 * np.sin(xx / 4.0) + 0.05 * rng.random((h, w)), 0, 1).astype(np.float32)
    vi = np.clip(0.4 + 0.3 * np.cos(yy / 3.0) + 0.05 * rng.random((h, w)), 0, 1).astype(np.float32)
    return ir, vi


@pytest.mark.parametrize("rule", sorted(RULES))
def test_parts_fused_maps_are_the_rule_applied_to_the_encoder_maps(net, rule):
    """Fig. 3 / Eq. (5): B_F = Fusion(B_I, B_V) and D_F = Fusion(D_I, D_V), recomputed here from the
    (unfolded, eval-mode) encoder; the rule fuses all channels before one is taken (L1 weights sum
    the activity over channels), so channel 5 of the fusion is not the fusion of channel 5 alone."""
    ir, vi = _planes()
    f = DIDFuse(net, rule=rule, parts_channel=5)
    got = f.parts(ir, vi)
    assert set(got) == set(PARTS) and all(m.shape == ir.shape and m.dtype == np.float32 for m in got.values())
    with torch.no_grad():
        *_, b_i, d_i = net.encoder(torch.from_numpy(ir)[None, None])
        *_, b_v, d_v = net.encoder(torch.from_numpy(vi)[None, None])
    want = {"base_ir": b_i, "detail_ir": d_i, "base_vi": b_v, "detail_vi": d_v,
            "base_fused": RULES[rule](b_i, b_v), "detail_fused": RULES[rule](d_i, d_v)}  # fmt: skip
    for k, v in want.items():
        np.testing.assert_allclose(got[k], v[0, 5].numpy(), atol=2e-5, err_msg=k)  # folded BN: same function
    assert np.abs(got["base_ir"] - got["base_vi"]).max() > 0.01  # two different sources, not one map twice
    if rule == "l1":  # per-channel fusion would differ: the weights come from all 64 channels
        alone = fuse_l1(b_i[:, 5:6], b_v[:, 5:6])[0, 0].numpy()
        assert np.abs(alone - got["base_fused"]).max() > 1e-3


def test_parts_of_identical_sources(net):
    """With one image as both sources, rule "sum" gives fused maps twice the source's (exactly: a + a),
    "average" the source's own; the images of the side maps keep the ratio (zero is mid-gray)."""
    ir, _ = _planes()
    f = DIDFuse(net, rule="sum", parts="unused")  # parts= makes fuse() keep the side maps
    got = f.parts(ir, ir)
    for kind in ("base", "detail"):
        np.testing.assert_array_equal(got[f"{kind}_ir"], got[f"{kind}_vi"])
        np.testing.assert_array_equal(got[f"{kind}_fused"], 2 * got[f"{kind}_ir"])
        assert np.abs(got[f"{kind}_ir"]).max() > 0.05  # a real map, not zeros
    f.fuse(ir, ir)
    img = {k: v.image for k, v in f.side_maps().items()}
    assert set(img) == set(PARTS)
    for kind in ("base", "detail"):
        src, fused = img[f"{kind}_ir"] - 0.5, img[f"{kind}_fused"] - 0.5
        np.testing.assert_allclose(fused, 2 * src, atol=1e-6)
        assert np.abs(fused).max() == pytest.approx(0.5)  # the triple's largest |value| spans the range
        assert 0.0 <= img[f"{kind}_fused"].min() and img[f"{kind}_fused"].max() <= 1.0
    avg = DIDFuse(net, rule="average").parts(ir, ir)
    np.testing.assert_allclose(avg["base_fused"], avg["base_ir"], atol=1e-7)


def test_display_parts_known_answer():
    zero = np.zeros((1, 2), np.float32)
    maps = {
        "base_ir": np.array([[0.5, -0.25]], np.float32),
        "base_vi": np.array([[0.0, 0.25]], np.float32),
        "base_fused": np.array([[1.0, 0.0]], np.float32),
        "detail_ir": zero,
        "detail_vi": zero,
        "detail_fused": zero,
    }
    out = display_parts(maps)
    np.testing.assert_allclose(out["base_ir"], [[0.75, 0.375]])  # v / (2 * 1.0) + 0.5
    np.testing.assert_allclose(out["base_fused"], [[1.0, 0.5]])
    np.testing.assert_allclose(out["detail_fused"], [[0.5, 0.5]])  # an all-zero triple is mid-gray


def test_parts_channel_is_checked(net):
    for bad in (64, -1, True, 1.5):
        with pytest.raises(InputError, match="parts_channel"):
            DIDFuse(net, parts_channel=bad)


PARTS_IVF = ("ir", "vi", "fused")


def test_cli_parts_writes_the_maps_of_fig3(tmp_path):
    """``ivfuse fuse -m didfuse -p parts=DIR``: the fused image and the six maps of PARTS, at the
    image's size (odd on purpose), equal to the fuser's side maps within 8-bit rounding."""
    if not registry.info("didfuse").weights_shipped:
        pytest.skip("no shipped DIDFuse weights")
    from PIL import Image
    from typer.testing import CliRunner

    from ivfuse.cli import app

    ir, vi = _planes()
    Image.fromarray((ir * 255).round().astype(np.uint8)).save(tmp_path / "ir.png")
    Image.fromarray((vi * 255).round().astype(np.uint8)).save(tmp_path / "vi.png")
    parts = tmp_path / "parts"
    r = CliRunner().invoke(app, ["fuse", "-m", "didfuse", str(tmp_path / "ir.png"), str(tmp_path / "vi.png"),
                                 "-o", str(tmp_path / "scene.png"), "-p", f"parts={parts}"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert (tmp_path / "scene.png").is_file()
    assert {p.name for p in parts.iterdir()} == {f"scene_{n}.png" for n in PARTS}
    f = registry.create("didfuse", parts=parts)
    f.fuse(np.asarray(Image.open(tmp_path / "ir.png"), np.float32) / 255,
           np.asarray(Image.open(tmp_path / "vi.png"), np.float32) / 255)  # fmt: skip
    for n in PARTS:
        written = np.asarray(Image.open(parts / f"scene_{n}.png"), dtype=np.float32) / 255
        assert written.shape == ir.shape, n
        np.testing.assert_allclose(written, f.side_maps()[n].image, atol=0.5 / 255 + 1e-6, err_msg=n)
    # the written sum-rule maps keep the relation: fused - gray ~ (ir - gray) + (vi - gray)
    b = {t: np.asarray(Image.open(parts / f"scene_base_{t}.png"), np.float32) / 255 for t in PARTS_IVF}
    np.testing.assert_allclose(b["fused"] - 0.5, b["ir"] + b["vi"] - 1.0, atol=1.5 / 255)


def test_feature_figure_script_has_a_didfuse_row(tmp_path):
    if not registry.info("didfuse").weights_shipped:
        pytest.skip("no shipped DIDFuse weights")
    import importlib.util
    from pathlib import Path

    from PIL import Image

    path = Path(__file__).resolve().parents[1] / "scripts" / "feature_figures.py"
    spec = importlib.util.spec_from_file_location("feature_figures", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.KEEP_MAPS["didfuse"] == "parts"
    fused, maps = mod.maps_of("didfuse", *_planes())
    assert list(maps) == list(PARTS) and fused.shape == (29, 37)
    out = mod.main(["--methods", "didfuse", "--size", "48x64", "-o", str(tmp_path / "f.png")])
    img = np.asarray(Image.open(out))
    assert img.ndim == 3 and img.shape[1] > 3 * img.shape[0]  # one row: 3 + 6 panels side by side
    assert img[..., :3].std() > 10  # drawn, not blank
