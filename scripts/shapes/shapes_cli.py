"""Glue of ``scripts/shapes/quickstart.sh``: prompt files, reference rows, evaluation and the miniature Table 1.

    python scripts/shapes/shapes_cli.py prepare  --data shapes32 --out RUN [--prompts-per-task N]
    python scripts/shapes/shapes_cli.py chance   --vq DIR --run RUN --out RUN/rows/chance/images
    python scripts/shapes/shapes_cli.py tokenize --vq DIR --data shapes32 --out DIR [--source space|split]
    python scripts/shapes/shapes_cli.py judge-data --showo DIR --data shapes32 --out DIR [--images-per-prompt N]
    python scripts/shapes/shapes_cli.py guidance --showo DIR --out DIR [--scales 1.75 3 5 8]
    python scripts/shapes/shapes_cli.py export --src DIR --out DIR [--dtype bfloat16]
    python scripts/shapes/shapes_cli.py tiny-judge --out DIR
    python scripts/shapes/shapes_cli.py evaluate --run RUN --images DIR --name NAME [--forward-passes F]
    python scripts/shapes/shapes_cli.py table    --run RUN --row NAME=PATH|'NAME=not run: why' ... [--grid DIR ...]

``prepare`` writes the eval split as GenEval metadata (``RUN/prompts/``; ``--prompts-per-task`` keeps the first N
lines of each task, the reduced CI setting), the train split's prompts as text (``RUN/prompts/train_prompts.txt``:
the DPO recipes' prompts; same reduction) and renders ground-truth scenes for it (``RUN/rows/ground_truth/images``:
the detector's upper bound, a sanity row). ``chance`` decodes uniformly random codes with the tokenizer (the floor).
``evaluate`` judges a folder with the exact shapes detector into ``<images>/../eval/summary.json`` (the generator
forward passes per image, for the scaling plot, from ``--forward-passes`` or ``scripts/search.py``'s ``cost.json``).
``guidance`` sweeps the guidance scale on train-split prompts (how ``configs/model/shapes_bundle.yaml``'s was
chosen). ``table`` prints the table (percent), writes ``table.md`` / ``table.json``, the scaling plot and a candidate
grid.
"""
from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import torch
from omegaconf import OmegaConf
from safetensors import safe_open
from safetensors.torch import save

from eval.geneval.layout import atomic_write_bytes, atomic_write_text, load_image, write_prompt_folder
from eval.geneval.prompts import load_class_names, load_prompts
from eval.shapes.data import (CLASS_NAMES_NAME, CONFIG_DIR, METADATA_NAME, build_suite, load_data_config,
                              tokenize_training_set, write_prompt_files)
from eval.shapes.render import image_grid, render_scene, scene_seed
from eval.shapes.report import (Row, evaluate_shapes_folder, markdown_table, scaling_plot, table_rows,
                                write_table_json)
from eval.shapes.judge_data import SELF_CORRECTION_DIR, build_judge_data
from eval.shapes.suite import TRAINING_SOURCES, training_lines
from reward_models.tiny import build_tiny_llava_onevision
from showo.factory import load_bundle
from showo.magvit import MAGVITv2, to_pil
from showo.scheduler import MaskGITScheduler
from showo.seeding import generators, image_seed


TRAIN_PROMPTS_NAME = "train_prompts.txt"


def _prompt_paths(run: Path) -> tuple[Path, Path]:
    return run / "prompts" / METADATA_NAME, run / "prompts" / CLASS_NAMES_NAME


def _first_per_task(lines: list[dict], per_task: int | None) -> list[dict]:
    """The first ``per_task`` lines of every tag (all lines when ``None``), in suite order."""
    if per_task is None:
        return list(lines)
    seen: dict[str, int] = {}
    kept = []
    for line in lines:
        seen[line["tag"]] = seen.get(line["tag"], 0) + 1
        if seen[line["tag"]] <= per_task:
            kept.append(line)
    return kept


