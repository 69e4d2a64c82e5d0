"""BiCoT-GRPO step cost: rollout and update throughput, and where a step's time goes, measured in one run.

    python benchmarks/bench_grpo.py [--threads 2] [--steps 3] [--size mid] [--device cpu|cuda]

Builds a random Janus-Pro of the chosen size and random experts of T2I-R1's four reward classes (open_clip HPS,
GIT-VQA, GroundingDINO, the LLaVA-OneVision ORM: tiny, their share is a floor), then runs ``scripts/train_grpo.py``
for ``--steps`` + 1 optimizer steps (the first warms up and is not counted) with the official objective (beta 0.01,
frozen reference, token mean; G = 4, 2 prompts per step, one group per micro-batch). From the run's ``metrics.jsonl``
it prints samples/s of the rollouts (semantic CoT + image codes, no gradient) and of the updates (teacher-forced
passes with gradient, backward, optimizer), CoT and image tokens per second, and the share of the step's time in
rollouts, reward models, reference log-probs and updates: ratios of times measured in the same run.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIZES = {  # Janus LLM (layers x hidden), image raster, codebook; the VQ decoder doubles the raster into pixels
    "tiny": dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, grid=4, codebook_size=128),
    "mid": dict(num_hidden_layers=8, hidden_size=512, num_attention_heads=8, grid=16, codebook_size=4096),
}
PROMPTS = ["a photo of a red cat", "a photo of two dogs", "a photo of a cup left of a bench", "a photo of a blue bench"]
HPS_ARCH = "imagecot-bench-tiny-hps"


def build_world(root: Path, size: str) -> list[str]:
    """Random Janus + four random experts under ``root``; returns the reward overrides."""
    import open_clip
    import torch

    from janus.tiny import build_tiny_janus, write_hf_layout
    from reward_models.tiny import build_tiny_llava_onevision
    from reward_models.tiny_experts import build_tiny_git, build_tiny_grounding_dino

    words = sorted({w for p in PROMPTS for w in p.split()})
    write_hf_layout(build_tiny_janus(words, seed=0, **SIZES[size]), root / "janus")
    (root / "prompts.txt").write_text("".join(p + "\n" for p in PROMPTS))
    (root / f"{HPS_ARCH}.json").write_text(json.dumps({
        "embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}))
    open_clip.add_model_config(root / f"{HPS_ARCH}.json")
    torch.save(open_clip.create_model(HPS_ARCH, pretrained=None).state_dict(), root / "hps.pt")
    return [f"reward.judges.hps.arch={HPS_ARCH}", f"reward.judges.hps.weights={root / 'hps.pt'}",
            f"reward.judges.git.model_dir={build_tiny_git(root / 'git')}", "reward.judges.git.requirements.records=null",
            f"reward.judges.gdino.model_dir={build_tiny_grounding_dino(root / 'gdino')}",
            "reward.judges.gdino.requirements.records=null",
            f"reward.judges.orm.judge.model_dir={build_tiny_llava_onevision(root / 'orm')}",
            "reward.judges.orm.judge.dtype=float32"]


def run_recipe(root: Path, reward: list[str], steps: int, threads: int, device: str) -> list[dict]:
    from hydra import compose, initialize_config_dir

    spec = importlib.util.spec_from_file_location("train_grpo_bench", REPO / "scripts" / "train_grpo.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    devices = [f"reward.judges.{n}.device={device}" for n in ("hps", "git", "gdino")]
    with initialize_config_dir(str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train_grpo", overrides=[
            f"model.bundle.directory={root / 'janus'}", f"data.prompts={root / 'prompts.txt'}", f"run_dir={root / 'run'}",
            f"threads={threads}", f"device={device}", "grpo.group_size=4", "grpo.prompts_per_step=2",
            f"train.max_steps={steps + 1}", "train.mixed_precision=no", "policy.cot.max_new_tokens=32",
            "policy.gradient_checkpointing=false", "log_samples_every=null", *reward, *devices,
            f"reward.judges.orm.judge.device={device}"])
        recipe.run(cfg)
    return [json.loads(line) for line in (root / "run" / "metrics.jsonl").read_text().splitlines()]


def report(records: list[dict], size: str, samples: int, codes: int) -> None:
    timed = records[1:]  # step 1 warms up (allocations, first-call overheads)
    mean = {k: sum(r[k] for r in timed) / len(timed) for k in ("time/rollout", "time/reward", "time/reference",
                                                                 "time/update", "cot_length")}
    total = sum(mean[k] for k in ("time/rollout", "time/reward", "time/reference", "time/update"))
    print(f"size {size}: {samples} samples per step ({samples // 4} prompts x G = 4), {codes} image codes per sample, "
          f"mean CoT {mean['cot_length']:.1f} tokens; {len(timed)} timed steps")
    print(f"rollout: {samples / mean['time/rollout']:8.2f} samples/s  "
          f"({samples * (codes + mean['cot_length']) / mean['time/rollout']:9.1f} generated tokens/s, no gradient)")
    print(f"update : {samples / mean['time/update']:8.2f} samples/s  "
          f"({samples * (codes + mean['cot_length']) / mean['time/update']:9.1f} scored tokens/s, forward + backward)")
    print("share of a step: " + ", ".join(f"{k.split('/')[1]} {100 * mean[k] / total:4.1f} %"
                                          for k in ("time/rollout", "time/reward", "time/reference", "time/update"))
          + f"  (step {total:.2f} s)")
    print(f"ratio rollout / update time: x{mean['time/rollout'] / mean['time/update']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--size", default="mid", choices=list(SIZES))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        reward = build_world(root, args.size)
        records = run_recipe(root, reward, args.steps, args.threads, args.device)
    grid = SIZES[args.size]["grid"]
    print(f"{args.device}, {args.threads} threads, float32")
    report(records, args.size, samples=8, codes=grid * grid)


if __name__ == "__main__":
    main()
