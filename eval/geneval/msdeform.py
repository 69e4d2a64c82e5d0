"""Multi-scale deformable-attention pixel decoder of Mask2Former, in pure PyTorch (no mmcv ops).

Cheng et al., "Masked-attention Mask Transformer" (CVPR 2022) §3.3 / Zhu et al., "Deformable DETR" (ICLR 2021), as
implemented by mmdetection's ``MSDeformAttnPixelDecoder``. The sampling is mmcv's
``multi_scale_deformable_attn_pytorch`` (``F.grid_sample``, bilinear, zero padding, ``align_corners=False``), the
path mmcv itself takes on CPU; it also sidesteps the silently-wrong CUDA kernels of GenEval's trap #3.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from eval.geneval.swin import FFN


def sine_position_encoding(h: int, w: int, num_feats: int, device: torch.device | None = None) -> torch.Tensor:
    """DETR's normalised sine encoding of an unpadded ``h × w`` map: float32 ``[1, 2 * num_feats, h, w]``.

    Channels are ``[y part, x part]``, each ``[sin(a0), cos(a0), sin(a1), cos(a1), ...]``. Computed in float32 even for
    a float64 model, as mmdetection does (it derives the encoding from a boolean padding mask).
    """
    ones = torch.ones(1, h, w, device=device)
    y = ones.cumsum(1, dtype=torch.float32)
    x = ones.cumsum(2, dtype=torch.float32)
    scale, eps = 2 * math.pi, 1e-6
    y = y / (y[:, -1:, :] + eps) * scale
    x = x / (x[:, :, -1:] + eps) * scale
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=device)
    dim_t = 10000 ** (2 * (dim_t // 2) / num_feats)
    pos_x = x[:, :, :, None] / dim_t
    pos_y = y[:, :, :, None] / dim_t
    pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).view(1, h, w, -1)
    pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).view(1, h, w, -1)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


def reference_points(h: int, w: int, stride: int, device: torch.device | None = None) -> torch.Tensor:
    """Cell centres of one level, normalised to [0, 1]: float32 ``[h * w, 2]`` as (x, y).

    float32 on purpose: mmdetection 3.x divides float32 grid priors ``(j + 0.5) * stride`` by an integer tensor, so
    these stay float32 inside a float64 model.
    """
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * stride
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * stride
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    priors = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=-1)
    return priors / torch.tensor([w * stride, h * stride], device=device)


def ms_deform_attn_sample(
    value: torch.Tensor, shapes: list[tuple[int, int]], locations: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """mmcv's ``multi_scale_deformable_attn_pytorch``.

    value ``[B, N_v, heads, d]``; locations ``[B, N_q, heads, levels, points, 2]`` in [0, 1] (x, y);
    weights ``[B, N_q, heads, levels, points]``. Returns ``[B, N_q, heads * d]``.
    """
    b, _, heads, d = value.shape
    _, nq, _, levels, points, _ = locations.shape
    values = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * locations - 1
    sampled = []
    for lvl, (h, w) in enumerate(shapes):
        v = values[lvl].flatten(2).transpose(1, 2).reshape(b * heads, d, h, w)
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)  # [B * heads, N_q, points, 2]
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    weights = weights.transpose(1, 2).reshape(b * heads, 1, nq, levels * points)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1).view(b, heads * d, nq)
    return out.transpose(1, 2).contiguous()


class MultiScaleDeformableAttention(nn.Module):
    """mmcv's ``MultiScaleDeformableAttention`` (batch-first, value = query without position, residual added)."""

    def __init__(self, dim: int, num_heads: int, num_levels: int, num_points: int):
        super().__init__()
        self.num_heads, self.num_levels, self.num_points = num_heads, num_levels, num_points
        self.sampling_offsets = nn.Linear(dim, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(dim, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)

    def forward(
        self, query: torch.Tensor, query_pos: torch.Tensor, ref: torch.Tensor, shapes: list[tuple[int, int]]
    ) -> torch.Tensor:
        """query, query_pos ``[B, N, C]``; ref ``[N, 2]`` (the same for every level). Returns ``[B, N, C]``."""
        b, n, _ = query.shape
        value = self.value_proj(query).view(b, n, self.num_heads, -1)
        q = query + query_pos
        offsets = self.sampling_offsets(q).view(b, n, self.num_heads, self.num_levels, self.num_points, 2)
        weights = self.attention_weights(q).view(b, n, self.num_heads, self.num_levels * self.num_points)
        weights = weights.softmax(-1).view(b, n, self.num_heads, self.num_levels, self.num_points)
        normalizer = torch.tensor([[w, h] for h, w in shapes], device=query.device)  # int64, as in mmcv
        locations = ref[None, :, None, None, None, :] + offsets / normalizer[None, None, None, :, None, :]
        return query + self.output_proj(ms_deform_attn_sample(value, shapes, locations, weights))


class DeformableEncoderLayer(nn.Module):
    """Post-norm encoder layer: deformable self-attention → norm → FFN(ReLU) → norm."""

    def __init__(self, dim: int, num_heads: int, num_levels: int, num_points: int, ffn_dim: int):
        super().__init__()
        self.self_attn = MultiScaleDeformableAttention(dim, num_heads, num_levels, num_points)
        self.ffn = FFN(dim, ffn_dim, nn.ReLU)
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(2))

    def forward(self, query, query_pos, ref, shapes):
        query = self.norms[0](self.self_attn(query, query_pos, ref, shapes))
        return self.norms[1](self.ffn(query))


