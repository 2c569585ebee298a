"""IFESNet: layer shapes and parameter counts of the default and every variant (by hand), the
feature streams (IFEM vs one-way), the L_F target of Eq. (8)-(10) on hand-made patches and the
filter form of Eq. (11) against a per-patch loop, L_M after a short training (W_1 + W_2 -> tau),
kill-and-resume identity, tiled inference, the Gaussian smoothing of the weight maps, and
``ivfuse train/fuse -m ifesnet`` end to end on gray and colour."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from ivfuse import io
from ivfuse.cli import app
from ivfuse.errors import WeightsError
from ivfuse.methods import registry
from ivfuse.methods.ifesnet import (
    Config,
    IFESNet,
    IFESNetModel,
    create_ifesnet,
    fusion_ssim_map,
    ifesnet_loss,
    load_weights,
    parameter_count,
    smooth_maps,
    ssim_target,
    training_spec,
    vp_loss,
)
from ivfuse.nn.losses import gaussian_window
from ivfuse.train.checkpoint import export_safetensors
from ivfuse.train.trainer import RunOptions, train

runner = CliRunner()

#: a narrow network for training tests: same structure, 8 channels everywhere
TINY = dict(stage_widths=(8, 8, 8, 8), recon_widths=(8,), head_widths=(8,))


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _convs(model: torch.nn.Module, prefix: str) -> list[tuple[int, int]]:
    return [
        (m.in_channels, m.out_channels)
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Conv2d) and name.startswith(prefix)
    ]


def _count(shapes) -> int:
    return sum(9 * a * b + b for a, b in shapes)


# --------------------------------------------------------------------------------------------
# network: layers, parameter counts, feature streams
# --------------------------------------------------------------------------------------------

HEAD = [(256, 128), (128, 64), (64, 2)]  # C^4 after its first layer
RECON = [(128, 64), (64, 1)]  # C^3 after its first layer

#: (network, stages) -> (SHFENet convs, IVIFNet convs), written out from the Config docstring
LAYOUTS = {
    # the paper's IFESNet: SHFENet 64,128,256 | 128,64,1; IVIFNet 64,64,128,128,256,256 | 256,128,64,2
    ("ifem", 3): (
        [(64, 64), (128, 128), (256, 256), (256, 128), *RECON],
        [(2, 64), (64, 64), (128, 128), (128, 128), (256, 256), (256, 256), (256, 256), *HEAD],
    ),
    ("ifem", 1): ([(64, 64), (64, 128), *RECON], [(2, 64), (64, 64), (64, 256), *HEAD]),
    ("ifem", 2): (
        [(64, 64), (128, 128), (128, 128), *RECON],
        [(2, 64), (64, 64), (128, 128), (128, 128), (128, 256), *HEAD],
    ),
    ("ifem", 4): (
        [(64, 64), (128, 128), (256, 256), (256, 256), (256, 128), *RECON],
        [
            (2, 64),
            (64, 64),
            (128, 128),
            (128, 128),
            (256, 256),
            (256, 256),
            (512, 256),
            (256, 256),
            (256, 256),
            *HEAD,
        ],
    ),
    # w/o IFEM: own SHFENet chains 1->64->128->256; INT reads Cat(F_{n-1}, F'_{n-1}, F''_{n-1})
    ("no_ifem", 3): (
        [(1, 64), (64, 128), (128, 256), (256, 128), *RECON],
        [(2, 64), (64, 64), (192, 128), (128, 128), (384, 256), (256, 256), (256, 256), *HEAD],
    ),
    # HC, 4 stages: INT inputs 2*64+64, 2*128+64+128, 2*256+64+128+256; head Cat(F_1..F_4) = 704
    ("hc", 4): (
        [(64, 64), (128, 128), (256, 256), (256, 256), (256, 128), *RECON],
        [
            (2, 64),
            (64, 64),
            (192, 128),
            (128, 128),
            (448, 256),
            (256, 256),
            (960, 256),
            (256, 256),
            (704, 256),
            *HEAD,
        ],
    ),
}


@pytest.mark.parametrize("key", list(LAYOUTS))
def test_layers_and_parameter_counts_by_hand(key):
    network, stages = key
    model = IFESNetModel(Config(network=network, stages=stages))
    shfe, ivif = LAYOUTS[key]
    assert _convs(model, "shfe_ir") == shfe and _convs(model, "shfe_vi") == shfe
    assert _convs(model, "ivif") == ivif
    assert parameter_count(model) == 2 * _count(shfe) + _count(ivif)


def test_default_is_the_papers_six_plus_ten_layers():
    model = IFESNetModel()
    assert [b for _, b in _convs(model, "shfe_ir")] == [64, 128, 256, 128, 64, 1]
    # the listed 64, 64, 128, 128, 256, 256, 256, 128, 64, 1 with two weight maps at the end
    assert [b for _, b in _convs(model, "ivif")] == [64, 64, 128, 128, 256, 256, 256, 128, 64, 2]
    assert parameter_count(model) == 4_761_540
    assert model.receptive_radius() == 12  # 2 stem + 2 x (Bi + 2 INT) + 4 head


@pytest.mark.parametrize("network,stages", [("ifem", 3), ("ifem", 1), ("ifem", 4), ("no_ifem", 3), ("hc", 4)])
def test_output_shapes_for_odd_sizes(network, stages):
    torch.manual_seed(0)
    model = IFESNetModel(Config(network=network, stages=stages)).eval()
    ir, vi = torch.rand(1, 1, 13, 17), torch.rand(1, 1, 13, 17)
    with torch.no_grad():
        out = model(ir, vi)
        maps = model.weight_maps(ir, vi)
    for k in ("w1", "w2", "fused", "ir_hat", "vi_hat"):
        assert out[k].shape == (1, 1, 13, 17), k
    assert ((out["w1"] > 0) & (out["w1"] < 1)).all() and ((out["ir_hat"] >= 0) & (out["ir_hat"] <= 1)).all()
    torch.testing.assert_close(out["fused"], out["w1"] * ir + out["w2"] * vi)  # Eq. (4)
    torch.testing.assert_close(maps, torch.cat([out["w1"], out["w2"]], dim=1))  # inference path


def test_feature_streams_ifem_is_two_way_no_ifem_one_way():
    ir, vi = torch.rand(1, 1, 12, 12), torch.rand(1, 1, 12, 12)
    vi2 = vi.clone()
    vi2[..., 5:8, 5:8] += 0.5
    for network, crosses in (("ifem", True), ("no_ifem", False)):
        torch.manual_seed(0)
        m = IFESNetModel(Config(network=network, **TINY)).eval()
        with torch.no_grad():
            a, b = m(ir, vi), m(ir, vi2)
        # the infrared reconstruction sees the visible image only through IVIFNet (Bi of Eq. 1)
        assert (not torch.equal(a["ir_hat"], b["ir_hat"])) is crosses, network
        assert not torch.equal(a["w1"], b["w1"])  # the fusion net sees both either way


def test_config_refuses_bad_values():
    for bad in (dict(network="x"), dict(recon_loss="l2"), dict(fusion_loss="vif"), dict(stages=0),
                dict(stages=5), dict(crop=8)):  # fmt: skip
        with pytest.raises(ValueError):
            Config(**bad)


# --------------------------------------------------------------------------------------------
# L_F: the target of Eq. (8)-(10) and the SSIM of Eq. (11)
# --------------------------------------------------------------------------------------------


def _ramps():
    """Two orthogonal zero-mean unit-norm 11 x 11 structures (horizontal and vertical ramps)."""
    yy, xx = np.mgrid[0:11, 0:11].astype(np.float64)
    u1, u2 = xx - 5, yy - 5
    return u1 / np.linalg.norm(u1), u2 / np.linalg.norm(u2)


def test_target_on_hand_made_patches():
    u1, u2 = _ramps()
    x1, x2 = 0.4 + 0.3 * u1, 0.6 + 0.5 * u2  # contrasts 0.3 and 0.5, structures u1 and u2
    # C_bar = max(0.3, 0.5) = 0.5, S_bar = (u1 + u2) / sqrt(2): target = 1.7 * 0.5 * (u1 + u2) / sqrt(2)
    expect = 1.7 * 0.5 * (u1 + u2) / math.sqrt(2.0)
    np.testing.assert_allclose(ssim_target(x1, x2, 1.7), expect, atol=1e-5)
    # same structure in both: the target keeps it, at xi times the larger contrast
    np.testing.assert_allclose(ssim_target(0.2 + 0.1 * u1, 0.7 + 0.4 * u1), 1.7 * 0.4 * u1, atol=1e-5)
    # opposite structures cancel: no structure survives (Eq. 10 has nothing to normalise)
    np.testing.assert_allclose(ssim_target(0.5 + 0.2 * u1, 0.5 - 0.2 * u1), 0.0, atol=1e-9)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.float64))[None, None]


def test_fusion_ssim_on_one_patch_by_hand():
    u1, u2 = _ramps()
    x1, x2 = 0.4 + 0.3 * u1, 0.6 + 0.5 * u2
    target = 1.7 * 0.5 * (u1 + u2) / math.sqrt(2.0)
    g = gaussian_window(11, 1.5, dtype=torch.float64).numpy()
    c = 0.03**2

    def ssim(f):
        return float(fusion_ssim_map(_t(f), _t(x1), _t(x2)).reshape(-1)[0])

    assert fusion_ssim_map(_t(target), _t(x1), _t(x2)).shape == (1, 1, 1, 1)  # one 11 x 11 patch
    # the fused patch equal to the target (any brightness): SSIM 1, L_F = 0
    assert ssim(target + 0.5) == pytest.approx(1.0, abs=1e-6)
    # a flat fused patch: C / (sigma_target^2 + C), sigma^2 the Gaussian-weighted variance
    var_t = (g * target**2).sum() - (g * target).sum() ** 2
    assert ssim(np.full((11, 11), 0.3)) == pytest.approx(c / (var_t + c), rel=1e-5)
    # the fused patch = x1 (contrast 0.3, structure u1): Eq. (11) with the weighted moments
    cov = (g * target * x1).sum() - (g * target).sum() * (g * x1).sum()
    var1 = (g * x1**2).sum() - (g * x1).sum() ** 2
    assert ssim(x1) == pytest.approx((2 * cov + c) / (var_t + var1 + c), rel=1e-5)


def test_fusion_ssim_filters_equal_a_per_patch_loop():
    rng = np.random.default_rng(3)
    i1, i2, f = (rng.random((14, 16)) for _ in range(3))
    i2[:, :8] = 0.5  # a flat region: its contrast is only the guard
    got = fusion_ssim_map(_t(f), _t(i1), _t(i2), xi=1.7)[0, 0].numpy()
    g = gaussian_window(11, 1.5, dtype=torch.float64).numpy()
    c = 0.03**2
    want = np.zeros((4, 6))
    for y in range(4):
        for x in range(6):
            tp = ssim_target(i1[y : y + 11, x : x + 11], i2[y : y + 11, x : x + 11], 1.7)
            fp = f[y : y + 11, x : x + 11]
            mt, mf = (g * tp).sum(), (g * fp).sum()
            vt, vf = (g * (tp - mt) ** 2).sum(), (g * (fp - mf) ** 2).sum()
            cv = (g * (tp - mt) * (fp - mf)).sum()
            want[y, x] = (2 * cv + c) / (vt + vf + c)
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9)


def test_loss_terms_by_hand():
    cfg = Config()
    torch.manual_seed(1)
    ir, vi = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    out = {
        "ir_hat": ir + 0.1,
        "vi_hat": vi - 0.2,
        "w1": torch.full_like(ir, 0.3),
        "w2": torch.full_like(ir, 0.5),
    }
    out["fused"] = out["w1"] * ir + out["w2"] * vi
    t = ifesnet_loss(cfg, ir, vi, out)
    assert float(t["rec_ir"]) == pytest.approx(0.01, rel=1e-4)  # MSE, Eq. (7)
    assert float(t["rec_vi"]) == pytest.approx(0.04, rel=1e-4)
    assert float(t["weight_map"]) == pytest.approx(0.2, rel=1e-5)  # |1 - 0.3 - 0.5|, Eq. (13)
    ssim = fusion_ssim_map(out["fused"], ir, vi).mean()
    assert float(t["fusion_ssim"]) == pytest.approx(1 - float(ssim), abs=1e-6)
    assert float(t["total"]) == pytest.approx(sum(float(t[k]) for k in t if k != "total"), rel=1e-6)
    t = ifesnet_loss(Config(recon_loss="mae"), ir, vi, out)  # Table VI
    assert float(t["rec_ir"]) == pytest.approx(0.1, rel=1e-4)
    assert float(t["rec_vi"]) == pytest.approx(0.2, rel=1e-4)
    t = ifesnet_loss(Config(fusion_loss="vp"), ir, vi, out)  # Table VII: L_F replaced by VP
    assert "fusion_ssim" not in t
    vp = vp_loss(out["fused"], ir, vi)
    assert float(t["vp_edge"]) == pytest.approx(float(vp["edge"]), rel=1e-6)
    assert float(t["vp_contrast"]) == pytest.approx(float(vp["contrast"]), rel=1e-6)
    assert float(t["total"]) == pytest.approx(sum(float(t[k]) for k in t if k != "total"), rel=1e-6)


def test_vp_loss_known_answers():
    """Zero when the fused image is the stronger source (the other flat); a fused image with a of
    the stronger source's detail gives 1 - a per term (both scale linearly), up to the square-root
    floor; and a gradient reaches the fused image only."""
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    i1 = (0.5 + 0.4 * torch.sin(xx / 3.0) * torch.cos(yy / 4.0)).reshape(1, 1, 32, 32)
    flat = torch.full_like(i1, 0.3)
    zero = vp_loss(i1, i1, flat)
    assert float(zero["edge"]) < 1e-6 and float(zero["contrast"]) < 1e-6
    assert float(vp_loss(i1, flat, i1)["edge"]) < 1e-6  # symmetric in the sources
    for a in (0.25, 0.5):
        half = vp_loss(0.3 + a * (i1 - 0.5), i1, flat)  # detail scaled by a (offset irrelevant)
        assert float(half["edge"]) == pytest.approx(1 - a, abs=2e-3)
        assert float(half["contrast"]) == pytest.approx(1 - a, abs=2e-3)
    f = (0.5 * i1 + 0.5 * flat).requires_grad_(True)
    src = i1.clone().requires_grad_(True)
    loss = sum(vp_loss(f, src, flat).values())
    loss.backward()
    assert f.grad is not None and float(f.grad.abs().sum()) > 0 and src.grad is None
    with pytest.raises(ValueError, match="one shape"):
        vp_loss(f, i1[..., :-1], flat[..., :-1])


def test_vp_loss_is_float32_accurate_under_bf16_autocast():
    """The contrast term's local variance (E[x^2] - E[x]^2) cancels in bfloat16 on bright, weakly
    textured patches; the loss is computed in float32 whatever the precision around it."""
    g = torch.Generator().manual_seed(0)
    i1 = 0.8 + 0.01 * torch.rand(1, 1, 40, 48, generator=g)  # bright, faint texture
    i2 = torch.full_like(i1, 0.6)
    f = 0.7 + 0.005 * torch.rand(1, 1, 40, 48, generator=g)
    ref = vp_loss(f, i1, i2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = vp_loss(f, i1, i2)
        both = vp_loss(f.bfloat16(), i1.bfloat16(), i2.bfloat16())
    assert got["contrast"].dtype == torch.float32 and both["contrast"].dtype == torch.bfloat16
    for term in ("edge", "contrast"):
        assert float(got[term]) == pytest.approx(float(ref[term]), rel=1e-5)
    # the bf16 inputs differ from the float32 ones by rounding only (8 bits of mantissa at 0.8)
    assert float(both["contrast"]) == pytest.approx(float(ref["contrast"]), rel=0.1)


def test_vp_loss_ranks_the_more_detailed_source_above_any_blend():
    """Why Table VII's VP model fuses to the infrared image (Config docstring): the loss asks for
    the stronger source's detail at each pixel, so a blend of two sources with detail in
    different places loses on both terms against the more detailed source alone, and the more
    detailed source wins whichever it is."""
    yy, xx = torch.meshgrid(torch.arange(48.0), torch.arange(64.0), indexing="ij")
    rich = (0.5 + 0.3 * torch.sin(xx / 1.5) * torch.cos(yy / 2.0)).reshape(1, 1, 48, 64)
    poor = (0.4 + 0.15 * torch.cos(yy / 4.0) * (xx > 40)).reshape(1, 1, 48, 64)  # weak detail, right only
    for a, b in ((rich, poor), (poor, rich)):  # symmetric in the sources
        alone = vp_loss(rich, a, b)
        for w in (0.25, 0.5, 0.75):
            blend = vp_loss(w * rich + (1 - w) * poor, a, b)
            for term in ("edge", "contrast"):
                assert float(alone[term]) < float(blend[term]), (w, term)
        assert float(alone["edge"]) < float(vp_loss(poor, a, b)["edge"])


# --------------------------------------------------------------------------------------------
# training: L_M, resume, card
# --------------------------------------------------------------------------------------------


def _write_pairs(root: Path, n: int, size=(30, 34), seed: int = 0) -> Path:
    """Synthetic pairs: a warm blob (infrared) and a textured gradient (visible, colour)."""
    rng = np.random.default_rng(seed)
    for sub in ("ir", "vi"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        cy, cx = rng.uniform(5, h - 5), rng.uniform(5, w - 5)
        ir = 40 + 180 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 30.0)
        vi = 60 + 120 * (xx / w) + 30 * np.sin(yy / 2.0 + i)
        Image.fromarray(ir.astype(np.uint8), "L").save(root / "ir" / f"{i:03d}.png")
        Image.fromarray(np.stack([vi, vi * 0.9, vi * 0.8], -1).astype(np.uint8), "RGB").save(
            root / "vi" / f"{i:03d}.png"
        )
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return _write_pairs(tmp_path_factory.mktemp("ifesnet_pairs"), 6)


def _tiny(epochs: int, **kw) -> Config:
    return Config(**{**TINY, "epochs": epochs, "crop": 16, "crops_per_pair": 1, **kw})


def _mean_lm(net: IFESNetModel, data: Path, tau: float) -> float:
    from ivfuse.data.training import CenterCropPairs

    ds = CenterCropPairs(data, crop=24)
    with torch.no_grad():
        w = net.eval().weight_maps(ds.ir, ds.vi)
    return float((tau - w[:, :1] - w[:, 1:]).abs().mean())


def test_weight_map_constraint_drives_w1_plus_w2_to_tau(data, tmp_path):
    # at initialisation both sigmoids sit near 1/2, so tau = 1 would hold by accident: use 0.5
    cfg = _tiny(12, tau=0.5, lr=1e-3, crops_per_pair=2)
    torch.manual_seed(0)
    before = _mean_lm(IFESNetModel(cfg), data, 0.5)
    card = train(training_spec(cfg), RunOptions(data, tmp_path / "lm", seed=0, progress=False))
    net, _ = load_weights(tmp_path / "lm" / "weights.safetensors")
    after = _mean_lm(net, data, 0.5)
    assert before > 0.4 and after < 0.05, (before, after)
    assert card["final_losses"]["weight_map"] < 0.05


def test_training_logs_terms_and_resumes_bit_identically(data, tmp_path):
    full = tmp_path / "full"
    card = train(training_spec(_tiny(2)), RunOptions(data, full, seed=1, progress=False))
    hist = list(csv.DictReader(open(full / "losses.csv")))
    for term in ("rec_ir", "rec_vi", "fusion_ssim", "weight_map", "total"):
        assert term in hist[0]
    part = tmp_path / "part"
    assert train(training_spec(_tiny(2)), RunOptions(data, part, seed=1, progress=False, stop_after=1)) == {
        "stopped_at": 1
    }
    train(training_spec(_tiny(2)), RunOptions(data, part, seed=1, progress=False, resume=True))
    wa, wb = load_file(str(full / "weights.safetensors")), load_file(str(part / "weights.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert [r["total"] for r in csv.DictReader(open(part / "losses.csv"))] == [h["total"] for h in hist]
    # the card says what was reduced
    assert card["reduced_scale"] is True and card["epochs"] == 2
    assert card["deviations_from_recipe"]["crop"] == {"used": 16, "recipe": 128}
    assert any("110 TNO" in n for n in card["recipe_notes"])


def test_cli_train_full_network_on_tiny_crops(data, tmp_path):
    out = tmp_path / "cli_run"
    r = runner.invoke(
        app,
        [
            "train",
            "ifesnet",
            "--data",
            str(data),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--crop",
            "16",
            "--threads",
            "1",
            "--no-progress",
        ],
    )
    assert r.exit_code == 0, r.output
    card = json.loads((out / "card.json").read_text())
    assert card["method"] == "ifesnet" and card["config"]["stage_widths"] == [64, 128, 256, 256]
    assert card["data"]["pairs"] == 6 and card["epochs"] == 1  # one crop of each pair per epoch
    net, meta = load_weights(out / "weights.safetensors")
    assert meta["method"] == "ifesnet" and parameter_count(net) == 4_761_540


# --------------------------------------------------------------------------------------------
# inference: tiles, smoothing, weights, CLI
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ifesnet_run")
    train(training_spec(_tiny(1)), RunOptions(data, out, seed=0, progress=False))
    return out / "weights.safetensors"


@pytest.mark.parametrize("network,stages", [("ifem", 3), ("no_ifem", 2), ("hc", 4)])
def test_tiled_equals_untiled(network, stages):
    torch.manual_seed(0)
    net = IFESNetModel(Config(network=network, stages=stages, **TINY))
    rng = np.random.default_rng(0)
    ir, vi = rng.random((45, 58), dtype=np.float32), rng.random((45, 58), dtype=np.float32)
    whole = IFESNet(net, tile=None).fuse(ir, vi)
    tiled = IFESNet(net, tile=16).fuse(ir, vi)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    with pytest.raises(ValueError, match="receptive"):
        IFESNet(net, margin=net.receptive_radius() - 1)


def test_smoothing_is_the_5x5_gaussian_of_variance_2():
    imp = torch.zeros(1, 1, 9, 9)
    imp[0, 0, 4, 4] = 1.0
    out = smooth_maps(imp)[0, 0].numpy()
    g = np.exp(-(np.arange(-2, 3) ** 2) / (2 * 2.0))  # variance 2
    k = np.outer(g, g) / np.outer(g, g).sum()
    np.testing.assert_allclose(out[2:7, 2:7], k, rtol=1e-5)
    assert out.sum() == pytest.approx(1.0, abs=1e-6)
    const = torch.full((1, 2, 6, 7), 0.3)
    torch.testing.assert_close(smooth_maps(const), const)


def test_fuser_smooth_option(trained):
    rng = np.random.default_rng(1)
    ir, vi = rng.random((20, 23), dtype=np.float32), rng.random((20, 23), dtype=np.float32)
    plain, smooth = create_ifesnet(weights=trained), create_ifesnet(weights=trained, smooth=True)
    w1, w2 = plain.weight_maps(ir, vi)
    s1, s2 = smooth.weight_maps(ir, vi)
    expect = smooth_maps(torch.from_numpy(np.stack([w1, w2]))[None])[0].numpy()
    np.testing.assert_allclose(np.stack([s1, s2]), expect, atol=1e-6)
    np.testing.assert_allclose(smooth.fuse(ir, vi), np.clip(s1 * ir + s2 * vi, 0, 1), atol=1e-6)
    assert not np.allclose(smooth.fuse(ir, vi), plain.fuse(ir, vi))


def test_registered_with_metadata():
    info = registry.info("ifesnet")
    assert info.family == "self-supervised" and info.trainable and info.weights == "ifesnet.safetensors"
    if not info.weights_shipped:
        with pytest.raises(WeightsError, match="ivfuse train ifesnet"):
            registry.create("ifesnet")
    else:
        assert info.weights_card["method"] == "ifesnet" and info.weights_card["reduced_scale"] is True


def _pair(tmp_path: Path, colour: bool):
    from ivfuse.data.synthetic import night_scene

    s = night_scene(40, 53)  # odd width
    ir = io.write_image(tmp_path / "ir.png", s.ir)
    vi_img = s.vi if colour else (s.vi.mean(axis=2) if s.vi.ndim == 3 else s.vi)
    vi = io.write_image(tmp_path / ("vi.jpg" if colour else "vi.png"), vi_img)
    return ir, vi


@pytest.fixture(scope="module")
def varied(tmp_path_factory) -> Path:
    """Weights of a tiny network whose weight maps vary strongly in space (last layer x 30), so
    that smoothing them shows after 8-bit rounding."""
    torch.manual_seed(2)
    cfg = Config(**TINY)
    net = IFESNetModel(cfg)
    with torch.no_grad():
        net.ivif.head.convs[-1].weight.mul_(30.0)
    path = tmp_path_factory.mktemp("ifesnet_varied") / "w.safetensors"
    export_safetensors(path, dict(net.state_dict()), {"method": "ifesnet", "config": cfg.to_dict()})
    return path


@pytest.mark.parametrize("colour", [False, True])
def test_cli_fuse_ifesnet_gray_and_colour(tmp_path, varied, colour):
    ir, vi = _pair(tmp_path, colour)
    out = tmp_path / "f.png"
    base = ["fuse", str(ir), str(vi), "-m", "ifesnet", "-p", f"weights={varied}", "-p", "tile=24"]
    r = runner.invoke(app, [*base, "-o", str(out)])
    assert r.exit_code == 0, r.output
    img = io.read_image(out)
    assert img.shape == ((40, 53, 3) if colour else (40, 53)) and img.dtype == np.uint8
    vi_arr = io.read_image(vi).astype(np.float32) / 255
    vi_y = io.rgb_to_ycbcr(vi_arr)[..., 0] if colour else vi_arr
    ir_arr = io.read_image(ir).astype(np.float32) / 255
    expect = create_ifesnet(weights=varied).fuse(ir_arr, np.clip(vi_y, 0, 1))
    got = io.rgb_to_ycbcr(img.astype(np.float32) / 255)[..., 0] if colour else img / 255.0
    assert np.abs(got - expect).max() * 255 <= 2.0
    r = runner.invoke(app, [*base, "-o", str(tmp_path / "s.png"), "-p", "smooth=true"])
    assert r.exit_code == 0, r.output
    assert not np.array_equal(io.read_image(tmp_path / "s.png"), img)
    # one untiled pass gives the same image; a bad tile or smooth value is refused in one line
    r = runner.invoke(app, [*base, "-o", str(tmp_path / "n.png"), "-p", "tile=none"])
    assert r.exit_code == 0, r.output
    assert np.abs(io.read_image(tmp_path / "n.png").astype(int) - img).max() <= 1
    for bad in ("tile=-3", "smooth=maybe"):
        r = runner.invoke(app, [*base, "-o", str(tmp_path / "b.png"), "-p", bad])
        assert r.exit_code == 2 and bad.split("=")[0] in r.output and not (tmp_path / "b.png").exists()


def test_fusion_ssim_is_bounded_on_8bit_images_with_flat_regions():
    # float32 8-bit images with flat areas (C_n at the guard): Eq. (11) stays in [-1, 1]
    rng = np.random.default_rng(5)
    i1 = np.round(rng.random((40, 40)) * 255) / 255
    i2 = np.full((40, 40), 0.5)
    i2[20:, :] = np.round(rng.random((20, 40)) * 255) / 255
    i1[:, :15] = 0.2
    f = rng.random((40, 40))
    m = fusion_ssim_map(*(torch.from_numpy(a.astype(np.float32))[None, None] for a in (f, i1, i2)))
    assert m.dtype == torch.float32 and bool(torch.isfinite(m).all())
    assert float(m.min()) >= -1.0 - 1e-5 and float(m.max()) <= 1.0 + 1e-5


def test_training_spec_is_the_papers_optimiser_and_loss():
    spec = training_spec()
    assert spec.batch_size == 1 and [s.name for s in spec.stages] == ["joint"]
    opt = spec.stages[0].optimizer([torch.nn.Parameter(torch.zeros(1))])
    assert type(opt) is torch.optim.AdamW  # decoupled decay: coupled L2 collapsed the network
    d = opt.defaults
    assert d["lr"] == 1e-4 and d["betas"] == (0.9, 0.999) and d["weight_decay"] == 5e-3  # Sec. IV-A
    assert spec.total_epochs == 32 and spec.extra_card["reduced_scale"] is True
    assert any("AdamW" in n for n in spec.extra_card["recipe_notes"])
    coupled = training_spec(Config(weight_decay_mode="coupled")).stages[0]
    assert type(coupled.optimizer([torch.nn.Parameter(torch.zeros(1))])) is torch.optim.Adam
    with pytest.raises(ValueError, match="weight_decay_mode"):
        Config(weight_decay_mode="l1")


def test_decoupled_decay_shrinks_by_lr_times_decay_where_coupled_moves_a_full_step():
    """Why the default is AdamW: with no loss gradient, coupled L2 decay is normalised by Adam into
    a full lr step towards 0; decoupled decay shrinks a weight by lr * wd of its value."""
    for mode, expected in (("coupled", 0.5 - 1e-4), ("decoupled", 0.5 * (1 - 1e-4 * 5e-3))):
        w = torch.nn.Parameter(torch.tensor([0.5]))
        opt = training_spec(Config(weight_decay_mode=mode)).stages[0].optimizer([w])
        w.grad = torch.zeros(1)  # the loss does not depend on this weight
        opt.step()
        assert float(w.detach()) == pytest.approx(expected, rel=1e-6), mode


@pytest.mark.parametrize(
    "kw",
    [dict(network="no_ifem"), dict(network="hc", stages=4), dict(stages=1, recon_loss="mae"),
     dict(stages=1, fusion_loss="vp")],
)  # fmt: skip
def test_variants_train_and_load_back(data, tmp_path, kw):
    card = train(training_spec(_tiny(1, **kw)), RunOptions(data, tmp_path / "v", seed=0, progress=False))
    for k, v in kw.items():
        assert card["deviations_from_recipe"][k] == {"used": v, "recipe": getattr(Config(), k)}
    net, _ = load_weights(tmp_path / "v" / "weights.safetensors")
    assert net.network == kw.get("network", "ifem") and len(net.ivif.int) == kw.get("stages", 3) - 1
    f = registry.create("ifesnet", weights=tmp_path / "v" / "weights.safetensors")
    assert f.fuse(np.full((9, 11), 0.2, np.float32), np.full((9, 11), 0.7, np.float32)).shape == (9, 11)
