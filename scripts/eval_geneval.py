"""Recipe: evaluate a GenEval image folder (GenEval reference §21) into one run directory.

    python scripts/eval_geneval.py image_dir=IMAGES detector.checkpoint=M2F.pth eval.color_classifier.checkpoint=CLIP
    accelerate launch scripts/eval_geneval.py image_dir=IMAGES ...      # sharded over processes

Reads top to bottom: load the config, build the detector and the colour classifier, load the benchmark prompts,
run the (resumable, sharded) evaluation loop, then, on the main process, aggregate and write the summary JSON,
Markdown / LaTeX tables and the per-task bar chart next to ``results.jsonl``. When the images are the ``images/`` of
a run directory (``scripts/generate.py``, ``scripts/run_search.py``), that run's resolved config is recorded in the
summary as ``config.generation``: the table row says how its images were made (sampler, N, model).
"""
from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from common.io import atomic_write_text
from common.recipe import check, open_run
from common.rundir import RUN_FILE, RunDir
from common.validate import Dir, File, Int
from eval.geneval.evaluate import check_folder, evaluate_folder
from eval.geneval.judge import JudgeOptions
from eval.geneval.prompts import load_prompts
from eval.geneval.report import latex_table, markdown_table, summary_record, write_summary
from eval.geneval.score import expected_counts, summarize
from eval.plots import geneval_task_bars

log = logging.getLogger(__name__)


SETTINGS = (Dir("image_dir"), File("eval.metadata"), Int("eval.images_per_prompt", min=1), Int("eval.batch_size", min=1))


def run(cfg: DictConfig) -> dict | None:
    """Evaluate ``cfg.image_dir`` into ``cfg.run_dir``; returns the summary document on the main process."""
    from accelerate import PartialState

    check(cfg, "eval_geneval", SETTINGS)
    state = PartialState()
    resolved = OmegaConf.to_container(cfg, resolve=True)
    detector = instantiate(cfg.detector)
    color_classifier = instantiate(cfg.eval.color_classifier)
    prompts = load_prompts(cfg.eval.metadata, class_names=list(detector.class_names))
    options = JudgeOptions.from_options({str(k): str(v) for k, v in cfg.eval.options.items()})
    images_per_prompt = cfg.eval.images_per_prompt if cfg.eval.strict_layout else None
    check_folder(cfg.image_dir, detector.class_names, prompts, images_per_prompt)  # a layout error leaves no run dir
    run_dir = open_run(cfg, ignore=("eval.batch_size", "name"), main_process=state.is_main_process).path
    state.wait_for_everyone()

    records = evaluate_folder(
        cfg.image_dir,
        run_dir,
        detector,
        color_classifier,
        options,
        prompts=prompts,
        images_per_prompt=images_per_prompt,
        batch_size=cfg.eval.batch_size,
        state=state,
    )
    if not state.is_main_process:
        return None
    summary = summarize(records, expected_counts(prompts, cfg.eval.images_per_prompt))
    producer = Path(cfg.image_dir).parent
    generation = RunDir(producer).config if (producer / RUN_FILE).is_file() else None
    record = summary_record(summary, cfg.name, config={**resolved, "generation": generation}, seeds=cfg.seeds)
    write_summary(run_dir / "summary.json", record)
    atomic_write_text(run_dir / "summary.md", markdown_table([record], digits=3))
    atomic_write_text(run_dir / "summary.tex", latex_table([record]))
    geneval_task_bars([record], run_dir / "geneval_tasks.png", title=f"GenEval: {cfg.name}")
    log.info("GenEval overall %s (%d/%s images) -> %s", summary.overall, summary.total_images,
             summary.expected_images, run_dir)
    return record


@hydra.main(config_path="../configs", config_name="eval_geneval", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
