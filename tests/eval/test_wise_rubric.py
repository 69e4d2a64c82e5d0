"""WISE prompts, rubric, answer parser, WiScore and aggregation on hand-made cases (t2i_compbench_wise.md §7)."""
from __future__ import annotations

import pytest

from eval.wise.prompts import CATEGORIES, WEIGHTS, category_of, load_prompts
from eval.wise.report import MissingImagesWarning, markdown_table, summarize, summary_record
from eval.wise.rubric import SYSTEM_PROMPT, parse_scores, render_rubric, wiscore
from tests.helpers import require_shared


def test_parser_official_formats():
    assert parse_scores("Consistency: 2\nRealism: 1\nAesthetic Quality: 0") == {
        "consistency": 2.0, "realism": 1.0, "aesthetic_quality": 0.0}
    assert parse_scores("**Consistency**: 1\n**realism** 2\nAESTHETIC QUALITY:1") == {
        "consistency": 1.0, "realism": 2.0, "aesthetic_quality": 1.0}
    # nothing matches -> the first three lines holding only a digit 0-2, in rubric order
    assert parse_scores("Scores:\n1\n 2 \nthe end\n0\n2") == {"consistency": 1.0, "realism": 2.0,
                                                             "aesthetic_quality": 0.0}
    assert parse_scores("Consistency: 2\nRealism: 1") is None  # fewer than three keys
    assert parse_scores("Consistency：2\nRealism：1\nAesthetic Quality：1") is None  # only an ASCII colon
    assert parse_scores(None) is None


def test_wiscore_from_known_rubric_scores():
    assert wiscore(2, 1, 0) == pytest.approx((1.4 + 0.2) / 2)  # 0.8
    assert wiscore(2, 2, 2) == pytest.approx(1.0) and wiscore(0, 0, 0) == 0.0
    assert wiscore(1, 0, 2) == pytest.approx((0.7 + 0.2) / 2)


def test_rubric_fills_prompt_and_explanation():
    text = render_rubric("Traditional food of the Mid-Autumn Festival", "mooncakes")
    assert text.startswith("Please evaluate strictly and return ONLY the three scores as requested.")
    assert 'PROMPT: "Traditional food of the Mid-Autumn Festival"\nEXPLANATION: "mooncakes"' in text
    assert text.endswith("follow the template format when providing your results.")
    assert "Vincennes" in SYSTEM_PROMPT


def test_real_prompt_files():
    prompts = load_prompts(require_shared("wise"))
    assert [p.prompt_id for p in prompts] == sorted({p.prompt_id for p in prompts})
    assert {p.category for p in prompts} == set(CATEGORIES)
    assert all(p.prompt and p.explanation for p in prompts)
    assert category_of(400) == "cultural" and category_of(401) == "time" and category_of(568) == "space"
    with pytest.raises(ValueError, match="1001"):
        category_of(1001)


def record(category, c, r, a):
    return {"category": category, "consistency": c, "realism": r, "aesthetic_quality": a, "wiscore": wiscore(c, r, a)}


def test_overall_weights_equal_the_mean_over_all_images():
    # Official category sizes; cultural images score 1.0, time 0.5 (C=1,R=1,A=1), every other category 0.
    sizes = {c: hi - lo + 1 for c, (lo, hi) in CATEGORIES.items()}
    recs = []
    for c, n in sizes.items():
        recs += [record(c, 2, 2, 2) if c == "cultural" else record(c, 1, 1, 1) if c == "time" else record(c, 0, 0, 0)
                 for _ in range(n)]
    s = summarize(recs)
    # float64 sums of 0.7·2/2 + 0.2·2/2 + 0.1·2/2 are not exactly 1: compare to 1e-12
    assert s["categories"]["cultural"]["score"] == pytest.approx(1.0, abs=1e-12)
    assert s["categories"]["time"]["score"] == pytest.approx(0.5, abs=1e-12)
    assert s["overall"] == pytest.approx(0.4 * 1.0 + 0.167 * 0.5)
    assert s["overall"] == pytest.approx(sum(r["wiscore"] for r in recs) / 1000)  # weights = prompt shares
    assert sum(WEIGHTS.values()) == pytest.approx(1.0)


def test_missing_images_give_no_overall():
    recs = [record("cultural", 2, 1, 0), record("cultural", 0, 0, 0), {**record("space", 0, 0, 0), "parsed": False}]
    with pytest.warns(MissingImagesWarning, match="no Overall"):
        s = summarize(recs, expected={"cultural": 3, "space": 1})
    assert s["overall"] is None and s["missing_images"] == 1 and s["unparsed"] == 1
    assert s["categories"]["cultural"]["score"] == pytest.approx(0.4) and s["categories"]["cultural"]["missing"] == 1
    assert s["overall_partial"] == pytest.approx((0.4 * 0.4 + 0.133 * 0.0) / 0.533)
    table = markdown_table([summary_record(s, "run")])
    assert "| T2I-R1 (paper) | 0.56 | 0.55 | 0.63 | 0.54 | 0.55 | 0.30 | 0.54 |" in table
    assert "| run | 0.40* | – | 0.00 | – | – | – | – |" in table


def test_report_cli_prints_the_paper_rows(tmp_path, capsys):
    from eval.results import write_summary
    from eval.wise.report import main

    sizes = {c: hi - lo + 1 for c, (lo, hi) in CATEGORIES.items()}
    recs = [record(c, 1, 1, 1) for c, n in sizes.items() for _ in range(n)]
    write_summary(tmp_path / "s.json", summary_record(summarize(recs), "ours"))
    main([str(tmp_path / "s.json")])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| Model | Cultural | Time | Space | Biology | Physics | Chemistry | Overall |"
    assert lines[2] == "| Janus-Pro-7B (paper) | 0.30 | 0.37 | 0.49 | 0.36 | 0.42 | 0.26 | 0.35 |"
    assert lines[-1] == "| ours | 0.50 | 0.50 | 0.50 | 0.50 | 0.50 | 0.50 | 0.50 |"
