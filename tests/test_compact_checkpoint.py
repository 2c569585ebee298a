"""Compact checkpoints (scripts/compact.py, development plumbing outside the package): 8-bit log
coding of Adam's second moment, exact weights, a rebuilt optimiser state that loads, and the size
saving."""

from __future__ import annotations

import pytest
import torch

from scripts.compact import (
    decode_log8,
    encode_log8,
    max_relative_error,
    pack,
    pack_file,
    unpack,
    unpack_file,
)


def test_log8_round_trip_within_half_a_code_step():
    torch.manual_seed(0)
    v = torch.rand(5000) ** 8 * 3.0 + 1e-12  # spans about 40 octaves
    v[:5] = 0.0
    v[5:7] = 1e-21  # under the floor: stored as 0
    codes, rng = encode_log8(v)
    assert codes.dtype == torch.uint8 and int(codes[:7].max()) == 0 and int(codes[7:].min()) >= 1
    back = decode_log8(codes, rng)
    assert torch.equal(back[:7], torch.zeros(7))
    rel = ((back[7:] - v[7:]).abs() / v[7:]).max()
    assert float(rel) <= max_relative_error(rng) * 1.0001
    # the extremes are exact (codes 1 and 255)
    assert float(back[7:].max()) == float(v.max())
    lo, hi = rng
    assert hi - lo > 20 and max_relative_error(rng) < 0.06
    c, r = encode_log8(torch.full((3,), 0.25))  # one value: exact
    assert torch.equal(decode_log8(c, r), torch.full((3,), 0.25))
    c, r = encode_log8(torch.zeros(4))
    assert torch.equal(decode_log8(c, r), torch.zeros(4))


def _checkpoint():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(30, 20), torch.nn.ReLU(), torch.nn.Linear(20, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(5):
        loss = model(torch.randn(8, 30)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (
        model,
        opt,
        {
            "format": 1,
            "method": "x",
            "epoch": 3,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "history": [{"epoch": 1, "total": 0.5}],
        },
    )


def test_pack_unpack_keeps_weights_and_rebuilds_adam(tmp_path):
    model, opt, ck = _checkpoint()
    back = unpack(pack(ck))
    assert back["epoch"] == 3 and back["history"] == ck["history"] and "compact" not in back
    for k, v in ck["model"].items():
        assert torch.equal(back["model"][k], v)
    for i, st in ck["optimizer"]["state"].items():
        got = back["optimizer"]["state"][i]
        assert torch.equal(got["step"], st["step"])
        assert torch.equal(got["exp_avg"], torch.zeros_like(st["exp_avg"]))
        nz = st["exp_avg_sq"] > 0
        rel = ((got["exp_avg_sq"][nz] - st["exp_avg_sq"][nz]).abs() / st["exp_avg_sq"][nz]).max()
        assert float(rel) < 0.06
    fresh = torch.optim.Adam(model.parameters(), lr=1e-2)
    fresh.load_state_dict(back["optimizer"])  # the trainer's resume path
    torch.save(ck, tmp_path / "full.pt")
    size = pack_file(tmp_path / "full.pt", tmp_path / "small.pt")
    assert size < (tmp_path / "full.pt").stat().st_size
    unpack_file(tmp_path / "small.pt", tmp_path / "again.pt")
    again = torch.load(tmp_path / "again.pt", weights_only=True)
    assert torch.equal(again["model"]["0.weight"], ck["model"]["0.weight"])


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_halve_weights_keeps_the_fused_image_within_a_gray_level(tmp_path, one_thread):
    from safetensors import safe_open

    from ivfuse.methods.defusion import DeNet, load_weights
    from ivfuse.train.checkpoint import export_safetensors
    from scripts.compact import halve_weights

    torch.manual_seed(0)
    net = DeNet()
    with torch.no_grad():  # an untrained net saturates; scale the fused head into [0, 1]
        net.head_fused.conv.weight.mul_(2e-3)
        net.head_fused.conv.bias.fill_(0.3)
    path = tmp_path / "w.safetensors"
    export_safetensors(path, net.state_dict(), {"method": "defusion"})
    full = path.stat().st_size
    with pytest.raises(ValueError, match="gray levels"):
        halve_weights("defusion", path, limit_gray=-1.0, size=(40, 48))  # refused: stays float32
    assert path.stat().st_size == full
    diff = halve_weights("defusion", path, size=(40, 48))
    assert 0.0 <= diff <= 1.0
    assert path.stat().st_size < 0.55 * full
    with safe_open(str(path), framework="pt") as f:
        assert f.get_tensor("head_fused.conv.weight").dtype == torch.float16
        assert f.metadata()["dtype"] == "float16"
    back, _ = load_weights(path)
    assert back.head_fused.conv.weight.dtype == torch.float32
    assert not list(tmp_path.glob(".*fp16*"))
