"""common.training: divergence stops the run naming the step and the last good checkpoint."""
from __future__ import annotations

import pytest
import torch
from accelerate import Accelerator

from common.io import NonFiniteError
from common.training import Divergence, check_step, resume, save_checkpoint


def test_non_finite_loss_stops_naming_step_and_checkpoint(tmp_path):
    acc = Accelerator(cpu=True)
    model = torch.nn.Linear(2, 2)
    acc.prepare(model)
    save_checkpoint(acc, tmp_path, 3, keep=1, model=model)
    check_step(acc, tmp_path, 4, loss=torch.tensor(1.0), grad_norm=2.0)
    with pytest.raises(Divergence) as err:
        check_step(acc, tmp_path, 5, loss=torch.tensor(float("nan")), grad_norm=float("inf"))
    message = str(err.value)
    assert "step 5" in message and "loss = nan" in message and "grad_norm = inf" in message
    assert "step_000003" in message and "no final weights" in message


def test_checkpoint_of_non_finite_weights_is_refused(tmp_path):
    acc = Accelerator(cpu=True)
    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="weight"):
        save_checkpoint(acc, tmp_path, 1, keep=1, model=model)
    assert not (tmp_path / "checkpoints").exists()


def test_resume_deletes_what_a_run_killed_before_pruning_left(tmp_path):
    """Killed after marking its last checkpoint complete but before deleting the older one: nothing later in the run
    would delete it, so resuming does (an uninterrupted run keeps only the newest ``keep``)."""
    acc = Accelerator(cpu=True)
    model = torch.nn.Linear(2, 2)
    acc.prepare(model)
    save_checkpoint(acc, tmp_path, 2, keep=0, model=model)  # keep=0: nothing pruned, as if killed before pruning
    save_checkpoint(acc, tmp_path, 4, keep=0, model=model)
    assert resume(acc, tmp_path) == 4 and len(list((tmp_path / "checkpoints").iterdir())) == 2  # no keep: left alone
    assert resume(acc, tmp_path, keep=1) == 4
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step_000004"]


def test_resume_deletes_what_a_killed_save_or_deletion_left(tmp_path):
    """A run killed while saving a checkpoint (files but no progress file) or while deleting an old one (some files
    left, progress file gone) leaves incomplete folders: resuming deletes them and loads the newest complete one."""
    acc = Accelerator(cpu=True)
    model = torch.nn.Linear(2, 2)
    acc.prepare(model)
    save_checkpoint(acc, tmp_path, 4, keep=0, model=model)
    root = tmp_path / "checkpoints"
    (root / "step_000002").mkdir()
    (root / "step_000002" / "optimizer.bin").write_bytes(b"left by a killed deletion")
    save_checkpoint(acc, tmp_path, 6, keep=0, model=model)
    (root / "step_000006" / "progress.json").unlink()  # killed before marking it complete
    assert resume(acc, tmp_path) == 4
    assert sorted(p.name for p in root.iterdir()) == ["step_000004"]


def test_a_killed_first_save_is_cleared_too(tmp_path):
    acc = Accelerator(cpu=True)
    acc.prepare(torch.nn.Linear(2, 2))
    (tmp_path / "checkpoints" / "step_000002").mkdir(parents=True)
    (tmp_path / "checkpoints" / "step_000002" / "model.safetensors").write_bytes(b"half")
    assert resume(acc, tmp_path, keep=2) == 0
    assert list((tmp_path / "checkpoints").iterdir()) == []


def test_pruning_unmarks_a_checkpoint_before_deleting_its_files(tmp_path, monkeypatch):
    """Killed half-way through deleting an old checkpoint, a run must not leave a folder that still looks complete
    (progress file present) while its weights are gone: the progress file goes first."""
    import shutil as shutil_module

    from common import training

    acc = Accelerator(cpu=True)
    model = torch.nn.Linear(2, 2)
    acc.prepare(model)
    save_checkpoint(acc, tmp_path, 2, keep=0, model=model)
    save_checkpoint(acc, tmp_path, 4, keep=0, model=model)
    seen = []
    monkeypatch.setattr(shutil_module, "rmtree", lambda path, **kw: seen.append((path / "progress.json").exists()))
    training.prune_checkpoints(tmp_path, 1)
    assert seen == [False]
