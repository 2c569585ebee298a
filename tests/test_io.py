"""io: decoding, the working range, YCbCr, atomic writes, error messages."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ivfuse import io
from ivfuse.errors import InputError


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif"])
@pytest.mark.parametrize("shape", [(17, 23), (17, 23, 3)])
def test_8bit_round_trip_is_exact(tmp_path, rng, ext, shape):
    a = rng.integers(0, 256, shape).astype(np.uint8)
    p = io.write_image(tmp_path / f"a{ext}", a)
    b = io.read_image(p)
    assert b.dtype == np.uint8 and b.shape == shape
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("ext", [".png", ".tif"])
@pytest.mark.parametrize("shape", [(9, 11), (9, 11, 3)])
def test_16bit_round_trip_is_exact(tmp_path, rng, ext, shape):
    a = rng.integers(0, 65536, shape).astype(np.uint16)
    b = io.read_image(io.write_image(tmp_path / f"a{ext}", a, bit_depth=16))
    assert b.dtype == np.uint16
    np.testing.assert_array_equal(a, b)


def test_jpeg_round_trip_is_close(tmp_path):
    yy, xx = np.mgrid[0:32, 0:48]
    a = ((xx * 5 + yy * 2) % 256).astype(np.uint8)
    b = io.read_image(io.write_image(tmp_path / "a.jpg", a))
    assert b.shape == a.shape and np.abs(b.astype(int) - a).mean() < 2


def test_float_write_rounds_to_nearest_level(tmp_path):
    x = np.array([[0.0, 0.5 / 255, 1.49 / 255, 1.0, 1.2, -0.3]], np.float32)
    b = io.read_image(io.write_image(tmp_path / "f.png", x))
    np.testing.assert_array_equal(b[0], [0, 1, 1, 255, 255, 0])


def test_modes_palette_alpha_and_one_bit(tmp_path):
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 17
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert io.read_image(tmp_path / "rgba.png").shape == (4, 5, 3)
    Image.fromarray(np.full((4, 5), 9, np.uint8)).convert("P").save(tmp_path / "p.png")
    assert io.read_image(tmp_path / "p.png").shape[:2] == (4, 5)
    Image.fromarray(np.eye(4, dtype=bool)).save(tmp_path / "b.png")
    np.testing.assert_array_equal(io.read_image(tmp_path / "b.png"), np.eye(4) * 255)


def test_to_unit_8bit_and_16bit_stretch(rng):
    assert io.to_unit(np.array([[0, 255]], np.uint8)).tolist() == [[0.0, 1.0]]
    # raw thermal counts in a narrow band: the stretch spreads them over [0, 1]
    raw = (7200 + rng.integers(0, 1200, (64, 64))).astype(np.uint16)
    raw[0, 0] = 65000  # a single hot outlier must not dominate
    s = io.to_unit(raw)
    assert s.dtype == np.float32 and s.min() == 0.0 and s.max() == 1.0
    assert 0.4 < np.median(s) < 0.6
    plain = io.to_unit(raw, stretch16=False)
    np.testing.assert_allclose(plain, raw / 65535.0, rtol=1e-6)
    assert plain.max() - np.median(plain) > 0.8  # the outlier squeezes the rest without stretch
    const = np.full((4, 4), 1000, np.uint16)
    np.testing.assert_allclose(io.to_unit(const), 1000 / 65535)


def test_to_unit_rejects_nan():
    with pytest.raises(InputError, match="NaN"):
        io.to_unit(np.array([[np.nan]], np.float32))


def test_ycbcr_round_trip_and_known_values(rng):
    rgb = rng.random((8, 9, 3)).astype(np.float32)
    np.testing.assert_allclose(io.ycbcr_to_rgb(io.rgb_to_ycbcr(rgb)), rgb, atol=2e-6)
    ycc = io.rgb_to_ycbcr(np.array([[[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.5, 0.5, 0.5]]], np.float32))
    np.testing.assert_allclose(ycc[0, 0], [1.0, 0.5, 0.5], atol=1e-6)  # white: no chroma
    np.testing.assert_allclose(ycc[0, 1], [0.299, 0.5 - 0.168736, 1.0], atol=1e-5)  # pure red
    np.testing.assert_allclose(ycc[0, 2], [0.5, 0.5, 0.5], atol=1e-6)


def test_to_gray_silent_for_equal_channels_warns_for_colour():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(io.to_gray(np.stack([gray] * 3, -1)), gray)
    colour = np.zeros((3, 4, 3), np.uint8)
    colour[..., 0] = 100
    with pytest.warns(io.ColourInfraredWarning, match="colour"):
        g = io.to_gray(colour)
    np.testing.assert_array_equal(g, np.full((3, 4), 30))  # round(0.299 * 100)


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match=r"missing\.png: file not found"):
        io.read_image(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.png: empty file"):
        io.read_image(tmp_path / "empty.png")
    (tmp_path / "junk.jpg").write_bytes(b"this is not an image at all")
    with pytest.raises(InputError, match=r"junk\.jpg: cannot decode"):
        io.read_image(tmp_path / "junk.jpg")
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InputError, match=r"truncated\.png: cannot decode"):
        io.read_image(truncated)
    with pytest.raises(InputError, match="folder"):
        io.read_image(tmp_path)


def test_write_is_atomic_and_leaves_nothing_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    io.write_image(target, np.zeros((4, 4), np.float32))
    before = target.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(io, "_encode", boom)
    with pytest.raises(OSError, match="disk full"):
        io.write_image(target, np.ones((4, 4), np.float32))
    assert target.read_bytes() == before  # the old file is intact
    assert sorted(os.listdir(tmp_path)) == ["out.png"]  # no temporary file left


def test_write_rejects_bad_format_and_16bit_jpeg(tmp_path):
    with pytest.raises(InputError, match="unsupported output format"):
        io.write_image(tmp_path / "x.gif", np.zeros((2, 2)))
    with pytest.raises(InputError, match="16-bit"):
        io.write_image(tmp_path / "x.jpg", np.zeros((2, 2)), bit_depth=16)
    assert not list(Path(tmp_path).iterdir())


def test_atomic_write_text_bytes_mode_and_cleanup(tmp_path):
    target = tmp_path / "sub" / "a.json"  # the folder is created
    io.atomic_write_text(target, "one\n")
    assert target.read_text() == "one\n"
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600
    io.atomic_write_bytes(target, lambda f: f.write(b"two"), durable=True)
    assert target.read_bytes() == b"two"
    with pytest.raises(RuntimeError, match="half"), io.atomic_write(target) as tmp:
        tmp.write_text("half written")
        raise RuntimeError("half")
    assert target.read_bytes() == b"two"  # untouched
    assert sorted(os.listdir(target.parent)) == ["a.json"]  # no temporary file left


def test_same_file_sees_links_and_relative_paths(tmp_path, monkeypatch):
    a = tmp_path / "a.png"
    a.write_bytes(b"x")
    (tmp_path / "link.png").symlink_to(a)
    monkeypatch.chdir(tmp_path)
    assert io.same_file("a.png", a)
    assert io.same_file(tmp_path / "link.png", a)
    assert io.same_file(tmp_path / "d" / ".." / "a.png", a)  # not existing yet: resolved paths
    assert not io.same_file(tmp_path / "b.png", a)


def test_nan_image_error_names_the_file(tmp_path):
    import tifffile

    arr = np.full((4, 4), 0.5, np.float32)
    arr[1, 1] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", arr)
    with pytest.raises(InputError, match=r"nan\.tif: image contains NaN"):
        io.read_image(tmp_path / "nan.tif")
    with pytest.raises(InputError, match="visible array: contains NaN"):
        io.to_unit(arr, name="visible array")
