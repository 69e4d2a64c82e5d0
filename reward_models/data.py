"""Judge training data: builders for ORM / PARM / PARM++ examples and their JSONL storage (imagegen_cot.md §4.2,
§6.4, §7).

One example = one image + one chat conversation (user / assistant turns) whose first user turn carries the image
placeholder ``<image>``; training computes the loss on the assistant turns only (LLaVA-NeXT's convention).
Conversations are built from the same question templates and turn layouts the judges ask at inference
(:mod:`reward_models.questions`, :mod:`reward_models.parm`, :mod:`reward_models.parmpp`), so training and
inference see the same text.

Builders (labels from the paper):

* ORM (§4.2): ``(prompt, final image, GenEval-style verdict)`` -> ORM question, answer yes/no.
* PARM clarity (§6.4): label from the step index alone: steps **after 11 -> yes**, steps **before 10 -> no**
  (1-based steps of 18). Steps 10 and 11 are not labelled by the paper's rule: :func:`clarity_label` returns
  ``None`` and the builder yields no example.
* PARM potential (§6.4): images from steps after 11, labelled with the **final verdict of their path**, asked as
  a follow-up turn after the clarity question and an assistant "yes" (the released-code layout, §6.3).
* Describe (not in the paper; the tiny judges' stand-in for LLaVA's caption pre-training): the image -> a text
  description of its objects (e.g. what an exact detector sees), so a judge trained from scratch learns to look.
* PARM++ reflection (§7): the ORM question answered yes/no; a rejected image gets a text-only follow-up asking
  what does not match, answered with the explanation. The paper's explanations are GPT-4o notes (never released);
  here they come from the verdict's reasons (e.g. GenEval's ``"expected dog>=2, found 1"`` lines).

Answers default to lowercase ``yes`` / ``no``: the released inference code reads the lowercase token and the
released data's casing is unconfirmed (§16); ``answers=("Yes", "No")`` gives the paper's casing.

Storage: ``<root>/<name>.jsonl``, one example per line, ``image`` a path relative to the JSONL file's folder (or
absolute). :func:`read_examples` validates every line and names the file, line, field and value of a bad one.
"""
from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from PIL import Image
from torch.utils.data import Dataset

from common.io import atomic_write_bytes, atomic_write_text, png_bytes
from reward_models.questions import (CLARITY_CODE, DESCRIBE_QUESTION, ORM_QUESTION, POTENTIAL_CODE, PRM_QUESTION,
                                     REFLECTION_EXPLAIN, render_question)

__all__ = [
    "IMAGE_TOKEN",
    "TASKS",
    "JudgeDataset",
    "JudgeExample",
    "image_path",
    "Verdict",
    "clarity_example",
    "clarity_steps",
    "clarity_label",
    "describe_example",
    "explanation",
    "orm_example",
    "potential_example",
    "prm_example",
    "read_examples",
    "reflection_example",
    "save_image",
    "write_examples",
]

IMAGE_TOKEN = "<image>"  # LLaVA-OneVision's image placeholder; the processor expands it to the image tokens
TASKS = ("orm", "prm", "clarity", "potential", "reflection", "describe")
_ROLES = ("user", "assistant")


class Verdict(Protocol):
    """What the builders need of a judgment (``eval.geneval.judge.Verdict`` fits): correctness and its reasons."""

    correct: bool
    reason: str


@dataclass(frozen=True)
class JudgeExample:
    """One training example. ``conversation`` alternates user / assistant, starting with the user turn holding
    the single ``<image>`` placeholder; ``image`` is a path (relative to the JSONL folder, or absolute)."""

    id: str
    task: str
    image: str
    conversation: tuple[dict[str, str], ...]

    def to_json(self) -> dict:
        record = asdict(self)
        record["conversation"] = [dict(turn) for turn in self.conversation]
        return record


def _user(template: str, prompt: str, with_image: bool) -> dict[str, str]:
    return {"role": "user", "content": render_question(template, prompt, IMAGE_TOKEN if with_image else None)}


