"""Builders of the shapes world's tiny models (Hydra ``_target_`` of ``configs/model/showo_shapes.yaml``).

:func:`build_shapes_showo` is the starting point of the tiny Show-o recipe: a freshly initialised tiny Show-o
(:func:`showo.factory.build_tiny_showo`) whose word tokenizer covers every word a shapes prompt can use, paired with
a trained tiny MAGVIT-v2 loaded from its directory (``scripts/train_magvit.py`` writes ``<run>/final``). The number
of image tokens follows from the VQ model (``MagvitConfig.num_codes``), so the two always agree.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from eval.geneval.suite import plural
from showo.factory import ShowoBundle, build_tiny_showo
from showo.magvit import MAGVITv2

# Words of the six GenEval templates besides class and colour names (eval/geneval/suite.py phrasing).
TEMPLATE_WORDS = ("a", "an", "photo", "of", "and", "left", "right", "above", "below")
COUNT_WORDS = {2: "two", 3: "three", 4: "four"}
# Words of the GenEval judge's failure reasons (eval/geneval/judge.py), split like the word tokenizer splits them
# (``expected square>=1, found 0`` -> expected / square / >= / 1 / , / found / 0): the PARM++ explanations that the
# self-correction fine-tuned Show-o reads.
REASON_WORDS = ("expected", "found", "no", "target", "for", "to", "be", ">=", "<", ",", ";",
                *(str(n) for n in range(10)))


def shapes_words(shapes: Sequence[str], colors: Sequence[str], counts: Sequence[int] = (2, 3, 4)) -> list[str]:
    """Every word of every prompt the suite generator can write for this vocabulary and of the judge's failure
    reasons (sorted, unique)."""
    missing = [n for n in counts if n not in COUNT_WORDS]
    if missing:
        raise ValueError(f"counts {missing} have no number word (known: {sorted(COUNT_WORDS)})")
    words = {*TEMPLATE_WORDS, *REASON_WORDS, *shapes, *(plural(s) for s in shapes), *colors,
             *(COUNT_WORDS[n] for n in counts)}
    return sorted(w.lower() for w in words)


def build_shapes_showo(vq_directory: str | os.PathLike, shapes: Sequence[str], colors: Sequence[str],
                       counts: Sequence[int] = (2, 3, 4), *, hidden_size: int = 128, num_hidden_layers: int = 3,
                       num_attention_heads: int = 4, intermediate_size: int = 512, max_seq_length: int = 16,
                       seed: int = 0, max_position_embeddings: int = 256, device: str = "cpu") -> ShowoBundle:
    """Fresh tiny Show-o over the shapes vocabulary + the trained MAGVIT-v2 in ``vq_directory`` (frozen, eval)."""
    vq_directory = Path(vq_directory)
    if not vq_directory.is_dir():
        raise FileNotFoundError(f"MAGVIT-v2 directory not found: {vq_directory} (train it with scripts/train_magvit.py)")
    vq = MAGVITv2.from_pretrained(vq_directory, device=device)
    bundle = build_tiny_showo(shapes_words(shapes, colors, counts), num_image_tokens=vq.config.num_codes,
                              codebook_dim=vq.config.codebook_dim, hidden_size=hidden_size,
                              num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
                              intermediate_size=intermediate_size, max_seq_length=max_seq_length, vq=None, seed=seed,
                              max_position_embeddings=max_position_embeddings)
    bundle.model.to(device)
    return ShowoBundle(bundle.model, bundle.layout, bundle.tokenizer, vq.requires_grad_(False))
