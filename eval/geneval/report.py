"""GenEval summaries on disk and tables rendered from them (lm-evaluation-harness style: schema + version).

A summary JSON carries the scores, the resolved config, seeds and the git hash that produced them, so a table can
be rebuilt from saved runs alone: one row per summary file.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Mapping, Sequence

from common.io import atomic_write_text
from eval.geneval.prompts import TASKS
from eval.geneval.score import Summary

SCHEMA = "imagecot.geneval.summary"
VERSION = 1
TASK_HEADERS = {
    "single_object": "Single",
    "two_object": "Two",
    "counting": "Count",
    "colors": "Colors",
    "position": "Pos",
    "color_attr": "ColorAttr",
}


def git_hash(path: str | os.PathLike | None = None) -> str | None:
    """HEAD commit of the repository holding ``path`` (default: this package), ``+dirty`` if modified, else None."""
    cwd = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True)
        status = subprocess.run(["git", "status", "--porcelain"], cwd=cwd, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def summary_record(
    summary: Summary,
    name: str,
    config: Mapping[str, Any] | None = None,
    seeds: Sequence[int] | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The versioned summary document of one run (``name`` is its row label in tables)."""
    return {
        "schema": SCHEMA,
        "version": VERSION,
        "name": name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git": git_hash(),
        "config": dict(config) if config is not None else None,
        "seeds": seeds if isinstance(seeds, Mapping) or seeds is None else list(seeds),
        "scores": summary.to_dict(),
    }


def write_summary(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=False) + "\n")


def load_summary(path: str | os.PathLike) -> dict[str, Any]:
    """Read a summary JSON; errors name the file and the offending field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"summary not found: {path}")
    record = json.loads(path.read_text(encoding="utf-8"))
    if record.get("schema") != SCHEMA:
        raise ValueError(f"{path}: field 'schema' = {record.get('schema')!r}, expected {SCHEMA!r}")
    if record.get("version") != VERSION:
        raise ValueError(f"{path}: field 'version' = {record.get('version')!r}, this code reads version {VERSION}")
    return record


def table_header(images: bool = False) -> list[str]:
    """Column names of :func:`table_row` (``images``: a last column with the number of evaluated images)."""
    return ["Method", *TASK_HEADERS.values(), "Overall", *(["Images"] if images else [])]


def table_row(record: Mapping[str, Any], digits: int = 2, scale: float = 1.0, images: bool = False) -> list[str]:
    """Name, per-task accuracies, overall (``*``: images are missing, not comparable) [, images], accuracies
    multiplied by ``scale`` (100: percent)."""
    scores = record["scores"]
    tasks = scores["tasks"]

    def fmt(value):
        return "–" if value is None else f"{scale * value:.{digits}f}"

    cells = [fmt(tasks.get(t, {}).get("accuracy")) for t in TASKS]
    overall = fmt(scores["overall"])
    if scores.get("missing_images"):
        overall += "*"
    extra = [f"{scores['total_images']}"] if images else []
    return [str(record["name"]), *cells, overall, *extra]


def markdown_lines(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table: ``header``, then ``rows`` (first column left-aligned, the others right-aligned)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def markdown_table(records: Sequence[Mapping[str, Any]], digits: int = 2) -> str:
    """Markdown table, one row per summary; ``*`` marks runs with missing images (not comparable)."""
    text = markdown_lines(table_header(), [table_row(r, digits) for r in records])
    if any(r["scores"].get("missing_images") for r in records):
        text += "\n\\* some expected images were not evaluated; not comparable with published numbers.\n"
    return text


def _latex_escape(text: str) -> str:
    for char, repl in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
        text = text.replace(char, repl)
    return text


def latex_table(records: Sequence[Mapping[str, Any]], digits: int = 2) -> str:
    """A booktabs ``tabular`` with the same rows as ``markdown_table``."""
    header = table_header()
    lines = [
        r"\begin{tabular}{l" + "c" * (len(header) - 1) + "}",
        r"\toprule",
        " & ".join(header) + r" \\",
        r"\midrule",
    ]
    for r in records:
        cells = table_row(r, digits)
        lines.append(" & ".join([_latex_escape(cells[0]), *(c.replace("–", "--") for c in cells[1:])]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


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
        from eval.plots import geneval_task_bars

        geneval_task_bars(records, args.plot)


if __name__ == "__main__":
    main()
