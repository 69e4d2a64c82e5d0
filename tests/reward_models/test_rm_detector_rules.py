"""T2I-R1's detector reward rules on hand-made boxes, official quirks vs fixes (t2i_r1.md §8.2, §8.6).

Boxes are (x1, y1, x2, y2) in [0, 1] with y pointing down; obj1 is "locality" of obj2.
"""
import pytest

from reward_models.detector_rules import (
    Detection,
    DetectorRules,
    detection_caption,
    detector_score,
    position_score,
)
from reward_models.requirements import CountInfo, Requirements, SpatialInfo

FIXED, OFFICIAL = DetectorRules(), DetectorRules.official()


def box(phrase, x1, y1, x2, y2, score=0.9):
    return Detection.from_xyxy(phrase, x1, y1, x2, y2, score)


def spatial(obj1, obj2, locality):
    return Requirements("spatial", (obj1, obj2), spatial=SpatialInfo(obj1, obj2, locality))


# A book in the top half, a tv in the bottom half: centres (0.5, 0.2) and (0.5, 0.7), no overlap.
BOOK_OVER_TV = [box("book", 0.3, 0.1, 0.7, 0.3), box("tv", 0.3, 0.5, 0.7, 0.9)]


def test_above_is_credited_only_with_the_fix_flag():
    # Both objects found: 0.2 + 0.2. Position: dy = 0.7 - 0.2 = 0.5 > 0 (obj1 higher), |dy| > |dx| = 0, IoU 0 -> 1.
    # Official: no branch for "above" -> position 0 -> 0.4. Fixed: 0.4 + 1/2 = 0.9.
    need = spatial("book", "tv", "above")
    assert detector_score(need, BOOK_OVER_TV, OFFICIAL) == pytest.approx(0.4)
    assert detector_score(need, BOOK_OVER_TV, FIXED) == pytest.approx(0.9)
    need = spatial("book", "tv", "on top of")
    assert detector_score(need, BOOK_OVER_TV, OFFICIAL) == pytest.approx(0.4)
    assert detector_score(need, BOOK_OVER_TV, FIXED) == pytest.approx(0.9)
    # "on the top of" has an official branch: credited either way.
    for rules in (OFFICIAL, FIXED):
        assert detector_score(spatial("book", "tv", "on the top of"), BOOK_OVER_TV, rules) == pytest.approx(0.9)
    # The wrong way round: the tv is not above the book -> position 0 under both rule sets.
    assert detector_score(spatial("tv", "book", "above"), BOOK_OVER_TV, FIXED) == pytest.approx(0.4)


def test_below_left_right_and_partial_overlap():
    # "tv below book": dy = 0.2 - 0.7 = -0.5 < 0 -> right way, IoU 0 -> 0.9; the reverse -> 0.4.
    assert detector_score(spatial("tv", "book", "below"), BOOK_OVER_TV, OFFICIAL) == pytest.approx(0.9)
    assert detector_score(spatial("book", "tv", "below"), BOOK_OVER_TV, OFFICIAL) == pytest.approx(0.4)
    # Overlapping side by side: cat (0, 0, 0.6, 1), dog (0.4, 0, 1, 1). dx = 0.7 - 0.3 = 0.4 > 0, dy = 0:
    # the cat is left of the dog. Intersection 0.2 x 1, union 0.6 + 0.6 - 0.2 = 1 -> IoU 0.2 >= 0.1 ->
    # position 0.1 / 0.2 = 0.5 -> 0.4 + 0.25 = 0.65. "right of" is the wrong way -> 0.4.
    dets = [box("cat", 0.0, 0.0, 0.6, 1.0), box("dog", 0.4, 0.0, 1.0, 1.0)]
    assert detector_score(spatial("cat", "dog", "left of"), dets, OFFICIAL) == pytest.approx(0.65)
    assert detector_score(spatial("cat", "dog", "on the left of"), dets, FIXED) == pytest.approx(0.65)
    assert detector_score(spatial("cat", "dog", "right of"), dets, FIXED) == pytest.approx(0.4)
    assert detector_score(spatial("dog", "cat", "on the right of"), dets, FIXED) == pytest.approx(0.65)
    # Diagonal with |dx| == |dy|: neither axis dominates -> 0 for a directional relation.
    diag = [box("cat", 0.0, 0.0, 0.2, 0.2), box("dog", 0.5, 0.5, 0.7, 0.7)]
    assert position_score("left of", diag[0].xyxy, diag[1].xyxy, FIXED) == 0.0


def test_near_threshold_official_always_close():
    # Centres (0.1, 0.1) and (0.9, 0.9): |dx| = |dy| = 0.8. Official threshold 150 (normalised coords): close -> 1.
    # Fixed threshold 150/384 = 0.390625: far -> 0.390625 / 0.8 = 0.48828125 -> 0.4 + 0.244140625.
    dets = [box("cat", 0.0, 0.0, 0.2, 0.2), box("dog", 0.8, 0.8, 1.0, 1.0)]
    assert detector_score(spatial("cat", "dog", "near"), dets, OFFICIAL) == pytest.approx(0.9)
    assert detector_score(spatial("cat", "dog", "next to"), dets, FIXED) == pytest.approx(0.4 + 0.244140625)
    # Close on one axis (|dy| = 0 < threshold) -> 1 under both.
    row = [box("cat", 0.0, 0.4, 0.2, 0.6), box("dog", 0.8, 0.4, 1.0, 0.6)]
    assert detector_score(spatial("cat", "dog", "on side of"), row, FIXED) == pytest.approx(0.9)


