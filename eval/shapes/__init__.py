"""The shapes world: GenEval in miniature (coloured shapes on 32-64 px canvases), see ``docs/shapes_world.md``.

- :mod:`eval.shapes.render`: ``ShapesWorld`` config, ``render_scene`` / ``render_from_prompt_metadata``, ``image_grid``;
- :mod:`eval.shapes.suite`: the GenEval-style prompt suite over shape names and its train / eval split;
- :mod:`eval.shapes.detector`: ``ShapesDetector`` / ``ShapesColorClassifier`` for the GenEval judge.
"""
from eval.shapes.detector import DetectorConfig, ShapesColorClassifier, ShapesDetector
from eval.shapes.render import GroundTruthObject, ShapesWorld, image_grid, render_from_prompt_metadata, render_scene
from eval.shapes.suite import ShapesSuite, ShapesSuiteConfig, build_shapes_suite, shapes_vocabulary

__all__ = [
    "DetectorConfig", "GroundTruthObject", "ShapesColorClassifier", "ShapesDetector", "ShapesSuite",
    "ShapesSuiteConfig", "ShapesWorld", "build_shapes_suite", "image_grid", "render_from_prompt_metadata",
    "render_scene", "shapes_vocabulary",
]
