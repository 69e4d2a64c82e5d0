"""WISE aggregation, summary documents and the paper's table with our rows beside the published ones.

Category = mean WiScore over its images; Overall = 0.4·Cultural + 0.167·Time + 0.133·Space + 0.1·(Biology + Physics
+ Chemistry), which equals the mean over all 1,000 images (weights = prompt shares; reference §7.4). As the official
``Calculate.py``, no Overall is given while an image is missing (``overall_partial`` keeps the weighted mean of the
categories present for inspection).

    python -m eval.wise.report RUN/summary.json ... [--latex] [--plot bars.png] [--no-published]
"""
from __future__ import annotations

import warnings
from typing import Any, Iterable, Mapping, Sequence

from eval.results import fmt_score, latex_lines, load_summary, markdown_lines, summary_document, table_cli
from eval.wise.prompts import CATEGORIES, WEIGHTS

__all__ = ["PUBLISHED", "SCHEMA", "VERSION", "load", "main", "markdown_table", "summarize", "summary_record"]

SCHEMA = "imagecot.wise.summary"
VERSION = 1
HEADERS = {"cultural": "Cultural", "time": "Time", "space": "Space", "biology": "Biology", "physics": "Physics",
           "chemistry": "Chemistry"}
# Published WISE (legacy, GPT-4o judge) numbers, t2i_r1.md §10.3.
PUBLISHED = {
    "Janus-Pro-7B (paper)": [0.30, 0.37, 0.49, 0.36, 0.42, 0.26, 0.35],
    "T2I-R1 (paper)": [0.56, 0.55, 0.63, 0.54, 0.55, 0.30, 0.54],
    "FLUX.1-dev (paper)": [0.48, 0.58, 0.62, 0.42, 0.51, 0.35, 0.50],
}


class MissingImagesWarning(UserWarning):
    """Some prompts have no scored image: no Overall, not comparable with published numbers."""


def summarize(records: Iterable[Mapping[str, Any]], expected: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Per-category mean WiScore (and C/R/A means), counts, Overall. ``expected``: category -> prompts."""
    expected = dict(expected) if expected is not None else {c: hi - lo + 1 for c, (lo, hi) in CATEGORIES.items()}
    acc = {c: {"wiscore": 0.0, "consistency": 0.0, "realism": 0.0, "aesthetic_quality": 0.0, "n": 0, "unparsed": 0}
           for c in CATEGORIES}
    for rec in records:
        a = acc[rec["category"]]
        for k in ("wiscore", "consistency", "realism", "aesthetic_quality"):
            a[k] += float(rec[k])
        a["n"] += 1
        a["unparsed"] += not rec.get("parsed", True)
    categories = {}
    for c, a in acc.items():
        n = a["n"]
        categories[c] = {"score": a["wiscore"] / n if n else None, "images": n, "expected": expected.get(c, 0),
                         "missing": max(expected.get(c, 0) - n, 0), "unparsed": a["unparsed"],
                         **{k: a[k] / n if n else None for k in ("consistency", "realism", "aesthetic_quality")}}
    missing = sum(v["missing"] for v in categories.values())
    present = {c: v["score"] for c, v in categories.items() if v["score"] is not None}
    partial = sum(WEIGHTS[c] * s for c, s in present.items()) / sum(WEIGHTS[c] for c in present) if present else None
    if missing:
        warnings.warn(f"WISE: {missing} prompts have no scored image; no Overall (not comparable with published "
                      f"numbers)", MissingImagesWarning, stacklevel=2)
    return {"categories": categories, "overall": None if missing else partial, "overall_partial": partial,
            "total_images": sum(v["images"] for v in categories.values()), "missing_images": missing,
            "unparsed": sum(v["unparsed"] for v in categories.values())}


def summary_record(scores: Mapping[str, Any], name: str, config=None, seeds=None) -> dict[str, Any]:
    return summary_document(SCHEMA, VERSION, name, scores, config, seeds)


def load(path) -> dict[str, Any]:
    return load_summary(path, SCHEMA, VERSION)


def header() -> list[str]:
    return ["Model", *HEADERS.values(), "Overall"]


def table_rows(records: Sequence[Mapping[str, Any]], digits: int = 2, published: bool = True) -> list[list[str]]:
    rows = [[n, *(fmt_score(v, 2) for v in vals)] for n, vals in PUBLISHED.items()] if published else []
    for r in records:
        cats = r["scores"]["categories"]
        cells = [fmt_score(cats[c]["score"], digits) + ("*" if cats[c]["missing"] else "") for c in HEADERS]
        rows.append([str(r["name"]), *cells, fmt_score(r["scores"]["overall"], digits)])
    return rows


def markdown_table(records: Sequence[Mapping[str, Any]], digits: int = 2, published: bool = True) -> str:
    text = markdown_lines(header(), table_rows(records, digits, published))
    if any(r["scores"]["missing_images"] for r in records):
        text += "\n\\* images missing in this category: no Overall, not comparable with published numbers.\n"
    return text


def latex_table(records: Sequence[Mapping[str, Any]], digits: int = 2, published: bool = True) -> str:
    return latex_lines(header(), table_rows(records, digits, published))


def bar_chart(records: Sequence[Mapping[str, Any]], path, published: bool = True, title: str = "WISE"):
    from eval.plots import score_bars

    series = list(PUBLISHED.items()) if published else []
    series += [(str(r["name"]), [r["scores"]["categories"][c]["score"] for c in HEADERS] + [r["scores"]["overall"]])
               for r in records]
    return score_bars(series, [*HEADERS.values(), "Overall"], path, title, ylabel="WiScore")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m eval.wise.report SUMMARY ... [--latex] [--digits 2] [--no-published] [--plot out.png]``."""
    table_cli(argv, benchmark="WISE", script="scripts/eval_wise.py", digits=2, load=load,
              markdown_table=markdown_table, latex_table=latex_table, bar_chart=bar_chart)


if __name__ == "__main__":
    main()
