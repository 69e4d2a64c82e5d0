"""Tiny stand-ins for the released Show-o checkpoints, in the official file formats (for rehearsals on a CPU).

A rehearsal runs the real-scale recipes and row scripts (``scripts/geneval/*.sh``) end to end on checkpoints that
are laid out exactly like the downloads they stand in for, but hold tiny random networks:

* :func:`build_phi_tokenizer` — a ``microsoft/phi-1_5``-style tokenizer directory: byte-level BPE (GPT-2 family),
  ``<|endoftext|>`` as bos = eos = unk, nothing added automatically (``tokenizer.json`` + ``tokenizer_config.json``);
* :func:`build_standin_magvit` — a ``showlab/magvitv2``-style directory (``config.json`` as released, i.e. without
  constructor values, + ``pytorch_model.safetensors``; the narrow widths are read back from the weight shapes);
* :func:`build_standin_showo` — a ``showlab/show-o``-style directory (diffusers ``config.json`` with the vocabulary
  fields, ``pytorch_model.safetensors``, the Phi config it names as ``llm_model_path``), written by
  :func:`showo.checkpoint.save_pretrained`.

Every network keeps the real *geometry* that the code paths depend on (16 x 16 = 256 image tokens, a 128-token text
budget, the omni-attention layout, the ten Show-o special tokens) and shrinks what only costs time: width, depth, the
codebook (64 codes instead of 8,192) and the text vocabulary. Weights are seeded: the same arguments give the same
files.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import torch

from . import checkpoint
from .magvit import MAGVITv2, MagvitConfig
from .modeling import ShowoConfig, ShowoModel, init_weights
from .text_tokenizer import ENDOFTEXT
from .tokens import TokenLayout

PathLike = str | os.PathLike

__all__ = ["STANDIN_MAGVIT", "build_phi_tokenizer", "build_standin_magvit", "build_standin_showo"]

# 8 x 8 codes -> 32 x 32 pixels (two upsamplings), 2**6 = 64 codes. Every width is 32, the official GroupNorm's
# group count, so the released loader path (widths inferred from the weights, 32 groups) reads it back.
STANDIN_MAGVIT = MagvitConfig(ch=32, encoder_ch_mult=(1, 1, 1), encoder_num_res_blocks=(1, 1, 1),
                              decoder_ch_mult=(1, 1, 1), decoder_num_res_blocks=(1, 1, 1), z_channels=6,
                              codebook_dim=6, resolution=32)


def build_phi_tokenizer(directory: PathLike, corpus: Iterable[str], vocab_size: int = 400) -> Path:
    """A byte-level BPE tokenizer with phi-1_5's conventions, trained on ``corpus``; returns ``directory``.

    Byte-level BPE never maps a character to an unknown token, so any prompt or judge explanation tokenizes (as
    phi-1_5's does); the merges learnt from ``corpus`` only make the usual words short.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[ENDOFTEXT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(list(corpus), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=ENDOFTEXT, eos_token=ENDOFTEXT,
                                        unk_token=ENDOFTEXT, model_max_length=2048)
    tokenizer.save_pretrained(str(directory))
    return Path(directory)


def build_standin_magvit(directory: PathLike, config: MagvitConfig = STANDIN_MAGVIT, seed: int = 0) -> Path:
    """A randomly initialised MAGVIT-v2 of ``config`` saved like ``showlab/magvitv2``; returns ``directory``."""
    with torch.random.fork_rng(devices=[]):  # MAGVIT uses torch's default init: keep the caller's RNG untouched
        torch.manual_seed(seed)
        model = MAGVITv2(config).eval()
    model.save_pretrained(directory)
    # The released folder carries no constructor values; the loader reads the widths back from the weight shapes.
    (Path(directory) / "magvit_config.json").unlink()
    return Path(directory)


def build_standin_showo(directory: PathLike, tokenizer_dir: PathLike, codebook_size: int = 2**STANDIN_MAGVIT.codebook_dim,
                        num_image_tokens: int = 64, hidden_size: int = 32, num_hidden_layers: int = 2,
                        num_attention_heads: int = 2, intermediate_size: int = 64, seed: int = 0,
                        std: float = 0.5) -> Path:
    """A Show-o over the tokenizer in ``tokenizer_dir`` saved like ``showlab/show-o``; returns ``directory``.

    The layout is the released one (``<|endoftext|>`` as bos/eos, 10 new special tokens, ``num_image_tokens`` image
    tokens, 128 text tokens) with this tokenizer's size as ``llm_vocab_size``. ``std`` is large on purpose: random
    logits that are far from uniform make the sampled images differ visibly from one seed to the next.
    """
    from .text_tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer_dir)
    layout = TokenLayout(llm_vocab_size=len(tok), codebook_size=codebook_size, num_image_tokens=num_image_tokens,
                         bos_id=tok.bos_token_id, eos_id=tok.eos_token_id)
    config = ShowoConfig(vocab_size=layout.vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
                         num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads)
    model = init_weights(ShowoModel(config), std=std, generator=torch.Generator().manual_seed(seed)).eval()
    return checkpoint.save_pretrained(model, layout, directory)
