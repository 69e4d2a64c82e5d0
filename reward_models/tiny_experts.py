"""Tiny random GroundingDINO and GIT checkpoints in the transformers format, for tests and CPU stand-ins.

Each builder saves a model + processor directory that the reward experts load like a real checkpoint (local
directory, safetensors). The BERT-style word-level tokenizers hold a small fixed vocabulary (:data:`WORDS` plus any
``extra_words``); other words map to ``[UNK]``. Deterministic: the same seed gives identical weights, and the global
RNG state is restored afterwards.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import (
    BertConfig,
    BertTokenizerFast,
    CLIPImageProcessor,
    GitConfig,
    GitForCausalLM,
    GitProcessor,
    GroundingDinoConfig,
    GroundingDinoForObjectDetection,
    GroundingDinoImageProcessor,
    GroundingDinoProcessor,
    SwinConfig,
)

__all__ = ["WORDS", "build_tiny_git", "build_tiny_grounding_dino", "word_tokenizer"]

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    ". ? yes no a an the of and photo red green blue yellow purple pink brown black white orange cat dog car cup "
    "bench apple banana zebra bus bird clock person traffic light stop sign ice cream cone teddy bear left right "
    "above below top bottom near next to on side circle square triangle"
).split()


def word_tokenizer(extra_words: Sequence[str] = ()) -> BertTokenizerFast:
    """A lower-casing word-level BERT tokenizer over :data:`WORDS` and ``extra_words``."""
    words = list(dict.fromkeys([*SPECIAL, *WORDS, *(w.lower() for w in extra_words)]))
    return BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True)


def build_tiny_grounding_dino(
    directory: str | Path, *, seed: int = 0, image_size: int = 96, num_queries: int = 12, extra_words: Sequence[str] = ()
) -> Path:
    """Save a tiny GroundingDINO (Swin backbone, 1-layer BERT, 2 decoder layers) under ``directory``.

    ``image_size`` is the processor's shortest edge; 96 keeps the coarsest feature map at 2x2 (a 1x1 map breaks the
    GroupNorm of the input projections).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = word_tokenizer(extra_words)
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(
            image_size=image_size, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=4,
            out_features=["stage2", "stage3", "stage4"],
        ),
        text_config=BertConfig(
            vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=64,
        ),
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        encoder_attention_heads=2, decoder_attention_heads=2, num_queries=num_queries, encoder_n_points=2,
        decoder_n_points=2, disable_custom_kernels=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GroundingDinoForObjectDetection(config).eval()
    model.save_pretrained(directory, safe_serialization=True)
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": image_size, "longest_edge": image_size * 4 // 3})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    return directory


def build_tiny_git(directory: str | Path, *, seed: int = 0, image_size: int = 32, extra_words: Sequence[str] = ()) -> Path:
    """Save a tiny GIT (1-layer ViT, 2-layer text decoder) under ``directory``; "yes" and "no" are single tokens."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = word_tokenizer(extra_words)
    config = GitConfig(
        vision_config={
            "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
            "image_size": image_size, "patch_size": 16,
        },
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64, bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GitForCausalLM(config).eval()
    model.save_pretrained(directory, safe_serialization=True)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    GitProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    return directory
