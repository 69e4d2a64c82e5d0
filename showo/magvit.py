"""MAGVIT-v2 image tokenizer with lookup-free quantization, as used by Show-o (reference spec ``showo.md`` §10-11).

Images in ``[-1, 1]`` map to a grid of ``h x w`` integer codes (``h = H / 2^(levels-1)``, 16x16 at 256 px for the
released model) and back. :class:`MAGVITv2` loads the official ``showlab/magvitv2`` checkpoint strictly (same
state-dict keys) and also tiny configurations for CPU tests. Pre/post-processing follows the official scripts:
:func:`image_transform` (PIL -> ``[3, r, r]`` in ``[-1, 1]``) and :func:`to_uint8` (truncating, as Show-o does).

Typical use::

    vq = MAGVITv2.from_pretrained("/models/magvitv2")
    codes = vq.encode(image_transform(pil, 256)[None])   # [1, 256] int64, row-major 16x16
    images = to_pil(vq.decode(codes))                    # list of PIL images
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision import transforms

from common.io import atomic_write_text
from showo.checkpoint import (WEIGHTS_BIN, WEIGHTS_SAFETENSORS, check_state_dict, find_weights, read_weights,
                              save_weights)
from showo.magvit_blocks import Decoder, Encoder, LFQuantizer, lfq_commitment_loss, lfq_entropy_loss

WEIGHTS_NAME, WEIGHTS_NAME_BIN = WEIGHTS_SAFETENSORS, WEIGHTS_BIN
CONFIG_NAME = "config.json"  # diffusers-style file of the official checkpoint; holds no constructor values
IMAGECOT_CONFIG_NAME = "magvit_config.json"  # every MagvitConfig field, written by save_pretrained
OFFICIAL_CLASS_NAMES = ("MAGVITv2", "MAGViTv2")  # the HF config says MAGVITv2; the Python class is MAGViTv2
OFFICIAL_CONFIG = {"_class_name": "MAGVITv2", "_diffusers_version": "0.30.1"}


@dataclass(frozen=True)
class MagvitConfig:
    """Every constructor value of the official ``VQGANEncoder`` / ``VQGANDecoder`` / ``LFQuantizer``.

    Defaults are the released ``showlab/magvitv2`` values (spec §11.1-11.5). The number of levels is
    ``len(encoder_ch_mult) == len(decoder_ch_mult)`` and the downsampling factor is ``2 ** (levels - 1)``.
    ``num_groups`` / ``norm_eps`` are hard-coded in the official ``Normalize`` (32, 1e-6); they are fields here so
    that narrow CPU "shapes world" models can use fewer groups. ``resolution`` only decides where
    ``attn_resolutions`` puts attention blocks (``[5]`` never matches, so the released model has attention only in
    the mid blocks); the model is fully convolutional.
    """

    ch: int = 128
    encoder_ch_mult: tuple[int, ...] = (1, 2, 2, 4, 4)
    encoder_num_res_blocks: tuple[int, ...] = (4, 3, 4, 3, 4)
    decoder_ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    decoder_num_res_blocks: tuple[int, ...] = (4, 4, 3, 4, 3)
    attn_resolutions: tuple[int, ...] = (5,)
    dropout: float = 0.0
    in_channels: int = 3
    out_channels: int = 3
    resolution: int = 256
    z_channels: int = 13
    double_z: bool = False
    num_groups: int = 32
    norm_eps: float = 1e-6
    # LFQuantizer
    codebook_dim: int = 13
    num_codebook_entry: int = -1  # unused by the official code (-1); kept so the record is complete
    beta: float = 0.25
    entropy_multiplier: float = 0.1
    commit_loss_multiplier: float = 0.1

    def __post_init__(self):
        # Hydra / JSON hand over lists; the dataclass is frozen and hashable, so store tuples.
        for name in ("encoder_ch_mult", "encoder_num_res_blocks", "decoder_ch_mult", "decoder_num_res_blocks",
                     "attn_resolutions"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        self._validate()

    def _validate(self) -> None:
        def bad(field: str, why: str) -> ValueError:
            return ValueError(f"MagvitConfig.{field}={getattr(self, field)!r}: {why}")

        levels = len(self.encoder_ch_mult)
        if levels < 1:
            raise bad("encoder_ch_mult", "needs at least one level")
        for field in ("encoder_num_res_blocks", "decoder_ch_mult", "decoder_num_res_blocks"):
            if len(getattr(self, field)) != levels:
                raise bad(field, f"must have one entry per level ({levels}, the length of encoder_ch_mult)")
        for field in ("encoder_ch_mult", "decoder_ch_mult", "encoder_num_res_blocks", "decoder_num_res_blocks"):
            if min(getattr(self, field)) < 1:
                raise bad(field, "entries must be >= 1")
        if self.double_z:
            raise bad("double_z", "True is not supported (the official quant_conv expects z_channels inputs)")
        if self.z_channels != self.codebook_dim:
            raise bad("z_channels", f"must equal codebook_dim={self.codebook_dim}: LFQ quantizes each latent channel")
        if self.num_codebook_entry not in (-1, 2**self.codebook_dim):
            raise bad("num_codebook_entry", f"must be -1 or 2**codebook_dim={2**self.codebook_dim}")
        if not 1 <= self.codebook_dim <= 62:
            raise bad("codebook_dim", "must be in [1, 62] so codes fit in int64")
        widths = {self.ch * m for m in self.encoder_ch_mult + self.decoder_ch_mult}
        if any(w % self.num_groups for w in widths):
            raise bad("num_groups", f"must divide every channel width {sorted(widths)}")

    @property
    def num_levels(self) -> int:
        return len(self.encoder_ch_mult)

    @property
    def downsample_factor(self) -> int:
        """Pixels per code along each side: ``2 ** (levels - 1)`` (16 for the released model)."""
        return 2 ** (self.num_levels - 1)

    @property
    def num_codes(self) -> int:
        """Codes per image at ``resolution``: ``(resolution / downsample_factor) ** 2`` (256 for the released model)."""
        return (self.resolution // self.downsample_factor) ** 2

    @property
    def codebook_size(self) -> int:
        return 2**self.codebook_dim

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping, source: str = "<dict>") -> MagvitConfig:
        """Build from a JSON-like mapping; unknown fields raise ``ValueError`` naming ``source``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{source}: unknown MagvitConfig field(s) {unknown}; valid fields are {sorted(known)}")
        try:
            return cls(**values)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: {err}") from err


