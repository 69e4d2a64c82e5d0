"""Recipe: evaluate a T2I-CompBench image folder (reference t2i_compbench_wise.md §1-§5) into one run directory.

    python scripts/eval_compbench.py image_dir=IMAGES compbench.vqa.path=BLIP compbench.detector.path=OWL \
        compbench.clip.weights=CLIP.bin
    accelerate launch scripts/eval_compbench.py image_dir=IMAGES ...      # sharded over processes

Reads top to bottom: load the config, build the parser and the models the selected categories need, run the
(resumable, sharded) scoring loop, then, on the main process, aggregate and write the summary JSON, the Markdown /
LaTeX tables (the paper's rows beside ours) and the per-category bar chart next to ``results.jsonl``.
"""
from __future__ import annotations

import logging
import os

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from common.io import atomic_write_text
from common.recipe import check, open_run
from common.validate import Choices, Dir, Int
from eval.results import write_summary
from eval.t2i_compbench import report
from eval.t2i_compbench.evaluate import evaluate_compbench
from eval.t2i_compbench.prompts import CATEGORIES, load_complex_split, load_prompts
from eval.t2i_compbench.rules import read_objects_file
from eval.t2i_compbench.scorer import CompBenchScorer, required_parts

log = logging.getLogger(__name__)


def build_scorer(cfg: DictConfig, categories: list[str]) -> CompBenchScorer:
    """The parser plus only the models ``categories`` need (the others' paths may stay unset)."""
    parts = required_parts(categories)
    c = cfg.compbench
    models = {name: instantiate(c[name]) if name in parts else None for name in ("vqa", "detector", "clip")}
    split = load_complex_split(c.complex_split_dir) if "complex_split" in parts else None
    objects = read_objects_file(c.numeracy_objects) if c.numeracy_objects else None
    return CompBenchScorer(instantiate(c.parser), complex_split=split, numeracy_objects=objects, **models)


def kill_switch(after: int | None):
    """Testing aid: die like a killed process (no cleanup) once ``after`` batches are written."""
    if after is None:
        return None
    return lambda written: os._exit(17) if written >= after else None


SETTINGS = (Dir("image_dir"), Int("compbench.images_per_prompt", min=1), Int("compbench.batch_size", min=1),
            Choices("categories", CATEGORIES), Int("debug_exit_after_batches", min=1, optional=True))


def run(cfg: DictConfig) -> dict | None:
    """Evaluate ``cfg.image_dir`` into ``cfg.run_dir``; returns the summary document on the main process."""
    from accelerate import PartialState

    check(cfg, "eval_compbench", SETTINGS)
    state = PartialState()
    resolved = OmegaConf.to_container(cfg, resolve=True)
    categories = list(cfg.categories)
    scorer = build_scorer(cfg, categories)
    run_dir = open_run(cfg, ignore=("compbench.batch_size", "debug_exit_after_batches", "name"),
                       main_process=state.is_main_process).path
    state.wait_for_everyone()
    records = evaluate_compbench(
        cfg.image_dir, run_dir, scorer, categories, cfg.compbench.prompt_dir,
        images_per_prompt=cfg.compbench.images_per_prompt, batch_size=cfg.compbench.batch_size, state=state,
        after_batch=kill_switch(cfg.debug_exit_after_batches),
    )
    if not state.is_main_process:
        return None
    n = cfg.compbench.images_per_prompt
    expected = {c: n * len(load_prompts(cfg.compbench.prompt_dir, c)) for c in categories}
    record = report.summary_record(report.summarize(records, expected), cfg.name, config=resolved, seeds=cfg.seeds)
    write_summary(run_dir / "summary.json", record)
    atomic_write_text(run_dir / "summary.md", report.markdown_table([record]))
    atomic_write_text(run_dir / "summary.tex", report.latex_table([record]))
    report.bar_chart([record], run_dir / "compbench_categories.png", title=f"T2I-CompBench: {cfg.name}")
    log.info("T2I-CompBench mean %s over %d images -> %s", record["scores"]["mean_v1"],
             record["scores"]["total_images"], run_dir)
    return record


@hydra.main(config_path="../configs", config_name="eval_compbench", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
