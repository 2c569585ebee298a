"""The generic trainer with DIDFuse plugged in: determinism, kill-and-resume identity, stages,
logs, export/card, refusals (one line, non-zero exit) and a 2-process gloo DDP run."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from ivfuse.errors import TrainingError
from ivfuse.methods.didfuse import Config, DIDFuseNet, load_weights, training_spec
from ivfuse.train.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from ivfuse.train.spec import Stage, TrainSpec
from ivfuse.train.trainer import RunOptions, train

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _write_pairs(root: Path, n: int, size=(30, 26), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for sub in ("ir", "vi"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        h, w = size
        ir = (rng.random((h, w)) * 255).astype(np.uint8)
        vi = (rng.random((h, w, 3)) * 255).astype(np.uint8)
        Image.fromarray(ir, "L").save(root / "ir" / f"{i:03d}.png")
        Image.fromarray(vi, "RGB").save(root / "vi" / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return _write_pairs(tmp_path_factory.mktemp("pairs"), 6)


def _spec(epochs: int = 3, **kw) -> TrainSpec:
    cfg = Config(channels=8, epochs=epochs, batch_size=4, crop=16, lr_milestones=(2,), **kw)
    return training_spec(cfg)


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "weights.safetensors"))


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_training_dataset_centre_crop_gray(data):
    from ivfuse.data.training import CenterCropPairs, center_crop_box

    ds = CenterCropPairs(data, crop=16)
    assert len(ds) == 6
    item = ds[2]
    assert item["ir"].shape == (1, 16, 16) and item["vi"].shape == (1, 16, 16)
    assert item["ir"].dtype == torch.float32
    left, top, right, bottom = center_crop_box(26, 30, 16)  # width 26, height 30
    assert (left, top, right, bottom) == (5, 7, 21, 23)
    vi = Image.open(data / "vi" / "002.png").crop((left, top, right, bottom)).convert("L")
    np.testing.assert_array_equal(item["vi"][0].numpy(), np.asarray(vi, np.float32) / 255)


def test_deterministic_and_seed_sensitive(data, tmp_path):
    a = train(_spec(2), RunOptions(data, tmp_path / "a", seed=3, progress=False))
    train(_spec(2), RunOptions(data, tmp_path / "b", seed=3, progress=False))
    train(_spec(2), RunOptions(data, tmp_path / "c", seed=4, progress=False))
    wa, wb, wc = (_weights(tmp_path / s) for s in "abc")
    assert _same(wa, wb)
    assert not _same(wa, wc)
    assert a["epochs"] == 2 and a["seed"] == 3 and a["data"]["pairs"] == 6


def test_kill_and_resume_is_identical(data, tmp_path):
    full = tmp_path / "full"
    train(_spec(3), RunOptions(data, full, seed=1, progress=False))

    # crash in the middle of epoch 3 (after the epoch-2 checkpoint and the lr milestone)
    spec = _spec(3)
    inner = spec.stages[0].loss
    calls = {"n": 0}

    def dying(model, batch):
        calls["n"] += 1
        if calls["n"] == 5:  # 2 steps per epoch: step 1 of epoch 3
            raise KeyboardInterrupt
        return inner(model, batch)

    spec.stages[0].loss = dying
    killed = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        train(spec, RunOptions(data, killed, seed=1, progress=False))
    ck = load_checkpoint(killed / CHECKPOINT_NAME, "didfuse")
    assert ck["epoch"] == 2 and not (killed / "weights.safetensors").exists()
    assert not [p for p in killed.iterdir() if p.name.endswith(".tmp")]

    card = train(_spec(3), RunOptions(data, killed, seed=1, progress=False, resume=True))
    assert _same(_weights(full), _weights(killed))
    assert card["epochs"] == 3
    rows_full = list(csv.DictReader(open(full / "losses.csv")))
    rows_res = list(csv.DictReader(open(killed / "losses.csv")))
    assert [r["total"] for r in rows_full] == [r["total"] for r in rows_res]
    assert [float(r["lr"]) for r in rows_res] == pytest.approx([1e-3, 1e-3, 1e-4])


def test_multi_stage_resume_across_stage_boundary(data, tmp_path):
    """A two-stage method (decoder-only warm-up, then everything) resumes exactly too."""

    def spec() -> TrainSpec:
        s = _spec(2)
        first = Stage(
            name="decoder",
            epochs=1,
            loss=s.stages[0].loss,
            optimizer=lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
            parameters=lambda m: m.decoder.parameters(),
        )
        s.stages = [first, s.stages[0]]
        return s

    train(spec(), RunOptions(data, tmp_path / "full", seed=2, progress=False))
    r = train(spec(), RunOptions(data, tmp_path / "part", seed=2, progress=False, stop_after=1))
    assert r == {"stopped_at": 1}
    train(spec(), RunOptions(data, tmp_path / "part", seed=2, progress=False, resume=True))
    assert _same(_weights(tmp_path / "full"), _weights(tmp_path / "part"))
    stages = [row["stage"] for row in csv.DictReader(open(tmp_path / "full" / "losses.csv"))]
    assert stages == ["decoder", "autoencoder", "autoencoder"]


def test_logs_export_and_card(data, tmp_path):
    out = tmp_path / "run"
    card = train(_spec(2), RunOptions(data, out, seed=0, progress=True))
    rows = list(csv.DictReader(open(out / "losses.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    for term in (
        "pixel_vi",
        "dssim_vi",
        "pixel_ir",
        "dssim_ir",
        "gap_background",
        "gap_detail",
        "gradient",
        "total",
        "lr",
        "seconds",
    ):
        assert term in rows[0]
    on_disk = json.loads((out / "card.json").read_text())
    assert on_disk == json.loads(json.dumps(card))
    for key in (
        "method",
        "config",
        "data",
        "epochs",
        "seed",
        "wall_time_s",
        "device",
        "ivfuse",
        "reduced_scale",
        "metrics",
    ):
        assert key in on_disk
    assert on_disk["method"] == "didfuse" and on_disk["data"]["pairs"] == 6
    assert on_disk["reduced_scale"] is True  # 2 epochs, crop 16, 8 channels: not the recipe
    assert on_disk["deviations_from_recipe"]["epochs"] == {"used": 2, "recipe": 120}
    # every epoch's losses, as losses.csv has them (6 significant digits)
    hist = on_disk["loss_history"]
    assert hist["epoch"] == [1, 2] and hist["stage"] == [r["stage"] for r in rows]
    for term in ("total", "pixel_vi", "lr"):
        assert hist[term] == pytest.approx([float(r[term]) for r in rows], rel=1e-5)
    assert hist["total"][-1] == pytest.approx(on_disk["final_losses"]["total"], rel=1e-5)
    # the exported weights load through the method's safetensors loader
    net, meta = load_weights(out / "weights.safetensors")
    assert isinstance(net, DIDFuseNet) and meta["method"] == "didfuse"
    ck = load_checkpoint(out / CHECKPOINT_NAME, "didfuse")
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in ck["model"].items())


# --- refusals through the CLI ---------------------------------------------------------------


def _cli(*args: str):
    from ivfuse.cli import app

    return CliRunner().invoke(app, ["train", "didfuse", *args])


def _assert_refused(result, text: str):
    assert result.exit_code != 0, result.output
    assert text in result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 or "error" in lines[0], result.output
    assert "Traceback" not in result.output


def test_refuses_empty_and_unpaired_folders(tmp_path):
    empty = tmp_path / "empty"
    (empty / "ir").mkdir(parents=True)
    (empty / "vi").mkdir()
    _assert_refused(_cli("--data", str(empty), "--out", str(tmp_path / "o1")), "no image pairs")
    _assert_refused(_cli("--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o2")), "nope")
    unpaired = _write_pairs(tmp_path / "unpaired", 2)
    shutil.copy(unpaired / "ir" / "000.png", unpaired / "ir" / "extra.png")
    _assert_refused(_cli("--data", str(unpaired), "--out", str(tmp_path / "o3")), "extra.png")


def test_refuses_unwritable_output(data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _assert_refused(_cli("--data", str(data), "--out", str(blocker / "run")), "not writable")
    _assert_refused(_cli("--data", str(data), "--out", str(blocker)), "not a folder")


@pytest.mark.skipif(torch.cuda.is_available(), reason="only meaningful without a GPU")
def test_refuses_cuda_without_gpu(data, tmp_path):
    _assert_refused(
        _cli("--data", str(data), "--out", str(tmp_path / "o"), "--device", "cuda"), "no CUDA device"
    )
    _assert_refused(_cli("--data", str(data), "--out", str(tmp_path / "o"), "--device", "tpu"), "tpu")


def test_refuses_foreign_or_existing_checkpoint(data, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    save_checkpoint(out / CHECKPOINT_NAME, {"method": "jcae", "epoch": 1, "total_epochs": 5})
    _assert_refused(_cli("--data", str(data), "--out", str(out), "--resume"), "jcae")
    with pytest.raises(TrainingError, match="jcae"):
        train(_spec(1), RunOptions(data, out, resume=True, progress=False))
    (out / CHECKPOINT_NAME).write_bytes(b"garbage")
    _assert_refused(_cli("--data", str(data), "--out", str(out), "--resume"), "unreadable checkpoint")
    own = tmp_path / "own"
    train(_spec(1), RunOptions(data, own, progress=False))
    with pytest.raises(TrainingError, match="--resume"):
        train(_spec(1), RunOptions(data, own, progress=False))


def test_cli_trains_and_resume_keeps_settings(data, tmp_path):
    out = tmp_path / "run"
    r = _cli(
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--crop",
        "16",
        "--batch-size",
        "3",
        "--stop-after",
        "1",
        "--no-progress",
    )
    assert r.exit_code == 0, r.output
    assert "stopped after epoch 1" in r.output
    _assert_refused(
        _cli("--data", str(data), "--out", str(out), "--resume", "--crop", "24"),
        "differs from the checkpoint",
    )
    r = _cli("--data", str(data), "--out", str(out), "--resume", "--no-progress")
    assert r.exit_code == 0, r.output
    card = json.loads((out / "card.json").read_text())
    assert card["epochs"] == 2 and card["config"]["crop"] == 16 and card["config"]["batch_size"] == 3


# --- distributed ----------------------------------------------------------------------------


def test_ddp_two_cpu_processes_stay_identical(data, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "ivfuse",
        "train",
        "didfuse",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--crop",
        "16",
        "--batch-size",
        "2",
        "--threads",
        "1",
        "--no-progress",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    card = json.loads((out / "card.json").read_text())
    assert card["world_size"] == 2
    assert card["ranks_max_abs_diff"] == 0.0  # every parameter and buffer identical on both ranks
    rows = list(csv.DictReader(open(out / "losses.csv")))
    assert len(rows) == 2 and float(rows[1]["total"]) > 0
    init = DIDFuseNet(64).state_dict()
    trained = _weights(out)
    assert not torch.equal(init["encoder.conv1.conv.weight"], trained["encoder.conv1.conv.weight"])


def test_export_run_snapshot_and_finished(data, tmp_path):
    from ivfuse.train.ship import export_run

    out = tmp_path / "run"
    train(_spec(3), RunOptions(data, out, seed=0, progress=False, stop_after=2))
    w, c = tmp_path / "didfuse.safetensors", tmp_path / "didfuse.json"
    card = export_run(out, w, c, "didfuse", recipe_epochs=120)
    assert card["epochs"] == 2 and card["epochs_planned"] == 3 and card["reduced_scale"] is True
    assert "2 of 3 epochs" in card["note"] and json.loads(c.read_text()) == card
    assert card["loss_history"]["epoch"] == [1, 2]
    net, meta = load_weights(w)
    assert meta["epochs"] == "2"
    ck = load_checkpoint(out / CHECKPOINT_NAME, "didfuse")
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in ck["model"].items())
    train(_spec(3), RunOptions(data, out, seed=0, progress=False, resume=True))
    card = export_run(out, w, c, "didfuse", recipe_epochs=3)
    assert card["epochs"] == 3 and "note" not in card and card["wall_time_s"] > 0
    assert card["loss_history"]["epoch"] == [1, 2, 3]  # the resumed run's card has all epochs
    assert _same(load_file(str(w)), _weights(out))
    with pytest.raises(TrainingError, match="jcae"):
        export_run(out, w, c, "jcae")


def test_export_run_stopped_for_good_with_fewer_epochs(data, tmp_path):
    """Paused at 2 of 3 epochs, then resumed with --epochs 2: finished (its card, not a snapshot's)."""
    from ivfuse.train.ship import export_run

    out = tmp_path / "run"
    train(_spec(3), RunOptions(data, out, seed=0, progress=False, stop_after=2))
    train(_spec(2), RunOptions(data, out, seed=0, progress=False, resume=True))
    w, c = tmp_path / "didfuse.safetensors", tmp_path / "didfuse.json"
    card = export_run(out, w, c, "didfuse", recipe_epochs=120)
    assert card["epochs"] == 2 and card["epochs_planned"] == 2 and "note" not in card
    assert card["reduced_scale"] is True and card["recipe_epochs"] == 120
    _, meta = load_weights(w)
    assert meta["epochs"] == "2" and json.loads(meta["config"])["epochs"] == 2


def test_card_metrics_on_a_test_set(data, tmp_path):
    test_dir = _write_pairs(tmp_path / "test", 2, size=(64, 72), seed=9)
    card = train(_spec(1), RunOptions(data, tmp_path / "run", progress=False, test_data=test_dir))
    m = card["metrics"]
    assert m["pairs"] == 2
    assert set(m["ma2019"]) == {"EN", "MI", "SD", "VIF", "AG"}
    assert 0 < m["ma2019"]["EN"] <= 8 and m["ma2019"]["SD"] > 0
    assert "QABF" in m["vifb"] and len(m["vifb"]) >= 10
    assert json.loads((tmp_path / "run" / "card.json").read_text())["metrics"] == m


def test_card_names_data_under_the_data_root_portably(tmp_path, monkeypatch):
    """A card says ``$IVFUSE_DATA/<set>`` for data under the data root (the same on every machine,
    no home folder in a shipped card); a folder outside it is recorded as given."""
    root = tmp_path / "datasets"
    train_dir = _write_pairs(root / "flir_train", 4)
    test_dir = _write_pairs(root / "tno", 1, size=(64, 72), seed=3)
    monkeypatch.setenv("IVFUSE_DATA", str(root))
    card = train(_spec(1), RunOptions(train_dir, tmp_path / "run", progress=False, test_data=test_dir))
    assert card["data"]["path"] == "$IVFUSE_DATA/flir_train" and card["data"]["name"] == "flir_train"
    assert card["metrics"]["test_set"] == "$IVFUSE_DATA/tno"
    # the checkpoint keeps the real path: --resume must find the data
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT_NAME, "didfuse")["data"] == str(train_dir)
    monkeypatch.setenv("IVFUSE_DATA", str(tmp_path / "elsewhere"))
    card = train(_spec(1), RunOptions(train_dir, tmp_path / "run2", progress=False))
    assert card["data"]["path"] == str(train_dir)


