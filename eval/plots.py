"""Figures rendered from saved evaluation summaries (matplotlib Agg canvas: no display, no pyplot state)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from common.io import atomic_write
from eval.geneval.prompts import TASK_HEADERS


def new_figure(figsize: tuple[float, float], nrows: int = 1, ncols: int = 1):
    """``(figure, axes)`` on an Agg canvas: no display and no pyplot state, so safe in headless jobs and tests."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols)


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
    width = 0.8 / max(len(series), 1)
    fig, ax = new_figure((max(8, 1.1 * len(labels)), 3.5))
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


def scaling_curves(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike,
                   title: str = "test-time scaling from one candidate pool") -> Path | None:
    """GenEval score of each policy family (``orm@N``, ``parm@N``, ``oracle@N``, ...) against N, generator forward
    passes per image and judge forward passes per image: three panels of one figure, PNG, atomic. ``rows``:
    :func:`search.scaling.evaluate_policies` output. None when no row has a score."""
    families: dict[str, list] = {}
    for row in rows:
        name, _, n = row["policy"].partition("@")
        if n and row.get("geneval") is not None:
            families.setdefault(name, []).append((int(n), row["forward_passes"], row["judge_passes"], row["geneval"]))
    if not families:
        return None
    from matplotlib.ticker import NullFormatter

    fig, axes = new_figure((13, 4), 1, 3)
    for i, (name, pts) in enumerate(sorted(families.items())):
        pts.sort()
        for ax, x in zip(axes, (0, 1, 2)):
            xs = [p[x] for p in pts]
            if None not in xs and (x == 0 or len(set(xs)) > 1):  # a policy whose cost does not grow with N: N only
                # one colour per policy in every panel (a policy missing from a panel must not shift the others')
                ax.plot(xs, [100 * p[3] for p in pts], marker="o", label=name, color=f"C{i}")
    first = next((r for r in rows if r["policy"] == "first" and r.get("geneval") is not None), None)
    for ax, label in zip(axes, ("N (candidates per slot)", "generator forward passes per image",
                                "judge forward passes per image")):
        if first is not None:
            ax.axhline(100 * first["geneval"], color="gray", linestyle="--", linewidth=1, label="baseline")
        ax.set_xlabel(label)
        ax.set_ylabel("GenEval overall (%)")
        ax.grid(alpha=0.3)
    ns = sorted({p[0] for pts in families.values() for p in pts})
    axes[0].set_xscale("log", base=2)
    axes[0].set_xticks(ns, [str(n) for n in ns])
    axes[1].set_xscale("log")
    passes = [p[1] for pts in families.values() for p in pts if p[1] is not None]
    if passes:  # 10, 20, 50, 100 ... instead of overlapping 2x10^1 labels
        nice = [m * 10 ** e for e in range(-1, 7) for m in (1, 2, 5) if min(passes) <= m * 10 ** e <= max(passes)]
        axes[1].set_xticks(nice, [f"{v:g}" for v in nice])
        axes[1].xaxis.set_minor_formatter(NullFormatter())
    for ax in axes:
        ax.legend(fontsize="small")
    fig.suptitle(title)
    return save_figure(fig, path)
