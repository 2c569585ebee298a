"""The transcribed results tables of the seed papers (src/ivfuse/bench/papers/*.json).

Schema, metric names against the registry, method names, and the transcription itself: every row's
printed values must appear, in column order, as a run of consecutive numbers in the paper's text
(../shared/seeds; or every column's values in row order, for tables printed transposed).
"""

from __future__ import annotations

import json
import math
import re
from importlib import resources
from pathlib import Path

import pytest

from ivfuse.bench import paper as paper_tables
from ivfuse.bench.papers import PAPERS, load_paper
from ivfuse.errors import InputError
from ivfuse.methods import registry
from ivfuse.metrics.registry import PROFILES, get_profile, lookup

REPO = Path(__file__).resolve().parents[1]
#: the text of each paper in the development workspace (not shipped: users do not have these files)
SEED_TEXT = {"defusion": "defusion.txt", "didfuse": "didfuse.txt", "ifesnet": "ifesnet.txt",
             "jcae": "jcae.txt", "sslwaeie": "ssl-waeie.txt"}  # fmt: skip

#: the bench's data set names (issue 10) and ivfuse's method names (the method registry)
DATASETS = {
    "tno",
    "tno-test24",
    "tno25",
    "roadscene-test41",
    "roadscene50",
    "flir-test",
    "nir",
    "mefb",
    "lytro",
    "mffw",
    "mfiwhu",
}
METHODS = {m.name for m in registry.available()}
TASKS = {"ivif", "mef", "mff"}


def _tables():
    return [(p, i) for p in PAPERS for i in range(len(load_paper(p)["tables"]))]


def _id(pt):
    p, i = pt
    t = load_paper(p)["tables"][i]
    return f"{p}-{t['table'].replace(' ', '')}-{t['dataset']}"


TABLES = _tables()


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@pytest.mark.parametrize("name", PAPERS)
def test_paper_schema(name):
    paper = load_paper(name)
    assert paper["paper"] == name
    for key in ("title", "citation", "method", "notes"):
        assert isinstance(paper[key], str) and paper[key], key
    assert paper["method"] in METHODS
    assert "shared/" not in json.dumps(paper), "a shipped table cites a file users do not have"
    assert paper["tables"], "no tables"
    keys = [(t["table"], t["dataset"]) for t in paper["tables"]]
    assert len(set(keys)) == len(keys), "one entry per (table, data set)"
    for t in paper["tables"]:
        for key in ("table", "caption", "paper_dataset", "dataset_note", "notes"):
            assert isinstance(t[key], str) and t[key], (t["table"], key)
        assert t["task"] in TASKS
        cols = t["columns"]
        names = [c["name"] for c in cols]
        assert len(set(names)) == len(names), f"{t['table']}: duplicate column names"
        computable = [c for c in cols if c.get("metric")]
        if computable:
            assert t["dataset"] in DATASETS, t["dataset"]
            assert t["profile"] in {"vifb", "ma2019", "mefb"}, t["profile"]
        else:  # reference-only: may name a data set we do not have (the bench leaves it out)
            assert isinstance(t["dataset"], str) and t["dataset"]
            assert t["profile"] is None or t["profile"] in {"vifb", "ma2019", "mefb"}
        for c in cols:
            assert set(c) <= {
                "name",
                "metric",
                "profile",
                "scale",
                "higher_is_better",
                "note",
                "kind",
                "of",
                "tried",
            }
            assert all(isinstance(x, str) and x for x in c.get("tried", []))
            assert c["metric"] is None or isinstance(c["metric"], str)
            if c.get("kind") in ("significance", "std"):  # a printed '± x' of column "of"
                assert c["metric"] is None and c["of"] in names
            else:
                assert isinstance(c["higher_is_better"], bool), c["name"]
            if "scale" in c:
                assert _is_number(c["scale"]) and c["scale"] > 0
            if c["metric"] is None and c.get("kind") not in ("significance", "std"):
                assert c.get("note"), f"{t['table']} {c['name']}: say why it is not computed"
        sig = {c["name"] for c in cols if c.get("kind") == "significance"}
        assert t["rows"]
        assert t.get("printed", True) in (True, False)
        if not t.get("printed", True):  # an ablation the paper shows as a figure: ivfuse's rows only
            assert all(r["ivfuse"] and not r["values"] for r in t["rows"]), t["table"]
            assert computable and any(r.get("ablation") for r in t["rows"]), t["table"]
            continue
        for r in t["rows"]:
            assert isinstance(r["name"], str) and r["name"]
            assert r["ivfuse"] is None or r["ivfuse"] in METHODS, r["ivfuse"]
            assert isinstance(r.get("options", {}), dict)
            assert isinstance(r.get("same_method", False), bool)  # an offset row (docs/benchmark.md)
            assert r["values"], f"{t['table']} {r['name']}: no values"
            for k, v in r["values"].items():
                assert k in names, f"{t['table']} {r['name']}: value for unknown column {k!r}"
                if k in sig:
                    assert isinstance(v, str) and float(v) >= 0
                else:
                    assert _is_number(v), (r["name"], k, v)


