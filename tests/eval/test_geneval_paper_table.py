"""``python -m eval.geneval.report`` over row run directories: the paper's GenEval table with ours beside it."""
from __future__ import annotations

import re

import pytest

from eval.geneval.prompts import TASKS
from eval.geneval.report import PUBLISHED, find_summary, main, paper_rows, summary_record, write_summary
from eval.geneval.score import summarize
from tests.helpers import require_shared


def _record(name, correct):
    """A summary with ``correct[t]`` of 2 images right for task t."""
    records = [{"tag": t, "correct": k < correct.get(t, 0), "metadata": f"{t} prompt"} for t in TASKS for k in range(2)]
    return summary_record(summarize(records, {t: 2 for t in TASKS}), name)


def test_published_numbers_are_the_references(tmp_path):
    """Every published row equals the reference's table (imagegen_cot.md §10, read from the shared folder)."""
    text = require_shared("reference", "imagegen_cot.md").read_text()
    labels = {"baseline": "Show-o baseline", "orm_zeroshot": "ORM zero-shot", "orm_finetuned": "ORM fine-tuned",
              "prm_zeroshot": "PRM zero-shot", "prm_finetuned": "PRM fine-tuned", "dpo": "DPO (initial)",
              "dpo_iterative": "Iterative DPO", "parm": "+ **PARM**", "parmpp": "+ PARM++ (with reflection)",
              "dpo_parm_guided": "It. DPO w/ **PARM guidance**", "integrated": "PARM + It. DPO"}
    assert [row.key for row in PUBLISHED] and set(labels) == {row.key for row in PUBLISHED}
    for row in PUBLISHED:
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| {labels[row.key]} |"))
        numbers = [float(x) for x in re.findall(r"\d\.\d\d", line)]
        assert tuple(numbers) == row.scores, row.key


def test_paper_rows_put_ours_under_the_published_row():
    ours = [_record("parm", {"single_object": 2}), _record("my_ablation", {}), _record("baseline", {"colors": 1})]
    rows = paper_rows(ours)
    labels = [r[0] for r in rows]
    assert labels[:2] == ["Show-o (paper, T1)", "Show-o (ours)"]
    assert labels[labels.index("+ PARM (paper, T3)") + 1] == "+ PARM (ours)"
    assert labels[-1] == "my_ablation" and len(rows) == len(PUBLISHED) + 3
    parm = rows[labels.index("+ PARM (ours)")]
    assert parm[1] == "1.00" and parm[4] == "0.00" and parm[-1] == "0.17"  # 1 of 6 tasks right
    assert [r[0] for r in paper_rows(ours, published=False)] == ["Show-o (ours)", "+ PARM (ours)", "my_ablation"]


def test_cli_reads_row_run_directories_and_prints_markdown_and_latex(tmp_path, capsys):
    write_summary(tmp_path / "runs" / "parm" / "eval" / "summary.json", _record("parm", {"counting": 2}))
    write_summary(tmp_path / "solo.json", _record("dpo", {}))
    assert find_summary(tmp_path / "runs" / "parm") == tmp_path / "runs" / "parm" / "eval" / "summary.json"
    main([str(tmp_path / "runs" / "parm"), str(tmp_path / "solo.json")])
    out = capsys.readouterr().out
    assert "| + PARM (paper, T3) | 0.99 | 0.77 | 0.68 | 0.86 | 0.29 | 0.45 | 0.67 |" in out
    assert "| + PARM (ours) | 0.00 | 0.00 | 1.00 | 0.00 | 0.00 | 0.00 | 0.17 |" in out and "| + DPO (ours) |" in out
    main([str(tmp_path / "runs" / "parm"), "--latex"])
    assert r"+ PARM (ours) & 0.00 & 0.00 & 1.00 & 0.00 & 0.00 & 0.00 & 0.17 \\" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="no GenEval summary"):
        find_summary(tmp_path / "nowhere")
