"""Build a complete Show-o (transformer + layout + tokenizer + VQ model) at either scale with the same classes.

* :func:`load_showo`: official checkpoints from local directories (``showlab/show-o``, ``showlab/magvitv2``,
  phi-1_5's tokenizer), as selected by ``configs/model/showo_256.yaml`` / ``showo_512.yaml``;
* :func:`build_tiny_showo`: a freshly initialised tiny model over a word-level tokenizer
  (``configs/model/showo_tiny.yaml``), used by tests and as the starting point of the shapes world;
* :func:`load_bundle`: a directory written by :meth:`ShowoBundle.save_pretrained` (tiny or not).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import torch

from . import checkpoint
from .fast import FastMode
from .magvit import MAGVITv2, MagvitConfig
from .modeling import ShowoConfig, ShowoModel, init_weights
from .pipeline import ShowoPipeline
from .scheduler import MaskGITScheduler
from .text_tokenizer import build_word_tokenizer, load_tokenizer
from .tokens import TokenLayout

PathLike = str | os.PathLike


@dataclass
class ShowoBundle:
    model: ShowoModel
    layout: TokenLayout
    tokenizer: object = None
    vq_model: Optional[MAGVITv2] = None

    def pipeline(self, scheduler: Optional[MaskGITScheduler] = None, fast: FastMode | dict | None = None) -> ShowoPipeline:
        """The sampler of this bundle; ``fast`` (:mod:`showo.fast`, ``model.fast`` in the configs) casts the bundle's
        transformer to the fast dtype in place: use the bundle for fast sampling only afterwards."""
        return ShowoPipeline(self.model, self.layout, tokenizer=self.tokenizer, vq_model=self.vq_model, scheduler=scheduler,
                             fast=fast)

    def save_pretrained(self, directory: PathLike) -> Path:
        """``showo/`` (official format), ``tokenizer/`` and ``vq/`` sub-directories."""
        directory = Path(directory)
        checkpoint.save_pretrained(self.model, self.layout, directory / "showo")
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(str(directory / "tokenizer"))
        if self.vq_model is not None:
            self.vq_model.save_pretrained(directory / "vq")
        return directory


def load_showo(pretrained: PathLike, tokenizer: Optional[PathLike] = None, vq_pretrained: Optional[PathLike] = None,
               *, phi_config: Optional[PathLike] = None, num_image_tokens: Optional[int] = None,
               max_seq_length: Optional[int] = None, dtype: Optional[str | torch.dtype] = None,
               device: Optional[str] = None) -> ShowoBundle:
    """Official checkpoints from local paths (each missing file is a ``FileNotFoundError`` naming it)."""
    overrides = {k: v for k, v in (("num_image_tokens", num_image_tokens), ("max_seq_length", max_seq_length)) if v is not None}
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    tok = load_tokenizer(tokenizer) if tokenizer is not None else None
    if tok is not None:
        overrides.setdefault("bos_id", tok.bos_token_id)
        overrides.setdefault("eos_id", tok.eos_token_id)
    model, layout = checkpoint.from_pretrained(pretrained, dtype=dtype, device=device, phi_config=phi_config, **overrides)
    vq = MAGVITv2.from_pretrained(vq_pretrained).to(device or "cpu").eval() if vq_pretrained is not None else None
    return ShowoBundle(model, layout, tok, vq)


def load_bundle(directory: PathLike, dtype: Optional[str | torch.dtype] = None, device: Optional[str] = None) -> ShowoBundle:
    """A directory written by :meth:`ShowoBundle.save_pretrained` (``showo/``, ``tokenizer/``, optional ``vq/``).

    A missing directory, or one without ``showo/`` or ``tokenizer/``, is named as such (not as a missing phi-1_5
    tokenizer, which is what the official loaders would report)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"Show-o bundle directory not found: {directory}")
    absent = [name for name in ("showo", "tokenizer") if not (directory / name).is_dir()]
    if absent:
        raise FileNotFoundError(f"{directory} is not a Show-o bundle: no {' or '.join(f'{n}/' for n in absent)} "
                                "(a bundle is written by ShowoBundle.save_pretrained, e.g. a training run's final/)")
    return load_showo(directory / "showo", tokenizer=directory / "tokenizer",
                      vq_pretrained=directory / "vq" if (directory / "vq").is_dir() else None, dtype=dtype, device=device)


def build_tiny_showo(words: Iterable[str] = (), *, num_image_tokens: int = 16, codebook_dim: int = 6,
                     hidden_size: int = 64, num_hidden_layers: int = 2, num_attention_heads: int = 2,
                     intermediate_size: int = 256, max_seq_length: int = 16, vq: Optional[dict] = None,
                     vq_directory: Optional[PathLike] = None, seed: int = 0, max_position_embeddings: int = 64,
                     device: Optional[str] = None) -> ShowoBundle:
    """A tiny, freshly initialised Show-o over a word-level tokenizer, with a tiny MAGVIT-v2: fresh from ``vq``
    (:class:`~showo.magvit.MagvitConfig` fields) or trained, loaded from ``vq_directory`` (frozen; the number of image
    tokens and the codebook then follow from it). The shapes world's tiny Show-o starts here
    (``configs/model/showo_shapes.yaml``: its words are every word a shapes prompt or a judge's reason can use).

    ``max_position_embeddings`` (raised to the t2i sequence length when shorter) sizes the rotary tables only (they are
    not weights): longer sequences, e.g. the self-correction layout, need it larger.
    """
    if vq_directory is not None:
        if vq is not None:
            raise ValueError("build_tiny_showo: pass vq (a fresh tokenizer) or vq_directory (a trained one), not both")
        if not Path(vq_directory).is_dir():
            raise FileNotFoundError(f"MAGVIT-v2 directory not found: {vq_directory} (train it with "
                                    "scripts/train_magvit.py)")
        trained = MAGVITv2.from_pretrained(vq_directory, device=device or "cpu").requires_grad_(False)
        bundle = build_tiny_showo(words, num_image_tokens=trained.config.num_codes,
                                  codebook_dim=trained.config.codebook_dim, hidden_size=hidden_size,
                                  num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
                                  intermediate_size=intermediate_size, max_seq_length=max_seq_length, seed=seed,
                                  max_position_embeddings=max_position_embeddings, device=device)
        return ShowoBundle(bundle.model, bundle.layout, bundle.tokenizer, trained)
    tok = build_word_tokenizer(words)
    layout = TokenLayout(llm_vocab_size=len(tok), codebook_size=2**codebook_dim, num_image_tokens=num_image_tokens,
                         max_seq_length=max_seq_length, bos_id=tok.bos_token_id, eos_id=tok.eos_token_id)
    cfg = ShowoConfig(vocab_size=layout.vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
                      num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
                      max_position_embeddings=max(max_position_embeddings, layout.seq_len))
    gen = torch.Generator().manual_seed(seed)
    model = init_weights(ShowoModel(cfg), generator=gen).eval()
    vq_model = None
    if vq is not None:
        vq_cfg = MagvitConfig.from_dict(dict(vq), source="build_tiny_showo(vq=...)")
        if vq_cfg.codebook_dim != codebook_dim:
            raise ValueError(f"vq.codebook_dim={vq_cfg.codebook_dim} must equal codebook_dim={codebook_dim}")
        with torch.random.fork_rng():  # MAGVIT uses torch's default initialisation; leave the caller's RNG alone
            torch.manual_seed(seed)
            vq_model = MAGVITv2(vq_cfg).eval()
    if device is not None:
        model.to(device)
    return ShowoBundle(model, layout, tok, vq_model)
