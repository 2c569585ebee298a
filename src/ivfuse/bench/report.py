"""Results of a benchmark as data (results.json, results.csv) and as a report (report.md).

:func:`build` turns a runner :class:`~ivfuse.bench.runner.Outcome` into one JSON-ready dict; every
other output (markdown, HTML, figures, paper tables) is made from that dict, so a report can be
rebuilt from ``results.json`` alone.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import statistics
from pathlib import Path
from typing import Any

from .. import io
from .._version import __version__
from ..metrics.registry import get_profile, lookup
from . import stats
from .runner import Outcome

TEST_NAMES = {"wilcoxon": "Wilcoxon signed-rank test", "t": "paired t-test"}


def _num(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def fmt(v: float | None) -> str:
    """A value as a table shows it: about four significant digits."""
    if v is None or not math.isfinite(v):
        return "–"
    a = abs(v)
    if a >= 1000:
        return f"{v:.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 10:
        return f"{v:.2f}"
    if a >= 1:
        return f"{v:.3f}"
    return f"{v:.4f}"


def column_label(profile: str, metric: str, several_profiles: bool) -> str:
    return f"{metric} ({profile})" if several_profiles else metric


def build(
    outcome: Outcome, *, test: str = "wilcoxon", alpha: float = 0.05, command: str = ""
) -> dict[str, Any]:
    """Everything of a run as one JSON-ready dict (see the module docstring)."""
    if test not in stats.TESTS:
        raise ValueError(f"unknown test {test!r}")
    datasets = []
    flat: list[dict[str, Any]] = []
    for task in outcome.tasks:
        ds = task.data.dataset
        runs = outcome.runs[ds.name]
        cols = []
        for profile, names in task.metrics.items():
            prof = get_profile(profile)
            for m in names:
                info = lookup(prof, m)
                cols.append(
                    {"profile": profile, "metric": info.name, "higher_is_better": info.direction == "higher"}
                )
        ok = [k for k, r in runs.items() if r.status == "ok" and r.fused]
        per_image: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
        for c in cols:
            pm: dict[str, dict[str, float]] = {}
            for key in ok:
                pm[key] = {
                    stem: outcome.values[(ds.name, key, stem, c["profile"], c["metric"])]
                    for stem in runs[key].fused
                    if (ds.name, key, stem, c["profile"], c["metric"]) in outcome.values
                }
            per_image[(c["profile"], c["metric"])] = pm
        cells = []
        means: dict[str, dict[str, float]] = {k: {} for k in ok}
        higher: dict[str, bool] = {}
        for c in cols:
            cid = f"{c['profile']}:{c['metric']}"
            higher[cid] = c["higher_is_better"]
            pm = per_image[(c["profile"], c["metric"])]
            summ = {k: stats.summarise(list(pm[k].values())) for k in ok}
            for k in ok:
                means[k][cid] = summ[k].mean
            best = stats.best_method({k: summ[k].mean for k in ok}, c["higher_is_better"])
            pvals = stats.significance(pm, best, test) if best is not None else {}
            for k in ok:
                p = pvals.get(k, math.nan)
                cells.append(
                    {
                        "method": k,
                        "profile": c["profile"],
                        "metric": c["metric"],
                        "mean": _num(summ[k].mean),
                        "std": _num(summ[k].std),
                        "n": summ[k].n,
                        "best": k == best,
                        "p": _num(p),
                        "tied_with_best": bool(k != best and math.isfinite(p) and p >= alpha),
                    }
                )
            for k in ok:
                for stem, v in pm[k].items():
                    flat.append(
                        {
                            "dataset": ds.name,
                            "method": k,
                            "image": stem,
                            "profile": c["profile"],
                            "metric": c["metric"],
                            "value": _num(v),
                        }
                    )
        ranks = stats.average_ranks(means, higher) if ok else {}
        methods = []
        for key, r in runs.items():
            ms = r.ms
            methods.append(
                {
                    "method": key,
                    "name": r.method.name,
                    "options": dict(r.method.options),
                    "status": r.status,
                    "reason": r.reason,
                    "params": r.params,
                    "fused": len(r.fused),
                    "failed": dict(r.failed),
                    "ms_median": _num(statistics.median(ms)) if ms else None,
                    "ms_mean": _num(statistics.fmean(ms)) if ms else None,
                    "avg_rank": _num(ranks.get(key)),
                }
            )
        datasets.append(
            {
                **ds.as_dict(),
                "location": str(task.data.location),
                "pairs": len(task.data.pairs),
                "pair_files": [
                    {"stem": p.stem, "first": str(p.ir), "second": str(p.vi)} for p in task.data.pairs
                ],
                "metrics": cols,
                "methods": methods,
                "cells": cells,
            }
        )
    t = outcome.timing
    return {
        "ivfuse": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "test": test,
        "alpha": alpha,
        "timing": {
            "total_s": round(t.total, 3),
            "fusion_s": round(t.fusion, 3),
            "metrics_s": round(t.metrics, 3),
            "overhead_s": round(t.overhead, 3),
            "fused_now": t.fused_now,
            "evaluated_now": t.evaluated_now,
        },
        "messages": list(outcome.messages),
        "datasets": datasets,
        "values": flat,
    }


def _write_text(path: Path, text: str) -> None:
    io.atomic_write_text(path, text)


def write_json(results: dict[str, Any], path: Path) -> None:
    _write_text(path, json.dumps(results, indent=1) + "\n")


def write_csv(results: dict[str, Any], path: Path) -> None:
    """One row per method x dataset x image x metric."""
    with io.atomic_write(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["dataset", "method", "image", "profile", "metric", "value"])
        for r in results["values"]:
            v = r["value"]
            w.writerow(
                [
                    r["dataset"],
                    r["method"],
                    r["image"],
                    r["profile"],
                    r["metric"],
                    "" if v is None else repr(v),
                ]
            )


def ranked_methods(d: dict[str, Any]) -> list[dict[str, Any]]:
    """The methods of one data set that produced results, best average rank first."""
    ok = [m for m in d["methods"] if m["status"] == "ok" and m["fused"]]
    return sorted(ok, key=lambda m: (m["avg_rank"] is None, m["avg_rank"] or 0.0, m["method"]))


def dataset_table(d: dict[str, Any], marker: str = "†") -> tuple[list[str], list[list[str]]]:
    """Header and rows (plain text cells, best in ``**bold**``) of one data set's table, methods by
    average rank."""
    several = len({c["profile"] for c in d["metrics"]}) > 1
    header = ["method"]
    for c in d["metrics"]:
        arrow = "↑" if c["higher_is_better"] else "↓"
        header.append(f"{column_label(c['profile'], c['metric'], several)} {arrow}")
    header += ["ms/pair", "params", "avg rank"]
    cell = {(c["method"], c["profile"], c["metric"]): c for c in d["cells"]}
    rows = []
    for m in ranked_methods(d):
        row = [m["method"]]
        for c in d["metrics"]:
            x = cell.get((m["method"], c["profile"], c["metric"]))
            if x is None or x["mean"] is None:
                row.append("–")
                continue
            text = f"{fmt(x['mean'])} ± {fmt(x['std'])}"
            if x["best"]:
                text = f"**{text}**"
            elif x["tied_with_best"]:
                text += f" {marker}"
            row.append(text)
        row.append(fmt(m["ms_median"]) if m["ms_median"] is not None else "–")
        row.append(f"{m['params']:,}" if m["params"] else "–")
        row.append(fmt(m["avg_rank"]))
        rows.append(row)
    return header, rows


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    align = ["---"] + ["--:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def markdown(results: dict[str, Any], figures: dict[str, list[str]] | None = None) -> str:
    """report.md: per data set the table of mean ± std, best in bold, † where a method is not
    significantly different from the best, ms per pair, parameters and average rank."""
    test = TEST_NAMES[results["test"]]
    t = results["timing"]
    out = ["# ivfuse bench", ""]
    if results["command"]:
        out += ["```bash", results["command"], "```", ""]
    out += [
        f"ivfuse {results['ivfuse']}, {results['created']}. Values are means ± population std over the "
        f"images; **bold**: best mean; †: not significantly different from the best ({test}, paired over "
        f"the images, p ≥ {results['alpha']}); ms/pair: median time of the method's fuse() per pair "
        "(from the run that fused the image); avg rank: mean rank over the metrics (VIFB convention, "
        "lower is better).",
        "",
        f"Time: {t['total_s']:.1f} s in all, {t['fusion_s']:.1f} s fusing ({t['fused_now']} images fused "
        f"now), {t['metrics_s']:.1f} s computing metrics ({t['evaluated_now']} images scored now), "
        f"{t['overhead_s']:.1f} s other (reading, writing, caching, reports).",
        "",
    ]
    for d in results["datasets"]:
        out += [f"## {d['name']} — {d['pairs']} pairs ({d['task']})", "", d["description"] + ".", ""]
        profiles = sorted({c["profile"] for c in d["metrics"]})
        out += [f"Metric profile: {', '.join(profiles)}. Colour: {d['colour']}.", ""]
        header, rows = dataset_table(d)
        if rows:
            out += [_md_table(header, rows), ""]
        skipped = [m for m in d["methods"] if m["status"] != "ok"]
        for m in skipped:
            out.append(f"- {m['method']}: skipped ({m['reason']})")
        for m in d["methods"]:
            for stem, why in m["failed"].items():
                out.append(f"- {m['method']} / {stem}: failed ({why})")
        if skipped or any(m["failed"] for m in d["methods"]):
            out.append("")
        for fig in (figures or {}).get(d["name"], []):
            out += [f"![{d['name']}]({fig})", ""]
    return "\n".join(out).rstrip() + "\n"


def write_markdown(results: dict[str, Any], path: Path, figures: dict[str, list[str]] | None = None) -> None:
    _write_text(path, markdown(results, figures))
