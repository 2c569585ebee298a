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

An output folder given as a URL keeps the same lines in :class:`UrlManifest`: appended to the same
file on the local file system (``file://``), as chunk objects under ``OUT/.ivfuse-manifest/`` on
object stores, which cannot append. :class:`Manifest` reads such chunks too (a folder copied down
from a bucket resumes locally).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: file name of the manifest inside an output folder (hidden: pair discovery never lists it)
MANIFEST_NAME = ".ivfuse-manifest.jsonl"
#: folder of manifest chunks inside an output folder on an object store (:class:`UrlManifest`)
MANIFEST_DIR = ".ivfuse-manifest"

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


def parse_lines(lines: Iterable[str], latest: dict[str, Record], runs: dict[str, dict[str, Any]]) -> None:
    """Add the records and run lines of manifest ``lines`` to ``latest`` (per stem, a later line
    wins) and ``runs``; a torn or foreign line is skipped."""
    for line in lines:
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
        is skipped. Chunks under ``.ivfuse-manifest/`` (a folder copied from an object store,
        :class:`UrlManifest`) are read first, then the log."""
        latest: dict[str, Record] = {}
        runs: dict[str, dict[str, Any]] = {}
        chunks = self.folder / MANIFEST_DIR
        if chunks.is_dir():
            for chunk in sorted(chunks.glob("*.jsonl")):
                parse_lines(chunk.read_text(encoding="utf-8", errors="replace").splitlines(), latest, runs)
        if not self.path.is_file():
            return latest, runs
        with open(self.path, encoding="utf-8", errors="replace") as fh:
            parse_lines(fh, latest, runs)
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


class UrlManifest:
    """The manifest of an output folder given as a URL (:class:`ivfuse.distributed.fs.Location`).

    Object stores have no append (an S3 object is written whole, once), so the log is kept as
    *chunks*: the driver collects the finished pairs and writes them as one small object,
    ``OUT/.ivfuse-manifest/<run start>-<run id>-<random>-<number>.jsonl``, every
    ``flush_records`` pairs or ``flush_seconds`` seconds and at the end of the run. A chunk holds
    the lines of the local format (the run line, then one line per pair), is written whole
    (:func:`ivfuse.distributed.fs.put`) and is never changed; the names sort in the order written,
    so reading the chunks by name and taking the latest record per stem gives what reading the
    local log gives. A driver killed between two chunks loses at most the records of the last
    ``flush_records`` pairs or ``flush_seconds``: ``--resume`` fuses those pairs again (the same
    bytes). One LIST and one GET per chunk read the manifest back.

    On the local file system (``file://``) the folder keeps the local log,
    ``OUT/.ivfuse-manifest.jsonl``, appended line by line as :class:`Manifest` does: the folder
    reads the same when given later as a plain path.
    """

    def __init__(self, folder: Any, *, flush_records: int = 256, flush_seconds: float = 30.0):
        from .fs import appends

        self.folder = folder
        self.path = folder.child(MANIFEST_NAME)
        self.chunks = folder.child(MANIFEST_DIR)
        self.append = appends(folder.fs)
        self.flush_records = flush_records
        self.flush_seconds = flush_seconds
        self._fh: Any = None
        self._pending: list[dict[str, Any]] = []
        self._run_line: dict[str, Any] | None = None

    def read(
        self, entries: Mapping[str, tuple[str, int]] | None = None
    ) -> tuple[dict[str, Record], dict[str, dict[str, Any]]]:
        """As :meth:`Manifest.read`: the chunks by name, then the local log where there is one.
        ``entries``: the folder's listing (:meth:`~ivfuse.distributed.fs.Location.entries`), if
        already made."""
        latest: dict[str, Record] = {}
        runs: dict[str, dict[str, Any]] = {}
        entries = self.folder.entries() if entries is None else entries
        files = []
        if entries.get(MANIFEST_DIR, ("", 0))[0] == "dir":
            names = sorted(n for n, (kind, _) in self.chunks.entries().items() if kind == "file")
            files = [self.chunks.child(n) for n in names if n.endswith(".jsonl") and not n.startswith(".")]
        if entries.get(MANIFEST_NAME, ("", 0))[0] == "file":
            files.append(self.path)
        for f in files:
            parse_lines(_read_text(f).splitlines(), latest, runs)
        return latest, runs

    def done(
        self, fingerprint: Fingerprint, entries: Mapping[str, tuple[str, int]] | None = None
    ) -> dict[str, Record]:
        """The pairs whose latest record is of ``fingerprint`` and whose file is in the folder with
        the size recorded (one listing of the folder, not a request per file)."""
        entries = self.folder.entries() if entries is None else entries
        latest, _ = self.read(entries)
        fid = fingerprint.id
        return {
            stem: rec
            for stem, rec in latest.items()
            if rec.run == fid and entries.get(rec.file) == ("file", rec.bytes)
        }

    def start(self, fingerprint: Fingerprint, engine: str) -> None:
        """Begin a run: the run line (appended now locally; the head of every chunk elsewhere)."""
        now = _dt.datetime.now(_dt.timezone.utc)
        doc = {
            "run": fingerprint.id, "fingerprint": fingerprint.as_dict(), "engine": engine,
            "started": now.isoformat(timespec="seconds"),
        }  # fmt: skip
        self._run = fingerprint.id
        self._run_line = doc
        self._prefix = f"{now.strftime('%Y%m%dT%H%M%S%fZ')}-{fingerprint.id}-{os.urandom(3).hex()}"
        self._seq = 0
        self._last = _now()
        self.folder.mkdir()
        if self.append:
            self._fh = self.folder.fs.open_append_stream(self.path.path)
            self._write_lines([doc])

    def record(self, stem: str, file: str, nbytes: int) -> None:
        """That ``stem`` is finished: its output ``file`` (a name in the folder) of ``nbytes`` bytes
        exists now (call after the write)."""
        if self._run_line is None:
            raise RuntimeError("UrlManifest.start() first")
        doc = {"stem": stem, "file": file, "bytes": int(nbytes), "run": self._run}
        if self.append:
            self._write_lines([doc])
            return
        self._pending.append(doc)
        if len(self._pending) >= self.flush_records or _now() - self._last >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write the records collected since the last chunk as one chunk (object stores)."""
        from .fs import StorageError, put

        if self.append or not self._pending or self._run_line is None:
            return
        self._seq += 1
        lines = [self._run_line, *self._pending]
        data = "".join(json.dumps(d, separators=(",", ":")) + "\n" for d in lines).encode("utf-8")
        if self._seq == 1:
            self.chunks.mkdir()
        chunk = self.chunks.child(f"{self._prefix}-{self._seq:06d}.jsonl")
        try:
            put(chunk, data)
        except (OSError, ValueError) as exc:
            raise StorageError(f"{chunk}: cannot write the manifest ({exc})") from None
        self._pending = []
        self._last = _now()

    def _write_lines(self, docs: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(d, separators=(",", ":")) + "\n" for d in docs)
        self._fh.write(text.encode("utf-8"))  # one write per line: a killed driver tears the last
        self._fh.flush()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._fh is not None:
                self._fh.close()
                self._fh = None

    def __enter__(self) -> UrlManifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_text(loc: Any) -> str:
    from .fs import StorageError

    try:
        return loc.read_bytes().decode("utf-8", errors="replace")
    except (OSError, ValueError) as exc:
        raise StorageError(f"{loc}: cannot read the manifest ({exc})") from None


def _now() -> float:
    import time

    return time.monotonic()
