"""DeFusion: parameter count of the official test network, split attention by hand, output shapes for
odd sizes, CUD masks / views / targets, the loss and its schedule by hand, colour jitter and crops,
training through the generic trainer (loss decreases, resume is bit-identical), the fuser (MEF order,
parts), the weights round trip, and the CLI end to end for ivif, mef and mff."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from ivfuse import io
from ivfuse.api import Pipeline
from ivfuse.cli import app
from ivfuse.data.natural import color_jitter, natural_images, random_resized_crop, random_resized_crop_box
from ivfuse.errors import TrainingError, WeightsError
from ivfuse.methods import registry
from ivfuse.methods.defusion import (
    Config,
    CUDModel,
    CUDPretext,
    DeFusion,
    DeNet,
    cud_loss,
    cud_masks,
    cud_targets,
    cud_views,
    fusion_weight,
    load_weights,
    lr_milestones,
    outside_weight,
    parameter_count,
    schedule_scale,
    training_spec,
)
from ivfuse.nn.resnest import Bottleneck, SplitAttention
from ivfuse.train.checkpoint import export_safetensors
from ivfuse.train.trainer import RunOptions, train

from .conftest import shared_dataset

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def net() -> DeNet:
    torch.manual_seed(0)
    return DeNet().eval()


@pytest.fixture(scope="module")
def weights(net, tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "defusion.safetensors"
    export_safetensors(path, net.state_dict(), {"method": "defusion", "format": "ivfuse-1"})
    return path


# --------------------------------------------------------------------------------------------
# network


def test_parameter_count_matches_official_test_definition(net):
    assert parameter_count(net) == 7_874_473
    enc = net.encoder
    assert parameter_count(enc) == 466_272
    assert parameter_count(enc.stem) + parameter_count(enc.e0) == 12_256
    assert [parameter_count(m) for m in (enc.e1, enc.e2, enc.e3)] == [37_248, 88_448, 328_320]
    assert parameter_count(net.ensembler) == 5_245_440
    dc, du = net.common_decoder, net.unique_decoder
    assert [parameter_count(getattr(dc, f"d{i}")) for i in range(1, 5)] == [627_008, 51_840, 5_168, 1_392]
    assert [parameter_count(getattr(du, f"d{i}")) for i in range(1, 5)] == [1_260_480, 160_128, 50_048, 5_392]
    assert [parameter_count(h) for h in (net.head_common, net.head_unique, net.head_fused)] == [435] * 3
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())


def test_split_attention_by_hand():
    torch.manual_seed(3)
    sa = SplitAttention(8)
    x = torch.rand(2, 8, 5, 6)
    s = torch.relu(sa.conv(x))
    s0, s1 = s[:, :8], s[:, 8:]
    with torch.no_grad():
        sa.fc2.weight.zero_()
        sa.fc2.bias.zero_()  # equal logits: a0 = a1 = 1/2
        assert torch.allclose(sa(x), (s0 + s1) / 2, atol=1e-6)
        # logit j belongs to split 0 of channel j, logit p + j to split 1
        sa.fc2.bias[:8] = 30.0
        sa.fc2.bias[8 + 3] = 60.0
        y = sa(x)
    expect = s0.clone()
    expect[:, 3] = s1[:, 3]
    assert torch.allclose(y, expect, atol=1e-5)
    assert sa.fc1.out_channels == 32  # r = max(p / 2, 32)
    assert SplitAttention(256).fc1.out_channels == 128


def test_bottleneck_strides_round_up_and_shortcuts():
    torch.manual_seed(0)
    down = Bottleneck(16, 8, stride=2, avd=True)
    assert down(torch.rand(1, 16, 7, 10)).shape == (1, 32, 4, 5)
    blur = Bottleneck(16, 8, stride=1, avd=True)  # E0b's first block: stride-1 3x3 average pool
    assert blur.avd is not None and blur.avd.stride == 1
    assert Bottleneck(16, 4).shortcut is None  # 4p == cin, stride 1: identity
    assert isinstance(Bottleneck(16, 8, avg_down=False).shortcut, torch.nn.Conv2d)


@pytest.mark.parametrize("size", [(17, 23), (2, 2), (31, 8), (40, 33)])
def test_output_shapes_for_odd_sizes(net, size):
    with torch.no_grad():
        out = net(torch.rand(1, 3, *size), torch.rand(1, 3, *size))
    assert set(out) == {"common", "unique1", "unique2", "fused"}
    for v in out.values():
        assert v.shape == (1, 3, *size)
        assert float(v.min()) >= 0.0  # heads end in ReLU


def test_batched_sources_equal_separate_passes(net):
    torch.manual_seed(5)
    x1, x2 = torch.rand(2, 3, 24, 20), torch.rand(2, 3, 24, 20)
    with torch.no_grad():
        both = net(x1, x2)
        f_c, f_u1, f_u2 = net.embed(x1[:1], x2[:1])
        single = net.head_fused(f_u1 + f_u2 + f_c)
    assert torch.allclose(both["fused"][:1], single, rtol=1e-5, atol=1e-4)  # untrained: values ~100


@pytest.mark.parametrize("size", [(24, 20), (17, 31)])
def test_distributed_decoders_equal_the_official_order(size):
    """The decoders' first 1x1 convolutions evaluated before the upsampling (and once for c) give
    the official order's outputs and gradients: same parameters, another evaluation order."""
    torch.manual_seed(7)
    ref = DeNet()
    fast = copy.deepcopy(ref)
    ref.distribute = False  # both decoders
    assert not ref.common_decoder.distribute and not ref.unique_decoder.distribute
    assert fast.common_decoder.distribute and fast.unique_decoder.distribute
    x1, x2 = torch.rand(2, 3, *size), torch.rand(2, 3, *size)
    a, b = ref(x1, x2), fast(x1, x2)
    for k in a:
        scale = float(a[k].detach().abs().max())
        assert scale > 1.0  # untrained: values ~100, not all clamped away by the heads' ReLU
        assert torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-5 * scale), k
    sum(v.sum() for v in a.values()).backward()
    sum(v.sum() for v in b.values()).backward()
    for (name, pa), pb in zip(ref.named_parameters(), fast.parameters(), strict=True):
        g = float(pa.grad.abs().max())
        assert torch.allclose(pa.grad, pb.grad, rtol=1e-4, atol=1e-4 * g + 1e-6), name


