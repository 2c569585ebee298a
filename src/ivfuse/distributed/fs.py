"""Folders given as URLs (``s3://``, ``gs://``, ``hdfs://``, ``file://``, ...) through pyarrow.fs.

``ivfuse fuse --pairs s3://bucket/llvip -o s3://bucket/fused`` lists, reads and writes through
:mod:`pyarrow.fs` (pyarrow comes with ``ivfuse[distributed]``): a URL is resolved with
:meth:`pyarrow.fs.FileSystem.from_uri` (S3, GCS, HDFS, Azure, local ``file://``), else with fsspec
(``memory://``, and any protocol an installed fsspec driver adds) wrapped in
:class:`pyarrow.fs.PyFileSystem`. Credentials come from where pyarrow (or the fsspec driver)
looks for them: the environment (``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``,
``GOOGLE_APPLICATION_CREDENTIALS``, ...), the configuration files, the cloud's instance role.
Plain paths (no ``scheme://``) never come here: they keep the local code path. A URL without
pyarrow installed is refused with one line (:data:`PYARROW_MISSING`, exit 2).

This module holds the primitives: :class:`Location` (a file system + path, picklable, so a Ray
worker opens the same place), listing, pair discovery over URLs (:func:`discover`, the rules of
:mod:`ivfuse.data.pairs`), :func:`put` (the whole-or-nothing write) and :func:`remove_orphans`.

Whole or nothing (:func:`put`), decided per file system by :func:`renames`:

* **file systems with an atomic rename** (local, ``file://``, HDFS, and a
  :class:`~pyarrow.fs.SubTreeFileSystem` or an fsspec ``file`` file system over them): the bytes
  go to a hidden temporary name in the target's folder, ``.<name>.<random>.tmp`` (the names of
  :func:`ivfuse.io.atomic_write`), then :meth:`~pyarrow.fs.FileSystem.move` renames it into
  place. Writing the target directly could leave half a file when the writer is killed.
* **object stores** (S3, GCS, Azure, fsspec's memory file system, any other): there is no rename
  (S3's "move" is a copy and a delete), but an object appears only when its upload completes: one
  PUT, or the completion of a multipart upload, which is atomic. The image is therefore encoded
  whole in memory first and written with one output stream (one ``write``, then ``close``, which
  completes the upload); a writer killed before that leaves no object (an unfinished multipart
  upload is invisible: an ``AbortIncompleteMultipartUpload`` lifecycle rule reclaims its parts).
  When the write itself raises (network), the target is deleted, so no partial object survives
  a stream that completes what it got on close.
"""

from __future__ import annotations

import os
import posixpath
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import InputError

#: the one-line refusal when a URL is given and pyarrow is not installed
PYARROW_MISSING = (
    'URLs (s3://, gs://, hdfs://, file://) need pyarrow: pip install "ivfuse[distributed]" '
    "(or: pip install pyarrow), or give a local path"
)

# a scheme of two characters or more (so a Windows drive, C:\, is a path), then ://
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+://")


def is_url(target: object) -> bool:
    """True for ``scheme://...`` (``s3://b/x``, ``file:///abs``); False for paths and ``None``."""
    return isinstance(target, str) and _URL.match(target) is not None


def any_url(*targets: object) -> bool:
    return any(is_url(t) for t in targets)


def require_pyarrow() -> Any:
    """The :mod:`pyarrow.fs` module, or :class:`~ivfuse.errors.InputError` (exit 2) with the
    install line."""
    try:
        import pyarrow.fs as pafs
    except ImportError:
        raise InputError(PYARROW_MISSING) from None
    return pafs


class StorageError(InputError):
    """A folder given as a URL cannot be opened, listed or written by the command (permissions,
    network): one line, exit 2. A pair whose file a worker cannot read or write fails alone."""


