"""Python API: fuse()/load() on arrays and files, colour handling, batches."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import ivfuse
from ivfuse import io
from ivfuse.api import fuse_pairs
from ivfuse.data.pairs import find_pairs
from ivfuse.data.synthetic import night_scene, target_contrast, texture_detail
from ivfuse.errors import InputError, MethodError


def test_fuse_gray_arrays_returns_float_in_range(rng):
    ir = rng.integers(0, 256, (31, 47), dtype=np.uint8)
    vi = rng.integers(0, 256, (31, 47), dtype=np.uint8)
    f = ivfuse.fuse(ir, vi, method="average")
    assert f.shape == (31, 47) and f.dtype == np.float32
    np.testing.assert_allclose(f, (ir / 255.0 + vi / 255.0) / 2, atol=1e-6)


def test_colour_visible_gives_colour_output_with_visible_chroma(rng):
    vi = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    vi_unit = io.to_unit(vi)
    luma = np.floor(io.rgb_to_ycbcr(vi_unit)[..., 0] * 255 + 0.5).astype(np.uint8)
    f = ivfuse.fuse(luma, vi, method="average")  # IR == visible luma: colour must come back
    assert f.shape == (20, 30, 3)
    inside = (io.rgb_to_ycbcr(vi_unit)[..., 1:] - 0.5).__abs__().max(-1) < 0.3  # away from gamut clipping
    assert np.abs(f - vi_unit)[inside].max() < 1.5 / 255
    # the chroma of the output is the visible chroma
    np.testing.assert_allclose(
        io.rgb_to_ycbcr(f)[..., 1:][inside], io.rgb_to_ycbcr(vi_unit)[..., 1:][inside], atol=2e-3
    )


def test_gray_stored_as_rgb_visible_gives_gray_output(rng):
    g = rng.integers(0, 256, (8, 9), dtype=np.uint8)
    assert ivfuse.fuse(g, np.stack([g] * 3, -1), method="average").shape == (8, 9)


def test_sixteen_bit_thermal_is_stretched(rng):
    ir = (7000 + rng.integers(0, 800, (16, 16))).astype(np.uint16)
    vi = np.zeros((16, 16), np.uint8)
    f = ivfuse.fuse(ir, vi, method="max")
    assert f.max() == pytest.approx(1.0) and f.min() == 0.0
    f_plain = ivfuse.load("max", stretch16=False).fuse(ir, vi)
    assert f_plain.max() < 0.15


def test_size_mismatch_names_both_sizes(rng):
    with pytest.raises(InputError, match=r"is 5x4 .* is 6x4: sizes differ"):
        ivfuse.fuse(np.zeros((4, 5), np.uint8), np.zeros((4, 6), np.uint8), method="average")


def test_malformed_image_is_its_own_error_not_a_registration_hint():
    with pytest.raises(InputError, match=r"visible array: expected an HxW or HxWx3 image") as exc:
        ivfuse.fuse(np.zeros((4, 5), np.uint8), np.zeros((1, 4, 5), np.uint8), method="average")
    assert "register" not in str(exc.value)
    with pytest.raises(InputError, match=r"sizes differ; two cameras' images: register"):
        ivfuse.fuse(np.zeros((4, 5), np.uint8), np.zeros((4, 6), np.uint8), method="average")


def test_unknown_method_lists_available():
    with pytest.raises(MethodError, match="unknown method 'nope'; available: .*average"):
        ivfuse.load("nope")


def test_unknown_option_names_the_closest_and_all_options(rng):
    # a typo in a method option is one line naming the method's options, for classical methods
    # (a class) and deep ones (a factory function) alike, before any weights are read
    ir, vi = rng.random((2, 16, 16), dtype=np.float32)
    typo = r"no option 'levls' \(did you mean 'levels'\?\); its options: levels"
    with pytest.raises(MethodError, match=typo):
        ivfuse.fuse(ir, vi, method="lp", levls=3)
    with pytest.raises(MethodError, match=r"'rulez' \(did you mean 'rule'\?\).*activity_ratio"):
        ivfuse.load("jcae", rulez="sum")
    with pytest.raises(MethodError, match="its options: none"):
        ivfuse.load("average", x=1)
    assert ivfuse.fuse(ir, vi, method="lp", levels=2).shape == (16, 16)


def test_load_returns_reusable_fuser_and_files_work(tmp_path):
    s = night_scene(64, 80)
    io.write_image(tmp_path / "ir.png", s.ir)
    io.write_image(tmp_path / "vi.jpg", s.vi)
    fuser = ivfuse.load("average")
    a = fuser.fuse(tmp_path / "ir.png", tmp_path / "vi.jpg")
    b = fuser.fuse(str(tmp_path / "ir.png"), str(tmp_path / "vi.jpg"))
    np.testing.assert_array_equal(a, b)
    out = fuser.fuse_files(tmp_path / "ir.png", tmp_path / "vi.jpg", tmp_path / "f.png")
    assert io.read_image(out).shape == (64, 80, 3)


def test_methods_lists_classical_with_metadata():
    names = {m.name: m for m in ivfuse.list_methods()}
    for n in ("average", "max", "lp", "dwt", "dtcwt", "gff", "gtf"):
        assert names[n].family == "classical" and names[n].paper
    assert ivfuse.DEFAULT_METHOD in names


def test_method_modules_import_by_dotted_name():
    # ivfuse.methods is the subpackage, not shadowed by a function: `import a.b.c as m` works
    import ivfuse.methods.classical.pyramid as mod

    assert ivfuse.methods.classical.pyramid is mod
    assert ivfuse.methods.info("lp").name == "lp"


def test_default_method_fuses_the_synthetic_scene_better_than_either_source():
    s = night_scene(128, 160)
    f = ivfuse.fuse(io.from_unit(s.ir), io.from_unit(s.vi))
    assert target_contrast(f, s) > 0.5 * target_contrast(s.ir, s) > target_contrast(s.vi, s)
    assert texture_detail(f, s) > 0.5 * texture_detail(s.vi, s) > texture_detail(s.ir, s)


def test_fuse_pairs_reports_each_pair(tmp_path, rng):
    (tmp_path / "ir").mkdir()
    (tmp_path / "vi").mkdir()
    for stem in ("a", "b"):
        io.write_image(tmp_path / "ir" / f"{stem}.png", rng.random((8, 8)))
        io.write_image(tmp_path / "vi" / f"{stem}.png", rng.random((8, 8)))
    io.write_image(tmp_path / "ir" / "c.png", rng.random((8, 8)))
    io.write_image(tmp_path / "vi" / "c.png", rng.random((9, 8)))
    pairs = find_pairs(tmp_path / "ir", tmp_path / "vi").pairs
    res = list(fuse_pairs(ivfuse.load("average"), pairs, tmp_path / "out"))
    assert [(r.stem, r.status) for r in res] == [("a", "fused"), ("b", "fused"), ("c", "failed")]
    assert "sizes differ" in res[2].reason
    again = list(fuse_pairs(ivfuse.load("average"), pairs[:1], tmp_path / "out"))
    assert again[0].status == "skipped"


def test_importing_ivfuse_leaves_the_metrics_until_used():
    """A process that only fuses through the library (a Ray worker) does not import the metrics and
    SciPy's image filters; ``ivfuse.evaluate`` and ``ivfuse.metrics`` still work on first use."""
    code = (
        "import sys, ivfuse, ivfuse.api, ivfuse.methods, ivfuse.distributed.folders\n"
        "assert 'ivfuse.metrics' not in sys.modules and 'scipy.ndimage' not in sys.modules\n"
        "from ivfuse import evaluate\n"
        "assert ivfuse.evaluate is evaluate is ivfuse.metrics.evaluate\n"
        "import numpy as np\n"
        "a = (np.arange(64 * 64) % 256).astype(np.uint8).reshape(64, 64)\n"
        "print(ivfuse.evaluate(a, a, a, metrics=['EN'])['EN'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout) == pytest.approx(8.0)  # every gray level 16 times: EN = log2(256)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        ivfuse.nothing  # noqa: B018
