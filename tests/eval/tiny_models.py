"""Tiny random models of every class the T2I-CompBench / WISE harnesses load, saved as local directories.

Built in the tests (nothing downloaded, ~1 s each): a BLIP VQA model with a small BERT word-piece vocabulary, an
OWL-ViT detector with a character-level CLIP BPE tokenizer, an open_clip model from a registered tiny config, and
(from :mod:`reward_models.tiny`) a LLaVA-OneVision VLM for the WISE judge.
"""
from __future__ import annotations

import json
from pathlib import Path

import open_clip
import torch

BLIP_WORDS = ("yes no a an the green blue red bench bowl cake cat dog cup chair table book top left right side "
              "of on near next to and with plate bottle").split()
TINY_CLIP_ARCH = "imagecot-test-tiny-clip-b32"
TINY_CLIP_CONFIG = {
    "embed_dim": 16,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def build_tiny_blip(directory: str | Path, seed: int = 0) -> Path:
    """A BlipForQuestionAnswering (32-px images, 1 layer each) and its BERT tokenizer with [DEC] / [ENC]."""
    from transformers import BertTokenizer, BlipConfig, BlipForQuestionAnswering

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "?", *BLIP_WORDS, "[DEC]", "[ENC]"]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    tokenizer.save_pretrained(directory)
    text = dict(vocab_size=len(vocab), hidden_size=32, encoder_hidden_size=32, intermediate_size=64,
                num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=64,
                bos_token_id=vocab.index("[DEC]"), pad_token_id=0, sep_token_id=vocab.index("[SEP]"),
                initializer_range=0.5)
    # Large random weights (0.5 instead of 0.02 / 1e-10) so that answers visibly depend on image and question.
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                  patch_size=16, initializer_range=0.5)
    config = BlipConfig(text_config=text, vision_config=vision, projection_dim=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BlipForQuestionAnswering(config).eval()
    model.save_pretrained(directory)
    return directory


def _char_clip_tokenizer():
    """A CLIP BPE tokenizer without merges: every word is spelled in byte-level characters."""
    from transformers import CLIPTokenizer

    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [" "]
    vocab = {}
    for c in chars:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[])


def build_tiny_owl(directory: str | Path, seed: int = 0) -> Path:
    """An OwlViTForObjectDetection (32-px images, 16 patches) with its processor."""
    from transformers import OwlViTConfig, OwlViTForObjectDetection, OwlViTImageProcessor, OwlViTProcessor

    directory = Path(directory)
    tokenizer = _char_clip_tokenizer()
    text = dict(vocab_size=len(tokenizer.get_vocab()), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=16, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                  patch_size=8)
    config = OwlViTConfig(text_config=text, vision_config=vision, projection_dim=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = OwlViTForObjectDetection(config).eval()
    model.save_pretrained(directory)
    image_processor = OwlViTImageProcessor(size={"height": 32, "width": 32}, crop_size={"height": 32, "width": 32})
    OwlViTProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    return directory


def build_tiny_clip(directory: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """(model config JSON, weights) of a tiny QuickGELU ViT open_clip model (registered under TINY_CLIP_ARCH)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / f"{TINY_CLIP_ARCH}.json"
    config.write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model(TINY_CLIP_ARCH, pretrained=None)
    weights = directory / "tiny_clip.pt"
    torch.save(model.state_dict(), weights)
    return config, weights
