"""Judge training data of the shapes world: the tiny Show-o's own generations on *train-split* prompts, every decoding
step kept, labelled by the GenEval judge with the exact detector (paper §4.2, §5, §6.4, §7).

One generation path gives examples of every task (:mod:`reward_models.data` builders):

* ``orm.jsonl``: final image, "yes" iff the GenEval judge accepts it (ORM, and PARM's best-of-N' data);
* ``prm.jsonl``: the predicted image of a few steps, labelled by the path's final verdict (fine-tuned PRM);
* ``clarity.jsonl``: predicted images of early ("no") and late ("yes") steps, the static rule of §6.4 scaled to the
  number of steps (``clarity_steps``);
* ``potential.jsonl``: predicted images of the clear steps, "yes" iff the path ends accepted (§6.4);
* ``reflection.jsonl``: final image, accepted -> "yes", rejected -> "no" + the judge's reasons as the explanation (§7);
* ``self_correction/``: PARM++'s self-correction fine-tuning groups (§7; :mod:`search.self_correction` format): every
  rejected path's codes + its explanation -> a good image of the same prompt: one of the Show-o's own accepted paths
  when it has any, else a rendered scene of the prompt tokenized by the bundle's MAGVIT-v2 (the tiny Show-o gets
  most prompts wrong most of the time, so its own successes alone would leave most explanations without a target).

The labels use ground truth only here, on training prompts; a judge trained on them sees nothing but
``(prompt, image)`` at test time, on held-out eval-split prompts, so every search row built with it is an honest
measurement (not an oracle).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from common.seeding import generators, image_seed
from eval.geneval.judge import judge_image
from eval.shapes.detector import ShapesColorClassifier, ShapesDetector
from eval.shapes.render import ShapesWorld, render_scene, scene_seed
from reward_models.data import (clarity_example, explanation, orm_example, potential_example, prm_example,
                                reflection_example, save_image, write_examples)
from search.self_correction import write_self_correction_dataset
from showo.data import tokenize_images
from showo.factory import ShowoBundle
from showo.magvit import image_transform
from showo.scheduler import MaskGITScheduler

TASK_FILES = ("orm", "prm", "clarity", "potential", "reflection")
SELF_CORRECTION_DIR = "self_correction"


def clarity_steps(num_steps: int) -> tuple[int, int]:
    """``(yes_after, no_before)`` of the static clarity rule (1-based steps), scaled from the paper's 11 / 10 of
    Show-o's 18 steps: e.g. 12 steps -> (7, 7): steps 1-6 unclear, 8-12 clear, step 7 unlabelled."""
    return round(11 * num_steps / 18), round(10 * num_steps / 18)


def _prm_steps(num_steps: int, count: int) -> list[int]:
    """``count`` 0-based steps spread over the path (first and last included)."""
    count = min(count, num_steps)
    return sorted({round(i * (num_steps - 1) / max(count - 1, 1)) for i in range(count)})


