"""The official T2I-CompBench rules on hand-made cases; every expected value is derived by hand from the reference
(t2i_compbench_wise.md §2, §3.1, §3.3, §5)."""
from __future__ import annotations

import pytest

from eval.t2i_compbench import rules
from eval.t2i_compbench.rules import Detection

A = (0.0, 0.0, 100.0, 100.0)  # centre (50, 50), area 10,000


def test_directional_relations_exact_values():
    right = (200.0, 0.0, 300.0, 100.0)  # dx = +200, dy = 0, IoU = 0
    assert rules.spatial_relation_score("on the left of", A, right) == 1.0
    assert rules.spatial_relation_score("on the right of", A, right) == 0.0  # needs dx < 0
    assert rules.spatial_relation_score("on the right of", right, A) == 1.0
    # Overlap: dx = 50, dy = 0, intersection 50 × 100 = 5,000, union 15,000, IoU = 1/3 -> 0.1 / (1/3) = 0.3.
    assert rules.spatial_relation_score("on the left of", A, (50.0, 0.0, 150.0, 100.0)) == pytest.approx(0.3)
    # IoU just under 0.1 -> 1: dx = 90, intersection 10 × 100 = 1,000, union 19,000, IoU = 0.0526.
    assert rules.spatial_relation_score("on the left of", A, (90.0, 0.0, 190.0, 100.0)) == 1.0
    below = (0.0, 300.0, 100.0, 400.0)  # dy = +250 (y grows downwards): object 1 is on the top of object 2
    assert rules.spatial_relation_score("on the top of", A, below) == 1.0
    assert rules.spatial_relation_score("on the bottom of", below, A) == 1.0
    assert rules.spatial_relation_score("on the bottom of", A, below) == 0.0
    # |dx| must dominate for left/right: dx = 200, dy = 250 -> 0.
    assert rules.spatial_relation_score("on the left of", A, (200.0, 250.0, 300.0, 350.0)) == 0.0
    assert rules.spatial_relation_score("on top of", A, below) == 0.0  # no branch officially
    assert rules.spatial_relation_score(None, A, below) == 0.0


def test_proximity_relations_exact_values():
    far = (200.0, 160.0, 300.0, 260.0)  # dx = 200, dy = 160: both >= 150 -> 150 / 200
    for rel in ("near", "next to", "on side of"):
        assert rules.spatial_relation_score(rel, A, far) == 0.75
    assert rules.spatial_relation_score("near", A, (200.0, 100.0, 300.0, 200.0)) == 1.0  # |dy| = 100 < 150


def test_spatial_image_score_formula_and_cut():
    dets = [Detection("cat", 0.9, A), Detection("dog", 0.8, (50.0, 0.0, 150.0, 100.0)),
            Detection("cat", 0.95, (300.0, 0.0, 400.0, 100.0))]
    # Highest-scoring cat is the 0.95 one at dx = -250 from it to the dog: "left of" fails -> rel 0.
    score, details = rules.spatial_image_score("on the left of", "cat", "dog", dets)
    assert details["relation_score"] == 0.0 and score == 0.0  # 0.2375 + 0.2 + 0 = 0.4375 < 0.5 -> 0
    dets = dets[:2]
    score, details = rules.spatial_image_score("on the left of", "cat", "dog", dets)
    assert score == pytest.approx(0.25 * 0.9 + 0.25 * 0.8 + 0.3 / 2)  # 0.575
    assert rules.spatial_image_score("on the left of", "cat", "cow", dets)[0] == 0.0  # one found: 0.225 -> 0
    assert rules.spatial_image_score("near", "cat", "cat", [Detection("cat", 1.0, A)])[0] == 1.0  # s1 = s2 = 1
    girl = rules.spatial_image_score("near", "girl", "dog", [Detection("person", 0.6, A), Detection("dog", 0.6, A)])
    assert girl[0] == pytest.approx(0.3 + 0.5) and girl[1]["objects"] == ["person", "dog"]


