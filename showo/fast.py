"""Opt-in fast sampling mode of the Show-o pipeline (issue 20 item 4; docs/speed.md "Fast mode").

Exact mode (no :class:`FastMode`) is the default and samples the official tokens (showo.md §9). Fast mode trades
that parity for arithmetic speed:

* **bf16 weights and activations**: the transformer is cast to ``dtype`` (in place: a fast pipeline is a sampling
  pipeline, and a second float32 copy would double the memory at real scale). The RoPE tables stay float32 and are
  rounded at use (:class:`showo.modeling.RotaryTables`); guidance, softmax and the draws run in float32
  (:meth:`showo.pipeline.ShowoPipeline.guided_logits`); the VQ decoder is untouched (float32).
* **a float32 LM head** (``float32_head``, default on): the codebook logits are computed in float32 from the bf16
  final hidden state. A bf16 logit of size 16 is rounded to a multiple of 1/16, and guidance ``(1 + w) cond - w
  uncond`` multiplies that error by up to ``1 + 2w`` (7 at the shapes world's w = 3): about half a logit, enough to
  move the draws. The codebook-only head is a small share of a step (the N image rows x K codes, docs/speed.md).
* **fused attention**: the attention of both modes is ``torch.nn.functional.scaled_dot_product_attention``
  (:class:`showo.modeling.Attention`, unchanged): torch picks its fused kernel for the dtype (on CPU the flash kernel
  in float64, float32 and bf16 alike), so fast mode adds no attention code and the exact path is what it was.
* **a compiled step**: ``compile`` wraps the transformer forward of every sampling step in ``torch.compile``
  (the scheduler's draws, with one generator per image, stay eager). ``"auto"`` compiles where the backend can
  (:func:`compile_unsupported_reason`) and says why not otherwise; ``true`` fails with that reason.

Config: ``model.fast`` (``configs/fast/bf16.yaml``: ``+fast@model.fast=bf16``); ``null`` = exact mode.
"""
from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

import torch

from common.validate import ConfigError

__all__ = ["DTYPES", "FastMode", "compile_unsupported_reason"]

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
COMPILE = (False, True, "auto")


@dataclass(frozen=True)
class FastMode:
    """How a fast pipeline samples: the transformer's ``dtype`` and whether its step forward is compiled."""

    dtype: torch.dtype = torch.bfloat16
    compile: bool | str = False  # False | True | "auto"
    float32_head: bool = True  # the LM head (logits) in float32 on the low-precision body

    @classmethod
    def from_config(cls, cfg: "FastMode | Mapping[str, Any] | None", where: str = "model.fast") -> Optional["FastMode"]:
        """``None`` (exact mode), a FastMode, or a mapping ``{dtype: bfloat16, compile: false|true|auto,
        float32_head: true}``;
        :class:`~common.validate.ConfigError` naming ``where``'s bad key or value."""
        if cfg is None or isinstance(cfg, FastMode):
            return cfg
        if not isinstance(cfg, Mapping):
            raise ConfigError(f"{where} = {cfg!r}: must be null (exact mode) or a mapping with dtype / compile")
        unknown = sorted(set(cfg) - {"dtype", "compile", "float32_head"})
        if unknown:
            raise ConfigError(f"{where}: unknown setting(s) {unknown}; fast mode takes dtype, compile, float32_head")
        dtype = cfg.get("dtype", "bfloat16")
        if dtype not in DTYPES:
            raise ConfigError(f"{where}.dtype = {dtype!r}: must be one of {sorted(DTYPES)}")
        compile_ = cfg.get("compile", False)
        if compile_ not in COMPILE or not isinstance(compile_, (bool, str)):
            raise ConfigError(f"{where}.compile = {compile_!r}: must be false, true or 'auto'")
        head = cfg.get("float32_head", True)
        if not isinstance(head, bool):
            raise ConfigError(f"{where}.float32_head = {head!r}: must be true or false")
        return cls(DTYPES[dtype], compile_, head)

    def apply(self, model: torch.nn.Module) -> Callable:
        """Cast ``model`` to :attr:`dtype` in place (its LM head to float32 with :attr:`float32_head`); returns the
        callable each step runs (compiled or ``model``)."""
        model.to(self.dtype)
        if self.float32_head:
            model.showo.lm_head.float()
        if not self.compile:
            return model
        device = next(model.parameters()).device
        reason = compile_unsupported_reason(device)
        if reason is None:
            return torch.compile(model)
        if self.compile is True:
            raise RuntimeError(f"model.fast.compile=true but torch.compile cannot run here: {reason}")
        warnings.warn(f"fast mode: the step is not compiled ({reason}); running it eagerly", stacklevel=2)
        return model


def compile_unsupported_reason(device: torch.device | str) -> Optional[str]:
    """Why ``torch.compile`` (inductor) cannot compile a step on ``device``, or ``None`` when it can.

    Inductor generates C++ on CPU (a C++ compiler must be on PATH) and Triton kernels on CUDA; MPS and other
    backends are not attempted. Windows is not supported by inductor's CPU path in every torch release.
    """
    kind = torch.device(device).type
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile"
    if kind == "cpu":
        from torch._inductor import config as inductor_config  # where inductor looks for its C++ compiler

        cxx = inductor_config.cpp.cxx  # e.g. (None, "g++"): candidates, the first found on PATH is used
        names = [str(c) for c in (cxx if isinstance(cxx, (tuple, list)) else (cxx,)) if c]
        if not any(shutil.which(name) for name in names):
            return f"inductor's CPU backend needs a C++ compiler ({' or '.join(names)}) on PATH, none found"
        return None
    if kind == "cuda":
        try:
            import triton  # noqa: F401  (inductor's GPU code generator)
        except ImportError:
            return "inductor's CUDA backend needs the triton package, which is not installed"
        return None
    return f"torch.compile is not attempted on {kind!r} devices"
