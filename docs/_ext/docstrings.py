"""Griffe extension for the API pages: Sphinx-flavoured docstrings rendered as Markdown.

The docstrings of ivfuse are written for ``help()`` and Sphinx: ``:func:`x``` roles, ``::`` literal
blocks and ``>>>`` doctest lines. Markdown would print the roles as text and read ``>>>`` as nested
block quotes, so each docstring is rewritten before rendering (the source is not changed).
"""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:func|mod|class|meth|attr|data|exc|obj|ref):`~?([^`]+)`")


def _definitions(text: str) -> str:
    """RST definition lists (a term line, then its indented body) as a bold term and a paragraph."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        term = (
            line.strip()
            and not line.startswith(" ")
            and not line.rstrip().endswith(":")
            and (not out or not out[-1].strip())
            and nxt.startswith("    ")
            and nxt.strip()
        )
        if not term:
            out.append(line)
            i += 1
            continue
        out += [f"**{line.strip()}**", ""]
        i += 1
        while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
            if not lines[i].strip() and (i + 1 >= len(lines) or not lines[i + 1].startswith("    ")):
                break
            out.append(lines[i][4:])
            i += 1
    return "\n".join(out)


def _markdown(text: str) -> str:
    text = _definitions(_ROLE.sub(r"`\1`", text))
    out: list[str] = []
    in_doctest = False
    for line in text.splitlines():
        stripped = line.strip()
        if not in_doctest and stripped.startswith(">>>"):
            out += ["```pycon", stripped]
            in_doctest = True
        elif in_doctest and not stripped:
            out += ["```", ""]
            in_doctest = False
        else:
            out.append(stripped if in_doctest else line)
    if in_doctest:
        out.append("```")
    return re.sub(r"::$", ":", "\n".join(out), flags=re.MULTILINE)


class SphinxToMarkdown(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: object) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _markdown(obj.docstring.value)
