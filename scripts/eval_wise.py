"""Recipe: evaluate a WISE image folder (reference t2i_compbench_wise.md §7) into one run directory.

    python scripts/eval_wise.py image_dir=IMAGES wise_judge.judge.path=/models/Qwen2.5-VL-7B-Instruct
    python scripts/eval_wise.py image_dir=IMAGES wise_judge=openai       # the official GPT-4o judge
    accelerate launch scripts/eval_wise.py image_dir=IMAGES ...          # sharded over processes

Reads top to bottom: load the config and the prompts, build the judge, run the (resumable, sharded) judging loop,
then, on the main process, aggregate and write the summary JSON, the Markdown / LaTeX tables (the paper's rows
beside ours) and the per-category bar chart next to ``results.jsonl``.
"""
from __future__ import annotations

import logging
import os

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from common.io import atomic_write_text
from common.recipe import check, open_run
from common.validate import ConfigError, Dir, Int
from eval.results import write_summary
from eval.wise import report
from eval.wise.evaluate import evaluate_wise
from eval.wise.prompts import load_prompts

log = logging.getLogger(__name__)


def select_prompts(cfg: DictConfig):
    if cfg.prompt_ids is not None and len(cfg.prompt_ids) == 0:
        raise ConfigError("eval_wise: prompt_ids = []: an empty prompt set would make an empty run "
                          "(null = all prompts)")
    prompts = load_prompts(cfg.prompt_dir)
    if cfg.prompt_ids is None:
        return prompts
    wanted = set(cfg.prompt_ids)
    unknown = wanted - {p.prompt_id for p in prompts}
    if unknown:
        raise ValueError(f"prompt_ids {sorted(unknown)} are not WISE prompt ids (1-1000)")
    return [p for p in prompts if p.prompt_id in wanted]


SETTINGS = (Dir("image_dir"), Int("batch_size", min=1), Int("debug_exit_after_batches", min=1, optional=True))


def run(cfg: DictConfig) -> dict | None:
    """Judge ``cfg.image_dir`` into ``cfg.run_dir``; returns the summary document on the main process."""
    from accelerate import PartialState

    check(cfg, "eval_wise", SETTINGS)
    state = PartialState()
    resolved = OmegaConf.to_container(cfg, resolve=True)
    prompts = select_prompts(cfg)
    judge = instantiate(cfg.wise_judge.judge)
    run_dir = open_run(cfg, ignore=("batch_size", "debug_exit_after_batches", "name"),
                       main_process=state.is_main_process).path
    state.wait_for_everyone()
    after = cfg.debug_exit_after_batches
    records = evaluate_wise(
        cfg.image_dir, run_dir, judge, prompts, attempts=cfg.wise_judge.attempts,
        unparsable=cfg.wise_judge.unparsable, retry_delay_s=cfg.wise_judge.retry_delay_s,
        batch_size=cfg.batch_size, state=state,
        after_batch=None if after is None else (lambda written: os._exit(17) if written >= after else None),
    )
    if not state.is_main_process:
        return None
    expected = {}
    for p in prompts:
        expected[p.category] = expected.get(p.category, 0) + 1
    record = report.summary_record(report.summarize(records, expected), cfg.name, config=resolved, seeds=cfg.seeds)
    write_summary(run_dir / "summary.json", record)
    atomic_write_text(run_dir / "summary.md", report.markdown_table([record]))
    atomic_write_text(run_dir / "summary.tex", report.latex_table([record]))
    report.bar_chart([record], run_dir / "wise_categories.png", title=f"WISE: {cfg.name}")
    log.info("WISE overall %s over %d images -> %s", record["scores"]["overall"], record["scores"]["total_images"],
             run_dir)
    return record


@hydra.main(config_path="../configs", config_name="eval_wise", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
