"""GenEval summaries on disk and tables rendered from them (lm-evaluation-harness style: schema + version).

A summary JSON (the shared document of :mod:`eval.results`) carries the scores, the resolved config, seeds, the git
hash and the environment that produced them, so a table can be rebuilt from saved runs alone: one row per file.

The paper's table (:func:`paper_table`): every row of Table 1 (plus the PARM, PARM++ and integrated rows of Tables 3
and 5 that ``scripts/geneval/`` also reproduces) with the published numbers (:data:`PUBLISHED`, reference §10) and,
under each, ours from the run whose summary ``name`` is the row's script name::

    python -m eval.geneval.report runs/geneval/*            # run directories (RUN or RUN/eval) or summary.json files
    python -m eval.geneval.report runs/geneval/* --latex    # the same rows as a booktabs tabular
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

from eval.geneval.prompts import TASK_HEADERS, TASKS
from eval.geneval.score import Summary
from eval.plots import geneval_task_bars
from eval.results import fmt_score, git_hash, latex_lines, markdown_lines, summary_document, write_summary
from eval.results import load_summary as _load_summary

__all__ = ["PUBLISHED", "SCHEMA", "TASK_HEADERS", "VERSION", "PaperRow", "find_summary", "git_hash", "latex_table",
           "load_summary", "markdown_lines", "markdown_table", "paper_rows", "paper_table", "summary_record",
           "table_header", "table_row", "write_summary"]

SCHEMA = "imagecot.geneval.summary"
VERSION = 1


class PaperRow(NamedTuple):
    """A published GenEval row: the ``scripts/geneval/<key>.sh`` that reproduces it, its label and source, and the
    six task accuracies + overall in :data:`~eval.geneval.prompts.TASKS` order."""

    key: str
    label: str
    source: str
    scores: tuple[float, ...]


# Published numbers (imagegen_cot.md §10.1 Table 1; §10.3 Table 3; §10.4 Table 5), Show-o base, N = 20.
PUBLISHED: tuple[PaperRow, ...] = (
    PaperRow("baseline", "Show-o", "T1", (0.95, 0.52, 0.49, 0.82, 0.11, 0.28, 0.53)),
    PaperRow("orm_zeroshot", "+ Zs. ORM", "T1", (0.99, 0.63, 0.63, 0.84, 0.19, 0.39, 0.61)),
    PaperRow("orm_finetuned", "+ Ft. ORM", "T1", (0.99, 0.72, 0.65, 0.84, 0.25, 0.33, 0.63)),
    PaperRow("prm_zeroshot", "+ Zs. PRM", "T1", (0.98, 0.51, 0.54, 0.82, 0.11, 0.23, 0.53)),
    PaperRow("prm_finetuned", "+ Ft. PRM", "T1", (0.98, 0.55, 0.54, 0.83, 0.13, 0.29, 0.55)),
    PaperRow("dpo", "+ DPO", "T1", (0.96, 0.70, 0.50, 0.82, 0.30, 0.43, 0.62)),
    PaperRow("dpo_iterative", "+ It. DPO", "T1", (0.98, 0.72, 0.53, 0.84, 0.40, 0.46, 0.65)),
    PaperRow("parm", "+ PARM", "T3", (0.99, 0.77, 0.68, 0.86, 0.29, 0.45, 0.67)),
    PaperRow("parmpp", "+ PARM++ (reflection, self-corr. Show-o)", "T5", (0.99, 0.71, 0.69, 0.95, 0.36, 0.49, 0.70)),
    # ours has a gradient-carrying guidance term (bug #7): not the released method, labelled so in the table
    PaperRow("dpo_parm_guided", "It. DPO w/ PARM guidance", "T3", (0.97, 0.75, 0.60, 0.83, 0.54, 0.53, 0.69)),
    PaperRow("integrated", "PARM + It. DPO", "T3", (0.98, 0.83, 0.64, 0.84, 0.59, 0.62, 0.74)),
)


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


def find_summary(path) -> Path:
    """A summary JSON, or the one of a run directory: ``PATH/summary.json`` (an evaluation run) or
    ``PATH/eval/summary.json`` (a ``scripts/geneval/*.sh`` row run)."""
    path = Path(path)
    for candidate in (path, path / "summary.json", path / "eval" / "summary.json"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no GenEval summary at {path} (looked for {path}/summary.json and "
                            f"{path}/eval/summary.json)")


def paper_rows(records: Sequence[Mapping[str, Any]], digits: int = 2, published: bool = True) -> list[list[str]]:
    """The paper's layout: each published row (``(paper, T1)``) and, under it, ours (``(ours)``) from the record named
    like its script; records that match no published row follow in their order."""
    by_name = {str(r["name"]): r for r in records}
    rows = []
    for paper in PUBLISHED:
        if published:
            rows.append([f"{paper.label} (paper, {paper.source})", *(fmt_score(v, digits) for v in paper.scores)])
        if paper.key in by_name:
            rows.append([f"{paper.label} (ours)", *table_row(by_name.pop(paper.key), digits)[1:]])
    return rows + [table_row(r, digits) for r in records if str(r["name"]) in by_name]


def paper_table(records: Sequence[Mapping[str, Any]], digits: int = 2, latex: bool = False,
                published: bool = True) -> str:
    """:func:`paper_rows` as Markdown (with footnotes) or a booktabs LaTeX ``tabular``."""
    rows = paper_rows(records, digits, published)
    if latex:
        return latex_lines(table_header(), rows)
    notes = ["T1/T3/T5: the paper's Table 1, 3 or 5 (Show-o base, N = 20; imagegen_cot.md §10)."]
    if any(r["scores"].get("missing_images") for r in records):
        notes.append("\\* some expected images were not evaluated; not comparable with published numbers.")
    if any(str(r["name"]) == "dpo_parm_guided" for r in records):
        notes.append("Ours for \"w/ PARM guidance\" trains with a gradient-carrying guidance term (the released one "
                     "has none, bug #7): a different method.")
    return markdown_lines(table_header(), rows) + "\n" + "\n".join(notes) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m eval.geneval.report RUN ... [--latex] [--digits 2] [--no-published] [--plot out.png]``."""
    import argparse

    parser = argparse.ArgumentParser(description="The paper's GenEval table with our runs beside the published rows.")
    parser.add_argument("runs", nargs="+", help="row run directories (RUN or RUN/eval of scripts/geneval/*.sh) or "
                                                "summary.json files written by scripts/eval_geneval.py")
    parser.add_argument("--latex", action="store_true", help="LaTeX instead of Markdown")
    parser.add_argument("--digits", type=int, default=2)
    parser.add_argument("--no-published", action="store_true", help="leave out the paper's numbers")
    parser.add_argument("--plot", help="also write a per-task bar chart PNG here")
    args = parser.parse_args(argv)
    records = [load_summary(find_summary(p)) for p in args.runs]
    print(paper_table(records, args.digits, args.latex, not args.no_published), end="")
    if args.plot:
        geneval_task_bars(records, args.plot)


if __name__ == "__main__":
    main()
