"""T2I-CompBench aggregation, summary documents and the paper's table with our rows beside the published ones.

Category score = plain mean of the per-image scores (3,000 images = 300 prompts × 10 in the official protocol);
"Mean" = plain mean of the six v1 categories (the T2I-R1 table, ``t2i_r1.md`` §10.2). A category with missing images
is marked ``*`` (not comparable) and the mean is ``None`` when one of the six has no image at all.

    python -m eval.t2i_compbench.report RUN/summary.json ... [--latex] [--plot bars.png] [--no-published]
"""
from __future__ import annotations

import warnings
from typing import Any, Iterable, Mapping, Sequence

from eval.results import fmt_score, latex_lines, load_summary, markdown_lines, summary_document, table_cli

__all__ = ["PUBLISHED", "SCHEMA", "VERSION", "load", "main", "markdown_table", "summarize", "summary_record",
           "table_rows"]

SCHEMA = "imagecot.t2i_compbench.summary"
VERSION = 1
V1 = ("color", "shape", "texture", "spatial", "non_spatial", "complex")
HEADERS = {"color": "Color", "shape": "Shape", "texture": "Texture", "spatial": "Spatial",
           "non_spatial": "Non-spatial", "complex": "Complex"}
# Published T2I-CompBench numbers (t2i_r1.md §10.2): Janus-Pro-7B and T2I-R1 (7B), FLUX.1 as re-printed beside them.
PUBLISHED = {
    "Janus-Pro-7B (paper)": [0.6359, 0.3528, 0.4936, 0.2061, 0.3085, 0.3559, 0.3921],
    "T2I-R1 (paper)": [0.8130, 0.5852, 0.7243, 0.3378, 0.3090, 0.3993, 0.5281],
    "FLUX.1 (paper)": [0.7407, 0.5718, 0.6922, 0.2863, 0.3127, 0.3703, None],
}


class MissingImagesWarning(UserWarning):
    """Fewer images were scored than the benchmark defines: not comparable with published numbers."""


def summarize(records: Iterable[Mapping[str, Any]], expected: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Per-category mean, image counts and the v1 mean. ``expected``: category -> images the benchmark defines."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for rec in records:
        sums[rec["category"]] = sums.get(rec["category"], 0.0) + float(rec["score"])
        counts[rec["category"]] = counts.get(rec["category"], 0) + 1
    names = list(expected or {}) + [c for c in counts if c not in (expected or {})]
    categories = {}
    for c in names:
        n = counts.get(c, 0)
        exp = None if expected is None else expected.get(c)
        categories[c] = {"score": sums[c] / n if n else None, "images": n, "expected": exp,
                         "missing": max((exp or 0) - n, 0)}
    missing = sum(v["missing"] for v in categories.values())
    if missing:
        short = {c: f"{v['images']}/{v['expected']}" for c, v in categories.items() if v["missing"]}
        warnings.warn(f"T2I-CompBench: {missing} expected images were not scored ({short}); not comparable with "
                      f"published numbers", MissingImagesWarning, stacklevel=2)
    v1 = [categories.get(c, {}).get("score") for c in V1]
    return {"categories": categories, "mean_v1": None if any(s is None for s in v1) else sum(v1) / len(v1),
            "total_images": sum(counts.values()), "missing_images": missing}


def summary_record(scores: Mapping[str, Any], name: str, config=None, seeds=None) -> dict[str, Any]:
    return summary_document(SCHEMA, VERSION, name, scores, config, seeds)


def load(path) -> dict[str, Any]:
    return load_summary(path, SCHEMA, VERSION)


def _row(record: Mapping[str, Any], digits: int) -> list[str]:
    cats = record["scores"]["categories"]
    cells = []
    for c in V1:
        entry = cats.get(c, {})
        cells.append(fmt_score(entry.get("score"), digits) + ("*" if entry.get("missing") else ""))
    return [str(record["name"]), *cells, fmt_score(record["scores"]["mean_v1"], digits)]


def table_rows(records: Sequence[Mapping[str, Any]], digits: int = 4, published: bool = True) -> list[list[str]]:
    """The paper's rows (published numbers) then one row per summary."""
    rows = [[name, *(fmt_score(v, digits) for v in values)] for name, values in PUBLISHED.items()] if published else []
    return rows + [_row(r, digits) for r in records]


def header() -> list[str]:
    return ["Model", *HEADERS.values(), "Mean"]


def markdown_table(records: Sequence[Mapping[str, Any]], digits: int = 4, published: bool = True) -> str:
    text = markdown_lines(header(), table_rows(records, digits, published))
    if any(r["scores"].get("missing_images") for r in records):
        text += "\n\\* images missing in this category; not comparable with published numbers.\n"
    return text


def latex_table(records: Sequence[Mapping[str, Any]], digits: int = 4, published: bool = True) -> str:
    return latex_lines(header(), table_rows(records, digits, published))


def bar_chart(records: Sequence[Mapping[str, Any]], path, published: bool = True, title: str = "T2I-CompBench"):
    from eval.plots import score_bars

    series = [(n, v) for n, v in PUBLISHED.items()] if published else []
    series += [(str(r["name"]), [r["scores"]["categories"].get(c, {}).get("score") for c in V1]
                + [r["scores"]["mean_v1"]]) for r in records]
    return score_bars(series, [*HEADERS.values(), "Mean"], path, title)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m eval.t2i_compbench.report SUMMARY ... [--latex] [--digits 4] [--no-published] [--plot out.png]``."""
    table_cli(argv, benchmark="T2I-CompBench", script="scripts/eval_compbench.py", digits=4, load=load,
              markdown_table=markdown_table, latex_table=latex_table, bar_chart=bar_chart)


if __name__ == "__main__":
    main()
