"""The study scripts of ``scripts/``: how close each method is to its paper (``paper_gaps.py``) and
the colour cast of fused colour images (``colour_cast.py``)."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_paper_gaps_script_reads_bench_summaries_and_cards(tmp_path, capsys):
    """scripts/paper_gaps.py: one row per `bench --paper` folder, the numbers as the bench wrote
    them, and the training scale of a weights card (stages, deviations, precision) in one line."""
    from ivfuse.methods import registry

    mod = _load("paper_gaps")
    staged = {
        "data": {"name": "BSDS500", "pairs": 400},
        "epochs": 50,
        "recipe_epochs": 51,
        "stages": [{"iterations": 3400}, {"iterations": 6000}, {"iterations": 5000}],
        "deviations_from_recipe": {
            "crop": {"used": 128, "recipe": 256},
            "epochs": {"used": 50, "recipe": 51},
            "iterations": {"used": 5000, "recipe": 637500},
            "iterations_per_epoch": {"used": 100, "recipe": 12500},
        },
        "precision": "bf16",
        "reduced_scale": True,
    }
    assert mod.scale(staged) == (
        "BSDS500, 400 samples per epoch; 14,400 iterations in 3 stages; recipe 637,500 iterations; "
        "crop 128 (recipe 256); bf16; reduced scale"
    )
    # stages that record batch size and crop (scripts/ship_weights.py) are summed as samples per crop
    staged["stages"] = [
        {"iterations": 3400, "batch_size": 4, "crop": 128},
        {"iterations": 6000, "batch_size": 4, "crop": 128},
        {"iterations": 2000, "batch_size": 16, "crop": 256},
    ]
    assert mod.scale(staged).startswith(
        "BSDS500, 400 samples per epoch; 11,400 iterations in 3 stages (37,600 samples at 128 px, "
        "32,000 samples at 256 px); recipe 637,500 iterations; "
    )
    plain = {
        "data": {"name": "roadscene221", "pairs": 221},
        "epochs": 30,
        "recipe_epochs": 30,
        "deviations_from_recipe": {"resize": {"used": None, "recipe": [360, 280]}},
        "reduced_scale": False,
    }
    assert mod.scale(plain) == (
        "roadscene221, 221 samples per epoch; 30/30 epochs; resize off (recipe 360x280); the recipe's scale"
    )

    out = tmp_path / "bench"
    out.mkdir()
    summary = {
        "method": "jcae",
        "cells": 5,
        "median_abs_gap": 0.1474,
        "worst": {"table": "Table 1", "dataset": "tno", "metric": "Qcv", "gap": -0.5113},
        "cells_with_offset": 5,
        "median_abs_gap_with_offset": 0.1474,
        "median_abs_gap_net": 0.0748,
    }
    (out / "paper_jcae.json").write_text(json.dumps({"paper": {}, "tables": [], "summary": summary}))
    (row,) = mod.rows([out])
    assert row["median"] == "14.7 % (5 cells)" and row["with_offset"] == "14.7 % → 7.5 % (5 cells)"
    assert row["worst"] == "Qcv -51.1 %, Table 1 on tno"
    assert row["scale"] == mod.scale(registry.info("jcae").weights_card)  # the shipped card's scale
    assert mod.main([str(out), "--markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith("| jcae | 14.7 % (5 cells) | 14.7 % → 7.5 % (5 cells) | Qcv -51.1 %")
    (out / "paper_jcae.json").write_text(json.dumps({"paper": {}, "tables": []}))
    with pytest.raises(SystemExit, match="no summary"):
        mod.rows([out])


def test_colour_cast_script_known_answers(tmp_path, capsys):
    """scripts/colour_cast.py: a pure brightness change is no cast, a one-channel change is, and a
    contrast change shows in the range; folders are matched by stem and the table is printed."""
    from PIL import Image

    mod = _load("colour_cast")
    rng = np.random.default_rng(0)
    a = rng.uniform(40, 200, (32, 48, 3))
    b = np.clip(a + rng.normal(0, 5, a.shape), 0, 255)
    src = (a + b) / 2
    got = mod.measure(src + 5.0, a, b)
    assert got["cast"] == pytest.approx(0, abs=1e-9) and got["shift"] == pytest.approx(5.0)
    got = mod.measure(src + np.array([6.0, 0.0, 0.0]), a, b)  # red up by 6: common shift 2, cast 4
    assert got["shift"] == pytest.approx(2.0) and got["cast"] == pytest.approx(4.0)
    flat = 128 + (src - 128) * 0.5  # half the contrast: half the 1-99 % span
    lo, hi = np.percentile(src.mean(2), [1, 99])
    assert mod.measure(flat, a, b)["range"] == pytest.approx(-(hi - lo) / 2)
    with pytest.raises(ValueError, match="sizes differ"):
        mod.measure(src[:-1], a, b)

    dirs = {k: tmp_path / k for k in ("fused", "a", "b")}
    for d in dirs.values():
        d.mkdir()
    for stem, shift in (("01", [6, 0, 0]), ("02", [0, 0, 0])):
        Image.fromarray(np.round(a).astype(np.uint8)).save(dirs["a"] / f"{stem}.png")
        Image.fromarray(np.round(a).astype(np.uint8)).save(dirs["b"] / f"{stem}.png")
        fused = np.clip(np.round(a) + np.array(shift), 0, 255).astype(np.uint8)
        Image.fromarray(fused).save(dirs["fused"] / f"{stem}.png")
    out = tmp_path / "cast.json"
    assert mod.main([str(dirs["fused"]), str(dirs["a"]), str(dirs["b"]), "--json", str(out)]) == 0
    (res,) = json.loads(out.read_text())
    assert res["images"] == 2 and res["per_image"]["01"]["cast"] == pytest.approx(4.0, abs=0.05)
    assert res["per_image"]["02"]["cast"] == pytest.approx(0.0, abs=1e-9)
    assert res["cast_mean"] == pytest.approx(2.0, abs=0.03) and "| 2 |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        mod.main([str(dirs["fused"]), str(dirs["a"])])  # not a triple


def test_focus_pairs_folder_writes_complementary_gray_pairs(tmp_path):
    """scripts/focus_pairs_folder.py (JCAE's IFCNN-style training pairs): per image and pair, two
    gray images of the asked size that are each sharp where the other is blurred, landscape from a
    portrait source, the same folder from the same seed, and no write into a used folder."""
    from PIL import Image

    mod = _load("focus_pairs_folder")
    src = tmp_path / "images"
    src.mkdir()
    rng = np.random.default_rng(0)
    texture = (rng.random((96, 64, 3)) * 255).astype(np.uint8)  # portrait, sharp noise everywhere
    Image.fromarray(texture).save(src / "p.png")
    n = mod.write_pairs(tmp_path / "out", src, per_image=2, size=(48, 36), seed=3)
    assert n == 2
    names = sorted(p.name for p in (tmp_path / "out" / "ir").iterdir())
    assert names == ["p_0.png", "p_1.png"] == sorted(p.name for p in (tmp_path / "out" / "vi").iterdir())
    for k in range(2):
        a = np.asarray(Image.open(tmp_path / "out" / "ir" / f"p_{k}.png"), np.float64)
        b = np.asarray(Image.open(tmp_path / "out" / "vi" / f"p_{k}.png"), np.float64)
        assert a.shape == b.shape == (36, 48)  # H x W of --size 48x36, turned to landscape

        # local detail of each image is larger where the other's is smaller: complementary
        # focus, so the two detail maps are anti-correlated
        def detail(x):  # squared Laplacian, summed over 4 x 4 blocks
            lap = (4 * x[1:-1, 1:-1] - x[:-2, 1:-1] - x[2:, 1:-1] - x[1:-1, :-2] - x[1:-1, 2:]) ** 2
            return lap[:32, :44].reshape(8, 4, 11, 4).sum(axis=(1, 3)).ravel()

        assert np.corrcoef(detail(a), detail(b))[0, 1] < -0.5
    again = mod.write_pairs(tmp_path / "again", src, per_image=2, size=(48, 36), seed=3)
    assert again == 2
    for side in ("ir", "vi"):
        for k in range(2):
            x = np.asarray(Image.open(tmp_path / "out" / side / f"p_{k}.png"))
            y = np.asarray(Image.open(tmp_path / "again" / side / f"p_{k}.png"))
            assert np.array_equal(x, y)
    with pytest.raises(SystemExit, match="already holds"):
        mod.write_pairs(tmp_path / "out", src, per_image=1, size=(48, 36))
