"""The shapes world's miniature Table 1: evaluate image folders with the exact detector, render the table.

* :func:`evaluate_shapes_folder`: a GenEval-layout folder -> ``<out>/results.jsonl`` + ``summary.json`` via the real
  evaluation loop (:func:`eval.geneval.evaluate.evaluate_folder`) with :class:`ShapesDetector` /
  :class:`ShapesColorClassifier` standing in for Mask2Former / CLIP;
* :func:`table_rows` / :func:`markdown_table`: one row per method, from saved summaries; a method that was not run
  is a row that says so and why (never a number);
* :func:`scaling_plot`: overall accuracy against generator forward passes per image (one point per run).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from common.io import atomic_write_text
from eval.geneval.evaluate import evaluate_folder
from eval.geneval.prompts import load_class_names, load_prompts
from eval.geneval.report import load_summary, markdown_lines, summary_record, table_header, table_row, write_summary
from eval.geneval.score import expected_counts, summarize
from eval.plots import new_figure, save_figure
from eval.shapes.detector import ShapesColorClassifier, ShapesDetector
from eval.shapes.render import ShapesWorld
from eval.stats import Interval

SUMMARY = "summary.json"


def evaluate_shapes_folder(image_dir: str | os.PathLike, out_dir: str | os.PathLike, metadata: str | os.PathLike,
                           class_names: str | os.PathLike, world: ShapesWorld, name: str,
                           images_per_prompt: int = 4, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Judge every image of ``image_dir`` against ``metadata``; writes and returns the summary document.

    ``extra`` (e.g. ``{"forward_passes_per_image": 12}``) is stored under the document's ``config``.
    """
    out_dir = Path(out_dir)
    prompts = load_prompts(metadata, load_class_names(class_names))
    detector, colors = ShapesDetector(world), ShapesColorClassifier(world)
    records = evaluate_folder(image_dir, out_dir, detector, colors, prompts=prompts,
                              images_per_prompt=images_per_prompt, batch_size=32)
    summary = summarize(records, expected_counts(prompts, images_per_prompt))
    record = summary_record(summary, name, config={"image_dir": str(image_dir), **(extra or {})})
    write_summary(out_dir / SUMMARY, record)
    return record


@dataclass(frozen=True)
class Row:
    """One table row: a saved summary, or a method that was not run (``reason``); ``delta``: its difference to the
    baseline with a paired bootstrap interval (:func:`eval.stats.paired_bootstrap`), ``oracle_share``: the share of the
    oracle's gain over the baseline it reaches (search rows); ``against``: the name of the row the difference is to,
    when it is not the table's baseline (e.g. a tiny-Janus row against the tiny-Janus baseline)."""

    name: str
    summary: dict[str, Any] | None = None
    reason: str | None = None
    delta: Interval | None = None
    oracle_share: float | None = None
    against: str | None = None


@dataclass(frozen=True)
class Comparison:
    """The paired difference ``name - against`` over the slots both rows judged (:func:`eval.stats.paired_bootstrap`),
    with each row's generator forward passes per image when known."""

    name: str
    against: str
    delta: Interval
    passes: float | None = None
    against_passes: float | None = None

    def to_json(self) -> dict:
        return {"name": self.name, "against": self.against, "delta": self.delta.to_json(),
                "forward_passes_per_image": self.passes, "against_forward_passes_per_image": self.against_passes}


def markdown_comparisons(comparisons: Sequence[Comparison], digits: int = 1) -> str:
    """One line per comparison: the difference with its interval, and the two rows' generator forward passes."""
    def passes(value: float | None) -> str:
        return "–" if value is None else f"{value:.0f}"

    lines = [[f"{c.name} − {c.against}",
              f"{100 * c.delta.estimate:+.{digits}f} [{100 * c.delta.low:+.{digits}f}, {100 * c.delta.high:+.{digits}f}]",
              f"{passes(c.passes)} / {passes(c.against_passes)}"] for c in comparisons]
    return markdown_lines(["Paired difference", "Δ [95% CI]", "generator forward passes per image"], lines)


def table_rows(entries: Sequence[tuple[str, str]]) -> list[Row]:
    """``(name, summary_path)`` pairs -> rows; a missing summary becomes "not run (no summary at <path>)"."""
    rows = []
    for name, path in entries:
        if Path(path).is_file():
            rows.append(Row(name, load_summary(path)))
        else:
            rows.append(Row(name, reason=f"no summary at {path}"))
    return rows


