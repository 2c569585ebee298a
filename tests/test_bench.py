"""`ivfuse bench`: data set registry, runner and cache, ranks, paired tests, reports, CLI.

Everything except the last tests runs on tiny synthetic data sets made here; the real-data tests
skip cleanly without ../shared/data.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ivfuse.bench import bench, datasets, make_tasks, paper, parse_method, stats
from ivfuse.cli import app
from ivfuse.errors import InputError, WeightsError
from ivfuse.methods import registry

from .conftest import SHARED_DATA, shared_dataset

runner = CliRunner()


def _scene(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A small IR/VI pair: a warm blob on a cool background, and a textured visible image."""
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = rng.integers(h // 4, 3 * h // 4), rng.integers(w // 4, 3 * w // 4)
    ir = 40 + 180 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (h / 6) ** 2))
    vi = 120 + 60 * np.sin(xx / 2.0) * np.cos(yy / 3.0) + rng.normal(0, 8, (h, w))
    return np.clip(ir, 0, 255).astype(np.uint8), np.clip(vi, 0, 255).astype(np.uint8)


def make_pairs(root, n=4, h=36, w=44, folders=("ir", "vi"), colour=False, seed=0):
    rng = np.random.default_rng(seed)
    for f in folders:
        (root / f).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        a, b = _scene(rng, h, w)
        if colour:
            b = np.stack([b, np.roll(b, 3, axis=1), 255 - b], axis=-1)
            a = np.stack([a, a // 2, 255 - a], axis=-1)
        Image.fromarray(a).save(root / folders[0] / f"{i:03d}.png")
        Image.fromarray(b).save(root / folders[1] / f"{i:03d}.png")
    return root


# --------------------------------------------------------------------------------------------
# data sets


def test_registry_has_the_paper_sets():
    for name in ("tno", "tno-test24", "tno25", "roadscene-test41", "roadscene50", "flir-test", "nir",
                 "mefb", "lytro", "mffw", "mfiwhu"):  # fmt: skip
        d = datasets.get(name)
        assert d.task in ("ivif", "mef", "mff")
        assert d.first == {"ivif": "ir", "mef": "under", "mff": "a"}[d.task]
    assert datasets.get("MEFB").sources == ("under", "over")


def test_unknown_set_and_missing_root_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="unknown data set 'tn0'; choose one of: tno, "):
        datasets.get("tn0")
    with pytest.raises(InputError, match="folder not found"):
        datasets.resolve("tno", tmp_path / "nowhere")
    with pytest.raises(InputError, match=r"folder .*tno not found under the data root"):
        datasets.resolve("tno", tmp_path)
    monkeypatch.delenv("IVFUSE_DATA", raising=False)
    monkeypatch.setattr(datasets, "default_data_root", lambda: None)
    with pytest.raises(InputError, match="no data root: pass --data-root"):
        datasets.resolve("tno")


def test_named_set_under_a_root_split_lists_and_counts(tmp_path, monkeypatch):
    make_pairs(tmp_path / "tno", n=3)
    make_pairs(tmp_path / "tno_extra", n=1, seed=5)
    (tmp_path / "tno_extra" / "ir" / "000.png").rename(tmp_path / "tno_extra" / "ir" / "25.png")
    (tmp_path / "tno_extra" / "vi" / "000.png").rename(tmp_path / "tno_extra" / "vi" / "25.png")
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "tno25.txt").write_text("tno/002\ntno/000\n\ntno_extra/25\n")
    monkeypatch.setitem(datasets.DATASETS, "tno", datasets.Dataset("tno", "ivif", "t", folder="tno", pairs=3))
    monkeypatch.setitem(
        datasets.DATASETS, "tno25", datasets.Dataset("tno25", "ivif", "t", split="tno25", pairs=3)
    )
    r = datasets.resolve("tno", tmp_path)
    assert [p.stem for p in r.pairs] == ["000", "001", "002"]
    s = datasets.resolve("tno25", tmp_path)
    assert [p.stem for p in s.pairs] == ["002", "000", "25"]  # the split's order
    assert s.pairs[2].ir == tmp_path / "tno_extra" / "ir" / "25.png"
    monkeypatch.setenv("IVFUSE_DATA", str(tmp_path))
    assert len(datasets.resolve("tno").pairs) == 3
    monkeypatch.setitem(
        datasets.DATASETS, "tno", datasets.Dataset("tno", "ivif", "t", folder="tno", pairs=40)
    )
    with pytest.raises(InputError, match="3 pairs found, 40 expected"):
        datasets.resolve("tno")
    (tmp_path / "splits" / "tno25.txt").write_text("tno/009\n")
    with pytest.raises(InputError, match="no single ir image"):
        datasets.resolve("tno25")


