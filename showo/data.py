"""Training data for the Show-o recipes: pre-tokenized (prompt, image codes) pairs.

On disk a dataset is a folder with ``prompts.jsonl`` (one ``{"prompt": ...}`` object per line) and ``codes.safetensors``
(tensor ``codes`` [M, N] int64, row ``i`` = the image codes of line ``i``). Images are tokenized once with the VQ model
(:func:`tokenize_images`) so training never runs the tokenizer. A dataset builds training batches itself
(``dataset.batch(indices, ...)``), so other sequence formats (e.g. self-correction) plug into the same recipe.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Sequence

import torch
from safetensors.torch import save_file

from common.io import atomic_write, atomic_write_text, read_tensor_file

from .loss import build_t2i_batch
from .prompting import T2IPrompting
from .tokens import TokenLayout


def write_tokenized_dataset(directory: str | os.PathLike, prompts: Sequence[str], codes: torch.Tensor) -> Path:
    directory = Path(directory)
    if codes.ndim != 2 or codes.shape[0] != len(prompts):
        raise ValueError(f"codes must be [len(prompts)={len(prompts)}, N], got {tuple(codes.shape)}")
    codes = codes.to(torch.int64).contiguous()
    atomic_write(directory / "codes.safetensors", lambda tmp: save_file({"codes": codes}, tmp))
    atomic_write_text(directory / "prompts.jsonl", "".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    return directory


@torch.no_grad()
def tokenize_images(vq_model, pixel_values: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """[M, 3, H, W] in [-1, 1] -> [M, h*w] codes, in batches."""
    return torch.cat([vq_model.encode(pixel_values[i: i + batch_size]) for i in range(0, len(pixel_values), batch_size)])


class TokenizedT2IDataset:
    """Prompts + image codes for text-to-image training (see module docstring for the format)."""

    def __init__(self, directory: str | os.PathLike, cond_dropout_prob: float = 0.1, min_masking_rate: float = 0.0) -> None:
        directory = Path(directory)
        prompts_path, codes_path = directory / "prompts.jsonl", directory / "codes.safetensors"
        for path in (prompts_path, codes_path):
            if not path.is_file():
                raise FileNotFoundError(f"dataset file not found: {path}")
        self.prompts = []
        for lineno, line in enumerate(prompts_path.read_text().splitlines(), start=1):
            try:
                record = json.loads(line)
                prompt = record["prompt"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"{prompts_path}:{lineno}: expected a JSON object with a 'prompt' string ({err})") from err
            if not isinstance(prompt, str):
                raise ValueError(f"{prompts_path}:{lineno}: field 'prompt' must be a string, got {prompt!r}")
            self.prompts.append(prompt)
        tensors = read_tensor_file(codes_path)
        if "codes" not in tensors:
            raise ValueError(f"{codes_path}: no tensor named 'codes' (found {sorted(tensors)})")
        self.codes = tensors["codes"].long()
        if self.codes.ndim != 2 or self.codes.shape[0] != len(self.prompts):
            raise ValueError(f"{codes_path}: codes has shape {tuple(self.codes.shape)}, expected [{len(self.prompts)}, N]")
        self.source = str(directory)
        self.cond_dropout_prob = cond_dropout_prob
        self.min_masking_rate = min_masking_rate

    def __len__(self) -> int:
        return len(self.prompts)

    def check(self, layout: TokenLayout) -> None:
        n = self.codes.shape[1]
        if n != layout.num_image_tokens:
            raise ValueError(f"{self.source}: {n} codes per image, the model expects {layout.num_image_tokens}")
        if int(self.codes.min()) < 0 or int(self.codes.max()) >= layout.codebook_size:
            raise ValueError(f"{self.source}: codes outside [0, {layout.codebook_size})")

    def batch(self, indices: Sequence[int], layout: TokenLayout, tokenizer, generator: Optional[torch.Generator] = None):
        """``{input_ids, attention_mask, labels}`` for the rows ``indices`` (masking and prompt dropout drawn here)."""
        prompt_ids = T2IPrompting(tokenizer, layout).tokenize([self.prompts[i] for i in indices])
        return build_t2i_batch(prompt_ids, self.codes[list(indices)], layout, generator,
                               cond_dropout_prob=self.cond_dropout_prob, min_masking_rate=self.min_masking_rate)
