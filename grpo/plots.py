"""The reward curve of a GRPO run: mean reward (and each expert's mean) against the optimizer step, from
``metrics.jsonl`` (matplotlib Agg canvas, written atomically)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from eval.plots import save_figure

__all__ = ["read_metrics", "reward_curve", "reward_curves"]


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of a ``metrics.jsonl`` in file order."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def reward_curve(metrics_path: str | os.PathLike, out: str | os.PathLike, title: str = "GRPO reward") -> Path | None:
    """``reward/mean`` (with its within-group std as a band) and every ``rewards/<name>/mean`` vs step; None when
    the file has no reward record."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    records = [r for r in read_metrics(metrics_path) if "reward/mean" in r]
    if not records:
        return None
    steps = [r["step"] for r in records]
    fig = Figure(figsize=(6, 3.8))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    mean = [r["reward/mean"] for r in records]
    band = [r.get("reward/group_std", 0.0) for r in records]
    ax.plot(steps, mean, color="black", linewidth=2, label="reward (sum)")
    ax.fill_between(steps, [m - b for m, b in zip(mean, band)], [m + b for m, b in zip(mean, band)], color="black",
                    alpha=0.12, label="± mean within-group std")
    experts = sorted({k.split("/")[1] for r in records for k in r if k.startswith("rewards/") and k.endswith("/mean")})
    if len(experts) > 1:
        for name in experts:
            ax.plot(steps, [r.get(f"rewards/{name}/mean") for r in records], linewidth=1, label=name)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("mean reward of the step's samples")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return save_figure(fig, out)


def reward_curves(runs: list[tuple[str, str | os.PathLike]], out: str | os.PathLike,
                  title: str = "GRPO: mean reward per step") -> Path | None:
    """Several runs' ``reward/mean`` against the step on one axis (``runs``: (label, metrics.jsonl) pairs; a missing
    file is left out); None when no run has a reward record."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series = []
    for label, path in runs:
        records = [r for r in read_metrics(path) if "reward/mean" in r] if Path(path).is_file() else []
        if records:
            series.append((label, [r["step"] for r in records], [r["reward/mean"] for r in records]))
    if not series:
        return None
    fig = Figure(figsize=(6, 3.8))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for label, steps, values in series:
        ax.plot(steps, values, marker="o", markersize=3, label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("mean reward of the step's samples")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return save_figure(fig, out)