def test_presence_and_most_confident_box():
    # Only the cat found -> 0.2, no position term.
    assert detector_score(spatial("cat", "dog", "left of"), [box("cat", 0, 0, 0.2, 0.2)], OFFICIAL) == pytest.approx(0.2)
    assert detector_score(spatial("cat", "dog", "left of"), [], OFFICIAL) == 0.0
    # Two cat boxes: the confident one (0.95) is right of the dog -> "cat left of dog" is wrong -> 0.4,
    # although the weak one (0.5) is on the left.
    dets = [box("cat", 0.0, 0.4, 0.2, 0.6, 0.5), box("cat", 0.8, 0.4, 1.0, 0.6, 0.95), box("dog", 0.4, 0.4, 0.6, 0.6)]
    assert detector_score(spatial("cat", "dog", "left of"), dets, OFFICIAL) == pytest.approx(0.4)
    assert detector_score(spatial("cat", "dog", "right of"), dets, OFFICIAL) == pytest.approx(0.9)


def test_same_noun_on_both_sides():
    # "a cat left of a cat": officially the reward raised and scored 0; fixed: the two most confident cat boxes.
    dets = [box("cat", 0.0, 0.4, 0.2, 0.6, 0.9), box("cat", 0.8, 0.4, 1.0, 0.6, 0.8)]
    need = spatial("cat", "cat", "left of")
    assert detector_score(need, dets, OFFICIAL) == 0.0
    assert detector_score(need, dets, FIXED) == pytest.approx(0.9)
    assert detector_score(need, dets[:1], FIXED) == 0.0


def test_numeracy_nms_box_format():
    # Three dog boxes, two of them nearly the same (IoU of A and B = 0.19^2 / (2 * 0.04 - 0.19^2) = 0.82 > 0.5).
    # Fixed: NMS on corners keeps 2 -> "two dogs" scores 1. Official: NMS is fed (cx, cy, w, h) as corners:
    # A -> (0.2, 0.2, 0.2, 0.2) has zero width, B -> (0.21, 0.21, 0.2, 0.2) is inverted: they overlap nothing,
    # all 3 are kept -> wrong count -> 0.2.
    dets = [box("dog", 0.1, 0.1, 0.3, 0.3, 0.9), box("dog", 0.11, 0.11, 0.31, 0.31, 0.8), box("dog", 0.6, 0.6, 0.8, 0.8, 0.7)]
    need = Requirements("numeracy", ("dog",), numeracy=(CountInfo("dog", 2),))
    assert detector_score(need, dets, FIXED) == pytest.approx(1.0)
    assert detector_score(need, dets, OFFICIAL) == pytest.approx(0.2)
    # "one helmet and three pens": weight 1/2 each. One helmet found (right), no pen (0) -> 0.5.
    need = Requirements("numeracy", ("helmet", "pen"), numeracy=(CountInfo("helmet", 1), CountInfo("pen", 3)))
    assert detector_score(need, [box("helmet", 0.1, 0.1, 0.3, 0.3)], FIXED) == pytest.approx(0.5)
    # Two helmets found instead of one (wrong count 0.2 / 2), three separate pens (1 / 2) -> 0.6.
    pens = [box("pen", 0.1 * i, 0.8, 0.1 * i + 0.05, 0.9) for i in range(3)]
    helmets = [box("helmet", 0.1, 0.1, 0.3, 0.3), box("helmet", 0.6, 0.1, 0.8, 0.3)]
    assert detector_score(need, helmets + pens, FIXED) == pytest.approx(0.6)


def test_object_score_and_no_nouns():
    need = Requirements("color", ("car", "clock"), attr_nouns=("red car", "gold clock"))
    assert detector_score(need, [box("car", 0, 0, 1, 1)], OFFICIAL) == pytest.approx(0.5)
    # complex prompts are scored on objects even when they carry spatial_info (official routing).
    need = Requirements("complex", ("plant", "nightstand"), spatial=SpatialInfo("plant", "nightstand", "on top of"))
    assert detector_score(need, [box("plant", 0, 0, 1, 1), box("nightstand", 0, 0, 1, 1)], OFFICIAL) == 1.0
    assert detector_score(Requirements("object", ()), [], OFFICIAL) == 1.0


def test_caption_and_multi_word_phrases():
    # Official: "ice cream cone" is grounded on "ice" (0-3) and "cone" (10-14) and labelled "ice cone".
    caption, spans, labels = detection_caption(["ice cream cone", "dog", "traffic light"], full_phrase=False)
    assert caption == "ice cream cone . dog . traffic light."
    assert spans == [[(0, 3), (10, 14)], [(17, 20)], [(23, 30), (31, 36)]]
    assert labels == ["ice cone", "dog", "traffic light"]
    assert [caption[a:b] for a, b in spans[2]] == ["traffic", "light"]
    caption, spans, labels = detection_caption(["ice cream cone", "dog"], full_phrase=True)
    assert spans == [[(0, 14)], [(17, 20)]] and labels == ["ice cream cone", "dog"]
    # So officially a detected "ice cream cone" (labelled "ice cone") never matches its noun.
    need = Requirements("object", ("ice cream cone", "dog"))
    official_dets = [box("ice cone", 0, 0, 1, 1), box("dog", 0, 0, 1, 1)]
    assert detector_score(need, official_dets, OFFICIAL) == pytest.approx(0.5)
    assert detector_score(need, [box("ice cream cone", 0, 0, 1, 1), box("dog", 0, 0, 1, 1)], FIXED) == 1.0


def test_detection_box_formats():
    d = Detection.from_xyxy("x", 0.1, 0.2, 0.5, 0.4, 0.7)
    assert d.box == pytest.approx((0.3, 0.3, 0.4, 0.2)) and d.xyxy == pytest.approx((0.1, 0.2, 0.5, 0.4))
