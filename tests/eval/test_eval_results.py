"""The shared results store and loop (eval.results): content-hash resume, sharding, merge, summary document."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from eval.results import (DIGESTS, RESULTS, Item, ResultStore, file_digest, latex_lines, load_summary,
                          markdown_lines, run_items, summary_document, write_summary)
from tests.helpers import Killed


class Rank:
    def __init__(self, rank=0, n=1):
        self.num_processes, self.process_index = n, rank
        self.is_main_process = self.is_local_main_process = rank == 0

    def wait_for_everyone(self):
        pass


def make_items(root, n=5):
    items = []
    for i in range(n):
        path = root / f"{i}.png"
        Image.new("RGB", (4, 4), (10 * i, 0, 0)).save(path)
        items.append(Item(path.name, path, i))
    return items


class RedScorer:
    """Record = the image's red value; counts what it scored."""

    def __init__(self):
        self.seen = []

    def __call__(self, batch):
        self.seen += [item.key for item in batch]
        return [{"key": item.key, "red": Image.open(item.path).getpixel((0, 0))[0]} for item in batch]


def test_replaced_image_is_scored_again(tmp_path):
    items = make_items(tmp_path)
    out = tmp_path / "out"
    first = RedScorer()
    records = run_items(items, first, ResultStore(out), Rank(), batch_size=2)
    assert [r["red"] for r in records] == [0, 10, 20, 30, 40] and len(first.seen) == 5
    digests = json.loads((out / DIGESTS).read_text())["digests"]
    assert digests["3.png"] == file_digest(items[3].path)
    # Same path, new content: only that image is scored again, and its new record replaces the old one.
    Image.new("RGB", (4, 4), (99, 0, 0)).save(items[3].path)
    second = RedScorer()
    records = run_items(items, second, ResultStore(out), Rank(), batch_size=2)
    assert second.seen == ["3.png"]
    assert [r["red"] for r in records] == [0, 10, 20, 99, 40]
    assert json.loads((out / DIGESTS).read_text())["digests"]["3.png"] == file_digest(items[3].path)
    assert not list(out.glob("results.part*"))


def test_interrupted_sharded_run_merges_to_the_single_process_result(tmp_path):
    items = make_items(tmp_path, 7)
    run_items(items, RedScorer(), ResultStore(tmp_path / "single"), Rank(), batch_size=3)

    def kill(written):
        raise Killed()

    out = tmp_path / "sharded"
    with pytest.raises(Killed):  # rank 1 dies after its first batch
        run_items(items, RedScorer(), ResultStore(out), Rank(1, 2), batch_size=2, after_batch=kill)
    assert len(ResultStore(out).keys()) == 2
    rank1 = RedScorer()
    run_items(items, rank1, ResultStore(out), Rank(1, 2), batch_size=2)
    assert rank1.seen == ["5.png"]  # rank 1 owns 1, 3, 5: only 5 was left
    run_items(items, RedScorer(), ResultStore(out), Rank(0, 2), batch_size=2)
    assert (out / RESULTS).read_bytes() == (tmp_path / "single" / RESULTS).read_bytes()
    assert (out / DIGESTS).read_bytes() == (tmp_path / "single" / DIGESTS).read_bytes()


def test_none_records_are_not_stored_and_retried(tmp_path):
    items = make_items(tmp_path, 3)
    out = tmp_path / "out"
    records = run_items(items, lambda b: [None if i.key == "1.png" else {"key": i.key} for i in b],
                        ResultStore(out), Rank())
    assert [r["key"] for r in records] == ["0.png", "2.png"]
    again = RedScorer()
    run_items(items, again, ResultStore(out), Rank())
    assert again.seen == ["1.png"]


def test_summary_document_and_tables(tmp_path):
    doc = summary_document("imagecot.test.summary", 2, "run", {"x": 1.0}, config={"a": 1}, seeds=[0, 1])
    assert doc["schema"] == "imagecot.test.summary" and doc["version"] == 2 and doc["seeds"] == [0, 1]
    env = doc["environment"]
    assert env["packages"]["torch"] and env["torch_threads"] >= 1 and env["device"] and env["cpu"]
    write_summary(tmp_path / "s.json", doc)
    assert load_summary(tmp_path / "s.json", "imagecot.test.summary", 2)["scores"] == {"x": 1.0}
    with pytest.raises(ValueError, match="s.json: field 'version' = 2"):
        load_summary(tmp_path / "s.json", "imagecot.test.summary", 1)
    assert markdown_lines(["M", "a"], [["r", "0.5"]]) == "| M | a |\n|---|---:|\n| r | 0.5 |\n"
    assert latex_lines(["M", "a"], [["r_1", "–"]]).splitlines()[4] == r"r\_1 & -- \\"