@dataclass
class MagvitOutput:
    """Result of :meth:`MAGVITv2.forward` (training). Losses already carry the official multipliers.

    reconstruction: ``[B, 3, H, W]``; codes: ``[B, h*w]`` int64; quantizer_loss / entropy_loss: scalars.
    The reconstruction (pixel/perceptual/GAN) loss is the caller's choice and is not computed here.
    """

    reconstruction: torch.Tensor
    codes: torch.Tensor
    quantizer_loss: torch.Tensor
    entropy_loss: torch.Tensor


class MAGVITv2(nn.Module):
    """Encoder -> LFQ -> decoder (spec §11). Submodules ``encoder``, ``decoder``, ``quantize`` as in the checkpoint."""

    def __init__(self, config: MagvitConfig | None = None):
        super().__init__()
        self.config = config = config if config is not None else MagvitConfig()
        shared = dict(ch=config.ch, z_channels=config.z_channels, attn_resolutions=config.attn_resolutions,
                      resolution=config.resolution, dropout=config.dropout, num_groups=config.num_groups,
                      eps=config.norm_eps)
        self.encoder = Encoder(in_channels=config.in_channels, ch_mult=config.encoder_ch_mult,
                               num_res_blocks=config.encoder_num_res_blocks, **shared)
        self.decoder = Decoder(out_channels=config.out_channels, ch_mult=config.decoder_ch_mult,
                               num_res_blocks=config.decoder_num_res_blocks, **shared)
        self.quantize = LFQuantizer(config.codebook_dim)

    # --- inference API -------------------------------------------------------------------------------------
    def _check_pixels(self, pixel_values: torch.Tensor) -> None:
        f = self.config.downsample_factor
        if pixel_values.ndim != 4 or pixel_values.shape[1] != self.config.in_channels:
            raise ValueError(
                f"pixel_values must be [B, {self.config.in_channels}, H, W], got {list(pixel_values.shape)}"
            )
        if pixel_values.shape[2] % f or pixel_values.shape[3] % f:
            raise ValueError(f"pixel_values height and width must be multiples of {f}, got {list(pixel_values.shape)}")

    def quantize_latents(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z [B, d, h, w]`` (encoder output) -> ``(z_q [B, d, h, w] straight-through, codes [B, h*w] row-major)``."""
        z_q, codes = self.quantize(z)
        return z_q, codes.flatten(1)

    def encode(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``pixel_values [B, 3, H, W]`` in ``[-1, 1]`` -> ``codes [B, h*w]`` int64, row-major over ``(h, w)``.

        Same as the official ``get_code``. Runs in the model's dtype (cast the input to it).
        """
        self._check_pixels(pixel_values)
        return self.quantize_latents(self.encoder(pixel_values))[1]

    def decode(self, codes: torch.Tensor, shape: tuple[int, int] | None = None) -> torch.Tensor:
        """``codes [B, h*w]`` (with ``shape=(h, w)``, default square) or ``[B, h, w]`` -> images ``[B, 3, H, W]``.

        Output is approximately in ``[-1, 1]`` (not clamped; see :func:`to_uint8`). Same as ``decode_code``.
        """
        if codes.ndim == 3:
            if shape is not None and tuple(shape) != tuple(codes.shape[1:]):
                raise ValueError(f"shape={shape} disagrees with codes of shape {list(codes.shape)}")
            grid = codes
        elif codes.ndim == 2:
            n = codes.shape[1]
            if shape is None:
                side = math.isqrt(n)
                if side * side != n:
                    raise ValueError(f"{n} codes per image is not a square grid; pass shape=(h, w)")
                shape = (side, side)
            if shape[0] * shape[1] != n:
                raise ValueError(f"shape={tuple(shape)} holds {shape[0] * shape[1]} codes, but got {n} per image")
            grid = codes.reshape(codes.shape[0], shape[0], shape[1])
        else:
            raise ValueError(f"codes must be [B, h*w] or [B, h, w], got {list(codes.shape)}")
        return self.decoder(self.quantize.codes_to_latents(grid))

    def forward(self, pixel_values: torch.Tensor) -> MagvitOutput:
        """Training pass: encode, quantize (straight-through), decode, and the LFQ losses (MAGVIT-v2 §3.1)."""
        self._check_pixels(pixel_values)
        z = self.encoder(pixel_values)  # [B, d, h, w]
        z_q, codes = self.quantize_latents(z)
        cfg = self.config
        z_rows = z.permute(0, 2, 3, 1).reshape(-1, cfg.codebook_dim)  # [B*h*w, d]
        return MagvitOutput(
            reconstruction=self.decoder(z_q),
            codes=codes,
            quantizer_loss=lfq_commitment_loss(z, z_q, cfg.beta) * cfg.commit_loss_multiplier,
            entropy_loss=lfq_entropy_loss(z_rows) * cfg.entropy_multiplier,
        )

    # --- checkpoints -----------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike,
        config: MagvitConfig | None = None,
        dtype: torch.dtype | None = None,
        device: str | torch.device = "cpu",
    ) -> MAGVITv2:
        """Load an official (``showlab/magvitv2``) or imagecot checkpoint directory strictly, in eval mode.

        Weights: ``pytorch_model.safetensors``, else ``pytorch_model.bin`` (``torch.load(weights_only=True)``).
        Config: ``config`` if given, else ``magvit_config.json`` if present, else inferred from the weight shapes
        (:func:`infer_config`). Missing files raise ``FileNotFoundError``; missing/unexpected keys or shape
        mismatches raise ``ValueError`` naming the keys, shapes and file.
        """
        directory = Path(directory)
        weights_path = find_weights(directory, "MAGVIT-v2")
        _check_official_config(directory / CONFIG_NAME)
        state_dict = read_weights(weights_path, device)
        if config is None:
            own = directory / IMAGECOT_CONFIG_NAME
            if own.is_file():
                config = MagvitConfig.from_dict(json.loads(own.read_text()), source=str(own))
            else:
                config = infer_config(state_dict, source=str(weights_path))
        with torch.device("meta"):
            model = cls(config)  # no random init: every tensor comes from the file
        check_state_dict(model, state_dict, source=str(weights_path))
        model.load_state_dict(state_dict, strict=True, assign=True)
        model.to(device=device, dtype=dtype)
        return model.eval()

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write ``pytorch_model.safetensors``, an official-form ``config.json`` and ``magvit_config.json``.

        Each file is written to a temporary name and moved into place. The official ``MAGVITv2.from_pretrained``
        can read the result when the config is the released one (its constructor takes no values).
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_weights(self.state_dict(), directory / WEIGHTS_NAME)
        atomic_write_text(directory / CONFIG_NAME, json.dumps(OFFICIAL_CONFIG, indent=2) + "\n")
        atomic_write_text(directory / IMAGECOT_CONFIG_NAME, json.dumps(self.config.to_dict(), indent=2) + "\n")


