"""Rehearsal of the paper's rows (docs/rehearsal.md): every scripts/geneval/*.sh runs as written on tiny stand-ins in
the official formats (scripts/make_rehearsal_checkpoints.py), only environment variables changed, and writes a GenEval
summary whose recorded configs carry the paper's sampling and training settings.

2 GenEval prompts x 2 images, the paper's N = 20 and 18 steps; two scripts at a time (two queues; ``integrated``
resumes the run of ``dpo_iterative`` in the same queue). Each script's log is kept in ``<tmp>/runs/<row>.log``.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from eval.geneval.report import load_summary, main as report_main
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.slow

QUEUES = (
    ("dpo_iterative", "integrated", "parm", "orm_zeroshot", "prm_finetuned", "baseline", "janus_baseline", "janus_cot"),
    ("parmpp", "dpo_parm_guided", "dpo", "prm_zeroshot", "orm_finetuned", "janus_orm", "janus_parm"),
)
ROWS = tuple(sorted(name for queue in QUEUES for name in queue))
SAMPLING = {"guidance_scale": 1.75, "num_inference_steps": 18}  # Show-o's official sampler (imagegen_cot.md §2)
# Janus-Pro's official sampler (t2i_r1.md §4.2): guidance 5, T = 1, no top-k; rows_per_step only sets when search looks
JANUS_SAMPLING = {"guidance_scale": 5.0, "temperature": 1.0, "top_k": None, "rows_per_step": 4}
# (search, reward, candidates / paths) of each row's generation run
SEARCH = {
    "baseline": ("baseline", None, {"num_candidates": 1}),
    "orm_zeroshot": ("best_of_n", "orm_zeroshot", {"num_candidates": 20}),
    "orm_finetuned": ("best_of_n", "orm_finetuned", {"num_candidates": 20}),
    "prm_zeroshot": ("step_level", "prm_zeroshot", {"num_paths": 20, "expansion": 20, "keep": 1}),
    "prm_finetuned": ("step_level", "prm_finetuned", {"num_paths": 20, "expansion": 20, "keep": 1}),
    "parm": ("parm", "parm", {"num_candidates": 20}),
    "parmpp": ("parmpp", "parmpp", {"num_candidates": 20}),
    "dpo": ("baseline", None, {"num_candidates": 1}),
    "dpo_iterative": ("baseline", None, {"num_candidates": 1}),
    "dpo_parm_guided": ("baseline", None, {"num_candidates": 1}),
    "integrated": ("parm", "parm", {"num_candidates": 20}),
    "janus_baseline": ("baseline", None, {"num_candidates": 1}),
    "janus_cot": ("baseline", None, {"num_candidates": 1}),
    "janus_orm": ("best_of_n", "orm_finetuned", {"num_candidates": 20}),
    "janus_parm": ("parm", "parm", {"num_candidates": 20}),
}
DPO_ROUNDS = {"dpo": 1, "dpo_iterative": 2, "dpo_parm_guided": 2, "integrated": 2}
JUDGE_DIRS = {"orm_zeroshot": "llava-onevision-qwen2-7b-ov", "prm_zeroshot": "llava-onevision-qwen2-7b-ov",
              "orm_finetuned": "orm_ft", "prm_finetuned": "prm_ft", "parm": "parm", "parmpp": "parmpp"}


def read_env(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of a rehearsal.env (values shell-quoted)."""
    pairs = [line.split("=", 1) for line in path.read_text().splitlines() if re.match(r"^[A-Z_][A-Z0-9_]*=", line)]
    return {key: shlex.split(value)[0] if value else "" for key, value in pairs}


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    root = tmp_path_factory.mktemp("rehearsal")
    base = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "scripts/make_rehearsal_checkpoints.py", str(root / "ckpts")], cwd=REPO_ROOT,
                   env=base, check=True, capture_output=True)
    env = {**base, **read_env(root / "ckpts" / "rehearsal.env"), "DPO_RUN": str(root / "runs" / "dpo_iterative")}
    results: dict[str, tuple[int, float]] = {}

    def run_queue(queue: tuple[str, ...]) -> None:
        for row in queue:
            t0 = time.perf_counter()
            with open(root / "runs" / f"{row}.log", "w") as log:
                proc = subprocess.run(["bash", f"scripts/geneval/{row}.sh"], cwd=REPO_ROOT, stdout=log,
                                      stderr=subprocess.STDOUT, env={**env, "RUN": str(root / "runs" / row)})
            results[row] = (proc.returncode, time.perf_counter() - t0)

    (root / "runs").mkdir()
    with ThreadPoolExecutor(len(QUEUES)) as pool:
        list(pool.map(run_queue, QUEUES))
    print(f"rehearsal: {time.perf_counter() - start:.0f} s wall for the stand-ins and {len(ROWS)} rows: "
          + ", ".join(f"{row} {secs:.0f} s" for row, (_, secs) in sorted(results.items())))
    return root, env, results


def _summary(root: Path, row: str, results) -> dict:
    rc, _ = results[row]
    log = (root / "runs" / f"{row}.log").read_text()
    assert rc == 0, f"{row}.sh failed (exit {rc}):\n{log[-4000:]}"
    return load_summary(root / "runs" / row / "eval" / "summary.json")


def _config(run_dir: Path) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"))


def test_every_row_script_is_rehearsed():
    scripts = {p.stem for p in (REPO_ROOT / "scripts" / "geneval").glob("*.sh")}
    assert scripts == {*ROWS, "evaluate"}  # evaluate.sh runs inside every row


