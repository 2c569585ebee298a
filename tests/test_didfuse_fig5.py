"""scripts/didfuse_fig5.py: DIDFuse's Fig. 5 (Table 4's metrics over repeated trainings)."""

from __future__ import annotations

import csv
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ivfuse.methods import registry

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "didfuse_fig5.py"


def _script():
    spec = importlib.util.spec_from_file_location("didfuse_fig5", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _pairs(root: Path, n: int = 2) -> Path:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:56, 0:64]
    for sub in ("ir", "vi"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        ir = 30 + 200 * np.exp(-((yy - 20) ** 2 + (xx - 10 - 20 * i) ** 2) / 40.0)
        vi = 80 + 60 * np.sin(xx / 3.0 + i) * np.cos(yy / 5.0) + rng.normal(0, 4, yy.shape)
        Image.fromarray(ir.clip(0, 255).astype(np.uint8)).save(root / "ir" / f"{i:03d}.png")
        Image.fromarray(vi.clip(0, 255).astype(np.uint8)).save(root / "vi" / f"{i:03d}.png")
    return root


def test_train_runs_each_seed_once_and_resumes(tmp_path, monkeypatch):
    mod = _script()
    out = tmp_path / "fig5"
    (out / "seed_0").mkdir(parents=True)
    (out / "seed_0" / "weights.safetensors").write_bytes(b"x")  # finished: skipped
    (out / "seed_1").mkdir()
    (out / "seed_1" / "checkpoint.pt").write_bytes(b"x")  # unfinished: resumed
    calls = []
    monkeypatch.setattr(mod.subprocess, "run", lambda cmd, check: calls.append(cmd))
    mod.main(["train", "--data", str(tmp_path), "--out", str(out), "--runs", "3", "--device", "cpu",
              "--", "--set", "epochs=1"])  # fmt: skip
    assert len(calls) == 2
    seeds = [c[c.index("--seed") + 1] for c in calls]
    assert seeds == ["1", "2"]
    assert "--resume" in calls[0] and "--resume" not in calls[1]
    assert calls[1][-2:] == ["--set", "epochs=1"]
    assert calls[1][calls[1].index("--out") + 1] == str(out / "seed_2")


def test_eval_summary_and_plot_on_two_runs(tmp_path, capsys):
    """Two runs (the shipped weights, and a copy with one convolution halved) on a folder of two
    pairs: one value per run, set and metric; the copy of the shipped weights scores exactly as
    the shipped row; the summary counts runs against the paper's lines; the figure is drawn."""
    if not registry.info("didfuse").weights_shipped:
        pytest.skip("no shipped DIDFuse weights")
    from safetensors.torch import load_file, save_file

    mod = _script()
    data = _pairs(tmp_path / "toy")
    out = tmp_path / "fig5"
    shipped = registry.weights_path("didfuse.safetensors")
    (out / "seed_0").mkdir(parents=True)
    shutil.copy(shipped, out / "seed_0" / "weights.safetensors")
    tensors = load_file(str(shipped))
    name = next(k for k, v in tensors.items() if v.ndim == 4)
    tensors[name] = tensors[name] * 0.5
    (out / "seed_1").mkdir()
    save_file(tensors, str(out / "seed_1" / "weights.safetensors"))
    (out / "seed_2").mkdir()  # unfinished: not scored
    mod.main(["eval", "--out", str(out), "--device", "cpu", "--datasets", str(data)])
    with (out / "fig5.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["run"] for r in rows} == {"shipped", "seed_0", "seed_1"}
    assert len(rows) == 3 * len(mod.METRICS) and {r["dataset"] for r in rows} == {"toy"}
    values = mod.read(out / "fig5.csv")
    for m in mod.METRICS:
        v = values[("toy", m)]
        assert v["seed_0"] == pytest.approx(v["shipped"], rel=1e-9)  # same weights, same numbers
    v = {m: values[("toy", m)] for m in mod.METRICS}
    assert any(v[m]["seed_1"] != pytest.approx(v[m]["seed_0"]) for m in mod.METRICS)
    capsys.readouterr()
    mod.main(["plot", "--out", str(out), "--png", str(tmp_path / "fig5.png")])
    text = capsys.readouterr().out
    en = [ln for ln in text.splitlines() if ln.startswith("| toy | EN |")]
    assert len(en) == 1 and "| 2 |" in en[0] and "| – | – |" in en[0]  # no paper lines for a user folder
    img = np.asarray(Image.open(tmp_path / "fig5.png"))
    assert img.shape[1] > 4 * img.shape[0] and img[..., :3].std() > 10  # one row of six panels


def test_paper_lines_come_from_table4():
    mod = _script()
    best, second, own = mod.competitors("tno", "SD")
    assert (best, second, own) == (32.249, 31.817, 42.657)  # DeepFuse, DenseFuse; DIDFuse's own value
    assert mod.competitors("toy", "SD") == (None, None, None)
