"""The generator's own final images in bulk, labelled and described exactly (issue 13: judges that look).

:mod:`reward_models.judge_data` balances every training prompt with rendered ground truth and near misses, but the
images a judge ranks at test time are the *generator's*: blurred shapes, mixed colours, half-drawn objects. Its own
paths there are few (about 4 per prompt, each with every step kept for the PRM / potential labels). This module adds
what is cheap to have many of (``JudgeDataConfig.finals_per_line``): ``per_line`` final images per training line, no
steps kept, each

* labelled by the injected exact ``labeller`` -> ``finals.jsonl`` (ORM examples, ids ``<line:05d>_f<k:03d>``);
* described by the injected ``describer`` -> ``finals_describe.jsonl`` (what the exact detector sees: the dense
  signal that teaches a from-scratch judge to see the generator's shapes, which one bit per image does slowly).

Image ``k`` of line ``i`` is drawn with its own generator seeded ``image_seed(seed, i, k)``, so the files do not
depend on ``batch_size``. The labels are as unbalanced as the generator is (the tiny Show-o's training prompts:
about 12 % accepted); the balanced ``orm.jsonl`` of :mod:`reward_models.judge_data` is trained beside them.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

from common.generator import ImageGenerator
from common.seeding import generators, image_seed
from reward_models.data import describe_example, orm_example, save_image, write_examples
from reward_models.rollouts import Labeller

__all__ = ["FINALS", "FINALS_DESCRIBE", "build_judge_finals"]

FINALS = "finals.jsonl"
FINALS_DESCRIBE = "finals_describe.jsonl"


def build_judge_finals(pipe: ImageGenerator, lines: Sequence[dict], labeller: Labeller, out: str | Path, *,
                       per_line: int, seed: int, sampling: dict[str, Any], batch_size: int = 64,
                       describer: Callable[[Image.Image], str] | None = None) -> dict[str, Any]:
    """Draw ``per_line`` images of every line with ``pipe(prompts, generator=..., **sampling)``, save them under
    ``out/images/`` and write :data:`FINALS` (and :data:`FINALS_DESCRIBE` with a ``describer``); returns the counts
    (examples, accepted, per tag)."""
    if per_line < 1 or batch_size < 1:
        raise ValueError(f"build_judge_finals: per_line and batch_size must be >= 1, got {per_line}, {batch_size}")
    root = Path(out)
    jobs = [(i, k) for i in range(len(lines)) for k in range(per_line)]
    orm, describe = [], []
    accepted: Counter = Counter()
    seen: Counter = Counter()
    with tqdm(total=len(jobs), desc="judge finals", dynamic_ncols=True) as bar:
        for start in range(0, len(jobs), batch_size):
            batch = jobs[start:start + batch_size]
            images = pipe([lines[i]["prompt"] for i, _ in batch],
                          generator=generators([image_seed(seed, i, k) for i, k in batch]), **sampling).images
            for (i, k), image in zip(batch, images):
                line, name = lines[i], f"{i:05d}_f{k:03d}"
                verdict = labeller(line, image)
                path = save_image(image, root, name)
                orm.append(orm_example(name, line["prompt"], path, verdict))
                if describer is not None:
                    describe.append(describe_example(name, path, describer(image)))
                seen[line["tag"]] += 1
                accepted[line["tag"]] += bool(verdict.correct)
            bar.update(len(batch))
    write_examples(root / FINALS, orm)
    if describer is not None:
        write_examples(root / FINALS_DESCRIBE, describe)
    return {"examples": len(orm), "accepted": sum(accepted.values()),
            "by_tag": {tag: {"examples": n, "accepted": accepted[tag]} for tag, n in seen.items()}}
