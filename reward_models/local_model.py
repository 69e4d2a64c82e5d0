"""Loading a transformers judge from a local directory: the checks and the one loading path the T2I-R1 experts
(GroundingDINO, GIT) and the LLaVA-OneVision judge share. Nothing is downloaded; weights load with safetensors."""
from __future__ import annotations

from pathlib import Path

from common.io import atomic_write_dir

import torch

__all__ = ["check_model_directory", "load_local", "save_local", "torch_dtype"]


def check_model_directory(model_dir: str | Path, what: str) -> Path:
    """A local transformers directory with a config and safetensors weights, or ``FileNotFoundError`` naming it."""
    path = Path(model_dir).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{what} directory not found: {path} (local directories only; nothing is downloaded)")
    for required in (["config.json"], ["model.safetensors", "model.safetensors.index.json"]):
        if not any((path / name).is_file() for name in required):
            raise FileNotFoundError(f"{what} directory {path} has no {' or '.join(required)}")
    return path


def torch_dtype(name: str, where: str) -> torch.dtype:
    """``torch.<name>`` (``"float32"``, ``"bfloat16"``, ...), or ``ValueError`` naming the setting ``where``."""
    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"{where} {name!r} is not a torch dtype name")
    return dtype


def load_local(model_cls, processor_cls, path: Path, *, dtype: torch.dtype, device: str):
    """``(processor, model)`` from a checked local directory; the model in eval mode on ``device``."""
    processor = processor_cls.from_pretrained(path, local_files_only=True)
    model = model_cls.from_pretrained(path, dtype=dtype, local_files_only=True, use_safetensors=True)
    return processor, model.to(device).eval()


def save_local(model, processor, target: str | Path) -> None:
    """Weights (safetensors) + processor into a temporary sibling of ``target``, then swapped in: a crash leaves no
    half-written model directory."""
    def write(tmp: Path) -> None:
        model.eval().save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)

    atomic_write_dir(Path(target), write)
