"""SSL-WAEIE: contributions (Eq. 7-8), fusion (Eq. 1), losses (Eq. 9-14) by hand, the two stages
(the WAE learning rate drops to a tenth), resume inside stage 2, ablations, weights, CLI."""

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

from ivfuse.cli import app
from ivfuse.methods import registry
from ivfuse.methods.sslwaeie import (
    CIEN,
    SSLWAEIE,
    Config,
    SSLWAEIENet,
    cien_loss,
    create_sslwaeie,
    information_exchange,
    load_weights,
    source_weights,
    training_spec,
    wae_loss,
)
from ivfuse.train.trainer import RunOptions, train

runner = CliRunner()
TINY = {"channels": (4, 6, 8), "ced_channels": (8, 6, 4)}


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _net(seed: int = 0, **kw) -> SSLWAEIENet:
    torch.manual_seed(seed)
    return SSLWAEIENet(Config(**{**TINY, **kw})).eval()


def _write_pairs(root: Path, n: int, size=(30, 26), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for sub in ("ir", "vi"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        h, w = size
        Image.fromarray((rng.random((h, w)) * 255).astype(np.uint8), "L").save(root / "ir" / f"{i:03d}.png")
        vi = (rng.random((h, w, 3)) * 255).astype(np.uint8)
        Image.fromarray(vi, "RGB").save(root / "vi" / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return _write_pairs(tmp_path_factory.mktemp("pairs"), 4)


def _tiny_cfg(**kw) -> Config:
    base = dict(TINY, wae_epochs=2, cien_epochs=2, batch_size=4, crop=16, crops_per_pair=2, lr=1e-3)
    return Config(**{**base, **kw})


def _run(data: Path, out: Path, cfg: Config, **kw) -> dict:
    return train(training_spec(cfg), RunOptions(data=data, out=out, progress=False, **kw))


# --------------------------------------------------------------------------------------------
# contributions and fusion


def test_contributions_sum_to_one_and_lie_in_unit_interval():
    net = _net()
    g = torch.Generator().manual_seed(1)
    ir, vi = torch.rand(3, 1, 20, 24, generator=g), torch.rand(3, 1, 20, 24, generator=g)
    ir[0] = 0.0  # a black infrared image
    vi[1] = 0.0
    with torch.no_grad():
        out = net(ir, vi, "cien")
    ti, tv = out["tau_i"], out["tau_v"]
    assert ti.shape == (3, 1, 20, 24)
    assert torch.equal(ti + tv, torch.ones_like(ti))
    assert float(ti.min()) >= 0.0 and float(ti.max()) <= 1.0
    assert float(tv.min()) >= 0.0 and float(tv.max()) <= 1.0
    assert torch.allclose(out["fused"], ti * ir + tv * vi)  # Eq. (1)


def test_contribution_rule_is_inverse_proportional_and_guarded():
    cien = CIEN((2, 2, 2), (2, 2, 2), eps=1e-6)
    de_i = torch.tensor([[[[3.0, 0.0, 0.0, 1.0]]]])
    de_v = torch.tensor([[[[1.0, 2.0, 0.0, 1.0]]]])
    tau_i, tau_v = cien.contributions(de_i, de_v)
    # tau_i = dE_v / (dE_i + dE_v): more information received -> smaller contribution
    expect = torch.tensor([1.0 / 4.0, (2.0 + 1e-6) / (2.0 + 2e-6), 0.5, 0.5])
    assert torch.allclose(tau_i.flatten(), expect, atol=1e-7)
    assert torch.allclose(tau_v.flatten(), 1.0 - expect, atol=1e-7)


def test_fusing_an_image_with_itself_returns_it(rng):
    img = rng.random((37, 45)).astype(np.float32)
    fuser = SSLWAEIE(_net(3))
    fused = fuser.fuse(img, img)
    np.testing.assert_allclose(fused, img, atol=1e-6)
    tau = fuser.side_maps()["contributions"].image
    assert tau.shape == img.shape and tau.dtype == np.float32
    assert 0.0 <= tau.min() and tau.max() <= 1.0


def test_fuser_is_a_per_pixel_convex_combination(rng):
    ir = rng.random((21, 33)).astype(np.float32)
    vi = rng.random((21, 33)).astype(np.float32)
    fuser = SSLWAEIE(_net(4))
    fused = fuser.fuse(ir, vi)
    tau = fuser.contributions(ir, vi)
    np.testing.assert_allclose(fused, tau * ir + (1 - tau) * vi, atol=1e-6)
    assert np.all(fused >= np.minimum(ir, vi) - 1e-6) and np.all(fused <= np.maximum(ir, vi) + 1e-6)


def test_tiled_equals_untiled(rng):
    ir = rng.random((70, 53)).astype(np.float32)
    vi = rng.random((70, 53)).astype(np.float32)
    net = _net(5)
    whole = SSLWAEIE(net, tile=None).fuse(ir, vi)
    tiled = SSLWAEIE(net, tile=24, margin=16).fuse(ir, vi)
    np.testing.assert_allclose(tiled, whole, atol=1e-6)


def test_parameter_count_is_what_runs_at_test_time():
    net = _net()
    n = SSLWAEIE(net).parameter_count()
    dec = sum(p.numel() for p in net.wae.decoder.parameters())
    assert n == sum(p.numel() for p in net.parameters()) - dec and dec > 0


def test_fuser_errors():
    fuser = SSLWAEIE(_net())
    with pytest.raises(Exception, match="sizes differ"):
        fuser.fuse(np.zeros((8, 8), np.float32), np.zeros((8, 9), np.float32))
    with pytest.raises(Exception, match="2-D"):
        fuser.fuse(np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 3), np.float32))
    with pytest.raises(Exception, match="too small"):
        fuser.fuse(np.zeros((1, 8), np.float32), np.zeros((1, 8), np.float32))
    with pytest.raises(ValueError, match="margin"):
        SSLWAEIE(_net(), margin=4)


# --------------------------------------------------------------------------------------------
# losses by hand


def _t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).reshape(1, 1, 1, -1)


