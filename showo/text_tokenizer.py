"""Text tokenizers for Show-o prompts.

Real checkpoints use phi-1_5's tokenizer, loaded from a local directory (no hub access at run time). Tiny models
(tests, the shapes world) use a word-level tokenizer built here from a word list; it follows the same conventions:
``<|endoftext|>`` is both bos and eos, nothing is added automatically, and its size is the layout's ``llm_vocab_size``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

ENDOFTEXT = "<|endoftext|>"
UNK = "<unk>"


def load_tokenizer(path: str | os.PathLike):
    """phi-1_5-style tokenizer from a local directory (``tokenizer.json`` / ``vocab.json`` + ``merges.txt``)."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"tokenizer directory {path} not found (download microsoft/phi-1_5's tokenizer files once and pass the folder)"
        )
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True, padding_side="left")


def words_of(texts: Iterable[str]) -> list[str]:
    """Sorted unique lower-case words of some texts (the vocabulary of a word-level tokenizer)."""
    return sorted({w for t in texts for w in re.findall(r"[a-z0-9]+", t.lower())})


def build_word_tokenizer(words: Iterable[str]):
    """A deterministic word-level ``PreTrainedTokenizerFast``: ids 0, 1 are ``<|endoftext|>`` and ``<unk>``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {ENDOFTEXT: 0, UNK: 1}
    for w in sorted(set(words)):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=ENDOFTEXT, eos_token=ENDOFTEXT, unk_token=UNK, padding_side="left"
    )