def test_user_folder_task_from_its_subfolders(tmp_path):
    make_pairs(tmp_path / "mine", n=2)
    make_pairs(tmp_path / "exp", n=2, folders=("under", "over"))
    make_pairs(tmp_path / "foc", n=2, folders=("a", "b"))
    assert datasets.resolve(str(tmp_path / "mine")).dataset.task == "ivif"
    assert datasets.resolve(str(tmp_path / "exp")).dataset.task == "mef"
    assert datasets.resolve(str(tmp_path / "foc")).dataset.task == "mff"
    (tmp_path / "bad").mkdir()
    with pytest.raises(InputError, match="expected sub-folders ir/ \\+ vi/"):
        datasets.resolve(str(tmp_path / "bad"))


# --------------------------------------------------------------------------------------------
# statistics


def test_average_ranks_by_hand():
    # EN (higher better): a 7, b 6, c 6 -> ranks 1, 2.5, 2.5; QCV (lower better): a 300, b 100,
    # c 200 -> 3, 1, 2; MI: c has no value -> a 2, b 1, c last (3).
    means = {
        "a": {"EN": 7.0, "QCV": 300.0, "MI": 1.0},
        "b": {"EN": 6.0, "QCV": 100.0, "MI": 2.0},
        "c": {"EN": 6.0, "QCV": 200.0, "MI": math.nan},
    }
    r = stats.average_ranks(means, {"EN": True, "QCV": False, "MI": True})
    assert r["a"] == pytest.approx((1 + 3 + 2) / 3)
    assert r["b"] == pytest.approx((2.5 + 1 + 1) / 3)
    assert r["c"] == pytest.approx((2.5 + 2 + 3) / 3)


def test_paired_tests_known_cases():
    # Wilcoxon, differences 1, -2, 3, 4, 5: W- = 2; exactly 3 of the 32 sign patterns give a
    # smaller or equal W- ({}, {1}, {2}), two-sided p = 2 * 3 / 32.
    x = [11.0, 8.0, 13.0, 14.0, 15.0]
    assert stats.paired_p(x, [10.0] * 5, "wilcoxon") == pytest.approx(6 / 32)
    # paired t, differences 1, 2, 3, 4: t = 2.5 / (sd / 2) = sqrt(15), df 3, two-sided p = 0.030466
    t_p = stats.paired_p([1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0], "t")
    assert t_p == pytest.approx(0.030466291662170977, rel=1e-9)
    assert stats.paired_p([1.0, 2.0], [1.0, 2.0]) == 1.0  # identical
    assert math.isnan(stats.paired_p([1.0], [2.0]))  # one pair: no test
    assert stats.paired_p([1.0, 2.0, math.nan, 4.0], [1.0, 2.0, 0.0, 4.0]) == 1.0  # NaN pairs dropped
    with pytest.raises(ValueError, match="unknown test"):
        stats.paired_p([1.0], [1.0], "anova")


def test_best_method_direction():
    assert stats.best_method({"a": 1.0, "b": 2.0, "c": math.nan}, True) == "b"
    assert stats.best_method({"a": 1.0, "b": 2.0}, False) == "a"
    assert stats.best_method({"a": math.nan}, True) is None


# --------------------------------------------------------------------------------------------
# runner, cache and reports


def test_parse_method_options():
    s = parse_method("didfuse@rule=l1@tile=512")
    assert s.name == "didfuse" and dict(s.options) == {"rule": "l1", "tile": 512}
    assert s.key == "didfuse@rule=l1,tile=512"
    assert parse_method(" LP ").key == "lp"
    assert parse_method("didfuse@rule=sum").key == "didfuse"  # the default option is dropped
    from ivfuse.bench.runner import folder_name

    key = parse_method("didfuse@weights=runs/a b/epoch_010.safetensors").key
    assert folder_name(key) == "didfuse@weights=runs_a_b_epoch_010.safetensors"
    long = folder_name("didfuse@weights=" + "x/" * 60)
    assert len(long) == 73 and "/" not in long


