"""GenEval prompt metadata (GenEval paper §3; reference §2): loading and validating ``evaluation_metadata.jsonl``.

Each line is one prompt's requirements. ``PromptSpec`` keeps the parsed fields for code and the original dict (key
order included) so that a folder's ``metadata.jsonl`` can be re-written byte-identically to the official one.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from eval.geneval.judge import COLORS, RELATIONS

TASKS: tuple[str, ...] = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
# Column names of the six tasks in tables and plots
TASK_HEADERS = {
    "single_object": "Single",
    "two_object": "Two",
    "counting": "Count",
    "colors": "Colors",
    "position": "Pos",
    "color_attr": "ColorAttr",
}
OFFICIAL_URL = "https://github.com/djghosh13/geneval/blob/main/prompts/evaluation_metadata.jsonl"
# GenEval's ``object_names.txt``: the 80 COCO thing classes in mmdet label order, with GenEval's friendlier names.
COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis",
    "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed",
    "dining table", "toilet", "tv", "laptop", "computer mouse", "tv remote", "computer keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)


def default_metadata_path() -> Path:
    """``$IMAGECOT_CACHE/geneval/evaluation_metadata.jsonl`` (``IMAGECOT_CACHE`` defaults to ``~/.cache/imagecot``)."""
    cache = os.environ.get("IMAGECOT_CACHE", str(Path.home() / ".cache" / "imagecot"))
    return Path(cache).expanduser() / "geneval" / "evaluation_metadata.jsonl"


def _utf8_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file; other bytes are a :class:`MetadataError` naming the file and line."""
    lines = []
    for lineno, raw in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as err:
            raise MetadataError(f"{path}:{lineno}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    return lines


def load_class_names(path: str | os.PathLike) -> list[str]:
    """One class name per line (line ``i`` = detector label ``i``), e.g. GenEval's ``object_names.txt``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class-name file not found: {path}")
    names = [line.strip() for line in _utf8_lines(path) if line.strip()]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: duplicate class names")
    return names


@dataclass(frozen=True)
class Requirement:
    """One ``include`` / ``exclude`` entry: ``count`` objects of ``cls``, optionally with a colour / position."""

    cls: str
    count: int
    color: str | None = None
    position: tuple[str, int] | None = None  # (relation, index of the reference include)


@dataclass(frozen=True)
class PromptSpec:
    """One GenEval prompt. ``raw`` is the line's dict exactly as read (key order preserved)."""

    index: int
    tag: str
    prompt: str
    include: tuple[Requirement, ...]
    exclude: tuple[Requirement, ...]
    raw: dict[str, Any]

    def metadata_line(self) -> str:
        """The official line text: ``json.dumps`` with default separators, original key order."""
        return json.dumps(self.raw)


class MetadataError(ValueError):
    """A metadata line breaks the schema; the message names file, line, field and value."""


def _requirement(entry: Any, where: str, vocabulary: set[str], n_before: int, is_include: bool) -> Requirement:
    if not isinstance(entry, dict):
        raise MetadataError(f"{where}: expected an object, got {entry!r}")
    allowed = {"class", "count", "color", "position"} if is_include else {"class", "count"}
    extra = set(entry) - allowed
    if extra:
        raise MetadataError(f"{where}: unexpected field(s) {sorted(extra)}")
    cls = entry.get("class")
    if cls not in vocabulary:
        raise MetadataError(f"{where}: field 'class' = {cls!r} is not in the class vocabulary")
    count = entry.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise MetadataError(f"{where}: field 'count' = {count!r} must be a positive integer")
    color = entry.get("color")
    if color is not None and color not in COLORS:
        raise MetadataError(f"{where}: field 'color' = {color!r} is not one of {list(COLORS)}")
    position = entry.get("position")
    if position is not None:
        ok = isinstance(position, list) and len(position) == 2 and position[0] in RELATIONS
        if not ok or not isinstance(position[1], int) or not 0 <= position[1] < n_before:
            raise MetadataError(
                f"{where}: field 'position' = {position!r} must be [relation in {list(RELATIONS)}, index of an "
                f"earlier include (< {n_before})]"
            )
        position = (position[0], position[1])
    return Requirement(cls, count, color, position)


def parse_metadata(raw: Any, vocabulary: Sequence[str], index: int = 0, where: str = "metadata") -> PromptSpec:
    """Validate one metadata dict; ``where`` prefixes error messages (e.g. ``"file.jsonl:12"``)."""
    if not isinstance(raw, dict):
        raise MetadataError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    vocab = set(vocabulary)
    tag = raw.get("tag")
    if tag not in TASKS:
        raise MetadataError(f"{where}: field 'tag' = {tag!r} is not one of {list(TASKS)}")
    prompt = raw.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise MetadataError(f"{where}: field 'prompt' = {prompt!r} must be a non-empty string")
    extra = set(raw) - {"tag", "prompt", "include", "exclude"}
    if extra:
        raise MetadataError(f"{where}: unexpected field(s) {sorted(extra)}")
    include_raw = raw.get("include")
    if not isinstance(include_raw, list) or not include_raw:
        raise MetadataError(f"{where}: field 'include' = {include_raw!r} must be a non-empty list")
    exclude_raw = raw.get("exclude", [])
    if not isinstance(exclude_raw, list):
        raise MetadataError(f"{where}: field 'exclude' = {exclude_raw!r} must be a list")
    include = tuple(
        _requirement(e, f"{where}: include[{i}]", vocab, i, True) for i, e in enumerate(include_raw)
    )
    exclude = tuple(_requirement(e, f"{where}: exclude[{i}]", vocab, 0, False) for i, e in enumerate(exclude_raw))
    return PromptSpec(index, tag, prompt, include, exclude, raw)


def load_prompts(
    path: str | os.PathLike | None = None, class_names: Sequence[str] | None = None
) -> list[PromptSpec]:
    """Read and validate every line of ``evaluation_metadata.jsonl``; line ``i`` (0-based) is prompt ``i``.

    ``class_names`` is the vocabulary requirements may name (default: the 80 COCO names, ``COCO_CLASSES``; pass
    any list for other worlds).
    """
    path = Path(path) if path is not None else default_metadata_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"GenEval metadata not found: {path}. Get the official file from djghosh13/geneval "
            f"(prompts/evaluation_metadata.jsonl, {OFFICIAL_URL}) and place it there, or pass its path."
        )
    class_names = COCO_CLASSES if class_names is None else class_names
    specs = []
    for lineno, line in enumerate(_utf8_lines(path), start=1):
        if not line.strip():
            raise MetadataError(f"{path}:{lineno}: empty line")
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as err:
            raise MetadataError(f"{path}:{lineno}: invalid JSON ({err.msg})") from err
        specs.append(parse_metadata(raw, class_names, lineno - 1, f"{path}:{lineno}"))
    return specs


def load_prompt_set(path: str | os.PathLike, class_names_path: str | os.PathLike | None = None) -> list[PromptSpec]:
    """Prompts for generation: GenEval metadata (``.jsonl``, validated) or a text file with one prompt per line.

    Plain prompts get no tag or requirements (``raw = {"prompt": ...}``), so they can be generated but not scored.
    """
    path = Path(path)
    if path.suffix == ".jsonl":
        specs = load_prompts(path, load_class_names(class_names_path) if class_names_path else None)
    else:
        if not path.is_file():
            raise FileNotFoundError(f"prompt file not found: {path}")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise MetadataError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        specs = [PromptSpec(i, "", p, (), (), {"prompt": p}) for i, p in enumerate(lines)]
    if not specs:
        raise MetadataError(f"{path}: holds no prompts (an empty prompt set would make an empty run)")
    return specs
