"""scripts/gpu_trip.py (development plumbing outside the package): the epochs a probe says fit a
budget, and a run taken through a way back of small files and rebuilt exactly."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from scripts.gpu_trip import collect, fit_epochs, join


def _losses(path, seconds):
    rows = ["epoch,stage,lr,seconds,total"]
    rows += [f"{i + 1},cud,0.001,{s},0.5" for i, s in enumerate(seconds)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_fit_epochs_from_the_probe(tmp_path):
    # first epoch 9 s (warm-up), then 2.0-2.2 s: median 2.0; the probe ran 30 s, so start-up (the
    # first epoch's warm-up included) is 30 - 4 * 2.0 = 22 s; 0.95 * (200 - 22) / 2.0 = 84.55 -> 84
    csv = _losses(tmp_path / "losses.csv", [9, 2.0, 2.2, 2.0])
    assert fit_epochs(csv, probe_wall=30, left=200) == 84
    assert fit_epochs(csv, probe_wall=30, left=200, margin=1.0) == 89
    assert fit_epochs(csv, probe_wall=30, left=10) == 1  # never below one epoch
    with pytest.raises(ValueError, match="finished 1 epoch"):
        fit_epochs(_losses(tmp_path / "one.csv", [9]), probe_wall=30, left=200)


def _run(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 64, 3), torch.nn.ReLU(), torch.nn.Conv2d(64, 1, 3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(3):
        loss = model(torch.randn(2, 1, 16, 16)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    run = tmp_path / "run"
    run.mkdir()
    ck = {
        "format": 1,
        "method": "didfuse",
        "epoch": 2,
        "total_epochs": 5,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "config": {"epochs": 5},
        "history": [{"epoch": 1, "total": 0.5}, {"epoch": 2, "total": 0.4}],
    }
    torch.save(ck, run / "checkpoint.pt")
    (run / "card.json").write_text(json.dumps({"method": "didfuse", "config": {"epochs": 5}}))
    _losses(run / "losses.csv", [3.0, 2.5])
    (run / "train.log").write_text("epoch 1/5\nepoch 2/5\n")
    return run, ck


def test_collect_cuts_the_compact_checkpoint_and_join_rebuilds_the_run(tmp_path):
    run, ck = _run(tmp_path)
    files = collect(run, tmp_path / "back", part_bytes=4_000)
    parts = sorted(p for p in files if ".part" in p.name)
    assert len(parts) >= 2 and all(p.stat().st_size <= 4_000 for p in parts)
    manifest = json.loads((tmp_path / "back" / "compact.json").read_text())
    assert manifest["parts"] == len(parts) and sum(p.stat().st_size for p in parts) == manifest["bytes"]

    rebuilt = join(tmp_path / "back", tmp_path / "rebuilt")
    back = torch.load(rebuilt / "checkpoint.pt", weights_only=True)
    assert back["epoch"] == 2 and back["history"] == ck["history"]
    for k, v in ck["model"].items():
        assert torch.equal(back["model"][k], v)
    for i, st in ck["optimizer"]["state"].items():  # Adam: step kept, first moment restarts
        assert torch.equal(back["optimizer"]["state"][i]["step"], st["step"])
        assert torch.equal(back["optimizer"]["state"][i]["exp_avg"], torch.zeros_like(st["exp_avg"]))
    weights = load_file(rebuilt / "weights.safetensors")
    assert set(weights) == set(ck["model"])
    assert all(torch.equal(weights[k], ck["model"][k]) for k in weights)
    for name in ("card.json", "losses.csv", "train.log"):
        assert (rebuilt / name).read_bytes() == (run / name).read_bytes()

    with pytest.raises(FileExistsError):  # never over a run
        join(tmp_path / "back", tmp_path / "rebuilt")
    last = parts[-1]
    last.write_bytes(last.read_bytes()[:-1] + bytes([last.read_bytes()[-1] ^ 1]))
    with pytest.raises(ValueError, match="do not match"):  # a part damaged on the way
        join(tmp_path / "back", tmp_path / "other")


def test_slim_keeps_the_weights_from_travelling_and_unslim_restores_the_index(tmp_path, monkeypatch):
    import subprocess

    from scripts import gpu_trip

    repo = tmp_path / "repo"
    for rel, size in [
        ("src/ivfuse/weights/a.safetensors", 5000),
        ("src/ivfuse/weights/a.json", 10),
        ("ablations/x/weights.safetensors", 3000),
        ("README.md", 20),
    ]:
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_bytes(b"x" * size)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "init"], check=True)
    (repo / ".git" / "info").mkdir(exist_ok=True)
    (repo / ".git" / "info" / "exclude").write_text("# mine\n")
    job = repo / "gpu_job_x"
    job.mkdir()
    (job / "data.bin").write_bytes(b"d" * 700)
    monkeypatch.setattr(gpu_trip, "ROOT", repo)

    assert gpu_trip.travel_bytes() == 5000 + 10 + 3000 + 20 + 700  # the job is not ignored here
    gpu_trip.slim()
    gpu_trip.slim()  # twice: the same
    assert gpu_trip.travel_bytes() == 10 + 20 + 700
    status = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True).stdout
    assert "D  src/ivfuse/weights/a.safetensors" in status and "D  ablations/x/weights.safetensors" in status
    assert (repo / "src/ivfuse/weights/a.safetensors").stat().st_size == 5000  # still on disk
    gpu_trip.unslim()
    status = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True).stdout
    assert status.strip() == "?? gpu_job_x/"
    assert (repo / ".git" / "info" / "exclude").read_text() == "# mine\n"
    assert gpu_trip.travel_bytes(["gpu_job_x"]) == 5000 + 10 + 3000 + 20 + 700
