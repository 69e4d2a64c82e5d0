"""GenEval-style suite generator: official phrasing, schema, proportions, seeding and prompt-disjoint splits."""
import collections
import json

import pytest

from eval.geneval import suite as gs
from tests.helpers import require_shared



def official_lines():
    path = require_shared("geneval", "evaluation_metadata.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def coco_vocab():
    names = [n for n in require_shared("geneval", "object_names.txt").read_text().splitlines() if n.strip()]
    return gs.SuiteVocabulary(tuple(names), no_color_classes=("person",))


SHAPES = gs.SuiteVocabulary(("circle", "square", "triangle", "diamond", "cross"))


def rebuild(md):
    """The official line rebuilt from its fields with this module's builders."""
    inc = md["include"]
    builders = {
        "single_object": lambda: gs.single_object(inc[0]["class"]),
        "two_object": lambda: gs.two_object(inc[0]["class"], inc[1]["class"]),
        "counting": lambda: gs.counting(inc[0]["class"], inc[0]["count"]),
        "colors": lambda: gs.colors(inc[0]["class"], inc[0]["color"]),
        "position": lambda: gs.position(inc[1]["class"], inc[1]["position"][0], inc[0]["class"]),
        "color_attr": lambda: gs.color_attr((inc[0]["class"], inc[0]["color"]), (inc[1]["class"], inc[1]["color"])),
    }
    return builders[md["tag"]]()


def test_builders_reproduce_every_official_line_byte_for_byte():
    lines = official_lines()
    assert len(lines) == 553
    for i, md in enumerate(lines):
        assert json.dumps(rebuild(md)) == json.dumps(md), f"official line {i}"


def test_official_tag_counts_match_the_official_file():
    counts = collections.Counter(md["tag"] for md in official_lines())
    assert dict(counts) == gs.OFFICIAL_TAG_COUNTS
    assert tuple(dict.fromkeys(md["tag"] for md in official_lines())) == gs.TAGS


def test_phrasing_rules_by_hand():
    assert gs.single_object("orange")["prompt"] == "a photo of an orange"
    assert gs.counting("toothbrush", 4)["prompt"] == "a photo of four toothbrushs"
    assert gs.counting("wine glass", 2)["prompt"] == "a photo of two wine glasses"
    assert gs.counting("circle", 3)["exclude"] == [{"class": "circle", "count": 4}]
    assert gs.colors("orange", "orange")["prompt"] == "a photo of an orange orange"
    pos = gs.position("circle", "left of", "square")
    assert pos["prompt"] == "a photo of a circle left of a square"
    assert pos["include"] == [
        {"class": "square", "count": 1}, {"class": "circle", "count": 1, "position": ["left of", 0]},
    ]
    assert gs.color_attr(("cross", "red"), ("diamond", "orange"))["prompt"] == \
        "a photo of a red cross and an orange diamond"


def test_tag_targets_largest_remainder():
    assert gs.tag_targets(553) == gs.OFFICIAL_TAG_COUNTS
    small = gs.tag_targets(10)
    assert sum(small.values()) == 10
    # 10 * (80, 99, 80, 94, 100, 100) / 553 = 1.45, 1.79, 1.45, 1.70, 1.81, 1.81 -> floors 1 each, 4 largest remainders.
    assert small == {"single_object": 1, "two_object": 2, "counting": 1, "colors": 2, "position": 2, "color_attr": 2}


def test_coco_vocabulary_gives_official_proportions_and_valid_lines():
    vocab = coco_vocab()
    suite = gs.generate_suite(vocab, 553, seed=43)
    assert dict(collections.Counter(md["tag"] for md in suite)) == gs.OFFICIAL_TAG_COUNTS
    assert len({json.dumps(md, sort_keys=True) for md in suite}) == len(suite)
    assert {md["include"][0]["class"] for md in suite if md["tag"] == "single_object"} == set(vocab.classes)
    for i, md in enumerate(suite):
        gs.validate_metadata(md, f"suite[{i}]", vocab)
        assert json.dumps(rebuild(md)) == json.dumps(md)
        if md["tag"] in ("colors", "color_attr"):
            assert all(req["class"] != "person" for req in md["include"])


def test_official_lines_pass_our_validator():
    vocab = coco_vocab()
    for i, md in enumerate(official_lines()):
        gs.validate_metadata(md, f"official[{i}]", vocab)


@pytest.mark.parametrize("vocab_name", ["coco", "shapes"])
def test_suite_lines_pass_the_geneval_metadata_parser(vocab_name):
    prompts = pytest.importorskip("eval.geneval.prompts")
    vocab = coco_vocab() if vocab_name == "coco" else SHAPES
    for i, md in enumerate(gs.generate_suite(vocab, 553, seed=1)):
        spec = prompts.parse_metadata(md, list(vocab.classes), index=i, where=f"suite[{i}]")
        assert spec.tag == md["tag"] and spec.prompt == md["prompt"]


def test_small_vocabulary_exhausts_small_tags_and_fills_others():
    suite = gs.generate_suite(SHAPES, 553, seed=43)
    counts = collections.Counter(md["tag"] for md in suite)
    targets = gs.tag_targets(553)
    for tag in gs.TAGS:
        assert counts[tag] == min(targets[tag], gs.tag_capacity(tag, SHAPES)), tag
    # 5 shapes: 5 single, 5*4 two, 5*3 counting, 5*10 colors, 5*4*4 position lines exist; color_attr has 1800.
    assert [gs.tag_capacity(t, SHAPES) for t in gs.TAGS] == [5, 20, 15, 50, 80, 1800]
    for i, md in enumerate(suite):
        gs.validate_metadata(md, f"suite[{i}]", SHAPES)


def test_seeded_and_deterministic():
    a = gs.generate_suite(SHAPES, 100, seed=3)
    assert a == gs.generate_suite(SHAPES, 100, seed=3)
    assert a != gs.generate_suite(SHAPES, 100, seed=4)


def test_split_shares_no_prompt_and_keeps_every_tag():
    suite = gs.generate_suite(SHAPES, 553, seed=43)
    train, evaluation = gs.split_suite(suite, eval_fraction=0.25, seed=0)
    assert not {md["prompt"] for md in train} & {md["prompt"] for md in evaluation}
    assert len(train) + len(evaluation) == len(suite)
    assert {md["tag"] for md in train} == {md["tag"] for md in evaluation} == set(gs.TAGS)
    assert 0.15 < len(evaluation) / len(suite) < 0.35
    assert gs.split_suite(suite, 0.25, seed=0) == (train, evaluation)
    assert train == [md for md in suite if md in train]  # suite order kept


def test_split_groups_duplicate_prompts():
    line = gs.single_object("circle")
    suite = [line, dict(line), gs.single_object("square"), gs.single_object("cross")]
    train, evaluation = gs.split_suite(suite, eval_fraction=0.5, seed=0)
    assert not {md["prompt"] for md in train} & {md["prompt"] for md in evaluation}
    assert sum(md["prompt"] == line["prompt"] for md in train + evaluation) == 2


@pytest.mark.parametrize("mutate, field", [
    (lambda md: md.update(tag="shapes"), "tag"),
    (lambda md: md["include"][0].update(count=0), "include[0].count"),
    (lambda md: md["include"][1].update(position=["near", 0]), "include[1].position"),
    (lambda md: md["include"][1].update(position=["above", 1]), "include[1].position"),
    (lambda md: md.update(prompt="circle left of square"), "prompt"),
    (lambda md: md["include"][0].update(**{"class": "hexagon"}), "include[0].class"),
])
def test_validation_names_the_field(mutate, field):
    md = gs.position("circle", "left of", "square")
    mutate(md)
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        gs.validate_metadata(md, "here", SHAPES)


def test_save_load_roundtrip_and_errors(tmp_path):
    suite = gs.generate_suite(SHAPES, 30, seed=0)
    path = tmp_path / "suite.jsonl"
    gs.save_suite(path, suite)
    assert gs.load_suite(path) == suite
    assert path.read_text().splitlines()[0] == json.dumps(suite[0])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(suite[0]) + "\n" + json.dumps({"tag": "colors", "include": [], "prompt": "a photo of a"}))
    with pytest.raises(ValueError, match=r"bad.jsonl:2.*include"):
        gs.load_suite(bad)
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        gs.load_suite(tmp_path / "missing.jsonl")


def test_vocabulary_rejects_bad_input():
    with pytest.raises(ValueError, match="counts"):
        gs.SuiteVocabulary(("a", "b"), counts=(1,))
    with pytest.raises(ValueError, match="duplicates"):
        gs.SuiteVocabulary(("a", "a"))
    with pytest.raises(ValueError, match="relations"):
        gs.SuiteVocabulary(("a", "b"), relations=("near",))


def test_prompt_space_is_every_distinct_line():
    space = gs.prompt_space(SHAPES)
    counts = collections.Counter(md["tag"] for md in space)
    assert [counts[t] for t in gs.TAGS] == [gs.tag_capacity(t, SHAPES) for t in gs.TAGS]
    assert len({json.dumps(md, sort_keys=True) for md in space}) == len(space)
    assert {json.dumps(md, sort_keys=True) for md in gs.generate_suite(SHAPES, 553, seed=43)} <= \
        {json.dumps(md, sort_keys=True) for md in space}
    assert [md["tag"] for md in gs.prompt_space(SHAPES, ("counting",))] == ["counting"] * 15
    with pytest.raises(ValueError, match="unknown tags"):
        gs.prompt_space(SHAPES, ("colour",))
