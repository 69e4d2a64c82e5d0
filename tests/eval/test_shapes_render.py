"""Shapes-world renderer: scenes satisfy their metadata, determinism per seed, palette, grid, configs."""
import collections
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from eval.geneval import suite as gs
from eval.shapes.render import (
    DEFAULT_PALETTE, SHAPE_MASKS, ShapesWorld, image_grid, relation_holds, render_from_prompt_metadata, render_scene,
    shape_mask,
)
from eval.shapes.suite import ShapesSuiteConfig, build_shapes_suite, shapes_vocabulary

REPO = Path(__file__).resolve().parents[2]
WORLD = ShapesWorld()
WORLD32 = ShapesWorld(canvas_size=32, shapes=("circle", "square", "triangle"), size_range=(0.22, 0.32), min_gap=2)


def scenes(world, n_lines, seed=0):
    suite = gs.generate_suite(shapes_vocabulary(world), n_lines, seed=seed)
    for i, md in enumerate(suite):
        image, objects = render_scene(md, np.random.default_rng([seed, i]), world)
        yield md, image, objects


def test_palette_is_separable_from_itself_and_the_background():
    colors = np.array(list(DEFAULT_PALETTE.values()), float)
    pair = min(np.linalg.norm(a - b) for a, b in itertools.combinations(colors, 2))
    lo, hi = WORLD.background_range
    to_bg = min(np.linalg.norm(c - g) for c in colors for g in range(lo, hi + 1))
    assert pair > 100 and to_bg > 100
    assert tuple(DEFAULT_PALETTE) == gs.GENEVAL_COLORS


@pytest.mark.parametrize("shape", sorted(SHAPE_MASKS))
def test_shape_masks_fill_their_box(shape):
    for n in range(4, 41):
        m = shape_mask(shape, n, n)
        assert m[0].any() and m[-1].any() and m[:, 0].any() and m[:, -1].any(), (shape, n)
        assert np.array_equal(m, m[:, ::-1]), "shapes are left-right symmetric"


def test_shape_areas_by_hand():
    n = 60
    assert shape_mask("square", n, n).sum() == n * n
    assert abs(shape_mask("circle", n, n).sum() / n**2 - np.pi / 4) < 0.01
    assert abs(shape_mask("triangle", n, n).sum() / n**2 - 0.5) < 0.03
    assert abs(shape_mask("diamond", n, n).sum() / n**2 - 0.5) < 0.03
    assert abs(shape_mask("cross", n, n).sum() / n**2 - 5 / 9) < 0.02


@pytest.mark.parametrize("world", [WORLD, WORLD32], ids=["64px", "32px"])
def test_scenes_satisfy_their_metadata(world):
    judge = pytest.importorskip("eval.geneval.judge")
    size = world.canvas_size
    for md, image, objects in scenes(world, 120):
        assert image.size == (size, size) and image.mode == "RGB"
        pixels = np.asarray(image)
        # Classes, counts and colours per include requirement.
        for g, req in enumerate(md["include"]):
            group = [o for o in objects if o.group == g]
            assert len(group) == req["count"] and all(o.shape == req["class"] for o in group), md["prompt"]
            if "color" in req:
                assert all(o.color == req["color"] for o in group)
        assert len(objects) == sum(r["count"] for r in md["include"])  # no distractors
        background = ~np.any([o.mask for o in objects], axis=0)
        assert len(np.unique(pixels[background].reshape(-1, 3), axis=0)) == 1
        for o in objects:
            x1, y1, x2, y2 = o.box
            assert 0 <= x1 < x2 <= size and 0 <= y1 < y2 <= size
            ys, xs = np.nonzero(o.mask)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == o.box  # tight, x2/y2 exclusive
            assert (pixels[o.mask] == world.palette[o.color]).all()
        for a, b in itertools.combinations(objects, 2):  # gap of min_gap pixels between boxes
            ax1, ay1, ax2, ay2 = a.box
            bx1, by1, bx2, by2 = b.box
            assert ax2 + world.min_gap <= bx1 or bx2 + world.min_gap <= ax1 or \
                ay2 + world.min_gap <= by1 or by2 + world.min_gap <= ay1
        # Position with the judge's own rule (an independent implementation).
        for g, req in enumerate(md["include"]):
            if "position" in req:
                relation, target = req["position"]
                for a in (o for o in objects if o.group == g):
                    for b in (o for o in objects if o.group == target):
                        got = judge.relative_position(np.array([*a.box, 1.0], np.float32),
                                                      np.array([*b.box, 1.0], np.float32), 0.1)
                        assert relation in got, (md["prompt"], a.box, b.box, got)