def prepare(args: argparse.Namespace) -> None:
    suite = build_suite(args.data)
    lines = _first_per_task(suite.eval, args.prompts_per_task)
    run = Path(args.out)
    metadata = write_prompt_files(run / "prompts", lines, suite.config.world)
    train = _first_per_task(suite.train, args.prompts_per_task)
    atomic_write_text(run / "prompts" / TRAIN_PROMPTS_NAME, "".join(line["prompt"] + "\n" for line in train))
    atomic_write_text(run / "data.json", json.dumps({"data": args.data, "images_per_prompt": args.images_per_prompt,
                                                     "eval_prompts": len(lines)}) + "\n")
    specs = load_prompts(metadata, load_class_names(_prompt_paths(run)[1]))
    out = run / "rows" / "ground_truth" / "images"
    for spec in specs:
        if not (out / f"{spec.index:05d}" / "metadata.jsonl").is_file():
            images = [render_scene(spec.raw, scene_seed(args.seed, spec.index, k), suite.config.world)[0]
                      for k in range(args.images_per_prompt)]
            write_prompt_folder(out, spec, images)
    print(f"{len(lines)} eval prompts ({args.data}) -> {metadata}; ground truth -> {out}")


def chance(args: argparse.Namespace) -> None:
    """Uniformly random codes per image (seeded per (prompt, sample)), decoded by the trained tokenizer."""
    run = Path(args.run)
    settings = json.loads((run / "data.json").read_text())
    metadata, names = _prompt_paths(run)
    vq = MAGVITv2.from_pretrained(args.vq)
    for spec in load_prompts(metadata, load_class_names(names)):
        codes = torch.stack([
            torch.randint(0, vq.config.codebook_size, (vq.config.num_codes,),
                          generator=torch.Generator().manual_seed(image_seed(args.seed, spec.index, k)))
            for k in range(settings["images_per_prompt"])])
        with torch.no_grad():
            write_prompt_folder(args.out, spec, to_pil(vq.decode(codes)))
    print(f"random-code images -> {args.out}")


def tokenize(args: argparse.Namespace) -> None:
    """The training lines rendered and tokenized with a trained MAGVIT-v2 (the Show-o recipe's dataset)."""
    stats = tokenize_training_set(MAGVITv2.from_pretrained(args.vq), build_suite(args.data), args.out,
                                  source=args.source, images_per_prompt=args.images_per_prompt,
                                  images_per_tag=args.images_per_tag, seed=args.seed)
    print(f"tokenized {stats['images']} images of {stats['lines']} training lines ({stats['source']}; per task "
          f"{stats['images_per_tag']}) -> {args.out}")


def judge_data(args: argparse.Namespace) -> None:
    """Judge training data of every task: the tiny Show-o's paths on training prompts (never the eval split's),
    labelled by GenEval."""
    suite = build_suite(args.data)
    guidance = args.guidance_scale
    if guidance is None:  # the shapes experiments' sampling (configs/model/shapes_bundle.yaml)
        guidance = float(OmegaConf.load(CONFIG_DIR / "model" / "shapes_bundle.yaml").sampling.guidance_scale)
    counts = build_judge_data(load_bundle(args.showo), training_lines(suite, args.source), suite.config.world,
                              args.out, images_per_prompt=args.images_per_prompt, seed=args.seed,
                              guidance_scale=guidance, num_inference_steps=args.steps)
    for task, c in counts.items():
        if task == SELF_CORRECTION_DIR:
            print(f"self-correction groups: {c['examples']:6d} rejected paths, {c['yes']:6d} with an own accepted "
                  f"image (the rest: a rendered scene) -> {Path(args.out) / task}/")
        else:
            print(f"judge data {task:10s}: {c['examples']:6d} examples, {c['yes']:6d} yes -> "
                  f"{Path(args.out) / task}.jsonl")


def tiny_judge(args: argparse.Namespace) -> None:
    """A freshly initialised tiny LLaVA-OneVision judge directory (the starting point of scripts/train_judge.py)."""
    path = build_tiny_llava_onevision(args.out, seed=args.seed, image_size=args.image_size, patch_size=args.patch_size,
                                      hidden_size=args.hidden_size)
    print(f"tiny LLaVA-OneVision judge -> {path}")