def _assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def _yes_no_example(id: str, task: str, prompt: str, image: str, correct: bool, question: str,
                    answers: tuple[str, str]) -> JudgeExample:
    """One question about the image, answered ``answers[0]`` if ``correct`` else ``answers[1]``."""
    answer = answers[0] if correct else answers[1]
    return JudgeExample(id, task, str(image), (_user(question, prompt, True), _assistant(answer)))


def orm_example(
    id: str,
    prompt: str,
    image: str,
    verdict: Verdict,
    *,
    question: str = ORM_QUESTION,
    answers: tuple[str, str] = ("yes", "no"),
) -> JudgeExample:
    """ORM ranking example (§4.2): "Does this image accurately represent the prompt?" -> yes iff correct."""
    return _yes_no_example(id, "orm", prompt, image, verdict.correct, question, answers)


def prm_example(
    id: str,
    prompt: str,
    image: str,
    final_verdict: Verdict,
    *,
    question: str = PRM_QUESTION,
    answers: tuple[str, str] = ("yes", "no"),
) -> JudgeExample:
    """Fine-tuned PRM example (§5): a step's predicted image, labelled by its path's *final* verdict (the paper gives
    no PRM labelling rule; outcome supervision of every step is the usual one and what §5's failure analysis
    assumes: early blurry steps get noisy labels)."""
    return _yes_no_example(id, "prm", prompt, image, final_verdict.correct, question, answers)


def clarity_steps(num_steps: int) -> tuple[int, int]:
    """``(yes_after, no_before)`` of the static clarity rule (1-based steps), scaled from the paper's 11 / 10 of
    Show-o's 18 steps (§6.4): e.g. 12 steps -> (7, 7): steps 1-6 unclear, 8-12 clear, step 7 unlabelled."""
    return round(11 * num_steps / 18), round(10 * num_steps / 18)


def rule_clarity_start(num_steps: int) -> int:
    """0-based first step the static clarity rule does not call unclear (``no_before - 1``): where
    ``Parm(clarity_from="rule")`` starts asking."""
    return clarity_steps(num_steps)[1] - 1


def clarity_label(step: int, *, yes_after: int = 11, no_before: int = 10) -> bool | None:
    """Static clarity label of a 1-based ``step`` (§6.4): True after ``yes_after``, False before ``no_before``,
    ``None`` (unlabelled) in between. Pipelines count steps from 0: pass ``step + 1``."""
    if step < 1:
        raise ValueError(f"clarity steps are 1-based, got step={step}")
    if step > yes_after:
        return True
    if step < no_before:
        return False
    return None


def clarity_example(
    id: str,
    prompt: str,
    image: str,
    step: int,
    *,
    question: str = CLARITY_CODE,
    answers: tuple[str, str] = ("yes", "no"),
    yes_after: int = 11,
    no_before: int = 10,
) -> JudgeExample | None:
    """PARM clarity example for the predicted image of 1-based ``step``; ``None`` for the unlabelled steps."""
    label = clarity_label(step, yes_after=yes_after, no_before=no_before)
    if label is None:
        return None
    answer = answers[0] if label else answers[1]
    return JudgeExample(id, "clarity", str(image), (_user(question, prompt, True), _assistant(answer)))


def potential_example(
    id: str,
    prompt: str,
    image: str,
    step: int,
    final_verdict: Verdict,
    *,
    clarity_question: str = CLARITY_CODE,
    potential_question: str = POTENTIAL_CODE,
    answers: tuple[str, str] = ("yes", "no"),
    yes_after: int = 11,
) -> JudgeExample | None:
    """PARM potential example (§6.4) from a step image and its path's final verdict; ``None`` unless the step is
    after ``yes_after`` (only clear images are assessed). Layout: clarity turn + image, assistant "yes",
    text-only potential turn, assistant yes/no."""
    if step <= yes_after:
        return None
    answer = answers[0] if final_verdict.correct else answers[1]
    conversation = (
        _user(clarity_question, prompt, True),
        _assistant(answers[0]),
        _user(potential_question, prompt, False),
        _assistant(answer),
    )
    return JudgeExample(id, "potential", str(image), conversation)