def test_position_margin_by_hand():
    a, b = (0, 0, 10, 10), (20, 0, 30, 10)  # A 20 px left of B: reduced dx = -(20 - 0.1 * 20) / 20 = -0.9
    assert relation_holds("left of", a, b, margin=0.3) and not relation_holds("right of", a, b)
    c = (20, 14, 30, 24)  # offset (20, 14): dx = 18 / 24.41 = 0.737, dy = 12 / 24.41 = 0.49
    assert relation_holds("right of", c, a, margin=0.2) and not relation_holds("right of", c, a, margin=0.25)
    assert not relation_holds("below", c, a)


def test_deterministic_per_seed_and_generator_kinds():
    md = gs.counting("triangle", 3)
    a, objs_a = render_scene(md, np.random.default_rng(7))
    b, objs_b = render_scene(md, np.random.default_rng(7))
    c, _ = render_scene(md, np.random.default_rng(8))
    assert a.tobytes() == b.tobytes() and [o.box for o in objs_a] == [o.box for o in objs_b]
    assert a.tobytes() != c.tobytes()
    assert render_scene(md, 7)[0].tobytes() == a.tobytes()
    t1 = render_scene(md, torch.Generator().manual_seed(3))[0]
    t2 = render_scene(md, torch.Generator().manual_seed(3))[0]
    assert t1.tobytes() == t2.tobytes()


def test_suite_rendering_is_batch_independent_and_writes_geneval_layout(tmp_path):
    suite = gs.generate_suite(shapes_vocabulary(WORLD), 12, seed=0)
    full = {(i, k): im.tobytes() for i, k, im, _ in render_from_prompt_metadata(suite, WORLD, 2, seed=5,
                                                                                 out_dir=tmp_path)}
    part = {(i + 3, k): im.tobytes() for i, k, im, _ in render_from_prompt_metadata(suite[3:5], WORLD, 2, seed=5)}
    assert len(full) == 24 and all(full[key] != part[key] for key in part)  # seeds are per (index in suite, k)
    again = render_from_prompt_metadata(suite[:5], WORLD, 2, seed=5)
    assert all(full[(i, k)] == im.tobytes() for i, k, im, _ in again)
    assert json.loads((tmp_path / "00003" / "metadata.jsonl").read_text()) == suite[3]
    png = tmp_path / "00003" / "samples" / "0001.png"
    assert np.asarray(Image.open(png)).tobytes() == full[(3, 1)]
    before = png.stat().st_mtime_ns
    list(render_from_prompt_metadata(suite, WORLD, 2, seed=5, out_dir=tmp_path))  # resume: existing files kept
    assert png.stat().st_mtime_ns == before
    assert not list(tmp_path.rglob("*.tmp*"))
    with pytest.raises(ValueError, match="00000.metadata.jsonl"):
        list(render_from_prompt_metadata(suite[1:], WORLD, 1, seed=5, out_dir=tmp_path))


def test_bad_metadata_and_config_raise_clearly():
    with pytest.raises(ValueError, match="hexagon"):
        render_scene(gs.single_object("hexagon"), 0)
    with pytest.raises(ValueError, match="teal"):
        render_scene(gs.colors("circle", "teal"), 0)
    with pytest.raises(ValueError, match="shapes"):
        ShapesWorld(shapes=("circle", "blob"))
    with pytest.raises(RuntimeError, match="cannot place"):
        render_scene(gs.counting("square", 10), 0, ShapesWorld(canvas_size=32, size_range=(0.3, 0.4), max_tries=5))


