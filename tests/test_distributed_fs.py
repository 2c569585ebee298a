"""Folders given as URLs (ivfuse.distributed.fs): ``file://`` and fsspec's in-memory file system (an
object store without a network) against the local engine on plain paths: the same bytes, the same
summaries and exit codes, the manifest and ``--resume``, whole-or-nothing writes when a write fails,
and the refusals. The Ray engine on URLs, and the one-line refusal without pyarrow, are tested in
test_distributed.py (its shared cluster; it runs without pyarrow). Everything here skips cleanly
without pyarrow (without fsspec: the in-memory tests).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ivfuse.distributed import MANIFEST_NAME, Fingerprint, Manifest

from .test_distributed import images, pairs_folder, records, run, summary, url

pafs = pytest.importorskip("pyarrow.fs")
pa = pytest.importorskip("pyarrow")

from ivfuse.distributed import fs  # noqa: E402
from ivfuse.distributed.manifest import MANIFEST_DIR, UrlManifest  # noqa: E402


@pytest.fixture
def memory():
    """fsspec's in-memory file system (process-wide), emptied before and after; its pyarrow wrapper."""
    fsspec = pytest.importorskip("fsspec")
    mem = fsspec.filesystem("memory")
    mem.store.clear()
    mem.pseudo_dirs.clear()
    mem.pseudo_dirs.append("")
    yield mem
    mem.store.clear()
    mem.pseudo_dirs.clear()
    mem.pseudo_dirs.append("")


def upload(mem, local: Path, prefix: str) -> None:
    """Copy a local folder tree into the memory file system under ``prefix`` (``/bucket/d``)."""
    for p in sorted(local.rglob("*")):
        if p.is_file():
            mem.pipe(f"{prefix}/{p.relative_to(local).as_posix()}", p.read_bytes())


# ------------------------------------------------------------------------------------------------
# the primitives


def test_urls_are_told_from_paths_and_kept_whole():
    assert fs.is_url("s3://bucket/x") and fs.is_url("file:///tmp/x") and fs.is_url("memory://b/x")
    assert not fs.is_url("/tmp/x") and not fs.is_url("C:\\data")
    assert not fs.is_url(None) and not fs.is_url(Path("s3://b"))  # a Path has already lost the //
    loc = fs.Location.of("file:///tmp/some%20dir/")
    assert loc.path == "/tmp/some dir" and str(loc) == "file:///tmp/some%20dir"
    assert str(loc.child("a.png")) == "file:///tmp/some%20dir/a.png" and loc.child("a.png").stem == "a"
    assert fs.renames(loc.fs) and fs.appends(loc.fs)
    sub = pafs.SubTreeFileSystem("/tmp", pafs.LocalFileSystem())
    assert fs.renames(sub) and fs.appends(sub)


def test_write_strategy_per_file_system(tmp_path, memory):
    mem = fs.Location.of("memory://bucket/out")
    assert not fs.renames(mem.fs) and not fs.appends(mem.fs)  # an object store: one upload
    local_fsspec = pafs.PyFileSystem(pafs.FSSpecHandler(__import__("fsspec").filesystem("file")))
    assert fs.renames(local_fsspec)
    mem.mkdir()
    fs.put(mem.child("a.bin"), b"x" * 1000)
    assert mem.entries() == {"a.bin": ("file", 1000)}
    disk = fs.Location.of(url(tmp_path / "o"))
    disk.mkdir()
    fs.put(disk.child("a.bin"), b"y" * 10)
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.bin"]  # the temporary name is gone
    assert (tmp_path / "o" / "a.bin").read_bytes() == b"y" * 10