@dataclass(frozen=True)
class Location:
    """A file or folder on a pyarrow file system: ``fs`` (picklable: a Ray worker opens the same
    place), ``path`` in that file system's terms, and ``label``, what messages show (the URL)."""

    fs: Any
    path: str
    label: str

    @classmethod
    def of(cls, target: str | os.PathLike | Location, fs: Any = None) -> Location:
        """The location of a URL, a local path (on the local file system), or ``path`` on ``fs``."""
        if isinstance(target, Location):
            return target
        pafs = require_pyarrow()
        if fs is not None:
            path = str(target).rstrip("/") or "/"
            return cls(fs, path, str(target))
        if not is_url(target):
            return cls(pafs.LocalFileSystem(), str(Path(target).absolute()), str(target))
        url = str(target)
        try:
            fs, path = pafs.FileSystem.from_uri(url)
        except Exception as exc:  # ArrowInvalid (unknown scheme, bad syntax), OSError (a bucket not reached)
            if "Unrecognized filesystem type" not in str(exc):
                raise InputError(f"cannot open {url}: {_first_line(exc)}") from None
            fs, path = _fsspec(url, exc)  # a protocol pyarrow does not know: fsspec's, if any
        label = url.rstrip("/")
        return cls(fs, path.rstrip("/") or "/", url if label.endswith(":") else label)

    # -- names ------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name).stem

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    @property
    def parent(self) -> Location:
        label = self.label.rsplit("/", 1)[0] if "/" in self.label else self.label
        return Location(self.fs, posixpath.dirname(self.path) or "/", label)

    def child(self, name: str) -> Location:
        return Location(self.fs, posixpath.join(self.path, name), f"{self.label.rstrip('/')}/{name}")

    def __str__(self) -> str:
        return self.label

    # -- queries ----------------------------------------------------------------------------
    def kind(self) -> str:
        """``file``, ``dir`` or ``missing``."""
        pafs = require_pyarrow()
        try:
            info = self.fs.get_file_info(self.path)
        except (FileNotFoundError, NotADirectoryError):
            return "missing"
        except (OSError, ValueError) as exc:  # permissions, network: not "folder not found"
            raise StorageError(f"{self}: cannot open ({_first_line(exc)})") from None
        return {pafs.FileType.File: "file", pafs.FileType.Directory: "dir"}.get(info.type, "missing")

    def is_dir(self) -> bool:
        return self.kind() == "dir"

    def entries(self) -> dict[str, tuple[str, int]]:
        """The entries directly inside this folder: name -> (``file`` or ``dir``, size in bytes);
        empty when the folder does not exist. One listing call (one LIST request on S3)."""
        pafs = require_pyarrow()
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        except (FileNotFoundError, NotADirectoryError):
            return {}
        except (OSError, ValueError) as exc:
            raise StorageError(f"{self}: cannot list ({_first_line(exc)})") from None
        out = {}
        for info in infos:
            if info.type == pafs.FileType.File:
                out[info.base_name] = ("file", int(info.size or 0))
            elif info.type == pafs.FileType.Directory:
                out[info.base_name] = ("dir", 0)
        return out

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as f:
            return f.read()

    def mkdir(self) -> None:
        try:
            self.fs.create_dir(self.path, recursive=True)
        except (OSError, ValueError) as exc:
            raise StorageError(f"{self}: cannot create the folder ({_first_line(exc)})") from None

    def delete(self) -> None:
        try:
            self.fs.delete_file(self.path)
        except (FileNotFoundError, OSError):
            pass

    def same_place(self, other: Location) -> bool:
        """Same file system and path."""
        return self.path == other.path and _same_fs(self.fs, other.fs)

    def inside(self, folder: Location) -> bool:
        """This location is ``folder`` or lies inside it (same file system)."""
        if not _same_fs(self.fs, folder.fs):
            return False
        base = folder.path.rstrip("/")
        return self.path == folder.path or self.path.startswith(base + "/")


def _same_fs(a: Any, b: Any) -> bool:
    try:
        return a is b or bool(a.equals(b))
    except Exception:  # PyFileSystem handlers without equality
        return False


def _fsspec(url: str, first: Exception) -> tuple[Any, str]:
    """``url`` through fsspec (a protocol pyarrow does not know), as a pyarrow file system."""
    import pyarrow.fs as pafs

    try:
        import fsspec
        from fsspec.core import url_to_fs

        fs, path = url_to_fs(url)
        del fsspec
    except Exception:
        raise InputError(f"cannot open {url}: {_first_line(first)}") from None
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


# ---------------------------------------------------------------------------------------------
# writing


def renames(fs: Any) -> bool:
    """True where :func:`put` writes a temporary name and renames it (local, HDFS, a sub-tree or
    an fsspec ``file`` file system over them); False for object stores (see the module docstring)."""
    base = _base(fs)
    return getattr(base, "type_name", "") in ("local", "hdfs") or _is_fsspec_local(base)


def appends(fs: Any) -> bool:
    """True where the manifest is appended line by line (the local file system, however given);
    elsewhere it is written in chunks (:class:`~ivfuse.distributed.manifest.UrlManifest`)."""
    base = _base(fs)
    return getattr(base, "type_name", "") == "local" or _is_fsspec_local(base)


def _base(fs: Any) -> Any:
    while getattr(fs, "type_name", "") == "subtree":
        fs = fs.base_fs
    return fs


def _is_fsspec_local(fs: Any) -> bool:
    protocol = getattr(getattr(getattr(fs, "handler", None), "fs", None), "protocol", None)
    protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol or ())
    return bool({"file", "local"} & set(protocols))