def test_card_copies_the_data_folders_own_description(tmp_path):
    """A training folder's ``dataset.json`` (how a generated set was made) goes into the card's
    ``data.about``; a folder without one gives no ``about``; a broken one is refused before training."""
    train_dir = _write_pairs(tmp_path / "made", 4)
    about = {"made_by": "scripts/focus_pairs_folder.py", "per_image": 3, "seed": 0}
    (train_dir / "dataset.json").write_text(json.dumps(about))
    card = train(_spec(1), RunOptions(train_dir, tmp_path / "run", progress=False))
    assert card["data"]["about"] == about and card["data"]["pairs"] == 4
    assert json.loads((tmp_path / "run" / "card.json").read_text())["data"]["about"] == about
    plain = train(
        _spec(1), RunOptions(_write_pairs(tmp_path / "plain", 4), tmp_path / "run2", progress=False)
    )
    assert "about" not in plain["data"]
    (train_dir / "dataset.json").write_text("[1, 2]")
    with pytest.raises(TrainingError, match="expected a JSON object"):
        train(_spec(1), RunOptions(train_dir, tmp_path / "run3", progress=False))
    assert not (tmp_path / "run3" / CHECKPOINT_NAME).exists()


def test_tensorboard_scalars_when_installed(data, tmp_path, monkeypatch):
    """With tensorboard importable, every epoch's terms go to a SummaryWriter (rank 0)."""
    import types

    logged: list[tuple[str, float, int]] = []

    class FakeWriter:
        def __init__(self, log_dir, purge_step=None):
            self.log_dir = log_dir

        def add_scalar(self, tag, value, step):
            logged.append((tag, value, step))

        def flush(self):
            pass

        def close(self):
            pass

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    train(_spec(2), RunOptions(data, tmp_path / "run", progress=False))
    tags = {t for t, _, _ in logged}
    assert {"total", "gap_detail", "lr", "seconds"} <= tags
    assert sorted({s for _, _, s in logged}) == [1, 2]


