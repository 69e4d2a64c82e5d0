"""T2I-CompBench aggregation, the paper's table with our rows, and the report CLI."""
from __future__ import annotations

import pytest

from eval.results import write_summary
from eval.t2i_compbench.report import MissingImagesWarning, main, markdown_table, summarize, summary_record

V1 = ["color", "shape", "texture", "spatial", "non_spatial", "complex"]


def records(category, scores):
    return [{"category": category, "score": s} for s in scores]


def test_category_means_and_v1_mean():
    recs = [r for i, c in enumerate(V1) for r in records(c, [0.1 * i, 0.1 * i + 0.2])]  # means 0.1, 0.2, ..., 0.6
    s = summarize(recs + records("numeracy", [1.0]), {c: 2 for c in V1})
    assert [s["categories"][c]["score"] for c in V1] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert s["mean_v1"] == pytest.approx(0.35)  # plain mean of the six, numeracy (++) not in it
    assert s["categories"]["numeracy"]["score"] == 1.0 and s["missing_images"] == 0


def test_missing_category_gives_no_mean_and_stars():
    with pytest.warns(MissingImagesWarning, match="color"):
        s = summarize(records("color", [0.5]), {"color": 2, "shape": 2})
    assert s["mean_v1"] is None and s["categories"]["shape"]["score"] is None
    table = markdown_table([summary_record(s, "ours")])
    assert "| ours | 0.5000* | –* | – | – | – | – | – |" in table and "not comparable" in table


def test_cli_prints_the_paper_rows_then_ours(tmp_path, capsys):
    recs = [r for c in V1 for r in records(c, [0.5])]
    write_summary(tmp_path / "s.json", summary_record(summarize(recs), "ours"))
    main([str(tmp_path / "s.json"), "--plot", str(tmp_path / "bars.png")])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| Model | Color | Shape | Texture | Spatial | Non-spatial | Complex | Mean |"
    assert lines[2] == "| Janus-Pro-7B (paper) | 0.6359 | 0.3528 | 0.4936 | 0.2061 | 0.3085 | 0.3559 | 0.3921 |"
    assert lines[3] == "| T2I-R1 (paper) | 0.8130 | 0.5852 | 0.7243 | 0.3378 | 0.3090 | 0.3993 | 0.5281 |"
    assert lines[-1] == "| ours | 0.5000 | 0.5000 | 0.5000 | 0.5000 | 0.5000 | 0.5000 | 0.5000 |"
    assert (tmp_path / "bars.png").stat().st_size > 0
    main(["--latex", "--no-published", str(tmp_path / "s.json")])
    assert r"ours & 0.5000 &" in capsys.readouterr().out
