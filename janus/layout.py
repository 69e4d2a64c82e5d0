"""One source of truth for Janus-Pro's token ids and image-token raster (reference t2i_r1.md §4.1, §11.1).

Everything here is read from the checkpoint's config and tokenizer, never typed in: at real scale the raster is
24 x 24 = 576 codes of a 16,384-entry codebook decoded to 384 px, the special ids are bos 100000, eos 100001,
pad 100015 and ``<begin_of_image>`` 100016; a tiny test model has its own values through the same code.
"""
from __future__ import annotations

from dataclasses import dataclass

# Token strings of the Janus tokenizer (DeepSeek's ``VLChatProcessor`` defaults; the HF conversion keeps them).
PAD_TOKEN = "<｜▁pad▁｜>"
BOI_TOKEN = "<begin_of_image>"
EOI_TOKEN = "<end_of_image>"
IMAGE_TOKEN = "<image_placeholder>"

UNKNOWN = -1  # marks raster positions not generated yet in token tensors


@dataclass(frozen=True)
class JanusLayout:
    """Token ids and the geometry of the generated image.

    ``grid`` is (rows, cols) of the raster, generated row by row, left to right; ``image_size`` the decoded side in
    pixels (``grid`` times the VQ decoder's upsampling factor).
    """

    text_vocab_size: int
    codebook_size: int
    grid: tuple[int, int]
    image_size: int
    bos_id: int
    eos_id: int
    pad_id: int
    boi_id: int

    def __post_init__(self) -> None:
        for name in ("text_vocab_size", "codebook_size", "image_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"JanusLayout.{name} must be >= 1, got {getattr(self, name)}")
        if len(self.grid) != 2 or min(self.grid) < 1:
            raise ValueError(f"JanusLayout.grid must be two positive ints, got {self.grid}")
        for name in ("bos_id", "eos_id", "pad_id", "boi_id"):
            value = getattr(self, name)
            if value is None or not 0 <= value < self.text_vocab_size:
                raise ValueError(
                    f"JanusLayout.{name}={value} is not a text token id (vocabulary {self.text_vocab_size})")

    @property
    def num_image_tokens(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def row_length(self) -> int:
        return self.grid[1]

    @classmethod
    def from_model_config(cls, config, tokenizer) -> "JanusLayout":
        """From a ``transformers.JanusConfig`` and the checkpoint's tokenizer (special ids by their token strings).

        The generation loop of transformers takes its token count from ``vision_config.num_image_tokens`` while the
        VQ decoder reshapes to ``vq_config.num_patches`` squared: both must agree.
        """
        patches = config.vq_config.num_patches
        count = config.vision_config.num_image_tokens
        if count != patches * patches:
            raise ValueError(
                f"config: vision_config.num_image_tokens={count} but the VQ decoder expects num_patches^2="
                f"{patches}^2={patches * patches}"
            )
        upsample = 2 ** (len(config.vq_config.channel_multiplier) - 1)
        ids = {}
        for name, token in (("pad_id", PAD_TOKEN), ("boi_id", BOI_TOKEN)):
            tid = tokenizer.convert_tokens_to_ids(token)
            if tid is None or tid == tokenizer.unk_token_id:
                raise ValueError(f"tokenizer has no {token!r} token (needed as {name})")
            ids[name] = tid
        if tokenizer.bos_token_id is None or tokenizer.eos_token_id is None:
            raise ValueError("tokenizer has no bos or eos token")
        return cls(
            text_vocab_size=config.text_config.vocab_size, codebook_size=config.vq_config.num_embeddings,
            grid=(patches, patches), image_size=patches * upsample, bos_id=tokenizer.bos_token_id,
            eos_id=tokenizer.eos_token_id, **ids,
        )