def test_snapshots_every_n_epochs_survive_resume(data, tmp_path):
    out = tmp_path / "run"
    opts = dict(data=data, out=out, seed=1, progress=False, snapshot_every=2)
    assert train(_spec(epochs=5), RunOptions(**opts, stop_after=3)) == {"stopped_at": 3}
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == ["epoch_002.safetensors"]
    train(_spec(epochs=5), RunOptions(**opts, resume=True))
    snaps = sorted(p.name for p in (out / "snapshots").iterdir())
    assert snaps == ["epoch_002.safetensors", "epoch_004.safetensors"]
    # a snapshot is a loadable weights file; the epoch-4 one differs from the final weights
    net, meta = load_weights(out / "snapshots" / "epoch_004.safetensors")
    assert isinstance(net, DIDFuseNet) and meta["epochs"] == "4"
    assert not _same(load_file(str(out / "snapshots" / "epoch_004.safetensors")), _weights(out))
    # and equals an uninterrupted run's epoch-4 snapshot
    ref = tmp_path / "ref"
    train(_spec(epochs=4), RunOptions(data=data, out=ref, seed=1, progress=False, snapshot_every=4))
    assert _same(load_file(str(ref / "snapshots" / "epoch_004.safetensors")), _weights(ref))
    assert _same(load_file(str(out / "snapshots" / "epoch_004.safetensors")), _weights(ref))


