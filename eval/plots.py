"""Figures rendered from saved evaluation summaries (matplotlib Agg canvas: no display, no pyplot state)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from common.io import atomic_write
from eval.geneval.prompts import TASK_HEADERS


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """``fig`` (tight layout) as PNG at ``path``, written atomically (temp file in the same folder, then rename)."""
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))


def score_bars(
    series: Sequence[tuple[str, Sequence[float | None]]],
    labels: Sequence[str],
    path: str | os.PathLike,
    title: str,
    ylabel: str = "score",
    ylim: tuple[float, float] = (0.0, 1.0),
) -> Path:
    """Grouped bar chart written atomically to PNG: one group per label, one bar per ``(name, values)`` series
    (a ``None`` value plots as 0). Shared by every benchmark's report."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width = 0.8 / max(len(series), 1)
    fig = Figure(figsize=(max(8, 1.1 * len(labels)), 3.5))
    FigureCanvasAgg(fig)  # Agg canvas, no pyplot state: safe in headless jobs and tests
    ax = fig.subplots()
    for i, (name, values) in enumerate(series):
        if len(values) != len(labels):
            raise ValueError(f"series {name!r} has {len(values)} values for {len(labels)} labels")
        heights = [v or 0.0 for v in values]
        ax.bar(np.arange(len(labels)) + i * width - 0.4 + width / 2, heights, width, label=str(name))
    ax.set_xticks(np.arange(len(labels)), labels)
    ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="small")
    return save_figure(fig, path)


def geneval_task_bars(records: Sequence[Mapping[str, Any]], path: str | os.PathLike, title: str = "GenEval") -> Path:
    """Grouped bar chart of per-task accuracy (one bar group per task, one bar per run) written atomically to PNG.

    ``records`` are GenEval summary documents (``eval.geneval.report.summary_record``); missing tasks plot as 0.
    """

    series = []
    for record in records:
        scores = record["scores"]
        values = [scores["tasks"].get(t, {}).get("accuracy") for t in TASK_HEADERS] + [scores["overall"]]
        series.append((str(record["name"]), values))
    return score_bars(series, [*TASK_HEADERS.values(), "Overall"], path, title, ylabel="accuracy")
