"""Paper tables: rebuild a seed paper's results tables on our data, the paper's values beside ours.

The paper's printed values live in ``ivfuse/bench/papers/<paper>.json`` (one file per paper, with
the table number, the data set we use for it, the metric profile and, per column, the ivfuse metric
and the factor that puts ivfuse's value on the paper's scale). :func:`plan` turns a paper into
runner tasks (one per data set: the table's methods that ivfuse has, plus extra rows), and
:func:`tables` turns the benchmark results back into the paper's tables::

    {"paper": "didfuse", "tables": [{"table": "Table 4", "dataset": "tno", "profile": "ma2019",
      "rows": [{"method": "didfuse", "metric": "EN", "ours": 6.84, "paper": 7.006}, ...]}]}

``"paper"`` is null where the paper has no value for the cell, ``"ours"`` null where ivfuse cannot
compute the column (its metric needs something we do not have; the table's notes say why).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from .. import io
from ..errors import InputError
from ..methods import registry
from . import stats
from .datasets import resolve
from .papers import load_paper
from .report import _md_table, fmt
from .runner import MethodSpec, Task


def _spec(m: str | MethodSpec) -> MethodSpec:
    if isinstance(m, MethodSpec):
        return m
    from . import parse_method

    return parse_method(m)


def _profile_of(table: dict[str, Any], col: dict[str, Any]) -> str:
    return col.get("profile") or table["profile"]


def plan(
    paper: dict[str, Any],
    *,
    data_root: str | os.PathLike | None = None,
    extra_methods: list[str] | None = None,
    messages: list[str] | None = None,
) -> list[Task]:
    """Runner tasks for every table of ``paper`` whose data set is available (one task per data set).

    ``extra_methods``: ivfuse methods added as extra rows (``None``: the classical baselines that
    support the table's task). A table whose data set is missing is left out with a message.
    """
    messages = messages if messages is not None else []
    by_ds: dict[str, Task] = {}
    for t in paper["tables"]:
        try:
            data = resolve(t["dataset"], data_root)
        except InputError as exc:
            messages.append(f"{paper['paper']} {t['table']} on {t['dataset']}: left out ({exc})")
            continue
        task = by_ds.get(data.dataset.name)
        if task is None:
            task = by_ds[data.dataset.name] = Task(data, [], {})
        specs = [MethodSpec.make(r["ivfuse"], r.get("options")) for r in t["rows"] if r.get("ivfuse")]
        extras = extra_methods
        if extras is None:
            extras = [
                m.name
                for m in registry.available()
                if m.family == "classical" and data.dataset.task in m.tasks
            ]
        specs += [_spec(m) for m in extras]
        for s in specs:
            if s not in task.methods:
                task.methods.append(s)
        for col in t["columns"]:
            if col.get("metric"):
                names = task.metrics.setdefault(_profile_of(t, col), [])
                if col["metric"] not in names:
                    names.append(col["metric"])
    return list(by_ds.values())


def _significance(
    table: dict[str, Any],
    col: dict[str, Any],
    key: str,
    own_key: str,
    per_image: dict[tuple[str, str, str, str], dict[str, float]],
    dataset: str,
) -> float | None:
    """The p-value of a paper's significance column: the paired test (``col["test"]``, default the
    paired t-test JCAE reports) of method ``key`` against the paper's own method, over the images,
    on the metric of the column named by ``col["of"]``."""
    target = next((c for c in table["columns"] if c["name"] == col.get("of") and c.get("metric")), None)
    if target is None:
        return None
    where = (dataset, _profile_of(table, target), target["metric"])
    a, b = per_image.get((where[0], key, *where[1:]), {}), per_image.get((where[0], own_key, *where[1:]), {})
    stems = [s for s in a if s in b]
    p = stats.paired_p([a[s] for s in stems], [b[s] for s in stems], col.get("test", "t"))
    return None if not math.isfinite(p) else p


def _pct(ours: float | None, ref: float | None) -> str:
    if ours is None or ref is None or not math.isfinite(ours) or ref == 0:
        return ""
    return f"{100.0 * (ours - ref) / abs(ref):+.1f} %"


def tables(paper: dict[str, Any], results: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the paper_<name>.json document, a display structure for markdown/HTML)."""
    by_ds = {d["name"]: d for d in results["datasets"]}
    per_image: dict[tuple[str, str, str, str], dict[str, float]] = {}
    for v in results["values"]:
        if v["value"] is not None:
            per_image.setdefault((v["dataset"], v["method"], v["profile"], v["metric"]), {})[v["image"]] = v[
                "value"
            ]
    doc: dict[str, Any] = {"paper": paper["paper"], "tables": []}
    display: dict[str, Any] = {
        "paper": paper["paper"],
        "title": paper.get("title", paper["paper"]),
        "citation": paper.get("citation", ""),
        "tables": [],
        "notes": [paper["notes"]] if paper.get("notes") else [],
    }
    for t in paper["tables"]:
        d = by_ds.get(t["dataset"])
        if d is None:
            continue
        cells = {(c["method"], c["profile"], c["metric"]): c for c in d["cells"]}
        status = {m["method"]: m for m in d["methods"]}
        paper_rows = {
            MethodSpec.make(r["ivfuse"], r.get("options")).key: r for r in t["rows"] if r.get("ivfuse")
        }
        order = list(dict.fromkeys([*paper_rows, *(m["method"] for m in d["methods"])]))
        ran = [k for k in order if k in status and status[k]["status"] == "ok" and status[k]["fused"]]
        own = [r for r in t["rows"] if r.get("ivfuse") == paper.get("method")]
        own_key = MethodSpec.make(own[0]["ivfuse"], own[0].get("options")).key if own else None
        rows_json = []
        header = ["method"] + [c["name"] for c in t["columns"]]
        rows_md: list[list[str]] = []
        for key in ran:
            prow = paper_rows.get(key)
            label = key if prow is None else f"{key} ({prow['name']})"
            line = [label]
            for col in t["columns"]:
                ref = (prow or {}).get("values", {}).get(col["name"])
                ref = float(ref) if isinstance(ref, (int, float)) else ref
                ours = None
                mark = ""
                if col.get("metric"):
                    c = cells.get((key, _profile_of(t, col), col["metric"]))
                    if c is not None and c["mean"] is not None:
                        ours = c["mean"] * float(col.get("scale", 1.0))
                        mark = " **best**" if c["best"] else (" †" if c["tied_with_best"] else "")
                elif col.get("kind") == "significance" and own_key in ran and key != own_key:
                    ours = _significance(t, col, key, own_key, per_image, d["name"])
                if ours is None and ref is None:
                    line.append("–")
                    continue
                rows_json.append({"method": key, "metric": col["name"], "ours": ours, "paper": ref})
                shown = fmt(ours) if ours is not None else "n/a"
                if ref is not None:
                    ref_text = fmt(ref) if isinstance(ref, float) else str(ref)
                    pct = _pct(ours, ref) if isinstance(ref, float) else ""
                    shown += f" ({ref_text}{', ' + pct if pct else ''})"
                line.append(shown + mark)
            rows_md.append(line)
        for r in t["rows"]:
            if r.get("ivfuse") and MethodSpec.make(r["ivfuse"], r.get("options")).key in ran:
                continue
            line = [f"{r['name']} (paper only)" if not r.get("ivfuse") else f"{r['ivfuse']} (not run)"]
            for col in t["columns"]:
                v = r.get("values", {}).get(col["name"])
                line.append("–" if v is None else f"– ({fmt(v) if isinstance(v, (int, float)) else v})")
            rows_md.append(line)
        doc["tables"].append(
            {"table": t["table"], "dataset": t["dataset"], "profile": t["profile"], "rows": rows_json}
        )
        notes = []
        if t.get("dataset_note"):
            notes.append(f"Data: {t['dataset_note']}")
        for col in t["columns"]:
            bits = []
            if col.get("metric"):
                bits.append(f"ivfuse {col['metric']} ({_profile_of(t, col)})")
                if float(col.get("scale", 1.0)) != 1.0:
                    bits.append(f"x {col['scale']:g}")
            else:
                bits.append("not computed")
            if col.get("note"):
                bits.append(col["note"])
            notes.append(f"{col['name']}: " + "; ".join(bits))
        if t.get("notes"):
            notes.append(t["notes"])
        display["tables"].append(
            {
                "heading": f"{t['table']} — {t['dataset']} ({d['pairs']} pairs), profile {t['profile']}"
                + (f": {t['caption']}" if t.get("caption") else ""),
                "header": header,
                "rows": rows_md,
                "notes": notes,
            }
        )
    return doc, display