def test_training_flushes_subnormals_to_zero(data, tmp_path):
    """Subnormal arithmetic is many times slower on the CPU: the trainer flushes it to zero."""
    from dataclasses import replace

    spec = _spec(1)
    seen = []
    loss = spec.stages[0].loss

    def probe(model, batch):
        seen.append((torch.tensor([1e-30]) * torch.tensor([1e-10])).item())  # 1e-40: subnormal
        return loss(model, batch)

    spec.stages[0] = replace(spec.stages[0], loss=probe)
    train(spec, RunOptions(data, tmp_path / "run", seed=0, progress=False, stop_after=1))
    if torch.set_flush_denormal(False):  # the CPU supports flushing: training flushed
        assert seen and all(v == 0.0 for v in seen)
    assert (torch.tensor([1e-30]) * torch.tensor([1e-10])).item() > 0  # restored afterwards


def test_chain_stages_adds_a_run_started_from_the_weights_it_replaces():
    """scripts/ship_weights.py: a run started (--init) from the shipped weights becomes their next
    stage; the totals count iterations and samples (stages of other batch sizes and crops)."""
    from ivfuse.train.ship import chain_stages

    previous = {
        "iterations": 5000,
        "config": {"batch_size": 4, "crop": 128, "lr": 5e-4},
        "precision": "bf16",
        "stages": [
            {"weights": "aaa:w.safetensors", "iterations": 3400, "batch_size": 4, "crop": 128},
            {"weights": "this file", "iterations": 5000, "batch_size": 4, "crop": 128},
        ],
    }
    run = {
        "iterations": 2000,
        "config": {"batch_size": 16, "crop": 256, "lr": 5e-4},
        "precision": "bf16",
        "device": "cuda (NVIDIA H100)",
        "init_weights": {"path": "init.safetensors", "sha256": "ab" * 32},
    }
    card = chain_stages(run, previous, "ab" * 32, "bbb:w.safetensors")
    assert [s["weights"] for s in card["stages"]] == [
        "aaa:w.safetensors",
        "bbb:w.safetensors (sha256 abababababab)",
        "this file",
    ]
    last = card["stages"][-1]
    assert (last["iterations"], last["batch_size"], last["crop"]) == (2000, 16, 256)
    assert (
        last["init"] == "bbb:w.safetensors (sha256 abababababab)" and last["device"] == "cuda (NVIDIA H100)"
    )
    assert card["iterations_all_stages"] == 10400
    assert card["samples_all_stages"] == 3400 * 4 + 5000 * 4 + 2000 * 16
    assert previous["stages"][1]["weights"] == "this file" and "stages" not in run  # inputs untouched

    # previous weights without a stage list: they become the first stage
    first = chain_stages(run, {"iterations": 900, "config": {"batch_size": 24}}, "ab" * 32, "ccc:w")
    assert [s["iterations"] for s in first["stages"]] == [900, 2000]
    assert first["samples_all_stages"] == 900 * 24 + 2000 * 16
    # a run from other weights (or from scratch) is not a stage of these
    assert chain_stages(run, previous, "cd" * 32, "bbb:w") is run
    assert chain_stages(dict(run, init_weights=None), previous, "ab" * 32, "bbb:w")["iterations"] == 2000
    assert "stages" not in chain_stages(dict(run, init_weights=None), previous, "ab" * 32, "bbb:w")
