"""Parity of the GenEval judge with the official evaluator on every case of ``geneval/judge_cases.jsonl``.

Every expected value in the fixture was produced by the official ``evaluate_image`` (numpy 1.23); see
``shared/geneval/README.md``. The colour classifier is scripted: it must be asked exactly the official calls, in
order, about detections whose box, score and mask equal the rows the official code classified.
"""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from eval.geneval.judge import JudgeOptions, box_iou, judge_image, keep_detections, relative_position
from eval.geneval.types import ClassDetections, ImageDetections
from tests.helpers import require_shared



def build_mask(encoding: dict, width: int, height: int) -> np.ndarray:
    """Bool [H, W] mask from the fixture's encoding (README "Mask encoding")."""
    mask = np.zeros((height, width), bool)
    if encoding["type"] == "empty":
        return mask
    x0, y0, x1, y1 = encoding["xyxy"]
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if cx1 <= cx0 or cy1 <= cy0:
        return mask
    if encoding["type"] == "rect":
        mask[cy0:cy1, cx0:cx1] = True
    elif encoding["type"] == "ellipse":
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        xs = np.arange(cx0, cx1)[None, :] + 0.5
        ys = np.arange(cy0, cy1)[:, None] + 0.5
        mask[cy0:cy1, cx0:cx1] = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1
    else:
        raise ValueError(f"unknown mask type {encoding['type']!r}")
    return mask


def build_detections(case: dict) -> ImageDetections:
    width, height = case["image_size"]
    by_label = {}
    for label, entry in case["detector_output"].items():
        boxes = np.asarray(entry["bboxes"], np.float32).reshape(-1, 5)
        masks = np.stack([build_mask(m, width, height) for m in entry["masks"]]) if entry["masks"] else np.zeros(
            (0, height, width), bool
        )
        by_label[int(label)] = ClassDetections(boxes, masks)
    return ImageDetections((width, height), by_label)


class ScriptedColors:
    """Returns the fixture's colours; fails unless asked exactly the official calls (class, rows' box+score+mask)."""

    colors = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")

    def __init__(self, case: dict, detections: ImageDetections, class_names: list[str]):
        self.expected = list(case["expected"]["color_calls"])
        self.case = case
        self.detections = detections
        self.label_of = {name: i for i, name in enumerate(class_names)}
        self.calls = 0

    def classify(self, image, boxes, masks, class_name):
        case_id = self.case["id"]
        assert self.calls < len(self.expected), f"{case_id}: unexpected colour call #{self.calls} for {class_name}"
        call = self.expected[self.calls]
        self.calls += 1
        assert call["class"] == class_name, f"{case_id}: colour call for {class_name}, expected {call['class']}"
        assert len(call["rows"]) == len(boxes) == len(masks), f"{case_id}: colour call on {len(boxes)} detections"
        found = self.detections.by_label[self.label_of[class_name]]
        for k, row in enumerate(call["rows"]):
            assert np.array_equal(boxes[k], found.bboxes[row]), f"{case_id}: colour call box {k} is not row {row}"
            assert np.array_equal(masks[k], found.masks[row]), f"{case_id}: colour call mask {k} is not row {row}"
        entry = self.case["detector_output"][str(self.label_of[class_name])]
        return [entry["colors"][row] for row in call["rows"]]


def load_cases() -> list[dict]:
    path = require_shared("geneval", "judge_cases.jsonl")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_judge_matches_every_official_case():
    class_names = require_shared("geneval", "object_names.txt").read_text().splitlines()
    cases = load_cases()
    assert cases, "judge_cases.jsonl holds no case"
    assert len({c["id"] for c in cases}) == len(cases), "judge_cases.jsonl repeats a case id"
    image = Image.new("RGB", (1, 1))
    passed, failures = Counter(), []
    for case in cases:
        options = JudgeOptions.from_options(case["options"])
        assert {k: getattr(options, k) for k in case["effective_options"]} == case["effective_options"], case["id"]
        detections = build_detections(case)
        colors = ScriptedColors(case, detections, class_names)
        verdict = judge_image(case["metadata"], detections, image, colors, class_names, options)
        exp = case["expected"]
        ok = (
            verdict.correct == exp["correct"]
            and verdict.reason in exp["reason_alternatives"]
            and verdict.details == exp["details"]
            and json.loads(verdict.details_json) == exp["details"]
            and verdict.kept_rows == exp["kept_rows"]
            and colors.calls == len(exp["color_calls"])
        )
        if ok:
            passed[case["metadata"]["tag"]] += 1
        else:
            failures.append((case["id"], verdict.correct, verdict.reason, exp["correct"], exp["reason"]))
    print("judge parity passes per tag:", dict(passed), "total", sum(passed.values()), "/", len(cases))
    assert not failures, f"{len(failures)} cases differ, first: {failures[:5]}"


