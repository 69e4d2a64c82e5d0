"""Recipe: PARM's pruning replayed step by step on a shapes quickstart run's candidate pool (issue 13): what the
potential judgment gains or costs against ORM best-of-N, and what a perfect judge of the step image could reach.

    python scripts/parm_pruning.py run=RUN                                  # RUN: a finished quickstart run
    python scripts/parm_pruning.py run=RUN candidates=4 +judges.parm2=runs/shapes/parm2/final   # another PARM too

Every path of the run's candidate pool (``RUN/train/pool``: its seeds; its final tokens are checked) is generated
again with every step's predicted image decoded, and for every path and step this records the exact verdict of the
step image and each judge's P("yes") to PARM's clarity and potential questions (``judges``: name -> model dir), and
each judge's answer to the final (ORM) question on the final image (``search.step_replay.StepRecord``). Rows, on the
first ``candidates`` paths of every slot, GenEval overall with paired 95 % bootstrap intervals (prompts, then images)
against the baseline (path 0) and against ORM best-of-N (the pool's ORM scores):

* oracle best-of-N; per judge: its final answer best-of-N (no pruning) and the PARM procedure
  (``search.step_replay.parm_pick``) with clarity asked from the first step, from the first step the static rule
  does not call unclear (``Parm(clarity_from="rule")``) and from each later step but the last, with the generator
  forward passes the live search spends;
* the ceiling of the potential judgment: prune at each step by the **exact verdict of the step image**, survivors by
  the ORM (``prune_pick``); and per judge, prune at each step by **its own reading of the step image** (its answer
  to the final question asked of the step image), survivors by its final answer.

A second table says what the step images can tell (``step_images``): per step from the rule's first clear step, the
within-slot AUC (a slot's (accepted, rejected) pairs of final verdicts, ties one half) of the exact verdict of the
step image, of each judge's potential answer and of its reading of the step image, against the path's **final**
verdict; and how well each judge reads the step image: its reading's within-slot AUC against the **step image's own**
exact verdict.

Writes ``run_dir/parm_pruning.{md,json}`` (both tables in the markdown), ``run_dir/step_images.json`` and the
per-path records (``records.pt``, reused when the pool, the judges and the Show-o are unchanged: the run directory's
fingerprint).
"""
from __future__ import annotations

import json
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from common.io import atomic_write, atomic_write_text
from common.recipe import build_generator, check, open_run
from common.validate import ConfigError, Int
from eval.geneval.prompts import load_class_names, load_prompts
from eval.stats import geneval_score, paired_bootstrap
from reward_models.data import rule_clarity_start
from reward_models.lmm_judge import LMMYesNoJudge, user_turn
from reward_models.parm import Parm
from reward_models.quality import within_group_auc
from search.base import CostCounter, PathGroup, decode_images
from search.pool import PoolEntry, load_pool
from search.step_replay import (JudgeSteps, StepRecord, parm_pick, prune_pick, records_from_json,
                                 records_to_json)

SETTINGS = (Int("candidates", min=1, optional=True), Int("batch_size", min=1))


def run(cfg: DictConfig) -> Path:
    check(cfg, "parm_pruning", SETTINGS)
    run_root = Path(cfg.run)
    pool_dir = run_root / "train" / "pool"
    missing = [str(p) for p in (run_root / "prompts" / "evaluation_metadata.jsonl", pool_dir / "pool",
                                pool_dir / "config.yaml") if not p.exists()]
    if missing:
        raise ConfigError(f"parm_pruning: run={cfg.run} is not a shapes quickstart run with a candidate pool "
                          f"(missing {', '.join(missing)})")
    if not cfg.judges:
        raise ConfigError("parm_pruning: judges is empty (name -> PARM model dir)")
    entries = load_pool(pool_dir / "pool")
    unjudged = [f"{e.slot.prompt_index}/{e.slot.sample_index}" for e in entries if "oracle" not in e.named_scores]
    if unjudged:
        raise ConfigError(f"parm_pruning: pool slots {unjudged[:3]} hold no exact verdicts (named score 'oracle'): "
                          "build the pool with +experiment=shapes/pool")
    if cfg.candidates is not None and cfg.candidates > min(e.size for e in entries):
        raise ConfigError(f"parm_pruning: candidates={cfg.candidates} but a pool slot holds "
                          f"{min(e.size for e in entries)} paths")
    specs = load_prompts(run_root / "prompts" / "evaluation_metadata.jsonl",
                         load_class_names(run_root / "prompts" / "object_names.txt"))
    out = open_run(cfg, inputs={"pool": pool_dir / "pool", "prompts": run_root / "prompts",
                                **{f"judge.{k}": v for k, v in cfg.judges.items()}}).path
    cache = out / "records.pt"
    if cache.is_file():
        records = records_from_json(torch.load(cache, weights_only=True))
    else:
        records = measure(cfg, OmegaConf.load(pool_dir / "config.yaml"), entries, specs)
        atomic_write(cache, lambda tmp: torch.save(records_to_json(records), tmp))
    rows = table(entries, specs, records, cfg.candidates, list(cfg.judges))
    steps = step_images(records, cfg.candidates, list(cfg.judges))
    text = markdown(rows, len(entries), cfg.candidates or entries[0].size) + "\n" + steps_markdown(steps)
    atomic_write_text(out / "parm_pruning.md", text)
    atomic_write_text(out / "parm_pruning.json", json.dumps(rows, indent=1) + "\n")
    atomic_write_text(out / "step_images.json", json.dumps(steps, indent=1) + "\n")
    print(text)
    print(f"-> {out / 'parm_pruning.md'}")
    return out


