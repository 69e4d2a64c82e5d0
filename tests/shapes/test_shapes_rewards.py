"""The shapes world's stand-ins for T2I-R1's detector and VQA rewards, on hand-painted scenes (exact detector)."""
import numpy as np
import pytest
import torch
from PIL import Image

from eval.shapes.data import load_data_config
from eval.shapes.render import render_scene, scene_seed, shape_mask
from eval.shapes.rewards import ShapesColorReward, ShapesDetectorReward
from eval.shapes.suite import build_shapes_suite
from reward_models.base import OutcomeJudge
from reward_models.detector_rules import DetectorRules


@pytest.fixture(scope="module")
def world():
    return load_data_config("shapes32").world


def paint(world, objects, size=32):
    """``objects``: (shape, colour, x, y, side) painted with the world's exact shape masks on its background."""
    canvas = np.full((size, size, 3), world.background_range[0], dtype=np.uint8)
    for shape, colour, x, y, side in objects:
        mask = shape_mask(shape, side, side)
        canvas[y: y + side, x: x + side][mask] = world.palette[colour]
    return Image.fromarray(canvas)


def test_judges_follow_the_protocol_and_score_ground_truth_renders(world):
    suite = build_shapes_suite(load_data_config("shapes32"))
    lines = [line for line in suite.eval if line["tag"] in ("single_object", "two_object", "counting", "colors",
                                                             "color_attr")][:20]
    images = [render_scene(line, scene_seed(0, i, 0), world)[0] for i, line in enumerate(lines)]
    prompts = [line["prompt"] for line in lines]
    detector, colours = ShapesDetectorReward(world), ShapesColorReward(world)
    assert isinstance(detector, OutcomeJudge) and isinstance(colours, OutcomeJudge)
    assert detector.score(prompts, images).scores.tolist() == [1.0] * len(lines)
    scores = colours.score(prompts, images).scores.tolist()
    for line, score in zip(lines, scores):  # GIT's rule: numeracy prompts score 0, everything else 1 when right
        assert score == (0.0 if line["tag"] == "counting" else 1.0), line["prompt"]


def test_above_is_credited_only_with_the_fix(world):
    image = paint(world, [("square", "red", 12, 2, 8), ("circle", "blue", 12, 20, 8)])
    prompt = ["a photo of a square above a circle"]
    fixed = ShapesDetectorReward(world).score(prompt, [image]).scores.item()
    official = ShapesDetectorReward(world, rules=DetectorRules.official()).score(prompt, [image]).scores.item()
    assert fixed == pytest.approx(0.9)  # 0.2 + 0.2 presence + 1 / 2 position
    assert official == pytest.approx(0.4)  # no branch for "above": presence only
    wrong = ShapesDetectorReward(world).score(["a photo of a circle above a square"], [image]).scores.item()
    assert wrong == pytest.approx(0.4)


def test_counts_and_colours(world):
    two = paint(world, [("circle", "red", 2, 2, 8), ("circle", "red", 20, 20, 8)])
    detector, colours = ShapesDetectorReward(world), ShapesColorReward(world)
    scores = detector.score(["a photo of two circles", "a photo of three circles", "a photo of two squares"],
                            [two] * 3).scores.tolist()
    assert scores == pytest.approx([1.0, 0.2, 0.0])  # right count, wrong count, none
    got = colours.score(["a photo of a red circle", "a photo of a blue circle", "a photo of a red square"],
                        [two] * 3).scores.tolist()
    assert got == [1.0, 0.0, 0.0]
    pair = paint(world, [("circle", "red", 2, 2, 8), ("square", "green", 20, 20, 8)])
    got = colours.score(["a photo of a red circle and a green square", "a photo of a red circle and a blue square"],
                        [pair] * 2).scores.tolist()
    assert got == [1.0, 0.5]


def test_the_shapes_t2i_r1_ensemble_sums_its_three_experts(world):
    from hydra.utils import instantiate

    from reward_models.ensemble import Identity, JudgeEnsemble
    from tests.helpers import compose_option

    ensemble = instantiate(compose_option("reward", "shapes_t2i_r1"))
    assert isinstance(ensemble, JudgeEnsemble) and isinstance(ensemble.normalizer, Identity)
    assert list(ensemble.judges) == ["gdino", "git", "orm"] and set(ensemble.weights.values()) == {1.0}
    image = paint(world, [("circle", "red", 2, 2, 8), ("square", "green", 20, 20, 8)])
    prompts = ["a photo of a red circle and a green square", "a photo of a blue triangle"]
    out = ensemble.score(prompts, [image, image], group_size=1)
    assert out.components["gdino"].tolist() == [1.0, 0.0] and out.components["git"].tolist() == [1.0, 0.0]
    assert ((out.components["orm"] > 0) & (out.components["orm"] < 1)).all()  # the tiny ORM's P("yes")
    # the official combination: the plain sum of the raw rewards (float32 sums in another order: 1e-6)
    torch.testing.assert_close(out.scores, sum(out.components[n] for n in ensemble.judges), atol=1e-6, rtol=0)