def reflection_example(
    id: str,
    prompt: str,
    image: str,
    verdict: Verdict,
    *,
    question: str = ORM_QUESTION,
    explain_question: str = REFLECTION_EXPLAIN,
    answers: tuple[str, str] = ("yes", "no"),
) -> JudgeExample:
    """PARM++ reflection example (§7): accepted -> "yes"; rejected -> "no" + explanation of the mismatch.

    The explanation is the verdict's reasons joined into one line; a rejected verdict without reasons is an error
    (an empty explanation would teach the judge to say nothing).
    """
    turns = [_user(question, prompt, True)]
    if verdict.correct:
        turns.append(_assistant(answers[0]))
    else:
        turns += [_assistant(answers[1]), _user(explain_question, prompt, False),
                  _assistant(explanation(verdict, f"reflection example {id!r}"))]
    return JudgeExample(id, "reflection", str(image), tuple(turns))


def describe_example(id: str, image: str, description: str, *, question: str = DESCRIBE_QUESTION) -> JudgeExample:
    """Caption example: "Describe the objects in this image." -> ``description`` (non-empty)."""
    if not description.strip():
        raise ValueError(f"describe example {id!r}: empty description")
    return JudgeExample(id, "describe", str(image), (_user(question, "", True), _assistant(description)))


def explanation(verdict: Verdict, where: str = "verdict") -> str:
    """A rejected verdict's reasons joined into one line (the PARM++ explanation, and the self-correction feedback);
    an empty one is an error (it would teach the judge to say nothing)."""
    text = "; ".join(line.strip() for line in str(verdict.reason).splitlines() if line.strip())
    if not text:
        raise ValueError(f"{where}: a rejected verdict needs a non-empty 'reason'")
    return text


def correction_groups(prompt: str, rejected: Sequence[tuple[str, Verdict, object]],
                      good: Sequence[object]) -> list[tuple[str, str, object, object]]:
    """PARM++ self-correction groups ``(prompt, explanation, bad codes, good codes)``: one per rejected image
    ``(where, verdict, codes)`` of a prompt, the prompt's ``good`` codes taken in turn; none when there is no good one
    (:func:`showo.self_correction.write_self_correction_groups` writes them)."""
    if not good:
        return []
    return [(prompt, explanation(verdict, where), bad, good[k % len(good)])
            for k, (where, verdict, bad) in enumerate(rejected)]


def save_image(image: Image.Image, root: str | Path, name: str) -> str:
    """Write ``image`` as ``<root>/images/<name>.png`` atomically; returns the path relative to ``root``."""
    relative = Path("images") / f"{name}.png"
    atomic_write_bytes(Path(root) / relative, png_bytes(image.convert("RGB")))
    return relative.as_posix()


def write_examples(path: str | Path, examples: Iterable[JudgeExample]) -> int:
    """Write examples as JSONL atomically (temporary file + ``os.replace``); returns how many were written."""
    lines = []
    for count, example in enumerate(examples):
        _validate(example.to_json(), f"{path} (example {count})")
        lines.append(json.dumps(example.to_json(), ensure_ascii=False) + "\n")
    atomic_write_text(path, "".join(lines))
    return len(lines)