@pytest.mark.parametrize("name", PAPERS)
def test_paper_has_a_table_for_its_own_method(name):
    paper = load_paper(name)
    own = [t for t in paper["tables"] if any(r["ivfuse"] == paper["method"] for r in t["rows"])]
    assert own, f"{name}: no table row maps to ivfuse method {paper['method']!r}"
    # and at least one of those can be computed on a data set of ours
    assert any(t["dataset"] in DATASETS and any(c.get("metric") for c in t["columns"]) for t in own)


@pytest.mark.parametrize("pt", TABLES, ids=_id)
def test_metrics_exist_in_their_profile(pt):
    paper, i = pt
    t = load_paper(paper)["tables"][i]
    waiting = []
    for c in t["columns"]:
        if not c.get("metric"):
            continue
        prof = c.get("profile") or t["profile"]
        if prof not in PROFILES:
            assert prof == "mefb"
            waiting.append(c["name"])
            continue
        info = lookup(get_profile(prof), c["metric"])
        assert info.name == c["metric"], f"use the canonical name {info.name!r}, not {c['metric']!r}"
        assert c["higher_is_better"] == (info.direction == "higher"), c["name"]
    if waiting:
        pytest.skip(f"columns {waiting}: the mefb metric profile (issue 15) is not in the registry yet")


def _numbers(text: str) -> str:
    """All numbers of a text as one space-separated string of float reprs (' 0.0415 13.34 ... ')."""
    return " " + " ".join(repr(float(x)) for x in re.findall(r"\d*\.\d+|\d+", text)) + " "


def _run(values) -> str:
    return " " + " ".join(repr(float(v)) for v in values) + " "


@pytest.mark.data
@pytest.mark.parametrize("pt", TABLES, ids=_id)
def test_values_are_in_the_paper_text(pt):
    paper_name, i = pt
    paper = load_paper(paper_name)
    src = REPO.parent / "shared" / "seeds" / SEED_TEXT[paper_name]
    if not src.is_file():
        pytest.skip(f"seed paper not available at {src}")
    numbers = _numbers(src.read_text(encoding="utf-8"))
    t = paper["tables"][i]
    cols = [c["name"] for c in t["columns"]]
    by_row = [[r["values"][c] for c in cols if c in r["values"]] for r in t["rows"]]
    missing_rows = [r["name"] for r, vals in zip(t["rows"], by_row, strict=True) if _run(vals) not in numbers]
    if not missing_rows:
        return
    by_col = [[r["values"][c] for r in t["rows"] if c in r["values"]] for c in cols]
    missing_cols = [c for c, vals in zip(cols, by_col, strict=True) if vals and _run(vals) not in numbers]
    assert not missing_cols, (
        f"{paper_name} {t['table']} ({t['dataset']}): rows {missing_rows} and columns {missing_cols} "
        f"are not runs of numbers of {src.name}"
    )


