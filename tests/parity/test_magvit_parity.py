"""Parity of showo.magvit with the official MAGVITv2 (fixtures/magvit_tiny, see fixtures/README.md).

The fixture model is the official class with ch=32; outputs were computed after ``model.double()``. Every tensor
listed in the manifest is checked: inputs for dtype/shape, outputs against our float64 computation.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from showo.magvit import MAGVITv2, MagvitConfig
from tests.helpers import SHARED, require_shared



def _manifest() -> dict:
    path = SHARED / "fixtures" / "magvit_tiny" / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {"tensors": {}, "files_sha256": {}}


MANIFEST = _manifest()
INPUTS = {"pixel_values", "extra_codes"}


@pytest.fixture(scope="module")
def fixture_dir() -> Path:
    return require_shared("fixtures", "magvit_tiny")


@pytest.fixture(scope="module")
def cases(fixture_dir) -> dict[str, torch.Tensor]:
    return load_file(fixture_dir / "cases" / "magvit_cases.safetensors")


@pytest.fixture(scope="module")
def model64(fixture_dir) -> MAGVITv2:
    return MAGVITv2.from_pretrained(fixture_dir, dtype=torch.float64)


@pytest.fixture(scope="module")
def outputs(model64, cases) -> dict[str, torch.Tensor]:
    """Our float64 results for every output tensor of the fixture, computed once through the public API."""
    captured = {}
    # One encoder pass (the slow part): the hook keeps the encoder output that `encode` quantizes.
    hook = model64.encoder.register_forward_hook(lambda module, args, out: captured.setdefault("z", out))
    try:
        with torch.no_grad():
            codes = model64.encode(cases["pixel_values"].double())
            return {
                "encoder_output_f64": captured["z"],
                "codes": codes,
                "decoded_f64": model64.decode(cases["codes"]),
                "extra_decoded_f64": model64.decode(cases["extra_codes"], shape=tuple(MANIFEST["extra_shape"])),
            }
    finally:
        hook.remove()


def _compare(name: str, ours: torch.Tensor, ref: torch.Tensor) -> None:
    assert ours.dtype == ref.dtype and ours.shape == ref.shape, (name, ours.dtype, ref.dtype, ours.shape, ref.shape)
    if name == "codes":
        assert torch.equal(ours, ref)
    elif name == "encoder_output_f64":
        rel = ((ours - ref).abs().max() / ref.abs().max()).item()
        assert rel <= 1e-12, f"{name}: max relative error {rel:.3e}"
        assert torch.equal(ours > 0, ref > 0)  # every sign, hence every code bit
    else:
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-10, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("file_name", sorted(MANIFEST["files_sha256"]))
def test_fixture_files_intact(fixture_dir, file_name):
    digest = hashlib.sha256((fixture_dir / file_name).read_bytes()).hexdigest()
    assert digest == MANIFEST["files_sha256"][file_name]


def test_official_checkpoint_loads_strictly_with_inferred_config(fixture_dir):
    model = MAGVITv2.from_pretrained(fixture_dir)  # official config.json holds no values: inferred from shapes
    tiny = MANIFEST["constructor_args"]["tiny"]
    enc, dec, lfq = tiny["VQGANEncoder"], tiny["VQGANDecoder"], tiny["LFQuantizer"]
    expected = MagvitConfig(
        ch=enc["ch"], encoder_ch_mult=enc["ch_mult"], encoder_num_res_blocks=enc["num_res_blocks"],
        decoder_ch_mult=dec["ch_mult"], decoder_num_res_blocks=dec["num_res_blocks"],
        attn_resolutions=enc["attn_resolutions"], dropout=enc["dropout"], in_channels=enc["in_ch"],
        out_channels=dec["out_ch"], resolution=enc["resolution"], z_channels=enc["z_channels"],
        double_z=enc["double_z"], codebook_dim=lfq["codebook_dim"], num_codebook_entry=lfq["num_codebook_entry"],
        beta=lfq["beta"], entropy_multiplier=lfq["entropy_multiplier"],
        commit_loss_multiplier=lfq["commit_loss_multiplier"],
    )
    assert model.config == expected
    file_keys = set(load_file(fixture_dir / "pytorch_model.safetensors"))
    assert set(model.state_dict()) == file_keys and len(file_keys) == 382
    widths = [b[0].conv1.out_channels for b in (lvl.block for lvl in model.encoder.down)]
    assert widths == MANIFEST["encoder_channels"]
    assert [lvl.block[0].conv1.out_channels for lvl in model.decoder.up] == MANIFEST["decoder_channels"]
    # The released structure (default config) has exactly the fixture's keys, at 4x the width.
    with torch.device("meta"):
        released = MAGVITv2(MagvitConfig()).state_dict()
    assert set(released) == file_keys


@pytest.mark.parametrize("name", sorted(MANIFEST["tensors"]))
def test_parity_tensor(name, cases, outputs):
    spec = MANIFEST["tensors"][name]
    ref = cases[name]
    assert str(ref.dtype).removeprefix("torch.") == spec["dtype"] and list(ref.shape) == spec["shape"]
    if name in INPUTS:
        return
    assert name in outputs, f"manifest tensor {name!r} has no check in this test"
    _compare(name, outputs[name], ref)


def test_manifest_distinct_code_counts(cases):
    counts = [len(row.unique()) for row in cases["codes"]]
    assert counts == MANIFEST["num_unique_codes"]


def test_float32_model_gives_the_same_codes(fixture_dir, cases):
    """The default precision: signs of the encoder output are far from 0 (>= 8.6e-5), so codes match."""
    model = MAGVITv2.from_pretrained(fixture_dir)
    with torch.no_grad():
        codes = model.encode(cases["pixel_values"])
        decoded = model.decode(cases["extra_codes"], shape=tuple(MANIFEST["extra_shape"]))
    assert torch.equal(codes, cases["codes"])
    torch.testing.assert_close(decoded.double(), cases["extra_decoded_f64"], rtol=0, atol=1e-4)
