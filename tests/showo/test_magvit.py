"""Unit tests of showo.magvit / showo.magvit_blocks on tiny CPU models (expected numbers derived by hand)."""
from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from showo.magvit import MAGVITv2, MagvitConfig, image_transform, infer_config, to_pil, to_uint8
from showo.magvit_blocks import LFQuantizer, lfq_commitment_loss, lfq_entropy_loss

# 3 levels (factor 4), 6-bit codebook, 4 GroupNorm groups: a "shapes world" sized model.
TINY = MagvitConfig(ch=8, encoder_ch_mult=(1, 2, 2), encoder_num_res_blocks=(1, 1, 1), decoder_ch_mult=(1, 1, 2),
                    decoder_num_res_blocks=(1, 2, 1), z_channels=6, codebook_dim=6, num_groups=4, resolution=32)


@pytest.fixture(scope="module")
def tiny_model() -> MAGVITv2:
    torch.manual_seed(0)
    return MAGVITv2(TINY).eval()


# --- LFQ -----------------------------------------------------------------------------------------------------
def test_lfq_buffers_channel0_is_most_significant_bit():
    q = LFQuantizer(13)
    assert q.embedding.shape == (8192, 13) and q.embedding.dtype == torch.float32
    assert q.power_vals.dtype == torch.int64
    assert q.power_vals.tolist() == [4096, 2048, 1024, 512, 256, 128, 64, 32, 16, 8, 4, 2, 1]
    assert q.embedding[0].tolist() == [-1.0] * 13
    assert q.embedding[8191].tolist() == [1.0] * 13
    assert q.embedding[5].tolist() == [-1.0] * 10 + [1.0, -1.0, 1.0]  # 5 = 0b101
    assert q.embedding[4096].tolist() == [1.0] + [-1.0] * 12


def test_lfq_codes_from_signs_and_zero_maps_to_minus_one():
    q = LFQuantizer(3)
    # One position per column: signs (+,-,+) -> 0b101 = 5; (0,+,+) -> 0 counts as -1 -> 0b011 = 3.
    z = torch.tensor([[0.2, 0.0], [-1.5, 3.0], [0.7, 1e-30]]).reshape(1, 3, 1, 2)
    z_q, codes = q(z)
    assert codes.tolist() == [[[5, 3]]]
    assert z_q[0, :, 0, 0].tolist() == [1.0, -1.0, 1.0]
    assert z_q[0, :, 0, 1].tolist() == [-1.0, 1.0, 1.0]


def test_lfq_index_bits_round_trip_all_codes():
    q = LFQuantizer(13)
    codes = torch.arange(8192).reshape(2, 64, 64)
    latents = q.codes_to_latents(codes)  # [2, 13, 64, 64]
    assert latents.shape == (2, 13, 64, 64)
    _, back = q(latents)
    assert torch.equal(back, codes)


def test_lfq_rejects_out_of_range_and_float_codes():
    q = LFQuantizer(4)
    with pytest.raises(ValueError, match=r"\[0, 16\).*\[0, 16\]"):
        q.codes_to_latents(torch.tensor([[[0, 16]]]))
    with pytest.raises(ValueError, match="integer"):
        q.codes_to_latents(torch.zeros(1, 1, 1))


def test_lfq_straight_through_gradient_is_identity():
    q = LFQuantizer(2)
    z = torch.tensor([0.3, -0.2, 1.7, -4.0]).reshape(1, 2, 1, 2).requires_grad_()
    z_q, _ = q(z)
    (z_q * torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 2, 1, 2)).sum().backward()
    assert z.grad.flatten().tolist() == [1.0, 2.0, 3.0, 4.0]


