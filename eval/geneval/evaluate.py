"""The GenEval evaluation loop: folder layout -> ``Detector`` -> judge -> ``results.jsonl`` (reference §14).

Batched (images go through the detector ``batch_size`` at a time), resumable and sharded across processes with
``accelerate`` through the shared loop of :mod:`eval.results` (images already scored **on their current bytes** are
skipped; each batch is appended atomically to the process's part file; the main process merges all parts into
``results.jsonl``, sorted by filename, so the result does not depend on the number of processes or on
interruptions). The records are the official ones; their image digests live in ``results.digests.json``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from eval.geneval.judge import JudgeOptions, judge_image
from eval.geneval.layout import PromptFolder, discover, load_image
from eval.geneval.prompts import PromptSpec
from eval.geneval.types import ColorClassifier, Detector
from eval.results import Item, ResultStore, default_state, run_items, shard

__all__ = ["ImageItem", "check_against_prompts", "check_folder", "done_keys", "evaluate_folder", "list_items",
           "make_record", "merge_results", "record_key", "shard"]

RESULTS = "results.jsonl"


@dataclass(frozen=True)
class ImageItem:
    """One image to evaluate: ``key`` = ``<folder>/samples/<name>`` (stable across machines), its path and prompt."""

    key: str
    path: Path
    folder: PromptFolder


def list_items(folders: Sequence[PromptFolder]) -> list[ImageItem]:
    """Every sample image of ``folders``, in (folder index, sample number) order."""
    return [ImageItem(f"{f.path.name}/samples/{p.name}", p, f) for f in folders for p in f.images]


def record_key(record: dict[str, Any]) -> str:
    """``<folder>/samples/<name>`` of a results record (its last three path components)."""
    return "/".join(Path(record["filename"]).parts[-3:])


def check_against_prompts(folders: Sequence[PromptFolder], prompts: Sequence[PromptSpec]) -> None:
    """Folder ``N``'s metadata must be line ``N`` of the benchmark (catches off-by-one and foreign folders)."""
    for f in folders:
        if f.index >= len(prompts):
            raise ValueError(f"{f.path}: folder index {f.index} but the benchmark has {len(prompts)} prompts")
        if f.spec.raw != prompts[f.index].raw:
            raise ValueError(
                f"{f.path / 'metadata.jsonl'}: metadata {f.spec.metadata_line()} differs from benchmark line "
                f"{f.index + 1}: {prompts[f.index].metadata_line()}"
            )


def check_folder(image_dir: str | os.PathLike, class_names: Sequence[str], prompts: Sequence[PromptSpec] | None = None,
                 images_per_prompt: int | None = None) -> list[PromptFolder]:
    """The prompt folders of ``image_dir`` with their layout checked (and each against its benchmark line when
    ``prompts`` is given); the error names the folder. Recipes call it before they open their run directory."""
    folders = discover(Path(image_dir), class_names, images_per_prompt)
    if prompts is not None:
        check_against_prompts(folders, prompts)
    return folders


def make_record(item: ImageItem, image_dir: Path, verdict) -> dict[str, Any]:
    """One official ``results.jsonl`` record (``metadata`` and ``details`` are JSON strings, as in the official)."""
    spec = item.folder.spec
    return {
        "filename": os.path.join(str(image_dir), item.key),
        "tag": spec.tag,
        "prompt": spec.prompt,
        "correct": bool(verdict.correct),
        "reason": verdict.reason,
        "metadata": json.dumps(spec.raw),
        "details": verdict.details_json,
    }


def store(out_dir: str | os.PathLike) -> ResultStore:
    """The run directory's result store, keyed by ``<folder>/samples/<name>``."""
    return ResultStore(out_dir, key_of=record_key)


def done_keys(out_dir: Path) -> set[str]:
    """Keys of images with a stored record (in ``results.jsonl`` or any part file of ``out_dir``)."""
    return store(out_dir).keys()


def merge_results(out_dir: Path, keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Merge ``results.jsonl`` and every part file into ``results.jsonl`` (sorted by key, one record per image).

    ``keys`` restricts the merge to those images (the first record stored per key is kept). Part files are removed.
    """
    return store(out_dir).merge(keys=keys)


def score_batch_fn(
    image_dir: Path,
    detector: Detector,
    color_classifier: ColorClassifier | None,
    options: JudgeOptions,
):
    """``items -> official records``: detect the batch's images, then judge each against its metadata."""
    class_names = list(detector.class_names)

    def score(batch: Sequence[Item]) -> list[dict[str, Any]]:
        images = [load_image(item.path) for item in batch]
        detections = detector.detect(images)
        if len(detections) != len(images):
            raise RuntimeError(f"detector returned {len(detections)} results for {len(images)} images")
        records = []
        for item, image, det in zip(batch, images, detections):
            if tuple(det.image_size) != image.size:
                raise ValueError(f"{item.path}: detections are for size {det.image_size}, image is {image.size}")
            verdict = judge_image(item.data.folder.spec.raw, det, image, color_classifier, class_names, options)
            records.append(make_record(item.data, image_dir, verdict))
        return records

    return score


def evaluate_folder(
    image_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    detector: Detector,
    color_classifier: ColorClassifier | None,
    options: JudgeOptions = JudgeOptions(),
    prompts: Sequence[PromptSpec] | None = None,
    images_per_prompt: int | None = None,
    batch_size: int = 8,
    state=None,
) -> list[dict[str, Any]]:
    """Evaluate every image of ``image_dir`` into ``out_dir/results.jsonl``; resumes and shards.

    ``prompts`` (the benchmark's metadata) makes every folder's metadata be checked against its line;
    ``images_per_prompt`` makes a folder with another number of samples an error. ``state`` is an
    ``accelerate.PartialState`` (created when None); every process calls this function. Returns the merged
    records on the main process (an empty list on the others).
    """
    state = default_state() if state is None else state
    image_dir, out_dir = Path(image_dir), Path(out_dir)
    folders = check_folder(image_dir, detector.class_names, prompts, images_per_prompt)
    items = [Item(i.key, i.path, i) for i in list_items(folders)]
    score = score_batch_fn(image_dir, detector, color_classifier, options)
    return run_items(items, score, store(out_dir), state, batch_size, desc="geneval")
