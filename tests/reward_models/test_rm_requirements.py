"""Prompt requirements in T2I-R1's training-data format: records, the offline parser, the resolver (t2i_r1.md §9)."""
import json

import pytest

from reward_models.requirements import (
    CountInfo,
    PromptParser,
    Requirements,
    RequirementsResolver,
    SpatialInfo,
    load_requirements,
    singular_candidates,
)
from tests.helpers import require_shared

# Records in the official format (typed from t2i_r1.md §9 and the released data file's field layout).
RECORDS = [
    {"prompt": "a photo of a car below a zebra", "nouns": ["car", "zebra"],
     "spatial_info": {"obj1": "car", "obj2": "zebra", "locality": "below"}, "task_type": "spatial"},
    {"prompt": "a photo of two brooms", "nouns": ["broom"], "numeracy_info": [{"obj_name": "broom", "num": 2}],
     "task_type": "numeracy"},
    {"prompt": "a photo of a purple elephant and a blue teddy bear", "nouns": ["elephant", "teddy bear"],
     "attr_nouns": ["purple elephant", "blue teddy bear"], "task_type": "color"},
    {"task_type": "texture", "prompt": "rubber gloves and a fluffy teddy bear", "nouns": ["glove", "teddy bear"],
     "attr_nouns": ["rubber glove", "fluffy teddy bear"]},
    {"prompt": "a photo of a bottle and a teddy bear", "nouns": ["bottle", "teddy bear"], "task_type": "object"},
]


def test_records_round_trip():
    for record in RECORDS:
        parsed = Requirements.from_record(record)
        assert parsed.to_record() == {k: v for k, v in record.items() if k != "prompt"}
    assert Requirements.from_record(RECORDS[0]).spatial == SpatialInfo("car", "zebra", "below")
    assert Requirements.from_record(RECORDS[1]).numeracy == (CountInfo("broom", 2),)
    with pytest.raises(ValueError, match="needs spatial_info"):
        Requirements("spatial", ("a", "b"))
    with pytest.raises(KeyError, match="nouns"):
        Requirements.from_record({"task_type": "object"})


def test_load_requirements_names_the_bad_line(tmp_path):
    path = tmp_path / "data.json"
    path.write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n\n")
    table = load_requirements(path)
    assert len(table) == len(RECORDS) and table["a photo of two brooms"].task_type == "numeracy"
    path.write_text(json.dumps(RECORDS[0]) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"data.json:2"):
        load_requirements(path)
    with pytest.raises(FileNotFoundError):
        load_requirements(tmp_path / "missing.json")


def test_parser_reproduces_the_official_records_of_geneval_templates():
    parser = PromptParser()
    for record in RECORDS[:3] + RECORDS[4:]:
        assert parser(record["prompt"]) == Requirements.from_record(record), record["prompt"]


@pytest.mark.parametrize(
    "prompt,want",
    [
        ("a photo of a dog right of a teddy bear", Requirements("spatial", ("dog", "teddy bear"), spatial=SpatialInfo("dog", "teddy bear", "right of"))),
        ("A cat on the left of a dog.", Requirements("spatial", ("cat", "dog"), spatial=SpatialInfo("cat", "dog", "on the left of"))),
        ("a photo of four knifes", Requirements("numeracy", ("knife",), numeracy=(CountInfo("knife", 4),))),
        ("a photo of three buses", Requirements("numeracy", ("bus",), numeracy=(CountInfo("bus", 3),))),
        ("one helmet and three pens", Requirements("numeracy", ("helmet", "pen"), numeracy=(CountInfo("helmet", 1), CountInfo("pen", 3)))),
        ("a photo of an orange", Requirements("object", ("orange",))),
        ("a photo of a blue fire hydrant", Requirements("color", ("fire hydrant",), attr_nouns=("blue fire hydrant",))),
        ("a red circle, a blue square and a green triangle", Requirements("color", ("circle", "square", "triangle"), attr_nouns=("red circle", "blue square", "green triangle"))),
    ],
)
def test_parser_rules(prompt, want):
    assert PromptParser()(prompt) == want


def test_parser_vocabulary_and_plurals():
    vocabulary = ["vase", "skis", "wine glass", "person", "dog", "scissors"]
    parser = PromptParser(vocabulary)
    assert parser("a photo of two vases").numeracy == (CountInfo("vase", 2),)
    # T2I-R1's plural of a plural: the vocabulary resolves it, the bare rules cannot ("scissorse").
    assert parser("a photo of two scissorses").numeracy == (CountInfo("scissors", 2),)
    assert PromptParser()("a photo of two scissorses").numeracy == (CountInfo("scissorse", 2),)
    assert PromptParser()("a photo of three gloveses").nouns == ("gloves",)
    assert parser("a photo of three skis").numeracy == (CountInfo("skis", 3),)
    assert parser("a photo of a skis").nouns == ("skis",)
    assert parser("a photo of two wine glasses").nouns == ("wine glass",)
    assert parser("a photo of three people").nouns == ("person",)
    assert parser("a photo of a unicorn") is None  # not in the vocabulary
    assert PromptParser()("a cat & a dog!") is None  # not a template
    assert singular_candidates("benchs")[0] == "bench" and singular_candidates("boxes")[0] == "box"
    assert PromptParser(attributes=["wooden"])("a wooden chair").attr_nouns == ("wooden chair",)


def test_parser_on_every_geneval_prompt():
    """All GenEval metadata prompts parse to their metadata's classes, counts, colours and relation."""
    root = require_shared("geneval")
    vocabulary = (root / "object_names.txt").read_text().splitlines()
    parser = PromptParser(vocabulary)
    for line in (root / "evaluation_metadata.jsonl").read_text().splitlines():
        meta = json.loads(line)
        got, include = parser(meta["prompt"]), meta["include"]
        assert got is not None, meta["prompt"]
        if meta["tag"] == "position":
            assert got.spatial == SpatialInfo(include[1]["class"], include[0]["class"], include[1]["position"][0])
        elif meta["tag"] == "counting":
            assert got.numeracy == (CountInfo(include[0]["class"], include[0]["count"]),), meta["prompt"]
        elif meta["tag"] in ("colors", "color_attr"):
            assert got.task_type == "color" and got.attr_nouns == tuple(f"{i['color']} {i['class']}" for i in include)
        else:
            assert got.task_type == "object" and got.nouns == tuple(i["class"] for i in include), meta["prompt"]


def test_resolver_records_first_then_parser(tmp_path):
    path = tmp_path / "data.json"
    path.write_text("\n".join(json.dumps(r) for r in RECORDS))
    resolver = RequirementsResolver(records=path)
    assert resolver("rubber gloves and a fluffy teddy bear").task_type == "texture"  # from its record
    assert resolver("a photo of two cats").numeracy == (CountInfo("cat", 2),)  # parsed
    strict = RequirementsResolver(records=path, parse=False)
    with pytest.raises(ValueError, match="no requirements for prompt 'a photo of two cats'"):
        strict("a photo of two cats")
    explicit = [Requirements("object", ("x",))]
    assert resolver.resolve(["anything at all"], explicit) == explicit
    with pytest.raises(ValueError, match="1 requirements for 2 prompts"):
        resolver.resolve(["a", "b"], explicit)
    vocab = tmp_path / "names.txt"
    vocab.write_text("vase\ndog\n")
    assert RequirementsResolver(vocabulary=vocab)("a photo of two vases").nouns == ("vase",)
