"""``--engine ray`` (ivfuse.distributed): the same outputs, numbers, summaries and exit codes as the
local engine, the manifest (resume), a worker killed half-way, and the refusals.

The Ray tests share one local cluster of two CPUs (module fixture) and skip cleanly where Ray is not
installed; the manifest and refusal tests run everywhere.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ivfuse import io
from ivfuse.cli import app
from ivfuse.data.synthetic import night_scene
from ivfuse.distributed import MANIFEST_NAME, Fingerprint, Manifest
from ivfuse.distributed.fs import PYARROW_MISSING

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def summary(output: str) -> str:
    """The counts of the summary line of ivfuse fuse/eval (``3 fused, 0 skipped, 0 failed``)."""
    line = [line for line in output.splitlines() if " fused, " in line or " evaluated, " in line][-1]
    return line.split(" -> ")[0]


def pairs_folder(root: Path, n: int, size=(48, 64), bad: bool = False) -> Path:
    """``root/ir`` + ``root/vi`` with ``n`` synthetic night scenes (colour visible images);
    ``bad``: one corrupt infrared file and one infrared file without a partner."""
    for i in range(n):
        s = night_scene(*size, seed=i)
        io.write_image(root / "ir" / f"p{i:02d}.png", s.ir)
        vi = s.vi if i % 2 or s.vi.ndim == 2 else s.vi.mean(axis=-1)  # colour and gray visible images
        io.write_image(root / "vi" / f"p{i:02d}.png", vi)
    if bad:
        (root / "ir" / "p01.png").write_bytes(b"not a png")
        io.write_image(root / "ir" / "lonely.png", np.zeros((8, 8)))
    return root


def url(path: Path) -> str:
    return path.absolute().as_uri()  # file:///abs/path


def images(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def records(folder: Path) -> list[dict]:
    lines = (folder / MANIFEST_NAME).read_text().splitlines()
    return [d for d in map(json.loads, lines) if "stem" in d]


# ------------------------------------------------------------------------------------------------
# without Ray: the manifest, --resume on the local engine, refusals


def test_manifest_skips_torn_lines_and_tracks_the_latest_record(tmp_path):
    fp_a, fp_b = Fingerprint.make("lp"), Fingerprint.make("lp", {"levels": 3})
    assert fp_a.id != fp_b.id and fp_a.id == Fingerprint.make("lp", {"device": "cuda"}).id
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(b"12345")
    with Manifest(tmp_path) as m:
        m.start(fp_a, "local")
        m.record("a", tmp_path / "a.png")
        m.record("b", tmp_path / "b.png")
    with Manifest(tmp_path) as m:
        m.start(fp_b, "ray")
        m.record("b", tmp_path / "b.png")  # b redone with other options
    with open(tmp_path / MANIFEST_NAME, "a") as fh:
        fh.write('{"stem": "a", "file": "a.pn')  # a driver killed in the middle of a line
    assert set(Manifest(tmp_path).done(fp_a)) == {"a"}
    assert set(Manifest(tmp_path).done(fp_b)) == {"b"}
    (tmp_path / "a.png").write_bytes(b"123")  # not the file recorded any more
    assert Manifest(tmp_path).done(fp_a) == {}


def test_local_resume_skips_what_the_manifest_records(tmp_path):
    pairs_folder(tmp_path / "d", 3)
    out = tmp_path / "out"
    r = run("fuse", "--pairs", tmp_path / "d", "-o", out, "-m", "average", "--resume")
    assert r.exit_code == 0 and summary(r.output) == "3 fused, 0 skipped, 0 failed"
    assert [d["stem"] for d in records(out)] == ["p00", "p01", "p02"]
    stamp = (out / "p00.png").stat().st_mtime_ns
    r = run("fuse", "--pairs", tmp_path / "d", "-o", out, "-m", "average", "--resume", "--overwrite")
    assert r.exit_code == 0 and "0 fused, 3 skipped, 0 failed" in r.output  # done: not redone
    assert (out / "p00.png").stat().st_mtime_ns == stamp
    r = run("fuse", "--pairs", tmp_path / "d", "-o", out, "-m", "max", "--resume")
    assert r.exit_code == 0 and "3 fused, 0 skipped, 0 failed" in r.output  # another method: redone
    assert images(out) == images(_fused_locally(tmp_path, "max"))


def _fused_locally(tmp_path: Path, method: str) -> Path:
    out = tmp_path / f"local-{method}"
    assert run("fuse", "--pairs", tmp_path / "d", "-o", out, "-m", method).exit_code == 0
    return out


def test_ray_missing_is_one_line_and_exit_2(tmp_path, monkeypatch):
    import sys

    pairs_folder(tmp_path / "d", 1)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    for args in (
        ("fuse", "--pairs", tmp_path / "d", "-o", tmp_path / "o", "--engine", "ray"),
        ("eval", "--pairs", tmp_path / "d", "--fused", tmp_path / "d" / "vi", "--engine", "ray"),
        ("bench", "--methods", "lp", "--dataset", tmp_path / "d", "--out", tmp_path / "r", "--engine", "ray"),
    ):
        r = run(*args)
        assert r.exit_code == 2, r.output
        assert 'pip install "ivfuse[distributed]"' in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o").exists() and not (tmp_path / "r").exists()


def test_pyarrow_missing_is_one_line_and_exit_2(tmp_path, monkeypatch):
    import sys

    d = pairs_folder(tmp_path / "d", 1)
    for mod in ("pyarrow", "pyarrow.fs"):
        monkeypatch.setitem(sys.modules, mod, None)  # import pyarrow.fs raises ImportError
    r = run("fuse", "--pairs", url(d), "-o", url(tmp_path / "o"))
    assert r.exit_code == 2 and PYARROW_MISSING in " ".join(r.output.split()), r.output
    assert "Traceback" not in r.output and not (tmp_path / "o").exists()
    r = run("fuse", "--pairs", d, "-o", tmp_path / "o")  # plain paths need no pyarrow
    assert r.exit_code == 0 and summary(r.output) == "1 fused, 0 skipped, 0 failed"


def test_engine_options_are_checked_before_anything_runs(tmp_path):
    pairs_folder(tmp_path / "d", 1)
    d = tmp_path / "d"
    r = run("fuse", "--pairs", d, "-o", tmp_path / "o", "--address", "auto")  # local engine
    assert r.exit_code == 2 and "--address go with --engine ray" in r.output
    r = run("fuse", "--pairs", d, "-o", tmp_path / "o", "--engine", "spark")
    assert r.exit_code == 2 and "--engine must be local or ray" in r.output
    r = run("fuse", d / "ir" / "p00.png", d / "vi" / "p00.png", "-o", tmp_path / "f.png", "--resume")
    assert r.exit_code == 2 and "fuse folders" in r.output
    r = run("fuse", "--pairs", d, "-o", tmp_path / "o", "--engine", "ray", "-m", "lp", "-p", "levls=3")
    assert r.exit_code == 2 and "no option 'levls' (did you mean 'levels'?)" in r.output, r.output
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------------
# on a local Ray cluster of two CPUs


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    import logging

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_fuse_on_ray_equals_local_with_bad_pairs_and_resume(tmp_path, cluster):
    d = pairs_folder(tmp_path / "d", 9, bad=True)
    local, ray_out = tmp_path / "local", tmp_path / "ray"
    r_local = run("fuse", "--pairs", d, "-o", local, "-m", "lp")
    r_ray = run("fuse", "--pairs", d, "-o", ray_out, "-m", "lp", "--engine", "ray", "--batch-size", "3")
    assert r_local.exit_code == r_ray.exit_code == 1  # the bad pair: reported, skipped, exit 1
    assert summary(r_ray.output) == summary(r_local.output) == "8 fused, 1 skipped, 1 failed"
    assert "p01" in r_ray.output and "cannot decode" in r_ray.output and "lonely.png" in r_ray.output
    assert images(ray_out) == images(local) and len(images(local)) == 8  # byte-equal outputs
    recs = records(ray_out)
    assert sorted(d["stem"] for d in recs) == [f"p{i:02d}" for i in range(9) if i != 1]
    assert all((ray_out / d["file"]).stat().st_size == d["bytes"] for d in recs)

    # a rerun skips what is done, without starting workers; --overwrite --resume too (the manifest)
    stamps = {p.name: p.stat().st_mtime_ns for p in ray_out.iterdir()}
    for extra in ((), ("--overwrite", "--resume")):
        r = run("fuse", "--pairs", d, "-o", ray_out, "-m", "lp", "--engine", "ray", *extra)
        assert r.exit_code == 1 and summary(r.output) == "0 fused, 9 skipped, 1 failed"
    assert {p.name: p.stat().st_mtime_ns for p in ray_out.iterdir() if p.suffix == ".png"} == {
        k: v for k, v in stamps.items() if k.endswith(".png")
    }
    # the local engine reads the same manifest
    r = run("fuse", "--pairs", d, "-o", ray_out, "-m", "lp", "--resume", "--overwrite")
    assert summary(r.output) == "0 fused, 9 skipped, 1 failed"

    # a method the workers cannot build: the local engine's message and exit code
    r = run("fuse", "--pairs", d, "-o", tmp_path / "o2", "-m", "lp", "-p", "levels=abc", "--engine", "ray")
    assert r.exit_code == 2 and "parameter levels must be an integer" in r.output, r.output
    assert not list((tmp_path / "o2").glob("*.png"))


@pytest.mark.slow
def test_eval_and_bench_on_ray_give_the_local_numbers(tmp_path, cluster):
    d = pairs_folder(tmp_path / "d", 6, size=(64, 80))  # IFC needs 64 pixels a side
    fused = tmp_path / "fused"
    assert run("fuse", "--pairs", d, "-o", fused, "-m", "gff").exit_code == 0
    (fused / "p03.png").write_bytes(b"broken")  # one fused image that cannot be read
    res = {}
    for engine in ("local", "ray"):
        j = tmp_path / f"{engine}.json"
        r = run("eval", "--pairs", d, "--fused", fused, "--json", j, "--engine", engine)
        assert r.exit_code == 1, r.output  # the broken image: reported, exit 1
        assert summary(r.output) == "5 evaluated, 1 failed or unmatched"
        res[engine] = json.loads(j.read_text())
    a, b = res["local"], res["ray"]
    assert [i["name"] for i in a["images"]] == [i["name"] for i in b["images"]]
    assert len(a["metrics"]) > 10
    for ia, ib in zip(a["images"], b["images"], strict=True):
        for m in a["metrics"]:
            va, vb = ia["metrics"][m], ib["metrics"][m]
            assert (va is None and vb is None) or abs(va - vb) <= 1e-12, m

    out = {}
    for engine in ("local", "ray"):
        o = tmp_path / f"bench-{engine}"
        r = run(
            "bench", "--methods", "lp,max", "--dataset", d, "--out", o, "--no-figures", "--no-html",
            "--engine", engine,
        )  # fmt: skip
        assert r.exit_code == 0, r.output
        out[engine] = json.loads((o / "results.json").read_text())
    va, vb = out["local"]["values"], out["ray"]["values"]
    assert len(va) == len(vb) > 0
    _close(va, vb)
    cells = [{(c["method"], c["metric"]): c for c in r["datasets"][0]["cells"]} for r in out.values()]
    assert cells[0].keys() == cells[1].keys()
    for k in cells[0]:
        assert abs(cells[0][k]["mean"] - cells[1][k]["mean"]) <= 1e-12
        assert cells[0][k]["best"] == cells[1][k]["best"]
    for method in ("lp", "max"):
        folder = f"fused/d/{method}"
        assert images(tmp_path / "bench-local" / folder) == images(tmp_path / "bench-ray" / folder)


def _close(a, b) -> None:
    """Equal nested results (lists/dicts of numbers) to 1e-12."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _close(a[k], b[k])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _close(x, y)
    elif isinstance(a, float) and isinstance(b, float):
        assert abs(a - b) <= 1e-12 or (np.isnan(a) and np.isnan(b))
    else:
        assert a == b