def test_source_weights_by_hand_with_black_pixels():
    w_i, w_v = source_weights(_t([0.2, 0.0, 0.0, 0.6]), _t([0.6, 0.0, 0.5, 0.2]))
    assert torch.allclose(w_i.flatten(), torch.tensor([0.25, 0.5, 0.0, 0.75]))
    assert torch.allclose(w_v.flatten(), torch.tensor([0.75, 0.5, 1.0, 0.25]))


def test_weighted_fidelity_and_unweighted_variant_by_hand():
    ir, vi = _t([0.2, 0.0, 0.6, 0.0]), _t([0.6, 0.4, 0.2, 0.0])
    fused = _t([0.4, 0.1, 0.5, 0.3])
    out = {"fused": fused, "exchanged": [], "tau_i": torch.full_like(ir, 0.5)}
    # W_i = .25 0 .75 .5 ; W_v = .75 1 .25 .5
    wf = (
        np.mean(np.square([0.25 * 0.2, 0.0, 0.75 * -0.1, 0.5 * 0.3]))
        + np.mean(np.square([0.75 * -0.2, 1.0 * -0.3, 0.25 * 0.3, 0.5 * 0.3]))
    )  # fmt: skip
    f = np.mean(np.square([0.2, 0.1, -0.1, 0.3])) + np.mean(np.square([-0.2, -0.3, 0.3, 0.3]))
    got = cien_loss(Config(loss="wf"), ir, vi, out)
    assert got["fidelity"].item() == pytest.approx(wf, rel=1e-6)
    assert got["total"].item() == pytest.approx(wf, rel=1e-6)
    got = cien_loss(Config(loss="f"), ir, vi, out)
    assert got["fidelity"].item() == pytest.approx(f, rel=1e-6)


