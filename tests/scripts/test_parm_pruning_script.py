"""scripts/parm_pruning.py end to end on a small candidate pool (committed tiny Show-o at 4 steps, committed ORM and
PARM): the paths generated again are the pool's, the PARM replay picks what the pool's live PARM picked, with the
same generator passes, and the table holds every row."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from common.recipe import build_generator
from eval.stats import geneval_score
from reward_models.lmm_judge import LMMYesNoJudge, user_turn
from reward_models.parm import Parm
from search.base import CostCounter, PathGroup, decode_images
from search.pool import OrmPolicy, ParmPolicy, load_pool
from search.step_replay import parm_pick, records_from_json
from tests.helpers import REPO_ROOT, run_script, shapes_eval_run

CKPT = REPO_ROOT / "checkpoints" / "shapes"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = shapes_eval_run(tmp_path_factory, "showo/vq", "orm", "parm")
    run_script("run_search.py", "+experiment=shapes/pool", f"prompts={run}/prompts/evaluation_metadata.jsonl",
               f"class_names={run}/prompts/object_names.txt", f"run_dir={run}/train/pool", "images_per_prompt=1",
               "search.strategy.num_candidates=3", "model.sampling.num_inference_steps=4",
               f"model.bundle.directory={CKPT / 'showo'}",
               f"search.strategy.outcome_judge.judge.model_dir={CKPT / 'orm'}",
               f"search.strategy.parm.judge.model_dir={CKPT / 'parm'}")
    stdout = run_script("parm_pruning.py", f"run={run}", f"judges.parm={CKPT / 'parm'}")
    return run, stdout


def pool_clarity_start(run, num_steps: int) -> int:
    """The first step the pool's live PARM asked the clarity question (shapes/pool: the second-to-last)."""
    clarity_from = OmegaConf.load(run / "train" / "pool" / "config.yaml").search.strategy.parm.clarity_from
    return Parm(None, clarity_from=clarity_from).first_clarity_step(num_steps)


def test_the_replay_reproduces_the_pools_live_parm_and_orm(run):
    run, _ = run
    entries = load_pool(run / "train" / "pool" / "pool")
    records = records_from_json(torch.load(run / "parm_pruning" / "records.pt", weights_only=True))
    assert len(records) == len(entries) == 6
    start = pool_clarity_start(run, 4)
    assert start == 2  # shapes/pool asks from the second-to-last step
    for entry, slot in zip(entries, records):
        assert len(slot) == 3 and all(p.num_steps == 4 for p in slot)
        live = ParmPolicy().select(entry)
        assert parm_pick(slot, "parm", start) == (live.index, live.forward_passes)  # same pick, same passes
        # the last step's predicted image is the final image: its verdict is the pool's exact verdict
        assert [p.verdict[-1] for p in slot] == [bool(v) for v in entry.named_scores["oracle"]]


def test_the_table_holds_every_row_with_intervals(run):
    run, stdout = run
    rows = json.loads((run / "parm_pruning" / "parm_pruning.json").read_text())
    names = [r["row"] for r in rows]
    assert names[:3] == ["Show-o (baseline, path 0)", "ORACLE: best-of-3 by the exact verdict", "ORM best-of-3"]
    assert "parm: final answer best-of-3 (no pruning)" in names and "parm: PARM, clarity from step 1" in names
    assert sum(n.startswith("CEILING: prune at step") for n in names) == 2  # rule for 4 steps: (2, 2) -> steps 2, 3
    assert [n for n in names if n.startswith("parm: PARM, clarity from")] == [
        "parm: PARM, clarity from step 1", "parm: PARM, clarity from step 2 (clarity_from=rule)",
        "parm: PARM, clarity from step 3"]  # and each later step but the last
    entries = load_pool(run / "train" / "pool" / "pool")
    tags = {json.loads(line)["prompt"]: json.loads(line)["tag"]
            for line in (run / "prompts" / "evaluation_metadata.jsonl").read_text().splitlines()}
    orm = {(e.slot.prompt_index, e.slot.sample_index):
           (tags[e.slot.prompt], bool(e.named_scores["oracle"][OrmPolicy().select(e).index])) for e in entries}
    assert rows[2]["passes"] == 12.0 and "vs_orm" not in rows[2] and "vs_baseline" in rows[2]
    assert rows[2]["overall"] == pytest.approx(100 * geneval_score(orm))  # the pool's ORM picks, as the quickstart
    for r in rows[1:]:
        ci = r["vs_baseline"]
        assert ci["low"] <= ci["estimate"] <= ci["high"]
    assert "| ORM best-of-3 |" in stdout and (run / "parm_pruning" / "parm_pruning.md").is_file()


