"""T2I-CompBench(++) categories and prompt files (reference ``t2i_compbench_wise.md`` §1, §5).

The validation files are read as the official evaluators read them: one prompt per line, ``\\r`` stripped (several
files use CRLF), no header. A prompt becomes part of an image file name and is recovered as the name up to the first
``_``, so prompts holding ``_`` or ``/`` cannot be evaluated and are rejected here with the file and line.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CATEGORIES", "V1_CATEGORIES", "Category", "ComplexSplit", "load_complex_split", "load_prompts",
           "read_prompt_file"]


@dataclass(frozen=True)
class Category:
    """One benchmark category: its validation file, how it is scored and the official output folder."""

    name: str
    file: str
    scorer: str  # "blip_vqa", "spatial", "numeracy", "clip" or "3_in_1" (the official evaluator it follows)
    annotation_dir: str  # where the official evaluator writes vqa_result.json (under the category's folder)
    version: str  # "v1" (NeurIPS 2023) or "++" (TPAMI 2025)


CATEGORIES: dict[str, Category] = {
    c.name: c
    for c in (
        Category("color", "color_val.txt", "blip_vqa", "annotation_blip", "v1"),
        Category("shape", "shape_val.txt", "blip_vqa", "annotation_blip", "v1"),
        Category("texture", "texture_val.txt", "blip_vqa", "annotation_blip", "v1"),
        Category("spatial", "spatial_val.txt", "spatial", "labels/annotation_obj_detection_2d", "v1"),
        Category("non_spatial", "non_spatial_val.txt", "clip", "annotation_clip", "v1"),
        Category("complex", "complex_val.txt", "3_in_1", "annotation_3_in_1", "v1"),
        Category("numeracy", "numeracy_val.txt", "numeracy", "annotation_num", "++"),
    )
}
# The six categories of the T2I-R1 table (and of T2I-CompBench v1); their plain mean is the "Mean" column.
V1_CATEGORIES = ("color", "shape", "texture", "spatial", "non_spatial", "complex")
# complex_val.txt is split by these files; a prompt in neither of the first two holds spatial and action relations.
COMPLEX_SPLIT_FILES = {"spatial": "complex_val_spatial.txt", "action": "complex_val_action.txt"}


def read_prompt_file(path: str | os.PathLike) -> list[str]:
    """Prompts of one file (``\\r`` stripped, blank lines skipped); a prompt with ``_`` or ``/`` is an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"T2I-CompBench prompt file not found: {path}")
    prompts = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        prompt = line.replace("\r", "")
        if not prompt.strip():
            continue
        if "_" in prompt or "/" in prompt:
            raise ValueError(f"{path}:{lineno}: prompt {prompt!r} holds '_' or '/', which the file-name layout forbids")
        prompts.append(prompt)
    return prompts


def load_prompts(prompt_dir: str | os.PathLike, category: str) -> list[str]:
    """The validation prompts of ``category`` from ``prompt_dir`` (e.g. ``$IMAGECOT_SHARED/t2i_compbench``)."""
    if category not in CATEGORIES:
        raise KeyError(f"unknown T2I-CompBench category {category!r}; expected one of {sorted(CATEGORIES)}")
    return read_prompt_file(Path(prompt_dir) / CATEGORIES[category].file)


def _split_key(prompt: str) -> str:
    """How ``3_in_1.py`` compares prompts with the split files: lower-cased, cut at the first ``.``."""
    return prompt.split(".")[0].lower()


@dataclass(frozen=True)
class ComplexSplit:
    """Which complex prompts the 3-in-1 score treats as spatial-only or action-only (reference §5)."""

    spatial: frozenset[str]
    action: frozenset[str]

    def kind(self, prompt: str) -> str:
        """``"spatial"`` -> (attr + spatial)/2; ``"action"`` -> (attr + CLIP)/2; else ``"spatial_action"`` -> mean
        of all three. The spatial file wins when a prompt is in both (the official ``if``/``elif`` order)."""
        key = _split_key(prompt)
        if key in self.spatial:
            return "spatial"
        if key in self.action:
            return "action"
        return "spatial_action"


def load_complex_split(split_dir: str | os.PathLike) -> ComplexSplit:
    """Read ``complex_val_spatial.txt`` and ``complex_val_action.txt`` (official ``examples/dataset/``)."""
    split_dir = Path(split_dir)
    sets = {}
    for kind, name in COMPLEX_SPLIT_FILES.items():
        path = split_dir / name
        if not path.is_file():
            raise FileNotFoundError(
                f"complex split file not found: {path}. The 3-in-1 score needs the official "
                f"{' and '.join(COMPLEX_SPLIT_FILES.values())} (T2I-CompBench examples/dataset/); set "
                f"compbench.complex_split_dir to their folder"
            )
        lines = path.read_text(encoding="utf-8").replace("\r", "").split("\n")
        sets[kind] = frozenset(_split_key(line) for line in lines if line.strip())
    return ComplexSplit(**sets)
