"""Masked-attention transformer decoder and class / mask heads of Mask2Former (mmdetection ``Mask2FormerHead``).

Cheng et al., "Masked-attention Mask Transformer" (CVPR 2022) §3.2: learnable queries attend, layer by layer, to one
level of the pixel decoder's memory (round robin over strides 32, 16, 8), with cross-attention restricted to the
foreground of the previous layer's mask prediction. Module names mirror mmdetection 3.x so its checkpoints load
strictly (2.x names are mapped in :mod:`eval.geneval.mask2former`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from eval.geneval.msdeform import MSDeformAttnPixelDecoder, sine_position_encoding
from eval.geneval.swin import FFN


class MHA(nn.Module):
    """mmcv's ``MultiheadAttention`` wrapper: ``identity + attn(query + query_pos, key + key_pos, value)``.

    Holds torch's ``nn.MultiheadAttention`` as ``attn`` (keys ``attn.in_proj_weight`` ...); tensors are batch-first
    here and transposed to torch's sequence-first layout, as mmcv does.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads)

    def forward(self, query, key, value, query_pos, key_pos, attn_mask=None) -> torch.Tensor:
        out = self.attn(
            (query + query_pos).transpose(0, 1), (key + key_pos).transpose(0, 1), value.transpose(0, 1),
            attn_mask=attn_mask,
        )[0]
        return query + out.transpose(0, 1)


class DecoderLayer(nn.Module):
    """Post-norm layer: masked cross-attention → norm → self-attention → norm → FFN(ReLU) → norm."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int):
        super().__init__()
        self.cross_attn = MHA(dim, num_heads)
        self.self_attn = MHA(dim, num_heads)
        self.ffn = FFN(dim, ffn_dim, nn.ReLU)
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(3))

    def forward(self, query, query_pos, memory, memory_pos, attn_mask) -> torch.Tensor:
        """query, query_pos ``[B, Q, C]``; memory, memory_pos ``[B, HW, C]``; attn_mask bool ``[B*heads, Q, HW]``."""
        query = self.norms[0](self.cross_attn(query, memory, memory, query_pos, memory_pos, attn_mask))
        query = self.norms[1](self.self_attn(query, query, query, query_pos, query_pos))
        return self.norms[2](self.ffn(query))


class TransformerDecoder(nn.Module):
    def __init__(self, num_layers: int, dim: int, num_heads: int, ffn_dim: int):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(dim, num_heads, ffn_dim) for _ in range(num_layers))
        self.post_norm = nn.LayerNorm(dim)


@dataclass
class HeadOutput:
    """Predictions of every decoder stage (index 0 from the initial queries, index k after layer k).

    cls_logits: list of ``[B, Q, num_classes + 1]`` (last column = "no object");
    mask_logits: list of ``[B, Q, H/4, W/4]`` on the stride-4 grid of the padded input.
    """

    cls_logits: list[torch.Tensor]
    mask_logits: list[torch.Tensor]


class Mask2FormerHead(nn.Module):
    """Pixel decoder + masked-attention decoder + heads (mmdetection ``panoptic_head``)."""

    def __init__(
        self,
        in_channels: tuple[int, ...],
        channels: int = 256,
        num_queries: int = 100,
        num_classes: int = 80,
        decoder_layers: int = 9,
        decoder_heads: int = 8,
        decoder_ffn: int = 2048,
        num_feats: int = 128,
        pixel_decoder: dict | None = None,
    ):
        super().__init__()
        self.num_heads = decoder_heads
        self.num_feats = num_feats
        self.pixel_decoder = MSDeformAttnPixelDecoder(in_channels, channels=channels, num_feats=num_feats,
                                                      **(pixel_decoder or {}))
        self.num_levels = self.pixel_decoder.num_levels
        self.transformer_decoder = TransformerDecoder(decoder_layers, channels, decoder_heads, decoder_ffn)
        self.query_embed = nn.Embedding(num_queries, channels)
        self.query_feat = nn.Embedding(num_queries, channels)
        self.level_embed = nn.Embedding(self.num_levels, channels)
        self.cls_embed = nn.Linear(channels, num_classes + 1)
        self.mask_embed = nn.Sequential(
            nn.Linear(channels, channels), nn.ReLU(), nn.Linear(channels, channels), nn.ReLU(),
            nn.Linear(channels, channels),
        )

    def _predict(self, query: torch.Tensor, mask_features: torch.Tensor, mask_size: tuple[int, int]):
        """Heads on ``post_norm(query)``; also the next layer's attention mask (True = not attended)."""
        query = self.transformer_decoder.post_norm(query)
        cls_logits = self.cls_embed(query)
        mask_logits = torch.einsum("bqc,bchw->bqhw", self.mask_embed(query), mask_features)
        attn = F.interpolate(mask_logits, mask_size, mode="bilinear", align_corners=False)
        attn = attn.flatten(2).unsqueeze(1).repeat(1, self.num_heads, 1, 1).flatten(0, 1)
        attn = attn.sigmoid() < 0.5
        # A query whose mask is empty at this level would attend to nothing (NaN softmax): let it attend everywhere.
        attn = attn & (attn.sum(-1) != attn.shape[-1]).unsqueeze(-1)
        return cls_logits, mask_logits, attn

    def forward(self, feats: list[torch.Tensor], last_only: bool = False) -> HeadOutput:
        """feats: backbone maps (strides 4..32). With ``last_only`` only the final prediction is kept."""
        mask_features, memories = self.pixel_decoder(feats)
        return self.decode(mask_features, memories, last_only)

    def decode(self, mask_features: torch.Tensor, memories: list[torch.Tensor], last_only: bool = False) -> HeadOutput:
        """The transformer decoder and heads on the pixel decoder's outputs (mask features ``[B, C, H/4, W/4]``,
        memories ``[B, C, H_l, W_l]`` for strides 32, 16, 8)."""
        b = mask_features.shape[0]
        inputs, poss = [], []
        for i, mem in enumerate(memories):
            inputs.append(mem.flatten(2).transpose(1, 2) + self.level_embed.weight[i].view(1, 1, -1))
            pos = sine_position_encoding(mem.shape[-2], mem.shape[-1], self.num_feats, mem.device)
            poss.append(pos.flatten(2).transpose(1, 2).expand(b, -1, -1))
        query = self.query_feat.weight.unsqueeze(0).repeat(b, 1, 1)
        query_pos = self.query_embed.weight.unsqueeze(0).repeat(b, 1, 1)
        cls_logits, mask_logits, attn = self._predict(query, mask_features, memories[0].shape[-2:])
        out = HeadOutput([cls_logits], [mask_logits])
        for i, layer in enumerate(self.transformer_decoder.layers):
            lvl = i % self.num_levels
            query = layer(query, query_pos, inputs[lvl], poss[lvl], attn)
            next_size = memories[(i + 1) % self.num_levels].shape[-2:]
            cls_logits, mask_logits, attn = self._predict(query, mask_features, next_size)
            if last_only:  # drop earlier predictions as we go: they are large ([B, Q, H/4, W/4] each)
                out = HeadOutput([cls_logits], [mask_logits])
            else:
                out.cls_logits.append(cls_logits)
                out.mask_logits.append(mask_logits)
        return out
