"""Shapes detector + colour classifier: exact recovery of rendered ground truth, robustness, and the GenEval judge."""
import collections

import numpy as np
import pytest
from PIL import Image, ImageFilter

from eval.geneval import suite as gs
from eval.geneval.types import ColorClassifier, Detector, ImageDetections
from eval.shapes.detector import ShapesColorClassifier, ShapesDetector, label_components
from eval.shapes.render import ShapesWorld, render_from_prompt_metadata, render_scene
from eval.shapes.suite import ShapesSuiteConfig, build_shapes_suite, shapes_vocabulary

WORLD = ShapesWorld()
WORLD32 = ShapesWorld(canvas_size=32, shapes=("circle", "square", "triangle"), size_range=(0.22, 0.32), min_gap=2)


def scenes(world, n_lines, seed=0, per_line=1):
    suite = gs.generate_suite(shapes_vocabulary(world), n_lines, seed=seed)
    for i, md in enumerate(suite):
        for k in range(per_line):
            image, objects = render_scene(md, np.random.default_rng([seed, i, k]), world)
            yield md, image, objects


def degrade(image, seed, blur=0.6, noise=6.0):
    """Roughly what a tiny VQ decoder leaves: soft edges and pixel noise."""
    blurred = np.asarray(image.filter(ImageFilter.GaussianBlur(blur)), np.float64)
    noisy = blurred + np.random.default_rng(seed).normal(0.0, noise, blurred.shape)
    return Image.fromarray(np.clip(np.round(noisy), 0, 255).astype(np.uint8))


def detections_as_rows(det: ImageDetections, class_names):
    rows = []
    for label, cd in det.by_label.items():
        for box, mask in zip(cd.bboxes, cd.masks):
            rows.append((class_names[label], tuple(int(v) for v in box[:4]), float(box[4]), mask))
    return sorted(rows, key=lambda r: (r[0], r[1]))


def test_label_components_by_hand():
    mask = np.array([
        [1, 1, 0, 0, 1],
        [0, 1, 0, 1, 1],
        [1, 0, 0, 0, 0],
        [1, 0, 1, 1, 1],
    ], bool)
    labels, n = label_components(mask)
    assert n == 4  # 4-connectivity: the diagonal pixel (2, 0) is not joined to (1, 1)
    groups = {tuple(map(tuple, np.argwhere(labels == i))) for i in range(1, n + 1)}
    assert groups == {((0, 0), (0, 1), (1, 1)), ((0, 4), (1, 3), (1, 4)), ((2, 0), (3, 0)), ((3, 2), (3, 3), (3, 4))}
    assert (labels[~mask] == 0).all()
    assert label_components(np.zeros((3, 3), bool))[1] == 0
    assert label_components(np.ones((3, 3), bool))[1] == 1


def test_protocols():
    assert isinstance(ShapesDetector(WORLD), Detector)
    assert isinstance(ShapesColorClassifier(WORLD), ColorClassifier)
    assert tuple(ShapesDetector(WORLD).class_names) == WORLD.shapes


@pytest.mark.parametrize("world", [WORLD, WORLD32], ids=["64px", "32px"])
def test_detector_recovers_rendered_ground_truth_exactly(world):
    detector, colors = ShapesDetector(world), ShapesColorClassifier(world)
    n_images = 0
    for md, image, objects in scenes(world, 100, seed=1, per_line=2):
        det = detector.detect([image])[0]
        assert det.image_size == image.size
        rows = detections_as_rows(det, detector.class_names)
        truth = sorted(objects, key=lambda o: (o.shape, o.box))
        assert [(r[0], r[1]) for r in rows] == [(o.shape, o.box) for o in truth], md["prompt"]
        assert all(r[2] == 1.0 for r in rows)
        assert all(np.array_equal(r[3], o.mask) for r, o in zip(rows, truth))
        for label, cd in det.by_label.items():
            assert cd.bboxes.dtype == np.float32 and cd.masks.dtype == bool
            got = colors.classify(image, cd.bboxes, cd.masks, detector.class_names[label])
            want = [o.color for o in sorted((o for o in objects if o.shape == detector.class_names[label]),
                                            key=lambda o: o.box)]
            order = np.lexsort((cd.bboxes[:, 3], cd.bboxes[:, 2], cd.bboxes[:, 1], cd.bboxes[:, 0]))
            assert [got[i] for i in order] == want
        n_images += 1
    assert n_images >= 120


