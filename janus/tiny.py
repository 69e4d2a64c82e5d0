"""Tiny random Janus-Pro models for tests: transformers' real classes at toy sizes, a word-level tokenizer with
Janus' special tokens, and writers of both checkpoint layouts (nothing is downloaded).

The tokenizer mimics Janus-Pro's conventions: ``<｜begin▁of▁sentence｜>`` is prepended by
``tokenizer(text)``, ``<｜end▁of▁sentence｜>`` ends text, ``<｜▁pad▁｜>`` pads, ``<begin_of_image>`` opens an image,
and ``<|User|>`` / ``<|Assistant|>`` are single tokens. Weights are drawn with a larger ``initializer_range``
(0.2) than the release's 0.02 so that the tiny model's distributions are far from uniform and the tokens depend on
the prompt.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

import torch

from .checkpoint import JanusBundle, save_deepseek, save_hf
from .cot import COT_SYSTEM_PROMPT, REASONING_TEMPLATE
from .layout import BOI_TOKEN, EOI_TOKEN, IMAGE_TOKEN, PAD_TOKEN, JanusLayout

BOS_TOKEN = "<｜begin▁of▁sentence｜>"
EOS_TOKEN = "<｜end▁of▁sentence｜>"
UNK_TOKEN = "<unk>"
ROLE_TOKENS = ("<|User|>", "<|Assistant|>")
SPECIAL_TOKENS = (BOS_TOKEN, EOS_TOKEN, PAD_TOKEN, UNK_TOKEN, IMAGE_TOKEN, BOI_TOKEN, EOI_TOKEN, *ROLE_TOKENS)
PUNCTUATION = tuple(':.,;"\'()-!?')


def words_of(*texts: str) -> list[str]:
    return sorted({w for t in texts for w in re.findall(r"[a-z0-9]+", t.lower())})


def build_tiny_tokenizer(words: Iterable[str] = ()):
    """A deterministic word-level tokenizer: the special tokens first (ids 0..8), punctuation, then the words of the
    CoT templates and ``words`` (lower-cased, sorted)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    for w in [*PUNCTUATION, *words_of(REASONING_TEMPLATE, COT_SYSTEM_PROMPT, " ".join(words))]:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS_TOKEN} $A", special_tokens=[(BOS_TOKEN, 0)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS_TOKEN, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN, unk_token=UNK_TOKEN,
        padding_side="left",
        extra_special_tokens={"image_token": IMAGE_TOKEN, "boi_token": BOI_TOKEN, "eoi_token": EOI_TOKEN},
    )


def tiny_janus_config(vocab_size: int, *, grid: int = 4, codebook_size: int = 128, hidden_size: int = 32,
                      num_hidden_layers: int = 2, num_attention_heads: int = 4, bos_id: int = 0, eos_id: int = 1,
                      pad_id: int = 2, image_token_id: int = 4, initializer_range: float = 0.2,
                      intermediate_size: int | None = None, embed_dim: int = 4,
                      vq_channel_multiplier: tuple[int, ...] = (1, 2), max_position_embeddings: int = 1024):
    """A ``JanusConfig`` at toy size: ``grid`` x ``grid`` image tokens (the vision tower's patch grid, as in
    transformers), a VQ decoder upsampling ``2 ** (len(vq_channel_multiplier) - 1)`` times (default x2: ``grid * 2``
    px images). ``embed_dim``: the width of the code embeddings (``gen_embed``; Janus-Pro: 8)."""
    from transformers import JanusConfig, JanusVisionConfig, JanusVQVAEConfig, LlamaConfig

    patch = 8
    text = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden_size,
                       intermediate_size=intermediate_size or 2 * hidden_size,
                       num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
                       num_key_value_heads=num_attention_heads, max_position_embeddings=max_position_embeddings,
                       initializer_range=initializer_range, bos_token_id=bos_id, eos_token_id=eos_id,
                       pad_token_id=pad_id)
    vision = JanusVisionConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=grid * patch,
                               patch_size=patch, projection_dim=hidden_size, num_image_tokens=grid * grid,
                               initializer_range=initializer_range)
    vq = JanusVQVAEConfig(embed_dim=embed_dim, num_embeddings=codebook_size, latent_channels=32, base_channels=32,
                          channel_multiplier=list(vq_channel_multiplier), num_res_blocks=1, projection_dim=hidden_size,
                          image_token_embed_dim=hidden_size, initializer_range=initializer_range)
    return JanusConfig(text_config=text, vision_config=vision, vq_config=vq, image_token_id=image_token_id,
                       tie_word_embeddings=False)


def build_tiny_janus(words: Iterable[str] = (), *, seed: int = 0, dtype: torch.dtype = torch.float32,
                     **config_kwargs) -> JanusBundle:
    """A freshly initialised tiny Janus-Pro (``config_kwargs`` go to :func:`tiny_janus_config`)."""
    from transformers import JanusForConditionalGeneration

    tok = build_tiny_tokenizer(words)
    ids = {name: tok.convert_tokens_to_ids(t) for name, t in
           (("bos_id", BOS_TOKEN), ("eos_id", EOS_TOKEN), ("pad_id", PAD_TOKEN), ("image_token_id", IMAGE_TOKEN))}
    config = tiny_janus_config(len(tok), **ids, **config_kwargs)
    with torch.random.fork_rng(devices=[]):  # transformers initialises from the global RNG; leave the caller's alone
        torch.manual_seed(seed)
        model = JanusForConditionalGeneration(config)
    model = model.to(dtype).eval()
    return JanusBundle(model, JanusLayout.from_model_config(config, tok), tok)


def write_hf_layout(bundle: JanusBundle, directory) -> Path:
    return save_hf(bundle, directory)


def write_deepseek_layout(bundle: JanusBundle, directory, *, shards: int = 1) -> Path:
    """The original layout, including the tensors released checkpoints carry and the loader drops by design (the
    SigLIP attention-pooling head and the VQ codebook-usage counter)."""
    d = bundle.model.config.vision_config.hidden_size
    extra = {"vision_model.vision_tower.attn_pool.latent": torch.zeros(1, 1, d),
             "vision_model.vision_tower.attn_pool.q.weight": torch.zeros(d, d),
             "gen_vision_model.quantize.codebook_used": torch.zeros(bundle.layout.codebook_size)}
    return save_deepseek(bundle, directory, shards=shards, extra=extra)