def _workers_of(ray) -> list[int]:
    """PIDs of the Ray Data actors of this test's cluster (children of its raylet)."""
    from ray._private import ray_constants, worker

    raylet = worker._global_node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == raylet and b"IvfuseWorker" in cmd:
            pids.append(int(entry))
    return pids


@pytest.mark.slow
@pytest.mark.parametrize("as_url", [False, True], ids=["paths", "file-urls"])
def test_a_worker_killed_half_way_loses_nothing(tmp_path, cluster, as_url):
    if not Path("/proc").is_dir():
        pytest.skip("finds the worker processes in /proc")
    n = 12
    d = pairs_folder(tmp_path / "d", n, size=(96, 128))
    out = tmp_path / "out"
    killed: dict[str, object] = {}

    def kill_one_worker() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = list(out.glob("*.png")) if out.is_dir() else []
            pids = _workers_of(cluster)
            if done and len(pids) == 2:
                killed["outputs_before"] = len(done)
                killed["pid"] = pids[0]
                os.kill(pids[0], signal.SIGKILL)
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    # gtf: ~0.1-0.2 s per pair at this size, so the kill lands while both workers are busy
    if as_url:  # pyarrow's file system, the URL manifest (appended: file://)
        pytest.importorskip("pyarrow.fs")
    where = (url(d), url(out)) if as_url else (d, out)
    r = run(
        "fuse",
        "--pairs",
        where[0],
        "-o",
        where[1],
        "-m",
        "gtf",
        "--engine",
        "ray",
        "-j",
        "2",
        "--batch-size",
        "2",
    )
    killer.join()
    assert "pid" in killed and killed["outputs_before"] < n  # killed in the middle of the run
    assert r.exit_code == 0, r.output
    assert summary(r.output) == f"{n} fused, 0 skipped, 0 failed"
    assert sorted(d["stem"] for d in records(out)) == [f"p{i:02d}" for i in range(n)]  # each once
    expected = [MANIFEST_NAME] + [f"p{i:02d}.png" for i in range(n)]
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)  # no temporary file left
    for i in range(n):  # every output whole
        assert io.read_image(out / f"p{i:02d}.png").shape[:2] == (96, 128)