# --------------------------------------------------------------------------------------------
# CUD pretext


def test_masks_cover_every_pixel_and_keep_probability_range():
    torch.manual_seed(0)
    cfg = Config()
    ps = []
    for _ in range(60):
        m1, m2, p = cud_masks(64, cfg)
        ps.append(p)
        assert m1.shape == m2.shape == (1, 64, 64)
        assert set(torch.unique(torch.cat([m1, m2])).tolist()) <= {0.0, 1.0}
        assert bool(((m1 + m2) >= 1).all())  # M1 + M2 > 0 of Eq. (1)
    assert min(ps) >= 0.1 and max(ps) < 0.1 + 1 / 1.12
    assert max(ps) - min(ps) > 0.5  # p varies per sample
    # low keep probability: both masks hide a lot, yet together they show everything
    torch.manual_seed(1)
    m1, m2, p = cud_masks(128, Config(keep_min=0.1, keep_div=1e9))
    assert p == pytest.approx(0.1, abs=1e-6)
    assert float((m1 * m2).mean()) < 0.05  # about p^4 + filler overlap: little in common
    assert min(float(m1.mean()), float(m2.mean())) < 0.3  # the filler shows most pixels in one view
    assert bool(((m1 + m2) >= 1).all())


def test_masks_known_answers_at_the_extremes():
    """p = 1: every cell kept, both views show everything; p = 0: nothing kept, the filler (all 0)
    gives every pixel to one view, so one mask is all 1 and the other all 0."""
    torch.manual_seed(2)
    m1, m2, p = cud_masks(40, Config(keep_min=1.0, keep_div=1e12))
    assert p == pytest.approx(1.0) and bool((m1 == 1).all()) and bool((m2 == 1).all())
    for seed in range(6):
        torch.manual_seed(seed)
        m1, m2, p = cud_masks(40, Config(keep_min=0.0, keep_div=1e12))
        assert p < 1e-11
        assert sorted([float(m1.mean()), float(m2.mean())]) == [0.0, 1.0]