def markdown(display: dict[str, Any], command: str = "") -> str:
    out = [f"# {display['title']}", ""]
    if display.get("citation"):
        out += [display["citation"], ""]
    if command:
        out += ["```bash", command, "```", ""]
    out += [
        "Cells: ours (paper, difference). **best**: best mean among the ivfuse rows; †: not "
        "significantly different from it (paired test over the images). Rows marked 'paper only' are "
        "methods ivfuse does not implement.",
        "",
    ]
    for t in display["tables"]:
        out += [f"## {t['heading']}", "", _md_table(t["header"], t["rows"]), ""]
        out += [f"- {n}" for n in t["notes"]]
        out.append("")
    out += [f"{n}" for n in display.get("notes", [])]
    return "\n".join(out).rstrip() + "\n"


def write(
    name: str, doc: dict[str, Any], display: dict[str, Any], out: Path, command: str = ""
) -> list[Path]:
    """Write ``paper_<name>.json`` and ``paper_<name>.md`` into ``out``."""
    paths = []
    for suffix, text in (("json", json.dumps(doc, indent=1) + "\n"), ("md", markdown(display, command))):
        paths.append(io.atomic_write_text(out / f"paper_{name}.{suffix}", text))
    return paths


__all__ = ["load_paper", "markdown", "plan", "tables", "write"]
