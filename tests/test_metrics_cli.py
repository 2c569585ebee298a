"""End-to-end tests of ``ivfuse eval``: matching by stem, suffix, outputs, errors, exit codes."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ivfuse import metrics as M
from ivfuse.cli import app

from .conftest import SHARED_DATA

runner = CliRunner()
VIFB_REF = SHARED_DATA / "vifb_ref"


def run(*args):
    return runner.invoke(app, ["eval", *(str(a) for a in args)])


def _img(seed: int, h: int = 56, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 100 + 60 * np.sin(x / (4 + seed % 3)) + 40 * np.cos(y / 6) + rng.normal(0, 8, (h, w))
    return np.clip(base, 0, 255).astype(np.uint8)


@pytest.fixture
def folders(tmp_path):
    """ir/ vi/ fused/ with three good pairs, one fused file without a pair, one of the wrong size."""
    for d in ("ir", "vi", "fused"):
        (tmp_path / d).mkdir()
    for i, stem in enumerate(["a", "b", "c", "d"]):
        ir, vi = _img(i), _img(10 + i)
        Image.fromarray(ir).save(tmp_path / "ir" / f"{stem}.png")
        Image.fromarray(vi).save(tmp_path / "vi" / f"{stem}.png")
        fused = ((ir.astype(int) + vi) // 2).astype(np.uint8)
        if stem == "d":  # mismatched: one row short
            fused = fused[:-1]
        Image.fromarray(fused).save(tmp_path / "fused" / f"{stem}_avg.png")
    Image.fromarray(_img(99)).save(tmp_path / "fused" / "zzz_avg.png")  # unmatched
    Image.fromarray(_img(98)).save(tmp_path / "fused" / "a_other.png")  # another method
    return tmp_path


def test_eval_folders_with_suffix_csv_json(folders):
    out_json, out_csv = folders / "res.json", folders / "res.csv"
    r = run(
        "--ir", folders / "ir", "--vi", folders / "vi", "--fused", folders / "fused",
        "--suffix", "_avg", "--metrics", "EN,MI,QABF,SSIM", "--json", out_json, "--csv", out_csv,
    )  # fmt: skip
    # d (size mismatch) fails, zzz has no pair: exit 1, but a, b, c are evaluated
    assert r.exit_code == 1, r.output
    assert "zzz_avg.png" in r.output and "no infrared and no visible image" in r.output
    assert "d_avg.png" in r.output and "fused image is 64x55" in r.output
    assert "1 file(s)" in r.output and "ignored" in r.output  # a_other.png
    assert "3 evaluated" in r.output and "mean ± std" in r.output
    doc = json.loads(out_json.read_text())
    assert doc["profile"] == "vifb"
    assert [im["name"] for im in doc["images"]] == ["a", "b", "c"]
    assert set(doc["mean"]) == set(doc["std"]) == {"EN", "MI", "QABF", "SSIM"}
    d = folders
    expected = M.evaluate(d / "fused" / "b_avg.png", d / "ir" / "b.png", d / "vi" / "b.png",
                          metrics=["EN", "MI", "QABF", "SSIM"])  # fmt: skip
    assert doc["images"][1]["metrics"] == pytest.approx(expected)
    en = [im["metrics"]["EN"] for im in doc["images"]]
    assert doc["mean"]["EN"] == pytest.approx(np.mean(en))
    assert doc["std"]["EN"] == pytest.approx(np.std(en))
    with open(out_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [row["name"] for row in rows] == ["a", "b", "c"]
    assert float(rows[1]["MI"]) == pytest.approx(expected["MI"])


def test_eval_all_good_exits_zero_and_workers(folders):
    (folders / "fused" / "d_avg.png").unlink()
    (folders / "fused" / "zzz_avg.png").unlink()
    (folders / "ir" / "d.png").unlink()
    (folders / "vi" / "d.png").unlink()
    one = folders / "one.json"
    two = folders / "two.json"
    base = ["--ir", folders / "ir", "--vi", folders / "vi", "--fused", folders / "fused",
            "--suffix", "_avg", "-m", "EN,SF,VIFF", "--profile", "ma2019"]  # fmt: skip
    r1 = run(*base, "--json", one)
    r2 = run(*base, "--json", two, "--workers", "2")
    assert r1.exit_code == 0, r1.output
    assert r2.exit_code == 0, r2.output
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    assert a["profile"] == "ma2019" and a == b


def test_eval_without_suffix_reports_every_file_unmatched(folders):
    r = run("--ir", folders / "ir", "--vi", folders / "vi", "--fused", folders / "fused")
    assert r.exit_code == 2
    assert "no fused image" in r.output and "--suffix" in r.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--metrics", "EN,BOGUS"], "unknown metric 'BOGUS'"),
        (["--profile", "nope"], "unknown metric profile"),
        (["--workers", "0"], "--workers must be at least 1"),
    ],
)
def test_eval_bad_options_exit_2(folders, extra, message):
    r = run("--ir", folders / "ir", "--vi", folders / "vi", "--fused", folders / "fused", *extra)
    assert r.exit_code == 2
    assert message in r.output
    assert "Traceback" not in r.output


def test_eval_missing_folder_exit_2(folders):
    r = run("--ir", folders / "nope", "--vi", folders / "vi", "--fused", folders / "fused")
    assert r.exit_code == 2 and "folder not found" in r.output
    r = run("--ir", folders / "ir")
    assert r.exit_code == 2 and "required" in r.output


def test_eval_list_shows_profiles_and_sources():
    r = runner.invoke(app, ["eval", "--list"], terminal_width=200)
    assert r.exit_code == 0, r.output
    for text in ("profile vifb", "profile ma2019", "QCV", "VIFF", "MEF-SSIM", "Han", "metricsQabf"):
        assert text in r.output


def test_eval_on_vifb_reference_images(tmp_path):
    ref_csv = VIFB_REF / "reference.csv"
    if not ref_csv.is_file():
        pytest.skip(f"VIFB reference data not available at {VIFB_REF}")
    out = tmp_path / "gtf.json"
    r = run("--ir", VIFB_REF / "ir", "--vi", VIFB_REF / "vi", "--fused", VIFB_REF / "fused",
            "--suffix", "_GTF", "-m", "Qcv,Mutinf", "--json", out)  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    with open(ref_csv, newline="") as fh:
        ref = {(row["image"], row["metric"]): float(row["value"]) for row in csv.DictReader(fh)
               if row["method"] == "GTF"}  # fmt: skip
    for im in doc["images"]:
        assert math.isclose(im["metrics"]["QCV"], ref[(im["name"], "Qcv")], rel_tol=5e-5)
        assert math.isclose(im["metrics"]["MI"], ref[(im["name"], "Mutinf")], rel_tol=5e-5)