class _Broken:
    """A file object that takes half of what it is given, then fails (a dropped connection)."""

    def __init__(self, inner):
        self.inner = inner

    def write(self, data):
        self.inner.write(bytes(data)[: len(data) // 2])
        raise OSError("connection reset by peer")

    def __getattr__(self, name):
        return getattr(self.inner, name)


class _FailingHandler(pafs.FSSpecHandler):
    """An fsspec handler whose writes of names containing ``fail`` break half-way, and whose
    renames fail when ``fail_move``."""

    def __init__(self, fs, fail_move=False):
        super().__init__(fs)
        self.fail_move = fail_move

    def open_output_stream(self, path, metadata):
        if "fail" in path.rsplit("/", 1)[-1]:
            return pa.PythonFile(_Broken(self.fs.open(path, mode="wb")), mode="w")
        return super().open_output_stream(path, metadata)

    def get_file_info(self, paths):
        if any("denied" in p for p in paths):
            raise PermissionError("access denied")
        return super().get_file_info(paths)

    def get_file_info_selector(self, selector):
        if "denied" in selector.base_dir:
            raise PermissionError("access denied")
        return super().get_file_info_selector(selector)

    def move(self, src, dest):
        if self.fail_move:
            raise OSError("rename refused")
        super().move(src, dest)


def through_failing_handler(memory, monkeypatch) -> None:
    """memory:// URLs open fsspec's memory file system through :class:`_FailingHandler`."""
    broken = pafs.PyFileSystem(_FailingHandler(memory))
    real = fs.Location.of

    def of(target, fs_=None):
        loc = real(target, fs_)
        return fs.Location(broken, loc.path, loc.label) if str(target).startswith("memory://") else loc

    monkeypatch.setattr(fs.Location, "of", staticmethod(of))


def test_a_write_that_fails_leaves_nothing(tmp_path, memory):
    # object store: the stream's close would complete the half it got; put deletes it
    store = fs.Location(pafs.PyFileSystem(_FailingHandler(memory)), "/bucket/out", "mem://bucket/out")
    store.mkdir()
    memory.pipe("/bucket/out/keep.png", b"k")
    with pytest.raises(OSError), store.fs.open_output_stream("/bucket/out/raw_fail.png") as f:
        f.write(b"0123456789")
    assert store.entries()["raw_fail.png"] == ("file", 5)  # the hazard: close completed half a file
    with pytest.raises(OSError, match="connection reset"):
        fs.put(store.child("fail.png"), b"0123456789")
    assert "fail.png" not in store.entries() and store.entries()["keep.png"] == ("file", 1)
    # a file system that renames: a failed rename leaves neither the target nor the temporary file
    local = pafs.PyFileSystem(_FailingHandler(__import__("fsspec").filesystem("file"), fail_move=True))
    (tmp_path / "o").mkdir()
    with pytest.raises(OSError, match="rename refused"):
        fs.put(fs.Location(local, str(tmp_path / "o" / "a.png"), "x"), b"0123456789")
    assert list((tmp_path / "o").iterdir()) == []


def test_url_manifest_in_chunks_and_read_back_anywhere(tmp_path, memory):
    fp_a, fp_b = Fingerprint.make("lp"), Fingerprint.make("lp", {"levels": 3})
    out = fs.Location.of("memory://bucket/out")
    out.mkdir()
    for name, size in (("a.png", 5), ("b.png", 5), ("c.png", 7)):
        fs.put(out.child(name), b"1" * size)
    with UrlManifest(out, flush_records=2) as m:
        m.start(fp_a, "ray")
        for stem in "abc":
            m.record(stem, f"{stem}.png", 7 if stem == "c" else 5)
    chunks = fs.Location.of(f"memory://bucket/out/{MANIFEST_DIR}").entries()
    assert len(chunks) == 2 and all(n.endswith(".jsonl") for n in chunks)  # 2 records, then 1 at close
    assert MANIFEST_NAME not in out.entries()  # nothing appended on an object store
    with UrlManifest(out) as m:  # a later run redoes b with other options: the latest record wins
        m.start(fp_b, "local")
        m.record("b", "b.png", 5)
    assert set(UrlManifest(out).done(fp_a)) == {"a", "c"}
    assert set(UrlManifest(out).done(fp_b)) == {"b"}
    fs.put(out.child("c.png"), b"1" * 3)  # not the file recorded any more
    assert set(UrlManifest(out).done(fp_a)) == {"a"}
    # the folder copied to a disk: the local Manifest reads the chunks
    for p in memory.find("/bucket/out"):
        dst = tmp_path / "copy" / Path(p).relative_to("/bucket/out")
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(memory.cat(p))
    assert set(Manifest(tmp_path / "copy").done(fp_a)) == {"a"}
    assert set(Manifest(tmp_path / "copy").done(fp_b)) == {"b"}


def test_url_manifest_writes_a_chunk_every_flush_seconds(memory, monkeypatch):
    """Besides every flush_records pairs, a chunk goes out once flush_seconds have passed since the
    last one (a slow run loses at most that much on a crash), and the rest at the close."""
    clock = [100.0]
    monkeypatch.setattr("ivfuse.distributed.manifest._now", lambda: clock[0])
    out = fs.Location.of("memory://bucket/timed")
    out.mkdir()
    for name in "abc":
        fs.put(out.child(f"{name}.png"), b"1" * 5)
    chunks = fs.Location.of(f"memory://bucket/timed/{MANIFEST_DIR}")
    fp = Fingerprint.make("lp")
    with UrlManifest(out, flush_seconds=30.0) as m:
        m.start(fp, "ray")
        m.record("a", "a.png", 5)
        clock[0] += 29.0
        m.record("b", "b.png", 5)
        assert not chunks.is_dir() or chunks.entries() == {}  # 29 s: nothing written yet
        clock[0] += 1.0
        m.record("c", "c.png", 5)  # 30 s since the start: a, b and c go out
        assert len(chunks.entries()) == 1
    assert len(chunks.entries()) == 1  # nothing left for the close
    assert set(UrlManifest(out).done(fp)) == {"a", "b", "c"}


def test_file_url_manifest_is_the_local_log(tmp_path):
    (tmp_path / "a.png").write_bytes(b"12345")
    fp = Fingerprint.make("lp")
    with UrlManifest(fs.Location.of(url(tmp_path))) as m:
        m.start(fp, "ray")
        m.record("a", "a.png", 5)
    assert set(Manifest(tmp_path).done(fp)) == {"a"}  # the same file a plain path reads
    assert [d["stem"] for d in records(tmp_path)] == ["a"]


# ------------------------------------------------------------------------------------------------
# the command line


def test_fuse_file_urls_equal_local_with_bad_pairs_and_resume(tmp_path):
    d = pairs_folder(tmp_path / "d", 5, bad=True)
    local, remote = tmp_path / "local", tmp_path / "remote"
    r_local = run("fuse", "--pairs", d, "-o", local, "-m", "lp")
    r_url = run("fuse", "--pairs", url(d), "-o", url(remote), "-m", "lp")
    assert r_local.exit_code == r_url.exit_code == 1, r_url.output  # the bad pair: reported, exit 1
    assert summary(r_url.output) == summary(r_local.output) == "4 fused, 1 skipped, 1 failed"
    assert f"{url(d)}/ir/p01.png: cannot decode image" in r_url.output  # the URL, not a local copy
    assert f"{url(d)}/ir/lonely.png: no matching file" in r_url.output
    assert images(remote) == images(local) and len(images(local)) == 4  # byte-equal outputs
    recs = records(remote)
    assert sorted(x["stem"] for x in recs) == ["p00", "p02", "p03", "p04"]
    assert all((remote / x["file"]).stat().st_size == x["bytes"] for x in recs)
    stamps = {p.name: p.stat().st_mtime_ns for p in remote.glob("*.png")}
    for args in (("--pairs", url(d), "-o", url(remote)), ("--pairs", d, "-o", remote)):  # URL or path
        r = run("fuse", *args, "-m", "lp", "--resume", "--overwrite")
        assert r.exit_code == 1 and summary(r.output) == "0 fused, 5 skipped, 1 failed", r.output
    r = run("fuse", "--pairs", url(d), "-o", url(remote), "-m", "lp")  # no --resume: outputs exist
    assert summary(r.output) == "0 fused, 5 skipped, 1 failed"
    assert {p.name: p.stat().st_mtime_ns for p in remote.glob("*.png")} == stamps
    # --ir/--vi as URLs with a plain output path: the same bytes
    r = run("fuse", "--ir", url(d / "ir"), "--vi", url(d / "vi"), "-o", tmp_path / "mixed", "-m", "lp")
    assert r.exit_code == 1 and images(tmp_path / "mixed") == images(local)


def test_fuse_in_memory_object_store_equals_local(tmp_path, memory):
    d = pairs_folder(tmp_path / "d", 4, bad=True)
    upload(memory, d, "/bucket/d")
    local = tmp_path / "local"
    r_local = run("fuse", "--pairs", d, "-o", local, "-m", "gff", "--bit-depth", "16")
    r_mem = run(
        "fuse", "--pairs", "memory://bucket/d", "-o", "memory://bucket/out", "-m", "gff", "--bit-depth", "16"
    )
    assert r_local.exit_code == r_mem.exit_code == 1, r_mem.output
    assert summary(r_mem.output) == summary(r_local.output) == "3 fused, 1 skipped, 1 failed"
    assert "memory://bucket/d/ir/p01.png: cannot decode image" in r_mem.output
    got = {Path(p).name: memory.cat(p) for p in memory.find("/bucket/out") if p.endswith(".png")}
    assert got == images(local)
    chunks = [p for p in memory.find(f"/bucket/out/{MANIFEST_DIR}")]
    assert len(chunks) == 1  # one chunk at the end of a short run
    lines = [json.loads(x) for x in memory.cat(chunks[0]).decode().splitlines()]
    assert lines[0]["fingerprint"]["method"] == "gff" and lines[0]["fingerprint"]["bit_depth"] == 16
    assert sorted(x["stem"] for x in lines[1:]) == ["p00", "p02", "p03"]
    mem_args = ("--pairs", "memory://bucket/d", "-o", "memory://bucket/out")
    r = run("fuse", *mem_args, "-m", "gff", "--bit-depth", "16", "--resume", "--overwrite")
    assert summary(r.output) == "0 fused, 4 skipped, 1 failed"
    r = run("fuse", "--pairs", "memory://bucket/d", "-o", "memory://bucket/out", "-m", "max", "--resume")
    assert summary(r.output) == "3 fused, 1 skipped, 1 failed"  # another method: redone


def test_a_failed_upload_fails_its_pair_only(tmp_path, memory, monkeypatch):
    d = pairs_folder(tmp_path / "d", 3)
    (d / "ir" / "p01.png").rename(d / "ir" / "p01fail.png")
    (d / "vi" / "p01.png").rename(d / "vi" / "p01fail.png")
    upload(memory, d, "/bucket/d")
    through_failing_handler(memory, monkeypatch)
    r = run("fuse", "--pairs", "memory://bucket/d", "-o", "memory://bucket/out", "-m", "lp")
    assert r.exit_code == 1 and summary(r.output) == "2 fused, 0 skipped, 1 failed", r.output
    assert "memory://bucket/out/p01fail.png: cannot write (connection reset by peer)" in r.output
    names = sorted(Path(p).name for p in memory.find("/bucket/out") if p.endswith(".png"))
    assert names == ["p00.png", "p02.png"]  # no partial object
    lines = memory.cat(memory.find(f"/bucket/out/{MANIFEST_DIR}")[0]).decode().splitlines()
    assert sorted(json.loads(x)["stem"] for x in lines[1:]) == ["p00", "p02"]


def test_a_folder_that_cannot_be_listed_is_one_line_exit_2(tmp_path, memory, monkeypatch):
    d = pairs_folder(tmp_path / "d", 1)
    upload(memory, d, "/denied/d")
    through_failing_handler(memory, monkeypatch)
    r = run("fuse", "--pairs", "memory://denied/d", "-o", tmp_path / "o")
    assert r.exit_code == 2 and "memory://denied/d: cannot open (access denied)" in r.output, r.output
    assert "folder not found" not in r.output and "Traceback" not in r.output
    r = run("fuse", "--pairs", url(d), "-o", "memory://denied/out")  # the output folder
    assert r.exit_code == 2 and "memory://denied/out: cannot list (access denied)" in r.output, r.output


def test_urls_refused_where_they_cannot_go(tmp_path):
    d = pairs_folder(tmp_path / "d", 1)
    r = run("fuse", url(d / "ir" / "p00.png"), url(d / "vi" / "p00.png"), "-o", tmp_path / "f.png")
    assert r.exit_code == 2 and "URLs name folders" in r.output
    r = run("fuse", "--pairs", url(d), "-o", url(d / "ir" / "out"))
    assert r.exit_code == 2 and "is inside the input folder" in r.output
    assert not (d / "ir" / "out").exists()
    r = run("fuse", "--pairs", "nosuchscheme://x/y", "-o", tmp_path / "o")
    assert r.exit_code == 2 and "cannot open nosuchscheme://x/y" in r.output and "Traceback" not in r.output
    r = run("fuse", "--pairs", url(tmp_path / "missing"), "-o", tmp_path / "o")
    assert r.exit_code == 2 and "folder not found" in r.output


def test_eval_on_urls_gives_the_local_numbers(tmp_path, memory):
    d = pairs_folder(tmp_path / "d", 4, size=(64, 80))  # IFC needs 64 pixels a side
    fused = tmp_path / "fused"
    assert run("fuse", "--pairs", d, "-o", fused, "-m", "gff").exit_code == 0
    (fused / "p02.png").write_bytes(b"broken")  # one fused image that cannot be read
    upload(memory, d, "/bucket/d")
    upload(memory, fused, "/bucket/fused")
    r_local = run(
        "eval", "--pairs", d, "--fused", fused, "--json", tmp_path / "l.json", "--csv", tmp_path / "l.csv"
    )
    r_mem = run(
        "eval", "--pairs", "memory://bucket/d", "--fused", "memory://bucket/fused",
        "--json", "memory://bucket/scores/u.json", "--csv", "memory://bucket/scores/u.csv",
    )  # fmt: skip
    assert r_local.exit_code == r_mem.exit_code == 1, r_mem.output  # the broken image: exit 1
    assert summary(r_mem.output) == summary(r_local.output) == "3 evaluated, 1 failed or unmatched"
    assert "memory://bucket/fused/p02.png: " in r_mem.output and "cannot decode image" in r_mem.output
    # the same values to the last bit (the same files, the same code): the files are byte-equal
    assert memory.cat("/bucket/scores/u.json") == (tmp_path / "l.json").read_bytes()
    assert memory.cat("/bucket/scores/u.csv") == (tmp_path / "l.csv").read_bytes()
    doc = json.loads((tmp_path / "l.json").read_text())
    assert [i["name"] for i in doc["images"]] == ["p00", "p01", "p03"] and len(doc["metrics"]) > 10
    r = run(
        "eval",
        "--ir",
        url(d / "ir"),
        "--vi",
        url(d / "vi"),
        "--fused",
        url(fused),
        "--json",
        tmp_path / "f.json",
    )
    assert r.exit_code == 1 and (tmp_path / "f.json").read_bytes() == (tmp_path / "l.json").read_bytes()


def test_bench_refuses_urls_with_one_line(tmp_path):
    r = run("bench", "--methods", "lp", "--dataset", "s3://bucket/d", "--out", tmp_path / "r")
    assert r.exit_code == 2 and "--dataset s3://bucket/d: ivfuse bench reads and writes folders" in " ".join(
        r.output.split()
    )
    r = run("bench", "--methods", "lp", "--dataset", tmp_path, "--out", "gs://bucket/results")
    assert r.exit_code == 2 and "--out gs://bucket/results" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "r").exists()