def test_tie_order_cases_need_numpy_123_order(monkeypatch):
    """The tie-decided cases pass (above) and fail with the other tie order: they really test it."""
    import eval.geneval.judge as judge_module

    class_names = require_shared("geneval", "object_names.txt").read_text().splitlines()
    cases = [c for c in load_cases() if c["flags"]["tie_order_affects_verdict"]]
    if not cases:
        pytest.skip("judge_cases.jsonl has no case whose verdict depends on the order of tied scores")
    # Lower row index first among ties (what numpy 2.4 with AVX-512 may give): the official verdicts are lost.
    monkeypatch.setattr(judge_module, "descending_order", lambda scores: np.argsort(-scores, kind="stable"))
    differ = 0
    for case in cases:
        detections = build_detections(case)
        colors = ScriptedColors(case, detections, class_names)
        colors.classify = lambda image, boxes, masks, name, c=case, d=detections: [
            c["detector_output"][str(class_names.index(name))]["colors"][_row_of(d, class_names.index(name), b)]
            for b in boxes
        ]
        verdict = judge_image(case["metadata"], detections, Image.new("RGB", (1, 1)), colors, class_names,
                              JudgeOptions.from_options(case["options"]))
        differ += (verdict.correct, verdict.reason) != (case["expected"]["correct"], case["expected"]["reason"])
    print("tie-decided cases whose verdict flips with the other tie order:", differ, "/", len(cases))
    assert differ > 0


def _row_of(detections: ImageDetections, label: int, box: np.ndarray) -> int:
    """First row of ``label`` equal to ``box`` (ties in this test differ in their boxes or colours)."""
    rows = np.flatnonzero((detections.by_label[label].bboxes == box).all(axis=1))
    return int(rows[0])


def test_float32_threshold_is_strict():
    boxes = np.array([[0, 0, 1, 1, 0.3], [0, 0, 1, 1, np.nextafter(np.float32(0.3), np.float32(1))]], np.float32)
    assert keep_detections(boxes, 0.3, JudgeOptions()) == [1]


def test_tie_order_higher_row_first():
    boxes = np.array([[0, 0, 1, 1, 0.88], [0, 0, 1, 1, 0.88], [0, 0, 1, 1, 0.11], [0, 0, 1, 1, 0.58]], np.float32)
    assert keep_detections(boxes, 0.0, JudgeOptions()) == [1, 0, 3, 2]


def test_relative_position_by_hand():
    # A centred at (50, 10), B at (10, 10), both 20 wide: offset 40, margin 0.1*40 = 4 -> dx = 36/40 = 0.9.
    a = np.array([40, 0, 60, 20], np.float32)
    b = np.array([0, 0, 20, 20], np.float32)
    assert relative_position(a, b, 0.1) == {"right of"}
    assert relative_position(b, a, 0.1) == {"left of"}
    assert relative_position(a, a, 0.1) == set()
    # Diagonal: offset (30, 30), margin 4 per axis -> 26/42.43 = 0.61 on both axes.
    c = np.array([30, 30, 50, 50], np.float32)
    assert relative_position(c, b, 0.1) == {"right of", "below"}


def test_box_iou_plus_one_convention():
    a = np.array([0, 0, 9, 9], np.float32)  # area 10*10 with the +1 convention
    b = np.array([5, 0, 14, 9], np.float32)  # overlap 5*10
    assert box_iou(a, b) == pytest.approx(50 / 150)


def test_options_parsing_and_errors():
    opts = JudgeOptions.from_options(["threshold=0.5", "max_objects=3", "bgcolor=#999"])
    assert opts.threshold == 0.5 and opts.max_objects == 3 and opts.counting_threshold == 0.9
    with pytest.raises(ValueError, match="max_object"):
        JudgeOptions.from_options({"max_object": "3"})
    with pytest.raises(ValueError, match="'abc'"):
        JudgeOptions.from_options({"threshold": "abc"})
