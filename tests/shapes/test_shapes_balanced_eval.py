"""The balanced eval of the shapes quickstart (``images_per_task``): each task's lines repeated until it has enough
images; repeats are new prompt indices (new seeds) of the same prompt."""
from __future__ import annotations

from collections import Counter

import pytest

from eval.shapes.suite import repeat_per_task


def lines(**per_tag: int) -> list[dict]:
    return [{"tag": tag, "prompt": f"{tag} {i}"} for tag, n in per_tag.items() for i in range(n)]


def test_every_task_gets_at_least_the_images_asked_for():
    out = repeat_per_task(lines(a=1, b=2, c=25), 100, 4)
    images = {tag: 4 * n for tag, n in Counter(line["tag"] for line in out).items()}
    assert images == {"a": 100, "b": 104, "c": 100}  # ceil(100 / (lines x 4)) repeats of each line
    # a line's repeats follow it, every line of a task repeated as often
    assert [line["prompt"] for line in out[:27]] == ["a 0"] * 25 + ["b 0"] * 2
    assert Counter(line["prompt"] for line in out if line["tag"] == "b") == {"b 0": 13, "b 1": 13}


def test_none_keeps_the_lines_and_bad_counts_are_refused():
    src = lines(a=2, b=1)
    assert repeat_per_task(src, None, 4) == src
    with pytest.raises(ValueError, match="images_per_task"):
        repeat_per_task(src, 0, 4)


def test_write_prompt_sets_repeats_the_eval_split_only(tmp_path):
    from eval.shapes.data import build_suite
    from eval.shapes.rows import write_prompt_sets
    from eval.geneval.prompts import load_prompts, load_class_names

    suite = build_suite("shapes32")
    plain = write_prompt_sets(tmp_path / "plain", suite, prompts_per_task=2)
    balanced = write_prompt_sets(tmp_path / "balanced", suite, prompts_per_task=2, images_per_task=16,
                                 images_per_prompt=4)
    names = load_class_names(plain["class_names"])
    a, b = load_prompts(plain["metadata"], names), load_prompts(balanced["metadata"], names)
    assert sorted({s.prompt for s in b}) == sorted({s.prompt for s in a})
    assert {tag: 4 * n for tag, n in Counter(s.tag for s in b).items()} == {tag: 16 for tag in {s.tag for s in a}}
    assert [s.index for s in b] == list(range(len(b)))  # a repeat is a new index: new per-image seeds
    assert plain["train_prompts"].read_text() == balanced["train_prompts"].read_text()