@torch.no_grad()
def build_judge_data(bundle: ShowoBundle, lines: Sequence[dict], world: ShapesWorld, root: str | os.PathLike,
                     images_per_prompt: int = 8, seed: int = 1, guidance_scale: float = 1.75,
                     num_inference_steps: int = 12, batch_size: int = 32, prm_steps_per_path: int = 4,
                     clarity_steps_per_path: int = 4) -> dict[str, dict[str, int]]:
    """Generate ``images_per_prompt`` paths per line, judge their final images, write ``<root>/<task>.jsonl`` for
    every task of :data:`TASK_FILES`, ``<root>/images/`` and ``<root>/self_correction/``. Returns
    ``{task: {"examples", "yes"}}`` (for ``self_correction``: groups, and how many have one of the Show-o's own
    images as the good image).

    Path ``k`` of line ``i`` uses ``image_seed(seed, i, k)`` (batch-size independent); the steps sampled for PRM /
    clarity examples are drawn from the same seed, so the data is a function of its arguments alone.
    """
    root = Path(root)
    pipe = bundle.pipeline(MaskGITScheduler())
    detector, colors = ShapesDetector(world), ShapesColorClassifier(world)
    yes_after, no_before = clarity_steps(num_inference_steps)
    prm = _prm_steps(num_inference_steps, prm_steps_per_path)
    jobs = [(i, k) for i in range(len(lines)) for k in range(images_per_prompt)]
    examples: dict[str, list] = {task: [] for task in TASK_FILES}
    final_tokens, verdicts = {}, {}
    for start in tqdm(range(0, len(jobs), batch_size), desc="judge data", dynamic_ncols=True):
        batch = jobs[start: start + batch_size]
        out = pipe([lines[i]["prompt"] for i, _ in batch], guidance_scale=guidance_scale,
                   num_inference_steps=num_inference_steps, return_trajectory=True,
                   generator=generators([image_seed(seed, i, k) for i, k in batch]))
        step_images = [pipe.decode(record.predicted_tokens) for record in out.trajectory]  # [steps][B]
        for row, ((i, k), image) in enumerate(zip(batch, out.images)):
            line, name = lines[i], f"{i:05d}_{k:02d}"
            prompt = line["prompt"]
            verdict = judge_image(line, detector.detect_one(image), image, colors, detector.class_names)
            final_tokens[i, k], verdicts[i, k] = out.tokens[row].cpu(), verdict
            final = save_image(image, root, name)
            examples["orm"].append(orm_example(name, prompt, final, verdict))
            examples["reflection"].append(reflection_example(name, prompt, final, verdict))
            rng = torch.Generator().manual_seed(image_seed(seed + 7919, i, k))
            clarity = torch.randperm(num_inference_steps, generator=rng)[:clarity_steps_per_path].tolist()
            for step in sorted(set(clarity) | set(prm)):
                step_name = f"{name}_s{step:02d}"
                path = save_image(step_images[step][row], root, step_name)
                if step in prm:
                    examples["prm"].append(prm_example(step_name, prompt, path, verdict))
                if step in clarity:
                    ex = clarity_example(step_name, prompt, path, step + 1, yes_after=yes_after, no_before=no_before)
                    if ex is not None:
                        examples["clarity"].append(ex)
                    ex = potential_example(step_name, prompt, path, step + 1, verdict, yes_after=yes_after)
                    if ex is not None:
                        examples["potential"].append(ex)
    counts = {SELF_CORRECTION_DIR: write_self_correction_groups(bundle, lines, world, root / SELF_CORRECTION_DIR,
                                                                jobs, final_tokens, verdicts, seed)}
    for task, items in examples.items():
        write_examples(root / f"{task}.jsonl", items)
        answer = -1 if task == "potential" else 1  # potential: the turn after the clarity "yes"
        yes = sum(ex.conversation[answer]["content"] == "yes" for ex in items)
        counts[task] = {"examples": len(items), "yes": yes}
    return counts


def write_self_correction_groups(bundle: ShowoBundle, lines: Sequence[dict], world: ShapesWorld,
                                 directory: str | os.PathLike, jobs: Sequence[tuple[int, int]], tokens: dict,
                                 verdicts: dict, seed: int) -> dict[str, int]:
    """One group per rejected path ``(i, k)``: its codes, its explanation, and the good image of line ``i`` (the
    ``k``-th of its accepted paths, cyclically, or the tokenized scene ``scene_seed(seed, i, k)``)."""
    accepted: dict[int, list[int]] = {}
    for i, k in jobs:
        if verdicts[i, k].correct:
            accepted.setdefault(i, []).append(k)
    rejected = [(i, k) for i, k in jobs if not verdicts[i, k].correct]
    rendered = [(i, k) for i, k in rejected if i not in accepted]
    scenes = {}
    if rendered:
        pixels = torch.stack([image_transform(render_scene(lines[i], scene_seed(seed, i, k), world)[0],
                                              world.canvas_size) for i, k in rendered])
        device = next(bundle.vq_model.parameters()).device
        scenes = dict(zip(rendered, tokenize_images(bundle.vq_model, pixels.to(device))))
    good = [tokens[i, accepted[i][k % len(accepted[i])]] if i in accepted else scenes[i, k] for i, k in rejected]
    n = bundle.layout.num_image_tokens
    write_self_correction_dataset(
        directory, [lines[i]["prompt"] for i, _ in rejected], [explanation(verdicts[job]) for job in rejected],
        torch.stack([tokens[job] for job in rejected]) if rejected else torch.zeros(0, n, dtype=torch.long),
        torch.stack([g.cpu() for g in good]) if good else torch.zeros(0, n, dtype=torch.long))
    return {"examples": len(rejected), "yes": len(rejected) - len(rendered)}
