"""The WISE evaluation loop: ``<image_dir>/<prompt_id>.png`` -> judge -> parsed scores -> ``results.jsonl``.

Per image (reference §7.4): ask the judge, parse the three scores; an answer that does not parse (or a failed call)
is asked again up to ``attempts`` times. Then ``unparsable="skip"`` (official) writes no record — the image is
missing from the summary and a resumed run asks again — while ``"zero"`` records scores of 0 flagged
``parsed: false`` (a policy for greedy local judges, whose retries repeat the same answer). Resumable by image
content and sharded over processes through :func:`eval.results.run_items`.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from eval.geneval.layout import load_image
from eval.results import Item, ResultStore, default_state, run_items
from eval.wise.judges import JudgeReply, JudgeRequest, WiseJudge
from eval.wise.prompts import WisePrompt, image_path
from eval.wise.rubric import parse_scores, wiscore

__all__ = ["POLICIES", "evaluate_wise", "list_items", "make_record"]

POLICIES = ("skip", "zero")


def list_items(image_dir: str | os.PathLike, prompts: Sequence[WisePrompt]) -> list[Item]:
    """Items of the prompts whose image exists (missing images are reported by the summary, not an error)."""
    items = []
    for p in prompts:
        path = image_path(image_dir, p.prompt_id)
        if path.is_file():
            items.append(Item(path.name, path, p))
    if not items:
        raise FileNotFoundError(f"no WISE images (<prompt_id>.png) in {image_dir}")
    return items


def make_record(p: WisePrompt, reply: JudgeReply, attempts: int, scores: dict[str, float] | None) -> dict[str, Any]:
    parsed = scores is not None
    scores = scores or {"consistency": 0.0, "realism": 0.0, "aesthetic_quality": 0.0}
    return {"key": f"{p.prompt_id}.png", "prompt_id": p.prompt_id, "category": p.category,
            "subcategory": p.subcategory, "prompt": p.prompt, **scores, "wiscore": wiscore(**scores),
            "parsed": parsed, "attempts": attempts, "judge_output": reply.text, "error": reply.error}


def score_batch_fn(judge: WiseJudge, attempts: int = 3, unparsable: str = "skip", retry_delay_s: float = 0.0,
                   sleep: Callable[[float], None] = time.sleep) -> Callable[[Sequence[Item]], list[dict | None]]:
    """``items -> records or None``: one judge call per image, retried while the answer does not parse."""
    if unparsable not in POLICIES:
        raise ValueError(f"unparsable policy must be one of {POLICIES}, got {unparsable!r}")
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")

    def score(batch: Sequence[Item]) -> list[dict[str, Any] | None]:
        requests = [JudgeRequest(load_image(item.path), Path(item.path).read_bytes(), item.data.prompt,
                                 item.data.explanation) for item in batch]
        replies = judge.judge(requests)
        if len(replies) != len(requests):
            raise RuntimeError(f"judge returned {len(replies)} replies for {len(requests)} requests")
        records: list[dict[str, Any] | None] = []
        for item, request, reply in zip(batch, requests, replies):
            scores, tries = parse_scores(reply.text), 1
            while scores is None and tries < attempts:
                sleep(retry_delay_s)
                reply = judge.judge([request])[0]
                scores, tries = parse_scores(reply.text), tries + 1
            if scores is None and unparsable == "skip":
                records.append(None)
            else:
                records.append(make_record(item.data, reply, tries, scores))
        return records

    return score


def evaluate_wise(
    image_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    judge: WiseJudge,
    prompts: Sequence[WisePrompt],
    attempts: int = 3,
    unparsable: str = "skip",
    retry_delay_s: float = 0.0,
    batch_size: int = 8,
    state=None,
    after_batch: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Judge every ``<prompt_id>.png`` of ``image_dir`` into ``out_dir``; returns merged records on main."""
    state = default_state() if state is None else state
    items = list_items(image_dir, prompts)
    score = score_batch_fn(judge, attempts, unparsable, retry_delay_s)
    return run_items(items, score, ResultStore(out_dir), state, batch_size, desc="wise", after_batch=after_batch)