def test_detector_is_robust_to_mild_blur_and_noise():
    detector, colors = ShapesDetector(WORLD), ShapesColorClassifier(WORLD)
    for i, (md, image, objects) in enumerate(scenes(WORLD, 100, seed=2)):
        noisy = degrade(image, seed=i)
        rows = detections_as_rows(detector.detect_one(noisy), detector.class_names)
        truth = sorted(objects, key=lambda o: (o.shape, o.box))
        assert [r[0] for r in rows] == [o.shape for o in truth], md["prompt"]
        for r, o in zip(rows, truth):
            assert max(abs(a - b) for a, b in zip(r[1], o.box)) <= 1, (md["prompt"], r[1], o.box)
            assert r[2] > 0.9  # still passes GenEval's counting threshold
            box = np.array([[*r[1], r[2]]], np.float32)
            assert colors.classify(noisy, box, r[3][None], r[0]) == [o.color]


def test_no_detections_on_background_and_non_shapes():
    detector = ShapesDetector(WORLD)
    empty = Image.new("RGB", (64, 64), (175, 175, 175))
    assert detector.detect_one(empty).by_label == {}
    pixels = np.full((64, 64, 3), 175, np.uint8)
    pixels[10:14, 10:50] = (220, 20, 30)  # a 4 x 40 red bar: no shape of this world (aspect 0.1)
    pixels[30:32, 30:32] = (30, 60, 230)  # a 2 x 2 blue speck: below min_area
    assert detector.detect_one(Image.fromarray(pixels)).by_label == {}


def test_color_classifier_mean_under_mask():
    pixels = np.full((8, 8, 3), 175, np.uint8)
    pixels[:4, :4] = (250, 240, 30)
    pixels[4:, 4:] = (120, 60, 30)  # not a palette colour; nearest is brown (110, 60, 20)
    masks = np.zeros((2, 8, 8), bool)
    masks[0, :4, :4] = True
    masks[1, 4:, 4:] = True
    boxes = np.array([[0, 0, 4, 4, 1], [4, 4, 8, 8, 1]], np.float32)
    classifier = ShapesColorClassifier(WORLD)
    assert classifier.classify(Image.fromarray(pixels), boxes, masks, "square") == ["yellow", "brown"]
    with pytest.raises(ValueError, match="do not match"):
        classifier.classify(Image.fromarray(pixels), boxes, masks[:, :4], "square")


def judge_per_tag(lines, world, images_per_prompt, transform=None):
    judge = pytest.importorskip("eval.geneval.judge")
    detector, colors = ShapesDetector(world), ShapesColorClassifier(world)
    total, correct = collections.Counter(), collections.Counter()
    for i, k, image, _ in render_from_prompt_metadata(lines, world, images_per_prompt, seed=0):
        if transform is not None:
            image = transform(image, 1000 * i + k)
        verdict = judge.judge_image(lines[i], detector.detect_one(image), image, colors, detector.class_names)
        total[lines[i]["tag"]] += 1
        correct[lines[i]["tag"]] += verdict.correct
    return {tag: correct[tag] / total[tag] for tag in total}, total


@pytest.mark.parametrize("world", [WORLD, WORLD32], ids=["64px", "32px"])
def test_geneval_judge_passes_rendered_eval_split(world):
    suite = build_shapes_suite(ShapesSuiteConfig(world=world))
    accuracy, total = judge_per_tag(suite.eval, world, images_per_prompt=4)
    assert set(accuracy) == set(gs.TAGS)
    assert all(acc >= 0.99 for acc in accuracy.values()), (accuracy, total)


def test_geneval_judge_passes_degraded_renders():
    suite = build_shapes_suite(ShapesSuiteConfig(world=WORLD))
    accuracy, total = judge_per_tag(suite.eval, WORLD, images_per_prompt=2, transform=degrade)
    assert all(acc >= 0.97 for acc in accuracy.values()), (accuracy, total)


def test_geneval_judge_rejects_mismatched_renders():
    """Negative control: an image rendered for another prompt of the same tag must (almost always) fail."""
    judge = pytest.importorskip("eval.geneval.judge")
    detector, colors = ShapesDetector(WORLD), ShapesColorClassifier(WORLD)
    lines = build_shapes_suite(ShapesSuiteConfig(world=WORLD)).eval
    by_tag = collections.defaultdict(list)
    for md in lines:
        by_tag[md["tag"]].append(md)
    failures = collections.Counter()
    for tag, group in by_tag.items():
        for a, b in zip(group, group[1:]):
            image, _ = render_scene(b, 0, WORLD)
            failures[tag] += not judge.judge_image(a, detector.detect_one(image), image, colors,
                                                   detector.class_names).correct
    assert sum(failures.values()) >= 0.8 * sum(len(g) - 1 for g in by_tag.values()), failures
