"""GenEval prompt metadata loading and validation."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from eval.geneval.prompts import COCO_CLASSES, MetadataError, default_metadata_path, load_class_names, load_prompts, parse_metadata
from tests.helpers import require_shared



def test_official_metadata_loads_with_reference_counts():
    path = require_shared("geneval", "evaluation_metadata.jsonl")
    specs = load_prompts(path)  # default vocabulary: the 80 COCO names
    assert len(specs) == 553
    assert Counter(s.tag for s in specs) == {
        "single_object": 80, "two_object": 99, "counting": 80, "colors": 94, "position": 100, "color_attr": 100,
    }
    lines = path.read_text().splitlines()
    assert all(s.metadata_line() == line for s, line in zip(specs, lines))  # byte-identical re-write
    assert [s.index for s in specs] == list(range(553))
    pos = specs[353]
    assert pos.tag == "position" and pos.include[1].position[1] == 0


def test_coco_names_are_geneval_object_names():
    assert list(COCO_CLASSES) == load_class_names(require_shared("geneval", "object_names.txt"))


def test_judge_case_metadata_validates():
    names = load_class_names(require_shared("geneval", "object_names.txt"))
    with open(require_shared("geneval", "judge_cases.jsonl")) as f:
        for line in f:
            parse_metadata(json.loads(line)["metadata"], names)


def test_missing_file_says_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("IMAGECOT_CACHE", str(tmp_path))
    assert default_metadata_path() == tmp_path / "geneval" / "evaluation_metadata.jsonl"
    with pytest.raises(FileNotFoundError, match="djghosh13/geneval"):
        load_prompts()


@pytest.mark.parametrize(
    "line, message",
    [
        ({"tag": "shapes", "include": [{"class": "cat", "count": 1}], "prompt": "p"}, "field 'tag' = 'shapes'"),
        ({"tag": "single_object", "include": [{"class": "unicorn", "count": 1}], "prompt": "p"}, "'unicorn'"),
        ({"tag": "colors", "include": [{"class": "cat", "count": 1, "color": "teal"}], "prompt": "p"}, "'teal'"),
        ({"tag": "counting", "include": [{"class": "cat", "count": 0}], "prompt": "p"}, "field 'count' = 0"),
        (
            {"tag": "position", "include": [{"class": "cat", "count": 1, "position": ["above", 0]}], "prompt": "p"},
            "field 'position'",
        ),
        (
            {"tag": "position", "include": [{"class": "cat", "count": 1},
                                            {"class": "dog", "count": 1, "position": ["beside", 0]}], "prompt": "p"},
            "'beside'",
        ),
        ({"tag": "counting", "include": [{"class": "cat", "count": 2}], "exclude": [{"class": "cat"}],
          "prompt": "p"}, "exclude\\[0\\]: field 'count' = None"),
        ({"tag": "single_object", "include": [], "prompt": "p"}, "field 'include'"),
    ],
)
def test_bad_lines_name_file_line_field_value(tmp_path, line, message):
    good = {"tag": "single_object", "include": [{"class": "cat", "count": 1}], "prompt": "a photo of a cat"}
    path = tmp_path / "meta.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(MetadataError, match=f"meta.jsonl:2: .*{message}"):
        load_prompts(path, class_names=["cat", "dog"])


def test_invalid_json_names_line(tmp_path):
    path = tmp_path / "meta.jsonl"
    path.write_text('{"tag": \n')
    with pytest.raises(MetadataError, match="meta.jsonl:1: invalid JSON"):
        load_prompts(path, class_names=["cat"])


def test_other_vocabulary(tmp_path):
    path = tmp_path / "meta.jsonl"
    path.write_text(json.dumps({"tag": "single_object", "include": [{"class": "circle", "count": 1}], "prompt": "x"}))
    assert load_prompts(path, class_names=["circle", "square"])[0].include[0].cls == "circle"