def test_spot_checks_verified_by_eye():
    tno = next(t for t in load_paper("didfuse")["tables"] if t["dataset"] == "tno")
    did = next(r for r in tno["rows"] if r["ivfuse"] == "didfuse")
    assert did["values"] == {"EN": 7.006, "MI": 2.347, "SD": 42.657, "SF": 13.126, "VIF": 0.623, "AG": 4.294}
    assert did["options"] == {"rule": "sum"}
    nir = next(t for t in load_paper("didfuse")["tables"] if t["dataset"] == "nir")
    assert next(r for r in nir["rows"] if r["name"] == "DenseFuse")["values"]["MI"] == 4.045

    t1 = load_paper("sslwaeie")["tables"][0]
    assert (t1["table"], t1["dataset"]) == ("Table 1", "tno-test24")
    ours = next(r for r in t1["rows"] if r["ivfuse"] == "sslwaeie")
    assert ours["values"] == {"NMI": 0.5826, "QY": 0.8320, "QABF": 0.5412, "IFC": 3.6330}
    t2 = load_paper("sslwaeie")["tables"][1]
    assert next(r for r in t2["rows"] if r["name"].startswith("TE-MST"))["values"]["IFC"] == 2.646

    ifes = load_paper("ifesnet")["tables"][0]
    ours = next(r for r in ifes["rows"] if r["ivfuse"] == "ifesnet")
    assert ours["values"] == {
        "AG": 10.18,
        "EN": 6.923,
        "MI": 13.85,
        "GLD": 17.96,
        "SF": 0.0787,
        "VIFF": 0.6414,
    }

    jcae = load_paper("jcae")["tables"][0]
    gtf = next(r for r in jcae["rows"] if r["ivfuse"] == "gtf")
    assert gtf["values"]["Qcv"] == 1089.609 and gtf["values"]["MI significance"] == "0.87"
    assert next(r for r in jcae["rows"] if r["ivfuse"] == "jcae")["values"]["SSIM"] == 0.7205

    de = load_paper("defusion")["tables"]
    mefb = next(t for t in de if t["dataset"] == "mefb")
    u2 = next(r for r in mefb["rows"] if r["name"] == "U2Fusion")
    assert u2["values"] == {"CE": 4.526, "QCV": 253.8, "SSIM": 0.526, "MEF-SSIM": 0.815}  # IS/LPIPS misplaced
    rs = next(t for t in de if t["dataset"] == "roadscene-test41")
    assert next(r for r in rs["rows"] if r["ivfuse"] == "defusion")["values"] == {
        "CE": 0.767,
        "QCV": 647.5,
        "SSIM": 0.727,
        "CC": 0.652,
    }


def test_digits_kept_as_printed():
    text = resources.files("ivfuse.bench.papers").joinpath("jcae.json").read_text(encoding="utf-8")
    assert "1089.6090" in text and "4.9210" in text
    text = resources.files("ivfuse.bench.papers").joinpath("defusion.json").read_text(encoding="utf-8")
    assert "1225.60" in text


def test_ifesnet_mi_column_is_twice_en():
    """The reason its MI column maps to 2 x EN: every printed row satisfies MI ~= 2 EN."""
    paper = load_paper("ifesnet")
    n = 0
    for t in paper["tables"]:
        col = next(c for c in t["columns"] if c["name"] == "MI")
        assert (col["metric"], col["scale"]) == ("EN", 2.0)
        for r in t["rows"]:
            v = r["values"]
            assert abs(v["MI"] - 2 * v["EN"]) <= 0.01, (t["table"], r["name"])
            n += 1
    assert n == 29


def test_scales_put_values_on_the_paper_scale():
    ifes = load_paper("ifesnet")["tables"][0]
    sf = next(c for c in ifes["columns"] if c["name"] == "SF")
    assert sf["scale"] * 255 == pytest.approx(1.0)
    for paper, table, dataset in (
        ("jcae", "Table 1", "tno"),
        ("defusion", "Table 3", "tno"),
        ("defusion", "Table 1", "mefb"),
    ):
        t = next(t for t in load_paper(paper)["tables"] if (t["table"], t["dataset"]) == (table, dataset))
        ssim = next(c for c in t["columns"] if c["name"] == "SSIM")
        assert (ssim["metric"], ssim["scale"], ssim.get("profile") or t["profile"]) == ("SSIM", 0.5, "vifb")


def test_load_paper_names():
    assert load_paper("SSL-WAEIE")["paper"] == "sslwaeie"
    with pytest.raises(InputError) as err:
        load_paper("cddfuse")
    msg = str(err.value)
    assert "\n" not in msg and all(p in msg for p in PAPERS)


