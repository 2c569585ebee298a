"""End-to-end tests of the CLI: fuse (one pair and folders), methods, demo, bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ivfuse import io
from ivfuse.cli import app
from ivfuse.data.synthetic import night_scene

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def pair(tmp_path):
    s = night_scene(48, 65)  # odd width on purpose
    ir = io.write_image(tmp_path / "ir.png", s.ir)
    vi = io.write_image(tmp_path / "vi.jpg", s.vi)
    return ir, vi


def test_fuse_one_pair_colour(tmp_path, pair):
    r = run("fuse", *pair, "-o", tmp_path / "f.png", "-m", "average")
    assert r.exit_code == 0, r.output
    out = io.read_image(tmp_path / "f.png")
    assert out.shape == (48, 65, 3) and out.dtype == np.uint8


def test_fuse_sixteen_bit_in_and_out(tmp_path):
    rng = np.random.default_rng(0)
    io.write_image(
        tmp_path / "ir.tif", (7000 + rng.integers(0, 900, (21, 33))).astype(np.uint16), bit_depth=16
    )
    io.write_image(tmp_path / "vi.png", rng.integers(0, 256, (21, 33), dtype=np.uint8))
    r = run(
        "fuse",
        tmp_path / "ir.tif",
        tmp_path / "vi.png",
        "-o",
        tmp_path / "f.png",
        "-m",
        "max",
        "--bit-depth",
        "16",
    )
    assert r.exit_code == 0, r.output
    out = io.read_image(tmp_path / "f.png")
    assert out.dtype == np.uint16 and out.shape == (21, 33) and out.max() > 60000


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "file not found"),
        ("corrupt", "cannot decode"),
        ("empty", "empty file"),
        ("size", "sizes differ"),
    ],
)
def test_fuse_bad_input_one_line_exit_2_no_output(tmp_path, pair, case, message):
    ir, vi = pair
    bad = tmp_path / f"bad_{case}.png"
    if case == "corrupt":
        bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    elif case == "empty":
        bad.write_bytes(b"")
    elif case == "size":
        io.write_image(bad, np.zeros((40, 65), np.float32))
    r = run("fuse", bad, vi, "-o", tmp_path / "f.png", "-m", "average")
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0] and bad.name in lines[0], r.output
    if case == "size":
        assert "65x40" in lines[0] and "65x48" in lines[0] and "ivfuse fuse --register" in lines[0]
    assert "Traceback" not in r.output
    assert not (tmp_path / "f.png").exists()


def test_fuse_unknown_method_option_one_line_exit_2(tmp_path, pair):
    r = run("fuse", *pair, "-o", tmp_path / "f.png", "-m", "gff", "-p", "radius=3")
    assert r.exit_code == 2 and "Traceback" not in r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "no option 'radius' (did you mean 'base_radius'?)" in lines[0], r.output
    assert not (tmp_path / "f.png").exists()


def test_colour_infrared_is_converted_with_a_warning(tmp_path, pair):
    _, vi = pair
    rgb = np.zeros((48, 65, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[..., 2] = 50
    Image.fromarray(rgb).save(tmp_path / "ir_colour.png")
    r = run("fuse", tmp_path / "ir_colour.png", vi, "-o", tmp_path / "f.png", "-m", "average")
    assert r.exit_code == 0
    assert "warning" in r.output and "colour" in r.output and "ir_colour.png" in r.output
    assert (tmp_path / "f.png").exists()


def _folders(tmp_path, n=3):
    rng = np.random.default_rng(1)
    for i in range(n):
        io.write_image(tmp_path / "ir" / f"p{i}.png", rng.random((16, 19)))
        io.write_image(tmp_path / "vi" / f"p{i}.jpg", rng.random((16, 19, 3)))
    return tmp_path / "ir", tmp_path / "vi"


def test_fuse_folders_with_one_bad_pair(tmp_path):
    ir_dir, vi_dir = _folders(tmp_path)
    (ir_dir / "p1.png").write_bytes(b"broken")  # one corrupt file
    io.write_image(ir_dir / "lonely.png", np.zeros((4, 4)))  # no partner
    r = run("fuse", "--ir", ir_dir, "--vi", vi_dir, "-o", tmp_path / "out", "-m", "average")
    assert r.exit_code == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p0.png", "p2.png"]
    assert "2 fused, 1 skipped, 1 failed" in r.output
    assert "p1" in r.output and "cannot decode" in r.output and "lonely.png" in r.output


def test_fuse_pairs_folder_skips_existing_unless_overwrite(tmp_path):
    _folders(tmp_path, 2)
    out = tmp_path / "out"
    assert run("fuse", "--pairs", tmp_path, "-o", out, "-m", "average").exit_code == 0
    stamp = (out / "p0.png").stat().st_mtime_ns
    r = run("fuse", "--pairs", tmp_path, "-o", out, "-m", "average")
    assert r.exit_code == 0 and "0 fused, 2 skipped, 0 failed" in r.output
    assert (out / "p0.png").stat().st_mtime_ns == stamp
    r = run("fuse", "--pairs", tmp_path, "-o", out, "-m", "max", "--overwrite")
    assert r.exit_code == 0 and "2 fused, 0 skipped, 0 failed" in r.output


def test_fuse_argument_errors(tmp_path, pair):
    r = run("fuse", "-o", tmp_path / "x.png")
    assert r.exit_code == 2 and "give either" in r.output
    r = run("fuse", *pair, "-o", tmp_path / "x.png", "-m", "nope")
    assert r.exit_code == 2 and "unknown method 'nope'" in r.output
    r = run("fuse", "--pairs", tmp_path / "nothing", "-o", tmp_path / "o")
    assert r.exit_code == 2 and "folder not found" in r.output


def test_methods_table_and_json():
    r = run("methods", "--json")
    assert r.exit_code == 0
    rows = {m["name"]: m for m in json.loads(r.output)}
    assert {"average", "max", "lp", "dwt", "dtcwt", "gff", "gtf"} <= rows.keys()
    assert all({"family", "paper", "weights_shipped", "weights_status"} <= m.keys() for m in rows.values())
    assert rows["lp"]["weights_status"] == "not needed"
    r = run("methods")
    assert r.exit_code == 0 and "gff" in r.output


def test_methods_report_the_state_of_shipped_weights(tmp_path, monkeypatch):
    from ivfuse.methods import registry

    info = registry.info("didfuse")
    (tmp_path / "didfuse.safetensors").write_bytes(b"x")
    monkeypatch.setattr(registry, "weights_path", lambda name: tmp_path / name)
    card = {"epochs": 49, "epochs_planned": 120, "reduced_scale": True}
    (tmp_path / "didfuse.json").write_text(json.dumps(card))
    assert info.weights_status == "shipped, reduced scale (49/120 epochs)"
    rows = {m["name"]: m for m in json.loads(run("methods", "--json").output)}
    assert rows["didfuse"]["weights_status"] == "shipped, reduced scale (49/120 epochs)"
    assert run("methods").exit_code == 0
    card.update(epochs=120, reduced_scale=False)
    (tmp_path / "didfuse.json").write_text(json.dumps(card))
    assert info.weights_status == "shipped"
    (tmp_path / "didfuse.safetensors").unlink()
    assert info.weights_status == "missing: train it"


def test_demo_writes_images_and_prints_metrics(tmp_path):
    r = run("demo", "-o", tmp_path / "demo", "--height", "96", "--width", "128", "-m", "lp")
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in (tmp_path / "demo").iterdir())
    assert names == ["figure.png", "fused.png", "ir.png", "vi.png"]
    fig = io.read_image(tmp_path / "demo" / "figure.png")
    assert fig.shape[1] > 3 * 128 and fig.ndim == 3
    assert "target contrast" in r.output and "texture detail" in r.output


def test_console_script_and_python_m():
    r = subprocess.run(
        [sys.executable, "-m", "ivfuse", "--help"], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0 and "fuse" in r.stdout


def test_help_paragraphs_reflow_to_the_terminal():
    # every paragraph of a command's help is one line of text for the terminal to wrap: a
    # sentence the source wraps mid-paragraph comes out on one line of a wide terminal
    from ivfuse.cli import reflow

    assert reflow("A b\n  c.\n\nD\n e\n\n\bkeep\nthese") == "A b c.\n\nD e\n\n\bkeep\nthese"
    r = runner.invoke(app, ["fuse", "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    assert r.exit_code == 0
    assert "--ir and --vi naming one folder, and an output folder inside an input folder" in r.output


def test_methods_name_shows_options_tasks_and_training():
    from ivfuse.methods import registry

    r = runner.invoke(app, ["methods", "lp"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "lp (classical)" in r.output and "levels=4" in r.output and "ivif, mef, mff" in r.output
    r = runner.invoke(app, ["methods", "jcae", "--json"])
    d = json.loads(r.output)
    assert d["options"]["rule"] == "paper" and d["options"]["activity_ratio"] == 0.6
    assert [a["name"] for a in d["ablations"]][:1] == ["mse-only"]
    if registry.info("jcae").weights_shipped:  # the card's training, as the card says it
        card = registry.info("jcae").weights_card
        assert d["weights_training"]["epochs"] == card["epochs"]
        assert d["weights_training"]["pairs"] == card["data"]["pairs"]
        r = runner.invoke(app, ["methods", "jcae"], env={"COLUMNS": "200"})
        assert f"{card['data']['name']}, {card['data']['pairs']} samples" in r.output
        assert "--ablation NAME" in r.output and "ivfuse bench --paper jcae" in r.output
    r = runner.invoke(app, ["methods", "jace"])
    assert r.exit_code == 2 and "unknown method 'jace'" in r.output


def test_version_names_ivfuse_python_and_torch():
    import platform

    import ivfuse

    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0, r.output
    first, second = r.output.strip().split("\n", 1)
    assert first == f"ivfuse {ivfuse.__version__}"
    assert f"python {platform.python_version()}" in second and "torch " in second and "numpy " in second


def test_fuse_didfuse_colour_odd_size_rules_and_weights(tmp_path, pair):
    from ivfuse.methods import registry

    if not registry.info("didfuse").weights_shipped:
        pytest.skip("no shipped DIDFuse weights")
    r = run("fuse", *pair, "-o", tmp_path / "sum.png", "-m", "didfuse")
    assert r.exit_code == 0, r.output
    out = io.read_image(tmp_path / "sum.png")
    assert out.shape == (48, 65, 3) and out.dtype == np.uint8
    # the luma went through the network, the visible chroma was kept (up to 8-bit rounding)
    vi = io.read_image(pair[1])
    cb_cr = lambda a: io.rgb_to_ycbcr(a.astype(np.float32) / 255)[..., 1:]  # noqa: E731
    assert np.abs(cb_cr(out) - cb_cr(vi)).mean() * 255 < 1.0
    assert run("fuse", *pair, "-o", tmp_path / "l1.png", "-m", "didfuse", "--rule", "l1").exit_code == 0
    assert not np.array_equal(io.read_image(tmp_path / "l1.png"), out)
    # explicit weights file: the shipped one gives the shipped result
    shipped = registry.weights_path("didfuse.safetensors")
    r = run("fuse", *pair, "-o", tmp_path / "w.png", "-m", "didfuse", "-p", f"weights={shipped}")
    assert r.exit_code == 0, r.output
    assert np.array_equal(io.read_image(tmp_path / "w.png"), out)
    r = run("fuse", *pair, "-o", tmp_path / "bad.png", "-m", "didfuse", "--rule", "median")
    assert r.exit_code == 2 and "rule" in r.output and not (tmp_path / "bad.png").exists()


# --------------------------------------------------------------------------------------------
# no data loss: an input is never written over


def _snapshot(*folders):
    return {p: p.read_bytes() for d in folders for p in sorted(d.rglob("*")) if p.is_file()}


def _one_line_exit_2(r, *needles):
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.output
    for n in needles:
        assert n in r.output, r.output


def test_fuse_refuses_an_output_that_is_an_input(tmp_path, pair, monkeypatch):
    ir, vi = pair
    before = _snapshot(tmp_path)
    for out in (ir, vi):
        _one_line_exit_2(run("fuse", ir, vi, "-o", out, "-m", "average"), f"output {out} is the input")
        _one_line_exit_2(run("fuse", ir, vi, "-o", out, "-m", "average", "--overwrite"), "is the input")
    monkeypatch.chdir(tmp_path)  # the same file through a relative path ...
    _one_line_exit_2(run("fuse", ir, vi, "-o", "ir.png", "--overwrite"), "is the input")
    _one_line_exit_2(run("fuse", ir, vi, "-o", "./sub/../vi.jpg", "--overwrite"), "is the input")
    (tmp_path / "link.png").symlink_to(ir)  # ... and through a symlink
    _one_line_exit_2(run("fuse", ir, vi, "-o", "link.png", "--overwrite"), "is the input")
    (tmp_path / "link.png").unlink()
    assert _snapshot(tmp_path) == before  # every input byte unchanged, nothing new


def test_fuse_one_pair_refuses_an_existing_output_without_overwrite(tmp_path, pair):
    out = tmp_path / "f.png"
    out.write_bytes(b"precious")
    _one_line_exit_2(run("fuse", *pair, "-o", out, "-m", "average"), f"{out} exists", "--overwrite")
    assert out.read_bytes() == b"precious"
    r = run("fuse", *pair, "-o", out, "-m", "average", "--overwrite")
    assert r.exit_code == 0, r.output
    assert io.read_image(out).shape == (48, 65, 3)


def test_fuse_refuses_ir_and_vi_naming_one_folder(tmp_path, monkeypatch):
    ir_dir, _ = _folders(tmp_path, 2)
    before = _snapshot(tmp_path)
    _one_line_exit_2(run("fuse", "--ir", ir_dir, "--vi", ir_dir, "-o", tmp_path / "o"), "same folder")
    (tmp_path / "alias").symlink_to(ir_dir)
    _one_line_exit_2(
        run("fuse", "--ir", ir_dir, "--vi", tmp_path / "alias", "-o", tmp_path / "o"), "same folder"
    )
    monkeypatch.chdir(ir_dir)
    _one_line_exit_2(
        run("fuse", "--ir", ".", "--vi", ".", "-o", "."), "--ir . and --vi . are the same folder"
    )
    (tmp_path / "alias").unlink()
    assert _snapshot(tmp_path) == before and not (tmp_path / "o").exists()


def test_fuse_refuses_an_output_folder_inside_an_input_folder(tmp_path, monkeypatch):
    ir_dir, vi_dir = _folders(tmp_path, 2)
    before = _snapshot(tmp_path)
    for out in (ir_dir, vi_dir, vi_dir / "fused"):
        for extra in ((), ("--overwrite",)):
            r = run("fuse", "--ir", ir_dir, "--vi", vi_dir, "-o", out, "-m", "average", *extra)
            _one_line_exit_2(r, f"output folder {out} is inside the input folder")
    r = run("fuse", "--pairs", tmp_path, "-o", ir_dir, "-m", "average", "--overwrite")
    _one_line_exit_2(r, "is inside the input folder")
    monkeypatch.chdir(vi_dir)
    _one_line_exit_2(
        run("fuse", "--ir", ir_dir, "--vi", vi_dir, "-o", ".", "--overwrite"), "inside the input"
    )
    assert _snapshot(tmp_path) == before
    r = run("fuse", "--pairs", tmp_path, "-o", tmp_path / "fused", "-m", "average")  # beside: fine
    assert r.exit_code == 0 and "2 fused" in r.output, r.output


def test_fuse_summary_names_the_backend_of_deep_methods_only(tmp_path, pair):
    r = run("fuse", *pair, "-o", tmp_path / "f.png", "-m", "lp")
    assert r.exit_code == 0, r.output
    assert f"with lp -> {tmp_path / 'f.png'}" in r.output.replace("\n", "") and "(torch)" not in r.output