def put(target: Location, data: bytes) -> None:
    """Write ``data`` as the file ``target``, whole or not at all (see the module docstring); the
    folder must exist where the file system has folders (:meth:`Location.mkdir`)."""
    fs = target.fs
    if renames(fs):
        tmp = target.parent.child(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            with fs.open_output_stream(tmp.path) as f:
                f.write(data)
            fs.move(tmp.path, target.path)
        except BaseException:
            tmp.delete()
            raise
        return
    try:
        with fs.open_output_stream(target.path) as f:  # one upload, completed by close()
            f.write(data)
    except BaseException:
        target.delete()  # a stream that completes what it got on close must not leave it
        raise


def is_temporary(name: str, outputs: set[str]) -> bool:
    """``name`` is a temporary file of :func:`put` or :func:`ivfuse.io.atomic_write` for one of
    ``outputs`` (``.<name>.<random>.tmp``)."""
    if not (name.startswith(".") and name.endswith(".tmp")):
        return False
    return name[1:].rsplit(".", 2)[0] in outputs


def remove_orphans(folder: Location, names: set[str]) -> list[Location]:
    """Delete the temporary files writers killed half-way left in ``folder`` for the outputs
    ``names`` (only file systems that rename have any); returns them. Call when no writer of those
    outputs runs any more."""
    if not renames(folder.fs):
        return []
    removed = []
    for entry in folder.entries():
        if is_temporary(entry, names):
            loc = folder.child(entry)
            loc.delete()
            removed.append(loc)
    return removed


# ---------------------------------------------------------------------------------------------
# pairs


def list_images(folder: Location, label: str = "") -> list[Location]:
    """:func:`ivfuse.data.pairs.list_images` of a location: image files directly inside, by
    extension, sorted, hidden ones left out."""
    from ..io import IMAGE_EXTENSIONS

    if not folder.is_dir():
        raise InputError(f"{label + ' ' if label else ''}{folder}: folder not found")
    names = sorted(
        n
        for n, (kind, _) in folder.entries().items()
        if kind == "file" and PurePosixPath(n).suffix.lower() in IMAGE_EXTENSIONS and not n.startswith(".")
    )
    return [folder.child(n) for n in names]


def find_pairs(ir_dir: Location, vi_dir: Location, labels: tuple[str, str] = ("", "")) -> Any:
    """:func:`ivfuse.data.pairs.find_pairs` of two locations (a :class:`~ivfuse.data.pairs.PairScan`
    whose files are :class:`Location` objects)."""
    from ..data.pairs import match_by_stem

    ir_files = list_images(ir_dir, labels[0])
    vi_files = list_images(vi_dir, labels[1])
    if ir_dir.same_place(vi_dir):
        a, b = (f"{lab} {d}" if lab else str(d) for lab, d in zip(labels, (ir_dir, vi_dir), strict=True))
        raise InputError(f"{a} and {b} are the same folder: the two sources must be in two folders")
    return match_by_stem(ir_files, vi_files, (ir_dir, vi_dir), key=str)


def source_folders(root: Location, names: tuple[str, str] | None = None) -> tuple[Location, Location]:
    """The two source sub-folders ``names`` of a pairs folder, any letter case; ``None``: the first
    layout of :data:`ivfuse.data.pairs.TASK_FOLDERS` the folder has (as
    :func:`~ivfuse.data.pairs.detect_task` finds it)."""
    from ..data.pairs import TASK_FOLDERS

    if not root.is_dir():
        raise InputError(f"{root}: folder not found")
    dirs = sorted(n for n, (kind, _) in root.entries().items() if kind == "dir")
    if names is None:
        lower = {d.lower() for d in dirs}
        names = next((pair for pair in TASK_FOLDERS.values() if set(pair) <= lower), None)
        if names is None:
            raise InputError(f"{root}: expected sub-folders ir/ + vi/ (or under/ + over/, or a/ + b/)")
    found = [next((root.child(d) for d in dirs if d.lower() == n), None) for n in names]
    missing = [n for n, f in zip(names, found, strict=True) if f is None]
    if missing:
        gone = " and ".join(m + "/" for m in missing)
        raise InputError(f"{root}: expected sub-folders {names[0]}/ and {names[1]}/, missing {gone}")
    return found[0], found[1]  # type: ignore[return-value]


def discover(
    ir_dir: str | os.PathLike | Location | None = None,
    vi_dir: str | os.PathLike | Location | None = None,
    pairs_dir: str | os.PathLike | Location | None = None,
    *,
    task: str = "ivif",
) -> Any:
    """:func:`ivfuse.data.pairs.discover` where the folders are URLs (a plain path among them is
    a folder of the local file system): ``--pairs`` or ``--ir``/``--vi``."""
    from ..data.pairs import TASK_FOLDERS

    if task not in TASK_FOLDERS:
        raise InputError(f"unknown task {task!r}; choose one of: {', '.join(TASK_FOLDERS)}")
    if pairs_dir is not None:
        if ir_dir is not None or vi_dir is not None:
            raise InputError("use either --pairs or --ir/--vi, not both")
        return find_pairs(*source_folders(Location.of(pairs_dir), TASK_FOLDERS[task]))
    if ir_dir is None or vi_dir is None:
        raise InputError("folder mode needs both --ir and --vi (or --pairs)")
    return find_pairs(Location.of(ir_dir), Location.of(vi_dir), labels=("--ir", "--vi"))


def refuse_output_folder_in_inputs(out: Location, folders: Iterable[Location]) -> None:
    """:func:`ivfuse.api.refuse_output_folder_in_inputs` for locations: the output folder is a
    source folder or lies inside one (same file system)."""
    for folder in folders:
        if out.inside(folder):
            raise InputError(
                f"output folder {out} is inside the input folder {folder}: choose another output folder"
            )