def test_bench_schema_cache_and_rerun(tmp_path):
    data = make_pairs(tmp_path / "toy", n=4)
    out = tmp_path / "R"
    res = bench("average,max", [str(data)], out, metrics="EN,SD,MI,QABF", figures=True, html=True)
    assert set(res) >= {"ivfuse", "command", "test", "alpha", "timing", "datasets", "values", "messages"}
    (d,) = res["datasets"]
    assert d["name"] == "toy" and d["task"] == "ivif" and d["pairs"] == 4
    assert [c["metric"] for c in d["metrics"]] == ["EN", "SD", "MI", "QABF"]
    assert {m["method"] for m in d["methods"]} == {"average", "max"}
    assert all(m["status"] == "ok" and m["fused"] == 4 and m["ms_median"] > 0 for m in d["methods"])
    assert len(d["cells"]) == 2 * 4
    assert len(res["values"]) == 2 * 4 * 4  # methods x images x metrics
    assert res["timing"]["fused_now"] == 8 and res["timing"]["evaluated_now"] == 8
    # values are those of ivfuse.evaluate on the cached 8-bit fused image
    from ivfuse.metrics import evaluate

    f = out / "fused" / "toy" / "max" / "002.png"
    ref = evaluate(f, data / "ir" / "002.png", data / "vi" / "002.png", metrics=["EN", "SD", "MI", "QABF"])
    got = {r["metric"]: r["value"] for r in res["values"] if r["method"] == "max" and r["image"] == "002"}
    assert got == pytest.approx(ref)
    # mean of the per-image values, best marked in the metric's direction
    cell = {(c["method"], c["metric"]): c for c in d["cells"]}
    sd = [r["value"] for r in res["values"] if r["method"] == "max" and r["metric"] == "SD"]
    assert cell[("max", "SD")]["mean"] == pytest.approx(np.mean(sd))
    assert cell[("max", "SD")]["std"] == pytest.approx(np.std(sd))
    best_sd = max(("average", "max"), key=lambda m: cell[(m, "SD")]["mean"])
    assert cell[(best_sd, "SD")]["best"] and not cell[({"average", "max"} - {best_sd}).pop(), "SD"]["best"]
    for name in (
        "results.json",
        "results.csv",
        "report.md",
        "report.html",
        "figures/toy.png",
        "figures/toy_ranks.png",
    ):
        assert (out / name).is_file(), name
    assert json.loads((out / "results.json").read_text())["datasets"][0]["name"] == "toy"
    lines = (out / "results.csv").read_text().splitlines()
    assert lines[0] == "dataset,method,image,profile,metric,value" and len(lines) == 1 + 32
    md = (out / "report.md").read_text()
    assert "## toy — 4 pairs (ivif)" in md and "| method | EN ↑ | SD ↑ | MI ↑ | QABF ↑ |" in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and 'src="http' not in html and "<table>" in html
    # second run: nothing fused, nothing evaluated, files untouched
    mtime = f.stat().st_mtime_ns
    res2 = bench("average,max", [str(data)], out, metrics="EN,SD,MI,QABF", figures=False, html=False)
    assert res2["timing"]["fused_now"] == 0 and res2["timing"]["evaluated_now"] == 0
    assert f.stat().st_mtime_ns == mtime
    assert res2["datasets"][0]["cells"] == d["cells"]
    assert [m["ms_median"] for m in res2["datasets"][0]["methods"]] == [m["ms_median"] for m in d["methods"]]
    # a new metric only computes that metric; --overwrite redoes everything
    res3 = bench("average,max", [str(data)], out, metrics="EN,SF", figures=False, html=False)
    assert res3["timing"]["fused_now"] == 0 and res3["timing"]["evaluated_now"] == 8
    res4 = bench("max", [str(data)], out, metrics="EN", figures=False, html=False, overwrite=True)
    assert res4["timing"]["fused_now"] == 4


def test_stale_cache_entry_is_recomputed(tmp_path):
    data = make_pairs(tmp_path / "toy", n=2)
    out = tmp_path / "R"
    bench("average", [str(data)], out, metrics="EN", figures=False, html=False)
    f = out / "fused" / "toy" / "average" / "000.png"
    Image.fromarray(np.zeros((36, 44), np.uint8)).save(f)  # replaced by hand
    res = bench("average", [str(data)], out, metrics="EN", figures=False, html=False)
    assert res["timing"]["evaluated_now"] == 1
    assert [r["value"] for r in res["values"] if r["image"] == "000"] == [0.0]