def evaluate(args: argparse.Namespace) -> None:
    run = Path(args.run)
    settings = json.loads((run / "data.json").read_text())
    metadata, names = _prompt_paths(run)
    images = Path(args.images)
    forward_passes = args.forward_passes
    cost_path = images.parent / "cost.json"
    if forward_passes is None and cost_path.is_file():  # scripts/search.py's cost summary: passes over all slots
        cost = json.loads(cost_path.read_text())
        forward_passes = cost["generator_forward_passes"] / max(cost["slots"], 1)
    extra = {"forward_passes_per_image": forward_passes} if forward_passes is not None else {}
    record = evaluate_shapes_folder(images, images.parent / "eval", metadata, names,
                                    load_data_config(settings["data"]).world, args.name,
                                    settings["images_per_prompt"], extra)
    overall = record["scores"]["overall"]
    print(f"{args.name}: overall {'–' if overall is None else f'{100 * overall:.1f}'} % "
          f"on {record['scores']['total_images']} images -> {images.parent / 'eval' / 'summary.json'}")


def guidance(args: argparse.Namespace) -> None:
    """Pick the guidance scale on *training* prompts (never the eval split): the first ``--prompts-per-task``
    train-split lines of every task, ``images_per_prompt`` images per scale, judged like a table row; prints a table and writes
    ``OUT/guidance.{md,json}``."""
    suite = build_suite(args.data)
    out = Path(args.out)
    lines = _first_per_task(suite.train, args.prompts_per_task)
    metadata = write_prompt_files(out / "prompts", lines, suite.config.world)
    specs = load_prompts(metadata, load_class_names(out / "prompts" / CLASS_NAMES_NAME))
    pipe = load_bundle(args.showo).pipeline(MaskGITScheduler())
    entries = []
    for scale in args.scales:
        images = out / f"cfg_{scale:g}" / "images"
        for spec in specs:
            if (images / f"{spec.index:05d}" / "metadata.jsonl").is_file():
                continue  # resume
            seeds = [image_seed(args.seed, spec.index, k) for k in range(args.images_per_prompt)]
            with torch.no_grad():
                result = pipe([spec.prompt] * len(seeds), guidance_scale=scale, num_inference_steps=args.steps,
                              generator=generators(seeds))
            write_prompt_folder(images, spec, result.images)
        evaluate_shapes_folder(images, images.parent / "eval", metadata, out / "prompts" / CLASS_NAMES_NAME,
                               suite.config.world, f"CFG {scale:g}", args.images_per_prompt)
        entries.append((f"CFG {scale:g}", str(images.parent / "eval" / "summary.json")))
    rows = table_rows(entries)
    text = markdown_table(rows)
    atomic_write_text(out / "guidance.md", text)
    write_table_json(out / "guidance.json", rows)
    print(f"{len(lines)} train-split prompts x {args.images_per_prompt} images, {args.steps} steps:\n{text}")


def export(args: argparse.Namespace) -> None:
    """Copy a checkpoint directory with its floating-point weights stored in ``--dtype`` (how the committed
    checkpoints fit the size budget: they load into float32 models). Folders named in ``--keep`` stay as they are,
    those in ``--exclude`` are left out (e.g. the self-correction Show-o's ``vq/``: the searched model decodes)."""
    src, out = Path(args.src), Path(args.out)
    if not src.is_dir():
        raise SystemExit(f"export: source directory not found: {src}")
    dtype = getattr(torch, args.dtype)
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        rel = path.relative_to(src)
        if set(rel.parts[:-1]) & set(args.exclude):
            continue
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".safetensors" and not set(rel.parts[:-1]) & set(args.keep):
            with safe_open(str(path), "pt") as f:
                metadata = f.metadata()
                tensors = {k: f.get_tensor(k) for k in f.keys()}
            tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
            atomic_write_bytes(target, save(tensors, metadata=metadata))
        else:
            atomic_write_bytes(target, path.read_bytes())
    print(f"{src} -> {out} (floating-point weights in {args.dtype}, kept: {args.keep}, left out: {args.exclude})")


def _rows(specs: list[str]) -> list[Row]:
    rows = []
    for spec in specs:
        name, _, value = spec.partition("=")
        if value.startswith("not run:"):
            rows.append(Row(name, reason=value.removeprefix("not run:").strip()))
        else:
            rows.extend(table_rows([(name, value)]))
    return rows