def test_official_frame_scale():
    assert rules.official_frame_scale(512, 512) == 479 / 512
    assert rules.official_frame_scale(384, 384) == 479 / 384
    assert rules.official_frame_scale(1024, 512) == 480 / 1024  # long side would be 958 > 480


def test_relation_is_first_of_the_official_list():
    assert rules.spatial_relation("a cat on the top of a dog") == "on the top of"
    assert rules.spatial_relation("a cat next to a dog near a car") == "next to"
    assert rules.spatial_relation("a cat and a dog") is None


def test_vqa_product_of_known_probabilities():
    assert rules.blip_image_score([0.8, 0.5, 0.25]) == 0.1
    # answers are rounded to 4 decimals first: 0.91234 -> 0.9123; 0.9123 × 0.5 in float32 = 0.456149995 -> 0.4561
    assert rules.blip_image_score([0.91234, 0.5]) == 0.4561
    assert rules.blip_image_score([]) == 1.0
    assert rules.pre_question('A "Green" bench (old)?') == "a green bench old?"
    assert rules.pre_question(" ".join(["w"] * 60) + "?") == " ".join(["w"] * 50)


def test_numeracy_dedup_count_and_score():
    # Same class, +1-pixel areas: (0,0,9,9) has area 100, (0,0,9,10) 110, intersection 100 -> covers 100 % -> dup.
    cats = [Detection("cat", 0.9, (0, 0, 9, 9)), Detection("cat", 0.8, (0, 0, 9, 10)), Detection("cat", 0.7, (50, 50, 60, 60))]
    assert len(rules.dedup_detections(cats)) == 2
    assert len(rules.dedup_detections([*cats[:1], Detection("dog", 0.8, (0, 0, 9, 10))])) == 2  # other class kept
    # two cats (exact count) and one dog (absent): 0.5/2 + 0.5/2 + 0 = 0.5
    assert rules.numeracy_score([("cat", 2), ("dog", 1)], cats)[0] == 0.5
    # three cats wanted, two found: present only -> 0.5
    assert rules.numeracy_score([("cat", 3)], cats)[0] == 0.5
    # goldfish -> fish alias; a detected class containing the name is renamed to it
    score, details = rules.numeracy_score([("goldfish", 1)], [Detection("tropical fish", 0.9, (0, 0, 5, 5))])
    assert score == 1.0 and details["counts"] == [1]
    assert rules.numeracy_score([], cats)[0] == 0.0


def test_count_targets_official_parse():
    vocab = {"cat": "cat", "cats": "cat", "fish": "fish", "teddy bear": "teddy bear", "teddy bears": "teddy bear"}
    assert rules.count_targets("two cats and one fish".split(), vocab) == [("cat", 2), ("fish", 1)]
    assert rules.count_targets("three teddy bears near a cat".split(), vocab) == [("teddy bear", 3), ("cat", 1)]
    assert rules.count_targets("three fish".split(), vocab) == [("fish", 3)]
    assert rules.count_targets("A cat".split(), vocab) == []  # number words are case-sensitive, as official
    assert rules.singularize("strawberries") == "strawberry" and rules.singularize("peaches") == "peach"
    assert rules.singularize("mice") == "mouse" and rules.singularize("sheep") == "sheep"


def test_complex_combination():
    assert rules.complex_score("spatial", 0.6, 0.2, 0.3) == pytest.approx(0.4)
    assert rules.complex_score("action", 0.6, 0.2, 0.3) == pytest.approx(0.45)
    assert rules.complex_score("spatial_action", 0.6, 0.2, 0.3) == pytest.approx(1.1 / 3)
    with pytest.raises(ValueError, match="kind"):
        rules.complex_score("other", 0, 0, 0)


def test_read_objects_file(tmp_path):
    (tmp_path / "o.txt").write_text("fish - fish\nmouse - mice\nfish - fish\n")
    assert rules.read_objects_file(tmp_path / "o.txt") == {"fish": "fish", "mouse": "mouse", "mice": "mouse"}
    (tmp_path / "bad.txt").write_text("mouse mice\n")
    with pytest.raises(ValueError, match="bad.txt:1"):
        rules.read_objects_file(tmp_path / "bad.txt")