def test_candidates_replays_the_first_paths_and_refuses_more_than_the_pool_holds(run):
    run, _ = run
    run_script("parm_pruning.py", f"run={run}", f"run_dir={run}/first2", "candidates=2", f"judges.parm={CKPT / 'parm'}")
    records = records_from_json(torch.load(run / "first2" / "records.pt", weights_only=True))
    for entry, slot in zip(load_pool(run / "train" / "pool" / "pool"), records):
        live = ParmPolicy(2).select(entry)
        assert len(slot) == 2 and parm_pick(slot, "parm", pool_clarity_start(run, 4)) == (live.index,
                                                                                         live.forward_passes)
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "parm_pruning.py"), f"run={run}",
                           f"run_dir={run}/first4", "candidates=4"], cwd=REPO_ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode != 0 and "candidates=4 but a pool slot holds 3 paths" in proc.stderr
    assert not (run / "first4" / "records.pt").exists()


def test_a_pool_without_exact_verdicts_is_refused_before_any_output(run, tmp_path):
    run, _ = run
    other = tmp_path / "run"
    shutil.copytree(run / "prompts", other / "prompts")
    shutil.copytree(run / "train" / "pool", other / "train" / "pool")
    for path in (other / "train" / "pool" / "pool").glob("*.json"):
        entry = json.loads(path.read_text())
        entry["named_scores"] = {}
        path.write_text(json.dumps(entry))
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "parm_pruning.py"), f"run={other}"],
                          cwd=REPO_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode != 0 and "hold no exact verdicts (named score 'oracle')" in proc.stderr
    assert not (other / "parm_pruning").exists()


def _manual_auc(scores, labels, groups):
    wins = pairs = 0.0
    for a in range(len(scores)):
        for b in range(len(scores)):
            if groups[a] == groups[b] and labels[a] and not labels[b]:
                pairs += 1
                wins += 1.0 if scores[a] > scores[b] else 0.5 if scores[a] == scores[b] else 0.0
    return wins / pairs if pairs else None


def test_the_judges_reading_of_step_images_and_what_the_step_images_tell(run):
    """Per path and step the judge's answer to the final question asked of the step image (its reading) is the one
    the judge gives that image alone; the rows pruning by it, and the AUCs of what the step images tell, follow
    from the records."""
    run, _ = run
    entries = load_pool(run / "train" / "pool" / "pool")
    records = records_from_json(torch.load(run / "parm_pruning" / "records.pt", weights_only=True))
    entry, slot = entries[0], records[0]
    _, pipe, sampling = build_generator(OmegaConf.load(run / "train" / "pool" / "config.yaml").model)
    group = PathGroup(pipe, entry.slot.prompt, [0], entry.seeds[:1], dict(sampling), 4)
    images = []
    while not group.done:
        images.append(decode_images(pipe, group.step()[0][None], CostCounter())[0])
    judge = LMMYesNoJudge(CKPT / "parm")
    question = [user_turn(Parm(judge).selection_question, entry.slot.prompt, judge.image_token)]
    alone = judge.ask([question] * (len(images) - 1), images[:-1]).components["p_yes_norm"]
    read = slot[0].judges["parm"].step_final
    assert read[-1] is None  # the last step's image is the final image: its final answer is the path's
    assert read[:-1] == pytest.approx([float(a) for a in alone], abs=1e-5)
    assert len({round(v, 6) for v in read[:-1]}) > 1  # the steps' images, not one image

    rows = {r["row"]: r for r in json.loads((run / "parm_pruning" / "parm_pruning.json").read_text())}
    tags = {json.loads(line)["prompt"]: json.loads(line)["tag"]
            for line in (run / "prompts" / "evaluation_metadata.jsonl").read_text().splitlines()}
    for step in (2, 3):  # the rule's first clear step (2 of 4) to the one before the last
        picked = {}
        for e, s in zip(entries, records):
            kept = [i for i, p in enumerate(s) if p.judges["parm"].step_final[step - 1] > 0.5] or list(range(len(s)))
            best = max(kept, key=lambda i: (s[i].judges["parm"].final, -i))
            picked[e.slot.prompt_index, e.slot.sample_index] = (tags[e.slot.prompt], s[best].verdict[-1])
        row = rows[f"parm: prune at step {step} by its reading of the step image, its final answer among survivors"]
        assert row["overall"] == pytest.approx(100 * geneval_score(picked))

    steps = json.loads((run / "parm_pruning" / "step_images.json").read_text())
    assert [s["step"] for s in steps] == [2, 3]
    paths = [(k, p) for k, s in enumerate(records) for p in s]
    groups, final = [k for k, _ in paths], [p.verdict[-1] for _, p in paths]
    for s in steps:
        shown = [p.verdict[s["step"] - 1] for _, p in paths]
        read = [p.judges["parm"].step_final[s["step"] - 1] for _, p in paths]
        assert s["exact_verdict"] == _manual_auc([float(v) for v in shown], final, groups)
        assert s["parm.reading"] == _manual_auc(read, final, groups)
        assert s["parm.reading_vs_step_verdict"] == _manual_auc(read, shown, groups)
        assert s["parm.potential"] == _manual_auc([p.judges["parm"].potential[s["step"] - 1] for _, p in paths],
                                                  final, groups)
    assert "What the step images tell" in (run / "parm_pruning" / "parm_pruning.md").read_text()
