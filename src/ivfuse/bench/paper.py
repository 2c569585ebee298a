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

A gap between ours and the paper's value has two causes: the metric's convention (the paper's
evaluation code computes the "same" metric differently) and the method (our training, our data).
Rows where the paper and ivfuse run the *same* algorithm (the classical methods, whose output does
not depend on training, and rows marked ``"same_method": true`` in the paper's file) isolate the
first: their median relative gap per column is the column's **convention offset**
(:func:`convention_offsets`). Every row then carries its ``gap`` and, beside it, ``gap_net``, the
gap left once the offset is divided out (``ours / (1 + offset)`` against the paper's value); the
values themselves are never changed. ``summary`` gives the paper's own method's median absolute
gap, before and after the offsets.
"""

from __future__ import annotations

import json
import math
import os
import statistics
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


#: where ``scripts/train_ablations.py`` writes the variants' runs (``METHOD/NAME/weights.safetensors``)
ABLATIONS_ROOT = Path("runs/ablations")
#: where the variants trained for the docs' tables are kept in the repository (weights, card, losses)
RELEASED_ABLATIONS = Path("ablations")
#: the run folder (beside the variants') of the default recipe trained the same way as the variants
DEFAULT_VARIANT = "default"


def resolve_ablations(
    paper: dict[str, Any], root: str | os.PathLike | None = None, messages: list[str] | None = None
) -> dict[str, Any]:
    """``paper`` with its ablation rows (``"ablation": NAME`` beside ``"ivfuse": METHOD``) bound to
    the variants' trained weights under ``root``: a row whose ``root/METHOD/NAME/weights.safetensors``
    exists runs as ``METHOD@weights=...``; one without stays paper-only, with a message naming the
    command that trains it. The input is not changed.

    A table with ablation rows also gets a row for the method's default recipe trained beside the
    variants, ``root/METHOD/default/weights.safetensors`` (``scripts/train_ablations.py`` trains it
    first), where that exists: placed after the paper's own row, with that row's printed values
    and ``"ablation": "default"`` (:data:`DEFAULT_VARIANT`). The same recipe on another machine
    or in another precision differs by about as much as some ablations do, so the variants compare
    like with like against this row, not against the shipped weights.

    ``root=None`` looks in :data:`ABLATIONS_ROOT` (your own runs) first, then in
    :data:`RELEASED_ABLATIONS` (the variants behind the docs' tables, in a checkout of the
    repository), both relative to the current folder."""
    import copy

    roots = [Path(root)] if root is not None else [ABLATIONS_ROOT, RELEASED_ABLATIONS]
    messages = messages if messages is not None else []

    def weights_of(method: str, name: str) -> tuple[Path, bool]:
        paths = [base / method / name / "weights.safetensors" for base in roots]
        found = [w for w in paths if w.is_file()]
        return (found[0], True) if found else (paths[0], False)

    out = copy.deepcopy(paper)
    for t in out["tables"]:
        methods = list(dict.fromkeys(r["ivfuse"] for r in t["rows"] if r.get("ablation") and r.get("ivfuse")))
        for r in t["rows"]:
            name, method = r.get("ablation"), r.get("ivfuse")
            if not name or not method:
                continue
            registry.info(method).ablation(name)  # a declared variant (MethodError otherwise)
            weights, found = weights_of(method, name)
            if found:
                r["options"] = {**(r.get("options") or {}), "weights": str(weights.resolve())}
            else:
                r["ivfuse"] = None
                messages.append(
                    f"{paper['paper']} {t['table']} '{r['name']}': the {method} variant {name!r} is not "
                    f"trained ({weights} missing; scripts/train_ablations.py {method} --only {name})"
                )
        for method in methods:
            weights, found = weights_of(method, DEFAULT_VARIANT)
            if not found:
                continue
            own = [i for i, r in enumerate(t["rows"]) if r.get("ivfuse") == method and not r.get("ablation")]
            at = own[0] + 1 if own else len(t["rows"])
            values = dict(t["rows"][own[0]].get("values") or {}) if own else {}
            t["rows"].insert(at, {
                "name": "the default recipe, trained beside the variants", "ivfuse": method,
                "ablation": DEFAULT_VARIANT,
                "options": {"weights": str(weights.resolve())}, "values": values,
            })  # fmt: skip
    return out


def with_weights(
    paper: dict[str, Any], weights: str | os.PathLike, messages: list[str] | None = None
) -> dict[str, Any]:
    """``paper`` with its own method's rows run from ``weights`` instead of the shipped weights: a
    ``weights.safetensors`` file (``ivfuse train`` writes one into its run folder), or the run folder
    itself. Every row of the paper's method gets it (the rows with other fusion rules too), except
    the ablation variants, which keep their own weights. Rebuilds the paper's tables for your own
    training run, beside the paper's values. The input is not changed."""
    import copy

    method = paper.get("method")
    info = registry.info(method) if method else None
    if info is None or info.weights is None:
        raise InputError(f"--weights: paper {paper['paper']!r} has no method with weights to replace")
    path = Path(weights)
    if path.is_dir():
        path = path / "weights.safetensors"
    if not path.is_file():
        raise InputError(
            f"--weights {weights}: no such file (a weights .safetensors file, or an ivfuse train run "
            "folder holding weights.safetensors)"
        )
    from ..errors import WeightsError
    from ..methods._torch import weights_metadata

    try:
        weights_metadata(path, method)  # before anything runs: another method's weights, a corrupt file
    except WeightsError as e:
        raise InputError(f"--weights: {e} (paper {paper['paper']!r})") from e
    out = copy.deepcopy(paper)
    n = 0
    for t in out["tables"]:
        for r in t["rows"]:
            if r.get("ivfuse") == method and not r.get("ablation"):
                r["options"] = {**(r.get("options") or {}), "weights": str(path.resolve())}
                r["weights_given"] = str(path)
                n += 1
    if messages is not None:
        messages.append(
            f"{paper['paper']}: {n} rows of {method} run with the weights {path}, not the shipped ones"
        )
    return out


def _row_name(row: dict[str, Any]) -> str:
    """A row's name for ``--rows``: its ivfuse method, or ``METHOD:VARIANT`` for an ablation row."""
    return f"{row['ivfuse']}:{row['ablation']}" if row.get("ablation") else row["ivfuse"]


def only_rows(paper: dict[str, Any], names: list[str], messages: list[str] | None = None) -> dict[str, Any]:
    """``paper`` with only the rows of ``names`` run; the others stay in the tables with the paper's
    values and are marked ``"skip": True`` (shown as "not run"). A name is an ivfuse method (its
    rows that are not ablation variants: the paper's own method re-scored with new ``--weights``
    without fusing every competitor again) or ``METHOD:VARIANT`` (one ablation row, or
    ``METHOD:default``, the default recipe trained beside the variants). The convention offsets
    come from the same-method rows: name one (e.g. a classical method of the table) to keep them.
    :class:`InputError` for a name that is no row of the paper. The input is not changed."""
    import copy

    wanted = {n.strip() for n in names if n.strip()}
    out = copy.deepcopy(paper)
    found: set[str] = set()
    skipped = 0
    for t in out["tables"]:
        for r in t["rows"]:
            if not r.get("ivfuse"):
                continue
            name = _row_name(r)
            if name in wanted:
                found.add(name)
            else:
                r["skip"] = True
                skipped += 1
    missing = sorted(wanted - found)
    if missing:
        rows = sorted({_row_name(r) for t in paper["tables"] for r in t["rows"] if r.get("ivfuse")})
        raise InputError(
            f"--rows {','.join(missing)}: no such row in paper {paper['paper']!r} (rows that can run: "
            f"{', '.join(rows)}; an ablation variant runs once it is trained)"
        )
    if messages is not None:
        messages.append(
            f"{paper['paper']}: only the rows of {', '.join(sorted(found))} run (--rows); {skipped} other "
            "rows show the paper's values only"
        )
    return out


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
    for m in extra_methods or []:  # the user's: an unknown name or option is one line, before anything runs
        spec = _spec(m)
        registry.check_options(spec.name, dict(spec.options))
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
        runs = [r for r in t["rows"] if r.get("ivfuse") and not r.get("skip")]
        specs = [MethodSpec.make(r["ivfuse"], r.get("options")) for r in runs]
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
    return [task for task in by_ds.values() if task.methods]  # --rows may leave a data set nothing to run


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


def _spread(
    table: dict[str, Any],
    col: dict[str, Any],
    key: str,
    per_image: dict[tuple[str, str, str, str], dict[str, float]],
    dataset: str,
) -> float | None:
    """The value of a paper's ``"kind": "std"`` column (a 'mean ± std' cell): the sample standard
    deviation (n - 1) over the images of method ``key``'s values of the column named by
    ``col["of"]``, on that column's scale; ``None`` with fewer than two finite values."""
    target = next((c for c in table["columns"] if c["name"] == col.get("of") and c.get("metric")), None)
    if target is None:
        return None
    vals = per_image.get((dataset, key, _profile_of(table, target), target["metric"]), {}).values()
    vals = [v for v in vals if math.isfinite(v)]
    return statistics.stdev(vals) * float(target.get("scale", 1.0)) if len(vals) > 1 else None


def rel_gap(ours: float | None, ref: Any) -> float | None:
    """``(ours - ref) / |ref|``; ``None`` where either value is missing or not finite, or ``ref`` is 0."""
    if ours is None or not isinstance(ref, (int, float)) or isinstance(ref, bool):
        return None
    if not (math.isfinite(ours) and math.isfinite(ref)) or ref == 0:
        return None
    return (ours - ref) / abs(ref)


def convention_offsets(
    cells: dict[str, dict[str, tuple[float | None, Any]]], anchors: list[str]
) -> dict[str, dict[str, Any]]:
    """Per column, the metric-convention offset measured on the ``anchors`` (rows that are the same
    algorithm in the paper and in ivfuse).

    ``cells[method][column] = (ours, paper)``. For each column, every anchor with both values
    (paper value non-zero) gives the ratio ``ours / paper``; the offset is ``median(ratios) - 1``,
    i.e. the median relative gap of the anchors (for positive values). Returns ``{column: {"offset",
    "n", "anchors": {method: its own relative gap}}}`` for the columns that have at least one
    anchor; the others have no offset (not zero: unknown).
    """
    out: dict[str, dict[str, Any]] = {}
    cols = list(dict.fromkeys(c for k in anchors for c in cells.get(k, {})))
    for col in cols:
        ratios, gaps = [], {}
        for k in anchors:
            ours, ref = cells.get(k, {}).get(col, (None, None))
            g = rel_gap(ours, ref)
            if g is None:
                continue
            ratios.append(ours / ref)  # type: ignore[operator]
            gaps[k] = g
        if ratios:
            out[col] = {"offset": statistics.median(ratios) - 1.0, "n": len(ratios), "anchors": gaps}
    return out


def net_gap(ours: float | None, ref: Any, offset: float | None) -> float | None:
    """The relative gap of ``ours / (1 + offset)`` to the paper's value ``ref``: the gap that is
    left once the column's convention offset is divided out (``None`` without an offset, or with
    an offset of -100 % or below, which no ratio can remove)."""
    if offset is None or 1.0 + offset <= 0 or ours is None:
        return None
    return rel_gap(ours / (1.0 + offset), ref)


def _pct(g: float | None) -> str:
    return "" if g is None else f"{100.0 * g:+.1f} %"


def _is_anchor(row: dict[str, Any] | None) -> bool:
    """A paper row that is the same algorithm as its ivfuse method: ``same_method`` when the row
    says so, otherwise whether the method is classical (no training, nothing learnt to differ)."""
    if row is None or not row.get("ivfuse"):
        return False
    if "same_method" in row:
        return bool(row["same_method"])
    return registry.info(row["ivfuse"]).family == "classical"


def _anchor_names(anchors: list[str], offsets: dict[str, dict[str, Any]]) -> str:
    """The same-method rows of a table, or those of the tables its offsets come from."""
    if anchors:
        return ", ".join(anchors)
    src = {o["from"] for o in offsets.values() if o.get("from")}
    names = ", ".join(dict.fromkeys(k for o in offsets.values() for k in o["anchors"]))
    return f"{names} of {', '.join(sorted(src))}" if names else "none"


def _median_abs(xs: list[float]) -> float | None:
    return statistics.median(abs(x) for x in xs) if xs else None


def _cells_of(
    t: dict[str, Any],
    d: dict[str, Any],
    own_name: str | None,
    per_image: dict[tuple[str, str, str, str], dict[str, float]],
    variants: frozenset[str] = frozenset(),
    test: str = "wilcoxon",
    alpha: float = 0.05,
) -> tuple[list[str], dict[str, dict[str, Any]], str | None, dict[str, dict[str, tuple[Any, Any]]], dict]:
    """One table on its data set's results: the rows that ran (in order), the paper's rows by
    method key, the own method's key, ``values[key][column] = (ours, paper's)`` and the best marks.
    ``variants``: the keys of the paper's ablation variants, shown only in the tables they are rows of
    (another table on the same data set lists the other methods that ran on it, not them); a table
    marked ``"printed": false`` lists its own rows only."""
    cells = {(c["method"], c["profile"], c["metric"]): c for c in d["cells"]}
    status = {m["method"]: m for m in d["methods"]}
    paper_rows = {MethodSpec.make(r["ivfuse"], r.get("options")).key: r for r in t["rows"] if r.get("ivfuse")}
    order = list(dict.fromkeys([*paper_rows, *(m["method"] for m in d["methods"])]))
    order = [k for k in order if k in paper_rows or k not in variants]
    if not t.get("printed", True):  # an ablation the paper shows as a figure: its own rows only
        order = [k for k in order if k in paper_rows]
    ran = [k for k in order if k in status and status[k]["status"] == "ok" and status[k]["fused"]]
    own = [r for r in t["rows"] if r.get("ivfuse") == own_name and not r.get("ablation")]
    own_key = MethodSpec.make(own[0]["ivfuse"], own[0].get("options")).key if own else None
    values: dict[str, dict[str, tuple[Any, Any]]] = {}
    marks: dict[tuple[str, str], str] = {}
    for key in ran:
        prow = paper_rows.get(key)
        for col in t["columns"]:
            ref = (prow or {}).get("values", {}).get(col["name"])
            ref = float(ref) if isinstance(ref, (int, float)) else ref
            ours = None
            if col.get("metric"):
                c = cells.get((key, _profile_of(t, col), col["metric"]))
                if c is not None and c["mean"] is not None:
                    ours = c["mean"] * float(col.get("scale", 1.0))
            elif col.get("kind") == "significance" and own_key in ran and key != own_key:
                ours = _significance(t, col, key, own_key, per_image, d["name"])
            elif col.get("kind") == "std":
                ours = _spread(t, col, key, per_image, d["name"])
            values.setdefault(key, {})[col["name"]] = (ours, ref)
    for col in t["columns"]:
        if col.get("metric"):
            marks.update(_best_marks(t, col, ran, d, per_image, test, alpha))
    return ran, paper_rows, own_key, values, marks


def _best_marks(
    t: dict[str, Any],
    col: dict[str, Any],
    ran: list[str],
    d: dict[str, Any],
    per_image: dict[tuple[str, str, str, str], dict[str, float]],
    test: str,
    alpha: float,
) -> dict[tuple[str, str], str]:
    """``**best**`` on the best mean of the column among the table's own rows, ``†`` on the rows not
    significantly different from it (the run's paired test over the images). Per table: a data set
    shared by several tables (the ablations') has one best per table, not one over all its rows."""
    profile, metric = _profile_of(t, col), col["metric"]
    info = next((m for m in d.get("metrics", []) if m["profile"] == profile and m["metric"] == metric), None)
    if info is None:
        return {}
    means = {c["method"]: c["mean"] for c in d["cells"] if (c["profile"], c["metric"]) == (profile, metric)}
    pm = {k: per_image.get((d["name"], k, profile, metric), {}) for k in ran}
    pm = {k: v for k, v in pm.items() if v and means.get(k) is not None}
    best = stats.best_method({k: means[k] for k in pm}, info["higher_is_better"])  # the means shown
    if best is None:
        return {}
    p = stats.significance(pm, best, test)
    tied = {k for k in pm if k != best and math.isfinite(p[k]) and p[k] >= alpha}
    return {(k, col["name"]): " **best**" if k == best else (" †" if k in tied else "") for k in pm}


def _column_id(t: dict[str, Any], col: dict[str, Any]) -> tuple:
    """What makes two tables' columns the same evaluation: the paper's data set and ours, the
    column, its ivfuse metric, profile and scale."""
    return (t.get("paper_dataset"), t["dataset"], col["name"], col.get("metric"), _profile_of(t, col),
            float(col.get("scale", 1.0)))  # fmt: skip


def _borrow_offsets(tables: list[tuple[dict[str, Any], dict[str, dict[str, Any]]]]) -> None:
    """A table without same-method rows (an ablation table) takes a column's offset from a table of
    the same paper that evaluates the same column on the same data (same paper data set, bench data
    set, metric, profile and scale), marked ``"from"`` that table."""
    measured: dict[tuple, tuple[str, dict[str, Any]]] = {}
    for t, offsets in tables:
        for col in t["columns"]:
            if col["name"] in offsets:
                measured.setdefault(_column_id(t, col), (t["table"], offsets[col["name"]]))
    for t, offsets in tables:
        for col in t["columns"]:
            if col.get("metric") and col["name"] not in offsets and _column_id(t, col) in measured:
                src, o = measured[_column_id(t, col)]
                offsets[col["name"]] = {**o, "from": src}


def tables(paper: dict[str, Any], results: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the paper_<name>.json document, a display structure for markdown/HTML).

    Also appends to ``results["messages"]`` one line per table (per column: the own method's gap,
    the convention offset, the gap net of it) and one summary line, which ``ivfuse bench --paper``
    prints after the run."""
    by_ds = {d["name"]: d for d in results["datasets"]}
    per_image: dict[tuple[str, str, str, str], dict[str, float]] = {}
    for v in results["values"]:
        if v["value"] is not None:
            per_image.setdefault((v["dataset"], v["method"], v["profile"], v["metric"]), {})[v["image"]] = v[
                "value"
            ]
    own_name = paper.get("method")
    doc: dict[str, Any] = {"paper": paper["paper"], "tables": []}
    display: dict[str, Any] = {
        "paper": paper["paper"],
        "title": paper.get("title", paper["paper"]),
        "citation": paper.get("citation", ""),
        "tables": [],
        "notes": [paper["notes"]] if paper.get("notes") else [],
    }
    gap_rows: list[list[str]] = []
    own_cells: list[dict[str, Any]] = []
    lines: list[str] = []
    prepared = []
    variants = frozenset(
        MethodSpec.make(r["ivfuse"], r.get("options")).key
        for t in paper["tables"] for r in t["rows"] if r.get("ablation") and r.get("ivfuse")
    )  # fmt: skip
    for t in paper["tables"]:
        d = by_ds.get(t["dataset"])
        if d is None:
            continue
        ran, paper_rows, own_key, values, marks = _cells_of(
            t, d, own_name, per_image, variants, results.get("test", "wilcoxon"), results.get("alpha", 0.05)
        )
        anchors = [k for k in ran if _is_anchor(paper_rows.get(k))]
        metric_cols = [c["name"] for c in t["columns"] if c.get("metric")]
        offsets = convention_offsets(
            {k: {c: v for c, v in values[k].items() if c in metric_cols} for k in anchors}, anchors
        )
        prepared.append((t, d, ran, paper_rows, own_key, values, marks, anchors, metric_cols, offsets))
    _borrow_offsets([(x[0], x[9]) for x in prepared])
    for t, d, ran, paper_rows, own_key, values, marks, anchors, metric_cols, offsets in prepared:
        rows_json = []
        header = ["method"] + [c["name"] for c in t["columns"]]
        rows_md: list[list[str]] = []
        for key in ran:
            prow = paper_rows.get(key)
            is_anchor = key in anchors
            if prow is not None and prow.get("ablation") == DEFAULT_VARIANT:
                label = f"{prow['ivfuse']} ({prow['name']})"
            elif prow is not None and prow.get("ablation"):  # the variant's name, not its weights path
                label = f"{prow['ivfuse']} ablation {prow['ablation']} ({prow['name']})"
            elif prow is not None and prow.get("weights_given"):  # with_weights: the path as given
                rest = {k: v for k, v in prow["options"].items() if k != "weights"}
                base = MethodSpec.make(prow["ivfuse"], rest).key
                label = f"{base} ({prow['name']}) [weights {prow['weights_given']}]"
            else:
                label = key if prow is None else f"{key} ({prow['name']})"
            line = [label + (" [same method]" if is_anchor else "")]
            for col in t["columns"]:
                ours, ref = values[key][col["name"]]
                if ours is None and ref is None:
                    line.append("–")
                    continue
                numeric = col.get("metric") is not None
                gap = rel_gap(ours, ref) if numeric else None
                off = offsets.get(col["name"], {}).get("offset") if numeric else None
                net = None if is_anchor else net_gap(ours, ref, off)
                rows_json.append(
                    {"method": key, "metric": col["name"], "ours": ours, "paper": ref, "gap": gap,
                     "gap_net": net, "same_method": is_anchor}
                )  # fmt: skip
                if key == own_key and numeric and gap is not None:
                    own_cells.append({"table": t["table"], "dataset": t["dataset"], "metric": col["name"],
                                      "gap": gap, "gap_net": net})  # fmt: skip
                shown = fmt(ours) if ours is not None else "n/a"
                if ref is not None:
                    ref_text = fmt(ref) if isinstance(ref, float) else str(ref)
                    extra = [_pct(gap)] if gap is not None else []
                    if net is not None:
                        extra.append(f"net of offset {_pct(net)}")
                    shown += f" ({ref_text}{', ' + '; '.join(extra) if extra else ''})"
                line.append(shown + marks.get((key, col["name"]), ""))
            rows_md.append(line)
        if offsets:
            line = [f"convention offset (median over {_anchor_names(anchors, offsets)})"]
            for col in t["columns"]:
                o = offsets.get(col["name"])
                if o is None:
                    line.append("–")
                    continue
                spread = ""
                if o["n"] > 1:
                    g = sorted(o["anchors"].values())
                    spread = f", {_pct(g[0])} … {_pct(g[-1])}"
                src = f", from {o['from']}" if o.get("from") else ""
                line.append(f"{_pct(o['offset'])} (n={o['n']}{spread}{src})")
            rows_md.append(line)
        for r in t["rows"]:
            if r.get("ivfuse") and MethodSpec.make(r["ivfuse"], r.get("options")).key in ran:
                continue
            if r.get("ivfuse"):
                line = [f"{r['ivfuse']} (not run)"]
            elif r.get("ablation"):  # a variant whose weights are missing (resolve_ablations)
                line = [f"{r['name']} (variant {r['ablation']} not trained)"]
            else:
                line = [f"{r['name']} (paper only)"]
            for col in t["columns"]:
                v = r.get("values", {}).get(col["name"])
                line.append("–" if v is None else f"– ({fmt(v) if isinstance(v, (int, float)) else v})")
            rows_md.append(line)
        doc["tables"].append(
            {"table": t["table"], "dataset": t["dataset"], "profile": t["profile"], "rows": rows_json,
             "same_method": anchors, "offsets": offsets}
        )  # fmt: skip
        # the per-column comparison: the own method's gap beside the offset
        bits = []
        for name in metric_cols:
            o = offsets.get(name)
            ours, ref = values.get(own_key, {}).get(name, (None, None)) if own_key else (None, None)
            gap = rel_gap(ours, ref)
            net = net_gap(ours, ref, o["offset"]) if o else None
            if gap is None and o is None:
                continue
            src = f", from {o['from']}" if o and o.get("from") else ""
            shown = f"{_pct(o['offset'])} (n={o['n']}{src})" if o else "– (no same-method row)"
            gap_rows.append([t["table"], t["dataset"], name, shown, _pct(gap) or "–", _pct(net) or "–"])
            bits.append(f"{name} {_pct(gap) or '–'} / {_pct(o['offset']) if o else '–'} / {_pct(net) or '–'}")
        if bits and own_key:
            lines.append(
                f"paper {paper['paper']} {t['table']} on {t['dataset']}: {own_key} gap / convention offset "
                f"(same-method rows: {_anchor_names(anchors, offsets)}) / gap net of offset: "
                + "; ".join(bits)
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
            elif col.get("kind") == "std":
                bits.append(f"sample standard deviation over the pairs of {col['of']}")
            else:
                bits.append("not computed")
            if col.get("note"):
                bits.append(col["note"])
            if col.get("tried"):
                bits.append("readings tried: " + "; ".join(col["tried"]))
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
    gaps = [c["gap"] for c in own_cells]
    nets = [c for c in own_cells if c["gap_net"] is not None]
    worst = max(own_cells, key=lambda c: abs(c["gap"]), default=None)
    summary = {
        "method": own_name,
        "cells": len(gaps),
        "median_abs_gap": _median_abs(gaps),
        "worst": worst,
        "cells_with_offset": len(nets),
        "median_abs_gap_with_offset": _median_abs([c["gap"] for c in nets]),
        "median_abs_gap_net": _median_abs([c["gap_net"] for c in nets]),
    }
    doc["summary"] = summary
    text = ""
    if gaps:
        text = (
            f"{own_name}: median |gap| {_pct(summary['median_abs_gap']).lstrip('+')} over {len(gaps)} cells "
            f"(worst {_pct(worst['gap'])}: {worst['metric']}, {worst['table']} on {worst['dataset']})"  # type: ignore[index]
        )
        if nets:
            text += (
                f"; on the {len(nets)} cells with a convention offset: "
                f"{_pct(summary['median_abs_gap_with_offset']).lstrip('+')} before, "
                f"{_pct(summary['median_abs_gap_net']).lstrip('+')} net of the offset"
            )
        elif any(r.get("skip") and _is_anchor(r) for t in paper["tables"] for r in t["rows"]):
            text += "; no convention offset: the same-method rows did not run (--rows)"
        else:
            text += "; no column has a convention offset (no row is the same method in the paper and ivfuse)"
        lines.append(f"paper {paper['paper']}: {text}")
    display["gaps"] = {
        "header": [
            "table",
            "data set",
            "column",
            "convention offset",
            f"{own_name} gap",
            f"{own_name} gap net of offset",
        ],
        "rows": gap_rows,
        "summary": text,
    }
    results.setdefault("messages", []).extend(lines)
    return doc, display


GAPS_NOTE = (
    "A gap has two causes: the metric's convention (the paper's evaluation code computes the metric "
    "differently) and the method. Rows marked [same method] run the same algorithm in the paper and "
    "in ivfuse (classical methods, or the paper's row marked same_method); their median relative gap "
    "per column is the column's **convention offset** (n: how many such rows, then their smallest and "
    "largest gap). 'net of offset' is the gap of ours / (1 + offset) to the paper's value: what is left "
    "for the method once the convention is divided out. It is a reading aid, not a corrected value; "
    "with n = 1 or 2 same-method rows it is a rough one."
)


def markdown(display: dict[str, Any], command: str = "") -> str:
    out = [f"# {display['title']}", ""]
    if display.get("citation"):
        out += [display["citation"], ""]
    if command:
        out += ["```bash", command, "```", ""]
    out += [
        "Cells: ours (paper, difference; net of offset: the difference once the column's convention "
        "offset is divided out). **best**: best mean among the ivfuse rows; †: not significantly "
        "different from it (paired test over the images). Rows marked 'paper only' are methods ivfuse "
        "does not implement.",
        "",
    ]
    for t in display["tables"]:
        out += [f"## {t['heading']}", "", _md_table(t["header"], t["rows"]), ""]
        out += [f"- {n}" for n in t["notes"]]
        out.append("")
    gaps = display.get("gaps")
    if gaps and gaps["rows"]:
        out += ["## Gaps: metric convention or method", "", GAPS_NOTE, ""]
        out += [_md_table(gaps["header"], gaps["rows"]), ""]
        if gaps.get("summary"):
            out += [gaps["summary"] + ".", ""]
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


__all__ = [
    "convention_offsets",
    "load_paper",
    "markdown",
    "net_gap",
    "only_rows",
    "plan",
    "rel_gap",
    "tables",
    "with_weights",
    "write",
]