@pytest.mark.slow
def test_fuse_urls_on_ray_equal_local(tmp_path, cluster, monkeypatch):
    """file:// URLs on the Ray engine, and an object-store-like file system (fsspec's dir file
    system over this disk: no rename, chunked manifest) written by the workers themselves."""
    pafs = pytest.importorskip("pyarrow.fs")
    fsspec = pytest.importorskip("fsspec")
    from ivfuse.distributed import FuseSpec, RayEngine, fuse_folder
    from ivfuse.distributed import fs as dfs
    from ivfuse.distributed.manifest import MANIFEST_DIR, UrlManifest

    d = pairs_folder(tmp_path / "d", 7, bad=True)
    local, remote = tmp_path / "local", tmp_path / "remote"
    r_local = run("fuse", "--pairs", d, "-o", local, "-m", "lp")
    r_ray = run(
        "fuse", "--pairs", url(d), "-o", url(remote), "-m", "lp", "--engine", "ray", "--batch-size", "3"
    )
    assert r_local.exit_code == r_ray.exit_code == 1, r_ray.output
    assert summary(r_ray.output) == summary(r_local.output) == "6 fused, 1 skipped, 1 failed"
    assert f"{url(d)}/ir/p01.png: cannot decode image" in r_ray.output
    assert images(remote) == images(local) and len(images(local)) == 6
    assert sorted(x["stem"] for x in records(remote)) == [f"p{i:02d}" for i in range(7) if i != 1]
    r = run(
        "fuse", "--pairs", url(d), "-o", url(remote), "-m", "lp", "--engine", "ray", "--resume", "--overwrite"
    )
    assert summary(r.output) == "0 fused, 7 skipped, 1 failed"  # nothing redone, no worker started
    r_eval = {}
    for engine, where in (("local", local), ("ray", url(remote))):
        j = tmp_path / f"{engine}.json"
        r = run(
            "eval", "--pairs", url(d), "--fused", where, "-m", "EN,SD,QABF", "--json", j, "--engine", engine
        )
        assert r.exit_code == 0 and summary(r.output) == "6 evaluated, 0 failed or unmatched", r.output
        r_eval[engine] = j.read_bytes()
    assert r_eval["local"] == r_eval["ray"]  # the same numbers, to the last bit

    store = pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem("dir", path=str(tmp_path / "store"))))
    assert not dfs.renames(store)  # written as an object store is: one upload per file
    out = dfs.Location(store, "out", "store://out")
    pairs = dfs.discover(pairs_dir=url(d)).pairs
    # the manifest's clock stands still: the run's records go out as one chunk at its end, however
    # long a loaded machine takes (a chunk is also written every flush_seconds; tested apart)
    monkeypatch.setattr("ivfuse.distributed.manifest._now", lambda: 0.0)
    results = list(fuse_folder(FuseSpec("lp"), pairs, out, engine=RayEngine(batch_size=2)))
    assert sorted(r.stem for r in results if r.status == "fused") == [f"p{i:02d}" for i in range(7) if i != 1]
    assert images(tmp_path / "store" / "out") == images(local)
    assert len(list((tmp_path / "store" / "out" / MANIFEST_DIR).iterdir())) == 1
    assert set(UrlManifest(out).done(FuseSpec("lp").fingerprint(bit_depth=8, ext=".png"))) == {
        r.stem for r in results if r.status == "fused"
    }
