"""T2I-R1's outcome reward model: the ORM question and its temperature-0.3 yes-vs-no score (t2i_r1.md §8.4).

The judge (``CaraJ/ORM-T2I-R1``, a LLaVA-OneVision-style ``llava_qwen`` model converted to the transformers format
with ``reward_models/convert.py``) is asked the ORM question of Image-Generation-CoT
(:data:`reward_models.questions.ORM_QUESTION`, the same words) about the raw prompt. The official code samples an
answer with ``temperature=0.3`` and reads the first step's scores:

    score = P_T(yes) / (P_T(yes) + P_T(no)) = sigmoid((l_yes - l_no) / T)      if the first answer token is yes/no
    score = 0                                                                 otherwise

with ``l`` the first-token logits, "yes"/"no" the lowercase single tokens, and "is yes/no" tested on the token's
text, case-insensitively (so "Yes" passes the test while only the lowercase ids enter the ratio). One forward pass
per batch gives the logits (:meth:`LMMYesNoJudge.first_token_logits`); the gate on the first token is a named choice:

* ``gate="sample"`` — the official behaviour: the first token is drawn from ``softmax(l / T)`` with one
  ``torch.Generator`` per image (optionally after a top-k filter, ``top_k=50`` mimicking the transformers 4.x
  default warper; the checkpoint's own generation config is not known, t2i_r1.md §17);
* ``gate="argmax"`` (default) — deterministic: the most likely first token must be yes/no;
* ``gate="none"`` — always the ratio.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from reward_models.base import Generators, JudgeCost, JudgeOutput, per_image_generators, validate_judge_inputs
from reward_models.lmm_judge import LMMYesNoJudge, question_turns
from reward_models.questions import ORM_QUESTION

__all__ = ["T2IR1ORM"]

_GATES = ("argmax", "sample", "none")


class T2IR1ORM:
    """:class:`~reward_models.base.OutcomeJudge` with T2I-R1's ORM scoring (module docstring).

    Args:
        judge: the LLaVA-OneVision judge (its own ``mode`` / yes-no words are not used here).
        temperature: the sampling temperature of the official ``generate`` call (0.3).
        gate: ``"argmax"``, ``"sample"`` (official) or ``"none"``.
        top_k: keep only the ``top_k`` largest first-token logits before the ratio and the gate (``None``: all).
        question_template: ``{image}``/``{prompt}`` template; ``None`` = the ORM question.
        seed: seed of the judge's own generator for ``gate="sample"`` when none is passed.
    """

    def __init__(
        self,
        judge: LMMYesNoJudge,
        temperature: float = 0.3,
        gate: str = "argmax",
        top_k: int | None = None,
        question_template: str | None = None,
        seed: int = 0,
    ) -> None:
        if gate not in _GATES:
            raise ValueError(f"T2IR1ORM.gate must be one of {_GATES}, got {gate!r}")
        if not temperature > 0:
            raise ValueError(f"T2IR1ORM.temperature must be > 0, got {temperature}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"T2IR1ORM.top_k must be >= 1 or null, got {top_k}")
        self.judge = judge
        self.temperature = float(temperature)
        self.gate = gate
        self.top_k = top_k
        self.question_template = ORM_QUESTION if question_template is None else question_template
        tokenizer = judge.tokenizer
        self.yes_id = self._token_id(tokenizer, "yes")
        self.no_id = self._token_id(tokenizer, "no")
        # The official test of the sampled token: its text, lower-cased and stripped, is "yes" or "no".
        self.answer_ids = sorted(i for t, i in tokenizer.get_vocab().items() if t.lower().strip() in ("yes", "no"))
        self._generator = torch.Generator().manual_seed(seed)

    @staticmethod
    def _token_id(tokenizer, word: str) -> int:
        token_id = tokenizer.convert_tokens_to_ids(word)
        if token_id is None or token_id == tokenizer.unk_token_id:
            raise ValueError(f"the judge's tokenizer has no single token {word!r}")
        return int(token_id)

    def score(
        self, prompts: Sequence[str], images: Sequence[Image.Image], *, generator: Generators = None
    ) -> JudgeOutput:
        """Scores ``[B]``; components ``p_yes``, ``p_no`` (at temperature T), ``p_yes_norm`` and ``gate_pass``."""
        validate_judge_inputs(prompts, images)
        conversations = question_turns(self.question_template, prompts, self.judge.image_token)
        size = self.judge.batch_size
        logits = torch.cat([
            self.judge.first_token_logits(conversations[s : s + size], images[s : s + size])
            for s in range(0, len(prompts), size)
        ]) / self.temperature  # [B, V]
        if self.top_k is not None and self.top_k < logits.shape[-1]:
            kth = logits.topk(self.top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = logits.softmax(dim=-1)
        ratio = torch.sigmoid(logits[:, self.yes_id] - logits[:, self.no_id]).nan_to_num(0.0)  # both cut: 0
        passed = self._gate(logits, probs, generator)
        return JudgeOutput(
            scores=ratio * passed,
            components={
                "p_yes": probs[:, self.yes_id],
                "p_no": probs[:, self.no_id],
                "p_yes_norm": ratio,
                "gate_pass": passed,
            },
            cost=JudgeCost(forward_passes=len(prompts), images_scored=len(prompts)),
        )

    def _gate(self, logits: torch.Tensor, probs: torch.Tensor, generator: Generators) -> torch.Tensor:
        """``[B]`` 0/1: whether the (most likely or sampled) first answer token reads yes or no."""
        answers = torch.tensor(self.answer_ids, dtype=torch.long)
        if self.gate == "none":
            return torch.ones(logits.shape[0])
        if self.gate == "argmax":
            tokens = logits.argmax(dim=-1)
        else:
            generators = per_image_generators(generator, logits.shape[0], self._generator)
            tokens = torch.tensor([int(torch.multinomial(p, 1, generator=g)) for p, g in zip(probs, generators)])
        return torch.isin(tokens, answers).float()
