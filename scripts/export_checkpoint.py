"""Copy a checkpoint directory with its floating-point weights stored in another dtype (common.io.export_checkpoint).

    python scripts/export_checkpoint.py SRC OUT [--dtype bfloat16] [--keep vq] [--exclude vq]

How the shapes world's committed checkpoints were made from the recipes' ``final/`` directories (docs/shapes_world.md):
the Show-o and judge weights in bfloat16 (they load into float32 models), the MAGVIT-v2 (``vq/``) unchanged.
"""
from __future__ import annotations

import argparse

import torch

from common.io import export_checkpoint


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src")
    parser.add_argument("out")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--keep", nargs="*", default=["vq"], help="sub-folders copied unchanged (default: the MAGVIT-v2)")
    parser.add_argument("--exclude", nargs="*", default=[], help="sub-folders left out")
    args = parser.parse_args(argv)
    out = export_checkpoint(args.src, args.out, getattr(torch, args.dtype), args.keep, args.exclude)
    kept = [k for k in args.keep if k not in args.exclude]
    print(f"{args.src} -> {out} (floating-point weights in {args.dtype}, copied unchanged: {kept}, left out: "
          f"{args.exclude})")


if __name__ == "__main__":
    main()
