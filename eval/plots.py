"""Figures rendered from saved evaluation summaries (matplotlib Agg canvas: no display, no pyplot state)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from common.io import atomic_write


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """``fig`` (tight layout) as PNG at ``path``, written atomically (temp file in the same folder, then rename)."""
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))


def geneval_task_bars(records: Sequence[Mapping[str, Any]], path: str | os.PathLike, title: str = "GenEval") -> Path:
    """Grouped bar chart of per-task accuracy (one bar group per task, one bar per run) written atomically to PNG.

    ``records`` are GenEval summary documents (``eval.geneval.report.summary_record``); missing tasks plot as 0.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from eval.geneval.report import TASK_HEADERS

    tasks = list(TASK_HEADERS)
    labels = [*TASK_HEADERS.values(), "Overall"]
    width = 0.8 / max(len(records), 1)
    fig = Figure(figsize=(8, 3.5))
    FigureCanvasAgg(fig)  # Agg canvas, no pyplot state: safe in headless jobs and tests
    ax = fig.subplots()
    for i, record in enumerate(records):
        scores = record["scores"]
        values = [scores["tasks"].get(t, {}).get("accuracy") or 0.0 for t in tasks] + [scores["overall"] or 0.0]
        ax.bar(np.arange(len(labels)) + i * width - 0.4 + width / 2, values, width, label=str(record["name"]))
    ax.set_xticks(np.arange(len(labels)), labels)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return save_figure(fig, path)
