"""Recipe: how well do the judges rank held-out images? (issue 13 item 3; metrics: ``reward_models/quality.py``)

    python scripts/judge_quality.py run=RUN                      # RUN/judge_quality, shapes world defaults
    python scripts/judge_quality.py run=RUN judges.orm.model_dir=runs/shapes/orm/final   # another ORM

``RUN`` is a shapes quickstart run (``scripts/shapes/quickstart.py``): its held-out prompts (``RUN/prompts``) and
baseline images (``RUN/rows/baseline``; more images per prompt give more same-prompt pairs). Every prompt is from the **eval split**: no judge saw it in training.

* **final images**: the baseline's images, labelled by the exact GenEval judge (``RUN/rows/baseline/eval/results.jsonl``,
  written with ``eval.shapes.report.evaluate_shapes_folder`` when missing); each judge's P("yes") to its final
  question -> within-prompt AUC and pairwise accuracy (the ranking best-of-N needs), AUC, accuracy, ECE of the
  yes/no-normalised P("yes"), best-of-4 next to a random pick and the oracle, and best-of-4 as a table row would
  measure it (GenEval score against the first image of each 4, paired bootstrap interval, share of the oracle gain);
* **step images**: the same Show-o paths (the baseline's first ``steps.paths_per_prompt`` seeds) decoded at every step,
  and at ``steps.rollout_steps`` rolled out ``steps.rollouts`` times (fresh seeds; "yes" iff any completion is
  accepted, paper §5) -> the process score's AUC within (prompt, step) and overall against the roll-out labels,
  potential accuracy / AUC at the clear roll-out steps, clarity accuracy against the static rule at every step.
  The step set is cached in ``RUN/judge_quality/steps.pt``.

Prints the tables and writes ``run_dir/judge_quality.{md,json}``.
"""
from __future__ import annotations

import json
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from PIL import Image

from common.io import atomic_write_text
from eval.geneval.prompts import load_class_names, load_prompts
from eval.shapes.report import evaluate_shapes_folder
from eval.stats import best_of_n_slots, geneval_score, paired_bootstrap, prompt_units
from common.recipe import check, open_run
from common.validate import ConfigError, Dir, Int
from reward_models import quality
from reward_models.data import clarity_steps
from reward_models.lmm_judge import LMMYesNoJudge, question_turns
from reward_models.parm import Parm
from reward_models.questions import ORM_QUESTION, PRM_QUESTION
from reward_models.rollouts import PathSample, load_paths, sample_paths, save_paths
from showo.factory import load_bundle
from showo.scheduler import MaskGITScheduler
from common.seeding import image_seed

SETTINGS = (Dir("run"), Dir("showo"), Int("images_per_prompt", min=1), Int("judge_batch_size", min=1),
            Int("steps.paths_per_prompt", min=1), Int("steps.rollouts", min=0), Int("steps.batch_size", min=1))
QUESTIONS = {"orm": ORM_QUESTION, "prm": PRM_QUESTION}


@torch.no_grad()
def run(cfg: DictConfig) -> Path:
    check(cfg, "judge_quality", SETTINGS)
    missing = [str(p) for p in (Path(cfg.run) / "prompts" / "evaluation_metadata.jsonl",
                                Path(cfg.run) / "rows" / "baseline" / "images") if not p.exists()]
    if missing:
        raise ConfigError(f"judge_quality: run={cfg.run} is not a shapes quickstart run (missing {', '.join(missing)})")
    run_root = Path(cfg.run)
    out = open_run(cfg, inputs={"showo": cfg.showo, "prompts": run_root / "prompts",
                                "baseline": run_root / "rows" / "baseline" / "images"}).path
    world = instantiate(cfg.data).world
    finals = final_records(cfg, run_root, world)
    paths, prompts = step_paths(cfg, run_root, out, world)
    rows = []
    for name, spec in cfg.judges.items():
        if spec is None:
            continue
        judge = LMMYesNoJudge(spec.model_dir, batch_size=cfg.judge_batch_size)
        row = {"judge": name, "model_dir": str(spec.model_dir), "step_question": spec.step_question,
               "final": score_finals(judge, spec, finals)}
        row.update(score_steps(judge, spec, paths, prompts, cfg))
        rows.append(row)
    text = markdown(rows, len(finals), len(paths))
    atomic_write_text(out / "judge_quality.md", text)
    atomic_write_text(out / "judge_quality.json", json.dumps(rows, indent=1) + "\n")
    print(text)
    print(f"-> {out / 'judge_quality.md'}, {out / 'judge_quality.json'}")
    return out


def final_records(cfg: DictConfig, run: Path, world) -> list[dict]:
    """The baseline's images with their exact labels (the GenEval results file, judged first when missing)."""
    results = run / "rows" / "baseline" / "eval" / "results.jsonl"
    if not results.is_file():
        evaluate_shapes_folder(run / "rows" / "baseline" / "images", results.parent,
                               run / "prompts" / "evaluation_metadata.jsonl", run / "prompts" / "object_names.txt",
                               world, "baseline", cfg.images_per_prompt)
    records = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    for r in records:
        with Image.open(r["filename"]) as image:
            r["image"] = image.convert("RGB")
    return records