def test_commitment_loss_value_and_gradient_by_hand():
    z = torch.tensor([0.5, -2.0], requires_grad=True)
    z_q = z + (torch.tensor([1.0, -1.0]) - z).detach()
    loss = lfq_commitment_loss(z, z_q, beta=0.25)
    # (q - z)^2 = (0.25, 1.0), mean 0.625; value (1 + 0.25) * 0.625.
    assert loss.item() == pytest.approx(0.78125, abs=1e-12)
    loss.backward()
    # q - z = (0.5, 1.0). d/dz mean((q - z)^2) = -(q - z) = (-0.5, -1.0); the beta term reaches z through the
    # straight-through with +0.25 * (q - z) = (0.125, 0.25). Sum: -(1 - beta) * (q - z).
    assert z.grad.tolist() == pytest.approx([-0.375, -0.75], abs=1e-12)


def test_entropy_loss_by_hand():
    # z = 0: both soft assignments 1/2 -> sample entropy ln 2 = codebook entropy -> 0.
    assert lfq_entropy_loss(torch.zeros(4, 3)).item() == pytest.approx(0.0, abs=1e-7)
    # One bit, samples +1 and -1: logits (0, -4) and (-4, 0). Sample entropy H(s), s = sigmoid(4); the mean
    # assignment is (1/2, 1/2), entropy ln 2.
    s = 1 / (1 + math.exp(-4))
    h = -(s * math.log(s) + (1 - s) * math.log(1 - s))
    z = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
    assert lfq_entropy_loss(z).item() == pytest.approx(h - math.log(2), abs=1e-12)
    # All samples on the same sign: codebook entropy = sample entropy -> 0 (collapse is not rewarded).
    assert lfq_entropy_loss(torch.ones(5, 2, dtype=torch.float64)).item() == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match=r"\[N, d\]"):
        lfq_entropy_loss(torch.zeros(1, 2, 3))


# --- config --------------------------------------------------------------------------------------------------
def test_default_config_is_the_released_model():
    cfg = MagvitConfig()
    assert (cfg.ch, cfg.z_channels, cfg.codebook_dim, cfg.num_groups, cfg.norm_eps) == (128, 13, 13, 32, 1e-6)
    assert cfg.downsample_factor == 16 and cfg.codebook_size == 8192
    with torch.device("meta"):
        model = MAGVITv2(cfg)
    assert len(model.state_dict()) == 382
    # Parameter counts from the reference spec §11.1.
    assert sum(p.numel() for p in model.encoder.parameters()) == 55_439_171
    assert sum(p.numel() for p in model.decoder.parameters()) == 39_947_833
    shortcuts = sorted(k for k in model.state_dict() if "nin_shortcut.weight" in k)
    assert shortcuts == ["decoder.up.1.block.0.nin_shortcut.weight", "decoder.up.3.block.0.nin_shortcut.weight",
                         "encoder.down.1.block.0.nin_shortcut.weight", "encoder.down.3.block.0.nin_shortcut.weight"]