def test_image_grid_layout():
    red = Image.new("RGB", (10, 8), (255, 0, 0))
    blue = Image.new("RGB", (10, 8), (0, 0, 255))
    grid = image_grid([red, blue, red], nrow=2, pad=1)
    assert grid.size == (1 + 2 * 11, 1 + 2 * 9)
    px = np.asarray(grid)
    assert tuple(px[1, 1]) == (255, 0, 0) and tuple(px[1, 12]) == (0, 0, 255) and tuple(px[10, 1]) == (255, 0, 0)
    assert tuple(px[10, 12]) == (255, 255, 255)  # empty fourth cell
    labelled = image_grid([red, blue], nrow=2, labels=["a", "b"], pad=1)
    assert labelled.size == (23, 1 + 8 + 12 + 1)
    assert (np.asarray(labelled)[9:21] != 255).any()  # caption drawn under the cells
    with pytest.raises(ValueError, match="labels"):
        image_grid([red], nrow=1, labels=["a", "b"])


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "configs" / "data").glob("shapes*.yaml")))
def test_data_configs_instantiate(name):
    hydra = pytest.importorskip("hydra")
    from hydra.utils import instantiate

    with hydra.initialize_config_dir(config_dir=str(REPO / "configs" / "data"), version_base="1.3"):
        cfg = hydra.compose(config_name=name)
    config = instantiate(cfg)
    assert isinstance(config, ShapesSuiteConfig) and isinstance(config.world, ShapesWorld)
    built = build_shapes_suite(config)
    assert built.train and built.eval
    assert not {md["prompt"] for md in built.train} & {md["prompt"] for md in built.eval}
    render_scene(built.eval[0], 0, config.world)


def test_training_lines_exclude_every_eval_prompt_and_balance_tasks():
    from eval.shapes.suite import images_per_line, training_lines

    pytest.importorskip("hydra")
    from eval.shapes.data import load_data_config

    built = build_shapes_suite(load_data_config("shapes32"))
    held_out = {md["prompt"] for md in built.eval}
    space = training_lines(built, "space")
    assert not held_out & {md["prompt"] for md in space}
    assert {md["prompt"] for md in built.train} <= {md["prompt"] for md in space}
    vocab = shapes_vocabulary(built.config.world, built.config.counts)
    assert len(space) == sum(gs.tag_capacity(t, vocab) for t in gs.TAGS) - len(held_out)
    assert training_lines(built, "split") == built.train
    with pytest.raises(ValueError, match="training source"):
        training_lines(built, "eval")
    counts = images_per_line(space, 8, 4096)
    per_tag = collections.Counter()
    for md, n in zip(space, counts):
        per_tag[md["tag"]] += n
    assert min(counts) == 8 and all(4096 <= per_tag[t] < 4096 + per_tag_lines for t, per_tag_lines in
                                    collections.Counter(md["tag"] for md in space).items())
    assert images_per_line(space, 3) == [3] * len(space)


def test_render_pixels_with_a_count_per_line():
    from eval.shapes.data import render_pixels

    pytest.importorskip("hydra")
    from eval.shapes.data import load_data_config

    built = build_shapes_suite(load_data_config("shapes32"))
    world, lines = built.config.world, built.train[:3]
    prompts, pixels = render_pixels(lines, world, [1, 0, 2], seed=5)
    assert prompts == [lines[0]["prompt"], lines[2]["prompt"], lines[2]["prompt"]] and pixels.shape == (3, 3, 32, 32)
    _, same = render_pixels(lines, world, 2, seed=5)  # line i, scene k: the same scene whatever the other counts
    assert torch.equal(pixels[0], same[0]) and torch.equal(pixels[1:], same[4:])
    with pytest.raises(ValueError, match="2 image counts for 3 lines"):
        render_pixels(lines, world, [1, 1], seed=5)
