"""report.html: the tables and figures of a benchmark in one self-contained page.

Figures are embedded as base64 PNG data URIs and the style sheet is inline, so the file can be
mailed or opened offline. The content is the same as report.md (and the paper tables, when the
run rebuilt a paper's tables).
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from .. import io
from .report import TEST_NAMES, dataset_table

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1400px;
       padding: 0 1rem; color: #1d1d1f; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
h3 { font-size: 1.05rem; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.85rem; }
th, td { border: 1px solid #d0d0d5; padding: 0.25rem 0.5rem; text-align: right; white-space: nowrap; }
th { background: #f2f2f5; } td:first-child, th:first-child { text-align: left; }
td.best { font-weight: 700; background: #e7f5e9; } td.tied { background: #f5f9ee; }
td.paper { color: #555; } td.na { color: #999; }
.note { color: #555; font-size: 0.85rem; } pre { background: #f6f6f8; padding: 0.6rem; overflow-x: auto; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5rem 0; }
.scroll { overflow-x: auto; }
"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


def _cell(text: str) -> str:
    if text.startswith("**") and text.endswith("**"):
        return f'<td class="best">{html.escape(text[2:-2])}</td>'
    if text.endswith(" **best**"):  # paper tables mark the best of the ivfuse rows in words
        return f'<td class="best">{html.escape(text[: -len(" **best**")])}</td>'
    if text.endswith("†"):
        return f'<td class="tied">{html.escape(text)}</td>'
    if text == "–":
        return '<td class="na">–</td>'
    return f"<td>{html.escape(text)}</td>"


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(c) for c in r) + "</tr>" for r in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _paper_section(paper: dict[str, Any]) -> str:
    parts = [f"<h2>Paper: {html.escape(paper['title'])}</h2>"]
    if paper.get("citation"):
        parts.append(f'<p class="note">{html.escape(paper["citation"])}</p>')
    for t in paper["tables"]:
        parts.append(f"<h3>{html.escape(t['heading'])}</h3>")
        parts.append(_table(t["header"], t["rows"]))
        for n in t.get("notes", []):
            parts.append(f'<p class="note">{html.escape(n)}</p>')
    gaps = paper.get("gaps")
    if gaps and gaps["rows"]:
        from .paper import GAPS_NOTE

        parts.append("<h3>Gaps: metric convention or method</h3>")
        parts.append(f'<p class="note">{html.escape(GAPS_NOTE.replace("**", ""))}</p>')
        parts.append(_table(gaps["header"], gaps["rows"]))
        if gaps.get("summary"):
            parts.append(f'<p class="note">{html.escape(gaps["summary"])}.</p>')
    for n in paper.get("notes", []):
        parts.append(f'<p class="note">{html.escape(n)}</p>')
    return "\n".join(parts)


def page(
    results: dict[str, Any],
    out: Path,
    figures: dict[str, list[str]] | None = None,
    papers: list[dict[str, Any]] | None = None,
) -> str:
    """The HTML text of the report; ``figures`` are paths relative to ``out``."""
    t = results["timing"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>ivfuse bench</title><style>{_CSS}</style></head><body>",
        "<h1>ivfuse bench</h1>",
    ]
    if results["command"]:
        parts.append(f"<pre>{html.escape(results['command'])}</pre>")
    parts.append(
        '<p class="note">'
        + html.escape(
            f"ivfuse {results['ivfuse']}, {results['created']}. Means ± population std over the images; "
            f"bold green: best mean; †: not significantly different from the best "
            f"({TEST_NAMES[results['test']]}, p ≥ {results['alpha']}); ms/pair: median fuse() time; "
            f"avg rank: mean rank over the metrics (lower is better). Time: {t['total_s']:.1f} s in all, "
            f"{t['fusion_s']:.1f} s fusing, {t['metrics_s']:.1f} s metrics, {t['overhead_s']:.1f} s other."
        )
        + "</p>"
    )
    for p in papers or []:
        parts.append(_paper_section(p))
    for d in results["datasets"]:
        parts.append(f"<h2>{html.escape(d['name'])} — {d['pairs']} pairs ({html.escape(d['task'])})</h2>")
        parts.append(
            f'<p class="note">{html.escape(d["description"])}. Colour: {html.escape(d["colour"])}.</p>'
        )
        header, rows = dataset_table(d)
        if rows:
            parts.append(_table(header, rows))
        for m in d["methods"]:
            if m["status"] != "ok":
                parts.append(
                    f'<p class="note">{html.escape(m["method"])}: skipped ({html.escape(m["reason"])})</p>'
                )
        for rel in (figures or {}).get(d["name"], []):
            f = out / rel
            if f.is_file():
                parts.append(_img(f))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_html(
    results: dict[str, Any],
    out: Path,
    figures: dict[str, list[str]] | None = None,
    papers: list[dict[str, Any]] | None = None,
    name: str = "report.html",
) -> Path:
    path = out / name
    return io.atomic_write_text(path, page(results, out, figures, papers))
