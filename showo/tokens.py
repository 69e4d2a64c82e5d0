"""The one source of truth for Show-o token ids (showo.md §3, §8).

Show-o's vocabulary is the text tokenizer's ``llm_vocab_size`` entries, then ``num_new_special_tokens`` new tokens
(``[PAD]`` first, then nine tags), then ``codebook_size`` image codes, then one ``[MASK]``. Every id used anywhere in
the project comes from a :class:`TokenLayout`; nothing else re-types ``50305`` or ``58497``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

# Order in which UniversalPrompting adds the new tokens: [PAD] first (add_special_tokens), then the nine tags.
SPECIAL_TOKENS = ("[PAD]", "<|soi|>", "<|eoi|>", "<|sov|>", "<|eov|>", "<|t2i|>", "<|mmu|>", "<|t2v|>", "<|v2v|>", "<|lvg|>")


@dataclass(frozen=True)
class TokenLayout:
    """Token ids and sequence geometry of a Show-o checkpoint.

    Args:
        llm_vocab_size: size of the text tokenizer before Show-o's additions (50295 for phi-1_5).
        codebook_size: number of image codes (8192 for MAGVIT-v2).
        num_image_tokens: image tokens per image (256 at 256 px, 1024 at 512 px); must be a square.
        num_new_special_tokens: ``[PAD]`` + 9 tags = 10.
        max_seq_length: text budget of the prompt (128); the text part is ``max_seq_length + 1`` long.
        bos_id, eos_id: the tokenizer's ``<|endoftext|>`` (50256 for phi-1_5: bos = eos).
    """

    llm_vocab_size: int = 50295
    codebook_size: int = 8192
    num_image_tokens: int = 256
    num_new_special_tokens: int = 10
    max_seq_length: int = 128
    bos_id: int = 50256
    eos_id: int = 50256

    def __post_init__(self) -> None:
        if self.num_new_special_tokens != len(SPECIAL_TOKENS):
            raise ValueError(f"num_new_special_tokens must be {len(SPECIAL_TOKENS)}, got {self.num_new_special_tokens}")
        side = math.isqrt(self.num_image_tokens)
        if side * side != self.num_image_tokens:
            raise ValueError(f"num_image_tokens must be a square number, got {self.num_image_tokens}")
        for name in ("bos_id", "eos_id"):
            if not 0 <= getattr(self, name) < self.llm_vocab_size:
                raise ValueError(f"{name}={getattr(self, name)} is outside the text vocabulary [0, {self.llm_vocab_size})")

    # --- special ids -------------------------------------------------------------------------------------------
    def special_id(self, token: str) -> int:
        return self.llm_vocab_size + SPECIAL_TOKENS.index(token)

    @property
    def pad_id(self) -> int:
        return self.special_id("[PAD]")

    @property
    def soi_id(self) -> int:
        return self.special_id("<|soi|>")

    @property
    def eoi_id(self) -> int:
        return self.special_id("<|eoi|>")

    @property
    def t2i_id(self) -> int:
        return self.special_id("<|t2i|>")

    @property
    def mmu_id(self) -> int:
        return self.special_id("<|mmu|>")

    # --- image codes -------------------------------------------------------------------------------------------
    @property
    def image_offset(self) -> int:
        """Token id of image code 0 (code ``c`` has id ``c + image_offset``)."""
        return self.llm_vocab_size + self.num_new_special_tokens

    @property
    def mask_id(self) -> int:
        return self.image_offset + self.codebook_size

    @property
    def vocab_size(self) -> int:
        return self.mask_id + 1

    @property
    def grid(self) -> tuple[int, int]:
        side = math.isqrt(self.num_image_tokens)
        return side, side

    # --- t2i sequence geometry (showo.md §8) -------------------------------------------------------------------
    @property
    def text_len(self) -> int:
        """Length of the text part: ``<|t2i|>`` + bos + prompt + eos, left-padded (129)."""
        return self.max_seq_length + 1

    @property
    def soi_pos(self) -> int:
        return self.text_len

    @property
    def image_slice(self) -> slice:
        start = self.text_len + 1
        return slice(start, start + self.num_image_tokens)

    @property
    def seq_len(self) -> int:
        return self.text_len + self.num_image_tokens + 2

    def with_image_tokens(self, num_image_tokens: int) -> "TokenLayout":
        return TokenLayout(
            llm_vocab_size=self.llm_vocab_size,
            codebook_size=self.codebook_size,
            num_image_tokens=num_image_tokens,
            num_new_special_tokens=self.num_new_special_tokens,
            max_seq_length=self.max_seq_length,
            bos_id=self.bos_id,
            eos_id=self.eos_id,
        )

    @classmethod
    def from_config(cls, config: dict, **overrides) -> "TokenLayout":
        """Layout from a Show-o ``config.json`` dict (official fields, plus imagecot's optional extras).

        The official config has no ``num_new_special_tokens``/``max_seq_length``/bos/eos (they come from the demo
        YAML and the phi-1_5 tokenizer); their official values are the defaults. ``vocab_size`` must agree.
        """
        fields = dict(
            llm_vocab_size=int(config["llm_vocab_size"]),
            codebook_size=int(config.get("codebook_size", 8192)),
            num_image_tokens=int(config.get("num_vq_tokens", 256)),
            num_new_special_tokens=int(config.get("num_new_special_tokens", 10)),
            max_seq_length=int(config.get("max_seq_length", 128)),
            bos_id=int(config.get("bos_token_id", 50256)),
            eos_id=int(config.get("eos_token_id", 50256)),
        )
        fields.update(overrides)
        layout = cls(**fields)
        vocab = config.get("vocab_size")
        if vocab is not None and int(vocab) != layout.vocab_size:
            raise ValueError(
                f"config vocab_size={vocab} disagrees with llm_vocab_size + {layout.num_new_special_tokens} special + "
                f"codebook_size + 1 mask = {layout.vocab_size}"
            )
        mask = config.get("mask_token_id")
        if mask is not None and int(mask) != layout.mask_id:
            raise ValueError(f"config mask_token_id={mask}, expected vocab_size - 1 = {layout.mask_id}")
        return layout

    def to_config(self) -> dict:
        return {
            "llm_vocab_size": self.llm_vocab_size,
            "codebook_size": self.codebook_size,
            "num_vq_tokens": self.num_image_tokens,
            "vocab_size": self.vocab_size,
            "mask_token_id": self.mask_id,
            "num_new_special_tokens": self.num_new_special_tokens,
            "max_seq_length": self.max_seq_length,
            "bos_token_id": self.bos_id,
            "eos_token_id": self.eos_id,
        }
