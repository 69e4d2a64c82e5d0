"""GIT-VQA attribute reward of T2I-R1 through transformers (t2i_r1.md §8.3).

``GitForCausalLM`` (e.g. ``microsoft/git-large-vqav2``, local directory) is asked ``"{phrase}?"`` for each attribute
phrase of the prompt ("green banana?"), or for each noun when the prompt has no attribute phrases. The question is
tokenised without special tokens and prefixed with ``[CLS]`` (GIT's BOS), and the answer score is read from the
first answer position:

    s = P(yes) / (P(yes) + P(no))      softmax over the full vocabulary, "yes"/"no" = their single token ids

averaged over the questions of the image. As in the official reward, ``spatial`` and ``numeracy`` prompts get 0 (a
constant within a group, so no effect on advantages) and a prompt without nouns gets 1. All (image, question) pairs
of a batch run together, right-padded: GIT's text attention is causal, so padding after a question changes nothing
before it, and the answer logits are gathered at each question's last token (GIT's logits include its image
positions first).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from transformers import GitForCausalLM, GitProcessor

from reward_models.base import JudgeCost, JudgeOutput, validate_images, validate_judge_inputs
from reward_models.local_model import check_model_directory, load_local, torch_dtype
from reward_models.requirements import Requirements, RequirementsResolver

__all__ = ["GitVQAReward", "vqa_questions"]


def vqa_questions(requirements: Requirements) -> list[str]:
    """The official questions: ``"{attr_noun}?"`` per attribute phrase, else ``"{noun}?"`` per noun."""
    phrases = requirements.attr_nouns if requirements.attr_nouns is not None else requirements.nouns
    return [f"{phrase}?" for phrase in phrases]


class GitVQAReward:
    """:class:`~reward_models.base.OutcomeJudge`: mean yes-vs-no probability of the prompt's attribute questions.

    Args:
        model_dir: local transformers GIT directory (model + processor).
        requirements: prompt -> requirements (default: the offline prompt parser without vocabulary).
        skip_tasks: task types scored ``skip_score`` without asking (official: spatial and numeracy, 0).
        batch_size: (image, question) pairs per forward pass.
        device, dtype: where and in which precision GIT runs.
    """

    def __init__(
        self,
        model_dir: str | Path,
        requirements: RequirementsResolver | None = None,
        skip_tasks: Sequence[str] = ("spatial", "numeracy"),
        skip_score: float = 0.0,
        batch_size: int = 16,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"GitVQAReward.batch_size must be >= 1, got {batch_size}")
        weights_dtype = torch_dtype(dtype, "GitVQAReward.dtype")
        path = check_model_directory(model_dir, "GIT")
        self.processor, self.model = load_local(GitForCausalLM, GitProcessor, path, dtype=weights_dtype, device=device)
        self.device = torch.device(device)
        self.tokenizer = self.processor.tokenizer
        self.yes_id = self._single_token("yes")
        self.no_id = self._single_token("no")
        self.requirements = requirements if requirements is not None else RequirementsResolver()
        self.skip_tasks = tuple(skip_tasks)
        self.skip_score = float(skip_score)
        self.batch_size = batch_size

    def _single_token(self, word: str) -> int:
        ids = self.tokenizer.encode(word, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"GIT tokenizer splits {word!r} into {len(ids)} tokens; the VQA score needs one")
        return ids[0]

    @torch.inference_mode()
    def yes_probability(self, images: Sequence[Image.Image], questions: Sequence[str]) -> torch.Tensor:
        """``[N]`` P(yes) / (P(yes) + P(no)) of ``questions[i]`` about ``images[i]``, in batches."""
        if len(images) != len(questions):
            raise ValueError(f"got {len(questions)} questions for {len(images)} images")
        validate_images(images)
        out = []
        for start in range(0, len(questions), self.batch_size):
            out.append(self._batch(images[start : start + self.batch_size], questions[start : start + self.batch_size]))
        return torch.cat(out) if out else torch.zeros(0)

    def _batch(self, images: Sequence[Image.Image], questions: Sequence[str]) -> torch.Tensor:
        ids = [[self.tokenizer.cls_token_id] + self.tokenizer.encode(q, add_special_tokens=False) for q in questions]
        lengths = torch.tensor([len(row) for row in ids])
        input_ids = torch.full((len(ids), int(lengths.max())), self.tokenizer.pad_token_id, dtype=torch.long)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = torch.tensor(row)
        attention_mask = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long()
        pixels = self.processor(images=list(images), return_tensors="pt").pixel_values.to(self.device, self.model.dtype)
        logits = self.model(
            pixel_values=pixels, input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device)
        ).logits.float().cpu()  # [n, image_tokens + L, V]
        last = logits.shape[1] - input_ids.shape[1] + lengths - 1  # position of each question's last token
        probs = logits[torch.arange(len(ids)), last].softmax(dim=-1)  # [n, V]
        p_yes, p_no = probs[:, self.yes_id], probs[:, self.no_id]
        return p_yes / (p_yes + p_no)

    def score(
        self,
        prompts: Sequence[str],
        images: Sequence[Image.Image],
        *,
        requirements: Sequence[Requirements] | None = None,
    ) -> JudgeOutput:
        """Scores ``[B]`` in [0, 1]; components ``num_questions``. ``requirements`` overrides the resolver."""
        validate_judge_inputs(prompts, images)
        needs = self.requirements.resolve(prompts, requirements)
        owners, pair_images, questions = [], [], []
        scores = torch.ones(len(prompts))
        for i, need in enumerate(needs):
            if need.task_type in self.skip_tasks:
                scores[i] = self.skip_score
                continue
            for question in vqa_questions(need):
                owners.append(i)
                pair_images.append(images[i])
                questions.append(question)
        answers = self.yes_probability(pair_images, questions)
        owner = torch.tensor(owners, dtype=torch.long)
        counts = torch.zeros(len(prompts)).index_add_(0, owner, torch.ones(len(owners)))
        sums = torch.zeros(len(prompts)).index_add_(0, owner, answers)
        asked = counts > 0
        scores[asked] = sums[asked] / counts[asked]  # no question (no nouns): the official 1 stays
        return JudgeOutput(
            scores=scores,
            components={"num_questions": counts},
            cost=JudgeCost(forward_passes=len(questions), images_scored=len(prompts)),
        )
