"""The GenEval evaluation loop: folder layout -> ``Detector`` -> judge -> ``results.jsonl`` (reference §14).

Batched (images go through the detector ``batch_size`` at a time), resumable (images already in a results or part
file are skipped; each batch is appended atomically) and sharded across processes with ``accelerate``: each process
writes its own part file and the main process merges all parts into ``results.jsonl``, sorted by filename, so the
result does not depend on the number of processes or on interruptions.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from tqdm import tqdm

from common.io import atomic_write_text
from eval.geneval.judge import JudgeOptions, judge_image
from eval.geneval.layout import PromptFolder, discover, load_image
from eval.geneval.prompts import PromptSpec
from eval.geneval.score import read_results
from eval.geneval.types import ColorClassifier, Detector

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


def shard(items: Sequence[Any], num_processes: int, process_index: int) -> list[Any]:
    """The items process ``process_index`` of ``num_processes`` evaluates: round-robin, so shards differ by ≤ 1."""
    if not 0 <= process_index < num_processes:
        raise ValueError(f"process_index {process_index} out of range for {num_processes} processes")
    return list(items[process_index::num_processes])


def record_key(record: dict[str, Any]) -> str:
    """``<folder>/samples/<name>`` of a results record (its last three path components)."""
    return "/".join(Path(record["filename"]).parts[-3:])


def part_path(out_dir: Path, process_index: int) -> Path:
    return out_dir / f"results.part{process_index:03d}.jsonl"


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


def _append_atomic(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Append lines by rewriting the file through a temporary one: a crash never leaves a half-written line."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    atomic_write_text(path, old + "".join(json.dumps(r) + "\n" for r in records))


def done_keys(out_dir: Path) -> set[str]:
    """Keys of images already evaluated (in ``results.jsonl`` or any part file of ``out_dir``)."""
    files = [out_dir / RESULTS, *sorted(out_dir.glob("results.part*.jsonl"))]
    return {record_key(r) for p in files if p.exists() for r in read_results(p)}


def evaluate_shard(
    items: Sequence[ImageItem],
    image_dir: Path,
    detector: Detector,
    color_classifier: ColorClassifier | None,
    options: JudgeOptions,
    part_file: Path,
    batch_size: int = 8,
    show_progress: bool = True,
) -> int:
    """Detect + judge ``items`` batch by batch, appending each batch's records to ``part_file``; returns the count."""
    class_names = list(detector.class_names)
    for start in tqdm(range(0, len(items), batch_size), desc="geneval", unit="batch", disable=not show_progress):
        batch = items[start : start + batch_size]
        images = [load_image(item.path) for item in batch]
        detections = detector.detect(images)
        if len(detections) != len(images):
            raise RuntimeError(f"detector returned {len(detections)} results for {len(images)} images")
        records = []
        for item, image, det in zip(batch, images, detections):
            if tuple(det.image_size) != image.size:
                raise ValueError(f"{item.path}: detections are for size {det.image_size}, image is {image.size}")
            verdict = judge_image(item.folder.spec.raw, det, image, color_classifier, class_names, options)
            records.append(make_record(item, image_dir, verdict))
        _append_atomic(part_file, records)
    return len(items)


def merge_results(out_dir: Path, keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Merge ``results.jsonl`` and every part file into ``results.jsonl`` (sorted by key, one record per image).

    ``keys`` restricts the merge to the current evaluation's images. Part files are removed afterwards.
    """
    parts = sorted(out_dir.glob("results.part*.jsonl"))
    merged: dict[str, dict[str, Any]] = {}
    for path in [out_dir / RESULTS, *parts]:
        if path.exists():
            for rec in read_results(path):
                merged.setdefault(record_key(rec), rec)
    if keys is not None:
        wanted = set(keys)
        merged = {k: v for k, v in merged.items() if k in wanted}
    ordered = [merged[k] for k in sorted(merged)]
    atomic_write_text(out_dir / RESULTS, "".join(json.dumps(r) + "\n" for r in ordered))
    for path in parts:
        path.unlink()
    return ordered


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
    if state is None:
        from accelerate import PartialState

        state = PartialState()
    image_dir, out_dir = Path(image_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    folders = discover(image_dir, detector.class_names, images_per_prompt)
    if prompts is not None:
        check_against_prompts(folders, prompts)
    items = list_items(folders)
    # Shard the full list, then drop finished images: an image's process never depends on what is already done.
    done = done_keys(out_dir)
    mine = [item for item in shard(items, state.num_processes, state.process_index) if item.key not in done]
    evaluate_shard(
        mine, image_dir, detector, color_classifier, options, part_path(out_dir, state.process_index),
        batch_size, show_progress=state.is_local_main_process,
    )
    state.wait_for_everyone()
    records = merge_results(out_dir, [item.key for item in items]) if state.is_main_process else []
    state.wait_for_everyone()
    return records
