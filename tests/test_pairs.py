"""Pair discovery by file stem."""

from __future__ import annotations

import pytest

from ivfuse.data.pairs import find_pairs, scan_pairs_root
from ivfuse.errors import InputError

from .conftest import shared_dataset


def _touch(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(b"x")


def test_pairs_match_by_stem_regardless_of_extension(tmp_path):
    _touch(tmp_path / "ir", "a.png", "b.jpg", "c.tif", "only_ir.png", "notes.txt", ".hidden.png")
    _touch(tmp_path / "vi", "a.JPG", "b.bmp", "c.tiff", "only_vi.jpeg")
    scan = find_pairs(tmp_path / "ir", tmp_path / "vi")
    assert [(p.stem, p.ir.name, p.vi.name) for p in scan.pairs] == [
        ("a", "a.png", "a.JPG"),
        ("b", "b.jpg", "b.bmp"),
        ("c", "c.tif", "c.tiff"),
    ]
    assert sorted(p.name for p in scan.unmatched) == ["only_ir.png", "only_vi.jpeg"]
    assert len(scan.problems()) == 2


def test_ambiguous_stems_are_reported_not_guessed(tmp_path):
    _touch(tmp_path / "ir", "a.png", "a.jpg")
    _touch(tmp_path / "vi", "a.png")
    scan = find_pairs(tmp_path / "ir", tmp_path / "vi")
    assert scan.pairs == []
    assert sorted(p.name for p in scan.ambiguous) == ["a.jpg", "a.png"]
    assert any("share the stem" in line for line in scan.problems())


def test_pairs_root_needs_ir_and_vi(tmp_path):
    _touch(tmp_path / "IR", "x.png")
    with pytest.raises(InputError, match="missing vi/"):
        scan_pairs_root(tmp_path)
    _touch(tmp_path / "VI", "x.png")
    assert [p.stem for p in scan_pairs_root(tmp_path).pairs] == ["x"]
    with pytest.raises(InputError, match="folder not found"):
        scan_pairs_root(tmp_path / "nope")


def test_real_sets_pair_completely():
    for name, n in (("tno", 40), ("flir_train", 180)):
        scan = scan_pairs_root(shared_dataset(name))
        assert len(scan.pairs) == n and not scan.unmatched and not scan.ambiguous
