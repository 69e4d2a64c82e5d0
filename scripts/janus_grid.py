"""Recipe: a grid of images captioned with the semantic CoT each was drawn from (Janus-Pro + T2I-R1's CoT).

    python scripts/janus_grid.py prompts=prompts.txt run_dir=runs/janus_grid                  # the shapes tiny Janus
    python scripts/janus_grid.py model=janus_pro_7b +cot@model.cot=t2i_r1 prompts=prompts.txt device=cuda

One row per prompt, ``images_per_prompt`` columns; under every image its plan, word-wrapped in a TrueType font of
``font_size`` px (legible at 100 % zoom), above the prompt's row a header with the prompt. Small images are scaled up
to ``cell_size`` px with nearest-neighbour sampling (their codes' blocks stay visible), large ones down. Image ``k`` of
prompt ``i`` is drawn with its own generator seeded from (seed, i, k) -- the seeds of ``scripts/generate.py`` -- so a
cell is the same image (and plan) that recipe writes. Writes ``<run_dir>/grid.png`` and ``<run_dir>/cots.jsonl``
(``{"index", "sample", "prompt", "cot"}`` per image).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import hydra
import torch
from omegaconf import DictConfig
from PIL import Image, ImageDraw, ImageFont

from common.io import atomic_write_bytes, atomic_write_text, png_bytes
from common.recipe import build_generator, check, open_run
from common.seeding import generators, image_seed
from common.validate import File, Int
from eval.geneval.prompts import load_prompt_set

SETTINGS = (File("prompts"), File("class_names", optional=True), Int("images_per_prompt", min=1), Int("seed"),
            Int("batch_size", min=1), Int("cell_size", min=32), Int("font_size", min=6),
            Int("max_prompts", min=1, optional=True))
IGNORE = ("batch_size",)
PAD = 8


def wrap(text: str, font, width: int) -> list[str]:
    """Lines of ``text`` no wider than ``width`` px in ``font`` (a word longer than the width gets its own line)."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            trial = f"{line} {word}".strip()
            if line and font.getlength(trial) > width:
                lines.append(line)
                line = word
            else:
                line = trial
        lines.append(line)
    return lines


def captioned_grid(rows: Sequence[tuple[str, Sequence[Image.Image], Sequence[Optional[str]]]], cell: int,
                   font_size: int) -> Image.Image:
    """``rows`` = (header, images, captions): one grid row each, captions wrapped under their image."""
    font = ImageFont.load_default(size=font_size)
    line_h = font_size + 4
    ncol = max(len(images) for _, images, _ in rows)
    blocks = []
    for header, images, captions in rows:
        wrapped = [wrap(c or "(no CoT)", font, cell) for c in captions]
        blocks.append((header, images, wrapped, line_h * (1 + max(len(w) for w in wrapped))))
    width = PAD + ncol * (cell + PAD)
    height = PAD + sum(line_h + cell + caption_h + PAD for *_, caption_h in blocks)
    grid = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    y = PAD
    for header, images, wrapped, caption_h in blocks:
        draw.text((PAD, y), header, fill=(0, 0, 160), font=font)
        y += line_h
        for c, (image, lines) in enumerate(zip(images, wrapped)):
            x = PAD + c * (cell + PAD)
            resample = Image.NEAREST if image.width <= cell else Image.LANCZOS
            grid.paste(image.convert("RGB").resize((cell, cell), resample), (x, y))
            for k, line in enumerate(lines):
                draw.text((x, y + cell + 2 + k * line_h), line, fill=(0, 0, 0), font=font)
        y += cell + caption_h + PAD
    return grid


def run(cfg: DictConfig) -> Path:
    check(cfg, "janus_grid", SETTINGS)
    specs = load_prompt_set(cfg.prompts, cfg.class_names)[: cfg.max_prompts]
    _, pipe, sampling = build_generator(cfg.model)
    if not pipe.can_decode:
        raise ValueError("janus_grid: the model cannot decode images")
    run_dir = open_run(cfg, ignore=IGNORE, device=cfg.device).path
    jobs = [(spec, k) for spec in specs for k in range(cfg.images_per_prompt)]
    images, cots = [], []
    for start in range(0, len(jobs), cfg.batch_size):
        batch = jobs[start: start + cfg.batch_size]
        seeds = [image_seed(cfg.seed, spec.index, k) for spec, k in batch]
        with torch.no_grad():
            out = pipe([spec.prompt for spec, _ in batch], generator=generators(seeds, cfg.device), **sampling)
        images += out.images
        cots += out.cots if out.cots is not None else [None] * len(batch)
    n = cfg.images_per_prompt
    rows = [(f"{spec.index}: {spec.prompt}", images[i * n: (i + 1) * n], cots[i * n: (i + 1) * n])
            for i, spec in enumerate(specs)]
    atomic_write_bytes(run_dir / "grid.png", png_bytes(captioned_grid(rows, cfg.cell_size, cfg.font_size)))
    atomic_write_text(run_dir / "cots.jsonl", "".join(
        json.dumps({"index": spec.index, "sample": k, "prompt": spec.prompt, "cot": cot}) + "\n"
        for (spec, k), cot in zip(jobs, cots)))
    print(f"{len(images)} images of {len(specs)} prompts -> {run_dir / 'grid.png'}")
    return run_dir


if __name__ == "__main__":
    hydra.main(config_path="../configs", config_name="janus_grid", version_base="1.3")(run)()
