"""Atomic file writes, content hashes and finiteness checks: the one implementation every module uses.

A file is written to a temporary file in its own folder and moved into place with ``os.replace``, so a reader (or a
resumed run) sees either the old file or the whole new one, never a torn one — also when the process is killed.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch

PathLike = str | os.PathLike
TEMPORARY = ".tmp"  # atomic writes go through hidden ".<name>.<random>.tmp" files and folders beside their target

__all__ = [
    "NonFiniteError", "append_jsonl", "atomic_write", "atomic_write_bytes", "atomic_write_dir", "atomic_write_json", "atomic_write_text",
    "check_finite_tensors", "export_checkpoint", "file_sha256", "image_sha256", "path_sha256", "png_bytes",
    "read_tensor_file", "remove_temporaries",
]


def atomic_write(path: PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then move it into place; returns ``path``.

    For writers that want a file name (``safetensors.torch.save_file``, ``torch.save``, ``figure.savefig``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_dir(path: PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_dir)`` on a temporary sibling directory, then swap it in place of ``path`` (a crash leaves
    the old directory or none, never a half-written one). For ``save_pretrained``-style writers."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=TEMPORARY, dir=path.parent))
    try:
        write(tmp)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def remove_temporaries(root: PathLike) -> list[Path]:
    """Delete the temporaries of atomic writes under ``root`` that a killed process left behind (hidden
    ``.<name>.<random>.tmp`` files and folders, and safetensors' own ``.tmpXXXXXX``); returns them. Only safe while
    nothing writes under ``root``: run directories call it when a run is resumed, before any process starts working."""
    found = [p for p in Path(root).rglob(".*") if p.name.endswith(TEMPORARY) or p.name.startswith(".tmp")]
    for path in sorted(found, key=lambda p: len(p.parts)):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return found


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)

    return atomic_write(path, write)


def atomic_write_text(path: PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: PathLike, obj: Any, indent: int | None = 1) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def append_jsonl(path: PathLike, records: Iterable[Mapping[str, Any]]) -> Path:
    """Append JSON lines by rewriting the file atomically: a crash never leaves a half-written line."""
    path = Path(path)
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    return atomic_write_text(path, old + "".join(json.dumps(r) + "\n" for r in records))


def png_bytes(image) -> bytes:
    """A PIL image encoded as PNG (deterministic for the same pixels)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: PathLike) -> str:
    """SHA-256 of a file's bytes, memoised per (path, size, mtime) so a large checkpoint is read once per process."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def path_sha256(path: PathLike) -> str:
    """SHA-256 of a file, or of a directory tree (relative names + file hashes, hidden files and ``__pycache__``
    skipped), so a checkpoint directory has one fingerprint. ``FileNotFoundError`` names a missing path."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    if not path.is_dir():
        raise FileNotFoundError(f"input not found: {path}")
    digest = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        digest.update(f"{rel.as_posix()}\0{file_sha256(f)}\n".encode())
    return digest.hexdigest()


def image_sha256(image) -> str:
    """Content hash of a PIL image's pixels (mode + size + raw bytes), independent of how the file was encoded."""
    digest = hashlib.sha256(f"{image.mode}/{image.size}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


class NonFiniteError(ValueError):
    """Weights or a loss that are NaN or infinite; the message names where."""


def check_finite_tensors(tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise :class:`NonFiniteError` naming ``source`` and the first tensors holding NaN / inf values."""
    bad = [name for name, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        shown = ", ".join(bad[:5]) + (f", ... ({len(bad)} in all)" if len(bad) > 5 else "")
        raise NonFiniteError(f"{source}: non-finite values (NaN/inf) in {shown}; refusing to use these weights")


def read_tensor_file(path: PathLike, device: str | torch.device = "cpu", mmap: bool = False) -> Any:
    """The tensors of a ``.safetensors`` file (a dict), or whatever ``torch.load(weights_only=True)`` reads from
    another file. A damaged file is a ``ValueError`` naming it: the readers' own errors name no file (safetensors:
    "invalid header length"; torch: "failed finding central directory")."""
    import pickle

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path), device=str(device))
        return torch.load(path, map_location=device, weights_only=True, mmap=mmap)
    except (SafetensorError, pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ValueError(f"{path}: damaged or not a weights file ({type(err).__name__}: {str(err)[:200]})") from err


def export_checkpoint(src: PathLike, out: PathLike, dtype: torch.dtype = torch.bfloat16, keep: Iterable[str] = (),
                      exclude: Iterable[str] = ()) -> Path:
    """Copy a checkpoint directory with the floating-point tensors of its ``.safetensors`` files cast to ``dtype``
    (how the shapes world's committed checkpoints fit the size budget: they load into float32 models). Files under a
    sub-folder named in ``keep`` are copied unchanged (e.g. an image tokenizer), those under ``exclude`` left out.
    Every file is written atomically; non-finite weights are refused."""
    from safetensors import safe_open
    from safetensors.torch import save

    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise FileNotFoundError(f"export: source directory not found: {src}")
    keep, exclude = set(keep), set(exclude)
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        rel = path.relative_to(src)
        folders = set(rel.parts[:-1])
        if folders & exclude:
            continue
        if path.suffix == ".safetensors" and not folders & keep:
            with safe_open(str(path), "pt") as f:
                metadata = f.metadata()
                tensors = {k: f.get_tensor(k) for k in f.keys()}
            check_finite_tensors(tensors, str(path))
            tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
            atomic_write_bytes(out / rel, save(tensors, metadata=metadata))
        else:
            atomic_write_bytes(out / rel, path.read_bytes())
    return out
