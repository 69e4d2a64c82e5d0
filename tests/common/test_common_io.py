"""common.io: atomic writes leave the old file or the whole new one; hashes; finiteness checks."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from common.io import (NonFiniteError, append_jsonl, atomic_write, atomic_write_dir, atomic_write_text,
                       check_finite_tensors, image_sha256, path_sha256)


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a" / "x.txt"
    atomic_write_text(target, "old")

    def broken(tmp: str) -> None:
        open(tmp, "w").write("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.txt"]


def test_directory_write_swaps_whole_directories(tmp_path):
    target = tmp_path / "model"
    atomic_write_dir(target, lambda d: (d / "w.bin").write_bytes(b"1"))
    atomic_write_dir(target, lambda d: (d / "v.bin").write_bytes(b"2"))
    assert sorted(p.name for p in target.iterdir()) == ["v.bin"]
    with pytest.raises(ValueError):
        atomic_write_dir(target, lambda d: (_ for _ in ()).throw(ValueError("boom")))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_append_jsonl_appends_whole_lines(tmp_path):
    path = tmp_path / "r.jsonl"
    append_jsonl(path, [{"a": 1}])
    append_jsonl(path, [{"a": 2}, {"a": 3}])
    assert path.read_text() == '{"a": 1}\n{"a": 2}\n{"a": 3}\n'


def test_directory_hash_follows_content_not_location(tmp_path):
    for name in ("one", "two"):
        (tmp_path / name / "sub").mkdir(parents=True)
        (tmp_path / name / "sub" / "w.bin").write_bytes(b"weights")
        (tmp_path / name / ".hidden").write_text(name)  # hidden files do not count
    assert path_sha256(tmp_path / "one") == path_sha256(tmp_path / "two")
    (tmp_path / "two" / "sub" / "w.bin").write_bytes(b"weightz")
    assert path_sha256(tmp_path / "one") != path_sha256(tmp_path / "two")
    with pytest.raises(FileNotFoundError, match="nope"):
        path_sha256(tmp_path / "nope")


def test_image_hash_sees_pixels():
    a = Image.new("RGB", (4, 4), (1, 2, 3))
    b = a.copy()
    assert image_sha256(a) == image_sha256(b)
    b.putpixel((0, 0), (1, 2, 4))
    assert image_sha256(a) != image_sha256(b)


def test_non_finite_weights_are_named():
    check_finite_tensors({"w": torch.ones(2), "ids": torch.arange(3)}, "ok.safetensors")
    with pytest.raises(NonFiniteError, match=r"bad\.safetensors.*layer\.weight"):
        check_finite_tensors({"layer.weight": torch.tensor([1.0, float("nan")])}, "bad.safetensors")
