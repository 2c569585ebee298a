"""JCAE: network shapes (odd sizes), Eq. (8)-(9) on hand-made features, the loss terms of
Eq. (5)-(7) by hand, VGG19 initialisation from a fake state dict, training (loss decreases,
kill-and-resume identity), ablation switches, the card, and ``ivfuse fuse -m jcae`` end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from ivfuse import io
from ivfuse.cli import app
from ivfuse.errors import InputError, TrainingError, WeightsError
from ivfuse.methods import registry
from ivfuse.methods.jcae import (
    JCAE,
    Config,
    JCAENet,
    activity_counts,
    create_jcae,
    fold_input,
    fuse_common,
    fuse_private,
    init_from_vgg19,
    jcae_loss,
    load_weights,
    parameter_count,
    training_spec,
)
from ivfuse.nn.losses import ssim_map
from ivfuse.train.trainer import RunOptions, train

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def net() -> JCAENet:
    torch.manual_seed(0)
    return JCAENet().eval()


def _write_pairs(root: Path, n: int, size=(34, 29), seed: int = 0) -> Path:
    """Smooth synthetic pairs (a blob + gradient), learnable by an auto-encoder in a few steps."""
    rng = np.random.default_rng(seed)
    for sub in ("ir", "vi"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        cy, cx = rng.uniform(5, h - 5), rng.uniform(5, w - 5)
        ir = 40 + 180 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 30.0)
        vi = 60 + 120 * (xx / w) + 30 * np.sin(yy / 3.0 + i)
        vi_rgb = np.stack([vi, vi * 0.9, vi * 0.8], axis=-1)
        Image.fromarray(ir.astype(np.uint8), "L").save(root / "ir" / f"{i:03d}.png")
        Image.fromarray(vi_rgb.astype(np.uint8), "RGB").save(root / "vi" / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return _write_pairs(tmp_path_factory.mktemp("jcae_pairs"), 6)


def _tiny(epochs: int = 2, **kw) -> Config:
    return Config(epochs=epochs, batch_size=3, crop=16, **kw)


# --------------------------------------------------------------------------------------------
# network
# --------------------------------------------------------------------------------------------


def test_parameter_counts_and_vgg_layout():
    n = JCAENet()
    # VGG19 conv1_1 (3->64), conv1_2 (64->64), conv2_1 (64->128), 3x3 kernels + biases
    branch = (3 * 64 * 9 + 64) + (64 * 64 * 9 + 64) + (64 * 128 * 9 + 128)
    decoder = (128 * 64 * 9 + 64) + (64 * 64 * 9 + 64) + (64 * 1 * 9 + 1)
    assert branch == 112_576 and decoder == 111_297
    for b in (n.private_ir, n.private_vi, n.common):
        assert parameter_count(b) == branch
    assert parameter_count(n.decoder) == decoder
    assert parameter_count(n) == 3 * branch + decoder
    assert n.private_ir is not n.private_vi  # private branches are not shared
    plain = JCAENet(common_branch=False)
    assert plain.common is None and parameter_count(plain) == 2 * branch + decoder


@pytest.mark.parametrize("size", [(17, 23), (20, 16), (9, 2)])
def test_shapes_for_odd_sizes(net, size):
    h, w = size
    torch.manual_seed(1)
    ir, vi = torch.rand(2, 1, h, w), torch.rand(2, 1, h, w)
    with torch.no_grad():
        out = net(ir, vi)
        fused = net.fuse(ir[:1], vi[:1])
    assert out["ir_hat"].shape == (2, 1, h, w) and out["vi_hat"].shape == (2, 1, h, w)
    hh, ww = (h + 1) // 2, (w + 1) // 2  # 128 feature maps at half size (pooling), Sec. 3.3
    for k in ("P_ir", "P_vi", "C_ir", "C_vi"):
        assert out[k].shape == (2, 128, hh, ww)
        assert float(out[k].min()) >= 0  # ReLU: the "non-zero activations" of Eq. (9) exist
    assert fused.shape == (1, 1, h, w)


def test_reconstruction_is_eq4(net):
    """x^ = g_dec(g_enc^C(x)) + g_dec(g_enc^Px(x)), with one decoder and one common branch."""
    torch.manual_seed(2)
    ir, vi = torch.rand(1, 1, 12, 14), torch.rand(1, 1, 12, 14)
    with torch.no_grad():
        out = net(ir, vi)
        xi, xv = net.input(ir), net.input(vi)
        ir_hat = net.decoder(net.common(xi)) + net.decoder(net.private_ir(xi))
        vi_hat = net.decoder(net.common(xv)) + net.decoder(net.private_vi(xv))
    torch.testing.assert_close(out["ir_hat"], ir_hat, atol=1e-5, rtol=0)
    torch.testing.assert_close(out["vi_hat"], vi_hat, atol=1e-5, rtol=0)
    # the gray input is replicated to 3 channels and ImageNet-normalised for the VGG layers
    x3 = net.input(ir)
    assert x3.shape == (1, 3, 12, 14)
    torch.testing.assert_close(x3[:, 0] * 0.229 + 0.485, ir[:, 0])
    torch.testing.assert_close(x3[:, 2] * 0.225 + 0.406, ir[:, 0])


def test_no_common_branch_ablation():
    torch.manual_seed(3)
    n = JCAENet(common_branch=False).eval()
    ir, vi = torch.rand(1, 1, 10, 11), torch.rand(1, 1, 10, 11)
    with torch.no_grad():
        out = n(ir[..., :10], vi[..., :10])  # even size: no padding
        torch.testing.assert_close(out["ir_hat"], n.decoder(n.private_ir(n.input(ir[..., :10]))))
        assert "C_ir" not in out
        fused = n.fuse(ir, vi)  # private choose-max, decoded once
        f = n.encode(*(torch.nn.functional.pad(x, (0, 1, 0, 0), mode="reflect") for x in (ir, vi)))
        ref = n.decoder(torch.maximum(f["P_ir"], f["P_vi"]))[..., :10, :11]
    torch.testing.assert_close(fused, ref)


# --------------------------------------------------------------------------------------------
# fusion rules, Eq. (8) and (9)
# --------------------------------------------------------------------------------------------


def _hand_features():
    """Two sources, M = 2 maps of 2 x 3, so T = 0.6 * 6 = 3.6."""
    a = torch.tensor([[[[1.0, 2, 0], [3, 1, 1]], [[0, 0, 4], [0, 0, 0]]]])
    b = torch.tensor([[[[2.0, 2, 1], [1, 0, 1]], [[1, 3, 0], [0, 2, 0]]]])
    return a, b


def test_eq9_by_hand():
    a, b = _hand_features()
    # map 0: 5 and 5 non-zero (>= T), union 6; map 1: 1 and 3 (min 1 < T), union 4 (>= T)
    assert activity_counts(a, b, "min").tolist() == [[5, 1]]
    assert activity_counts(a, b, "union").tolist() == [[6, 4]]
    # C_A = [[1,2,4],[3,1,1]], C_B = [[3,5,1],[1,2,1]] -> w1 = C_A / (C_A + C_B)
    w1 = torch.tensor([[1 / 4, 2 / 7, 4 / 5], [3 / 4, 1 / 3, 1 / 2]])
    weighted0 = torch.tensor([[1.75, 2.0, 0.2], [2.5, 1 / 3, 1.0]])  # w1 A + (1 - w1) B, by hand
    torch.testing.assert_close(w1 * a[0, 0] + (1 - w1) * b[0, 0], weighted0)
    max1 = torch.tensor([[1.0, 3, 4], [0, 2, 0]])
    weighted1 = torch.tensor([[0.75, 15 / 7, 3.2], [0.0, 4 / 3, 0.0]])
    out = fuse_common(a, b, activity="min")
    torch.testing.assert_close(out[0, 0], weighted0)
    torch.testing.assert_close(out[0, 1], max1)  # low activity: choose-max
    out = fuse_common(a, b, activity="union")
    torch.testing.assert_close(out[0, 0], weighted0)
    torch.testing.assert_close(out[0, 1], weighted1)
    # a higher threshold switches map 0 to choose-max as well
    out = fuse_common(a, b, activity_ratio=0.9)  # T = 5.4 > 5
    torch.testing.assert_close(out[0, 0], torch.maximum(a[0, 0], b[0, 0]))
    # C_A + C_B = 0 -> equal weights, no NaN
    z = torch.zeros(1, 2, 2, 3)
    torch.testing.assert_close(fuse_common(z, z, activity_ratio=0.0), z)


def test_choose_max_of_identical_inputs_is_the_input():
    torch.manual_seed(4)
    x = torch.relu(torch.randn(2, 5, 7, 6))
    torch.testing.assert_close(fuse_private(x, x), x)
    torch.testing.assert_close(fuse_common(x, x), x)  # max or w = 1/2: either gives x
    torch.testing.assert_close(fuse_common(x, x, activity_ratio=0.0), x)
    a, b = _hand_features()
    torch.testing.assert_close(fuse_private(a, b), torch.maximum(a, b))  # Eq. (8)


@pytest.mark.parametrize("rule", ["paper", "sum", "average"])
def test_fuser_equals_the_network_pass(net, rule):
    rng = np.random.default_rng(5)
    ir, vi = rng.random((2, 21, 19), dtype=np.float32)
    f = JCAE(net, rule=rule)
    out = f.fuse(ir, vi)
    assert out.dtype == np.float32 and out.shape == (21, 19)
    assert 0 <= out.min() and out.max() <= 1
    with torch.no_grad():
        ref = net.fuse(torch.from_numpy(ir)[None, None], torch.from_numpy(vi)[None, None], rule)
    np.testing.assert_allclose(out, np.clip(ref[0, 0].numpy(), 0, 1), atol=1e-5)


def test_fold_input_is_the_same_function(net):
    folded = fold_input(net)
    assert folded.private_ir.conv1.weight.shape == (64, 1, 3, 3)
    assert net.private_ir.conv1.weight.shape == (64, 3, 3, 3)  # original intact
    torch.manual_seed(6)
    ir, vi = torch.rand(1, 1, 15, 18), torch.rand(1, 1, 15, 18)
    with torch.no_grad():
        torch.testing.assert_close(folded.fuse(ir, vi), net.fuse(ir, vi), atol=1e-5, rtol=0)


def test_fuser_errors(net):
    f = JCAE(net)
    a = np.zeros((8, 9), np.float32)
    with pytest.raises(InputError, match="sizes differ"):
        f.fuse(a, a[:, :8])
    with pytest.raises(InputError, match="2-D"):
        f.fuse(a[None], a[None])
    with pytest.raises(InputError, match="rule"):
        JCAE(net, rule="l1")
    with pytest.raises(ValueError, match="rule"):
        Config(rule="max")


# --------------------------------------------------------------------------------------------
# loss, Eq. (5)-(7)
# --------------------------------------------------------------------------------------------


def test_loss_terms_by_hand():
    torch.manual_seed(7)
    n = JCAENet()
    ir, vi = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    out = n(ir, vi)
    t = jcae_loss(Config(), ir, vi, out)
    v = {k: float(x.detach()) for k, x in t.items()}
    d = {k: (255 * (x - out[f"{k}_hat"])).detach() for k, x in (("ir", ir), ("vi", vi))}
    rmse = {k: float(np.mean([np.sqrt((v[i] ** 2).mean().item()) for i in range(2)])) for k, v in d.items()}
    with torch.no_grad():
        one_minus = {k: 1 - float(ssim_map(out[f"{k}_hat"], x).mean()) for k, x in (("ir", ir), ("vi", vi))}
    assert v["pixel_ir"] == pytest.approx(rmse["ir"], rel=1e-5)
    assert v["pixel_vi"] == pytest.approx(rmse["vi"], rel=1e-5)
    assert v["ssim_ir"] == pytest.approx(one_minus["ir"], rel=1e-5)
    expect = rmse["ir"] + rmse["vi"] + 100 * (one_minus["ir"] + one_minus["vi"])
    assert v["total"] == pytest.approx(expect, rel=1e-5)
    # MSE reading of Eq. (6), and the MSE-only ablation of Fig. 4 (SSIM logged, not trained)
    with torch.no_grad():
        m = jcae_loss(Config(pixel_loss="mse", ssim_loss=False), ir, vi, out)
    mse_ir = float((d["ir"] ** 2).mean())
    assert float(m["pixel_ir"]) == pytest.approx(mse_ir, rel=1e-5)
    assert float(m["total"]) == pytest.approx(mse_ir + float((d["vi"] ** 2).mean()), rel=1e-5)
    assert float(m["ssim_vi"]) == pytest.approx(one_minus["vi"], rel=1e-5)
    t["total"].backward()
    assert all(p.grad is not None for p in n.parameters())
    # a perfect reconstruction has zero loss
    same = jcae_loss(Config(), ir, vi, {"ir_hat": ir, "vi_hat": vi})
    assert float(same["total"]) == pytest.approx(0.0, abs=1e-4)


# --------------------------------------------------------------------------------------------
# VGG19 initialisation (Sec. 2.4)
# --------------------------------------------------------------------------------------------


def _fake_vgg19() -> dict[str, torch.Tensor]:
    """A torchvision-style VGG19 state dict with random values (the real one is 548 MB)."""
    g = torch.Generator().manual_seed(9)
    shapes = [(64, 3), None, (64, 64), None, None, (128, 64), None, (128, 128)]  # conv, relu, ..., pool
    state = {}
    for i, s in enumerate(shapes):
        if s is not None:
            state[f"features.{i}.weight"] = torch.randn(*s, 3, 3, generator=g) * 0.05
            state[f"features.{i}.bias"] = torch.randn(s[0], generator=g) * 0.05
    state["classifier.0.weight"] = torch.zeros(4, 4)
    return state


def _write_vgg19(state: dict[str, torch.Tensor], path: Path) -> Path:
    """``.pth`` as torchvision ships it (``torch.save`` of the state dict), or ``.safetensors``."""
    if path.suffix == ".pth":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    return path


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_vgg19_init_from_fake_state_dict(tmp_path, fmt):
    state = _fake_vgg19()
    path = _write_vgg19(state, tmp_path / f"vgg19-fake.{fmt}")
    n = JCAENet()
    sha = init_from_vgg19(n, path)
    assert len(sha) == 64
    for br in (n.private_ir, n.private_vi, n.common):
        for conv, i in ((br.conv1, 0), (br.conv2, 2), (br.conv3, 5)):
            assert torch.equal(conv.weight, state[f"features.{i}.weight"])
            assert torch.equal(conv.bias, state[f"features.{i}.bias"])
    bad = dict(state)
    bad["features.5.weight"] = torch.zeros(64, 64, 3, 3)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(TrainingError, match="features.5.weight"):
        init_from_vgg19(JCAENet(), tmp_path / "bad.pth")
    with pytest.raises(TrainingError, match="no such file"):
        init_from_vgg19(JCAENet(), tmp_path / "missing.pth")


class _NotATensor:
    """A pickled object that ``torch.load(weights_only=True)`` must refuse to build."""

    def __reduce__(self):
        return (print, ("code ran while loading",))


def test_vgg19_pth_is_read_without_running_code(tmp_path, capsys):
    state = _fake_vgg19()
    state["evil"] = _NotATensor()
    path = tmp_path / "vgg19-evil.pth"
    torch.save(state, path)
    with pytest.raises(TrainingError, match="not a readable VGG19 state dict"):
        init_from_vgg19(JCAENet(), path)
    assert "code ran" not in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_cli_train_with_vgg19_records_it_in_the_card(data, tmp_path, fmt):
    state = _fake_vgg19()
    path = _write_vgg19(state, tmp_path / f"vgg19-fake.{fmt}")
    out = tmp_path / "run"
    args = ["train", "jcae", "--data", str(data), "--out", str(out), "--epochs", "1", "--crop", "16"]
    r = runner.invoke(app, [*args, "--batch-size", "3", "--vgg19", str(path), "--no-progress"])
    assert r.exit_code == 0, r.output
    card = json.loads((out / "card.json").read_text())
    assert card["init"] == "vgg19" and card["config"]["vgg19"] == str(path)
    assert len(card["vgg19_sha256"]) == 64
    assert not any("random init" in n for n in card["recipe_notes"])
    # VGG19 init is the paper's recipe (Sec. 2.4), not a deviation; the tiny run's other settings are
    dev = card["deviations_from_recipe"]
    assert "vgg19" not in dev and dev["crop"] == {"used": 16, "recipe": 128}
    assert card["reduced_scale"] is True  # 1 epoch of 30, 16-px crops
    # before training, every encoder branch held VGG19's first three convolutions: a fresh build of
    # the same spec (what the trainer's epoch 0 starts from) equals the file's tensors
    spec = training_spec(Config(vgg19=str(path)))
    built = spec.build_model()
    for br in (built.private_ir, built.private_vi, built.common):
        assert torch.equal(br.conv1.weight, state["features.0.weight"])
        assert torch.equal(br.conv3.bias, state["features.5.bias"])
    # training moved them away from the init (the file initialises, it does not freeze)
    trained_w = load_file(str(out / "weights.safetensors"))
    assert not torch.equal(trained_w["common.conv1.weight"], state["features.0.weight"])
    # a method whose Config has no vgg19 field refuses the option with one line
    args = ["train", "didfuse", "--data", str(data), "--out", str(tmp_path / "d"), "--vgg19", str(path)]
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "--vgg19 is not an option of method 'didfuse'" in r.output
    args = ["train", "jcae", "--data", str(data), "--out", str(tmp_path / "j"), "--set", "lamb=10"]
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "no training option 'lamb' (did you mean 'lam'?)" in r.output, r.output
    assert not (tmp_path / "j").exists()


def test_cli_train_with_missing_vgg19_file_fails_with_one_line(data, tmp_path):
    args = [
        "train",
        "jcae",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "r"),
        "--epochs",
        "1",
        "--crop",
        "16",
    ]
    r = runner.invoke(app, [*args, "--vgg19", str(tmp_path / "nope.pth"), "--no-progress"])
    assert r.exit_code != 0 and "nope.pth: no such file" in r.output


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------


def test_random_crops_are_aligned_and_seeded(data):
    from ivfuse.data.training import RandomCropPairs, load_gray_crop, training_pairs

    ds = RandomCropPairs(data, crop=16)
    torch.manual_seed(0)
    a = ds[1]
    torch.manual_seed(0)
    b = ds[1]
    assert torch.equal(a["ir"], b["ir"]) and a["ir"].shape == (1, 16, 16)
    # the crop (possibly flipped) is a window of the full image, the same window in ir and vi
    p = training_pairs(data)[1]
    full_ir, full_vi = load_gray_crop(p.ir, None), load_gray_crop(p.vi, None)
    found = []
    for flip in (False, True):
        fi = full_ir[:, ::-1] if flip else full_ir
        fv = full_vi[:, ::-1] if flip else full_vi
        for y in range(fi.shape[0] - 15):
            for x in range(fi.shape[1] - 15):
                if np.abs(fi[y : y + 16, x : x + 16] - a["ir"][0].numpy()).max() < 1e-6:
                    found.append(np.abs(fv[y : y + 16, x : x + 16] - a["vi"][0].numpy()).max())
    assert found and min(found) < 1e-6


def test_resize_trains_on_whole_pairs_at_the_papers_size(data, tmp_path):
    """Config(resize=[W, H]): whole pairs resized to W x H (the paper's 360 x 280), the same flip
    for infrared and visible, in place of random crops; the card says which."""
    from PIL import Image

    from ivfuse.data.training import RandomCropPairs, ResizedPairs, load_gray_crop, training_pairs

    spec = training_spec(_tiny(1, resize=[24, 20]))
    ds = spec.dataset(data)
    assert isinstance(ds, ResizedPairs) and len(ds) == 6
    p = training_pairs(data)[2]
    want = {}
    for k, path in (("ir", p.ir), ("vi", p.vi)):
        full = Image.fromarray(np.round(load_gray_crop(path, None) * 255).astype(np.uint8))
        want[k] = np.asarray(full.resize((24, 20), Image.Resampling.BICUBIC), dtype=np.float32) / 255
    seen = set()
    for seed in range(8):
        torch.manual_seed(seed)
        got = ds[2]
        assert got["ir"].shape == got["vi"].shape == (1, 20, 24)
        flipped = np.allclose(got["ir"][0].numpy(), want["ir"][:, ::-1], atol=1e-6)
        assert flipped or np.allclose(got["ir"][0].numpy(), want["ir"], atol=1e-6)
        vi = want["vi"][:, ::-1] if flipped else want["vi"]
        assert np.allclose(got["vi"][0].numpy(), vi, atol=1e-6)  # the same flip in both
        seen.add(flipped)
    assert seen == {True, False}
    assert "resized to 24x20, with horizontal flips" in spec.extra_card["recipe_notes"][0]
    assert isinstance(training_spec(_tiny(1)).dataset(data), RandomCropPairs)
    assert Config.from_dict(Config(resize=[360, 280]).to_dict()).resize == [360, 280]
    with pytest.raises(ValueError, match="resize must be"):
        Config(resize=[360])
    card = train(spec, RunOptions(data, tmp_path / "r", seed=0, progress=False))
    assert card["config"]["resize"] == [24, 20] and np.isfinite(card["final_losses"]["total"])
    # the paper's 360 x 280 is the recipe: another size is a deviation, and so are crops
    assert card["deviations_from_recipe"]["resize"] == {"used": [24, 20], "recipe": [360, 280]}
    paper_size = training_spec(Config(resize=[360, 280]))
    assert paper_size.default_config.resize == paper_size.config.resize == [360, 280]


def test_training_spec_is_the_papers_recipe():
    """Adam, lr 3e-4 (Sec. 3.1), one auto-encoder stage of 30 epochs (Fig. 5), lambda = 100 (Sec. 3.2)."""
    spec = training_spec()
    assert [s.name for s in spec.stages] == ["autoencoder"] and spec.total_epochs == 30
    opt = spec.stages[0].optimizer([torch.nn.Parameter(torch.zeros(1))])
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["lr"] == 3e-4
    cfg = spec.config
    assert cfg.lam == 100.0 and cfg.ssim_loss and cfg.common_branch and cfg.rule == "paper"
    assert spec.extra_card["reduced_scale"] is True  # random init: the paper's VGG19 init not used
    assert "reduced_scale" not in training_spec(Config(vgg19="vgg19.pth")).extra_card


def test_training_decreases_loss_and_resumes_bit_identically(data, tmp_path):
    full = tmp_path / "full"
    card = train(training_spec(_tiny(2)), RunOptions(data, full, seed=1, progress=False))
    hist = list(csv.DictReader(open(full / "losses.csv")))
    assert [float(h["total"]) for h in hist][1] < float(hist[0]["total"])
    for term in ("pixel_ir", "pixel_vi", "ssim_ir", "ssim_vi", "total"):
        assert term in hist[0]
    # stop after epoch 1 (as if killed), resume: bit-identical weights and losses
    part = tmp_path / "part"
    assert train(training_spec(_tiny(2)), RunOptions(data, part, seed=1, progress=False, stop_after=1)) == {
        "stopped_at": 1
    }
    train(training_spec(_tiny(2)), RunOptions(data, part, seed=1, progress=False, resume=True))
    wa, wb = load_file(str(full / "weights.safetensors")), load_file(str(part / "weights.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert [r["total"] for r in csv.DictReader(open(part / "losses.csv"))] == [h["total"] for h in hist]
    # the card is honest: random init and tiny crops are a reduced scale of the paper's recipe
    assert card["reduced_scale"] is True and card["init"] == "random (PyTorch default)"
    assert card["epochs"] == 2 and card["epochs_planned"] == 2
    assert card["deviations_from_recipe"]["crop"] == {"used": 16, "recipe": 128}
    assert card["deviations_from_recipe"]["resize"] == {"used": None, "recipe": [360, 280]}
    assert any("random init" in n for n in card["recipe_notes"])
    assert any("1400" in n for n in card["recipe_notes"])
    # the exported weights load and fuse like the trained network
    net, meta = load_weights(full / "weights.safetensors")
    assert meta["method"] == "jcae" and net.common is not None


def test_mse_only_and_two_branch_ablations_train(data, tmp_path):
    card = train(
        training_spec(_tiny(1, ssim_loss=False, common_branch=False)),
        RunOptions(data, tmp_path / "abl", seed=0, progress=False),
    )
    assert card["deviations_from_recipe"]["ssim_loss"] == {"used": False, "recipe": True}
    assert card["deviations_from_recipe"]["common_branch"] == {"used": False, "recipe": True}
    net, _ = load_weights(tmp_path / "abl" / "weights.safetensors")
    assert net.common is None
    f = registry.create("jcae", weights=tmp_path / "abl" / "weights.safetensors")
    assert f.fuse(np.full((6, 7), 0.2, np.float32), np.full((6, 7), 0.7, np.float32)).shape == (6, 7)


# --------------------------------------------------------------------------------------------
# weights and the CLI
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("jcae_run")
    train(training_spec(_tiny(1)), RunOptions(data, out, seed=0, progress=False))
    return out / "weights.safetensors"


def test_registered_with_metadata():
    info = registry.info("jcae")
    assert info.family == "self-supervised" and info.trainable and info.weights == "jcae.safetensors"
    if not info.weights_shipped:
        with pytest.raises(WeightsError, match="ivfuse train jcae"):
            registry.create("jcae")
        return
    card = info.weights_card
    assert card["method"] == "jcae" and "reduced_scale" in card and card["data"]["pairs"] > 0
    if card.get("init", "").startswith("random"):
        assert card["reduced_scale"] is True  # the paper's VGG19 init was not used


def _pair(tmp_path: Path, colour: bool):
    from ivfuse.data.synthetic import night_scene

    s = night_scene(40, 53)  # odd width on purpose
    ir = io.write_image(tmp_path / "ir.png", s.ir)
    vi_img = s.vi if colour else (s.vi.mean(axis=2) if s.vi.ndim == 3 else s.vi)
    vi = io.write_image(tmp_path / ("vi.jpg" if colour else "vi.png"), vi_img)
    return ir, vi


def _fuse_cli(ir, vi, out, weights, *extra):
    args = ["fuse", str(ir), str(vi), "-o", str(out), "-m", "jcae", "-p", f"weights={weights}", *extra]
    return runner.invoke(app, args)


@pytest.mark.parametrize("colour", [False, True])
def test_cli_fuse_jcae_gray_and_colour(tmp_path, trained, colour):
    ir, vi = _pair(tmp_path, colour)
    out = tmp_path / "f.png"
    r = _fuse_cli(ir, vi, out, trained)
    assert r.exit_code == 0, r.output
    img = io.read_image(out)
    assert img.shape == ((40, 53, 3) if colour else (40, 53)) and img.dtype == np.uint8
    # the fused luma is the fuser's result on the luma planes
    vi_arr = io.read_image(vi).astype(np.float32) / 255
    vi_y = io.rgb_to_ycbcr(vi_arr)[..., 0] if colour else vi_arr
    ir_arr = io.read_image(ir).astype(np.float32) / 255
    expect = create_jcae(weights=trained).fuse(ir_arr, np.clip(vi_y, 0, 1))
    got = io.rgb_to_ycbcr(img.astype(np.float32) / 255)[..., 0] if colour else img / 255.0
    assert np.abs(got - expect).max() * 255 <= 2.0
    # the study rules give other results; an unknown rule is refused with one line
    r = _fuse_cli(ir, vi, tmp_path / "s.png", trained, "-p", "rule=sum")
    assert r.exit_code == 0, r.output
    assert not np.array_equal(io.read_image(tmp_path / "s.png"), img)
    r = _fuse_cli(ir, vi, tmp_path / "b.png", trained, "-p", "rule=median")
    assert r.exit_code == 2 and "rule" in r.output and not (tmp_path / "b.png").exists()


def test_cli_fuse_shipped_weights(tmp_path):
    if not registry.info("jcae").weights_shipped:
        pytest.skip("no shipped JCAE weights")
    ir, vi = _pair(tmp_path, True)
    r = runner.invoke(app, ["fuse", str(ir), str(vi), "-o", str(tmp_path / "f.png"), "-m", "jcae"])
    assert r.exit_code == 0, r.output
    assert io.read_image(tmp_path / "f.png").shape == (40, 53, 3)


def test_parts_are_the_feature_maps_of_fig6(tmp_path):
    """``-p parts=DIR`` writes Fig. 6's six maps at the feature resolution (half the image: VGG19's
    pooling), one channel each, a triple scaled alike: the fused private map is the elementwise max
    of the two (Eq. 8), the fused common map lies between them (Eq. 9: max or a convex weighting)."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:45, :62]
    ir = np.clip(120 + 80 * np.sin(xx / 5.0) + rng.normal(0, 8, xx.shape), 0, 255).astype(np.uint8)
    vi = np.clip(100 + 70 * np.cos(yy / 4.0) + rng.normal(0, 8, xx.shape), 0, 255).astype(np.uint8)
    Image.fromarray(ir).save(tmp_path / "ir.png")
    Image.fromarray(vi).save(tmp_path / "vi.png")
    parts = tmp_path / "parts"
    r = runner.invoke(
        app,
        [
            "fuse",
            "-m",
            "jcae",
            "-p",
            f"parts={parts}",
            str(tmp_path / "ir.png"),
            str(tmp_path / "vi.png"),
            "-o",
            str(tmp_path / "f.png"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "f.png").is_file()
    got = {p.name for p in parts.iterdir()}
    assert got == {
        f"f_{n}.png"
        for n in ("private_ir", "private_vi", "private_fused", "common_ir", "common_vi", "common_fused")
    }
    fuser = registry.create("jcae")
    maps = fuser.parts(ir.astype(np.float32) / 255, vi.astype(np.float32) / 255)
    assert all(m.shape == (23, 31) for m in maps.values())
    for name in ("private", "common"):
        a, b, c = (maps[f"{name}_{t}"] for t in ("ir", "vi", "fused"))
        assert 0.0 <= min(a.min(), b.min(), c.min()) and max(a.max(), b.max(), c.max()) <= 1.0
        assert max(a.max(), b.max(), c.max()) == pytest.approx(1.0)  # the triple spans [0, 1]
        if name == "private":
            np.testing.assert_allclose(c, np.maximum(a, b), atol=1e-6)
        else:
            assert np.all(c >= np.minimum(a, b) - 1e-5) and np.all(c <= np.maximum(a, b) + 1e-5)
    written = np.asarray(Image.open(parts / "f_private_fused.png"), dtype=np.float32) / 255
    np.testing.assert_allclose(written, maps["private_fused"], atol=0.5 / 255 + 1e-6)


def test_feature_figure_script(tmp_path):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "feature_figures.py"
    spec = importlib.util.spec_from_file_location("feature_figures", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.main(["--methods", "jcae", "--size", "48x64", "-o", str(tmp_path / "f.png")])
    img = np.asarray(Image.open(out))
    assert img.ndim == 3 and img.shape[1] > 3 * img.shape[0]  # one row: 3 + 6 panels side by side
    assert img[..., :3].std() > 10  # drawn, not blank
