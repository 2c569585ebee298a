"""Pair discovery by file stem."""

from __future__ import annotations

import pytest

from ivfuse.data.pairs import detect_task, discover, find_pairs, scan_pairs_root, source_folders, split_pairs
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


def test_a_folder_is_never_paired_with_itself(tmp_path, monkeypatch):
    _touch(tmp_path / "ir", "a.png")
    (tmp_path / "link").symlink_to(tmp_path / "ir")
    with pytest.raises(InputError, match="are the same folder"):
        find_pairs(tmp_path / "ir", tmp_path / "link")
    monkeypatch.chdir(tmp_path / "ir")
    with pytest.raises(InputError, match=r"--ir \. and --vi \. are the same folder"):
        discover(".", ".")


def test_layouts_discover_and_split_lists(tmp_path):
    _touch(tmp_path / "m" / "Under", "1.png", "2.png")
    _touch(tmp_path / "m" / "over", "1.jpg", "2.jpg")
    assert detect_task(tmp_path / "m") == "mef"
    assert [f.name for f in source_folders(tmp_path / "m")] == ["Under", "over"]
    assert [p.stem for p in discover(pairs_dir=tmp_path / "m", task="mef").pairs] == ["1", "2"]
    with pytest.raises(InputError, match="expected sub-folders ir/ and vi/"):
        discover(pairs_dir=tmp_path / "m")
    with pytest.raises(InputError, match="not both"):
        discover(tmp_path, tmp_path, tmp_path / "m")
    with pytest.raises(InputError, match="unknown task"):
        discover(pairs_dir=tmp_path / "m", task="xyz")
    (tmp_path / "s.txt").write_text("# comment\nm/2\n\nm/1\n")
    got = split_pairs(tmp_path, tmp_path / "s.txt", ("under", "over"))
    assert [(p.stem, p.ir.name, p.vi.name) for p in got] == [("2", "2.png", "2.jpg"), ("1", "1.png", "1.jpg")]
    (tmp_path / "s.txt").write_text("m/3\n")
    with pytest.raises(InputError, match="no single under image"):
        split_pairs(tmp_path, tmp_path / "s.txt", ("under", "over"))