def test_information_exchange_by_hand():
    # level 1: 2 channels x 1 x 2 pixels; level 2: 1 channel x 1 x 2 pixels
    a1 = torch.tensor([[[[1.0, 2.0]], [[0.0, 1.0]]]])
    b1 = torch.tensor([[[[0.0, 0.0]], [[2.0, 1.0]]]])
    a2 = torch.tensor([[[[3.0, 0.0]]]])
    b2 = torch.tensor([[[[1.0, 0.0]]]])
    # (1/MN) sum_l ||a - b||^2 = (1+4+4+0)/2 + (4+0)/2 = 4.5 + 2 = 6.5
    assert information_exchange([(a1, b1), (a2, b2)]).item() == pytest.approx(-6.5)
    assert information_exchange([(a1, b1), (a2, b2)], "tanh").item() == pytest.approx(
        -(np.tanh(4.5) + np.tanh(2.0)), rel=1e-6
    )
    out = {"fused": torch.zeros(1, 1, 1, 2), "exchanged": [(a1, b1), (a2, b2)], "tau_i": torch.zeros(1)}
    # normalized: level 1 (1+4+4+0) / (1+4+0+1 + 0+0+4+1) = 9/11, level 2 4 / (9+1)
    assert information_exchange([(a1, b1), (a2, b2)], "normalized").item() == pytest.approx(
        -(9 / 11 + 4 / 10), rel=1e-6
    )
    # scale-free: 100x larger exchanged informations give the same value
    big = [(100 * a1, 100 * b1), (100 * a2, 100 * b2)]
    assert information_exchange(big, "normalized").item() == pytest.approx(-(9 / 11 + 4 / 10), rel=1e-6)
    out = {"fused": torch.zeros(1, 1, 1, 2), "exchanged": [(a1, b1), (a2, b2)], "tau_i": torch.zeros(1)}
    t = cien_loss(Config(ie_form="paper"), torch.zeros(1, 1, 1, 2), torch.zeros(1, 1, 1, 2), out)
    assert t["fidelity"].item() == 0.0
    assert t["total"].item() == pytest.approx(10 * -6.5)  # L_wf + mu L_IE, mu = 10
    assert Config().ie_form == "normalized"


def test_wae_loss_by_hand():
    g = torch.Generator().manual_seed(0)
    ir, vi = torch.rand(1, 1, 16, 16, generator=g), torch.rand(1, 1, 16, 16, generator=g)
    perfect = wae_loss(Config(), ir, vi, {"ir_hat": ir.clone(), "vi_hat": vi.clone()})
    assert perfect["w_rec"].item() == 0.0
    assert perfect["ssim_loss"].item() == pytest.approx(0.0, abs=1e-6)  # 2 - SSIM - SSIM
    off = wae_loss(Config(), ir, vi, {"ir_hat": ir + 0.1, "vi_hat": vi.clone()})
    w_i = ir / (ir + vi)
    assert off["w_rec"].item() == pytest.approx(float((w_i**2).mean() * 0.01), rel=1e-5)
    assert off["total"].item() == pytest.approx(off["w_rec"].item() + 5 * off["ssim_loss"].item(), rel=1e-6)
    assert 0.0 < off["ssim_loss"].item() < 1.0


# --------------------------------------------------------------------------------------------
# network variants (Table 4)


@pytest.mark.parametrize(("network", "levels", "iems"), [("iee", 3, 3), ("no_iee", 3, 0), ("sl_iee", 1, 1)])
def test_ablation_networks(network, levels, iems):
    net = _net(network=network)
    assert len(net.cien.iee) == iems
    cin = {"iee": 4 + 6 + 8, "no_iee": 4 + 6 + 8, "sl_iee": 8}[network]
    assert net.cien.ced[0].conv1.in_channels == cin
    ir, vi = torch.rand(2, 1, 12, 10), torch.rand(2, 1, 12, 10)
    with torch.no_grad():
        out = net(ir, vi, "cien")
    assert len(out["exchanged"]) == levels
    assert out["tau_i"].shape == (2, 1, 12, 10)
    if network == "no_iee":  # dE^(l) are the WAE features themselves
        feats = net.wae.encode(ir)
        assert torch.equal(out["exchanged"][0][0], feats[0])