def step_paths(cfg: DictConfig, run: Path, out: Path, world) -> tuple[list[PathSample], list[str]]:
    """The baseline's first Show-o paths of every eval prompt, every step decoded, roll-outs at the roll-out steps
    (cached in ``out/steps.pt``), and the prompt of every line."""
    specs = load_prompts(run / "prompts" / "evaluation_metadata.jsonl",
                         load_class_names(run / "prompts" / "object_names.txt"))
    lines = [spec.raw for spec in specs]
    s = cfg.steps
    jobs = [(i, k) for i in range(len(lines)) for k in range(s.paths_per_prompt)]
    meta = {"prompts": [line["prompt"] for line in lines], "jobs": jobs, "seed": cfg.seed,
            "rollout_steps": list(s.rollout_steps), "rollouts": s.rollouts, "steps": cfg.sampling.num_inference_steps,
            "guidance_scale": cfg.sampling.guidance_scale}
    pipe = load_bundle(cfg.showo).pipeline(MaskGITScheduler())
    labeller = instantiate(cfg.labeller)
    paths = load_paths(out / "steps.pt", meta, pipe, lines, labeller)
    if paths is None:
        num_steps = cfg.sampling.num_inference_steps
        paths = list(sample_paths(
            pipe, lines, jobs, lambda i, k: image_seed(cfg.seed, specs[i].index, k), labeller=labeller,
            guidance_scale=cfg.sampling.guidance_scale, num_steps=num_steps, keep=lambda i, k: set(range(num_steps)),
            rollout_steps=lambda i, k: set(s.rollout_steps), rollouts=s.rollouts, seed=cfg.seed,
            batch_size=s.batch_size))
        save_paths(paths, out / "steps.pt", meta)
    return paths, meta["prompts"]


def _metrics(scores: list[float], probs: list[float], decisions: list[bool], labels: list[bool], groups: list) -> dict:
    return {"within_auc": quality.within_group_auc(scores, labels, groups),
            "pairwise_accuracy": quality.pairwise_accuracy(scores, labels, groups),
            "pairs": quality.pairwise_counts(scores, labels, groups)[2],
            "auc": quality.auc(scores, labels), "accuracy": quality.accuracy(decisions, labels),
            "ece": quality.expected_calibration_error(probs, labels), "examples": len(labels),
            "positives": sum(labels)}


def _ask(judge: LMMYesNoJudge, conversations: list, images: list) -> tuple[list[float], list[float], list[bool]]:
    out = judge.ask(conversations, images)
    c = out.components
    return c["p_yes"].tolist(), c["p_yes_norm"].tolist(), [bool(a) for a in c["answer_yes"].tolist()]


def _questions(judge: LMMYesNoJudge, question: str, prompts: list[str]) -> list:
    return question_turns(QUESTIONS[question], prompts, judge.image_token)


def score_finals(judge: LMMYesNoJudge, spec: DictConfig, records: list[dict]) -> dict:
    """The judge's final question on the baseline images, grouped by prompt."""
    prompts = [r["prompt"] for r in records]
    scores, probs, decisions = _ask(judge, _questions(judge, spec.final_question, prompts),
                                    [r["image"] for r in records])
    labels = [bool(r["correct"]) for r in records]
    metrics = _metrics(scores, probs, decisions, labels, prompts)
    metrics["within_auc_ci"] = quality.within_group_auc_interval(scores, labels, prompts)  # prompts, then images
    metrics["best_of_4"] = quality.best_of_n(scores, labels, prompts, 4)
    metrics["best_of_4_vs_first"] = best_of_n_interval(records, scores, 4)
    metrics["by_tag"] = {tag: quality.within_group_auc(*zip(*[(s, y, p) for s, y, p, r in
                                                              zip(scores, labels, prompts, records) if r["tag"] == tag]))
                         for tag in dict.fromkeys(r["tag"] for r in records)}
    # the per-task mean, GenEval's weighting: the pooled AUC weighs a prompt by its pairs (its images squared)
    per_task = [v for v in metrics["by_tag"].values() if v is not None]
    metrics["within_auc_task_mean"] = sum(per_task) / len(per_task) if per_task else None
    return metrics