def test_retrained_weights_at_the_same_path_are_fused_again(tmp_path):
    """The fused-image cache is keyed by the method's options, and a weights path stays the same
    when the model behind it is retrained: the images of the old model must not be reused (nor
    their metric values). ``source.json`` records the weights' SHA-256; the same file is reused."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from ivfuse.bench.runner import model_source

    data = make_pairs(tmp_path / "toy", n=3)
    out, w = tmp_path / "R", tmp_path / "run" / "weights.safetensors"
    w.parent.mkdir()
    shipped = registry.weights_path(registry.info("densefuse").weights)
    w.write_bytes(shipped.read_bytes())
    spec = f"densefuse@weights={w}"
    res = bench(spec, [str(data)], out, metrics="SD", figures=False, html=False)
    assert res["timing"]["fused_now"] == 3
    (folder,) = (out / "fused" / "toy").iterdir()
    recorded = json.loads((folder / "source.json").read_text())
    assert recorded == model_source(parse_method(spec)) and len(recorded["weights"]) == 64
    first = np.asarray(Image.open(folder / "001.png"))
    again = bench(spec, [str(data)], out, metrics="SD", figures=False, html=False)
    assert again["timing"]["fused_now"] == 0 and again["timing"]["evaluated_now"] == 0
    # "retrain": the same path, other weights (every tensor halved)
    with safe_open(str(w), framework="pt") as f:
        meta, state = f.metadata(), {k: f.get_tensor(k) * 0.5 for k in f.keys()}  # noqa: SIM118
    save_file(state, str(w), metadata=meta)
    res2 = bench(spec, [str(data)], out, metrics="SD", figures=False, html=False)
    assert res2["timing"]["fused_now"] == 3 and res2["timing"]["evaluated_now"] == 3
    assert any("weights differ from the cached fusions" in m for m in res2["messages"])
    assert json.loads((folder / "source.json").read_text()) != recorded
    assert not np.array_equal(np.asarray(Image.open(folder / "001.png")), first)
    sd = {r["image"]: r["value"] for r in res2["values"]}
    assert sd != {r["image"]: r["value"] for r in res["values"]}
    # the shipped weights are a source too; a classical method has none
    assert set(model_source(parse_method("densefuse"))) == {"weights"}
    assert model_source(parse_method("average")) == {}


def test_skipped_method_and_unsupported_task(tmp_path, monkeypatch):
    def no_weights(**kw):
        raise WeightsError("weights are not installed; train them")

    info = registry.MethodInfo("nowts", "self-supervised", "test", "test", True, "nowts.safetensors")
    registry._ensure_loaded()
    monkeypatch.setitem(registry._REGISTRY, "nowts", (info, no_weights))
    data = make_pairs(tmp_path / "toy", n=2)
    res = bench("average,nowts", [str(data)], tmp_path / "R", metrics="EN", figures=False, html=False)
    st = {m["method"]: m for m in res["datasets"][0]["methods"]}
    assert st["nowts"]["status"] == "skipped" and "not installed" in st["nowts"]["reason"]
    assert st["average"]["status"] == "ok"
    assert any("nowts on toy: skipped" in m for m in res["messages"])
    assert {c["method"] for c in res["datasets"][0]["cells"]} == {"average"}
    mef = make_pairs(tmp_path / "exp", n=2, folders=("under", "over"), colour=True)
    res = bench("lp,gtf", [str(mef)], tmp_path / "R2", metrics="EN,SD", figures=True, html=False)
    st = {m["method"]: m for m in res["datasets"][0]["methods"]}
    assert st["gtf"]["status"] == "skipped" and "does not support the task 'mef'" in st["gtf"]["reason"]
    fused = np.asarray(Image.open(tmp_path / "R2" / "fused" / "exp" / "lp" / "000.png"))
    assert fused.shape == (36, 44, 3)  # colour kept


def test_mef_colour_fusion_of_identical_exposures_returns_it(rng):
    import ivfuse

    img = rng.random((20, 24, 3)).astype(np.float32)
    out = ivfuse.load("lp", task="mef").fuse(img, img)
    assert np.abs(out - img).max() < 1e-5
    with pytest.raises(ivfuse.MethodError, match="does not support the task 'mff'"):
        ivfuse.load("gtf", task="mff")


# --------------------------------------------------------------------------------------------
# paper tables


def _toy_paper(dataset: str) -> dict:
    return {
        "paper": "toy",
        "title": "A toy paper",
        "method": "lp",
        "tables": [
            {
                "table": "Table 9",
                "dataset": dataset,
                "profile": "vifb",
                "columns": [
                    {"name": "EN", "metric": "EN", "higher_is_better": True},
                    {"name": "SSIM", "metric": "SSIM", "scale": 0.5, "note": "mean over the sources"},
                    {"name": "IS", "metric": None, "note": "needs a pretrained network"},
                    {"name": "EN significance", "metric": None, "kind": "significance", "of": "EN"},
                ],
                "rows": [
                    {"name": "LP", "ivfuse": "lp", "values": {"EN": 6.5, "SSIM": 0.7, "IS": 3.1}},
                    {"name": "OtherNet", "ivfuse": None, "values": {"EN": 6.9}},
                ],
            }
        ],
    }


def test_paper_plan_and_tables_shape(tmp_path, monkeypatch):
    make_pairs(tmp_path / "toyset", n=3)
    monkeypatch.setitem(
        datasets.DATASETS, "toyset", datasets.Dataset("toyset", "ivif", "toy", folder="toyset")
    )
    doc_in = _toy_paper("toyset")
    tasks = paper.plan(doc_in, data_root=tmp_path, extra_methods=["average"])
    (task,) = tasks
    assert [m.key for m in task.methods] == ["lp", "average"]
    assert task.metrics == {"vifb": ["EN", "SSIM"]}
    res = bench(None, None, tmp_path / "R", tasks=tasks, figures=False, html=False)
    doc, display = paper.tables(doc_in, res)
    assert set(doc) == {"paper", "tables", "summary"} and doc["paper"] == "toy"
    (t,) = doc["tables"]
    assert set(t) == {"table", "dataset", "profile", "rows", "same_method", "offsets"}
    assert (t["table"], t["dataset"], t["profile"]) == ("Table 9", "toyset", "vifb")
    rows = {(r["method"], r["metric"]): r for r in t["rows"]}
    keys = {"method", "metric", "ours", "paper", "gap", "gap_net", "same_method"}
    assert all(set(r) == keys for r in t["rows"])
    cells = {(c["method"], c["metric"]): c["mean"] for c in res["datasets"][0]["cells"]}
    assert {k: rows[("lp", "EN")][k] for k in ("method", "metric", "ours", "paper")} == {
        "method": "lp",
        "metric": "EN",
        "ours": cells[("lp", "EN")],
        "paper": 6.5,
    }
    assert rows[("lp", "SSIM")]["ours"] == pytest.approx(0.5 * cells[("lp", "SSIM")])  # scaled
    assert {k: rows[("lp", "IS")][k] for k in ("method", "metric", "ours", "paper")} == {
        "method": "lp",
        "metric": "IS",
        "ours": None,
        "paper": 3.1,
    }
    assert rows[("average", "EN")]["paper"] is None  # extra row: no paper value
    assert ("average", "IS") not in rows  # neither ours nor the paper's
    # the significance column: paired t-test of each row against the paper's own method (lp) on EN
    en = {
        m: [v["value"] for v in res["values"] if v["method"] == m and v["metric"] == "EN"]
        for m in ("lp", "average")
    }
    assert rows[("average", "EN significance")]["ours"] == pytest.approx(
        stats.paired_p(en["average"], en["lp"], "t")
    )
    assert ("lp", "EN significance") not in rows
    md = paper.markdown(display)
    assert "OtherNet (paper only)" in md and "IS: not computed; needs a pretrained network" in md


def test_paper_with_missing_dataset_is_left_out(tmp_path):
    msgs: list[str] = []
    assert paper.plan(_toy_paper("tno"), data_root=tmp_path, messages=msgs) == []
    assert msgs and "left out" in msgs[0]


# --------------------------------------------------------------------------------------------
# CLI


def test_cli_bench_end_to_end(tmp_path):
    data = make_pairs(tmp_path / "toy", n=3, colour=True)
    out = tmp_path / "R"
    r = runner.invoke(app, ["bench", "--methods", "average,lp", "--dataset", str(data), "--out", str(out),
                            "--metrics", "EN,SD,QABF", "--test", "t"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "toy (3 pairs)" in r.output and "avg rank" in r.output and "wrote results.json" in r.output
    res = json.loads((out / "results.json").read_text())
    assert res["test"] == "t" and res["command"].startswith("ivfuse bench --methods average,lp")
    assert np.asarray(Image.open(out / "fused" / "toy" / "lp" / "000.png")).ndim == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--methods", "lp", "--datasets", "tno", "--data-root", "/nonexistent/x"],
            "data root /nonexistent/x",
        ),
        (["--methods", "lp", "--datasets", "tn0", "--data-root", "."], "unknown data set 'tn0'"),
        (["--methods", "nope", "--datasets", "DIR"], "unknown method 'nope'"),
        (["--methods", "lp@levls=3", "--datasets", "DIR"], "no option 'levls' (did you mean 'levels'?)"),
        (["--paper", "jcae", "--methods", "gff@radius=3", "--data-root", "."], "did you mean 'base_radius'"),
        (["--methods", "lp", "--datasets", "DIR", "--metrics", "XYZ"], "unknown metric 'XYZ'"),
        (["--methods", "lp", "--datasets", "DIR", "--test", "anova"], "--test must be wilcoxon or t"),
        (["--methods", "lp"], "--out RESULTS folder is required"),
        (["--paper", "nosuch", "--data-root", "."], "nosuch"),
    ],
)
def test_cli_bench_bad_input_one_line(tmp_path, args, message):
    data = make_pairs(tmp_path / "toy", n=1)
    args = [str(data) if a == "DIR" else a for a in args]
    if "--out" not in args and "--methods" in args and args != ["--methods", "lp"]:
        args += ["--out", str(tmp_path / "R")]
    if args[:1] == ["--paper"]:
        args += ["--out", str(tmp_path / "R")]
    r = runner.invoke(app, ["bench", *args])
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output


def test_cli_bench_list():
    r = runner.invoke(app, ["bench", "--list"])
    assert r.exit_code == 0 and "roadscene-test41" in r.output and "papers (--paper)" in r.output


# --------------------------------------------------------------------------------------------
# real data (skips without ../shared/data)


def test_real_sets_resolve_with_their_counts():
    shared_dataset("tno")
    for name, d in datasets.DATASETS.items():
        if d.folder and not (SHARED_DATA / d.folder).is_dir():
            continue
        r = datasets.resolve(name, SHARED_DATA)
        assert len(r.pairs) == d.pairs, name
        assert all(p.ir.is_file() and p.vi.is_file() for p in r.pairs)
    t24 = {p.stem for p in datasets.resolve("tno-test24", SHARED_DATA).pairs}
    train16 = {ln.split("/")[1] for ln in (SHARED_DATA / "splits" / "tno_train16.txt").read_text().split()}
    assert len(t24) == 24 and not (t24 & train16)


def test_real_tno_bench_two_pairs_matches_eval(tmp_path, monkeypatch):
    root = shared_dataset("tno").parent
    tasks = make_tasks("lp", "tno", metrics="EN,MI,QABF", data_root=root)
    tasks[0].data.pairs[:] = tasks[0].data.pairs[:2]
    res = bench(None, None, tmp_path / "R", tasks=tasks, figures=False, html=False)
    from ivfuse.metrics import evaluate

    p = tasks[0].data.pairs[1]
    ref = evaluate(
        tmp_path / "R" / "fused" / "tno" / "lp" / f"{p.stem}.png", p.ir, p.vi, metrics="EN,MI,QABF"
    )
    got = {r["metric"]: r["value"] for r in res["values"] if r["image"] == p.stem}
    assert got == pytest.approx(ref)


def test_plan_steps_and_run_plan_return_everything(tmp_path, monkeypatch):
    from ivfuse.bench import BenchPlan, plan_paper, run_plan

    make_pairs(tmp_path / "toyset", n=2)
    monkeypatch.setitem(
        datasets.DATASETS, "toyset", datasets.Dataset("toyset", "ivif", "toy", folder="toyset")
    )
    monkeypatch.setattr(paper, "load_paper", lambda name: _toy_paper("toyset"))
    plan = plan_paper("toy", data_root=tmp_path, extra_methods=["average"])
    assert isinstance(plan, BenchPlan) and plan.paper["paper"] == "toy"
    assert plan.steps == 2 * 2 * (1 + 1)  # pairs x methods x (fusing + one profile of metrics)
    seen = []
    done = run_plan(plan, tmp_path / "R", figures=False, html=False, progress=lambda d, n: seen.append(n))
    assert sum(seen) == plan.steps
    assert done.paper_doc["paper"] == "toy" and done.results["datasets"][0]["name"] == "toyset"
    assert [p.name for p in done.written] == [
        "paper_toy.json", "paper_toy.md", "results.json", "results.csv", "report.md"
    ]  # fmt: skip
    assert json.loads((tmp_path / "R" / "results.json").read_text())["values"] == done.results["values"]


def test_cli_bench_paper_uses_the_run_not_the_files(tmp_path, monkeypatch):
    make_pairs(tmp_path / "toyset", n=2)
    monkeypatch.setitem(
        datasets.DATASETS, "toyset", datasets.Dataset("toyset", "ivif", "toy", folder="toyset")
    )
    monkeypatch.setattr(paper, "load_paper", lambda name: _toy_paper("toyset"))
    import ivfuse.bench.report as report

    monkeypatch.setattr(report, "write_json", lambda results, path: None)  # results.json not written
    out = tmp_path / "R"
    r = runner.invoke(app, ["bench", "--paper", "toy", "--data-root", str(tmp_path), "--out", str(out),
                            "--no-figures", "--no-html"])  # fmt: skip
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "toyset (2 pairs)" in text and "28/28" in text  # the bar sized from plan.steps
    assert "wrote paper_toy.json, paper_toy.md, results.json, results.csv, report.md" in text
    assert not (out / "results.json").exists()  # the summary came from the run itself


# --------------------------------------------------------------------------------------------
# --paper --weights: the paper's tables for your own training run


def _own_weights_paper(dataset: str) -> dict:
    doc = _toy_paper(dataset)
    doc["method"] = "didfuse"
    doc["tables"][0]["rows"] += [
        {"name": "DIDFuse", "ivfuse": "didfuse", "values": {"EN": 7.0}},
        {"name": "DIDFuse, average", "ivfuse": "didfuse", "options": {"rule": "average"}, "values": {}},
        {"name": "a variant", "ivfuse": "didfuse", "ablation": "v", "options": {"weights": "/v.safetensors"}},
    ]
    return doc


def test_with_weights_binds_the_papers_method_rows_but_not_the_variants(tmp_path):
    import torch
    from safetensors.torch import save_file

    run = tmp_path / "run"
    run.mkdir()
    save_file({"w": torch.zeros(1)}, str(run / "weights.safetensors"), metadata={"method": "didfuse"})
    doc = _own_weights_paper("toyset")
    messages: list[str] = []
    out = paper.with_weights(doc, run, messages)  # a run folder: its weights.safetensors
    rows = {r["name"]: r for r in out["tables"][0]["rows"]}
    want = str((run / "weights.safetensors").resolve())
    assert rows["DIDFuse"]["options"] == {"weights": want}
    assert rows["DIDFuse, average"]["options"] == {"rule": "average", "weights": want}
    assert rows["a variant"]["options"] == {"weights": "/v.safetensors"}  # keeps its own weights
    assert "options" not in rows["LP"] and doc["tables"][0]["rows"][2].get("options") is None  # input intact
    assert messages == ["toy: 2 rows of didfuse run with the weights " + str(run / "weights.safetensors")
                        + ", not the shipped ones"]  # fmt: skip
    with pytest.raises(InputError, match="no such file"):
        paper.with_weights(doc, tmp_path / "missing.safetensors")
    save_file({"w": torch.zeros(1)}, str(tmp_path / "jcae.safetensors"), metadata={"method": "jcae"})
    with pytest.raises(InputError, match="weights of method 'jcae', not didfuse"):
        paper.with_weights(doc, tmp_path / "jcae.safetensors")  # refused before anything runs
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(InputError, match="not a readable safetensors file"):
        paper.with_weights(doc, tmp_path / "junk.safetensors")
    with pytest.raises(InputError, match="no method with weights"):
        paper.with_weights(_toy_paper("toyset"), run / "weights.safetensors")  # lp: classical


def test_cli_bench_paper_weights_scores_a_retrained_run(tmp_path, monkeypatch):
    """Other weights for the paper's method give other fused images and values in the same table,
    labelled with the path; the shipped weights' run stays as it was (the cache is keyed by the
    weights' hash)."""
    from safetensors.torch import load_file, save_file

    make_pairs(tmp_path / "toyset", n=2)
    monkeypatch.setitem(
        datasets.DATASETS, "toyset", datasets.Dataset("toyset", "ivif", "toy", folder="toyset")
    )
    doc = _own_weights_paper("toyset")
    doc["tables"][0]["rows"].pop()  # no variant
    monkeypatch.setattr(paper, "load_paper", lambda name: doc)
    tensors = load_file(str(registry.weights_path("didfuse.safetensors")))
    name = next(k for k, v in tensors.items() if v.ndim == 4)
    tensors[name] = tensors[name] * 0.5  # a "retrained" network: one conv halved
    mine = tmp_path / "mine.safetensors"
    save_file(tensors, str(mine))
    out = tmp_path / "R"
    base = ["bench", "--paper", "toy", "--data-root", str(tmp_path), "--out", str(out), "--no-figures",
            "--no-html", "--methods", "average"]  # fmt: skip
    r = runner.invoke(app, base)
    assert r.exit_code == 0, r.output
    shipped = json.loads((out / "paper_toy.json").read_text())
    r = runner.invoke(app, [*base, "--weights", str(mine)])
    assert r.exit_code == 0, r.output
    assert "2 rows of didfuse run with the weights" in " ".join(r.output.split())
    text = (out / "paper_toy.md").read_text()
    assert f"didfuse (DIDFuse) [weights {mine}]" in text
    assert f"didfuse@rule=average (DIDFuse, average) [weights {mine}]" in text
    assert f"--weights {mine}" in text  # the command that made the table

    def en(d: dict, key: str) -> float:
        return next(c["ours"] for c in d["tables"][0]["rows"] if c["method"] == key and c["metric"] == "EN")

    retrained = json.loads((out / "paper_toy.json").read_text())
    key = f"didfuse@weights={mine.resolve()}"
    assert en(retrained, key) != pytest.approx(en(shipped, "didfuse"), abs=1e-3)
    assert en(retrained, "average") == en(shipped, "average")
    assert retrained["summary"]["method"] == "didfuse" and retrained["summary"]["cells"] == 1
    assert retrained["summary"]["worst"]["gap"] == pytest.approx(en(retrained, key) / 7.0 - 1)


