"""The DPO training settings, declared once for the two recipes that train (``scripts/train_dpo.py`` and
``scripts/iterative_dpo.py``, whose rounds run it as a child process): checked before either writes anything."""
from __future__ import annotations

from common.validate import Choice, Float, Int

TRAIN_SETTINGS = (
    Int("train.global_batch_size", min=1), Int("train.per_device_batch_size", min=1, optional=True),
    Int("train.epochs", min=1), Int("train.max_steps", min=1, optional=True), Int("train.checkpoint_every", min=1),
    Int("train.keep_checkpoints", min=1), Float("train.warmup_ratio", min=0, max=1),
    Float("train.optimizer.lr", min=0, optional=True), Float("train.max_grad_norm", min=0, optional=True),
    Choice("train.mixed_precision", ["no", "fp16", "bf16"]), Int("train.stop_after_steps", min=1, optional=True),
    Int("seed"), Int("masking.num_draws", min=1), Float("masking.cond_dropout_prob", min=0, max=1),
)