def _delta_cell(row: Row, digits: int) -> str:
    if row.delta is None:
        return ""
    d = row.delta
    against = f" vs {row.against}" if row.against else ""
    return f"{100 * d.estimate:+.{digits}f} [{100 * d.low:+.{digits}f}, {100 * d.high:+.{digits}f}]{against}"


def markdown_table(rows: Sequence[Row], digits: int = 1) -> str:
    """GenEval-style table in percent: per task, overall (macro-average over tasks), the difference to the baseline
    with its paired bootstrap 95% interval, the share of the oracle's gain (search rows), the number of images
    (``*`` on overall: images missing); a not-run row says why."""
    header = [*table_header(images=False), "Δ vs baseline [95% CI]", "% of oracle gain", "Images"]
    lines = []
    for row in rows:
        if row.summary is None:
            lines.append([row.name, f"not run ({row.reason})", *[""] * (len(header) - 2)])
            continue
        base = table_row({**row.summary, "name": row.name}, digits, scale=100, images=False)
        share = "" if row.oracle_share is None else f"{100 * row.oracle_share:.0f}"
        lines.append([*base, _delta_cell(row, digits), share, str(row.summary["scores"]["total_images"])])
    return markdown_lines(header, lines)


def scaling_plot(rows: Sequence[Row], path: str | os.PathLike, title: str = "shapes world") -> Path | None:
    """Overall accuracy vs generator forward passes per image (from each summary's ``config``); PNG, atomic.

    Rows without a ``forward_passes_per_image`` entry are left out; returns None when no row has one.
    """
    points = [(r.name, r.summary["config"].get("forward_passes_per_image"), r.summary["scores"]["overall"])
              for r in rows if r.summary is not None and r.summary.get("config")]
    points = [(n, x, y) for n, x, y in points if x is not None and y is not None]
    if not points:
        return None
    fig, ax = new_figure((5.5, 3.8))
    for name, x, y in points:
        ax.scatter([x], [100 * y], label=name)
    ax.set_xscale("log")
    ax.set_xlabel("generator forward passes per image")
    ax.set_ylabel("overall accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return save_figure(fig, path)


def write_table_json(path: str | os.PathLike, rows: Sequence[Row], environment: dict[str, Any] | None = None,
                     comparisons: Sequence[Comparison] = ()) -> None:
    """The table as JSON (name, overall, per-task accuracies, images, generator forward passes per image when known,
    or the not-run reason), the comparisons between rows, and the environment it was measured in, atomically."""
    data = []
    for row in rows:
        if row.summary is None:
            data.append({"name": row.name, "not_run": row.reason})
        else:
            scores = row.summary["scores"]
            data.append({"name": row.name, "overall": scores["overall"], "images": scores["total_images"],
                         "tasks": {t: v["accuracy"] for t, v in scores["tasks"].items()},
                         "delta": None if row.delta is None else row.delta.to_json(), "against": row.against,
                         "oracle_share": row.oracle_share,
                         "forward_passes_per_image": (row.summary.get("config") or {}).get("forward_passes_per_image")})
    out = {"rows": data, **({"comparisons": [c.to_json() for c in comparisons]} if comparisons else {}),
           "environment": environment}
    atomic_write_text(path, json.dumps(out, indent=1) + "\n")


def read_table_json(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a ``table.json`` written by :func:`write_table_json`."""
    return json.loads(Path(path).read_text())["rows"]


def write_table(run_dir: str | os.PathLike, rows: Sequence[Row], environment: dict[str, Any] | None = None,
                title: str = "shapes world: accuracy vs generator compute", comparisons: Sequence[Comparison] = ()
                ) -> str:
    """``table.md`` / ``table.json`` (with the environment; the ``comparisons`` as a second table) and
    ``compute.png`` (each row's accuracy against its generator forward passes per image) in ``run_dir``; returns the
    Markdown."""
    run_dir = Path(run_dir)
    text = markdown_table(rows)
    if comparisons:
        text += "\n" + markdown_comparisons(comparisons)
    atomic_write_text(run_dir / "table.md", text)
    write_table_json(run_dir / "table.json", rows, environment, comparisons)
    scaling_plot(rows, run_dir / "compute.png", title=title)
    return text
