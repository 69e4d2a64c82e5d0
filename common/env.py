"""The environment a number came from, recorded with every run and every table (DEVELOPERS.md "thread counts are set
explicitly and recorded").

Float results on a CPU depend on the kernels the CPU runs (AVX2 vs AVX-512 reductions differ in the last bits) and on
the intra-op thread count (it changes how reductions are split). :func:`set_threads` pins the count a recipe runs with
(recorded in its config, so a resume with another count is refused); :func:`environment` records the rest.

:func:`keep_freed_memory` (called with :func:`set_threads` at the start of every recipe) changes speed, not results:
with glibc's default malloc a tensor above its adaptive threshold is a fresh ``mmap`` and the heap's free top is given
back to the kernel, so every sampling step of the small shapes-world models pays its memory again in page faults
(13 % of a quickstart's CPU time went to the kernel, 219 M minor faults). Memory a process freed is kept for its next
tensor instead (``IMAGECOT_MALLOC=default`` keeps glibc's behaviour; ``benchmarks/bench_allocator.py`` measures both).
"""
from __future__ import annotations

import ctypes
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

__all__ = ["PACKAGES", "cpu_model", "environment", "git_hash", "keep_freed_memory", "set_threads"]

PACKAGES = ("torch", "torchvision", "transformers", "accelerate", "diffusers", "open_clip_torch", "hydra-core",
            "numpy", "pillow", "safetensors")


def git_hash(path: str | os.PathLike | None = None) -> str | None:
    """HEAD commit of the repository holding ``path`` (default: this code), ``+dirty`` if modified, else None."""
    cwd = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def set_threads(threads: int | None) -> int:
    """Pin torch's intra-op thread count (``None`` keeps the current one); returns the count in effect."""
    if threads is not None:
        if int(threads) < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


# glibc's mallopt parameters (malloc.h) and the values set: allocations below 32 MiB come from the heap, and the heap
# is trimmed only when more than 2 GiB - 1 (the largest int mallopt takes) lies free at its top, i.e. in practice never
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD, TRIM_THRESHOLD = 32 << 20, 2**31 - 1
KEPT = f"glibc, mmap threshold {MMAP_THRESHOLD >> 20} MiB, no trim"
_allocator = "system defaults"


def keep_freed_memory() -> str:
    """Make glibc's malloc keep freed memory in this process (see the module docstring); returns what is in effect,
    as :func:`environment` records it. Not glibc (macOS, musl) or ``IMAGECOT_MALLOC=default``: nothing changes. Once
    set, it stays set for the life of the process (and is reported so)."""
    global _allocator
    if _allocator == KEPT:
        return _allocator
    if os.environ.get("IMAGECOT_MALLOC", "") == "default":
        _allocator = "system defaults (IMAGECOT_MALLOC=default)"
    elif platform.libc_ver()[0] != "glibc":
        _allocator = "system defaults (not glibc)"
    else:
        mallopt = ctypes.CDLL(None).mallopt
        ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        _allocator = KEPT if ok else "system defaults (mallopt refused)"
    return _allocator


def environment(device: str | torch.device | None = None) -> dict[str, Any]:
    """Git hash, Python and package versions, torch threads, CPU model and the device a run used."""
    if device is None:  # not told: the accelerator this process would use
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    gpu = None
    if device.type == "cuda" and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(device)
    return {
        "git": git_hash(),
        "python": sys.version.split()[0],
        "packages": {name: _version(name) for name in PACKAGES},
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "allocator": _allocator,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "device": str(device),
        "gpu": gpu,
    }
