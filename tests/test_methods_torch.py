"""The shared plumbing of the deep methods (ivfuse.methods._torch): weights files, checks, tiles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from ivfuse.errors import InputError, WeightsError
from ivfuse.methods import _torch, registry


def test_tiles_equal_the_untiled_result_for_a_local_operator():
    # a 5x5 box filter has a receptive-field radius of 2: margins of 2 reproduce it exactly
    conv = nn.Conv2d(2, 1, 5, padding=2, padding_mode="reflect", bias=False)
    nn.init.uniform_(conv.weight)

    def forward(a, b):
        return conv(torch.cat([a, b], dim=1))

    g = torch.Generator().manual_seed(0)
    ir, vi = torch.rand(1, 1, 37, 53, generator=g), torch.rand(1, 1, 37, 53, generator=g)
    with torch.no_grad():
        whole = forward(ir, vi)
        exact = _torch.tiled(forward, ir, vi, tile=16, margin=2)
        short = _torch.tiled(forward, ir, vi, tile=16, margin=1)
    assert exact.shape == whole.shape
    assert torch.allclose(exact, whole, atol=1e-6)
    assert not torch.allclose(short, whole, atol=1e-6)  # too little context shows at the seams
    assert _torch.tiled(forward, ir, vi, tile=None, margin=0).shape == whole.shape


def test_planes_checks_and_run_planes_clips():
    a = np.zeros((4, 5), np.float32)
    with pytest.raises(InputError, match="2-D luma planes"):
        _torch.planes(a[..., None], a, "X")
    with pytest.raises(InputError, match="sizes differ"):
        _torch.planes(a, a[:3], "X")
    with pytest.raises(InputError, match="too small for X"):
        _torch.planes(a[:1], a[:1], "X")
    ir, vi = _torch.planes(a + 0.7, a + 0.6, "X")
    out = _torch.run_planes(lambda x, y: x + y, ir, vi, torch.device("cpu"))
    assert out.dtype == np.float32 and out.shape == (4, 5) and np.all(out == 1.0)  # 1.3 clipped


def test_weights_files(tmp_path):
    net = nn.Linear(3, 2)
    path = tmp_path / "w.safetensors"
    save_file(dict(net.state_dict()), str(path), metadata={"method": "toy", "config": '{"width": 3}'})
    state, meta = _torch.read_weights(path, "toy", "Toy")
    assert _torch.config_of(meta) == {"width": 3}
    other = _torch.load_state(nn.Linear(3, 2), state, path, "Toy")
    assert torch.equal(other.weight, net.weight)
    with pytest.raises(WeightsError, match="does not match the Toy network"):
        _torch.load_state(nn.Linear(4, 2), state, path, "Toy")
    with pytest.raises(WeightsError, match="weights of method 'toy', not didfuse"):
        _torch.read_weights(path, "didfuse", "DIDFuse")
    with pytest.raises(WeightsError, match="train them with `ivfuse train toy"):
        _torch.read_weights(tmp_path / "none.safetensors", "toy", "Toy")
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        _torch.read_weights(tmp_path / "bad.safetensors", "toy", "Toy")
    with pytest.raises(WeightsError, match="Toy weights are not installed"):
        _torch.shipped("no_such_method.safetensors", "toy", "Toy")
    assert _torch.shipped("didfuse.safetensors", "didfuse", "DIDFuse").is_file()


@pytest.mark.parametrize("method", [m.name for m in registry.available() if m.weights])
def test_weights_errors_of_every_deep_method(method, tmp_path):
    """Each deep method's weights loading says what is wrong with a file in one WeightsError."""
    import importlib

    from ivfuse.train.checkpoint import export_safetensors

    load_weights = importlib.import_module(registry.info(method).fuser.__module__).load_weights
    with pytest.raises(WeightsError, match=f"ivfuse train {method}"):
        registry.create(method, weights=tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="not a readable safetensors"):
        load_weights(tmp_path / "bad.safetensors")
    foreign = "jcae" if method != "jcae" else "didfuse"
    export_safetensors(tmp_path / "other.safetensors", {"x": torch.zeros(2)}, {"method": foreign})
    with pytest.raises(WeightsError, match=f"method '{foreign}', not {method}"):
        load_weights(tmp_path / "other.safetensors")
    partial = {"no.such.weight": torch.zeros(3)}
    export_safetensors(tmp_path / "partial.safetensors", partial, {"method": method})
    with pytest.raises(WeightsError, match="does not match"):
        load_weights(tmp_path / "partial.safetensors")


def test_load_state_flushes_subnormal_weights(tmp_path):
    """Weight decay leaves weights below 1.2e-38; multiplying with them is many times slower."""
    net = nn.Linear(3, 2)
    w = torch.tensor([[1e-39, -3e-40, 0.5], [1.2e-38, -0.0, 2.0]])
    state = {"weight": w, "bias": torch.tensor([5e-45, 1.0])}
    out = _torch.load_state(nn.Linear(3, 2), state, tmp_path / "w.safetensors", "Toy")
    assert torch.equal(out.weight, torch.tensor([[0.0, 0.0, 0.5], [1.2e-38, 0.0, 2.0]]))  # 1.2e-38: normal
    assert out.bias.tolist() == [0.0, 1.0]
    assert w[0, 0].item() == pytest.approx(1e-39)  # the caller's tensors are not modified
    half = {"weight": torch.full((2, 3), 6e-8, dtype=torch.float16), "bias": torch.zeros(2)}
    assert torch.all(_torch.load_state(net, half, "h", "Toy").weight > 0)  # fp16-subnormal, fp32-normal
