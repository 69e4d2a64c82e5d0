"""Recipe: BiCoT-GRPO (T2I-R1, reference t2i_r1.md §6-§7) on accelerate. Reads top to bottom.

    python scripts/train_grpo.py +experiment=t2i_r1 run_dir=runs/t2i_r1                         # official settings
    accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml scripts/train_grpo.py +experiment=t2i_r1
    python scripts/train_grpo.py policy=showo model=shapes_bundle reward=shapes_orm data.prompts=train.txt  # Show-o

One optimizer step:

1. **prompts**: ``grpo.prompts_per_step`` prompts (official 16) from an epoch-wise permutation, each process taking a
   contiguous block of whole prompts (:class:`grpo.grouping.GroupSchedule`), so a group never spans processes;
2. **rollout** (no gradient): every prompt repeated ``grpo.group_size`` times (G = 8), one generator per sample
   seeded from its global position, the policy samples (Janus: semantic CoT then image tokens);
3. **rewards**: the reward ensemble scores every image of the process in one batched call, then the group z-score
   advantages (:mod:`grpo.rewards`);
4. **reference** (and, when a rollout is reused, behaviour) log-probs without gradient, micro-batch by micro-batch;
5. **update**: for each micro-batch of ``grpo.groups_per_micro_batch`` groups (accumulated, averaged over processes),
   the teacher-forced log-probs with gradient and :class:`grpo.objective.GRPOLoss`; the divergence guard, clipping,
   the optimizer and the learning-rate schedule. ``grpo.num_iterations > 1`` reuses a rollout for that many optimizer
   steps (PPO clipping then matters).

One run directory (:mod:`common.rundir`) holds ``config.yaml``, ``run.json``, ``batch.json``, ``metrics.jsonl``
(``loss``, ``kl``, ``rewards/<name>/mean|std``, ``cot_length``, ``advantage/zero_std_groups``, ...),
``samples.jsonl`` (the main process's CoTs and rewards every ``log_samples_every`` steps), ``checkpoints/step_<k>/``
(resumed automatically), ``final/`` (a checkpoint of the generator's own format) and ``reward_curve.png``.
Samples are seeded from (seed, rollout, position, sample) only, so resuming and the process count do not change them.
"""
from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import hydra
import torch
from accelerate import Accelerator, PartialState
from hydra.utils import instantiate
from omegaconf import DictConfig
from tqdm.auto import tqdm

from common.io import atomic_write_json, atomic_write_text
from common.recipe import check, open_run
from common.training import after_step, check_step, prepare_resumable, recipe_logger, total_grad_norm
from common.validate import Bool, Choice, ConfigError, File, Float, Int
from grpo.data import load_prompts
from grpo.grouping import GroupSchedule, sample_generators
from grpo.plots import reward_curve
from grpo.policy import LogProbModule, freeze
from grpo.rewards import assign_rewards, score_samples
from grpo.trainer import accumulation, frozen_reference, gathered_metrics, generation_model, micro_batch_logps

SETTINGS = (File("data.prompts"), Bool("data.shuffle"), Int("grpo.group_size", min=2),
            Int("grpo.prompts_per_step", min=1), Int("grpo.groups_per_micro_batch", min=1),
            Int("grpo.num_iterations", min=1), Bool("reference.enabled"), Int("train.max_steps", min=1),
            Int("train.checkpoint_every", min=1), Int("train.keep_checkpoints", min=1),
            Float("train.max_grad_norm", min=0, optional=True), Choice("train.mixed_precision", ["no", "fp16", "bf16"]),
            Int("train.stop_after_steps", min=1, optional=True), Int("log_samples_every", min=1, optional=True),
            Int("seed"))
IGNORE = ("train.stop_after_steps", "train.keep_checkpoints", "wandb", "log_samples_every")


def check_schedule(cfg: DictConfig) -> None:
    """A reused rollout must not straddle a checkpoint (resume regenerates rollouts only at their first step)."""
    mu, tc = cfg.grpo.num_iterations, cfg.train
    if tc.max_steps % mu or tc.checkpoint_every % mu:
        raise ConfigError(f"train_grpo: train.max_steps ({tc.max_steps}) and train.checkpoint_every "
                          f"({tc.checkpoint_every}) must be multiples of grpo.num_iterations ({mu})")
    if cfg.grpo.loss.beta > 0 and not cfg.reference.enabled:
        raise ConfigError(f"train_grpo: grpo.loss.beta = {cfg.grpo.loss.beta} needs reference.enabled = true "
                          "(or set grpo.loss.beta = 0 to train without a reference)")


