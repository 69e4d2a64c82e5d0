"""T2I-CompBench prompt files and the official image layout."""
from __future__ import annotations

import pytest
from PIL import Image

from eval.t2i_compbench.layout import (check_against_prompts, discover_category, image_name, parse_image_name,
                                       write_image)
from eval.t2i_compbench.prompts import CATEGORIES, load_complex_split, load_prompts, read_prompt_file
from tests.helpers import require_shared


def test_prompt_files_strip_crlf_and_reject_underscores(tmp_path):
    (tmp_path / "p.txt").write_bytes(b"a green bench and a blue bowl\r\na red cake\r\n\r\nlast line")
    assert read_prompt_file(tmp_path / "p.txt") == ["a green bench and a blue bowl", "a red cake", "last line"]
    (tmp_path / "bad.txt").write_text("ok\na snake_case prompt\n")
    with pytest.raises(ValueError, match="bad.txt:2"):
        read_prompt_file(tmp_path / "bad.txt")
    with pytest.raises(KeyError, match="unknown T2I-CompBench category 'colour'"):
        load_prompts(tmp_path, "colour")


def test_real_validation_files_load_clean():
    prompt_dir = require_shared("t2i_compbench")
    for name in CATEGORIES:
        prompts = load_prompts(prompt_dir, name)
        assert prompts and all("\r" not in p and p == p.rstrip("\n") for p in prompts)


def test_names_round_trip_and_discovery(tmp_path):
    assert image_name("a red cake.", 12) == "a red cake._000012.png"
    assert parse_image_name("a red cake._000012.png") == ("a red cake.", 12)
    with pytest.raises(ValueError, match="'_'"):
        image_name("a_b", 0)
    prompts = ["a red cake", "a blue cup"]
    for index in (3, 0, 2, 1):
        write_image(tmp_path, "color", prompts[index // 2], index, Image.new("RGB", (4, 4)))
    images = discover_category(tmp_path, "color")
    assert [im.index for im in images] == [0, 1, 2, 3]
    assert images[2].key == "color/samples/a blue cup_000002.png"
    check_against_prompts(images, prompts, images_per_prompt=2)
    with pytest.raises(ValueError, match="file name prompt 'a blue cup' but prompt 0"):
        check_against_prompts(images, prompts, images_per_prompt=4)
    (tmp_path / "color" / "samples" / "notes.txt").write_text("stray")
    with pytest.raises(ValueError, match="notes.txt"):
        discover_category(tmp_path, "color")
    with pytest.raises(FileNotFoundError, match="shape/samples"):
        discover_category(tmp_path, "shape")


def test_complex_split_kinds(tmp_path):
    (tmp_path / "complex_val_spatial.txt").write_text("The red hat was on top of the rack.\n")
    (tmp_path / "complex_val_action.txt").write_text("The dog chased the ball. It ran\r\n")
    split = load_complex_split(tmp_path)
    assert split.kind("The Red hat was on top of the rack.") == "spatial"  # lower-cased, cut at the first "."
    assert split.kind("The dog chased the ball. Then it slept.") == "action"
    assert split.kind("The cat sat near the dog and chased it.") == "spatial_action"
    with pytest.raises(FileNotFoundError, match="complex_val_spatial.txt"):
        load_complex_split(tmp_path / "missing")