def test_config_validation_and_epochs_override():
    with pytest.raises(ValueError, match="network"):
        Config(network="nope")
    with pytest.raises(ValueError, match="loss"):
        Config(loss="l3")
    c = Config(wae_epochs=40, cien_epochs=60, epochs=70)  # stage 1 keeps its 40, stage 2 the rest
    assert (c.wae_epochs, c.cien_epochs) == (40, 30)
    c = Config(wae_epochs=40, cien_epochs=60, epochs=10)  # shorter than stage 1: in proportion
    assert (c.wae_epochs, c.cien_epochs) == (4, 6)
    assert Config.from_dict(Config(network="sl_iee").to_dict()) == Config(network="sl_iee")


def test_stage_lists():
    assert [s.name for s in training_spec(Config()).stages] == ["wae", "cien"]
    assert [s.name for s in training_spec(Config(pretrain=False)).stages] == ["cien"]


# --------------------------------------------------------------------------------------------
# training: stages, learning rates, resume


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_stage_switch_drops_the_wae_learning_rate_to_a_tenth(data, tmp_path):
    card = _run(data, tmp_path / "run", _tiny_cfg())
    rows = _csv(tmp_path / "run" / "losses.csv")
    assert [r["stage"] for r in rows] == ["wae", "wae", "cien", "cien"]
    assert all(float(r["lr_wae"]) == pytest.approx(1e-3) for r in rows[:2])
    assert all(float(r["lr_wae"]) == pytest.approx(1e-4) for r in rows[2:])
    assert all(float(r["lr_cien"]) == pytest.approx(1e-3) for r in rows[2:])
    assert rows[0]["fidelity"] == "" and rows[2]["w_rec"] == ""
    assert card["epochs"] == 4 and card["method"] == "sslwaeie"
    # stage 2 leaves the decoder alone (no gradient from L_CIEN) and changes the encoder
    w = load_file(str(tmp_path / "run" / "weights.safetensors"))
    stop = tmp_path / "stage1"
    _run(data, stop, _tiny_cfg(), stop_after=2)
    ck = torch.load(stop / "checkpoint.pt", weights_only=True)["model"]
    dec = [k for k in w if k.startswith("wae.decoder.")]
    enc = [k for k in w if k.startswith("wae.encoder.")]
    assert dec and all(torch.equal(w[k], ck[k]) for k in dec)
    assert any(not torch.equal(w[k], ck[k]) for k in enc)


def test_no_wae_trains_the_encoder_at_the_full_rate(data, tmp_path):
    _run(data, tmp_path / "run", _tiny_cfg(pretrain=False, cien_epochs=1))
    rows = _csv(tmp_path / "run" / "losses.csv")
    assert [r["stage"] for r in rows] == ["cien"]
    assert float(rows[0]["lr_wae"]) == pytest.approx(1e-3)