def _check_official_config(path: Path) -> None:
    """The official ``config.json`` is optional here, but if present it must describe a MAGVIT-v2."""
    if not path.is_file():
        return
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    name = values.get("_class_name") if isinstance(values, dict) else None
    if name is not None and name not in OFFICIAL_CLASS_NAMES:
        raise ValueError(f"{path}: _class_name={name!r} is not a MAGVIT-v2 checkpoint (expected one of "
                         f"{list(OFFICIAL_CLASS_NAMES)})")


def _count_indexed(state_dict: Mapping[str, torch.Tensor], prefix: str) -> int:
    """Number of consecutive integer children ``prefix{i}.`` (0, 1, ...) present in the state dict."""
    count = 0
    while any(k.startswith(f"{prefix}{count}.") for k in state_dict):
        count += 1
    return count


def infer_config(state_dict: Mapping[str, torch.Tensor], source: str = "<state dict>") -> MagvitConfig:
    """Widths, levels and block counts from weight shapes (the official ``config.json`` holds none).

    Not recoverable from shapes and left at their defaults: ``num_groups``, ``norm_eps``, ``dropout``,
    ``resolution`` and the loss weights. ``attn_resolutions`` is rebuilt from where attention blocks exist.
    """
    def shape(key: str) -> tuple[int, ...]:
        if key not in state_dict:
            raise ValueError(f"{source}: cannot infer the MAGVIT-v2 config, key {key!r} is missing")
        return tuple(state_dict[key].shape)

    ch, in_channels = shape("encoder.conv_in.weight")[:2]
    enc_levels, dec_levels = _count_indexed(state_dict, "encoder.down."), _count_indexed(state_dict, "decoder.up.")
    if enc_levels == 0 or dec_levels != enc_levels:
        raise ValueError(f"{source}: found {enc_levels} encoder and {dec_levels} decoder levels")

    def level_info(prefix: str) -> tuple[list[int], list[int], list[bool]]:
        mults, blocks, attn = [], [], []
        for level in range(enc_levels):
            width = shape(f"{prefix}{level}.block.0.conv1.weight")[0]
            if width % ch:
                raise ValueError(f"{source}: {prefix}{level} width {width} is not a multiple of ch={ch}")
            mults.append(width // ch)
            blocks.append(_count_indexed(state_dict, f"{prefix}{level}.block."))
            attn.append(_count_indexed(state_dict, f"{prefix}{level}.attn.") > 0)
        return mults, blocks, attn

    enc_mult, enc_blocks, enc_attn = level_info("encoder.down.")
    dec_mult, dec_blocks, dec_attn = level_info("decoder.up.")
    default = MagvitConfig()  # num_groups stays 32: GroupNorm shapes do not reveal it (use magvit_config.json)
    resolutions = [default.resolution // 2**level for level in range(enc_levels)]
    attn = sorted({r for r, a in zip(resolutions, enc_attn) if a} | {r for r, a in zip(resolutions, dec_attn) if a})
    return MagvitConfig.from_dict(dict(
        ch=ch, in_channels=in_channels, out_channels=shape("decoder.conv_out.weight")[0],
        encoder_ch_mult=enc_mult, encoder_num_res_blocks=enc_blocks,
        decoder_ch_mult=dec_mult, decoder_num_res_blocks=dec_blocks,
        attn_resolutions=attn if attn else default.attn_resolutions,
        z_channels=shape("encoder.quant_conv.weight")[0], codebook_dim=shape("quantize.embedding")[1],
    ), source=f"{source} (config inferred from weight shapes)")


# --- official pre/post-processing (spec §10, §11.6) -------------------------------------------------------------
def image_transform(image: Image.Image, resolution: int) -> torch.Tensor:
    """PIL image -> ``[3, resolution, resolution]`` float32 in ``[-1, 1]`` (official ``training/utils.py``).

    Resize the short side to ``resolution`` (bicubic), center-crop, ``ToTensor``, ``Normalize(0.5, 0.5)``.
    Non-RGB images are converted to RGB first, as the official scripts do when opening files.
    """
    if image.mode != "RGB":
        image = image.convert("RGB")
    pipeline = transforms.Compose([
        transforms.Resize(resolution, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop((resolution, resolution)),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]),
    ])
    return pipeline(image)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Decoder output ``[B, 3, H, W]`` (about ``[-1, 1]``) -> ``[B, H, W, 3]`` uint8 on CPU.

    ``clamp((x + 1) / 2, 0, 1) * 255`` then a **truncating** cast, exactly as Show-o's scripts (no rounding).
    """
    if images.ndim != 4:
        raise ValueError(f"images must be [B, C, H, W], got {list(images.shape)}")
    scaled = torch.clamp((images.detach() + 1.0) / 2.0, min=0.0, max=1.0) * 255.0
    return scaled.permute(0, 2, 3, 1).to("cpu").to(torch.uint8)


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """Decoder output ``[B, 3, H, W]`` -> list of ``B`` RGB PIL images (via :func:`to_uint8`)."""
    return [Image.fromarray(np.ascontiguousarray(a)) for a in to_uint8(images).numpy()]


@torch.no_grad()
def decode_codes(vq: "MAGVITv2", codes: torch.Tensor, grid: tuple[int, int], output_type: str = "pil"):
    """The project's one decode path: codes ``[B, h*w]`` -> B PIL images (or ``[B, 3, H, W]`` in ``[0, 1]``).

    One image per VQ call, because convolution kernels may round differently with the batch size, and the PNG written
    to disk must be the pixels a judge scored however the images were batched (generate, search, pools, DPO, reports
    all decode here, through :meth:`showo.pipeline.ShowoPipeline.decode` or directly).
    """
    device = next(vq.parameters()).device
    codes = codes.to(device)
    pixels = torch.cat([vq.decode(c.view(1, *grid)) for c in codes]) if len(codes) else torch.empty(0, 3, 1, 1)
    if output_type == "pt":
        return ((pixels.float() + 1) / 2).clamp(0, 1)
    return to_pil(pixels)


__all__: Sequence[str] = (
    "MAGVITv2", "MagvitConfig", "MagvitOutput", "check_state_dict", "decode_codes", "image_transform",
    "infer_config", "to_pil", "to_uint8",
)