class DeformableEncoder(nn.Module):
    def __init__(self, num_layers: int, **layer_kwargs):
        super().__init__()
        self.layers = nn.ModuleList(DeformableEncoderLayer(**layer_kwargs) for _ in range(num_layers))

    def forward(self, query, query_pos, ref, shapes):
        for layer in self.layers:
            query = layer(query, query_pos, ref, shapes)
        return query


class ConvGN(nn.Module):
    """mmcv ``ConvModule`` with GroupNorm (keys ``conv``, ``gn``) and an optional ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, bias: bool, groups: int, relu: bool):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=bias)
        self.gn = nn.GroupNorm(groups, cout)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.gn(self.conv(x))
        return F.relu(x) if self.relu else x


class MSDeformAttnPixelDecoder(nn.Module):
    """Backbone maps (strides 4, 8, 16, 32) → mask features (stride 4) and 3 memories (strides 32, 16, 8).

    The three coarsest levels go through ``num_layers`` deformable encoder layers jointly (coarsest first); the
    stride-4 level is an FPN step (lateral 1×1 conv + upsampled stride-8 memory → 3×3 conv). No padding mask is
    used anywhere: mmdetection treats the padded canvas as valid.
    """

    def __init__(
        self,
        in_channels: tuple[int, ...] = (96, 192, 384, 768),
        strides: tuple[int, ...] = (4, 8, 16, 32),
        channels: int = 256,
        num_layers: int = 6,
        num_heads: int = 8,
        num_points: int = 4,
        ffn_dim: int = 1024,
        num_feats: int = 128,
        gn_groups: int = 32,
    ):
        super().__init__()
        self.strides = strides
        self.num_levels = len(in_channels) - 1
        self.num_feats = num_feats
        enc_in = [in_channels[len(in_channels) - 1 - i] for i in range(self.num_levels)]
        self.input_convs = nn.ModuleList(ConvGN(c, channels, 1, True, gn_groups, False) for c in enc_in)
        self.encoder = DeformableEncoder(
            num_layers, dim=channels, num_heads=num_heads, num_levels=self.num_levels, num_points=num_points,
            ffn_dim=ffn_dim,
        )
        self.level_encoding = nn.Embedding(self.num_levels, channels)
        self.lateral_convs = nn.ModuleList([ConvGN(in_channels[0], channels, 1, False, gn_groups, False)])
        self.output_convs = nn.ModuleList([ConvGN(channels, channels, 3, False, gn_groups, True)])
        self.mask_feature = nn.Conv2d(channels, channels, 1)

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """feats: 4 maps ``[B, C_i, H_i, W_i]``. Returns mask features ``[B, C, H/4, W/4]`` and memories
        ``[B, C, H_l, W_l]`` for strides 32, 16, 8."""
        b = feats[0].shape[0]
        queries, poss, refs, shapes = [], [], [], []
        for i in range(self.num_levels):
            lvl = len(feats) - 1 - i
            feat = feats[lvl]
            h, w = feat.shape[-2:]
            pos = sine_position_encoding(h, w, self.num_feats, feat.device)
            pos = self.level_encoding.weight[i].view(1, -1, 1, 1) + pos
            queries.append(self.input_convs[i](feat).flatten(2).transpose(1, 2))
            poss.append(pos.flatten(2).transpose(1, 2).expand(b, -1, -1))
            refs.append(reference_points(h, w, self.strides[lvl], feat.device))
            shapes.append((h, w))
        memory = self.encoder(torch.cat(queries, 1), torch.cat(poss, 1), torch.cat(refs, 0), shapes)
        memory = memory.transpose(1, 2)
        outs = [
            m.reshape(b, -1, h, w) for m, (h, w) in zip(memory.split([h * w for h, w in shapes], dim=-1), shapes)
        ]
        lateral = self.lateral_convs[0](feats[0])
        up = F.interpolate(outs[-1], size=lateral.shape[-2:], mode="bilinear", align_corners=False)
        finest = self.output_convs[0](lateral + up)
        return self.mask_feature(finest), outs
