"""Fast mode's effect on quality in the shapes world (issue 20 item 4; docs/speed.md "Fast mode").

    python benchmarks/fast_mode_quality.py --out /tmp/fastq [--threads 1] [--compile]

The committed tiny Show-o (``checkpoints/shapes/showo``) generates the shapes baseline on the held-out prompts of
the quickstart (``eval.shapes.rows.write_prompt_sets`` over ``configs/data/shapes32.yaml``) twice, with the same
per-image seeds: exact mode and ``+fast@model.fast=bf16``, through ``scripts/generate.py +experiment=shapes/generate``
run in-process (4 images per prompt, 12 steps). Both are judged by the shapes GenEval judge
(``eval.shapes.report.evaluate_shapes_folder``) and compared slot by slot with the paired two-stage bootstrap of
``eval.stats`` (fast - exact). Also printed: how many images are pixel-identical between the modes, and wall times.
``--control`` adds exact mode with other seeds (``seed=1``) and the same interval for it: bf16 changes the draws, so
most fast-mode images differ from exact mode's, and reseeding alone shows how much a row moves when only they change.
``--bf16-head`` adds fast mode with its LM head in bf16 as well (``model.fast.float32_head=false``).
Every stage skips work already on disk (the recipe resumes; delete ``--out`` to start over).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from common.io import atomic_write_text, file_sha256
from eval.geneval.score import read_results
from eval.shapes.report import evaluate_shapes_folder
from eval.shapes.rows import write_prompt_sets
from eval.shapes.suite import build_shapes_suite
from eval.stats import geneval_score, paired_bootstrap, prompt_units, slot_verdicts

ROOT = Path(__file__).resolve().parents[1]
# row -> extra overrides of scripts/generate.py; "exact_seed1" (--control) is exact mode with other per-image seeds:
# how far a row moves when only its random draws change (the noise any fast-vs-exact difference must be read against)
# "fast_bf16_head" (--bf16-head) is fast mode with its LM head in bf16 too (model.fast.float32_head=false)
ROWS = {"exact": [], "fast": ["+fast@model.fast=bf16"], "exact_seed1": ["seed=1"],
        "fast_bf16_head": ["+fast@model.fast=bf16", "model.fast.float32_head=false"]}
OPTIONAL = {"exact_seed1": "control", "fast_bf16_head": "bf16_head"}


def generate_recipe():
    """``scripts/generate.py`` as a module (recipes are scripts, not library code)."""
    spec = importlib.util.spec_from_file_location("imagecot_recipe_generate", ROOT / "scripts" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def identical_images(a: Path, b: Path) -> tuple[int, int]:
    """(pixel-identical PNGs, images compared) between two GenEval image folders (PNG bytes are deterministic)."""
    files = sorted(p.relative_to(a) for p in a.glob("*/samples/*.png"))
    same = sum(file_sha256(a / f) == file_sha256(b / f) for f in files)
    return same, len(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--images-per-prompt", type=int, default=4)
    parser.add_argument("--images-per-task", type=int, default=None,
                        help="repeat every task's prompts until it has this many images (the quickstart's balanced "
                             "eval, images_per_task); a prompt's repeats count as one prompt in the bootstrap")
    parser.add_argument("--only", choices=sorted(ROWS), default=None,
                        help="generate and judge this row alone and stop (run the modes in parallel processes on the "
                             "same --out, then once more without --only to compare them from disk)")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--compile", action="store_true", help="fast mode with model.fast.compile=auto")
    parser.add_argument("--replicates", type=int, default=2000)
    parser.add_argument("--control", action="store_true", help="also exact mode with seed=1 (the reseeding noise)")
    parser.add_argument("--bf16-head", action="store_true", help="also fast mode with a bf16 LM head")
    args = parser.parse_args()
    out = args.out.resolve()

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        suite = build_shapes_suite(instantiate(compose(config_name="quickstart").data))
        paths = write_prompt_sets(out / "prompts", suite, images_per_task=args.images_per_task,
                                  images_per_prompt=args.images_per_prompt)
        recipe, times, verdicts, units = generate_recipe(), {}, {}, {}
        rows = {k: v for k, v in ROWS.items() if k not in OPTIONAL or getattr(args, OPTIONAL[k])}
        if args.only is not None:
            rows = {args.only: ROWS[args.only]}
        for mode, extra in rows.items():
            extra = extra + (["model.fast.compile=auto"] if args.compile and mode == "fast" else [])
            cfg = compose(config_name="generate", overrides=[
                "+experiment=shapes/generate", f"prompts={paths['metadata']}", f"class_names={paths['class_names']}",
                f"images_per_prompt={args.images_per_prompt}", f"model.sampling.num_inference_steps={args.steps}",
                "grid=false", f"threads={args.threads}", f"run_dir={out / 'rows' / mode}", *extra])
            wall_file = out / "rows" / mode / "generation_wall.json"  # the wall of the process that generated it
            known = json.loads(wall_file.read_text()) if wall_file.is_file() else None
            start = time.perf_counter()
            run_dir = recipe.run(cfg)
            if known is None:
                known = {"wall_s": time.perf_counter() - start, "load_average": list(os.getloadavg())}
                atomic_write_text(wall_file, json.dumps(known) + "\n")
            times[mode] = known["wall_s"]
            summary = evaluate_shapes_folder(run_dir / "images", run_dir / "eval", paths["metadata"],
                                             paths["class_names"], suite.config.world, f"baseline ({mode})",
                                             args.images_per_prompt)
            records = read_results(run_dir / "eval" / "results.jsonl")
            verdicts[mode] = slot_verdicts(records)
            units |= prompt_units(records)  # a prompt's repeats (--images-per-task) are one bootstrap unit
            print(f"{mode}: overall {summary['scores']['overall']:.4f}, generation wall {times[mode]:.1f} s "
                  f"(load average then {known.get('load_average')})", flush=True)
    if args.only is not None:
        return
    delta = paired_bootstrap(verdicts["exact"], verdicts["fast"], replicates=args.replicates, units=units)
    same, total = identical_images(out / "rows" / "exact" / "images", out / "rows" / "fast" / "images")
    result = {**{k: geneval_score(v) for k, v in verdicts.items()}, "fast_minus_exact": delta.to_json(),
              "identical_images": same, "images": total, "generation_wall_s": times, "threads": args.threads,
              "compile": args.compile, "images_per_prompt": args.images_per_prompt,
              "images_per_task": args.images_per_task, "steps": args.steps}
    if args.bf16_head:
        head = paired_bootstrap(verdicts["exact"], verdicts["fast_bf16_head"], replicates=args.replicates, units=units)
        result["fast_bf16_head_minus_exact"] = head.to_json()
        print(f"fast, bf16 head {result['fast_bf16_head']:.4f}; - exact {head.estimate:+.4f} "
              f"[{head.low:+.4f}, {head.high:+.4f}]")
    if args.control:
        noise = paired_bootstrap(verdicts["exact"], verdicts["exact_seed1"], replicates=args.replicates, units=units)
        result["exact_seed1_minus_exact"] = noise.to_json()
        print(f"control: exact seed 1 {result['exact_seed1']:.4f}; seed 1 - seed 0 {noise.estimate:+.4f} "
              f"[{noise.low:+.4f}, {noise.high:+.4f}]")
    atomic_write_text(out / "fast_mode_quality.json", json.dumps(result, indent=2) + "\n")
    print(f"GenEval exact {result['exact']:.4f}, fast {result['fast']:.4f}; fast - exact {delta.estimate:+.4f} "
          f"[{delta.low:+.4f}, {delta.high:+.4f}] ({delta.level:.0%} paired bootstrap, {delta.replicates} replicates); "
          f"{same}/{total} images pixel-identical; written to {out / 'fast_mode_quality.json'}")


if __name__ == "__main__":
    main()
