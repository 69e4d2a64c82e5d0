"""Swin transformer backbone of GenEval's Mask2Former detector, with mmdetection's module names.

Liu et al., "Swin Transformer" (ICCV 2021), as implemented by mmdetection (``mmdet/models/backbones/swin.py``):
patch 4, window 7, shifted windows in odd blocks, relative position bias, patch merging through an ``nn.Unfold``
gather (channel order ``c * 4 + ky * 2 + kx``) and a LayerNorm ``norm{i}`` on every stage output. Attribute names
mirror mmdetection so that its checkpoints load with ``strict=True``.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn


def relative_position_index(window: int) -> torch.Tensor:
    """Index into the ``(2w - 1)^2`` bias table for every pair of the ``w * w`` window positions: int64 ``[w², w²]``."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :] + (window - 1)  # [2, w², w²], both axes shifted to >= 0
    return rel[0] * (2 * window - 1) + rel[1]


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """``[B, H, W, C]`` → ``[B * H/w * W/w, w, w, C]`` (H, W multiples of ``w``)."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c)


def window_reverse(windows: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``[B * nW, w, w, C]`` → ``[B, H, W, C]``."""
    window = windows.shape[1]
    b = windows.shape[0] // ((h // window) * (w // window))
    x = windows.view(b, h // window, w // window, window, window, -1)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, -1)


@functools.lru_cache(maxsize=32)  # every shifted block of a stage asks for the same mask; callers never mutate it
def shifted_window_mask(h_pad: int, w_pad: int, window: int, shift: int) -> torch.Tensor:
    """Additive attention mask of a shifted block: float32 ``[nW, w², w²]``, 0 within a region, -100 across regions.

    Built on the padded size after the cyclic shift, as mmdetection does (float32 even in a float64 model; the values
    are exact, so the dtype does not matter).
    """
    img = torch.zeros(1, h_pad, w_pad, 1)
    slices = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    region = 0
    for hs in slices:
        for ws in slices:
            img[:, hs, ws, :] = region
            region += 1
    windows = window_partition(img, window).reshape(-1, window * window)
    diff = windows.unsqueeze(1) - windows.unsqueeze(2)
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


class WindowMSA(nn.Module):
    """Multi-head self-attention inside one window, with a learned relative position bias."""

    def __init__(self, dim: int, num_heads: int, window: int):
        super().__init__()
        self.num_heads = num_heads
        self.window = window
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x: ``[B * nW, w², C]``; mask: ``[nW, w², w²]`` or None. Returns ``[B * nW, w², C]``."""
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = q @ k.transpose(-2, -1)  # [B * nW, heads, w², w²]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(bw // nw, nw, self.num_heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, n, n)
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(bw, n, c))


class ShiftWindowMSA(nn.Module):
    """Window attention over a token map, cyclically shifted by ``-shift`` when ``shift > 0``."""

    def __init__(self, dim: int, num_heads: int, window: int, shift: int):
        super().__init__()
        self.window = window
        self.shift = shift
        self.w_msa = WindowMSA(dim, num_heads, window)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """x: ``[B, H*W, C]`` → ``[B, H*W, C]``.

        The map is zero-padded right/bottom to a multiple of the window; padded tokens take part in attention
        (mmdetection does not mask them), which is why the padding is applied to the *normalised* tokens.
        """
        b, _, c = x.shape
        h, w = hw
        win = self.window
        x = x.view(b, h, w, c)
        pad_r, pad_b = (win - w % win) % win, (win - h % win) % win
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        h_pad, w_pad = h + pad_b, w + pad_r
        mask = None
        if self.shift > 0:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
            mask = shifted_window_mask(h_pad, w_pad, win, self.shift).to(x.device)
        windows = self.w_msa(window_partition(x, win).reshape(-1, win * win, c), mask)
        x = window_reverse(windows.view(-1, win, win, c), h_pad, w_pad)
        if self.shift > 0:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        return x[:, :h, :w, :].reshape(b, h * w, c)


class FFN(nn.Module):
    """mmcv's ``FFN`` with two layers: ``identity + Linear(act(Linear(x)))`` (keys ``layers.0.0``, ``layers.1``)."""

    def __init__(self, dim: int, hidden: int, act: type[nn.Module]):
        super().__init__()
        self.layers = nn.Sequential(nn.Sequential(nn.Linear(dim, hidden), act()), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, identity: torch.Tensor | None = None) -> torch.Tensor:
        return (x if identity is None else identity) + self.layers(x)


class SwinBlock(nn.Module):
    """Pre-norm block: ``x + attn(norm1(x))`` then ``x + ffn(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, window: int, shift: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = ShiftWindowMSA(dim, num_heads, window, shift)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = FFN(dim, mlp_ratio * dim, nn.GELU)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), hw)
        return self.ffn(self.norm2(x), identity=x)


class PatchMerging(nn.Module):
    """2×2 neighbour gather (``nn.Unfold`` order: channel ``c * 4 + ky * 2 + kx``) → LayerNorm → Linear(4C → 2C)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        b, _, c = x.shape
        h, w = hw
        x = x.view(b, h, w, c).permute(0, 3, 1, 2)
        x = F.pad(x, (0, w % 2, 0, h % 2))  # mmdet's corner padding for odd sizes
        h2, w2 = (h + 1) // 2, (w + 1) // 2
        x = x.reshape(b, c, h2, 2, w2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, h2 * w2, 4 * c)
        return self.reduction(self.norm(x)), (h2, w2)


class SwinStage(nn.Module):
    """``depth`` blocks (odd ones shifted) and an optional downsampling; returns the pre-downsampling output too."""

    def __init__(self, dim: int, depth: int, num_heads: int, window: int, mlp_ratio: int, downsample: bool):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window, window // 2 if i % 2 else 0, mlp_ratio) for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor, hw: tuple[int, int]):
        for block in self.blocks:
            x = block(x, hw)
        if self.downsample is None:
            return x, hw, x, hw
        x_down, hw_down = self.downsample(x, hw)
        return x_down, hw_down, x, hw


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch × patch`` convolution (``projection``) then LayerNorm over channels."""

    def __init__(self, in_channels: int, dim: int, patch: int):
        super().__init__()
        self.patch = patch
        self.projection = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        h, w = x.shape[-2:]
        x = F.pad(x, (0, -w % self.patch, 0, -h % self.patch))  # corner padding, a no-op for multiples of 32
        x = self.projection(x)
        hw = (x.shape[2], x.shape[3])
        return self.norm(x.flatten(2).transpose(1, 2)), hw


class SwinTransformer(nn.Module):
    """Swin backbone: image ``[B, 3, H, W]`` → 4 maps ``[B, C·2^i, H/2^(i+2), W/2^(i+2)]`` (strides 4, 8, 16, 32)."""

    def __init__(
        self,
        embed_dims: int = 96,
        depths: tuple[int, ...] = (2, 2, 18, 2),
        num_heads: tuple[int, ...] = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: int = 4,
        patch_size: int = 4,
        in_channels: int = 3,
    ):
        super().__init__()
        self.patch_embed = PatchEmbed(in_channels, embed_dims, patch_size)
        self.num_features = [embed_dims * 2**i for i in range(len(depths))]
        self.stages = nn.ModuleList(
            SwinStage(dim, depth, heads, window_size, mlp_ratio, downsample=i < len(depths) - 1)
            for i, (dim, depth, heads) in enumerate(zip(self.num_features, depths, num_heads))
        )
        for i, dim in enumerate(self.num_features):
            self.add_module(f"norm{i}", nn.LayerNorm(dim))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x, hw = self.patch_embed(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x, hw, out, out_hw = stage(x, hw)
            out = getattr(self, f"norm{i}")(out)
            outs.append(out.view(-1, *out_hw, self.num_features[i]).permute(0, 3, 1, 2).contiguous())
        return outs