def score_steps(judge: LMMYesNoJudge, spec: DictConfig, paths: list[PathSample], prompts: list[str],
                cfg: DictConfig) -> dict:
    """Process score at the roll-out steps (``spec.step_question``: orm / prm / potential), clarity and potential."""
    num_steps = cfg.sampling.num_inference_steps
    yes_after, no_before = clarity_steps(num_steps)
    parm = Parm(judge)
    rolled = [(p, s) for p in paths for s in sorted(p.rollouts)]
    images = [p.step_images[s] for p, s in rolled]
    labels = [p.rollout_label(s) for p, s in rolled]
    groups = [(prompts[p.line], s) for p, s in rolled]
    if spec.step_question == "potential":
        conversations = [parm.potential_conversation(prompts[p.line]) for p, _ in rolled]
    else:
        conversations = _questions(judge, spec.step_question, [prompts[p.line] for p, _ in rolled])
    result = {"steps": _metrics(*_ask(judge, conversations, images), labels, groups)}
    if spec.parm:
        clear = [(p, s) for p, s in rolled if s + 1 > yes_after]
        result["potential"] = {}  # no roll-out step is past the clarity threshold: nothing to measure
        if clear:
            scores, probs, decisions = _ask(judge, [parm.potential_conversation(prompts[p.line]) for p, _ in clear],
                                            [p.step_images[s] for p, s in clear])
            result["potential"] = _metrics(scores, probs, decisions, [p.rollout_label(s) for p, s in clear],
                                           [(prompts[p.line], s) for p, s in clear])
        labelled = [(p, s, s + 1 > yes_after) for p in paths for s in range(num_steps)
                    if s + 1 > yes_after or s + 1 < no_before]
        _, _, decisions = _ask(judge, [parm.clarity_conversation(prompts[p.line]) for p, _, _ in labelled],
                               [p.step_images[s] for p, s, _ in labelled])
        result["clarity"] = {"accuracy": quality.accuracy(decisions, [y for _, _, y in labelled]),
                             "examples": len(labelled)}
    return result


def best_of_n_interval(records: list[dict], scores: list[float], n: int) -> dict | None:
    """Best-of-``n`` as a row of the miniature table would measure it: every prompt's images cut into consecutive
    chunks of ``n`` (one chunk = one slot); the baseline is the chunk's first image (what one sample of that seed
    gives), the method the judge's pick, the oracle any accepted image. Returns both GenEval differences with paired
    two-stage bootstrap intervals (``eval.stats``, 2,000 replicates) and the share of the oracle's gain."""
    baseline, judge, oracle = best_of_n_slots(records, scores, n)
    if not baseline:
        return None
    units = prompt_units(records)  # a prompt's repeats (the balanced eval) are one prompt
    j, o = paired_bootstrap(baseline, judge, units=units), paired_bootstrap(baseline, oracle, units=units)
    return {"n": n, "slots": len(baseline), "baseline": geneval_score(baseline), "judge": geneval_score(judge),
            "oracle": geneval_score(oracle), "judge_vs_first": j.to_json(), "oracle_vs_first": o.to_json(),
            "oracle_share": j.estimate / o.estimate if o.estimate > 0 else None}


def _f(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _interval(i: dict) -> str:
    return f"{100 * i['estimate']:+.1f} [{100 * i['low']:+.1f}, {100 * i['high']:+.1f}]"


def markdown(rows: list[dict], n_final: int, n_paths: int) -> str:
    """Three tables: final images (selection), best-of-4 with intervals, step images (process, clarity,
    potential)."""
    lines = [f"Final images ({n_final} baseline images of held-out prompts):", "",
             "| judge | within-prompt AUC [95% CI] | its mean over tasks | pairwise acc | pairs | AUC | accuracy | ECE "
             "| best-of-4 (random / oracle) |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        f = row["final"]
        b = f["best_of_4"] or {}
        ci = f.get("within_auc_ci")
        auc_ci = _f(f["within_auc"]) + ("" if ci is None else f" [{ci[0]:.3f}, {ci[1]:.3f}]")
        lines.append(f"| {row['judge']} | {auc_ci} | {_f(f.get('within_auc_task_mean'))} | "
                     f"{_f(f['pairwise_accuracy'])} | {f['pairs']} | "
                     f"{_f(f['auc'])} | {_f(f['accuracy'])} | {_f(f['ece'])} | "
                     f"{_f(b.get('judge'))} ({_f(b.get('random'))} / {_f(b.get('oracle'))}) |")
    lines += ["", "Best-of-4 on the same images as a table row would measure it (one slot = 4 consecutive images of a "
              "prompt; baseline = the slot's first image; GenEval score, paired 95 % bootstrap interval):", "",
              "| judge | slots | baseline | best-of-4 | Δ [95% CI] | oracle Δ [95% CI] | % of oracle gain |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        b = row["final"].get("best_of_4_vs_first")
        if b:
            j, o = b["judge_vs_first"], b["oracle_vs_first"]
            share = "–" if b["oracle_share"] is None else f"{100 * b['oracle_share']:.0f}"
            lines.append(f"| {row['judge']} | {b['slots']} | {100 * b['baseline']:.1f} | {100 * b['judge']:.1f} | "
                         f"{_interval(j)} | {_interval(o)} | {share} |")
    lines += ["", f"Step images ({n_paths} paths of held-out prompts; labels: roll-outs / static clarity rule):", "",
              "| judge | step score | within-(prompt, step) AUC | AUC | accuracy | potential acc | potential AUC | "
              "clarity acc |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        s, p, c = row["steps"], row.get("potential", {}), row.get("clarity", {})
        lines.append(f"| {row['judge']} | {row['step_question']} | {_f(s['within_auc'])} | {_f(s['auc'])} | "
                     f"{_f(s['accuracy'])} | {_f(p.get('accuracy'))} | {_f(p.get('auc'))} | {_f(c.get('accuracy'))} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    hydra.main(config_path="../configs", config_name="judge_quality", version_base="1.3")(run)()
