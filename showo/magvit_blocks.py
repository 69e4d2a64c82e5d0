"""Building blocks of the MAGVIT-v2 image tokenizer used by Show-o (reference spec ``showo.md`` §11.2-11.5).

Taming-transformers-style convolutional encoder/decoder plus the lookup-free quantizer (LFQ) of MAGVIT-v2
(Yu et al., "Language Model Beats Diffusion -- Tokenizer is Key to Visual Generation", §3.1). Attribute names
are chosen so that state-dict keys equal those of the official ``showlab/magvitv2`` checkpoint
(``encoder.down.{l}.block.{j}.norm1.weight``, ``quantize.embedding``, ...).

Numerics deliberately follow the reference operation by operation (swish as ``x * sigmoid(x)``, attention as
two ``bmm`` with an explicit softmax) so that a float64 model reproduces the official float64 outputs to
rounding level; fused kernels (``F.silu``, SDPA) would change the last bits.

The LFQ training losses are small pure functions (:func:`lfq_commitment_loss`, :func:`lfq_entropy_loss`).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def swish(x: torch.Tensor) -> torch.Tensor:
    """``x * sigmoid(x)``, written out (not ``F.silu``) to match the reference bit for bit."""
    return x * torch.sigmoid(x)


def group_norm(channels: int, num_groups: int, eps: float) -> nn.GroupNorm:
    """Affine GroupNorm; the released model uses 32 groups and eps 1e-6."""
    return nn.GroupNorm(num_groups=num_groups, num_channels=channels, eps=eps, affine=True)


class ResnetBlock(nn.Module):
    """GN -> swish -> conv3x3 -> GN -> swish -> dropout -> conv3x3, plus a skip (1x1 ``nin_shortcut`` if widths differ).

    Shapes: ``[B, in_channels, H, W] -> [B, out_channels, H, W]``. No timestep embedding (the tokenizer has none).
    """

    def __init__(self, in_channels: int, out_channels: int, *, dropout: float, num_groups: int, eps: float):
        super().__init__()
        self.norm1 = group_norm(in_channels, num_groups, eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.norm2 = group_norm(out_channels, num_groups, eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        # The key name `nin_shortcut` (and its absence when widths agree) is part of the checkpoint format.
        self.nin_shortcut = (
            nn.Conv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        skip = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return skip + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the ``H*W`` positions, residual. ``[B, C, H, W] -> [B, C, H, W]``.

    ``softmax(q k^T * C^-0.5) v`` computed with ``bmm`` in the reference's order (scores ``[B, HW, HW]``).
    """

    def __init__(self, channels: int, *, num_groups: int, eps: float):
        super().__init__()
        self.norm = group_norm(channels, num_groups, eps)
        self.q = nn.Conv2d(channels, channels, kernel_size=1)
        self.k = nn.Conv2d(channels, channels, kernel_size=1)
        self.v = nn.Conv2d(channels, channels, kernel_size=1)
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        b, c, height, width = x.shape
        q = self.q(h).reshape(b, c, height * width).permute(0, 2, 1)  # [B, HW, C]
        k = self.k(h).reshape(b, c, height * width)  # [B, C, HW]
        v = self.v(h).reshape(b, c, height * width)  # [B, C, HW]
        scores = torch.bmm(q, k) * (int(c) ** (-0.5))  # [B, HW_query, HW_key]
        weights = F.softmax(scores, dim=2)
        out = torch.bmm(v, weights.permute(0, 2, 1)).reshape(b, c, height, width)  # [B, C, HW_query]
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Zero-pad right/bottom by one pixel, then conv3x3 stride 2: ``[B, C, H, W] -> [B, C, H/2, W/2]``."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Asymmetric (0, 1, 0, 1) padding: torch convs only pad symmetrically.
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))