def test_views_and_targets_are_consistent_with_x():
    torch.manual_seed(4)
    x = torch.rand(3, 32, 32)
    m1, m2, _ = cud_masks(32)
    x1, x2 = cud_views(x, m1, m2)
    vis1, vis2 = m1.bool().expand(3, -1, -1), m2.bool().expand(3, -1, -1)
    assert torch.equal(x1[vis1], x[vis1]) and torch.equal(x2[vis2], x[vis2])
    for v, vis in ((x1, vis1), (x2, vis2)):
        noise = v[~vis]
        assert float(noise.min()) >= 0.0 and float(noise.max()) <= 1.0
        if noise.numel() > 200:  # |N(0, 1)| clipped to 1: mean about 0.7 (E|N| restricted), not x
            assert 0.55 < float(noise.mean()) < 0.8
    zero = torch.zeros_like(m1)
    n1, n2 = cud_views(x, zero, zero)  # all hidden: pure noise, drawn separately per view
    assert not torch.equal(n1, n2)
    assert 0.55 < float(n1.mean()) < 0.8 and float(n1.max()) == 1.0  # |N(0, 1)| clipped at 1
    r = cud_targets(x, m1, m2)
    assert torch.equal(r["common"] + r["unique1"] + r["unique2"], torch.ones_like(m1))  # a partition
    assert torch.equal(r["common"], m1 * m2)
    assert torch.equal(r["unique1"] * m2, torch.zeros_like(m1))


