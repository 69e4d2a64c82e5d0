"""GenEval aggregation, summary documents, Markdown / LaTeX tables and the bar chart."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from eval.geneval.prompts import TASKS, parse_metadata
from eval.geneval.report import SCHEMA, latex_table, load_summary, markdown_table, summary_record, write_summary
from eval.geneval.score import MissingImagesWarning, expected_counts, summarize
from eval.plots import geneval_task_bars


def records_for(task: str, n: int, n_correct: int, prompt_of=lambda i: i // 4):
    return [
        {"tag": task, "correct": i < n_correct, "metadata": json.dumps({"tag": task, "p": prompt_of(i)})}
        for i in range(n)
    ]


def full_run():
    # Hand-made: per-task accuracies 1, 0.5, 0.25, 0.75, 0, 0.5 over 8 images (2 prompts) each.
    hits = dict(zip(TASKS, [8, 4, 2, 6, 0, 4]))
    return [r for t in TASKS for r in records_for(t, 8, hits[t])]


def test_overall_is_mean_of_task_image_accuracies():
    s = summarize(full_run(), {t: 8 for t in TASKS})
    assert s.task_accuracies() == dict(zip(TASKS, [1.0, 0.5, 0.25, 0.75, 0.0, 0.5]))
    assert s.overall == pytest.approx(3.0 / 6)
    assert s.total_images == 48 and s.total_prompts == 12 and s.missing_images == 0
    assert s.correct_images == pytest.approx(24 / 48)
    # prompt 0 of each task has images 0-3; any-correct: single 2/2, two 1/2, count 1/2, colors 2/2, pos 0, attr 1/2
    assert s.correct_prompts == pytest.approx(7 / 12)


def test_task_weights_differ_with_task_size():
    # Per-image inside a task, per-task across tasks: 1 of 2 correct and 3 of 3 correct -> (0.5 + 1) / 2, not 4/5.
    recs = records_for("single_object", 2, 1) + records_for("two_object", 3, 3)
    assert summarize(recs).overall == pytest.approx(0.75)


def test_missing_images_warn_and_keep_denominators_visible():
    recs = [r for r in full_run() if not (r["tag"] == "position" and not r["correct"])][:-1]
    expected = {t: 8 for t in TASKS}
    with pytest.warns(MissingImagesWarning, match="9 of 48 expected images"):
        s = summarize(recs, expected)
    pos = {t.task: t for t in s.tasks}["position"]
    assert (pos.evaluated, pos.expected) == (0, 8)
    assert s.overall is None  # a task with no image: no overall mean over fewer tasks
    assert s.expected_images == 48 and s.missing_images == 9 and s.total_images == 39
    attr = {t.task: t for t in s.tasks}["color_attr"]
    assert (attr.evaluated, attr.expected, attr.accuracy) == (7, 8, 4 / 7)


def test_expected_counts_of_official_sizes():
    specs = []
    for tag, n in zip(TASKS, [80, 99, 80, 94, 100, 100]):
        raw = {"tag": tag, "include": [{"class": "cat", "count": 1}], "prompt": "p"}
        specs += [parse_metadata(raw, ["cat"])] * n
    assert expected_counts(specs) == dict(zip(TASKS, [320, 396, 320, 376, 400, 400]))


def test_summary_round_trip_and_tables(tmp_path):
    a = summary_record(summarize(full_run(), {t: 8 for t in TASKS}), "show-o", config={"x": 1}, seeds=[0, 1])
    with pytest.warns(MissingImagesWarning):
        b = summary_record(summarize(full_run()[:-1], {t: 8 for t in TASKS}), "show-o+parm_x")
    assert a["schema"] == SCHEMA and a["version"] == 1 and a["config"] == {"x": 1} and a["seeds"] == [0, 1]
    assert "git" in a
    write_summary(tmp_path / "a.json", a)
    write_summary(tmp_path / "b.json", b)
    loaded = [load_summary(tmp_path / "a.json"), load_summary(tmp_path / "b.json")]
    md = markdown_table(loaded)
    lines = md.splitlines()
    assert lines[0] == "| Method | Single | Two | Count | Colors | Pos | ColorAttr | Overall |"
    assert lines[2] == "| show-o | 1.00 | 0.50 | 0.25 | 0.75 | 0.00 | 0.50 | 0.50 |"
    assert lines[3] == "| show-o+parm_x | 1.00 | 0.50 | 0.25 | 0.75 | 0.00 | 0.57 | 0.51* |"
    assert "not comparable" in md
    tex = latex_table(loaded).splitlines()
    assert tex[0] == r"\begin{tabular}{lccccccc}"
    assert tex[4] == r"show-o & 1.00 & 0.50 & 0.25 & 0.75 & 0.00 & 0.50 & 0.50 \\"
    assert tex[5].startswith(r"show-o+parm\_x & ")
    assert tex[-1] == r"\end{tabular}"


def test_load_summary_rejects_other_schema(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps({"schema": "other", "version": 1}))
    with pytest.raises(ValueError, match="s.json: field 'schema'"):
        load_summary(tmp_path / "s.json")


def test_bar_chart_png(tmp_path):
    rec = summary_record(summarize(full_run(), {t: 8 for t in TASKS}), "run")
    path = geneval_task_bars([rec, rec], tmp_path / "plots" / "bars.png")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 100
    assert [p.name for p in (tmp_path / "plots").iterdir()] == ["bars.png"]


def test_report_cli_renders_rows_from_files(tmp_path, capsys):
    from eval.geneval.report import main

    for name in ("run-a", "run-b"):
        write_summary(tmp_path / f"{name}.json", summary_record(summarize(full_run()), name))
    main([str(tmp_path / "run-a.json"), str(tmp_path / "run-b.json"), "--latex", "--plot", str(tmp_path / "p.png")])
    out = capsys.readouterr().out
    assert r"run-a & 1.00 & 0.50 & 0.25 & 0.75 & 0.00 & 0.50 & 0.50 \\" in out and "run-b &" in out
    assert (tmp_path / "p.png").exists()