class Upsample(nn.Module):
    """Nearest-neighbour x2, then conv3x3: ``[B, C, H, W] -> [B, C, 2H, 2W]``."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class MidBlock(nn.Module):
    """ResnetBlock -> AttnBlock -> ResnetBlock at the lowest resolution (keys ``mid.block_1/attn_1/block_2``)."""

    def __init__(self, channels: int, *, dropout: float, num_groups: int, eps: float):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout=dropout, num_groups=num_groups, eps=eps)
        self.attn_1 = AttnBlock(channels, num_groups=num_groups, eps=eps)
        self.block_2 = ResnetBlock(channels, channels, dropout=dropout, num_groups=num_groups, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Level(nn.Module):
    """One resolution level: ``block`` (ResnetBlocks), ``attn`` (one AttnBlock per block, or empty), then an
    optional resampler stored under ``resample_name`` (``downsample`` / ``upsample``, as in the checkpoint)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_blocks: int,
        *,
        with_attn: bool,
        resampler: type[nn.Module] | None,
        resample_name: str,
        dropout: float,
        num_groups: int,
        eps: float,
    ):
        super().__init__()
        widths = [in_channels] + [out_channels] * num_blocks
        self.block = nn.ModuleList(
            ResnetBlock(widths[j], widths[j + 1], dropout=dropout, num_groups=num_groups, eps=eps)
            for j in range(num_blocks)
        )
        self.attn = nn.ModuleList(
            AttnBlock(out_channels, num_groups=num_groups, eps=eps) for _ in range(num_blocks if with_attn else 0)
        )
        self.resample_name = resample_name
        setattr(self, resample_name, resampler(out_channels) if resampler is not None else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for j, block in enumerate(self.block):
            x = block(x)
            if len(self.attn) > 0:
                x = self.attn[j](x)
        resampler = getattr(self, self.resample_name)
        return x if resampler is None else resampler(x)


class Encoder(nn.Module):
    """Image -> continuous latents (spec §11.3). ``[B, in_channels, H, W] -> [B, z_channels, H/f, W/f]``,
    ``f = 2 ** (len(ch_mult) - 1)``. The output is taken after ``quant_conv``, i.e. the quantizer's input."""

    def __init__(
        self,
        *,
        in_channels: int,
        ch: int,
        ch_mult: Sequence[int],
        num_res_blocks: Sequence[int],
        z_channels: int,
        attn_resolutions: Sequence[int],
        resolution: int,
        dropout: float,
        num_groups: int,
        eps: float,
    ):
        super().__init__()
        norm = dict(dropout=dropout, num_groups=num_groups, eps=eps)
        self.conv_in = nn.Conv2d(in_channels, ch, kernel_size=3, stride=1, padding=1)
        in_mult = (1,) + tuple(ch_mult)
        levels, curr_res = [], resolution
        for level, mult in enumerate(ch_mult):
            is_last = level == len(ch_mult) - 1
            levels.append(
                Level(ch * in_mult[level], ch * mult, num_res_blocks[level], with_attn=curr_res in attn_resolutions,
                      resampler=None if is_last else Downsample, resample_name="downsample", **norm)
            )
            curr_res = curr_res if is_last else curr_res // 2
        self.down = nn.ModuleList(levels)
        width = ch * ch_mult[-1]
        self.mid = MidBlock(width, **norm)
        self.norm_out = group_norm(width, num_groups, eps)
        self.conv_out = nn.Conv2d(width, z_channels, kernel_size=3, stride=1, padding=1)
        self.quant_conv = nn.Conv2d(z_channels, z_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        h = self.mid(h)
        return self.quant_conv(self.conv_out(swish(self.norm_out(h))))


class Decoder(nn.Module):
    """Quantized latents -> image (spec §11.4). ``[B, z_channels, h, w] -> [B, out_channels, h*f, w*f]``.

    ``up`` is indexed by level (0 = full resolution) but executed from the last level down to 0.
    """

    def __init__(
        self,
        *,
        out_channels: int,
        ch: int,
        ch_mult: Sequence[int],
        num_res_blocks: Sequence[int],
        z_channels: int,
        attn_resolutions: Sequence[int],
        resolution: int,
        dropout: float,
        num_groups: int,
        eps: float,
    ):
        super().__init__()
        norm = dict(dropout=dropout, num_groups=num_groups, eps=eps)
        num_levels = len(ch_mult)
        width = ch * ch_mult[-1]
        self.post_quant_conv = nn.Conv2d(z_channels, z_channels, kernel_size=1)
        self.conv_in = nn.Conv2d(z_channels, width, kernel_size=3, stride=1, padding=1)
        self.mid = MidBlock(width, **norm)
        levels: list[Level] = [None] * num_levels  # type: ignore[list-item]
        curr_res = resolution // 2 ** (num_levels - 1)
        for level in reversed(range(num_levels)):
            levels[level] = Level(width, ch * ch_mult[level], num_res_blocks[level],
                                  with_attn=curr_res in attn_resolutions,
                                  resampler=Upsample if level != 0 else None, resample_name="upsample", **norm)
            width = ch * ch_mult[level]
            curr_res = curr_res * 2 if level != 0 else curr_res
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(width, num_groups, eps)
        self.conv_out = nn.Conv2d(width, out_channels, kernel_size=3, stride=1, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(self.post_quant_conv(z)))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(swish(self.norm_out(h)))


class LFQuantizer(nn.Module):
    """Lookup-free quantizer (MAGVIT-v2 §3.1; spec §11.5): each latent channel is quantized to its sign.

    ``z_c > 0 -> +1`` else ``-1`` (exactly 0 maps to -1). A position's code is the bit string read with
    **channel 0 as the most significant bit**: ``code = sum_c 2^(d-1-c) [z_c > 0]``, ``0 <= code < 2^d``.

    Buffers (persistent, part of the official checkpoint): ``embedding`` ``[2^d, d]`` float, the +-1 vector of
    every code, and ``power_vals`` ``[d]`` int64 = ``2^(d-1), ..., 2, 1``.
    """

    def __init__(self, codebook_dim: int):
        super().__init__()
        self.codebook_dim = codebook_dim
        self.codebook_size = 2**codebook_dim
        power_vals = 2 ** torch.arange(codebook_dim - 1, -1, -1, dtype=torch.long)  # [d]
        bits = (torch.arange(self.codebook_size, dtype=torch.long)[:, None] // power_vals) % 2  # [2^d, d]
        self.register_buffer("embedding", bits.float() * 2 - 1)
        self.register_buffer("power_vals", power_vals)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z [B, d, h, w] -> (z_q [B, d, h, w], codes [B, h, w] int64)``.

        ``z_q`` equals the +-1 values in the forward pass and has the identity gradient w.r.t. ``z``
        (straight-through estimator), computed as ``z + (sign - z).detach()`` like the reference.
        """
        if z.ndim != 4 or z.shape[1] != self.codebook_dim:
            raise ValueError(f"LFQuantizer expects z of shape [B, {self.codebook_dim}, h, w], got {list(z.shape)}")
        positive = z > 0
        hard = torch.where(positive, 1.0, -1.0).to(z.dtype)
        z_q = z + (hard - z).detach()
        codes = (positive.long() * self.power_vals.view(1, -1, 1, 1)).sum(dim=1)
        return z_q, codes

    def codes_to_latents(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes [B, h, w]`` (int) -> +-1 latents ``[B, d, h, w]`` in the dtype of ``embedding``."""
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise ValueError(f"codes must be an integer tensor, got dtype {codes.dtype}")
        if codes.numel() > 0:
            low, high = int(codes.min()), int(codes.max())
            if low < 0 or high >= self.codebook_size:
                raise ValueError(
                    f"codes must lie in [0, {self.codebook_size}), got values in [{low}, {high}]"
                )
        return self.embedding[codes.long()].permute(0, 3, 1, 2).contiguous()


def lfq_commitment_loss(z: torch.Tensor, z_q: torch.Tensor, beta: float) -> torch.Tensor:
    """Commitment loss of the official ``LFQuantizer`` (before its ``commit_loss_multiplier``), a scalar.

    ``mean((sg[z_q] - z)^2) + beta * mean((z_q - sg[z])^2)`` with ``z`` the encoder output and ``z_q`` the
    **straight-through** quantized tensor (any shape, same as ``z``). Its value is ``(1 + beta) * mean((q - z)^2)``.
    Because ``z_q`` carries the identity gradient, the ``beta`` term also reaches the encoder, with the opposite
    sign of the first term: the encoder's gradient is ``(1 - beta)`` times the plain commitment gradient. That is
    what the reference computes (LFQ has no codebook for the ``beta`` term to train), so it is kept as is.
    """
    return torch.mean((z_q.detach() - z) ** 2) + beta * torch.mean((z_q - z.detach()) ** 2)


def lfq_entropy_loss(z: torch.Tensor) -> torch.Tensor:
    """Entropy penalty of LFQ (MAGVIT-v2 §3.1, official factorised form), before ``entropy_multiplier``; a scalar.

    ``z`` is ``[N, d]`` (one row per spatial position). Each bit ``c`` gets a soft assignment over ``{+1, -1}``
    with logits ``(-(z_c - 1)^2, -(z_c + 1)^2)``. The loss is the mean per-sample entropy (pushes each latent
    to commit to a sign) minus the entropy of the batch-averaged assignment (rewards using both values of every
    bit, hence the whole codebook), both averaged over the ``d`` bits. The official code factorises the codebook
    entropy per bit instead of over the ``2^d`` joint codes of the paper's formula.
    """
    if z.ndim != 2:
        raise ValueError(f"lfq_entropy_loss expects z of shape [N, d], got {list(z.shape)}")
    logits = torch.stack([-((z - 1) ** 2), -((z + 1) ** 2)], dim=-1)  # [N, d, 2]
    log_probs = torch.log_softmax(logits, dim=-1)
    probs = log_probs.exp()
    sample_entropy = -(probs * log_probs).sum(-1).mean()
    mean_probs = probs.mean(dim=0)  # [d, 2]
    codebook_entropy = -(mean_probs * torch.log(mean_probs.clamp_min(torch.finfo(z.dtype).tiny))).sum(-1).mean()
    return sample_entropy - codebook_entropy