def candidate_grid(image_dirs: list[str], path: Path, prompts: int = 6) -> None:
    """Rows = (method, prompt), columns = its samples; the first ``prompts`` prompt folders of every method."""
    images, labels, nrow = [], [], 1
    for spec in image_dirs:
        name, _, folder = spec.partition("=")
        for prompt_dir in sorted(p for p in Path(folder).iterdir() if p.name.isdigit())[:prompts]:
            samples = sorted((prompt_dir / "samples").glob("*.png"))
            nrow = max(nrow, len(samples))
            for k, sample in enumerate(samples):
                images.append(load_image(sample).resize((64, 64), resample=0))
                labels.append(f"{name[:10]} p{int(prompt_dir.name)}" if k == 0 else "")
    if images:
        png = io.BytesIO()
        image_grid(images, nrow=nrow, labels=labels).save(png, format="PNG")
        atomic_write_bytes(path, png.getvalue())


def table(args: argparse.Namespace) -> None:
    run = Path(args.run)
    rows = _rows(args.row)
    text = markdown_table(rows)
    atomic_write_text(run / "table.md", text)
    write_table_json(run / "table.json", rows)
    plot = scaling_plot(rows, run / "scaling.png", title="shapes world: accuracy vs generator compute")
    candidate_grid(args.grid or [], run / "candidates.png")
    print(text)
    print(f"table -> {run / 'table.md'}; scaling plot -> {plot}; candidate grid -> {run / 'candidates.png'}")


def _add_source(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", choices=TRAINING_SOURCES, default="space",
                   help="space: every prompt but the eval split's; split: the suite's train lines")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--data", default="shapes32")
    p.add_argument("--out", required=True)
    p.add_argument("--prompts-per-task", type=int, default=None)
    p.add_argument("--images-per-prompt", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=prepare)
    p = sub.add_parser("chance")
    p.add_argument("--vq", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=chance)
    p = sub.add_parser("tokenize")
    p.add_argument("--vq", required=True)
    p.add_argument("--data", default="shapes32")
    p.add_argument("--out", required=True)
    _add_source(p)
    p.add_argument("--images-per-prompt", type=int, default=8)
    p.add_argument("--images-per-tag", type=int, default=4096)
    p.add_argument("--seed", type=int, default=1000)
    p.set_defaults(func=tokenize)
    p = sub.add_parser("judge-data")
    p.add_argument("--showo", required=True, help="Show-o bundle directory")
    p.add_argument("--data", default="shapes32")
    p.add_argument("--out", required=True)
    _add_source(p)
    p.add_argument("--images-per-prompt", type=int, default=4)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--guidance-scale", type=float, default=None,
                   help="default: sampling.guidance_scale of configs/model/shapes_bundle.yaml")
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=judge_data)
    p = sub.add_parser("guidance")
    p.add_argument("--showo", required=True, help="Show-o bundle directory")
    p.add_argument("--data", default="shapes32")
    p.add_argument("--out", required=True)
    p.add_argument("--scales", type=float, nargs="+", default=[1.75, 3.0, 5.0, 8.0])
    p.add_argument("--prompts-per-task", type=int, default=8)
    p.add_argument("--images-per-prompt", type=int, default=4)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=guidance)
    p = sub.add_parser("export")
    p.add_argument("--src", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--keep", nargs="*", default=["vq"], help="sub-folders copied unchanged (default: the MAGVIT-v2)")
    p.add_argument("--exclude", nargs="*", default=[], help="sub-folders left out")
    p.set_defaults(func=export)
    p = sub.add_parser("tiny-judge")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--patch-size", type=int, default=4, help="4: an object of shapes32 covers exactly 2 x 2 patches")
    p.add_argument("--hidden-size", type=int, default=128)
    p.set_defaults(func=tiny_judge)
    p = sub.add_parser("evaluate")
    p.add_argument("--run", required=True)
    p.add_argument("--images", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--forward-passes", type=float, default=None, help="generator forward passes per image (default: from <images>/../cost.json when present)")
    p.set_defaults(func=evaluate)
    p = sub.add_parser("table")
    p.add_argument("--run", required=True)
    p.add_argument("--row", action="append", required=True, help="NAME=summary.json or 'NAME=not run: reason'")
    p.add_argument("--grid", action="append", help="NAME=image_dir for the candidate grid")
    p.set_defaults(func=table)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
