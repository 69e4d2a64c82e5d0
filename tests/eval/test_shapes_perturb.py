"""Near-miss scenes of the shapes world: one thing changed, labels from the exact judge (eval/shapes/perturb.py)."""
from __future__ import annotations

import numpy as np
import pytest

from eval.shapes.data import build_suite
from eval.shapes.oracle import ShapesLabeller
from eval.shapes.perturb import NEAR_MISS_KINDS, SceneRenderer, perturb

SUITE = build_suite("shapes32")
WORLD = SUITE.config.world
LINES = {tag: next(line for line in SUITE.lines if line["tag"] == tag)
         for tag in ("single_object", "two_object", "counting", "colors", "position", "color_attr")}


def _perturbed(tag: str, kind: str, seed: int = 0) -> dict | None:
    return perturb(LINES[tag], kind, np.random.default_rng(seed), WORLD)


def test_each_kind_changes_exactly_what_it_names():
    line = LINES["color_attr"]
    for seed in range(20):
        colors = [req["color"] for req in _perturbed("color_attr", "color", seed)["include"]]
        assert colors != [req["color"] for req in line["include"]]  # recoloured or swapped
        assert [r["class"] for r in _perturbed("color_attr", "color", seed)["include"]] == [r["class"] for r in
                                                                                            line["include"]]
    flipped = _perturbed("position", "relation")["include"]
    original = LINES["position"]["include"]
    subject = next(i for i, req in enumerate(original) if "position" in req)
    assert flipped[subject]["position"][1] == original[subject]["position"][1]
    assert {original[subject]["position"][0], flipped[subject]["position"][0]} in (
        {"left of", "right of"}, {"above", "below"})
    n = LINES["counting"]["include"][0]["count"]
    assert {_perturbed("counting", "count", s)["include"][0]["count"] for s in range(20)} == {n - 1, n + 1}
    assert _perturbed("counting", "missing")["include"][0]["count"] == n - 1
    shape = _perturbed("counting", "shape")["include"]
    assert shape[0]["count"] == n - 1 and shape[1]["count"] == 1 and shape[1]["class"] != shape[0]["class"]
    assert len(_perturbed("two_object", "extra")["include"]) == 3
    assert _perturbed("counting", "extra")["include"][:1] == LINES["counting"]["include"]


def test_missing_reference_drops_the_relation_and_line_is_left_unchanged():
    line = LINES["position"]
    before = repr(line)
    for seed in range(10):
        out = _perturbed("position", "missing", seed)
        assert len(out["include"]) == 1 and "position" not in out["include"][0]
    assert repr(line) == before


@pytest.mark.parametrize("tag,kind", [("counting", "color"), ("colors", "relation"), ("single_object", "missing"),
                                      ("two_object", "relation")])
def test_kinds_that_do_not_apply_give_none(tag, kind):
    assert _perturbed(tag, kind) is None
    assert SceneRenderer(WORLD)(LINES[tag], kind, 0) is None


def test_renders_are_deterministic_and_labelled_by_the_judge_not_by_the_kind():
    renderer, labeller = SceneRenderer(WORLD), ShapesLabeller(WORLD)
    a, b = renderer(LINES["color_attr"], "color", 3), renderer(LINES["color_attr"], "color", 3)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    for tag, line in LINES.items():
        assert labeller(line, renderer(line, "ground_truth", 1)).correct, tag  # clean ground truth is right
        for kind in ("shape", "missing"):
            image = renderer(line, kind, 1)
            if image is not None:
                verdict = labeller(line, image)
                assert not verdict.correct and verdict.reason, (tag, kind)
    # an extra object of another class leaves "a photo of a X and a Y" right: the label is the judge's
    extras = [labeller(LINES["two_object"], renderer(LINES["two_object"], "extra", s)).correct for s in range(12)]
    assert any(extras)
    flipped = labeller(LINES["position"], renderer(LINES["position"], "relation", 2))
    subject = next(req for req in LINES["position"]["include"] if "position" in req)
    assert not flipped.correct  # both objects found, on the wrong side
    assert f"expected {subject['class']} {subject['position'][0]} target" in flipped.reason


def test_unknown_kinds_are_errors():
    with pytest.raises(ValueError, match="unknown near-miss kind 'blur'"):
        perturb(LINES["colors"], "blur", np.random.default_rng(0), WORLD)
    with pytest.raises(ValueError, match="unknown"):
        SceneRenderer(WORLD, kinds=("color", "blur"))
    assert SceneRenderer(WORLD).kinds == NEAR_MISS_KINDS


def test_patch_labels_name_the_shape_and_colour_of_every_rendered_object():
    """ShapesPatchLabeller on clean renders: every 4 px patch inside an object's box carries that object's shape and
    colour (renders sit on the token grid, so a box covers whole patches), every other patch is background."""
    from eval.shapes.perturb import ShapesPatchLabeller
    from eval.shapes.render import render_scene

    labeller = ShapesPatchLabeller(WORLD, patch_size=4)
    assert labeller.classes == (1 + len(WORLD.shapes), 1 + len(WORLD.colors))
    grid = WORLD.canvas_size // 4
    for tag in ("two_object", "color_attr", "counting"):
        for seed in range(3):
            image, objects = render_scene(LINES[tag], seed, WORLD)
            shape, colour = labeller(image)
            assert shape.shape == colour.shape == (grid * grid,)
            want_shape, want_colour = np.zeros((grid, grid), np.int64), np.zeros((grid, grid), np.int64)
            for obj in objects:
                x1, y1, x2, y2 = obj.box
                want_shape[y1 // 4:y2 // 4, x1 // 4:x2 // 4] = 1 + WORLD.shapes.index(obj.shape)
                want_colour[y1 // 4:y2 // 4, x1 // 4:x2 // 4] = 1 + WORLD.colors.index(obj.color)
            assert (shape == want_shape.ravel()).all(), (tag, seed)
            assert (colour == want_colour.ravel()).all(), (tag, seed)
    with pytest.raises(ValueError, match="must divide"):
        ShapesPatchLabeller(WORLD, patch_size=5)
