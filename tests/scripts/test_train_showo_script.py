"""scripts/train_showo.py on a tiny model: the loss falls, checkpoints are written, a killed run resumes exactly."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from showo.data import TokenizedT2IDataset, write_tokenized_dataset
from tests.helpers import REPO_ROOT

PROMPTS = ["a red circle", "a blue square", "two green triangle", "a yellow circle left of a red square"]


def run(args, expect_rc=0):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "train_showo.py"), *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == expect_rc, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("t2i")
    # each prompt always comes with the same image, so the model can learn the pairs
    codes = torch.randint(0, 64, (len(PROMPTS), 16), generator=torch.Generator().manual_seed(0)).repeat(3, 1)
    return write_tokenized_dataset(path, PROMPTS * 3, codes)


def common(dataset_dir, out):
    return [f"dataset.directory={dataset_dir}", f"run_dir={out}", "max_steps=8", "per_device_batch_size=4",
            "gradient_accumulation_steps=2", "checkpoint_every=3", "lr_scheduler.warmup_steps=1", "optim.lr=2e-3",
            "dataset.cond_dropout_prob=0.0"]


def losses(out):
    return [json.loads(line)["train/loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_train_and_resume(dataset_dir, tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    run(common(dataset_dir, full))
    first = losses(full)
    assert len(first) == 8
    assert sum(first[-3:]) < sum(first[:3]), first
    assert (full / "final" / "showo" / "pytorch_model.safetensors").is_file()
    assert sorted(p.name for p in (full / "checkpoints").iterdir()) == ["step_000006", "step_000008"]

    run(common(dataset_dir, killed) + ["debug_exit_after_step=5"], expect_rc=17)
    assert len(losses(killed)) == 5  # steps 4-5 logged after the step-3 checkpoint
    run(common(dataset_dir, killed))
    assert losses(killed) == first
    a = load_file(str(full / "final" / "showo" / "pytorch_model.safetensors"))
    b = load_file(str(killed / "final" / "showo" / "pytorch_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_dataset_validation(tmp_path):
    write_tokenized_dataset(tmp_path, ["a", "b"], torch.zeros(2, 4, dtype=torch.long))
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "a"}\n{"text": "b"}\n')
    with pytest.raises(ValueError, match=r"prompts.jsonl:2: expected a JSON object with a 'prompt' string"):
        TokenizedT2IDataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="dataset file not found: .*missing"):
        TokenizedT2IDataset(tmp_path / "missing")
