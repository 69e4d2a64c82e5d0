"""PARM++ self-correction data from the judge's own answers on generated images (paper §7, reference §7, §12).

The paper fine-tunes Show-o on 10K groups of (prompt, low-quality image, reflection reason, high-quality image) taken
from PARM++'s data, whose reasons GPT-4o wrote; neither was released. At real scale the groups come from the judge
that will run the reflection at test time:

1. candidates: N images per training prompt from the base Show-o (a :class:`~search.pool.PoolEntry` per prompt,
   ``dpo.iterative.generate_pools``);
2. :func:`reflect_pools`: the PARM++ judge's reflection of every candidate (yes/no) and, for a "no", its explanation
   of the mismatch, stored in the same pool entry (``extras["reflection"]``), resumable per prompt;
3. :func:`self_correction_groups`: per prompt, up to ``groups_per_prompt`` rejected candidates, each with its
   explanation as the feedback and an accepted candidate of the same prompt as the target (a prompt whose candidates
   were all accepted or all rejected gives none), written in the :mod:`showo.self_correction` format.

The draw of which rejected / accepted candidates form the groups of prompt ``i`` is seeded from ``(seed, i)``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from common.seeding import seeded_generator
from reward_models.parmpp import ParmPlusPlus
from search.pool import entry_path, load_entry, save_entry
from showo.self_correction import write_self_correction_dataset

__all__ = ["FALLBACK_FEEDBACK", "reflect_pools", "self_correction_groups"]

# A "no" whose generated explanation is empty still needs feedback: a group without any teaches the corrector to
# ignore it. Counted in the recipe's report.
FALLBACK_FEEDBACK = "The image does not match the prompt."


def reflect_pools(parmpp: ParmPlusPlus, pipe, prompts: Sequence[str], pool_dir: Path, batch_size: int) -> None:
    """Decode every prompt's candidates (the one decode path) and store ``parmpp.reflect``'s verdicts in its entry:
    ``extras["reflection"] = {"accept": [M bool], "explanations": [M str | None]}``, ``outcome_scores`` = P("yes")."""
    todo = [i for i in range(len(prompts)) if "reflection" not in load_entry(entry_path(pool_dir, i, 0)).extras]
    for i in tqdm(todo, desc="reflect", disable=not todo):
        entry = load_entry(entry_path(pool_dir, i, 0))
        accept, explanations, scores = [], [], []
        for s in range(0, entry.size, batch_size):
            chunk = entry.tokens[s: s + batch_size]
            verdict = parmpp.reflect([prompts[i]] * chunk.shape[0], pipe.decode(chunk, "pil"))
            accept += [bool(a) for a in verdict.accept]
            explanations += list(verdict.explanations)
            scores += verdict.output.scores.tolist()
        entry.outcome_scores = [float(v) for v in scores]
        entry.extras["reflection"] = {"accept": accept, "explanations": explanations}
        save_entry(pool_dir, entry)


def self_correction_groups(prompts: Sequence[str], pool_dir: Path, directory: str | os.PathLike, *,
                           groups_per_prompt: int, seed: int) -> dict[str, int]:
    """Write the groups of every reflected pool into ``directory``; returns counts (``groups``, ``prompts_used``,
    ``fallback_feedback``: rejected images whose explanation was empty)."""
    if groups_per_prompt < 1:
        raise ValueError(f"groups_per_prompt must be >= 1, got {groups_per_prompt}")
    texts, feedback, bad, good = [], [], [], []
    used = fallbacks = 0
    for i, prompt in enumerate(prompts):
        entry = load_entry(entry_path(pool_dir, i, 0))
        reflection = entry.extras.get("reflection")
        if reflection is None:
            raise ValueError(f"{entry_path(pool_dir, i, 0)}: not reflected yet (no extras['reflection'])")
        yes = [k for k, a in enumerate(reflection["accept"]) if a]
        no = [k for k, a in enumerate(reflection["accept"]) if not a]
        if not yes or not no:
            continue
        gen = seeded_generator(seed, "self_correction", i)
        no = [no[j] for j in torch.randperm(len(no), generator=gen)[:groups_per_prompt].tolist()]
        targets = torch.randint(len(yes), (len(no),), generator=gen).tolist()
        used += 1
        for k, t in zip(no, targets):
            text = (reflection["explanations"][k] or "").strip()
            fallbacks += not text
            texts.append(prompt)
            feedback.append(text or FALLBACK_FEEDBACK)
            bad.append(entry.tokens[k])
            good.append(entry.tokens[yes[t]])
    if not texts:
        raise ValueError(f"{pool_dir}: the judge accepted or rejected every candidate of every prompt: no "
                         "self-correction group (more prompts or candidates needed)")
    write_self_correction_dataset(directory, texts, feedback, torch.stack(bad), torch.stack(good))
    return {"groups": len(texts), "prompts_used": used, "prompts": len(prompts), "fallback_feedback": fallbacks}
