"""Convert a LLaVA-NeXT ``llava_qwen`` judge (e.g. ``ckpts/orm_ft``, ``ckpts/parm``) into a transformers directory.

Usage: ``python scripts/convert_llava_next.py SRC DST [--vision-heads 16] [--dtype bfloat16] [--image-view pad]``.
See :mod:`reward_models.convert` for the key mapping and the facts behind the config.
"""
from __future__ import annotations

import argparse
import sys

import torch

from reward_models.convert import ConvertOptions, convert_llava_next

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", help="LLaVA-NeXT checkpoint directory (config.json, weights, tokenizer files)")
    parser.add_argument("dst", help="new directory for the transformers LlavaOnevision checkpoint (must not exist)")
    parser.add_argument("--vision-heads", type=int, default=None, help="SigLIP attention heads (default: hidden/72)")
    parser.add_argument("--dtype", choices=sorted(_DTYPES), default=None, help="weight dtype (default: as stored)")
    parser.add_argument("--aspect-ratio", default=None, help="override image_aspect_ratio, e.g. anyres_max_9")
    parser.add_argument("--image-view", choices=["pad", "anyres"], default="pad",
                        help="the judge's default image view (pad: the released inference's single padded view)")
    args = parser.parse_args(argv)
    options = ConvertOptions(
        vision_num_attention_heads=args.vision_heads,
        dtype=_DTYPES[args.dtype] if args.dtype else None,
        vision_aspect_ratio=args.aspect_ratio,
        image_view=args.image_view,
    )
    try:
        out = convert_llava_next(args.src, args.dst, options)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
