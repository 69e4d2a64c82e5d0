"""Kill-at-a-random-point tests (issue 18, item 6): a recipe killed with SIGKILL at random points and resumed with
the same command writes the same bytes as an uninterrupted run.

The run is a forked child process (the test's imports are already loaded, so a kill costs no start-up time) running
the recipe's ``run(cfg)``; the parent waits until the child has opened its run directory, waits a random time within
the uninterrupted run's working time (measured the same way) and sends SIGKILL — no cleanup, no ``finally`` — like a
machine losing power. Each seed kills twice (the run and its first resumption), then resumes to the end. What a killed
run left on disk is checked too: every result file it finished is already the reference's (files are written
atomically and marked complete last), so nothing half-written is ever reused.
"""
from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time

import pytest
from omegaconf import open_dict

from tests.catalogue.world import config, recipe, summary_scores, tree

SEEDS = [0, 1, 2]
SETTINGS = {  # a dozen units of work each (images, slots, scored batches, optimizer steps), a second or two in all
    "generate": ["images_per_prompt=2", "batch_size=1", "model.sampling.num_inference_steps=4"],
    "run_search": ["search=best_of_n", "reward=orm_zeroshot", "search.strategy.num_candidates=3",
                   "search.strategy.batch_size=2", "images_per_prompt=2", "model.sampling.num_inference_steps=3"],
    "eval_geneval": ["eval.batch_size=1"],
    "train_showo": ["max_steps=8", "checkpoint_every=2"],
    "train_dpo": ["train.epochs=4", "train.checkpoint_every=2", "train.optimizer.lr=1e-3"],
}


def finished(path: str, left: dict[str, bytes]) -> bool:
    """A file a killed run can only have written completely: an image, a slot record, the weights of a checkpoint
    whose progress file (written last) exists. It must already be the reference's file."""
    if path.split("/")[-1].startswith("."):
        return False  # a temporary of an atomic write
    if path.startswith(("images/", "slots/")):
        return True
    folder, _, name = path.rpartition("/")
    return path.startswith("checkpoints/") and name == "model.safetensors" and f"{folder}/progress.json" in left
SUMMARY = "summary.json"  # compared without its creation time and environment


def make_config(name, world, run_dir):
    cfg = config(name, world, run_dir, SETTINGS[name])
    if name == "run_search":  # best-of-N ranked by a judge that needs no weights: mean red channel
        with open_dict(cfg):
            cfg.search.strategy.judge = {"_target_": "dpo.toy.MeanChannelJudge"}
    return cfg


def outputs(run_dir) -> dict[str, bytes]:
    """What a run wrote, as bytes by relative path; its own path in config.yaml written as ``<run_dir>``.

    Not compared byte for byte: run.json (sessions), summary.json (creation time; compared without it) and
    accelerate's ``random_states_*.pkl``, which hold the process's global Python RNG state: it depends on what the
    process did before the run, the recipes draw nothing from it (every draw has its own generator), and the same
    weights and metrics below show the resumed training is the uninterrupted one.
    """
    found = {path: data for path, data in tree(run_dir, skip=("run.json", SUMMARY)).items()
             if not path.split("/")[-1].startswith("random_states_")}
    if "config.yaml" in found:
        found["config.yaml"] = found["config.yaml"].replace(str(run_dir).encode(), b"<run_dir>")
    return found


@pytest.fixture(scope="module")
def references(world, tmp_path_factory):
    """Uninterrupted run of each recipe (computed on first use): its run dir, outputs and working time."""
    found = {}

    def get(name):
        if name not in found:
            out = tmp_path_factory.mktemp(f"reference_{name}") / "run"
            code, seconds = run_child(name, make_config(name, world, out), out)
            assert code == 0
            found[name] = (out, outputs(out), seconds)
        return found[name]

    return get


def _child(name, cfg):
    recipe(name).run(cfg)


def run_child(name, cfg, run_dir, kill_after: float | None = None) -> tuple[int, float]:
    """Run the recipe in a forked child; SIGKILL it ``kill_after`` seconds after it opened ``run_dir`` (None: let it
    finish). Returns its exit code and the seconds from opening the run dir to the end. The parent never runs a
    recipe itself, so every child starts in the same state (no model or code path warmed up by an earlier run)."""
    child = multiprocessing.get_context("fork").Process(target=_child, args=(name, cfg))
    child.start()
    while child.is_alive() and not (run_dir / "run.json").is_file():
        time.sleep(0.001)
    opened = time.perf_counter()
    if kill_after is not None:
        child.join(kill_after)
        if child.is_alive():
            os.kill(child.pid, signal.SIGKILL)
    child.join()
    return child.exitcode, time.perf_counter() - opened


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork (Linux)")
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", list(SETTINGS))
def test_killed_at_random_points_and_resumed_gives_the_same_bytes(name, seed, world, references, tmp_path):
    ref_dir, expected, seconds = references(name)
    rng = random.Random(f"{name}/{seed}")
    run_dir = tmp_path / "run"
    cfg = make_config(name, world, run_dir)
    for _ in range(2):
        code, _ = run_child(name, cfg, run_dir, kill_after=rng.uniform(0.0, seconds))
        assert code in (-signal.SIGKILL, 0), f"the child failed (exit code {code}) instead of being killed"
        left = outputs(run_dir)
        for path, data in left.items():
            if finished(path, left) and path in expected:  # (older checkpoints: deleted in the reference)
                assert data == expected[path], f"{path} left by a killed run differs from the reference"
    assert run_child(name, cfg, run_dir)[0] == 0
    got = outputs(run_dir)
    assert sorted(got) == sorted(expected)
    assert [p for p in expected if got[p] != expected[p]] == []
    if (ref_dir / SUMMARY).is_file():
        assert summary_scores(run_dir / SUMMARY) == summary_scores(ref_dir / SUMMARY)
