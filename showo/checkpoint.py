"""Official-format Show-o checkpoints: strict loading and saving (showo.md §2, §5–6).

An official checkpoint directory holds ``config.json`` (diffusers ``ConfigMixin`` format, ``_class_name: "Showo"``) and
``pytorch_model.safetensors`` (or ``pytorch_model.bin``). The transformer's shape comes from the Phi config that
``llm_model_path`` points to (``microsoft/phi-1_5`` for the released models). We never download it: it is looked up
next to the checkpoint, then as a local path, and for ``microsoft/phi-1_5`` its published values are built in.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Optional, Union

import torch
from safetensors.torch import save_file

from common.io import atomic_write, atomic_write_text, check_finite_tensors, read_tensor_file

from .modeling import ShowoConfig, ShowoModel
from .tokens import TokenLayout

logger = logging.getLogger(__name__)

WEIGHTS_SAFETENSORS = "pytorch_model.safetensors"
WEIGHTS_BIN = "pytorch_model.bin"

# microsoft/phi-1_5 config.json (the fields that define the network), so the released checkpoints load offline.
PHI_1_5 = {
    "model_type": "phi", "vocab_size": 51200, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 24,
    "num_attention_heads": 32, "num_key_value_heads": 32, "partial_rotary_factor": 0.5, "rope_theta": 10000.0,
    "rope_scaling": None, "layer_norm_eps": 1e-5, "max_position_embeddings": 2048, "hidden_act": "gelu_new",
}
KNOWN_PHI_CONFIGS = {"microsoft/phi-1_5": PHI_1_5}

PathLike = Union[str, os.PathLike]


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err


def resolve_phi_config(directory: Path, llm_model_path: str, phi_config: Optional[PathLike | dict] = None) -> dict:
    """The Phi config dict for a checkpoint: explicit argument > next to the checkpoint > local path > built-in."""
    if isinstance(phi_config, dict):
        return phi_config
    candidates = [Path(phi_config)] if phi_config is not None else [directory / llm_model_path, Path(llm_model_path)]
    for cand in candidates:
        cfg = cand / "config.json" if cand.is_dir() else cand
        if cfg.is_file():
            return read_json(cfg)
    if phi_config is None and llm_model_path in KNOWN_PHI_CONFIGS:
        logger.info("using the built-in %s config (no local copy found)", llm_model_path)
        return KNOWN_PHI_CONFIGS[llm_model_path]
    raise FileNotFoundError(
        f"Phi config for llm_model_path={llm_model_path!r} not found (looked in {', '.join(map(str, candidates))}); "
        "pass phi_config=<dir or config.json> or place the config next to the checkpoint"
    )


def read_weights(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """A flat state dict from ``.safetensors`` or ``.bin`` (``torch.load(weights_only=True)``, never pickled code).

    A damaged file, or a NaN / inf in any tensor (e.g. written by a diverged run), is a ``ValueError`` naming the file
    (and the tensors)."""
    state = read_tensor_file(path, device)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a flat state dict of tensors")
    check_finite_tensors(state, str(path))
    return state


def find_weights(directory: Path, what: str) -> Path:
    """``pytorch_model.safetensors`` (or ``.bin``) in ``directory``; ``FileNotFoundError`` naming what is missing."""
    if not directory.is_dir():
        raise FileNotFoundError(f"{what} checkpoint directory not found: {directory}")
    for name in (WEIGHTS_SAFETENSORS, WEIGHTS_BIN):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"no {what} weights in {directory}: expected {directory / WEIGHTS_SAFETENSORS} (or {WEIGHTS_BIN})")


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Strict loading check: a ``ValueError`` listing missing keys, unexpected keys and shape mismatches."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    wrong = [f"{k}: file {list(found[k])} vs model {list(expected[k])}"
             for k in sorted(set(expected) & set(found)) if found[k] != expected[k]]
    problems = []
    for label, items in (("missing keys", sorted(set(expected) - set(found))),
                         ("unexpected keys", sorted(set(found) - set(expected))), ("shape mismatches", wrong)):
        if items:
            shown = ", ".join(items[:20]) + (f", ... ({len(items)} in all)" if len(items) > 20 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise ValueError(f"{source} does not match the {type(model).__name__} built from its config: " + "; ".join(problems))


def save_weights(state: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors, written to a temporary file and moved into place."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))


def from_pretrained(
    directory: PathLike,
    *,
    dtype: Optional[torch.dtype] = None,
    device: Optional[torch.device | str] = None,
    phi_config: Optional[PathLike | dict] = None,
    **layout_overrides,
) -> tuple[ShowoModel, TokenLayout]:
    """Load an official (or imagecot-saved) Show-o checkpoint directory strictly.

    Returns the model in eval mode and the checkpoint's :class:`TokenLayout`. ``layout_overrides`` set the fields the
    official config does not carry (e.g. ``max_seq_length``, ``bos_id``) when they differ from the released values.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"Show-o checkpoint directory not found: {directory}")
    config = read_json(directory / "config.json")
    for key in ("vocab_size", "llm_vocab_size"):
        if key not in config:
            raise ValueError(f"{directory / 'config.json'}: missing field {key!r}")
    layout = TokenLayout.from_config(config, **layout_overrides)
    phi = resolve_phi_config(directory, config.get("llm_model_path", "microsoft/phi-1_5"), phi_config)
    model_cfg = ShowoConfig.from_phi_config(phi, vocab_size=layout.vocab_size, w_clip_vit=bool(config.get("w_clip_vit", False)))
    model = ShowoModel(model_cfg)
    weights = find_weights(directory, "Show-o")
    state = read_weights(weights)
    check_state_dict(model, state, str(weights))
    model.load_state_dict(state, strict=True)
    if dtype is not None:
        model.to(dtype)
    if device is not None:
        model.to(device)
    return model.eval(), layout


def save_pretrained(model: ShowoModel, layout: TokenLayout, directory: PathLike) -> Path:
    """Write an official-format checkpoint (``config.json``, ``phi_config/``, ``pytorch_model.safetensors``).

    The official ``Showo.from_pretrained`` accepts it (extra config fields land in its ``**kwargs``), and so does
    :func:`from_pretrained`. Files are written atomically.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "_class_name": "Showo",
        "_diffusers_version": "0.30.1",
        "w_clip_vit": model.config.w_clip_vit,
        "llm_model_path": "phi_config",
        "load_from_showo": True,
        **layout.to_config(),
    }
    save_weights({k: v.float() for k, v in model.state_dict().items()}, directory / WEIGHTS_SAFETENSORS)
    atomic_write_text(directory / "phi_config" / "config.json", json.dumps(model.config.to_phi_config(), indent=2))
    atomic_write_text(directory / "config.json", json.dumps(config, indent=2, sort_keys=True))
    return directory
