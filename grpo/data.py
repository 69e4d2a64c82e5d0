"""Training prompts of a GRPO run (t2i_r1.md §9): a text file (one prompt per line) or JSON lines with a ``prompt``
field (T2I-R1's ``geneval_and_t2i_data_final.json``, GenEval's ``evaluation_metadata.jsonl``)."""
from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["load_prompts"]


def load_prompts(path: str | os.PathLike) -> list[str]:
    """Prompts in file order; blank lines are skipped. Errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file not found: {path}")
    prompts = []
    as_json = path.suffix in (".json", ".jsonl")
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        if not as_json:
            prompts.append(line.strip())
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: not a JSON line ({err})") from err
        if not isinstance(record, dict) or not isinstance(record.get("prompt"), str) or not record["prompt"].strip():
            raise ValueError(f"{path}:{number}: a JSON line needs a non-empty string field 'prompt'")
        prompts.append(record["prompt"].strip())
    if not prompts:
        raise ValueError(f"{path} holds no prompt")
    return prompts
