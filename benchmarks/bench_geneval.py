"""Throughput of the pure-PyTorch GenEval detector: one image per forward vs batched, measured in one run.

    python benchmarks/bench_geneval.py                       # fixture-width model, fixture image size, CPU
    python benchmarks/bench_geneval.py --checkpoint M2F.pth --official --device cuda --images 16 --batch 8

Prints images/s of each mode and the batched / one-by-one ratio (the baseline is measured in the same run, so the
ratio is meaningful on a shared machine; absolute numbers are not). Defaults use ``fixtures/mask2former_tiny``
(reduced widths, official depths) on its 256×256 case image, which the pipeline rescales to 800×800 like GenEval's
512×512 images.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from PIL import Image

from eval.geneval.detectors import Mask2FormerDetector
from eval.geneval.mask2former import Mask2FormerConfig

SHARED = Path(os.environ.get("IMAGECOT_SHARED", Path(__file__).resolve().parents[2] / "shared"))
TINY = SHARED / "fixtures" / "mask2former_tiny"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=TINY / "weights_mmdet3.safetensors")
    p.add_argument("--config-json", type=Path, default=TINY / "config.json", help="ignored with --official")
    p.add_argument("--official", action="store_true", help="official Swin-S widths (needs the real checkpoint)")
    p.add_argument("--image", type=Path, default=TINY / "cases" / "a_256x256" / "image.png")
    p.add_argument("--images", type=int, default=4, help="images per timed pass")
    p.add_argument("--batch", type=int, default=4, help="batch size of the batched mode")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads on CPU (default: torch's choice)")
    p.add_argument("--repeats", type=int, default=2, help="timed passes per mode (best is reported)")
    return p.parse_args()


def images_per_second(detector: Mask2FormerDetector, images: list[Image.Image], repeats: int, device: str) -> float:
    """Best of ``repeats`` full passes (pre-processing, model, post-processing, per-class grouping)."""
    best = float("inf")
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        detector.detect(images)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return len(images) / best


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = Mask2FormerConfig() if args.official else Mask2FormerConfig.from_json(args.config_json)
    detector = Mask2FormerDetector(args.checkpoint, config, dtype=args.dtype, device=args.device, batch_size=1)
    image = Image.open(args.image).convert("RGB")
    images = [image.copy() for _ in range(args.images)]
    detector.detect(images[:1])  # warm-up (allocator, kernels)
    one = images_per_second(detector, images, args.repeats, args.device)
    detector.batch_size = args.batch
    batched = images_per_second(detector, images, args.repeats, args.device)
    print(f"device={args.device} dtype={args.dtype} threads={torch.get_num_threads()} image={image.size} "
          f"model={'official' if args.official else 'fixture-width'} images={args.images}")
    print(f"one-by-one : {one:8.3f} images/s")
    print(f"batch {args.batch:<4} : {batched:8.3f} images/s")
    print(f"ratio batched / one-by-one: {batched / one:.2f}x")


if __name__ == "__main__":
    main()
