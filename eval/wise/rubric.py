"""The WISE judge prompt, the answer parser and the WiScore (reference ``t2i_compbench_wise.md`` §7.2–§7.4).

The rubric (``rubric.txt``, the official legacy text of ``WISE_legacy/gpt_eval.py`` with the PROMPT / EXPLANATION
slots) asks for three 0–2 scores. WiScore = (0.7·Consistency + 0.2·Realism + 0.1·Aesthetic) / 2 ∈ [0, 1].
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

__all__ = ["SYSTEM_PROMPT", "parse_scores", "render_rubric", "wiscore"]

# The official system line (sic).
SYSTEM_PROMPT = ("You are a professional Vincennes image quality audit expert, please evaluate the image quality "
                 "strictly according to the protocol.")
KEYS = ("consistency", "realism", "aesthetic_quality")
_SCORE = re.compile(r"\*{0,2}(Consistency|Realism|Aesthetic Quality)\*{0,2}\s*:?\s*(\d)", re.IGNORECASE)
_DIGIT_LINE = re.compile(r"\s*([0-2])\s*")


@lru_cache(maxsize=1)
def _template() -> str:
    return (Path(__file__).with_name("rubric.txt")).read_text(encoding="utf-8").rstrip("\n")


def render_rubric(prompt: str, explanation: str) -> str:
    """The user text of one judge call: the rubric with the prompt's ``Prompt`` and ``Explanation`` filled in."""
    return _template().replace("{prompt}", prompt).replace("{explanation}", explanation)


def parse_scores(text: str | None) -> dict[str, float] | None:
    """The three scores of a judge answer, or None when fewer than three are found.

    Official parser: case-insensitive ``Consistency|Realism|Aesthetic Quality``, optional ``**``, optional ASCII
    colon, one digit (a later match of the same key wins). If nothing matches, the first three lines holding only a
    digit 0–2 are read in rubric order.
    """
    if text is None:
        return None
    scores: dict[str, float] = {}
    for key, value in _SCORE.findall(text):
        scores[key.lower().replace(" ", "_")] = float(value)
    if not scores:
        digits = [m.group(1) for line in text.splitlines() if (m := _DIGIT_LINE.fullmatch(line))]
        scores = {k: float(v) for k, v in zip(KEYS, digits[:3])}
    return scores if all(k in scores for k in KEYS) else None


def wiscore(consistency: float, realism: float, aesthetic_quality: float) -> float:
    """WiScore = (0.7·C + 0.2·R + 0.1·A) / 2."""
    return (0.7 * consistency + 0.2 * realism + 0.1 * aesthetic_quality) / 2