def check_deepspeed_accumulation(accelerator, accum: int, g: DictConfig) -> None:
    """DeepSpeed's own accumulation count (its config file's) wins over the Accelerator's: it must be the derived one."""
    plugin = accelerator.state.deepspeed_plugin
    value = None if plugin is None else plugin.deepspeed_config.get("gradient_accumulation_steps")
    if value not in (None, "auto", accum):
        raise ConfigError(f"train_grpo: {accum} accumulation steps are needed (grpo.prompts_per_step = "
                          f"{g.prompts_per_step} over {accelerator.num_processes} processes x "
                          f"grpo.groups_per_micro_batch = {g.groups_per_micro_batch}) but the DeepSpeed config sets "
                          f"{value}: set deepspeed_config.gradient_accumulation_steps "
                          f"(or accelerate launch --gradient_accumulation_steps {accum})")


def run(cfg: DictConfig) -> Path:
    """Train; returns the ``final/`` checkpoint (or the run dir if stopped early by ``train.stop_after_steps``)."""
    check(cfg, "train_grpo", SETTINGS)
    check_schedule(cfg)
    g, tc = cfg.grpo, cfg.train
    state = PartialState(cpu=str(cfg.device) == "cpu")
    accum = accumulation(g.prompts_per_step, g.groups_per_micro_batch, state.num_processes)
    accelerator = Accelerator(cpu=str(cfg.device) == "cpu", mixed_precision=tc.mixed_precision,
                              gradient_accumulation_steps=accum)
    check_deepspeed_accumulation(accelerator, accum, g)

    # 1. prompts, generator, reward ensemble, objective (errors here leave nothing on disk)
    prompts = load_prompts(cfg.data.prompts)
    policy = instantiate(cfg.policy)(instantiate(cfg.model.bundle))
    judge = instantiate(cfg.reward)
    loss_fn, advantage_fn = instantiate(g.loss), instantiate(g.advantage)
    schedule = GroupSchedule(len(prompts), g.prompts_per_step, cfg.seed, cfg.data.shuffle)
    reference = frozen_reference(policy.model, accelerator.device, cfg.reference.dtype) if cfg.reference.enabled else None
    trainable = freeze(policy.model, policy.frozen)
    run_dir = open_run(cfg, ignore=IGNORE, main_process=accelerator.is_main_process, device=accelerator.device).path
    if accelerator.is_main_process:
        atomic_write_json(run_dir / "batch.json", {
            "prompts_per_step": g.prompts_per_step, "group_size": g.group_size, "processes": accelerator.num_processes,
            "groups_per_micro_batch": g.groups_per_micro_batch, "gradient_accumulation_steps": accum,
            "trainable_parameters": sum(p.numel() for p in policy.model.parameters() if p.requires_grad),
            "trainable_tensors": len(trainable), "frozen_prefixes": list(policy.frozen)})

    # 2. optimizer over the trainable parameters, learning-rate schedule stepped once per optimizer step
    optimizer = instantiate(tc.optimizer)([p for p in policy.model.parameters() if p.requires_grad])
    lr_schedule = instantiate(tc.lr_scheduler)(optimizer, num_training_steps=tc.max_steps)
    module = LogProbModule(policy.model, policy).train()
    module, optimizer, start = prepare_resumable(accelerator, run_dir, module, optimizer, lr_schedule,
                                                 keep=tc.keep_checkpoints)
    if accelerator.is_main_process:
        drop_samples_after(run_dir / "samples.jsonl", start)
    accelerator.wait_for_everyone()
    logger = recipe_logger(accelerator, run_dir, start, cfg)

    # 3. the loop: a rollout every num_iterations optimizer steps, one update per optimizer step
    stop = tc.max_steps if tc.stop_after_steps is None else min(tc.max_steps, start + tc.stop_after_steps)
    batch = None
    for step in tqdm(range(start, stop), initial=start, total=tc.max_steps, desc="grpo",
                     disable=not accelerator.is_local_main_process):
        if step % g.num_iterations == 0:
            batch = rollout_step(cfg, accelerator, module, policy, judge, reference, schedule, prompts,
                                 step // g.num_iterations, advantage_fn)
        metrics = update_step(cfg, accelerator, module, optimizer, policy, loss_fn, batch, run_dir, step)
        lr_schedule.step()
        logger.log(step + 1, {**batch["metrics"], **metrics, "lr": lr_schedule.get_last_lr()[0]})
        log_samples(cfg, accelerator, run_dir, step, batch)
        after_step(accelerator, run_dir, step + 1, every=tc.checkpoint_every, last=tc.max_steps,
                   keep=tc.keep_checkpoints, model=module)
    logger.close()
    if accelerator.is_main_process:
        reward_curve(run_dir / "metrics.jsonl", run_dir / "reward_curve.png", title=f"GRPO reward ({run_dir.name})")
    if stop < tc.max_steps:
        return run_dir

    # 4. the trained generator in its own checkpoint format (gathered full weights under FSDP / ZeRO-3)
    weights = accelerator.get_state_dict(module)
    if accelerator.is_main_process:
        policy.export({k.removeprefix("model."): v for k, v in weights.items()}, run_dir / "final")
    accelerator.wait_for_everyone()
    return run_dir / "final"


def rollout_step(cfg, accelerator, module, policy, judge, reference, schedule, prompts, index, advantage_fn) -> dict:
    """Sample this process's groups, score them, and attach advantages, reference and behaviour log-probs."""
    g = cfg.grpo
    rank, world = accelerator.process_index, accelerator.num_processes
    indices = schedule.rank_prompts(index, rank, world)
    rows = [prompts[i] for i in indices for _ in range(g.group_size)]
    gens = sample_generators(cfg.seed, index, list(schedule.rank_positions(rank, world)), g.group_size,
                             device=accelerator.device)
    t0 = time.perf_counter()
    with generation_model(accelerator, module) as unwrapped, accelerator.autocast():
        samples = policy.rollout(unwrapped.model, rows, gens, g.group_size)
    t1 = time.perf_counter()
    rollout = samples.rollout
    rollout.prompt_index = torch.tensor([i for i in indices for _ in range(g.group_size)])
    assign_rewards(rollout, score_samples(judge, rows, samples.images, g.group_size), advantage_fn)
    t2 = time.perf_counter()
    rollout = rollout.select(range(len(rollout)))  # a copy: the policy's tensors stay untouched
    for key, value in list(rollout.inputs.items()):
        rollout.inputs[key] = value.to(accelerator.device)
    if reference is not None:
        rollout.ref_logps = micro_batch_logps(lambda mb: policy.logps(reference, mb), rollout, g.groups_per_micro_batch,
                                              accelerator.autocast)
    if g.num_iterations > 1:  # the behaviour policy, for the ratio of the reused rollout's later steps
        rollout.old_logps = micro_batch_logps(module, rollout, g.groups_per_micro_batch, accelerator.autocast)
    metrics = gathered_metrics(accelerator, rollout)
    metrics.update({"rollout/forward_passes_per_sample": samples.forward_passes, "time/rollout": t1 - t0,
                    "time/reward": t2 - t1, "time/reference": time.perf_counter() - t2})
    return {"rollout": rollout, "texts": samples.texts, "metrics": metrics}


def update_step(cfg, accelerator, module, optimizer, policy, loss_fn, batch, run_dir, step) -> dict:
    """One optimizer step over the process's micro-batches; metrics are means over every group of the step."""
    g, tc = cfg.grpo, cfg.train
    t0 = time.perf_counter()
    micro = batch["rollout"].micro_batches(g.groups_per_micro_batch)
    sums = defaultdict(float)
    for mb in micro:
        with accelerator.accumulate(module):
            logps = module(mb)
            out = loss_fn(logps, {k: v.to(accelerator.device) for k, v in policy.masks(mb).items()},
                          mb.advantages.to(accelerator.device), g.group_size,
                          ref_logps=mb.ref_logps, old_logps=mb.old_logps)
            accelerator.backward(out.loss)  # accelerate divides by the accumulation steps: the mean over micro-batches
            for name, value in out.metrics.items():
                sums[name] += value / len(micro)
            if accelerator.sync_gradients:
                grad_norm = total_grad_norm(accelerator, module, tc.max_grad_norm)
                names = sorted(sums)
                reduced = accelerator.reduce(torch.tensor([sums[n] for n in names], device=accelerator.device),
                                             reduction="mean")
                metrics = dict(zip(names, reduced.tolist()))
                guarded = {"loss": metrics["loss"]} if grad_norm is None else {"loss": metrics["loss"], "grad_norm": grad_norm}
                check_step(accelerator, run_dir, step + 1, **guarded)  # DeepSpeed reports no norm before its step
            optimizer.step()
            optimizer.zero_grad()
    if grad_norm is not None:
        metrics["grad_norm"] = float(grad_norm)
    return {**metrics, "time/update": time.perf_counter() - t0}


def log_samples(cfg, accelerator, run_dir: Path, step: int, batch: dict) -> None:
    """Append the main process's CoTs and rewards of this rollout to ``samples.jsonl`` (first step of a rollout)."""
    every = cfg.log_samples_every
    if every is None or not accelerator.is_main_process or step % cfg.grpo.num_iterations or (step + 1) % every:
        return
    rollout = batch["rollout"]
    texts = batch["texts"] or [None] * len(rollout)
    with open(run_dir / "samples.jsonl", "a") as fh:
        for i, prompt in enumerate(rollout.prompts):
            fh.write(json.dumps({"step": step + 1, "prompt": prompt, "cot": texts[i],
                                 "reward": float(rollout.reward[i]), "advantage": float(rollout.advantages[i]),
                                 **{f"rewards/{k}": float(v[i]) for k, v in rollout.rewards.items()}}) + "\n")


def drop_samples_after(path: Path, step: int) -> None:
    """On resume, forget the sample lines of steps after the checkpoint (they are rolled out again)."""
    if path.is_file():
        kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        atomic_write_text(path, "".join(line + "\n" for line in kept))


if __name__ == "__main__":
    hydra.main(config_path="../configs", config_name="train_grpo", version_base="1.3")(run)()