def test_json_files_are_packaged():
    text = (REPO / "pyproject.toml").read_text()
    block = text.split("[tool.setuptools.package-data]", 1)[1].split("\n[", 1)[0]
    assert '"bench/papers/*.json"' in block
    files = {p.name for p in resources.files("ivfuse.bench.papers").iterdir() if p.name.endswith(".json")}
    assert files == {f"{p}.json" for p in PAPERS}
    for p in PAPERS:  # plain JSON, nothing our own emitter would accept that json does not
        json.loads(resources.files("ivfuse.bench.papers").joinpath(f"{p}.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------- convention offsets


def test_convention_offset_known_answer():
    """Offset = median over the same-method rows of ours / paper, minus 1; the net gap divides it out."""
    cells = {
        "gff": {"CC": (0.5, 1.0), "QCV": (300.0, 200.0), "EN": (None, 7.0)},
        "gtf": {"CC": (0.6, 1.0), "QCV": (250.0, 250.0), "EN": (7.0, None)},
        "dwt": {"CC": (0.9, 1.0), "QCV": (100.0, 0.0)},  # a zero paper value gives no ratio
    }
    off = paper_tables.convention_offsets(cells, ["gff", "gtf", "dwt"])
    assert set(off) == {"CC", "QCV"}  # EN: no anchor has both values, so no offset (not 0)
    assert off["CC"]["offset"] == pytest.approx(-0.4)  # median of 0.5, 0.6, 0.9 is 0.6
    assert off["CC"]["n"] == 3 and off["CC"]["anchors"]["gff"] == pytest.approx(-0.5)
    assert off["QCV"]["offset"] == pytest.approx(0.25)  # median of 1.5 and 1.0 (n = 2: their mean)
    assert off["QCV"]["n"] == 2 and set(off["QCV"]["anchors"]) == {"gff", "gtf"}
    # a method 34 % low where the convention makes every method 40 % low: 10 % high net of it
    assert paper_tables.rel_gap(0.66, 1.0) == pytest.approx(-0.34)
    assert paper_tables.net_gap(0.66, 1.0, -0.4) == pytest.approx(0.1)
    assert paper_tables.net_gap(0.66, 1.0, None) is None
    assert paper_tables.net_gap(0.66, 1.0, -1.0) is None  # no ratio removes a -100 % offset
    assert paper_tables.rel_gap(1.0, 0.0) is None and paper_tables.rel_gap(None, 1.0) is None
    assert paper_tables.rel_gap(-0.5, -1.0) == pytest.approx(0.5)  # relative to |paper|


def _toy_results(means: dict[str, dict[str, float]]) -> dict:
    cells = [
        {"method": m, "profile": "vifb", "metric": k, "mean": v, "best": False, "tied_with_best": False}
        for m, vals in means.items()
        for k, v in vals.items()
    ]
    methods = [{"method": m, "status": "ok", "fused": 3} for m in means]
    return {"datasets": [{"name": "tno", "pairs": 3, "cells": cells, "methods": methods}], "values": [],
            "messages": []}  # fmt: skip


def test_paper_tables_print_offsets_beside_the_own_gap():
    paper = {
        "paper": "toy", "title": "Toy", "method": "didfuse",
        "tables": [{
            "table": "Table 1", "dataset": "tno", "profile": "vifb",
            "columns": [{"name": "CC", "metric": "CC", "higher_is_better": True},
                        {"name": "QCV", "metric": "QCV", "higher_is_better": False,
                         "tried": ["window 8: +30 %"]}],
            "rows": [
                {"name": "GFF", "ivfuse": "gff", "values": {"CC": 0.8, "QCV": 100.0}},
                {"name": "GTF", "ivfuse": "gtf", "values": {"CC": 0.5}},
                {"name": "DenseFuse (official outputs)", "ivfuse": "densefuse", "same_method": True,
                 "values": {"CC": 1.0}},
                {"name": "DIDFuse", "ivfuse": "didfuse", "values": {"CC": 0.7, "QCV": 200.0}},
            ],
        }],
    }  # fmt: skip
    results = _toy_results(
        {
            "gff": {"CC": 0.4, "QCV": 150.0},
            "gtf": {"CC": 0.3},
            "densefuse": {"CC": 0.7},
            "didfuse": {"CC": 0.42, "QCV": 250.0},
            "lp": {"CC": 0.5},  # an extra row: no paper value, not an anchor
        }
    )
    doc, display = paper_tables.tables(paper, results)
    (t,) = doc["tables"]
    assert t["same_method"] == ["gff", "gtf", "densefuse"]
    # CC ratios 0.5, 0.6, 0.7 -> offset -40 %; QCV: gff alone, 1.5 -> +50 %
    assert t["offsets"]["CC"]["offset"] == pytest.approx(-0.4) and t["offsets"]["CC"]["n"] == 3
    assert t["offsets"]["QCV"]["offset"] == pytest.approx(0.5) and t["offsets"]["QCV"]["n"] == 1
    rows = {(r["method"], r["metric"]): r for r in t["rows"]}
    did = rows[("didfuse", "CC")]
    assert did["gap"] == pytest.approx(-0.4) and did["gap_net"] == pytest.approx(0.0)
    assert rows[("didfuse", "QCV")]["gap_net"] == pytest.approx(250 / 1.5 / 200 - 1)
    assert rows[("gff", "CC")]["same_method"] and rows[("gff", "CC")]["gap_net"] is None
    assert rows[("lp", "CC")]["gap"] is None  # the paper has no lp row
    s = doc["summary"]
    assert s["method"] == "didfuse" and s["cells"] == 2 and s["cells_with_offset"] == 2
    assert s["median_abs_gap"] == pytest.approx((0.4 + 0.25) / 2)
    assert s["median_abs_gap_net"] == pytest.approx(abs(250 / 1.5 / 200 - 1) / 2)
    assert s["worst"]["metric"] == "CC"
    md = paper_tables.markdown(display)
    assert "convention offset (median over gff, gtf, densefuse)" in md
    assert "-40.0 % (n=3, -50.0 % … -30.0 %)" in md
    assert "0.4200 (0.7000, -40.0 %; net of offset +0.0 %)" in md
    assert "gff (GFF) [same method]" in md and "readings tried: window 8: +30 %" in md
    assert "| Table 1 | tno | CC | -40.0 % (n=3) | -40.0 % | +0.0 % |" in md
    # the command prints these (ivfuse bench --paper shows the run's messages)
    assert any("didfuse gap / convention offset" in m and "CC -40.0 % / -40.0 % / +0.0 %" in m
               for m in results["messages"])  # fmt: skip
    assert results["messages"][-1].startswith("paper toy: didfuse: median |gap| 32.5 % over 2 cells")


def test_no_offset_without_a_same_method_row():
    paper = {"paper": "toy", "title": "Toy", "method": "didfuse", "tables": [{
        "table": "Table 1", "dataset": "tno", "profile": "vifb",
        "columns": [{"name": "CC", "metric": "CC", "higher_is_better": True}],
        "rows": [{"name": "DIDFuse", "ivfuse": "didfuse", "values": {"CC": 0.5}},
                 {"name": "DenseFuse", "ivfuse": "densefuse", "values": {"CC": 0.5}}]}]}  # fmt: skip
    results = _toy_results({"didfuse": {"CC": 0.6}, "densefuse": {"CC": 0.4}})
    doc, display = paper_tables.tables(paper, results)
    assert doc["tables"][0]["offsets"] == {} and doc["tables"][0]["same_method"] == []
    assert doc["tables"][0]["rows"][0]["gap_net"] is None
    assert doc["summary"]["median_abs_gap"] == pytest.approx(0.2) and doc["summary"]["cells_with_offset"] == 0
    assert "– (no same-method row)" in paper_tables.markdown(display)


def test_ablation_table_borrows_the_offset_of_the_same_evaluation():
    """A table without same-method rows takes the offset of a table of the same paper on the same
    data with the same column definition (IFESNet's ablations of Tables I and II), marked 'from'."""
    col = {"name": "CC", "metric": "CC", "higher_is_better": True}
    main = {
        "table": "Table I",
        "dataset": "tno",
        "profile": "vifb",
        "paper_dataset": "INFV-41",
        "columns": [col],
        "rows": [
            {"name": "GTF", "ivfuse": "gtf", "values": {"CC": 0.5}},
            {"name": "Ours", "ivfuse": "didfuse", "values": {"CC": 0.5}},
        ],
    }
    ablation = {**main, "table": "Table III", "rows": main["rows"][1:]}
    other_data = {**ablation, "table": "Table IV", "paper_dataset": "INFV-20"}
    paper = {"paper": "toy", "title": "Toy", "method": "didfuse", "tables": [main, ablation, other_data]}
    results = _toy_results({"gtf": {"CC": 0.4}, "didfuse": {"CC": 0.45}})
    doc, display = paper_tables.tables(paper, results)
    t1, t3, t4 = doc["tables"]
    assert t1["offsets"]["CC"]["offset"] == pytest.approx(-0.2) and "from" not in t1["offsets"]["CC"]
    assert t3["offsets"]["CC"] == {**t1["offsets"]["CC"], "from": "Table I"}
    assert t4["offsets"] == {}  # another paper data set: nothing to borrow
    net = {t["table"]: r["gap_net"] for t in doc["tables"] for r in t["rows"] if r["method"] == "didfuse"}
    assert net["Table I"] == pytest.approx(0.125) and net["Table III"] == pytest.approx(0.125)
    assert net["Table IV"] is None
    assert doc["summary"]["cells"] == 3 and doc["summary"]["cells_with_offset"] == 2
    assert "convention offset (median over gtf of Table I)" in paper_tables.markdown(display)


def test_ablation_variant_is_a_row_of_its_own_table_only():
    """A variant (an ablation row's METHOD@weights=...) runs on the same data set as the paper's
    main table; it is listed in its ablation table, under its name, and not as an extra row of the
    main table, whose other extra rows (methods that ran on the data set) stay."""
    col = {"name": "CC", "metric": "CC", "higher_is_better": True}
    variant = {"name": "mu = 9", "ivfuse": "didfuse", "ablation": "mu-9",
               "options": {"weights": "/w/mu-9.st"}, "values": {"CC": 0.4}}  # fmt: skip
    main = {"table": "Table 1", "dataset": "tno", "profile": "vifb", "columns": [col],
            "rows": [{"name": "Ours", "ivfuse": "didfuse", "values": {"CC": 0.5}}]}  # fmt: skip
    study = {**main, "table": "Table 3", "rows": [variant, *main["rows"]]}
    paper = {"paper": "toy", "title": "Toy", "method": "didfuse", "tables": [main, study]}
    key = "didfuse@weights=/w/mu-9.st"
    results = _toy_results({"didfuse": {"CC": 0.45}, key: {"CC": 0.35}, "lp": {"CC": 0.3}})
    doc, display = paper_tables.tables(paper, results)
    t1, t3 = ({r["method"] for r in t["rows"]} for t in doc["tables"])
    assert t1 == {"didfuse", "lp"} and t3 == {key, "didfuse", "lp"}
    md = paper_tables.markdown(display)
    assert md.count("didfuse ablation mu-9 (mu = 9)") == 1 and "/w/mu-9.st" not in md


def test_unprinted_ablation_table_lists_its_own_rows_only():
    """A table of ablations a paper shows only as figures ("printed": false, JCAE's Fig. 4-5) has
    no paper values: its rows are the method and its variants, without the other methods that ran
    on the data set, and it adds no cell to the own method's gap summary."""
    col = {"name": "CC", "metric": "CC", "higher_is_better": True}
    variant = {"name": "mse", "ivfuse": "didfuse", "ablation": "mse", "options": {"weights": "/w/mse.st"},
               "values": {}}  # fmt: skip
    main = {"table": "Table 1", "dataset": "tno", "profile": "vifb", "columns": [col],
            "rows": [{"name": "Ours", "ivfuse": "didfuse", "values": {"CC": 0.5}}]}  # fmt: skip
    untrained = {"name": "lam = 10", "ivfuse": None, "ablation": "lambda-10", "values": {}}  # no weights
    figs = {**main, "table": "Fig. 4", "printed": False,
            "rows": [{"name": "Ours", "ivfuse": "didfuse", "values": {}}, variant, untrained]}  # fmt: skip
    paper = {"paper": "toy", "title": "Toy", "method": "didfuse", "tables": [main, figs]}
    key = "didfuse@weights=/w/mse.st"
    results = _toy_results({"didfuse": {"CC": 0.45}, key: {"CC": 0.35}, "lp": {"CC": 0.3}})
    doc, display = paper_tables.tables(paper, results)
    t1, t4 = doc["tables"]
    assert {r["method"] for r in t1["rows"]} == {"didfuse", "lp"}
    got = [(r["method"], r["ours"], r["paper"]) for r in t4["rows"]]
    assert got == [("didfuse", 0.45, None), (key, 0.35, None)]
    assert doc["summary"]["cells"] == 1  # Table 1's CC only
    assert "| lam = 10 (variant lambda-10 not trained) | – |" in paper_tables.markdown(display)


def test_retrained_default_is_a_row_of_the_ablation_tables_with_the_papers_values():
    """The default recipe trained beside the variants (resolve_ablations' ``"ablation": "default"``
    row) is listed in the ablation table under its own label, with its gap to the paper's value of
    the method's row; the method's own gap summary still counts the own method's cells only."""
    col = {"name": "CC", "metric": "CC", "higher_is_better": True}
    own = {"name": "Ours", "ivfuse": "didfuse", "values": {"CC": 0.5}}
    retrained = {"name": "the default recipe, trained beside the variants", "ivfuse": "didfuse",
                 "ablation": "default", "options": {"weights": "/w/d.st"},
                 "values": {"CC": 0.5}}  # fmt: skip
    variant = {"name": "mu = 9", "ivfuse": "didfuse", "ablation": "mu-9", "options": {"weights": "/w/m.st"},
               "values": {"CC": 0.4}}  # fmt: skip
    main = {"table": "Table 1", "dataset": "tno", "profile": "vifb", "columns": [col], "rows": [own]}
    study = {**main, "table": "Table 3", "rows": [own, retrained, variant]}
    paper = {"paper": "toy", "title": "Toy", "method": "didfuse", "tables": [main, study]}
    keys = {"didfuse": {"CC": 0.45}, "didfuse@weights=/w/d.st": {"CC": 0.40},
            "didfuse@weights=/w/m.st": {"CC": 0.3}}  # fmt: skip
    doc, display = paper_tables.tables(paper, _toy_results(keys))
    t1, t3 = doc["tables"]
    assert {r["method"] for r in t1["rows"]} == {"didfuse"}
    got = {r["method"]: r["gap"] for r in t3["rows"]}
    assert got["didfuse@weights=/w/d.st"] == pytest.approx(-0.2)  # 0.40 against the paper's 0.5
    assert doc["summary"]["cells"] == 2  # the own row of Tables 1 and 3
    md = paper_tables.markdown(display)
    assert "| didfuse (the default recipe, trained beside the variants) | 0.4000 (0.5000, -20.0 %)" in md
    assert "/w/d.st" not in md


def test_std_column_is_the_spread_over_the_images():
    """A 'mean ± std' cell: the '<metric> std' column (kind "std", of the metric's column) gets the
    sample standard deviation (n - 1) of the row's per-image values, on the column's scale; it has
    no gap and does not enter the summary."""
    paper = {"paper": "toy", "title": "Toy", "method": "didfuse", "tables": [{
        "table": "Table 3", "dataset": "tno", "profile": "vifb",
        "columns": [{"name": "SD", "metric": "SD", "higher_is_better": True, "scale": 2.0},
                    {"name": "SD std", "metric": None, "kind": "std", "of": "SD"}],
        "rows": [{"name": "Sum", "ivfuse": "didfuse", "values": {"SD": 20.0, "SD std": 1.5}}]}]}  # fmt: skip
    results = _toy_results({"didfuse": {"SD": 10.0}, "gff": {"SD": 9.0}})
    results["values"] = [
        {"dataset": "tno", "method": m, "profile": "vifb", "metric": "SD", "image": f"{i}", "value": v}
        for m, vals in {"didfuse": (8.0, 10.0, 12.0), "gff": (9.0, 9.0, float("nan"))}.items()
        for i, v in enumerate(vals)
    ]
    doc, display = paper_tables.tables(paper, results)
    rows = {(r["method"], r["metric"]): r for r in doc["tables"][0]["rows"]}
    # values 8, 10, 12: sample std 2, times the column's scale 2
    assert rows[("didfuse", "SD std")]["ours"] == pytest.approx(4.0)
    assert rows[("didfuse", "SD std")]["paper"] == 1.5 and rows[("didfuse", "SD std")]["gap"] is None
    assert rows[("gff", "SD std")]["ours"] == pytest.approx(0.0)  # the NaN is left out: 9, 9
    assert doc["summary"]["cells"] == 1  # SD only
    md = paper_tables.markdown(display)
    assert "4.000 (1.500)" in md and "SD std: sample standard deviation over the pairs of SD" in md


def test_best_marks_are_per_table_when_tables_share_a_data_set():
    """**best** and † are decided among a table's own rows: an ablation variant that beats every row
    of its own table on a shared data set does not take the mark from the main table (IFESNet's
    Table I had no best VIFF cell while the HC variant of Table V was the data set's best)."""
    col = {"name": "CC", "metric": "CC", "higher_is_better": True}
    variant = {"name": "HC", "ivfuse": "didfuse", "ablation": "hc", "options": {"weights": "/w/hc.st"},
               "values": {"CC": 0.6}}  # fmt: skip
    own = {"name": "Ours", "ivfuse": "didfuse", "values": {"CC": 0.5}}
    main = {"table": "Table 1", "dataset": "tno", "profile": "vifb", "columns": [col],
            "rows": [own, {"name": "LP", "ivfuse": "lp", "values": {"CC": 0.4}}]}  # fmt: skip
    study = {**main, "table": "Table 5", "rows": [own, variant]}
    paper = {"paper": "toy", "title": "Toy", "method": "didfuse", "tables": [main, study]}
    key = "didfuse@weights=/w/hc.st"
    per_image = {  # six images: hc > didfuse > lp on every one (Wilcoxon exact p = 0.031)
        "didfuse": [0.50, 0.52, 0.48, 0.51, 0.49, 0.50],
        key: [0.60, 0.61, 0.59, 0.62, 0.58, 0.60],
        "lp": [0.40, 0.41, 0.39, 0.42, 0.38, 0.40],
    }
    doc, display = paper_tables.tables(paper, _per_image_results(per_image))
    md = paper_tables.markdown(display)
    t1, t5 = md.split("## ")[1:3]
    assert "| didfuse (Ours) | 0.5000 (0.5000, +0.0 %; net of offset +0.0 %) **best** |" in t1
    assert "| lp (LP) [same method] | 0.4000 (0.4000, -0.0 %) |" in t1  # significantly below: no mark
    assert "| didfuse ablation hc (HC) | 0.6000 (0.6000, +0.0 %; net of offset +0.0 %) **best** |" in t5
    assert "| didfuse (Ours) | 0.5000 (0.5000, +0.0 %; net of offset +0.0 %) |" in t5
    # a row as good as the best up to noise gets the dagger
    per_image["lp"] = [0.52, 0.48, 0.51, 0.49, 0.50, 0.50]
    md = paper_tables.markdown(paper_tables.tables(paper, _per_image_results(per_image))[1])
    assert "| lp (LP) [same method] | 0.5000 (0.4000, +25.0 %) † |" in md.split("## ")[1]


def _per_image_results(per_image: dict[str, list[float]]) -> dict:
    """Toy results of one CC column on 'tno' with the per-image values (Wilcoxon, alpha 0.05)."""
    results = _toy_results({m: {"CC": sum(v) / len(v)} for m, v in per_image.items()})
    results["datasets"][0]["metrics"] = [{"profile": "vifb", "metric": "CC", "higher_is_better": True}]
    results["values"] = [
        {"dataset": "tno", "method": m, "image": f"{i:02d}", "profile": "vifb", "metric": "CC", "value": v}
        for m, vals in per_image.items()
        for i, v in enumerate(vals)
    ]
    results["test"], results["alpha"] = "wilcoxon", 0.05
    return results
