"""The shapes world's tiny Janus-Pro: the plan rule, its vocabulary, the training triples, the committed checkpoint."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from eval.shapes.data import build_suite, render_pixels_and_objects
from eval.shapes.janus import janus_words, load_shapes_janus
from eval.shapes.plans import region, scene_plan
from eval.shapes.render import GroundTruthObject, render_scene, scene_seed
from janus.tiny import build_tiny_tokenizer

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "checkpoints" / "shapes" / "janus"
MAGVIT = REPO / "checkpoints" / "shapes" / "showo" / "vq"


def obj(shape, color, x, y, side=8):
    return GroundTruthObject(shape, color, (x, y, x + side, y + side), np.zeros((32, 32), bool), 0)


def test_regions_split_the_canvas_in_thirds_by_the_object_centre():
    # 32 px canvas: centres < 10.67 are left / top, >= 21.33 right / bottom
    assert region((0, 0, 8, 8), 32) == ("top", "left")
    assert region((8, 12, 16, 20), 32) == ("middle", "center")  # centre (12, 16)
    assert region((20, 24, 28, 32), 32) == ("bottom", "right")
    assert region((4, 24, 12, 32), 32) == ("bottom", "left")  # centre (8, 28)


def test_scene_plan_by_hand():
    assert scene_plan([obj("circle", "red", 0, 0)], 32) == "a red circle at the top left"
    plan = scene_plan([obj("circle", "orange", 12, 12), obj("square", "blue", 24, 12), obj("triangle", "red", 12, 24)],
                      32)
    assert plan == "an orange circle in the center, a blue square on the right and a red triangle at the bottom"
    with pytest.raises(ValueError, match="at least one object"):
        scene_plan([], 32)


def test_every_plan_and_prompt_is_in_the_tiny_janus_vocabulary():
    suite = build_suite("shapes32")
    world = suite.config.world
    tok = build_tiny_tokenizer(janus_words(world.shapes, world.colors, suite.config.counts))
    unk = tok.convert_tokens_to_ids("<unk>")
    for i, line in enumerate(suite.lines):
        _, objects = render_scene(line, scene_seed(0, i, 0), world)
        plan = scene_plan(objects, world.canvas_size)
        for text in (line["prompt"], plan, f"{line['prompt']}. {plan}"):
            assert unk not in tok(text, add_special_tokens=False)["input_ids"], text
        # the plan names every drawn object with its colour and shape, in drawing order
        assert plan.count(" at the ") + plan.count(" on the ") + plan.count(" in the center") == len(objects)
        assert [o.shape for o in objects] == [w for w in plan.replace(",", "").split() if w in world.shapes]


def test_render_pixels_and_objects_agree_with_render_scene():
    suite = build_suite("shapes32")
    lines = suite.train[:3]
    prompts, pixels, objects = render_pixels_and_objects(lines, suite.config.world, 2, 5)
    assert prompts == [line["prompt"] for line in lines for _ in range(2)] and pixels.shape == (6, 3, 32, 32)
    _, again = render_scene(lines[1], scene_seed(5, 1, 1), suite.config.world)
    assert [(o.shape, o.color, o.box) for o in objects[3]] == [(o.shape, o.color, o.box) for o in again]


@pytest.mark.skipif(not (COMMITTED / "config.json").is_file(), reason="checkpoints/shapes/janus not committed here")
def test_committed_tiny_janus_plans_and_draws_32px_images():
    bundle = load_shapes_janus(COMMITTED, MAGVIT)
    assert bundle.layout.grid == (8, 8) and bundle.layout.codebook_size == 1024
    assert next(bundle.model.parameters()).dtype == torch.float32  # bfloat16 on disk
    pipe = bundle.pipeline(cot={"temperature": 1.0, "top_k": 50, "max_new_tokens": 64, "system_prompt": "",
                                "instruction": 'Provide a brief, precise visualization of all elements in this '
                                               'prompt: "{}"'})
    out = pipe(["a photo of a red circle"], generator=[torch.Generator().manual_seed(0)], rows_per_step=2)
    assert out.images[0].size == (32, 32) and out.cots[0]
    unk = bundle.tokenizer.convert_tokens_to_ids("<unk>")
    assert unk not in bundle.tokenizer(out.cots[0], add_special_tokens=False)["input_ids"]