@pytest.mark.parametrize(
    "changes, field",
    [
        (dict(decoder_ch_mult=(1, 2)), "decoder_ch_mult"),
        (dict(z_channels=12), "z_channels"),
        (dict(ch=24), "num_groups"),
        (dict(double_z=True), "double_z"),
        (dict(encoder_num_res_blocks=(4, 3, 0, 3, 4)), "encoder_num_res_blocks"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(changes, field):
    with pytest.raises(ValueError, match=f"MagvitConfig.{field}="):
        MagvitConfig(**changes)


def test_config_dict_round_trip_and_unknown_field():
    assert MagvitConfig.from_dict(json.loads(json.dumps(TINY.to_dict()))) == TINY
    with pytest.raises(ValueError, match=r"cfg\.json: unknown MagvitConfig field\(s\) \['chh'\]"):
        MagvitConfig.from_dict({"chh": 3}, source="cfg.json")


# --- model ---------------------------------------------------------------------------------------------------
def test_tiny_shapes_encode_decode(tiny_model):
    x = torch.rand(2, 3, 32, 24) * 2 - 1
    with torch.no_grad():
        codes = tiny_model.encode(x)
        assert codes.shape == (2, 8 * 6) and codes.dtype == torch.int64
        assert 0 <= int(codes.min()) and int(codes.max()) < 64
        images = tiny_model.decode(codes, shape=(8, 6))
        assert images.shape == (2, 3, 32, 24)
        # [B, h, w] codes decode like flat codes with shape=(h, w): the same latents through the same float32 decoder
        torch.testing.assert_close(tiny_model.decode(codes.reshape(2, 8, 6)), images, rtol=0, atol=1e-6)
        square = tiny_model.decode(torch.zeros(1, 16, dtype=torch.long))
    assert square.shape == (1, 3, 16, 16)


def test_decode_and_encode_reject_bad_shapes(tiny_model):
    with pytest.raises(ValueError, match="not a square grid"):
        tiny_model.decode(torch.zeros(1, 12, dtype=torch.long))
    with pytest.raises(ValueError, match=r"shape=\(3, 3\) holds 9 codes, but got 12"):
        tiny_model.decode(torch.zeros(1, 12, dtype=torch.long), shape=(3, 3))
    with pytest.raises(ValueError, match="multiples of 4"):
        tiny_model.encode(torch.zeros(1, 3, 30, 32))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        tiny_model.encode(torch.zeros(3, 32, 32))


def test_results_do_not_depend_on_batch_size(tiny_model):
    torch.manual_seed(1)
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        batched = tiny_model.encode(x)
        single = torch.cat([tiny_model.encode(x[i : i + 1]) for i in range(3)])
        assert torch.equal(batched, single)
        dec = tiny_model.decode(batched)
        dec_single = torch.cat([tiny_model.decode(batched[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(dec, dec_single, rtol=1e-5, atol=1e-5)


def test_forward_backward_reaches_encoder_through_straight_through():
    torch.manual_seed(2)
    model = MAGVITv2(TINY).train()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    out = model(x)
    assert out.reconstruction.shape == x.shape and out.codes.shape == (2, 16)
    assert out.quantizer_loss.ndim == 0 and out.entropy_loss.ndim == 0
    assert out.quantizer_loss.item() > 0
    # Only the reconstruction term: the encoder gets gradients solely through the straight-through estimator.
    ((out.reconstruction - x) ** 2).mean().backward()
    assert model.encoder.conv_in.weight.grad is not None
    assert model.encoder.conv_in.weight.grad.abs().sum().item() > 0
    assert model.decoder.conv_out.weight.grad.abs().sum().item() > 0
    model.zero_grad()
    model(x).entropy_loss.backward()
    assert model.encoder.quant_conv.weight.grad.abs().sum().item() > 0
    assert model.decoder.conv_out.weight.grad is None


# --- checkpoints ---------------------------------------------------------------------------------------------
def test_save_load_round_trip(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "magvit_config.json",
                                                          "pytorch_model.safetensors"]
    assert json.loads((tmp_path / "config.json").read_text())["_class_name"] == "MAGVITv2"
    loaded = MAGVITv2.from_pretrained(tmp_path)
    assert loaded.config == TINY and not loaded.training
    original = tiny_model.state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, original[key]), key
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded.encode(x), tiny_model.encode(x))
    as_double = MAGVITv2.from_pretrained(tmp_path, dtype=torch.float64)
    assert as_double.decoder.conv_out.weight.dtype == torch.float64
    assert as_double.quantize.power_vals.dtype == torch.int64


def test_infer_config_from_weights_needs_magvit_config_only_for_groups(tmp_path):
    cfg = MagvitConfig(ch=32, encoder_ch_mult=(1, 2), encoder_num_res_blocks=(1, 2), decoder_ch_mult=(1, 1),
                       decoder_num_res_blocks=(2, 1), attn_resolutions=(128,), z_channels=7, codebook_dim=7)
    model = MAGVITv2(cfg)
    assert infer_config(model.state_dict()) == cfg
    model.save_pretrained(tmp_path)
    (tmp_path / "magvit_config.json").unlink()
    assert MAGVITv2.from_pretrained(tmp_path).config == cfg
    # With 4 groups the shapes alone cannot tell; the inferred default (32 groups) is rejected, naming the file.
    MAGVITv2(TINY).save_pretrained(tmp_path / "tiny")
    (tmp_path / "tiny" / "magvit_config.json").unlink()
    with pytest.raises(ValueError, match=r"pytorch_model\.safetensors.*MagvitConfig\.num_groups=32"):
        MAGVITv2.from_pretrained(tmp_path / "tiny")
    assert MAGVITv2.from_pretrained(tmp_path / "tiny", config=TINY).config == TINY


def test_strict_load_reports_missing_key_and_wrong_shape(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    path = tmp_path / "pytorch_model.safetensors"
    tensors = load_file(path)
    del tensors["decoder.mid.attn_1.q.bias"]
    tensors["encoder.conv_in.weight"] = torch.zeros(8, 3, 1, 1)
    tensors["extra.weight"] = torch.zeros(1)
    save_file(tensors, path)
    with pytest.raises(ValueError) as err:
        MAGVITv2.from_pretrained(tmp_path)
    message = str(err.value)
    assert str(path) in message
    assert "missing keys: decoder.mid.attn_1.q.bias" in message
    assert "unexpected keys: extra.weight" in message
    assert "encoder.conv_in.weight: file [8, 3, 1, 1] vs model [8, 3, 3, 3]" in message


def test_missing_files_and_wrong_class(tiny_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        MAGVITv2.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="pytorch_model.safetensors"):
        MAGVITv2.from_pretrained(tmp_path)
    tiny_model.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "Showo"}))
    with pytest.raises(ValueError, match=r"config\.json: _class_name='Showo'"):
        MAGVITv2.from_pretrained(tmp_path)


def test_bin_weights_load_with_weights_only(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    (tmp_path / "pytorch_model.safetensors").unlink()
    torch.save(tiny_model.state_dict(), tmp_path / "pytorch_model.bin")
    loaded = MAGVITv2.from_pretrained(tmp_path)
    assert torch.equal(loaded.encoder.conv_in.weight, tiny_model.encoder.conv_in.weight)


# --- pre/post-processing -------------------------------------------------------------------------------------
def test_image_transform_resizes_short_side_and_center_crops():
    # 300x100 image: black sides, white middle third. Short side already 100 -> the center crop is all white.
    image = Image.new("RGB", (300, 100), (0, 0, 0))
    image.paste((255, 255, 255), (100, 0, 200, 100))
    out = image_transform(image, 100)
    assert out.shape == (3, 100, 100) and out.dtype == torch.float32
    assert torch.equal(out, torch.ones(3, 100, 100))
    # Constant colour survives the bicubic resize; 0 -> -1, 255 -> 1, 51 -> 51/255*2 - 1 = -0.6.
    flat = image_transform(Image.new("RGB", (64, 40), (255, 0, 51)), 32)
    assert flat.shape == (3, 32, 32)
    assert flat[0].unique().tolist() == [1.0] and flat[1].unique().tolist() == [-1.0]
    assert flat[2].unique().tolist() == pytest.approx([-0.6], abs=1e-6)
    assert image_transform(Image.new("L", (8, 8), 255), 8).shape == (3, 8, 8)


def test_to_uint8_truncates_and_to_pil():
    # (x + 1) / 2 * 255 = 127.9 -> 127 (truncated, not rounded); -2 -> 0 (clamped); 1 -> 255; 2 -> 255.
    x = torch.tensor([127.9 / 255 * 2 - 1, -2.0, 1.0, 2.0], dtype=torch.float64).reshape(1, 1, 1, 4).expand(1, 3, 1, 4)
    out = to_uint8(x)
    assert out.shape == (1, 1, 4, 3) and out.dtype == torch.uint8
    assert out[0, 0, :, 0].tolist() == [127, 0, 255, 255]
    images = to_pil(torch.zeros(2, 3, 5, 7))
    assert len(images) == 2 and images[0].size == (7, 5) and images[0].mode == "RGB"
    assert images[1].getpixel((0, 0)) == (127, 127, 127)  # 0 -> 127.5 -> 127
