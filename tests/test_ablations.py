"""The papers' ablation rows as training variants: declarations, ``ivfuse train --ablation`` and
``--set``, and the card that names the row."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from ivfuse.cli import app
from ivfuse.methods import registry
from ivfuse.methods._config import Ablation

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("torch_one_thread")

WITH_ABLATIONS = [i.name for i in registry.available() if i.ablations]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_the_papers_ablation_rows_are_declared():
    rows = {i.name: {a.row for a in i.ablations} for i in registry.available() if i.ablations}
    mus = {"µ = 9", "µ = 9.5", "µ = 10.5", "µ = 11"}
    nets = {"Network: No WAE", "Network: No IEE", "Network: SL-IEE"}
    assert rows["sslwaeie"] >= mus | nets | {"Loss: L1 = Lf", "Loss: L2 = Lwf"}
    assert rows["ifesnet"] >= {"IFESNet w/o IFEM", "IFESNet-S1", "IFESNet-S2", "IFESNet-S4", "IFESNet-HC",
                               "MAE-based loss", "VP-based loss"}  # fmt: skip
    assert "MSE loss only" in rows["jcae"]


@pytest.mark.parametrize("method", WITH_ABLATIONS)
def test_every_ablation_builds_its_variant(method):
    """Each variant is a valid Config that differs from the default exactly in its overrides, and
    its network builds (the architecture ablations change the parameter count)."""
    info = registry.info(method)
    config_cls, training_spec = registry.training(method)
    default = config_cls().to_dict()
    base_params = sum(p.numel() for p in training_spec(config_cls()).build_model().parameters())
    for a in info.ablations:
        cfg = config_cls(**a.overrides)
        d = cfg.to_dict()
        changed = {k for k in d if d[k] != default[k]}
        assert changed == set(a.overrides), (a.name, changed)
        torch.manual_seed(0)
        n = sum(p.numel() for p in training_spec(cfg).build_model().parameters())
        arch = {"network", "stages", "pretrain"} & set(a.overrides)
        if {"network", "stages"} & arch:
            assert n != base_params, a.name
        elif not arch:
            assert n == base_params, a.name


def test_registry_refuses_a_bad_ablation():
    from ivfuse.methods.jcae import Config, training_spec

    with pytest.raises(ValueError, match="unknown Config fields"):
        bad = (Ablation("a", "A", "T", {"nope": 1}),)
        registry.register("x-bad", family="self-supervised", paper="p", trainable=True, config=Config,
                          training_spec=training_spec, ablations=bad)  # fmt: skip
    with pytest.raises(ValueError, match="ablation names"):
        Ablation("a b", "A", "T", {})
    with pytest.raises(TypeError):
        Ablation("a", "A", "T", {"lam": 1}).overrides["lam"] = 2  # read-only


def _pairs(root, n=4):
    rng = np.random.default_rng(0)
    for sub in ("ir", "vi"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        yy, xx = np.mgrid[:36, :44]
        a = np.clip(128 + 90 * np.sin(xx / (2 + i)) + rng.normal(0, 10, xx.shape), 0, 255).astype(np.uint8)
        b = np.clip(100 + 80 * np.cos(yy / (3 + i)) + rng.normal(0, 10, xx.shape), 0, 255).astype(np.uint8)
        Image.fromarray(a).save(root / "ir" / f"{i}.png")
        Image.fromarray(b).save(root / "vi" / f"{i}.png")
    return root


def test_train_an_ablation_and_set_a_field(tmp_path):
    data = _pairs(tmp_path / "pairs")
    common = ("--data", data, "--epochs", "1", "--crop", "24", "--batch-size", "2", "--no-progress",
              "--threads", "1")  # fmt: skip
    r = run("train", "jcae", "--out", tmp_path / "mse", "--ablation", "mse-only", *common)
    assert r.exit_code == 0, r.output
    card = json.loads((tmp_path / "mse" / "card.json").read_text())
    assert card["ablation"] == {"name": "mse-only", "row": "MSE loss only", "table": "Fig. 4",
                                "overrides": {"ssim_loss": False}}  # fmt: skip
    assert card["config"]["ssim_loss"] is False and card["config"]["lam"] == 100.0
    # the variant's field is not a reduction of the recipe; one epoch of 30 is
    assert "ssim_loss" not in card["deviations_from_recipe"] and "epochs" in card["deviations_from_recipe"]
    assert card["reduced_scale"] is True
    # the SSIM terms are logged, not trained: the total is the pixel terms alone
    fl = card["final_losses"]
    assert fl["ssim_ir"] > 0 and fl["total"] == pytest.approx(fl["pixel_ir"] + fl["pixel_vi"], rel=1e-5)

    r = run("train", "jcae", "--out", tmp_path / "lam", "--set", "lam=5", "--set", "flip=false", *common)
    assert r.exit_code == 0, r.output
    card = json.loads((tmp_path / "lam" / "card.json").read_text())
    assert card["config"]["lam"] == 5 and card["config"]["flip"] is False and "ablation" not in card


def test_train_refuses_unknown_ablations_and_fields(tmp_path):
    data = _pairs(tmp_path / "pairs", n=1)
    r = run("train", "jcae", "--data", data, "--out", tmp_path / "a", "--ablation", "nope")
    assert r.exit_code == 2 and "no ablation 'nope'" in r.output and "mse-only" in r.output
    r = run("train", "jcae", "--data", data, "--out", tmp_path / "b", "--set", "nope=1")
    assert r.exit_code == 2 and "no training option 'nope'; its options (--set KEY=VALUE): lam," in r.output
    r = run("train", "jcae", "--data", data, "--out", tmp_path / "c", "--set", "lam")
    assert r.exit_code == 2 and "KEY=VALUE" in r.output
    assert not any((tmp_path / d).exists() for d in "abc")


def test_train_ablations_script_plans_resumable_runs(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "train_ablations.py"
    spec = importlib.util.spec_from_file_location("train_ablations", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    runs = tmp_path / "runs"
    (runs / "jcae" / "lambda-1").mkdir(parents=True)
    (runs / "jcae" / "lambda-1" / "card.json").write_text('{"epochs": 30}')  # finished
    (runs / "jcae" / "lambda-10").mkdir(parents=True)
    (runs / "jcae" / "lambda-10" / "checkpoint.pt").write_bytes(b"x")  # interrupted
    cmds = mod.commands("jcae", Path("D"), runs, None, ["--threads", "1"])
    # the default recipe first, without --ablation, into RUNS/jcae/default: the rows' like-with-like
    assert cmds[0] == ["ivfuse", "train", "jcae", "--data", "D", "--out", str(runs / "jcae" / "default"),
                       "--threads", "1"]  # fmt: skip
    names = [c[c.index("--ablation") + 1] for c in cmds[1:]]
    assert names == ["mse-only", "lambda-10", "lambda-1000"]
    resumed = cmds[2]
    assert resumed[-3:] == ["--resume", "--threads", "1"] and "--resume" not in cmds[1]
    assert cmds[1][:8] == ["ivfuse", "train", "jcae", "--ablation", "mse-only", "--data", "D", "--out"]
    only_default = mod.commands("jcae", Path("D"), runs, {"default"}, [])
    assert [c[6] for c in only_default] == [str(runs / "jcae" / "default")]
    # a declared variant that changes nothing in the default recipe is that recipe: no extra run
    assert mod._is_default("jcae", {}, {"lam": 100.0}) and not mod._is_default("jcae", {}, {"lam": 10.0})
    assert mod._is_default("jcae", {"crop": 64}, {"crop": 64})
    assert not mod._is_default("jcae", {"crop": 64}, {"crop": 128})
    with pytest.raises(SystemExit, match="no ablation 'x'"):
        mod.commands("jcae", Path("D"), runs, {"x"}, [])


def test_loss_curves_script_reads_runs_and_cards(tmp_path, capsys):
    """scripts/loss_curves.py (JCAE's Fig. 5): the final level, when a curve first comes within the
    band and from when it stays there, from a run's losses.csv and from a weights card alike."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "loss_curves.py"
    spec = importlib.util.spec_from_file_location("loss_curves", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    total = [100.0, 40.0, 9.0, 14.0, 11.0, 10.0, 10.0, 9.0, 11.0, 10.0]  # last 5: mean 10
    run = tmp_path / "lambda-10"
    run.mkdir()
    rows = ["epoch,stage,lr,seconds,pixel,ssim,total"]
    rows += [f"{i + 1},autoencoder,0.0003,1.0,{t / 2},0.01,{t}" for i, t in enumerate(total)]
    (run / "losses.csv").write_text("\n".join(rows) + "\n")
    (run / "card.json").write_text(json.dumps({"method": "jcae", "ablation": {"name": "lambda-10"}}))
    card = tmp_path / "jcae.json"
    history = {"epoch": [1, 2, 3], "total": [9.0, 3.0, 3.0], "stage": ["a", "a", "a"]}
    card.write_text(json.dumps({"method": "jcae", "loss_history": history}))
    assert mod.convergence_epoch(total, 0.25, 5) == (10.0, 3, 5)  # 9 is within 25 %, 14 is not
    assert mod.convergence_epoch(total, 0.05, 5) == (10.0, 6, 10)  # 9 and 11 are 10 % off
    out = tmp_path / "summary.json"
    assert mod.main([str(run), str(card), "--json", str(out), "--last", "5"]) == 0
    got = json.loads(out.read_text())
    assert [r["label"] for r in got] == ["lambda-10", "jcae (jcae.json)"]
    assert got[0]["level"] == 10.0 and got[0]["last_terms"] == {"pixel": 5.0, "ssim": 0.01}
    assert got[1]["level"] == 5.0 and got[1]["first_within"] == 0  # 9 and 3 are both 40 % off 5
    printed = capsys.readouterr().out
    assert "| lambda-10 | 10 | 100 | 11 | 10 | – | – | 10 | epoch 3 | epoch 5 |" in printed
    assert mod.main([str(run), str(card), "--labels", "a,b", "--json", str(out)]) == 0
    assert [r["label"] for r in json.loads(out.read_text())] == ["a", "b"]
    with pytest.raises(SystemExit, match="1 labels for 2 runs"):
        mod.main([str(run), str(card), "--labels", "a"])
    with pytest.raises(SystemExit, match="no column 'fused'"):
        mod.main([str(run), "--column", "fused"])


def test_paper_ablation_rows_name_declared_variants():
    from ivfuse.bench.papers import PAPERS, load_paper

    seen = set()
    for name in PAPERS:
        for t in load_paper(name)["tables"]:
            for r in t["rows"]:
                if r.get("ablation"):
                    a = registry.info(r["ivfuse"]).ablation(r["ablation"])  # MethodError if not declared
                    assert a.row == r["name"] or r["name"].startswith(a.row), (a.row, r["name"])
                    seen.add((r["ivfuse"], a.name))
    declared = {(i.name, a.name) for i in registry.available() for a in i.ablations if i.paper_tables}
    # every SSL-WAEIE, IFESNet and JCAE variant is a row of its paper's tables (JCAE's in a table
    # of its figures' ablations)
    assert {x for x in declared if x[0] in ("sslwaeie", "ifesnet", "jcae")} <= seen


def test_resolve_ablations_binds_trained_variants(tmp_path):
    from ivfuse.bench.paper import resolve_ablations
    from ivfuse.bench.papers import load_paper

    paper = load_paper("sslwaeie")
    w = tmp_path / "sslwaeie" / "mu-9" / "weights.safetensors"
    w.parent.mkdir(parents=True)
    w.write_bytes(b"weights")
    messages: list[str] = []
    got = resolve_ablations(paper, tmp_path, messages)
    rows = {r["name"]: r for t in got["tables"] for r in t["rows"]}
    assert rows["µ = 9"]["ivfuse"] == "sslwaeie" and rows["µ = 9"]["options"] == {"weights": str(w.resolve())}
    assert rows["µ = 11"]["ivfuse"] is None  # not trained: paper-only, with the command in a message
    assert any("'µ = 11'" in m and "--only mu-11" in m for m in messages)
    assert rows["µ = 10 (Ours)"]["ivfuse"] == "sslwaeie" and "options" not in rows["µ = 10 (Ours)"]
    # the input is left as it was
    before = next(r for t in paper["tables"] for r in t["rows"] if r["name"] == "µ = 11")
    assert before["ivfuse"] == "sslwaeie"


def test_resolve_ablations_adds_the_default_trained_beside_the_variants(tmp_path):
    """ROOT/METHOD/default (the default recipe trained with the variants) becomes a row of every
    table with that method's ablation rows, right after the paper's own row and with its printed
    values; a table without ablation rows, or a root without the folder, gets none."""
    from ivfuse.bench.paper import resolve_ablations
    from ivfuse.bench.papers import load_paper

    paper = load_paper("sslwaeie")
    bare = resolve_ablations(paper, tmp_path)["tables"]
    assert not any(r.get("ablation") == "default" for t in bare for r in t["rows"])
    w = tmp_path / "sslwaeie" / "default" / "weights.safetensors"
    w.parent.mkdir(parents=True)
    w.write_bytes(b"weights")
    got = {t["table"]: t["rows"] for t in resolve_ablations(paper, tmp_path)["tables"]}
    assert not any(r.get("ablation") == "default" for r in got["Table 1"] + got["Table 2"])
    names = [r["name"] for r in got["Table 3"]]
    i = names.index("µ = 10 (Ours)")
    row = got["Table 3"][i + 1]
    assert row["ablation"] == "default" and row["ivfuse"] == "sslwaeie"
    assert row["options"] == {"weights": str(w.resolve())}
    assert row["values"] == got["Table 3"][i]["values"] and row["values"]["QABF"] == 0.5412
    # once, though two rows of Table 4 are Ours
    assert sum(r.get("ablation") == "default" for r in got["Table 4"]) == 1


def test_resolve_ablations_default_roots_prefer_own_runs(tmp_path, monkeypatch):
    """Without --ablations: runs/ablations (your runs) first, then ablations/ (the variants behind
    the docs' tables in a checkout); a variant in neither names runs/ablations in its message."""
    from ivfuse.bench.paper import resolve_ablations
    from ivfuse.bench.papers import load_paper

    monkeypatch.chdir(tmp_path)
    own = tmp_path / "runs" / "ablations" / "sslwaeie" / "mu-9" / "weights.safetensors"
    released = [tmp_path / "ablations" / "sslwaeie" / n / "weights.safetensors" for n in ("mu-9", "mu-9.5")]
    for w in (own, *released):
        w.parent.mkdir(parents=True)
        w.write_bytes(b"weights")
    messages: list[str] = []
    got = resolve_ablations(load_paper("sslwaeie"), None, messages)
    rows = {r["name"]: r for t in got["tables"] for r in t["rows"]}
    assert rows["µ = 9"]["options"] == {"weights": str(own.resolve())}
    assert rows["µ = 9.5"]["options"] == {"weights": str(released[1].resolve())}
    assert rows["µ = 11"]["ivfuse"] is None
    missing = str(Path("runs/ablations/sslwaeie/mu-11/weights.safetensors"))
    assert any("'µ = 11'" in m and missing in m for m in messages)
