"""Small pieces shared by the training recipes (``scripts/train_*.py``): run directories, metrics, resume, sharding.

Recipes stay scripts that read top to bottom; what they share lives here so each is written once.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Optional, Sequence

import torch

from .checkpoint import atomic_write_text
from .seeding import hash_seed

PROGRESS = "progress.json"


def shard_indices(num_examples: int, seed: int, start: int, count: int) -> list[int]:
    """Example indices at global stream positions ``start .. start+count-1``.

    The stream visits a fresh permutation of the data every epoch (seeded by ``(seed, epoch)``), so disjoint position
    ranges (one per process and micro-step) see disjoint examples within an epoch, whatever the process count.
    """
    out, perms = [], {}
    for pos in range(start, start + count):
        epoch, offset = divmod(pos, num_examples)
        if epoch not in perms:
            perms[epoch] = torch.randperm(num_examples, generator=torch.Generator().manual_seed(hash_seed(seed, "epoch", epoch)))
        out.append(int(perms[epoch][offset]))
    return out


def decay_groups(model: torch.nn.Module, weight_decay: float, no_decay: Sequence[str] = ("bias",)) -> list[dict]:
    """AdamW parameter groups; parameters whose name contains a ``no_decay`` substring get no weight decay."""
    decay, plain = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (plain if any(s in name for s in no_decay) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


class MetricsLogger:
    """Appends one JSON object per step to ``metrics.jsonl`` (and to W&B when enabled). Main process only.

    On resume, lines of steps after the checkpoint are dropped so the file matches an uninterrupted run.
    """

    def __init__(self, run_dir: Path, enabled: bool, resume_step: int = 0, wandb_config: Optional[dict] = None,
                 run_config: Optional[dict] = None) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self.enabled = enabled
        self.wandb = None
        if not enabled:
            return
        if self.path.exists():
            kept = [line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= resume_step]
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))
        if wandb_config and wandb_config.get("enabled"):
            import wandb  # optional logger

            self.wandb = wandb.init(project=wandb_config.get("project", "imagecot"), dir=str(run_dir),
                                    config=run_config, resume="allow", mode=wandb_config.get("mode", "online"))

    def log(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        record = {"step": step, **{k: float(v) for k, v in metrics.items()}}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()


def latest_checkpoint(run_dir: Path) -> Optional[tuple[Path, int]]:
    """The newest complete ``checkpoints/step_XXXXXX`` (complete = its progress file was written, last)."""
    root = Path(run_dir) / "checkpoints"
    found = []
    for d in root.glob("step_*") if root.is_dir() else []:
        m = re.fullmatch(r"step_(\d+)", d.name)
        if m and (d / PROGRESS).is_file():
            found.append((int(m.group(1)), d))
    if not found:
        return None
    step, path = max(found)
    return path, step


def resume(accelerator, run_dir: Path) -> int:
    """Load the newest complete checkpoint of ``run_dir`` into the accelerate state; the step to continue from."""
    found = latest_checkpoint(run_dir)
    if found is None:
        return 0
    accelerator.load_state(str(found[0]))
    accelerator.print(f"resumed from {found[0]} (step {found[1]})")
    return found[1]


def save_checkpoint(accelerator, run_dir: Path, step: int, keep: int, extra: Optional[dict] = None) -> Path:
    """accelerate state (model, optimizer, registered objects, RNG) + progress file; keeps the last ``keep``."""
    path = Path(run_dir) / "checkpoints" / f"step_{step:06d}"
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        atomic_write_text(path / PROGRESS, json.dumps({"step": step, **(extra or {})}))
        complete = sorted(p for p in path.parent.glob("step_*") if (p / PROGRESS).is_file())
        for old in complete[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return path


def write_run_config(run_dir: Path, yaml_text: str) -> None:
    atomic_write_text(Path(run_dir) / "config.yaml", yaml_text)


