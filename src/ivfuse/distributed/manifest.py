"""The run manifest of an output folder: which pairs are fused, by what, into which file.

``OUT/.ivfuse-manifest.jsonl`` is an append-only JSON-lines log. A run first appends one ``run``
line with its :class:`Fingerprint` (method, weights hash, options, output format), then one line
per pair it finished, after the pair's output was written (atomically, :func:`ivfuse.io.atomic_write`)::

    {"run": "3f2a9c0d51e4b7a6", "fingerprint": {"method": "lp", ...}, "engine": "ray", "started": "..."}
    {"stem": "00001", "file": "00001.png", "bytes": 48213, "run": "3f2a9c0d51e4b7a6"}

Only the driver of a run writes it (workers return results, they never touch the log), one
``write`` per line; a run killed half-way leaves at most a torn last line, which reading skips.
A pair is *done* for a fingerprint when its latest line names that fingerprint and its file is
still there with the bytes recorded: ``ivfuse fuse --resume`` skips exactly those, with either
engine (:mod:`ivfuse.distributed.folders`). The log is small (one line of ~80 bytes per pair) and
is read once per run.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: file name of the manifest inside an output folder (hidden: pair discovery never lists it)
MANIFEST_NAME = ".ivfuse-manifest.jsonl"

_WEIGHTS_HASHES: dict[tuple[str, int, int], str] = {}


def weights_hash(path: str | os.PathLike) -> str:
    """SHA-256 of a weights file (cached per path, size and mtime within a process)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _WEIGHTS_HASHES:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _WEIGHTS_HASHES[key] = h.hexdigest()
    return _WEIGHTS_HASHES[key]


def method_weights(method: str, options: Mapping[str, Any]) -> str | None:
    """SHA-256 of the weights ``method`` runs with: the ``weights=`` option's file, else the shipped
    file; ``None`` for a method without weights (classical) or whose weights are not installed
    (building it fails anyway)."""
    from ..methods import registry

    given = options.get("weights")
    if given is not None:
        return weights_hash(given) if Path(str(given)).is_file() else None
    info = registry.info(method)
    if info.weights is None or not info.weights_shipped:
        return None
    return weights_hash(str(registry.weights_path(info.weights)))


@dataclass(frozen=True)
class Fingerprint:
    """Everything that decides the bytes of an output file: method, weights hash, method options,
    task, 16-bit stretch, backend, precision, output format and registration."""

    fields: tuple[tuple[str, Any], ...]

    @classmethod
    def make(
        cls,
        method: str,
        options: Mapping[str, Any] | None = None,
        *,
        task: str = "ivif",
        stretch16: bool = True,
        backend: str = "auto",
        precision: str = "fp32",
        bit_depth: int = 8,
        ext: str = ".png",
        align: Any = None,
    ) -> Fingerprint:
        opts = {k: v for k, v in (options or {}).items() if k != "device"}  # same bytes on any device
        doc = {
            "method": method.strip().lower(),
            "weights": method_weights(method.strip().lower(), opts),
            "options": {k: _plain(v) for k, v in sorted(opts.items())},
            "task": task,
            "stretch16": bool(stretch16),
            "backend": backend,
            "precision": precision,
            "bit_depth": int(bit_depth),
            "ext": ext if ext.startswith(".") else "." + ext,
            "align": None if align is None else _describe_align(align),
        }
        return cls(tuple(doc.items()))

    def as_dict(self) -> dict[str, Any]:
        return dict(self.fields)

    @property
    def id(self) -> str:
        """16 hex digits of the SHA-256 of the fields (canonical JSON)."""
        text = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _plain(v: Any) -> Any:
    return v if isinstance(v, str | int | float | bool) or v is None else str(v)


def _describe_align(align: Any) -> str:
    transform = getattr(align, "transform", None)
    if transform is not None and Path(str(transform)).is_file():
        return f"transform sha256 {weights_hash(transform)}"
    return repr(align)


@dataclass(frozen=True)
class Record:
    """One finished pair: its output file (name inside the folder), its size and the run's id."""

    stem: str
    file: str
    bytes: int
    run: str


class Manifest:
    """The manifest of one output folder (see the module docstring)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / MANIFEST_NAME
        self._fh: Any = None

    def read(self) -> tuple[dict[str, Record], dict[str, dict[str, Any]]]:
        """(the latest record per stem, the fingerprints of the runs by id); a torn or foreign line
        is skipped."""
        latest: dict[str, Record] = {}
        runs: dict[str, dict[str, Any]] = {}
        if not self.path.is_file():
            return latest, runs
        with open(self.path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    doc = json.loads(line)
                except ValueError:
                    continue  # a line torn by a killed driver
                if not isinstance(doc, dict):
                    continue
                if "stem" in doc:
                    try:
                        rec = Record(str(doc["stem"]), str(doc["file"]), int(doc["bytes"]), str(doc["run"]))
                    except (KeyError, TypeError, ValueError):
                        continue
                    latest[rec.stem] = rec
                elif "run" in doc and isinstance(doc.get("fingerprint"), dict):
                    runs[str(doc["run"])] = doc["fingerprint"]
        return latest, runs

    def done(self, fingerprint: Fingerprint) -> dict[str, Record]:
        """The pairs whose latest record is of ``fingerprint`` and whose file is still there, whole."""
        latest, _ = self.read()
        fid = fingerprint.id
        out = {}
        for stem, rec in latest.items():
            if rec.run != fid:
                continue
            try:
                if (self.folder / rec.file).stat().st_size == rec.bytes:
                    out[stem] = rec
            except OSError:
                continue
        return out

    def start(self, fingerprint: Fingerprint, engine: str) -> None:
        """Open the log for appending and write the run line."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        doc = {"run": fingerprint.id, "fingerprint": fingerprint.as_dict(), "engine": engine, "started": now}
        self._line(doc)
        self._run = fingerprint.id

    def record(self, stem: str, output: str | os.PathLike) -> None:
        """Append that ``stem`` is finished: its output exists now (call after the atomic write)."""
        p = Path(output)
        self._line({"stem": stem, "file": p.name, "bytes": p.stat().st_size, "run": self._run})

    def _line(self, doc: dict[str, Any]) -> None:
        if self._fh is None:
            raise RuntimeError("Manifest.start() first")
        self._fh.write(json.dumps(doc, separators=(",", ":")) + "\n")
        self._fh.flush()  # one write per line: a killed driver tears at most the last one

    def close(self) -> None:
        if self._fh is not None:
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
