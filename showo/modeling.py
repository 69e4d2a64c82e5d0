"""The Show-o transformer: Phi-1.5 with per-head QK LayerNorm (showo.md §4–5).

Module and parameter names mirror the official state dict (``showo.model.layers.{i}.self_attn.q_proj.weight``, ...) so
that official checkpoints load strictly (see :mod:`showo.checkpoint`). Differences from stock Phi that matter:

* QK LayerNorm is applied per head (width ``head_dim``, weights shared across heads) after the head reshape and before
  the partial rotary embedding;
* the caller supplies the 4-D omni-attention mask; nothing inside the model builds or inverts a mask;
* position ids are ``0..L-1`` regardless of left padding;
* the RoPE cos/sin tables are computed in float32 (as the official buffers are) and widened to the compute dtype.

The forward can run on a suffix of a sequence given the keys/values of its prefix (``prefix_kv``): in text-to-image
generation the text prefix never attends to image tokens, so its keys/values are the same at every sampling step.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

KV = tuple[torch.Tensor, torch.Tensor]  # keys, values: [B, heads, P, head_dim] (keys already rotated)


@dataclass(frozen=True)
class ShowoConfig:
    """Hyper-parameters of the transformer (phi-1_5 values by default; tiny configs are other values)."""

    vocab_size: int = 58498
    hidden_size: int = 2048
    intermediate_size: int = 8192
    num_hidden_layers: int = 24
    num_attention_heads: int = 32
    partial_rotary_factor: float = 0.5
    rope_theta: float = 10000.0
    layer_norm_eps: float = 1e-5
    max_position_embeddings: int = 2048
    w_clip_vit: bool = False
    clip_hidden_size: int = 1024

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.partial_rotary_factor)

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size={self.hidden_size} is not divisible by num_attention_heads={self.num_attention_heads}")
        if self.rotary_dim % 2:
            raise ValueError(f"rotary dim {self.rotary_dim} must be even")

    @classmethod
    def from_phi_config(cls, phi: dict, vocab_size: int, w_clip_vit: bool = False) -> "ShowoConfig":
        """From a transformers ``PhiConfig`` dict (``phi_config/config.json``) and Show-o's vocabulary size."""
        if phi.get("hidden_act", "gelu_new") != "gelu_new":
            raise ValueError(f"unsupported hidden_act {phi['hidden_act']!r} (Show-o uses gelu_new)")
        if phi.get("num_key_value_heads") not in (None, phi["num_attention_heads"]):
            raise ValueError("Show-o uses plain multi-head attention (num_key_value_heads == num_attention_heads)")
        if phi.get("rope_scaling"):
            raise ValueError(f"rope_scaling={phi['rope_scaling']} is not supported")
        return cls(
            vocab_size=vocab_size,
            hidden_size=phi["hidden_size"],
            intermediate_size=phi["intermediate_size"],
            num_hidden_layers=phi["num_hidden_layers"],
            num_attention_heads=phi["num_attention_heads"],
            partial_rotary_factor=phi.get("partial_rotary_factor", 0.5),
            rope_theta=phi.get("rope_theta", 10000.0),
            layer_norm_eps=phi.get("layer_norm_eps", 1e-5),
            max_position_embeddings=phi.get("max_position_embeddings", 2048),
            w_clip_vit=w_clip_vit,
        )

    def to_phi_config(self) -> dict:
        """A complete transformers ``PhiConfig`` dict for this shape (what ``llm_model_path`` must point to)."""
        return {
            "model_type": "phi",
            "architectures": ["PhiForCausalLM"],
            "vocab_size": 51200,  # phi's own embedding size; Show-o resizes to its vocabulary after construction
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_attention_heads,
            "partial_rotary_factor": self.partial_rotary_factor,
            "rope_theta": self.rope_theta,
            "rope_scaling": None,
            "layer_norm_eps": self.layer_norm_eps,
            "max_position_embeddings": self.max_position_embeddings,
            "hidden_act": "gelu_new",
            "qk_layernorm": True,
            "use_cache": False,
            "tie_word_embeddings": False,
            "resid_pdrop": 0.0,
            "embd_pdrop": 0.0,
            "attention_dropout": 0.0,
            "initializer_range": 0.02,
        }

    def to_dict(self) -> dict:
        return asdict(self)


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """GELU, tanh approximation, written as transformers' ``NewGELUActivation`` (phi's ``gelu_new``)."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class RotaryTables(nn.Module):
    """cos/sin tables of the partial RoPE, built in float32 like the official (non-persistent) buffers."""

    def __init__(self, dim: int, max_positions: int, base: float) -> None:
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
        t = torch.arange(max_positions, dtype=torch.int64).float()
        emb = torch.cat([torch.outer(t, inv_freq)] * 2, dim=-1)  # [P, dim]
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)

    def _apply(self, fn, recurse=True):
        # Keep the tables float32 whatever dtype the model is cast to: widening at use time gives the same values as
        # the official buffers (computed in float32, then cast with the model), and bf16 models keep accurate tables.
        cos, sin = self.cos, self.sin
        super()._apply(fn, recurse)
        self.cos = cos.to(self.cos.device)
        self.sin = sin.to(self.sin.device)
        return self

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """position_ids [B, L] -> cos, sin [B, 1, L, dim] in ``dtype``."""
        # ShowoModel checks its positions without reading a tensor; this read would break a compiled graph in two
        if not torch.compiler.is_compiling() and int(position_ids.max()) >= self.cos.shape[0]:
            raise ValueError(f"position {int(position_ids.max())} exceeds max_position_embeddings={self.cos.shape[0]}")
        return self.cos[position_ids].unsqueeze(1).to(dtype), self.sin[position_ids].unsqueeze(1).to(dtype)


class Attention(nn.Module):
    def __init__(self, cfg: ShowoConfig) -> None:
        super().__init__()
        h, self.heads, self.head_dim, self.rotary_dim = cfg.hidden_size, cfg.num_attention_heads, cfg.head_dim, cfg.rotary_dim
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(h, h) for _ in range(3))
        self.dense = nn.Linear(h, h)
        self.q_layernorm = nn.LayerNorm(cfg.head_dim, eps=cfg.layer_norm_eps)
        self.k_layernorm = nn.LayerNorm(cfg.head_dim, eps=cfg.layer_norm_eps)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, l, _ = x.shape
        return x.view(b, l, self.heads, self.head_dim).transpose(1, 2)  # [B, H, L, D]

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        rot, rest = x[..., : self.rotary_dim], x[..., self.rotary_dim :]
        return torch.cat(((rot * cos) + (rotate_half(rot) * sin), rest), dim=-1)

    def forward(self, x, mask, cos, sin, prefix_kv: Optional[KV] = None):
        """x [B, L, hidden]; mask [B, 1, L, P+L] (bool = may attend, or additive float) -> (out [B, L, hidden], (k, v))."""
        q = self._rope(self.q_layernorm(self._heads(self.q_proj(x))), cos, sin)
        k = self._rope(self.k_layernorm(self._heads(self.k_proj(x))), cos, sin)
        v = self._heads(self.v_proj(x))
        kv = (k, v)
        if prefix_kv is not None:
            k = torch.cat([prefix_kv[0], k], dim=2)
            v = torch.cat([prefix_kv[1], v], dim=2)
        if mask.dtype != torch.bool:
            mask = mask.to(q.dtype)  # torch's CPU SDPA is wrong for float64 q/k/v with a float32 additive mask
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        b, _, l, _ = out.shape
        return self.dense(out.transpose(1, 2).reshape(b, l, -1)), kv


class MLP(nn.Module):
    def __init__(self, cfg: ShowoConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(gelu_new(self.fc1(x)))


class DecoderLayer(nn.Module):
    """Parallel block: ``h = LN(x); x = attn(h) + mlp(h) + x`` (one shared LayerNorm)."""

    def __init__(self, cfg: ShowoConfig) -> None:
        super().__init__()
        self.input_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.self_attn = Attention(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x, mask, cos, sin, prefix_kv: Optional[KV] = None):
        h = self.input_layernorm(x)
        attn, kv = self.self_attn(h, mask, cos, sin, prefix_kv)
        return attn + self.mlp(h) + x, kv


class PhiModel(nn.Module):
    def __init__(self, cfg: ShowoConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.final_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)


class PhiForCausalLM(nn.Module):
    def __init__(self, cfg: ShowoConfig) -> None:
        super().__init__()
        self.model = PhiModel(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size)


@dataclass
class ShowoOutput:
    logits: torch.Tensor  # [B, L', vocab] in the model dtype (L' = rows selected by ``logits_rows``)
    kv: Optional[list[KV]] = None  # per layer, keys/values of this call's tokens (``return_kv=True``)
    hidden_states: list[torch.Tensor] = field(default_factory=list)  # embed, each layer, final LN (on request)


class ShowoModel(nn.Module):
    """Show-o: maps token ids (and a 4-D omni-attention mask) to logits over the joint text+image vocabulary."""

    def __init__(self, config: ShowoConfig) -> None:
        super().__init__()
        self.config = config
        self.showo = PhiForCausalLM(config)
        self.rotary = RotaryTables(config.rotary_dim, config.max_position_embeddings, config.rope_theta)
        if config.w_clip_vit:
            # exact (erf) GELU in the projector, as in the official CLIP-ViT variants
            self.mm_projector = nn.Sequential(
                nn.Linear(config.clip_hidden_size, config.hidden_size), nn.GELU(), nn.Linear(config.hidden_size, config.hidden_size)
            )
        self.gradient_checkpointing = False

    @property
    def dtype(self) -> torch.dtype:
        """The transformer's dtype (the LM head may be kept in float32 by fast mode, :mod:`showo.fast`)."""
        return self.showo.model.embed_tokens.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.showo.lm_head.weight.device

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        *,
        prefix_kv: Optional[list[KV]] = None,
        return_kv: bool = False,
        logits_rows: Optional[slice] = None,
        logits_cols: Optional[slice] = None,
        output_hidden_states: bool = False,
    ) -> ShowoOutput:
        """Logits of ``input_ids`` [B, L] under ``attention_mask`` [B, 1, L, P + L].

        ``prefix_kv`` (per layer, [B, H, P, D]) holds the keys/values of P earlier positions; this call's tokens then
        take positions ``P .. P+L-1``. ``logits_rows`` restricts the LM head to some positions (e.g. the image tokens)
        and ``logits_cols`` to some vocabulary entries (e.g. the image codes): only those rows of ``lm_head`` are read,
        and the logits have ``len(range(vocab)[logits_cols])`` columns. The default is the full vocabulary (training).
        """
        past = 0 if prefix_kv is None else prefix_kv[0][0].shape[2]
        if attention_mask.shape[-2:] != (input_ids.shape[1], past + input_ids.shape[1]):
            raise ValueError(
                f"attention_mask has shape {tuple(attention_mask.shape)}, expected [B, 1, {input_ids.shape[1]}, "
                f"{past + input_ids.shape[1]}] for {input_ids.shape[1]} tokens after a prefix of {past}"
            )
        if past + input_ids.shape[1] > self.rotary.cos.shape[0]:
            raise ValueError(f"position {past + input_ids.shape[1] - 1} exceeds max_position_embeddings="
                             f"{self.rotary.cos.shape[0]}")
        x = self.showo.model.embed_tokens(input_ids)
        positions = torch.arange(past, past + input_ids.shape[1], device=input_ids.device).expand(input_ids.shape[0], -1)
        cos, sin = self.rotary(positions, x.dtype)
        hidden = [x] if output_hidden_states else []
        new_kv = []
        for i, layer in enumerate(self.showo.model.layers):
            layer_prefix = None if prefix_kv is None else prefix_kv[i]
            if self.gradient_checkpointing and self.training:
                x, kv = checkpoint(layer, x, attention_mask, cos, sin, layer_prefix, use_reentrant=False)
            else:
                x, kv = layer(x, attention_mask, cos, sin, layer_prefix)
            if return_kv:
                new_kv.append(kv)
            if output_hidden_states:
                hidden.append(x)
        x = self.showo.model.final_layernorm(x)
        if output_hidden_states:
            hidden.append(x)
        if logits_rows is not None:
            x = x[:, logits_rows]
        return ShowoOutput(logits=self._lm_head(x, logits_cols), kv=new_kv if return_kv else None, hidden_states=hidden)

    def _lm_head(self, x: torch.Tensor, cols: Optional[slice]) -> torch.Tensor:
        """x [B, L', hidden] -> logits [B, L', V'] over the vocabulary entries ``cols`` (all when ``None``).

        A head in another dtype than ``x`` (fast mode's float32 head) gets ``x`` cast to its dtype first.
        A slice of rows of the head's weight is a view: the restricted head reads and multiplies only those rows (1/7
        of the work for the 8,192 image codes of the 58,498-token vocabulary). A head that is not a plain
        ``nn.Linear`` (e.g. wrapped by an adapter) is evaluated in full and then sliced, so it stays correct.
        """
        head = self.showo.lm_head
        if isinstance(head, nn.Linear):
            x = x.to(head.weight.dtype)  # a float32 head on a bf16 body (fast mode); the same tensor otherwise
        if cols is None:
            return head(x)
        if not isinstance(head, nn.Linear):
            return head(x)[..., cols]
        return F.linear(x, head.weight[cols], None if head.bias is None else head.bias[cols])

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def init_weights(model: ShowoModel, std: float = 0.02, generator: Optional[torch.Generator] = None) -> ShowoModel:
    """Initialisation for training from scratch (phi's: normal(0, std) weights, zero biases, unit LayerNorms)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                module.weight.normal_(0.0, std, generator=generator)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
    return model