def test_dataset_items(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    ds = CUDPretext(tmp_path, Config(crop=32))
    assert len(ds) == 3
    torch.manual_seed(0)
    item = ds[1]
    assert item["x"].shape == item["x1"].shape == (3, 32, 32) and item["m1"].shape == (1, 32, 32)
    vis = item["m1"].bool().expand(3, -1, -1)
    assert torch.equal(item["x1"][vis], item["x"][vis])
    torch.manual_seed(0)
    again = ds[1]
    assert all(torch.equal(item[k], again[k]) for k in item)


def test_natural_images_splits(tmp_path):
    root = tmp_path / "SET"
    root.mkdir()
    for n in ("a", "b", "c"):
        Image.new("RGB", (8, 8)).save(root / f"{n}.jpg")
    assert [p.name for p in natural_images(root, ("train",))] == ["a.jpg", "b.jpg", "c.jpg"]
    (tmp_path / "set_splits.csv").write_text("file,split\nSET/a.jpg,train\nSET/b.jpg,val\nSET/c.jpg,test\n")
    assert [p.name for p in natural_images(root, ("train", "test"))] == ["a.jpg", "c.jpg"]
    with pytest.raises(TrainingError, match="does not exist"):
        natural_images(tmp_path / "nope")


def test_bsds500_train_and_test_splits_hold_400_images():
    root = shared_dataset("natural") / "BSDS500"
    files = natural_images(root, ("train", "test"))
    assert len(files) == 400
    assert "3096.jpg" not in {p.name for p in files}  # a val (BSD100) image


# --------------------------------------------------------------------------------------------
# augmentations


def test_color_jitter_known_answers():
    torch.manual_seed(0)
    img = torch.rand(3, 6, 7)
    one = (1.0, 1.0)
    assert torch.allclose(color_jitter(img, one, one, one), img)
    assert torch.allclose(color_jitter(img, (0.5, 0.5), one, one), img * 0.5)
    gray = 0.2989 * img[0] + 0.587 * img[1] + 0.114 * img[2]
    desat = color_jitter(img, one, one, (0.0, 0.0))
    assert torch.allclose(desat, gray.expand(3, -1, -1), atol=1e-6)
    flat = color_jitter(img, one, (0.0, 0.0), one)
    assert torch.allclose(flat, torch.full_like(img, float(gray.mean())), atol=1e-6)
    dark = color_jitter(img)  # factors in [0.1, 1]: never brighter on average
    assert float(dark.mean()) <= float(img.mean()) + 1e-6


def test_random_resized_crop_boxes():
    torch.manual_seed(0)
    for _ in range(200):
        top, left, h, w = random_resized_crop_box(321, 481)
        assert 0 <= top and top + h <= 321 and 0 <= left and left + w <= 481
        assert 0.07 * 321 * 481 <= h * w <= 321 * 481
        assert 3 / 4 - 0.05 <= w / h <= 4 / 3 + 0.05
    out = random_resized_crop(torch.rand(3, 40, 60), 16)
    assert out.shape == (3, 16, 16) and float(out.min()) >= 0 and float(out.max()) <= 1


# --------------------------------------------------------------------------------------------
# loss and schedule


def test_schedule_at_the_thresholds():
    cfg = Config()
    a3000 = 0.15 * (3000 / 7000) ** 2  # 0.02755...
    assert outside_weight(0, cfg) == 0.0 and outside_weight(2999, cfg) == 0.0
    assert outside_weight(3000, cfg) == pytest.approx(a3000)
    assert outside_weight(7000, cfg) == pytest.approx(0.15)
    assert outside_weight(40_000, cfg) == pytest.approx(0.15)
    assert outside_weight(40_001, cfg) == pytest.approx(0.015)
    assert fusion_weight(16_999, cfg) == 0.0
    assert fusion_weight(17_000, cfg) == pytest.approx(0.25)
    assert fusion_weight(20_000, cfg) == pytest.approx((10 / 14) ** 2)
    assert fusion_weight(24_000, cfg) == pytest.approx(1.0)
    assert fusion_weight(600_000, cfg) == pytest.approx(1.0)
    # scaled by k = 0.01: the same values 100x earlier
    assert outside_weight(29, cfg, 0.01) == 0.0
    assert outside_weight(30, cfg, 0.01) == pytest.approx(a3000)
    assert fusion_weight(169, cfg, 0.01) == 0.0 and fusion_weight(170, cfg, 0.01) == pytest.approx(0.25)
    assert outside_weight(401, cfg, 0.01) == pytest.approx(0.015)


def test_schedule_scale_and_lr_steps_of_the_reduced_run():
    official = Config()
    assert schedule_scale(official, 12_500) == pytest.approx(1.0)
    assert lr_milestones(official) == [10, 20, 30, 40]
    reduced = Config(crop=128, epochs=34)  # the planned CPU run
    k = schedule_scale(reduced, 100)  # 400 BSDS500 images in batches of 4
    assert k == pytest.approx(3400 / 637_500)
    assert lr_milestones(reduced) == [7, 13, 20, 27]
    assert 17_000 * k == pytest.approx(90.667, abs=1e-3)
    assert fusion_weight(90, reduced, k) == 0.0 and fusion_weight(91, reduced, k) > 0.25
    assert schedule_scale(Config(schedule_scale=0.5), 100) == 0.5


def test_loss_by_hand():
    x = torch.tensor([0.2, 0.4, 0.6, 0.8]).reshape(1, 1, 2, 2).expand(2, 3, 2, 2).clone()
    x[1] *= 0.5
    m1 = torch.tensor([1.0, 1.0, 0.0, 1.0]).reshape(1, 1, 2, 2).expand(2, 1, 2, 2).clone()
    m2 = torch.tensor([1.0, 0.0, 1.0, 0.0]).reshape(1, 1, 2, 2).expand(2, 1, 2, 2).clone()
    out = {k: torch.full((2, 3, 2, 2), v) for k, v in (("common", 0.1), ("unique1", 0.3), ("unique2", 0.5))}
    out["fused"] = x + 0.05
    a, beta = 0.2, 0.25
    terms = cud_loss(out, {"x": x, "m1": m1, "m2": m2}, a, beta)
    # by hand, sample 0 (x = .2 .4 .6 .8): common region = pixel 0, unique1 = pixels 1, 3, unique2 = 2
    xs = np.array([0.2, 0.4, 0.6, 0.8])
    regions = {"common": [1, 0, 0, 0], "unique1": [0, 1, 0, 1], "unique2": [0, 0, 1, 0]}
    value = {"common": 0.1, "unique1": 0.3, "unique2": 0.5}
    total = 0.0
    for scale in (1.0, 0.5):  # sample 1 is sample 0 at half the values
        per = 0.0
        for name, r in regions.items():
            r = np.array(r, dtype=float)
            pred = value[name] * (a + (1 - a) * r)
            l1 = np.abs(pred - xs * scale * r).mean()
            per += l1
        total += per + beta * 0.05
    assert float(terms["total"]) == pytest.approx(total, rel=1e-6)
    assert float(terms["fused"]) == pytest.approx(0.05, rel=1e-5)
    common0 = abs(0.1 - 0.2) / 4 + 3 * (0.1 * a) / 4
    common1 = abs(0.1 - 0.1) / 4 + 3 * (0.1 * a) / 4
    assert float(terms["common"]) == pytest.approx((common0 + common1) / 2, rel=1e-6)


# --------------------------------------------------------------------------------------------
# training through the generic trainer


def _tiny_images(folder, n=4, size=(44, 52)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[: size[0], : size[1]]
    for i in range(n):
        base = 0.5 + 0.4 * np.sin(xx / (3 + i) + yy / 5.0)
        img = np.stack([base, base[::-1], 1 - base], -1) * 255 + rng.normal(0, 8, (*size, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"img{i}.png")
    return folder


def _spec(epochs):
    # schedule_scale 1: the official thresholds, far away -> a pure masked L1 the whole run
    return training_spec(Config(crop=24, batch_size=2, epochs=epochs, schedule_scale=1.0))


def test_training_decreases_the_loss_and_resumes_bit_identically(tmp_path):
    data = _tiny_images(tmp_path / "data")
    full = train(_spec(4), RunOptions(data=data, out=tmp_path / "full", seed=3, progress=False))
    hist = _history(tmp_path / "full")
    assert hist[-1]["total"] < hist[0]["total"]
    assert full["epochs"] == 4 and full["schedule_scale"] == 1.0
    part = train(_spec(4), RunOptions(data=data, out=tmp_path / "part", seed=3, progress=False, stop_after=2))
    assert part == {"stopped_at": 2}
    train(_spec(4), RunOptions(data=data, out=tmp_path / "part", seed=3, progress=False, resume=True))
    a, _ = load_weights(tmp_path / "full" / "weights.safetensors")
    b, _ = load_weights(tmp_path / "part" / "weights.safetensors")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    ck = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)
    assert int(ck["model"]["iteration"]) == 4 * 2  # t survives the resume
    assert [r["total"] for r in _history(tmp_path / "part")] == [r["total"] for r in hist]


def _history(run):
    import csv

    with (run / "losses.csv").open() as f:
        return [{k: float(v) if k not in ("stage",) else v for k, v in r.items()} for r in csv.DictReader(f)]


def test_iteration_counter_only_counts_training_passes():
    torch.manual_seed(0)
    m = CUDModel()
    x = torch.rand(1, 3, 16, 16)
    m.train()
    assert int(m(x, x)["iteration"]) == 0 and int(m.iteration) == 1
    m.eval()
    with torch.no_grad():
        m(x, x)
    assert int(m.iteration) == 1


# --------------------------------------------------------------------------------------------
# inference


def test_fuser_planes_rgb_and_mef_order(net):
    f = DeFusion(net)
    rng = np.random.default_rng(0)
    ir, vi = rng.random((19, 26), dtype=np.float32), rng.random((19, 26), dtype=np.float32)
    out = f.fuse(ir, vi)
    assert out.shape == (19, 26) and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    dark = rng.random((19, 26, 3), dtype=np.float32) * 0.3
    bright = 0.6 + rng.random((19, 26, 3), dtype=np.float32) * 0.4
    ab = f.fuse_rgb(dark, bright, task="mef")
    parts_ab = {k: m.image for k, m in f.side_maps().items()}
    ba = f.fuse_rgb(bright, dark, task="mef")
    assert ab.shape == (19, 26, 3)
    assert np.array_equal(ab, ba)  # the brighter source goes in first either way
    assert np.array_equal(ab, f.run(bright, dark)["fused"])
    assert np.array_equal(parts_ab["unique1"], f.side_maps()["unique2"].image)  # unique1: first given source
    assert np.array_equal(f.fuse_rgb(dark, bright, task="mff"), f.run(dark, bright)["fused"])  # order kept


def test_fuser_reflect_padding(net):
    f = DeFusion(net, pad=16)
    rng = np.random.default_rng(1)
    a, b = rng.random((20, 24, 3), dtype=np.float32), rng.random((20, 24, 3), dtype=np.float32)
    t = torch.from_numpy(np.stack([a, b])).permute(0, 3, 1, 2)
    t = torch.nn.functional.pad(t, (16, 16, 16, 16), mode="reflect")
    with torch.no_grad():
        ref = net(t[:1], t[1:])["fused"][0, :, 16:36, 16:40].clamp(0, 1).permute(1, 2, 0).numpy()
    assert np.allclose(f.run(a, b)["fused"], ref, atol=1e-5)
    tiny = f.run(a[:5, :6], b[:5, :6])["fused"]  # pad shrinks to fit a 5 x 6 image
    assert tiny.shape == (5, 6, 3)


def test_weights_round_trip_and_errors(net, weights, tmp_path):
    loaded, _ = load_weights(weights)
    x = torch.rand(1, 3, 12, 14)
    for (k, a), b in zip(loaded.state_dict().items(), net.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    ref = DeNet()  # (the fixture's net may be channels-last by now: same values, other sums)
    ref.load_state_dict({k: v.contiguous() for k, v in net.state_dict().items()})
    with torch.no_grad():
        assert torch.equal(loaded(x, x)["fused"], ref.eval()(x, x)["fused"])
    # a checkpoint's model exported as is: net.-prefixed keys and the iteration counter
    wrapped = {f"net.{k}": v for k, v in net.state_dict().items()} | {"iteration": torch.tensor(5)}
    export_safetensors(tmp_path / "ck.safetensors", wrapped, {"method": "defusion"})
    again, _ = load_weights(tmp_path / "ck.safetensors")
    assert torch.equal(again.head_fused.conv.weight, net.head_fused.conv.weight)
    with pytest.raises(WeightsError, match="train them"):
        load_weights(tmp_path / "missing.safetensors")
    export_safetensors(tmp_path / "other.safetensors", {"w": torch.zeros(1)}, {"method": "didfuse"})
    with pytest.raises(WeightsError, match="not defusion"):
        load_weights(tmp_path / "other.safetensors")
    export_safetensors(tmp_path / "bad.safetensors", {"w": torch.zeros(1)}, {"method": "defusion"})
    with pytest.raises(WeightsError, match="does not match"):
        load_weights(tmp_path / "bad.safetensors")


def test_registered_for_three_tasks(weights):
    info = registry.info("defusion")
    assert info.tasks == ("ivif", "mef", "mff") and info.trainable
    p = Pipeline("defusion", task="mff", weights=str(weights), backend="torch")  # export: test_backends
    assert registry.parameter_count(p.method) == 7_874_473


# --------------------------------------------------------------------------------------------
# CLI end to end (on the torch backend: exporting the network to ONNX Runtime / OpenVINO costs a
# minute and is tested in tests/test_backends.py, side maps included)


def _colour(seed, h=22, w=29, gain=1.0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    img = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / 3.0)], -1) * gain
    return np.clip(img + rng.normal(0, 0.03, (h, w, 3)), 0, 1).astype(np.float32)


def _fuse(weights, *args):
    """``ivfuse fuse -m defusion`` with the test weights, on the torch backend."""
    return run("fuse", "-m", "defusion", "--backend", "torch", "-p", f"weights={weights}", *args)


def test_cli_mef_colour_order_free_and_parts(tmp_path, weights):
    under = io.write_image(tmp_path / "under.png", _colour(0, gain=0.3))
    over = io.write_image(tmp_path / "over.png", np.clip(_colour(1) * 0.5 + 0.5, 0, 1))
    parts = tmp_path / "parts"
    r = _fuse(weights, "--task", "mef", "-p", f"parts={parts}", under, over, "-o", tmp_path / "f1.png")
    assert r.exit_code == 0, r.output
    r = _fuse(weights, "--task", "mef", over, under, "-o", tmp_path / "f2.png")
    assert r.exit_code == 0, r.output
    f1, f2 = io.read_image(tmp_path / "f1.png"), io.read_image(tmp_path / "f2.png")
    assert f1.shape == (22, 29, 3) and not io.is_gray_rgb(f1)
    assert np.array_equal(f1, f2)
    assert sorted(p.name for p in parts.iterdir()) == ["f1_common.png", "f1_unique1.png", "f1_unique2.png"]
    assert io.read_image(parts / "f1_common.png").shape == (22, 29, 3)


def test_cli_mff_folders_in_colour(tmp_path, weights):
    for sub, seed in (("a", 2), ("b", 3)):
        (tmp_path / "set" / sub).mkdir(parents=True)
        for stem in ("01", "02"):
            io.write_image(tmp_path / "set" / sub / f"{stem}.jpg", _colour(seed + int(stem)))
    r = _fuse(weights, "--task", "mff", "--pairs", tmp_path / "set", "-o", tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert "2 fused" in r.output
    out = io.read_image(tmp_path / "out" / "01.png")
    assert out.shape == (22, 29, 3) and not io.is_gray_rgb(out)


def test_cli_ivif_colour_and_gray(tmp_path, weights):
    rng = np.random.default_rng(4)
    ir = io.write_image(tmp_path / "ir.png", rng.random((21, 30)).astype(np.float32))
    vi_c = io.write_image(tmp_path / "vi.png", _colour(5, 21, 30))
    vi_g = io.write_image(tmp_path / "vig.png", rng.random((21, 30)).astype(np.float32))
    r = _fuse(weights, ir, vi_c, "-o", tmp_path / "c.png")
    assert r.exit_code == 0, r.output
    assert io.read_image(tmp_path / "c.png").shape == (21, 30, 3)
    r = _fuse(weights, ir, vi_g, "-o", tmp_path / "g.png")
    assert r.exit_code == 0, r.output
    assert io.read_image(tmp_path / "g.png").shape == (21, 30)


def test_cli_refuses_a_method_without_the_task(tmp_path):
    a = io.write_image(tmp_path / "a.png", _colour(0))
    r = run("fuse", "--task", "mef", "-m", "didfuse", a, a, "-o", tmp_path / "f.png")
    assert r.exit_code != 0
    assert "does not support the task 'mef'" in r.output
    r = run("fuse", "--task", "hdr", "-m", "lp", a, a, "-o", tmp_path / "f.png")
    assert r.exit_code != 0 and "unknown task" in r.output
    assert not (tmp_path / "f.png").exists()


def test_budget_stopped_run_ships_with_the_iterations_it_ran(tmp_path):
    """A run stopped by --time-budget ships its own card, whose iteration deviation says how many
    iterations the weights saw (not the plan's)."""
    from ivfuse.train.ship import export_run

    data = _tiny_images(tmp_path / "data", n=4)
    r = run("train", "defusion", "--data", data, "--out", tmp_path / "run", "--epochs", 2, "--crop", 16,
            "--batch-size", 2, "--no-progress", "--threads", 1, "--time-budget", "0.000001")  # fmt: skip
    assert r.exit_code == 0, r.output
    card = json.loads((tmp_path / "run" / "card.json").read_text())
    assert card["deviations_from_recipe"]["iterations"] == {"used": 4, "recipe": 637_500}  # the plan
    shipped = export_run(tmp_path / "run", tmp_path / "s.safetensors", tmp_path / "s.json", "defusion")
    assert shipped["iterations"] == 1 and "after 1 of 4" in shipped["note"]
    assert shipped["deviations_from_recipe"]["iterations"] == {"used": 1, "recipe": 637_500}
    assert shipped["deviations_from_recipe"]["epochs"] == {"used": 0, "recipe": 51}


def test_unfinished_run_ships_its_deviations(tmp_path):
    """A snapshot of an unfinished run (paused after 1 of 2 epochs) ships with the recipe deviations
    of its checkpoint, the epochs and iterations set to what its weights saw."""
    from ivfuse.train.ship import export_run

    data = _tiny_images(tmp_path / "data", n=4)
    r = run("train", "defusion", "--data", data, "--out", tmp_path / "run", "--epochs", 2, "--crop", 16,
            "--batch-size", 2, "--no-progress", "--threads", 1, "--stop-after", 1)  # fmt: skip
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "run" / "card.json").exists()
    shipped = export_run(tmp_path / "run", tmp_path / "s.safetensors", tmp_path / "s.json", "defusion")
    dev = shipped["deviations_from_recipe"]
    assert "1 of 2 epochs" in shipped["note"] and shipped["iterations"] == 2
    assert dev["iterations"] == {"used": 2, "recipe": 637_500}
    assert dev["epochs"] == {"used": 1, "recipe": 51}
    assert dev["crop"] == {"used": 16, "recipe": 256} and dev["batch_size"] == {"used": 2, "recipe": 4}
    assert shipped["init_weights"] is None


def test_train_cli_smoke(tmp_path):
    data = _tiny_images(tmp_path / "data", n=2)
    r = run(
        "train",
        "defusion",
        "--data",
        data,
        "--out",
        tmp_path / "run",
        "--epochs",
        1,
        "--crop",
        16,
        "--batch-size",
        2,
        "--no-progress",
        "--threads",
        1,
    )
    assert r.exit_code == 0, r.output
    card = json.loads((tmp_path / "run" / "card.json").read_text())
    assert card["reduced_scale"] is True and card["iterations_planned"] == 1
    assert card["schedule_scale"] == pytest.approx(1 / 637_500)
    assert any("16x16 crops" in line for line in card["reductions"])
    dev = card["deviations_from_recipe"]  # the config's deviations and the method's own, in one place
    assert dev["crop"] == {"used": 16, "recipe": 256} and dev["epochs"] == {"used": 1, "recipe": 51}
    assert dev["iterations"] == {"used": 1, "recipe": 637_500}
    assert dev["iterations_per_epoch"] == {"used": 1, "recipe": 12_500}
    net, meta = load_weights(tmp_path / "run" / "weights.safetensors")
    assert meta["config"]["crop"] == 16 and parameter_count(net) == 7_874_473
    assert math.isfinite(card["final_losses"]["total"])


def test_resume_from_a_compact_checkpoint(tmp_path):
    """The between-sessions form (weights exact, Adam's second moment in 8 bits) resumes the run."""
    from scripts.compact import pack_file, unpack_file

    data = _tiny_images(tmp_path / "data", n=2)
    run = tmp_path / "run"
    spec = training_spec(Config(crop=16, batch_size=2, epochs=2, schedule_scale=1.0))
    stopped = train(spec, RunOptions(data=data, out=run, seed=1, progress=False, stop_after=1))
    assert stopped == {"stopped_at": 1}
    full = run / "checkpoint.pt"
    before = torch.load(full, weights_only=True)
    size = pack_file(full, tmp_path / "compact.pt")
    assert size < 0.45 * full.stat().st_size  # fp32 weights + 1 byte per parameter
    full.unlink()
    unpack_file(tmp_path / "compact.pt", full)
    spec = training_spec(Config(crop=16, batch_size=2, epochs=2, schedule_scale=1.0))
    card = train(spec, RunOptions(data=data, out=run, seed=1, progress=False, resume=True))
    assert card["epochs"] == 2 and math.isfinite(card["final_losses"]["total"])
    after = torch.load(full, weights_only=True)
    assert int(after["model"]["iteration"]) == 2 and int(before["model"]["iteration"]) == 1