def read_examples(path: str | Path, *, check_images: bool = True) -> list[JudgeExample]:
    """Load and validate a JSONL file; errors name ``path:line``, the field and the value."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"judge data file not found: {path}")
    examples = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{where}: not valid JSON ({error.msg})") from error
            _validate(record, where)
            if check_images and not image_path(path, record["image"]).is_file():
                raise FileNotFoundError(f"{where}: field 'image' = {record['image']!r}: file not found")
            examples.append(
                JudgeExample(record["id"], record["task"], record["image"], tuple(record["conversation"]))
            )
    return examples


def image_path(jsonl: str | Path, image: str) -> Path:
    """The file an example's ``image`` names: absolute, or relative to its JSONL file's folder."""
    candidate = Path(image)
    return candidate if candidate.is_absolute() else Path(jsonl).parent / candidate


def _validate(record: object, where: str) -> None:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for field in ("id", "task", "image", "conversation"):
        if field not in record:
            raise ValueError(f"{where}: missing field {field!r}")
    for field in ("id", "image"):
        if not isinstance(record[field], str) or not record[field]:
            raise ValueError(f"{where}: field {field!r} must be a non-empty string, got {record[field]!r}")
    if record["task"] not in TASKS:
        raise ValueError(f"{where}: field 'task' = {record['task']!r}; expected one of {TASKS}")
    _validate_conversation(record["conversation"], where)


def _validate_conversation(conversation: object, where: str) -> None:
    if not isinstance(conversation, list) or len(conversation) < 2:
        raise ValueError(f"{where}: field 'conversation' must be a list of >= 2 turns, got {conversation!r}")
    for i, turn in enumerate(conversation):
        expected = _ROLES[i % 2]
        if not isinstance(turn, dict) or set(turn) != {"role", "content"}:
            raise ValueError(f"{where}: conversation[{i}] must be {{'role', 'content'}}, got {turn!r}")
        if turn["role"] != expected:
            raise ValueError(f"{where}: conversation[{i}].role = {turn['role']!r}, expected {expected!r}")
        if not isinstance(turn["content"], str) or not turn["content"].strip():
            raise ValueError(f"{where}: conversation[{i}].content must be a non-empty string, got {turn['content']!r}")
    if conversation[-1]["role"] != "assistant":
        raise ValueError(f"{where}: the conversation must end with an assistant turn")
    placeholders = sum(turn["content"].count(IMAGE_TOKEN) for turn in conversation)
    if placeholders != 1 or IMAGE_TOKEN not in conversation[0]["content"]:
        raise ValueError(
            f"{where}: field 'conversation' must hold exactly one {IMAGE_TOKEN!r}, in the first user turn "
            f"(found {placeholders})"
        )


class JudgeDataset(Dataset):
    """Examples of one or more JSONL files, each item ``(conversation, RGB image)``.

    ``fractions[i]`` keeps a seeded random subset of file i (the released recipes train on ``random:50%`` of
    ``orm.json`` for the ORM and ``random:70%`` for PARM, §4.2/§6.5; the paper uses 100%). Default: all.
    """

    def __init__(
        self, paths: Sequence[str | Path], fractions: Sequence[float] | None = None, seed: int = 0
    ) -> None:
        if isinstance(paths, (str, Path)):
            paths = [paths]
        fractions = [1.0] * len(paths) if fractions is None else list(fractions)
        if len(fractions) != len(paths):
            raise ValueError(f"JudgeDataset: {len(fractions)} fractions for {len(paths)} paths")
        self.items: list[tuple[Path, JudgeExample]] = []
        for index, (path, fraction) in enumerate(zip(paths, fractions)):
            if not 0.0 < fraction <= 1.0:
                raise ValueError(f"JudgeDataset: fractions[{index}] = {fraction} must be in (0, 1]")
            examples = read_examples(path)
            keep = round(fraction * len(examples))
            chosen = sorted(random.Random(seed + index).sample(range(len(examples)), keep))
            self.items += [(Path(path), examples[i]) for i in chosen]
        if not self.items:
            raise ValueError(f"no judge examples in {[str(p) for p in paths]}")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[list[dict[str, str]], Image.Image]:
        path, example = self.items[index]
        with Image.open(image_path(path, example.image)) as image:
            return [dict(turn) for turn in example.conversation], image.convert("RGB")
