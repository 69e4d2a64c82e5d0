"""Acceptance check of a shapes-world image tokenizer: semantic, not a PSNR.

:func:`reconstruction_accuracy` runs the real GenEval judge with the exact shapes detector on reconstructions of
rendered ground truth, so a tokenizer that merges colours or rounds triangles into blobs fails here even when its
pixel error is small (the training loss is :mod:`showo.magvit_loss`).
"""
from __future__ import annotations

from typing import Sequence

import torch

from eval.geneval.judge import judge_image
from eval.shapes.data import render_pixels
from eval.shapes.detector import ShapesColorClassifier, ShapesDetector
from eval.shapes.render import ShapesWorld
from showo.magvit import MAGVITv2, to_pil


@torch.no_grad()
def reconstruction_accuracy(vq: MAGVITv2, lines: Sequence[dict], world: ShapesWorld, images_per_prompt: int = 2,
                            seed: int = 1, batch_size: int = 64) -> dict[str, float]:
    """GenEval judge accuracy (shapes detector) on rendered scenes and on their VQ reconstructions.

    Returns ``{"images", "original_accuracy", "reconstruction_accuracy", "codes_used"}``; the original accuracy is
    1.0 by construction of the detector (a sanity check of the setup), the reconstruction accuracy is the tokenizer's.
    """
    detector, colors = ShapesDetector(world), ShapesColorClassifier(world)
    _, pixels = render_pixels(lines, world, images_per_prompt, seed)
    metadata = [line for line in lines for _ in range(images_per_prompt)]
    vq = vq.eval()
    correct = {"original": 0, "reconstruction": 0}
    codes_seen = set()
    for start in range(0, len(pixels), batch_size):
        batch = pixels[start: start + batch_size].to(next(vq.parameters()).device)
        codes = vq.encode(batch)
        codes_seen.update(codes.unique().tolist())
        originals, recons = to_pil(batch), to_pil(vq.decode(codes))
        for md, orig, rec in zip(metadata[start: start + batch_size], originals, recons):
            for name, image in (("original", orig), ("reconstruction", rec)):
                verdict = judge_image(md, detector.detect_one(image), image, colors, detector.class_names)
                correct[name] += bool(verdict.correct)
    n = len(pixels)
    return {"images": float(n), "original_accuracy": correct["original"] / n,
            "reconstruction_accuracy": correct["reconstruction"] / n, "codes_used": float(len(codes_seen))}