def test_only_rows_marks_the_other_rows_skipped():
    doc = _own_weights_paper("toyset")
    messages: list[str] = []
    out = paper.only_rows(doc, ["didfuse"], messages)
    skip = {r["name"]: bool(r.get("skip")) for r in out["tables"][0]["rows"] if r.get("ivfuse")}
    assert skip == {"LP": True, "DIDFuse": False, "DIDFuse, average": False, "a variant": True}
    assert not any(r.get("skip") for r in doc["tables"][0]["rows"])  # input intact
    assert messages == [
        "toy: only the rows of didfuse run (--rows); 2 other rows show the paper's values only"
    ]
    out = paper.only_rows(doc, ["didfuse:v", "lp"])
    assert [r["name"] for r in out["tables"][0]["rows"] if r.get("ivfuse") and not r.get("skip")] == [
        "LP", "a variant"
    ]  # fmt: skip
    with pytest.raises(InputError, match=r"--rows gff: no such row in paper 'toy' \(rows that can run: "
                       r"didfuse, didfuse:v, lp;"):  # fmt: skip
        paper.only_rows(doc, ["lp", "gff"])


def test_cli_bench_paper_rows_runs_only_those_rows(tmp_path, monkeypatch):
    """--rows: the named rows are fused and scored, no classical extras are added, the other rows
    keep the paper's values as 'not run'; the gap summary is the paper method's as before."""
    make_pairs(tmp_path / "toyset", n=2)
    monkeypatch.setitem(
        datasets.DATASETS, "toyset", datasets.Dataset("toyset", "ivif", "toy", folder="toyset")
    )
    doc = _toy_paper("toyset")
    doc["method"] = "average"
    doc["tables"][0]["rows"].append({"name": "Mean", "ivfuse": "average", "values": {"EN": 6.0}})
    monkeypatch.setattr(paper, "load_paper", lambda name: doc)
    out = tmp_path / "R"
    base = [
        "bench",
        "--paper",
        "toy",
        "--data-root",
        str(tmp_path),
        "--out",
        str(out),
        "--no-figures",
        "--no-html",
    ]
    r = runner.invoke(app, [*base, "--rows", "average"])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    assert [m["method"] for m in res["datasets"][0]["methods"]] == ["average"]
    assert res["command"].endswith("--rows average")
    text = (out / "paper_toy.md").read_text()
    assert "lp (not run) | – (6.500)" in text and "average (Mean)" in text
    got = json.loads((out / "paper_toy.json").read_text())
    (en,) = [c for c in got["tables"][0]["rows"] if c["metric"] == "EN"]
    assert en["method"] == "average" and en["gap"] == pytest.approx(en["ours"] / 6.0 - 1)
    assert got["summary"]["cells"] == 1
    assert set(got["tables"][0]["offsets"]["EN"]["anchors"]) == {"average"}  # lp did not run
    doc["method"], doc["tables"][0]["rows"][-1]["same_method"] = "average", False  # no anchor left to run
    r = runner.invoke(app, [*base, "--rows", "average"])
    assert r.exit_code == 0, r.output
    assert "no convention offset: the same-method rows did not run (--rows)" in " ".join(r.output.split())
    r = runner.invoke(app, [*base, "--rows", "average,gff"])
    assert r.exit_code == 2 and "--rows gff: no such row in paper 'toy'" in " ".join(r.output.split())


def test_cli_bench_weights_needs_paper(tmp_path):
    data = make_pairs(tmp_path / "toy", n=1)
    r = runner.invoke(app, ["bench", "--methods", "lp", "--dataset", str(data), "--out", str(tmp_path / "R"),
                            "--weights", str(tmp_path / "w.safetensors")])  # fmt: skip
    assert r.exit_code == 2 and "--weights goes with --paper" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["bench", "--methods", "lp", "--dataset", str(data), "--out", str(tmp_path / "R"),
                            "--rows", "lp"])  # fmt: skip
    assert r.exit_code == 2 and "--rows goes with --paper" in r.output and "Traceback" not in r.output