@torch.no_grad()
def measure(cfg: DictConfig, pool_cfg: DictConfig, entries: list[PoolEntry], specs) -> list[list[StepRecord]]:
    """Per slot, per path: the exact verdict of every step image and every judge's answers (module doc)."""
    _, pipe, sampling = build_generator(pool_cfg.model)
    labeller = instantiate(cfg.labeller)
    judges = {name: LMMYesNoJudge(model_dir, batch_size=cfg.judge_batch_size) for name, model_dir in cfg.judges.items()}
    by_index = {s.index: s for s in specs}
    records = []
    for entry in tqdm(entries, desc="parm_pruning", dynamic_ncols=True):
        spec = by_index[entry.slot.prompt_index]
        if spec.prompt != entry.slot.prompt:
            raise ConfigError(f"parm_pruning: pool slot {entry.slot.prompt_index} is {entry.slot.prompt!r}, the run's "
                              f"prompt {spec.index} is {spec.prompt!r}")
        ids = list(range(cfg.candidates or entry.size))  # paths are independent: the first n are the pool's first n
        group = PathGroup(pipe, entry.slot.prompt, ids, entry.seeds[:len(ids)], dict(sampling), cfg.batch_size)
        cost = CostCounter()
        steps: list[list] = []
        while not group.done:
            preds = group.step()
            steps.append(decode_images(pipe, torch.stack([preds[i] for i in ids]), cost))
        final = group.final_tokens()
        tokens = torch.stack([final[i].cpu() for i in ids])
        if not torch.equal(tokens, entry.tokens[:len(ids)]):
            raise ConfigError(f"parm_pruning: slot {entry.slot.prompt_index}/{entry.slot.sample_index}: the paths "
                              "generated again differ from the pool's (its Show-o or sampler, train/pool/config.yaml "
                              "model.*, changed since the pool was built)")
        verdicts = [[bool(labeller(spec.raw, steps[s][i]).correct) for s in range(len(steps))] for i in ids]
        slot = [StepRecord(v) for v in verdicts]
        flat = [(i, s) for i in ids for s in range(len(steps))]
        images = [steps[s][i] for i, s in flat]
        for name, judge in judges.items():
            parm = Parm(judge)
            clarity = judge.ask([parm.clarity_conversation(spec.prompt)] * len(flat), images).components["p_yes_norm"]
            potential = judge.ask([parm.potential_conversation(spec.prompt)] * len(flat), images).components
            question = [user_turn(parm.selection_question, spec.prompt, judge.image_token)]
            finals = judge.ask([question] * len(ids), steps[-1]).scores
            # its reading of the step images before the last (the last one's is the final answer, asked above)
            early = [k for k, (_, s) in enumerate(flat) if s < len(steps) - 1]
            read = judge.ask([question] * len(early), [images[k] for k in early]).components["p_yes_norm"]
            reading = dict(zip(early, (float(r) for r in read)))
            for i in ids:
                rows = range(i * len(steps), (i + 1) * len(steps))  # flat is path-major
                slot[i].judges[name] = JudgeSteps([float(clarity[k]) for k in rows],
                                                  [float(potential["p_yes_norm"][k]) for k in rows],
                                                  [float(potential["p_no"][k]) for k in rows], float(finals[i]),
                                                  [reading.get(k) for k in rows])
        records.append(slot)
    return records


