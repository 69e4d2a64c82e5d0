"""The T2I-CompBench evaluation loop: official folders -> :class:`CompBenchScorer` -> ``results.jsonl``.

Resumable (by image content) and sharded over processes through :func:`eval.results.run_items`. Besides the shared
results, each category gets the official evaluator's output file, ``<out>/<category>/<annotation dir>/
vqa_result.json`` (``question_id`` = running image index, ``answer``; BLIP answers as 4-decimal strings), so numbers
can be compared file by file with a run of the official code.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

from common.io import atomic_write_text
from eval.geneval.layout import load_image
from eval.results import Item, ResultStore, default_state, run_items
from eval.t2i_compbench.layout import IMAGES_PER_PROMPT, CategoryImage, check_against_prompts, discover_category
from eval.t2i_compbench.prompts import CATEGORIES, load_prompts
from eval.t2i_compbench.scorer import CompBenchScorer

__all__ = ["evaluate_compbench", "list_items", "write_official_results"]


def list_items(image_dir: str | os.PathLike, categories: Sequence[str], prompts: dict[str, list[str]] | None,
               images_per_prompt: int = IMAGES_PER_PROMPT) -> list[Item]:
    """Every image of the categories' folders (category order, then index); checked against ``prompts``."""
    items = []
    for category in categories:
        images = discover_category(image_dir, category)
        if prompts is not None:
            check_against_prompts(images, prompts[category], images_per_prompt)
        items += [Item(im.key, im.path, im) for im in images]
    return items


def make_record(im: CategoryImage, result: dict[str, Any]) -> dict[str, Any]:
    return {"key": im.key, "category": im.category, "prompt": im.prompt, "question_id": im.index,
            "score": result["score"], "details": result["details"]}


def score_batch_fn(scorer: CompBenchScorer) -> Callable[[Sequence[Item]], list[dict[str, Any]]]:
    """``items -> records``: the batch's images grouped by category, each group scored by its rule."""

    def score(batch: Sequence[Item]) -> list[dict[str, Any]]:
        records: dict[str, dict[str, Any]] = {}
        for category in dict.fromkeys(item.data.category for item in batch):
            group = [item for item in batch if item.data.category == category]
            images = [load_image(item.path) for item in group]
            results = scorer.score(category, [item.data.prompt for item in group], images)
            for item, result in zip(group, results):
                records[item.key] = make_record(item.data, result)
        return [records[item.key] for item in batch]

    return score


def write_official_results(records: Sequence[dict[str, Any]], out_dir: str | os.PathLike) -> list[Path]:
    """The official ``vqa_result.json`` of every category present in ``records``."""
    paths = []
    for category in dict.fromkeys(r["category"] for r in records):
        rows = sorted((r for r in records if r["category"] == category), key=lambda r: r["question_id"])
        blip = CATEGORIES[category].scorer == "blip_vqa"
        answers = [{"question_id": r["question_id"], "answer": f"{r['score']:.4f}" if blip else r["score"]}
                   for r in rows]
        path = Path(out_dir) / category / CATEGORIES[category].annotation_dir / "vqa_result.json"
        atomic_write_text(path, json.dumps(answers))
        paths.append(path)
    return paths


def evaluate_compbench(
    image_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    scorer: CompBenchScorer,
    categories: Sequence[str],
    prompt_dir: str | os.PathLike | None,
    images_per_prompt: int = IMAGES_PER_PROMPT,
    batch_size: int = 16,
    state=None,
    after_batch: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Score every image of ``<image_dir>/<category>/samples/`` into ``out_dir``; resumes and shards.

    ``prompt_dir`` (the validation files) makes every image's prompt be checked against its line and lets the
    scorer prepare per-category data; None skips the check (numeracy then infers its vocabulary from the folder's
    prompts). Returns the merged records on the main process ([] elsewhere).
    """
    state = default_state() if state is None else state
    unknown = [c for c in categories if c not in CATEGORIES]
    if unknown:
        raise KeyError(f"unknown T2I-CompBench categories {unknown}; expected some of {sorted(CATEGORIES)}")
    prompts = {c: load_prompts(prompt_dir, c) for c in categories} if prompt_dir is not None else None
    items = list_items(image_dir, categories, prompts, images_per_prompt)
    for category in categories:
        scorer.prepare(category, prompts[category] if prompts else
                       list(dict.fromkeys(i.data.prompt for i in items if i.data.category == category)))
    records = run_items(items, score_batch_fn(scorer), ResultStore(out_dir), state, batch_size,
                        desc="t2i-compbench", after_batch=after_batch)
    if state.is_main_process:
        write_official_results(records, out_dir)
    return records