@pytest.mark.parametrize("row", ROWS)
def test_row_writes_a_geneval_summary_of_its_own_images(rehearsal, row):
    root, env, results = rehearsal
    summary = _summary(root, row, results)
    assert summary["name"] == row
    scores = summary["scores"]
    assert scores["total_images"] == scores["expected_images"] == 2 * 2 and scores["missing_images"] == 0
    config = summary["config"]
    assert config["eval"]["metadata"] == env["GENEVAL_METADATA"]  # scored against the metadata it generated from
    assert config["image_dir"] == str(root / "runs" / row / "search" / "images")
    generation = config["generation"]  # the config of the run that made the images
    assert generation["prompts"] == env["GENEVAL_METADATA"] and generation["images_per_prompt"] == 2
    assert generation["model"]["sampling"] == (JANUS_SAMPLING if row.startswith("janus") else SAMPLING)
    if row.startswith("janus"):  # the released-layout stand-in, with its semantic CoT only in the CoT row
        assert generation["model"]["bundle"]["directory"] == env["JANUS_PRO_7B"]
        assert (generation["model"]["cot"] is not None) == (row == "janus_cot")


@pytest.mark.parametrize("row", ROWS)
def test_row_searches_with_the_papers_settings(rehearsal, row):
    root, env, results = rehearsal
    generation = _summary(root, row, results)["config"]["generation"]
    search, reward, sizes = SEARCH[row]
    assert generation["search"]["name"] == search
    strategy = generation["search"]["strategy"]
    assert {k: strategy[k] for k in sizes} == sizes
    if reward is None:
        assert generation["reward"] is None
    else:
        judge = generation["reward"]["parm"] if reward == "parmpp" else generation["reward"]
        assert judge["judge"]["model_dir"] == f"{env['IMAGECOT_CKPTS']}/hf/{JUDGE_DIRS[reward]}"


@pytest.mark.parametrize("row", sorted(DPO_ROUNDS))
def test_dpo_rows_train_with_the_papers_settings(rehearsal, row):
    root, env, results = rehearsal
    generation = _summary(root, row, results)["config"]["generation"]
    train_run = root / "runs" / ("dpo_iterative" if row == "integrated" else row) / "train"
    rounds = DPO_ROUNDS[row]
    assert generation["model"]["bundle"]["directory"] == str(train_run / f"round_{rounds - 1}" / "train" / "final")
    parent = _config(train_run)
    assert parent["iterative"]["rounds"] == rounds and parent["iterative"]["candidates_per_prompt"] == 20
    assert parent["iterative"]["judge"]["judge"]["model_dir"] == f"{env['IMAGECOT_CKPTS']}/hf/orm_ft"
    assert parent["model"]["sampling"] == SAMPLING  # the candidates of every round
    for r in range(rounds):
        train = _config(train_run / f"round_{r}" / "train")
        assert train["train"]["global_batch_size"] == 10 and train["train"]["optimizer"]["lr"] == 1.0e-5
        assert train["dpo"]["loss"]["beta"] == 0.1 and train["train"]["epochs"] == 1
        assert train["train"]["warmup_ratio"] == 0.1 and train["seed"] == 10086
        batch = json.loads((train_run / f"round_{r}" / "train" / "batch.json").read_text())
        assert batch["global_batch_size"] == 10 and batch["processes"] * batch["per_device_batch_size"] * \
            batch["gradient_accumulation_steps"] == 10
        guided = train["dpo"]["guidance"]
        assert (guided is not None) == (row == "dpo_parm_guided")
        if guided is not None:
            assert guided["coef"] == 0.1 and guided["sampling"] == SAMPLING
            assert guided["judge"]["judge"]["model_dir"] == f"{env['IMAGECOT_CKPTS']}/hf/parm"


def test_parmpp_row_corrects_with_the_self_correction_fine_tuned_show_o(rehearsal):
    root, env, results = rehearsal
    generation = _summary(root, "parmpp", results)["config"]["generation"]
    run = root / "runs" / "parmpp"
    assert generation["model"]["bundle"]["directory"] == str(run / "corrector" / "final")
    assert generation["search"]["corrector"] == "searched"
    assert generation["reward"]["max_reflections"] == 3 and generation["search"]["strategy"]["max_reflections"] is None
    train = _config(run / "corrector")
    assert train["dataset"]["_target_"] == "showo.self_correction.SelfCorrectionDataset"
    assert train["dataset"]["directory"] == str(run / "data" / "self_correction")
    data = _config(run / "data")
    assert data["candidates_per_prompt"] == 20 and data["model"]["sampling"] == SAMPLING
    assert data["judge"]["parm"]["judge"]["model_dir"] == f"{env['IMAGECOT_CKPTS']}/hf/parmpp"
    groups = (run / "data" / "self_correction" / "groups.jsonl").read_text().splitlines()
    assert groups and all(json.loads(line)["feedback"] for line in groups)


def test_report_prints_the_papers_table_beside_the_rehearsal(rehearsal, capsys):
    root, _, results = rehearsal
    runs = [str(root / "runs" / row) for row in ROWS if results[row][0] == 0]
    report_main(runs)
    markdown = capsys.readouterr().out
    assert "| Show-o (paper, T1) | 0.95 | 0.52 | 0.49 | 0.82 | 0.11 | 0.28 | 0.53 |" in markdown
    for label in ("Show-o", "+ Zs. ORM", "+ PARM", "+ It. DPO"):
        assert f"| {label} (ours) |" in markdown
    report_main([*runs, "--latex"])
    assert r"+ PARM (paper, T3) & 0.99 & 0.77 & 0.68 & 0.86 & 0.29 & 0.45 & 0.67 \\" in capsys.readouterr().out
