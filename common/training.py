"""What every training recipe shares: metrics, accelerate checkpoints, resume, and divergence guards.

Divergence is never silent: :func:`check_step` stops the run at the first step whose loss or gradient norm is NaN or
infinite — on every process at once — before the optimizer applies it, so the newest checkpoint on disk is the last
good one; :func:`save_checkpoint` and final exports refuse non-finite weights (:func:`common.io.check_finite_tensors`).
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Optional

import torch

from .io import NonFiniteError, atomic_write_json, atomic_write_text, check_finite_tensors
from .seeding import hash_seed

__all__ = ["Divergence", "MetricsLogger", "after_step", "check_step", "decay_groups", "latest_checkpoint",
           "optimizer_step", "prepare_resumable", "prune_checkpoints", "recipe_logger", "resume", "save_checkpoint",
           "shard_indices", "total_grad_norm"]

PROGRESS = "progress.json"


class Divergence(NonFiniteError):
    """Training produced a non-finite loss or gradient; the message names the step and the last good checkpoint."""


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


def decay_groups(model: torch.nn.Module, weight_decay: float, no_decay=("bias",)) -> list[dict]:
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


def resume(accelerator, run_dir: Path, keep: Optional[int] = None) -> int:
    """Load the newest complete checkpoint of ``run_dir`` into the accelerate state; the step to continue from.

    Incomplete checkpoints (a run killed while saving or deleting one) are deleted first and, with ``keep``, complete
    ones beyond the newest ``keep``: a run killed between marking a checkpoint complete and deleting the older ones (at
    its last step, nothing would delete them later) ends with the checkpoints an uninterrupted run keeps."""
    if accelerator.is_main_process:
        prune_checkpoints(run_dir, keep)
    accelerator.wait_for_everyone()
    found = latest_checkpoint(run_dir)
    if found is None:
        return 0
    accelerator.load_state(str(found[0]))
    accelerator.print(f"resumed from {found[0]} (step {found[1]})")
    return found[1]


def prepare_resumable(accelerator, run_dir: Path, model, optimizer, lr_scheduler, keep: Optional[int] = None) -> tuple:
    """``accelerator.prepare`` the model and optimizer, checkpoint the learning-rate schedule with them, and resume
    from the newest complete checkpoint (:func:`resume`, keeping ``keep``): ``(model, optimizer, the step to continue
    from)``."""
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(lr_scheduler)
    return model, optimizer, resume(accelerator, run_dir, keep)


def recipe_logger(accelerator, run_dir: Path, start: int, cfg) -> MetricsLogger:
    """The metrics logger of a recipe whose config has a ``wandb`` group: main process only, W&B (when enabled) gets
    the resolved config."""
    from omegaconf import OmegaConf

    return MetricsLogger(run_dir, accelerator.is_main_process, start, OmegaConf.to_container(cfg.wandb),
                         OmegaConf.to_container(cfg, resolve=True))


def prune_checkpoints(run_dir: Path, keep: Optional[int]) -> None:
    """Delete the complete checkpoints of ``run_dir`` older than the newest ``keep`` (``keep`` <= 0 or ``None``: keep
    all) and every incomplete one: what a run killed while saving (no progress file yet) or while deleting left.

    A checkpoint is unmarked (its progress file removed) before its files go, so a deletion killed half-way leaves an
    incomplete checkpoint, never a "complete" one missing its weights; the next prune finishes it.
    """
    root = Path(run_dir) / "checkpoints"
    folders = sorted(p for p in root.glob("step_*") if p.is_dir()) if root.is_dir() else []
    complete = [p for p in folders if (p / PROGRESS).is_file()]
    kept = set(complete[-keep:] if keep is not None and keep > 0 else complete)
    for old in folders:
        if old not in kept:
            (old / PROGRESS).unlink(missing_ok=True)
            shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(accelerator, run_dir: Path, step: int, keep: int, model=None,
                    extra: Optional[dict] = None) -> Path:
    """accelerate state (model, optimizer, registered objects, RNG) + progress file; keeps the last ``keep``.

    With ``model`` given, its weights are checked first: a non-finite tensor is an error and nothing is written.
    """
    if model is not None:
        check_finite_tensors(accelerator.unwrap_model(model).state_dict(), f"weights at step {step}")
    path = Path(run_dir) / "checkpoints" / f"step_{step:06d}"
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        atomic_write_json(path / PROGRESS, {"step": step, **(extra or {})})
        prune_checkpoints(run_dir, keep)
    accelerator.wait_for_everyone()
    return path


def total_grad_norm(accelerator, model, max_norm: Optional[float]) -> torch.Tensor:
    """The global gradient norm, clipping to ``max_norm`` when given (``None``: measure only, change nothing)."""
    return accelerator.clip_grad_norm_(model.parameters(), math.inf if max_norm is None else max_norm)


def check_step(accelerator, run_dir: Path, step: int, **values) -> None:
    """Stop with :class:`Divergence` when any value (loss, gradient norm, ...) of optimizer step ``step`` (1-based) is
    non-finite on any process. Call it after ``backward`` and before ``optimizer.step``."""
    local = [float(v.detach().float().item() if isinstance(v, torch.Tensor) else v) for v in values.values()]
    bad = torch.tensor([0.0 if math.isfinite(x) else 1.0 for x in local], device=accelerator.device)
    bad = accelerator.reduce(bad, reduction="sum")
    if bool((bad > 0).any()):
        names = [f"{name} = {x}" for (name, x), flag in zip(zip(values, local), bad.tolist()) if flag > 0]
        last = latest_checkpoint(run_dir)
        kept = f"the last good checkpoint is {last[0]} (step {last[1]})" if last else "no checkpoint was written"
        raise Divergence(f"{run_dir}: training diverged at step {step}: {', '.join(names)} (non-finite on at least "
                         f"one process); stopped before applying it, {kept}, no final weights written. "
                         "Lower the learning rate or enable gradient clipping.")


def optimizer_step(accelerator, run_dir: Path, step: int, optimizer, lr_scheduler, **values) -> None:
    """Optimizer step ``step`` (1-based): :func:`check_step` on ``values`` (loss, gradient norm, ...), then the update,
    the learning-rate schedule, and the gradients set to ``None``."""
    check_step(accelerator, run_dir, step, **values)
    optimizer.step()
    lr_scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def after_step(accelerator, run_dir: Path, step: int, *, every: int, last: int, keep: int, model,
               exit_after: Optional[int] = None) -> None:
    """After optimizer step ``step`` (1-based): a checkpoint every ``every`` steps and at ``last`` (keeping ``keep``);
    then, at ``exit_after``, exit like a killed process (code 17, no cleanup), a testing aid for resume."""
    if step % every == 0 or step == last:
        save_checkpoint(accelerator, run_dir, step, keep, model=model)
    if exit_after is not None and step == exit_after:
        os._exit(17)