def test_resume_in_the_middle_of_stage_2_is_bit_identical(data, tmp_path):
    cfg = _tiny_cfg(cien_epochs=3)
    _run(data, tmp_path / "full", cfg)
    assert _run(data, tmp_path / "part", cfg, stop_after=3) == {"stopped_at": 3}  # 1 epoch into stage 2
    _run(data, tmp_path / "part", cfg, resume=True)
    a = load_file(str(tmp_path / "full" / "weights.safetensors"))
    b = load_file(str(tmp_path / "part" / "weights.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = _csv(tmp_path / "full" / "losses.csv"), _csv(tmp_path / "part" / "losses.csv")
    assert [r["total"] for r in ra] == [r["total"] for r in rb]


# --------------------------------------------------------------------------------------------
# weights, registry, CLI


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "run"
    _run(data, out, _tiny_cfg(network="sl_iee", wae_epochs=1, cien_epochs=1))
    return out / "weights.safetensors"


def test_weights_round_trip(trained, rng):
    net, meta = load_weights(trained)
    assert meta["method"] == "sslwaeie"
    assert json.loads(meta["config"])["network"] == "sl_iee"
    assert len(net.cien.iee) == 1
    img = rng.random((19, 23)).astype(np.float32)
    fuser = create_sslwaeie(weights=trained)
    np.testing.assert_allclose(fuser.fuse(img, img), img, atol=1e-6)


def test_registered():
    info = registry.info("sslwaeie")
    assert info.trainable and info.family == "self-supervised"
    assert info.weights == "sslwaeie.safetensors"


def _pair(tmp_path: Path, colour: bool, size=(27, 31)) -> tuple[Path, Path]:
    rng = np.random.default_rng(7)
    h, w = size
    ir, vi = tmp_path / "ir.png", tmp_path / "vi.png"
    Image.fromarray((rng.random((h, w)) * 255).astype(np.uint8), "L").save(ir)
    arr = (rng.random((h, w, 3) if colour else (h, w)) * 255).astype(np.uint8)
    Image.fromarray(arr, "RGB" if colour else "L").save(vi)
    return ir, vi


@pytest.mark.parametrize("colour", [False, True])
def test_cli_fuse_writes_the_fused_image_and_the_contribution_map(tmp_path, trained, colour):
    ir, vi = _pair(tmp_path, colour)
    out, tau = tmp_path / "fused.png", tmp_path / "tau.png"
    res = runner.invoke(
        app,
        ["fuse", str(ir), str(vi), "-o", str(out), "-m", "sslwaeie",
         "-p", f"weights={trained}", "-p", f"contributions={tau}"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    fused = np.asarray(Image.open(out))
    t = np.asarray(Image.open(tau))
    assert fused.shape == ((27, 31, 3) if colour else (27, 31))
    assert t.shape == (27, 31) and t.dtype == np.uint8
    # the map is the fuser's tau_i on the luma planes
    from ivfuse import api

    pipe = api.load("sslwaeie", weights=str(trained))
    pipe.fuse(ir, vi)
    expect = np.round(pipe.method.side_maps()["contributions"].image * 255)
    assert np.abs(t.astype(float) - expect).max() <= 1


def test_cli_fuse_folder_mode_writes_one_map_per_pair(tmp_path, trained, data):
    out = tmp_path / "fused"
    res = runner.invoke(
        app,
        ["fuse", "--pairs", str(data), "-o", str(out), "-m", "sslwaeie",
         "-p", f"weights={trained}", "-p", f"contributions={tmp_path}/tau_{{stem}}.png"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.glob("tau_*.png")) == [f"tau_{i:03d}.png" for i in range(4)]


def test_cli_train_end_to_end(data, tmp_path):
    out = tmp_path / "run"
    res = runner.invoke(
        app,
        ["train", "sslwaeie", "--data", str(data), "--out", str(out), "--epochs", "2",
         "--crop", "16", "--batch-size", "8", "--threads", "1", "--no-progress"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    card = json.loads((out / "card.json").read_text())
    assert card["epochs"] == 2 and card["reduced_scale"] is True
    assert [r["stage"] for r in _csv(out / "losses.csv")] == ["wae", "cien"]
    res = runner.invoke(app, ["fuse", *map(str, _pair(tmp_path, False)), "-o", str(tmp_path / "f.png"),
                              "-m", "sslwaeie", "-p", f"weights={out / 'weights.safetensors'}"])  # fmt: skip
    assert res.exit_code == 0, res.output