def table(entries: list[PoolEntry], specs, records: list[list[StepRecord]], candidates: int | None,
          judges: list[str]) -> list[dict]:
    """The rows of the module doc, each with its GenEval overall, intervals and generator passes per image."""
    tags = {s.index: s.tag for s in specs}
    units = {s.index: s.prompt for s in specs}  # a prompt's repeats (the balanced eval) are resampled as one prompt
    n = candidates or entries[0].size
    num_steps = entries[0].num_steps
    verdict = {(e.slot.prompt_index, e.slot.sample_index): [bool(v) for v in e.named_scores["oracle"][:n]]
               for e in entries}

    def row_of(pick) -> tuple[dict, float]:
        picked, passes = {}, 0
        for e, slot in zip(entries, records):
            key = (e.slot.prompt_index, e.slot.sample_index)
            index, p = pick(e, slot[:n])
            picked[key] = (tags[key[0]], verdict[key][index])
            passes += p
        return picked, passes / len(entries)

    base, _ = row_of(lambda e, slot: (0, num_steps))
    orm, orm_passes = row_of(lambda e, slot: (max(range(n), key=lambda i: (e.outcome_scores[i], -i)), n * num_steps))
    rows = []

    def add(name: str, picked: dict, passes: float) -> None:
        entry = {"row": name, "overall": 100 * geneval_score(picked), "passes": passes}
        for ref, against in (("baseline", base), ("orm", orm)):
            if picked is not against:
                entry[f"vs_{ref}"] = {k: 100 * v if isinstance(v, float) and k != "level" else v
                                      for k, v in paired_bootstrap(against, picked, units=units).to_json().items()}
        rows.append(entry)

    add("Show-o (baseline, path 0)", base, float(num_steps))
    add(f"ORACLE: best-of-{n} by the exact verdict", row_of(
        lambda e, slot: (max(range(n), key=lambda i: (verdict[e.slot.prompt_index, e.slot.sample_index][i], -i)),
                         n * num_steps))[0], float(n * num_steps))
    add(f"ORM best-of-{n}", orm, orm_passes)
    rule = rule_clarity_start(num_steps)  # where Parm(clarity_from="rule") starts asking
    for name in judges:
        add(f"{name}: final answer best-of-{n} (no pruning)",
            *row_of(lambda e, slot: (max(range(n), key=lambda i: (slot[i].judges[name].final, -i)), n * num_steps)))
        starts = [(0, "step 1"), (rule, f"step {rule + 1} (clarity_from=rule)")]
        starts += [(k, f"step {k + 1}") for k in range(rule + 1, num_steps - 1)]  # later: clearer, fewer passes saved
        for start, label in starts:
            add(f"{name}: PARM, clarity from {label}", *row_of(lambda e, slot: parm_pick(slot, name, start)))
    for step in range(rule, num_steps - 1):
        add(f"CEILING: prune at step {step + 1} by the exact verdict of the step image, ORM among survivors",
            *row_of(lambda e, slot: prune_pick([p.verdict[step] for p in slot], e.outcome_scores[:n], step,
                                               num_steps)))
    for name in judges:
        if any(p.judges[name].step_final is None for slot in records for p in slot):
            continue  # records measured before the readings were
        for step in range(rule, num_steps - 1):
            add(f"{name}: prune at step {step + 1} by its reading of the step image, its final answer among survivors",
                *row_of(lambda e, slot: prune_pick([p.judges[name].step_final[step] > 0.5 for p in slot],
                                                   [p.judges[name].final for p in slot], step, num_steps)))
    return rows


def step_images(records: list[list[StepRecord]], candidates: int | None, judges: list[str]) -> list[dict]:
    """Per step from the rule's first clear step to the one before the last: within-slot AUCs (module doc) of the
    exact verdict of the step image and of each judge's potential answer and reading of it against the final verdict,
    and of each judge's reading against the step image's own verdict (``None`` where not measured)."""
    paths = [(k, p) for k, slot in enumerate(records) for p in slot[:candidates or len(slot)]]
    groups = [k for k, _ in paths]
    final = [p.verdict[-1] for _, p in paths]
    num_steps = paths[0][1].num_steps
    out = []
    for step in range(rule_clarity_start(num_steps), num_steps - 1):
        shown = [p.verdict[step] for _, p in paths]
        entry = {"step": step + 1, "exact_verdict": within_group_auc([float(v) for v in shown], final, groups)}
        for name in judges:
            answers = [p.judges[name] for _, p in paths]
            entry[f"{name}.potential"] = within_group_auc([a.potential[step] for a in answers], final, groups)
            read = [None if a.step_final is None else a.step_final[step] for a in answers]
            measured = None not in read
            entry[f"{name}.reading"] = within_group_auc(read, final, groups) if measured else None
            entry[f"{name}.reading_vs_step_verdict"] = within_group_auc(read, shown, groups) if measured else None
        out.append(entry)
    return out


def markdown(rows: list[dict], slots: int, n: int) -> str:
    def ci(d: dict | None) -> str:
        return "" if d is None else f"{d['estimate']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}]"

    lines = [f"PARM's pruning replayed on the candidate pool ({slots} slots, first {n} paths; GenEval overall, paired "
             "95 % bootstrap intervals over prompts then images; passes: generator forward passes per image)", "",
             "| row | overall | Δ vs baseline [95% CI] | Δ vs ORM best-of-N [95% CI] | passes |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['row']} | {r['overall']:.1f} | {ci(r.get('vs_baseline'))} | {ci(r.get('vs_orm'))} | "
              f"{r['passes']:.1f} |" for r in rows]
    return "\n".join(lines) + "\n"


def steps_markdown(steps: list[dict]) -> str:
    def auc(v: float | None) -> str:
        return "–" if v is None else f"{v:.3f}"

    columns = [k for k in steps[0] if k != "step"]
    lines = ["What the step images tell: within-slot AUC against the path's final verdict "
             "(`*.reading_vs_step_verdict`: against the step image's own exact verdict; a judge's reading = its answer "
             "to the final question asked of the step image)", "",
             "| step | " + " | ".join(columns) + " |", "|---:|" + "---:|" * len(columns)]
    lines += [f"| {s['step']} | " + " | ".join(auc(s[c]) for c in columns) + " |" for s in steps]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    hydra.main(config_path="../configs", config_name="parm_pruning", version_base="1.3")(run)()
