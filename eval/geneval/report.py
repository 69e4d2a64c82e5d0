"""GenEval summaries on disk and tables rendered from them (lm-evaluation-harness style: schema + version).

A summary JSON (the shared document of :mod:`eval.results`) carries the scores, the resolved config, seeds, the git
hash and the environment that produced them, so a table can be rebuilt from saved runs alone: one row per file.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from eval.geneval.prompts import TASK_HEADERS, TASKS
from eval.geneval.score import Summary
from eval.plots import geneval_task_bars
from eval.results import fmt_score, git_hash, latex_lines, markdown_lines, summary_document, write_summary
from eval.results import load_summary as _load_summary

__all__ = ["SCHEMA", "TASK_HEADERS", "VERSION", "git_hash", "latex_table", "load_summary", "markdown_lines",
           "markdown_table", "summary_record", "table_header", "table_row", "write_summary"]

SCHEMA = "imagecot.geneval.summary"
VERSION = 1


def summary_record(
    summary: Summary,
    name: str,
    config: Mapping[str, Any] | None = None,
    seeds: Sequence[int] | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The versioned summary document of one run (``name`` is its row label in tables; :mod:`eval.results`)."""
    return summary_document(SCHEMA, VERSION, name, summary.to_dict(), config, seeds)


def load_summary(path) -> dict[str, Any]:
    """Read a GenEval summary JSON; errors name the file and the offending field."""
    return _load_summary(path, SCHEMA, VERSION)


def table_header(images: bool = False) -> list[str]:
    """Column names of :func:`table_row` (``images``: a last column with the number of evaluated images)."""
    return ["Method", *TASK_HEADERS.values(), "Overall", *(["Images"] if images else [])]


def table_row(record: Mapping[str, Any], digits: int = 2, scale: float = 1.0, images: bool = False) -> list[str]:
    """Name, per-task accuracies, overall (``*``: images are missing, not comparable) [, images], accuracies
    multiplied by ``scale`` (100: percent)."""
    scores = record["scores"]
    tasks = scores["tasks"]

    cells = [fmt_score(tasks.get(t, {}).get("accuracy"), digits, scale) for t in TASKS]
    overall = fmt_score(scores["overall"], digits, scale)
    if scores.get("missing_images"):
        overall += "*"
    extra = [f"{scores['total_images']}"] if images else []
    return [str(record["name"]), *cells, overall, *extra]


def markdown_table(records: Sequence[Mapping[str, Any]], digits: int = 2) -> str:
    """Markdown table, one row per summary; ``*`` marks runs with missing images (not comparable)."""
    text = markdown_lines(table_header(), [table_row(r, digits) for r in records])
    if any(r["scores"].get("missing_images") for r in records):
        text += "\n\\* some expected images were not evaluated; not comparable with published numbers.\n"
    return text


def latex_table(records: Sequence[Mapping[str, Any]], digits: int = 2) -> str:
    """A booktabs ``tabular`` with the same rows as ``markdown_table``."""
    return latex_lines(table_header(), [table_row(r, digits) for r in records])


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m eval.geneval.report RUN/summary.json ... [--latex] [--digits 2] [--plot out.png]``."""
    import argparse

    parser = argparse.ArgumentParser(description="Render GenEval summary JSONs as one table (one row per file).")
    parser.add_argument("summaries", nargs="+", help="summary.json files written by scripts/eval_geneval.py")
    parser.add_argument("--latex", action="store_true", help="LaTeX instead of Markdown")
    parser.add_argument("--digits", type=int, default=2)
    parser.add_argument("--plot", help="also write a per-task bar chart PNG here")
    args = parser.parse_args(argv)
    records = [load_summary(p) for p in args.summaries]
    print((latex_table if args.latex else markdown_table)(records, args.digits), end="")
    if args.plot:

        geneval_task_bars(records, args.plot)


if __name__ == "__main__":
    main()
