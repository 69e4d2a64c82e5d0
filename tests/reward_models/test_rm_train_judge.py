"""Judge fine-tuning: loss/label helpers by hand, and the recipe on CPU with the tiny LLaVA-OneVision.

The recipe runs as a subprocess (as a user runs it): 3 steps lower the loss on a repeated batch; a run killed after
its step-2 checkpoint and restarted reproduces the uninterrupted run's losses exactly.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor

from reward_models.data import JudgeDataset, orm_example, potential_example, save_image, write_examples
from reward_models.tiny import QWEN_1_5_CHAT_TEMPLATE, build_tiny_llava_onevision
from reward_models.training import IGNORE_INDEX, JudgeCollator, answer_token_loss, assistant_labels

REPO = Path(__file__).resolve().parents[2]


@dataclass
class V:
    correct: bool
    reason: str = ""


def test_answer_token_loss_by_hand():
    # Two positions carry labels; uniform logits over V=4 give log(4) each; a confident correct logit gives ~0.
    logits = torch.zeros(1, 3, 4)
    logits[0, 1, 2] = 100.0  # position 1 predicts token 2 (the label at position 2)
    labels = torch.tensor([[IGNORE_INDEX, 3, 2]])
    loss, count = answer_token_loss(logits, labels)
    assert count == 2
    assert math.isclose(loss.item(), (math.log(4) + 0.0) / 2, rel_tol=1e-6)
    with pytest.raises(ValueError, match="no answer tokens"):
        answer_token_loss(logits, torch.full((1, 3), IGNORE_INDEX))


def test_assistant_labels_keep_answers_and_end_token():
    header, end = [7, 8], 9
    ids = torch.tensor([[1, 7, 8, 5, 9, 2, 7, 8, 6, 6, 9, 0]])
    labels = assistant_labels(ids, header, end)
    want = [IGNORE_INDEX] * 3 + [5, 9] + [IGNORE_INDEX] * 3 + [6, 6, 9] + [IGNORE_INDEX]
    assert labels.tolist() == [want]
    with pytest.raises(ValueError, match="no closing token"):
        assistant_labels(torch.tensor([[7, 8, 5]]), header, end)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_judge")
    model_dir = build_tiny_llava_onevision(root / "judge")
    data = root / "data"
    red = save_image(Image.new("RGB", (32, 32), (220, 20, 30)), data, "red")
    blue = save_image(Image.new("RGB", (40, 32), (30, 60, 230)), data, "blue")
    write_examples(data / "orm.jsonl", [orm_example("a", "a red car", red, V(True)), orm_example("b", "a red car", blue, V(False))])
    write_examples(data / "potential.jsonl", [potential_example("p", "a blue cup", blue, 14, V(True))])
    return root, model_dir, data


def test_collator_labels_only_assistant_text(setup):
    _, model_dir, data = setup
    processor = AutoProcessor.from_pretrained(model_dir)
    dataset = JudgeDataset([data / "orm.jsonl", data / "potential.jsonl"])
    batch = JudgeCollator(processor, chat_template=QWEN_1_5_CHAT_TEMPLATE)([dataset[0], dataset[1], dataset[2]])
    decoded = [processor.tokenizer.decode([t for t in row if t != IGNORE_INDEX]) for row in batch["labels"].tolist()]
    assert decoded == ["yes<|im_end|>", "no<|im_end|>", "yes<|im_end|>yes<|im_end|>"]
    assert batch["input_ids"].shape == batch["labels"].shape


def _run(root, model_dir, data, run_dir, *extra):
    cmd = [
        sys.executable, str(REPO / "scripts" / "train_judge.py"),
        f"model_dir={model_dir}", f"run_dir={run_dir}", f"judge_data.paths=[{data / 'orm.jsonl'}]",
        "per_device_batch_size=2", "optim.lr=2e-3", "optim.vision_lr=2e-3", "lr_scheduler.warmup_ratio=0",
        *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root)


def _losses(run_dir):
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["train/loss"] for r in map(json.loads, lines)}


@pytest.mark.slow
def test_recipe_learns_and_resumes_exactly(setup):
    root, model_dir, data = setup
    full = root / "run_full"
    proc = _run(root, model_dir, data, full, "max_steps=4", "checkpoint_every=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = _losses(full)
    assert sorted(losses) == [1, 2, 3, 4]
    # Two examples, batch of two: every step sees the same batch, so training must lower its loss.
    assert losses[3] < losses[1]
    assert (full / "final" / "model.safetensors").is_file() and (full / "config.yaml").is_file()

    killed = root / "run_killed"
    proc = _run(root, model_dir, data, killed, "max_steps=4", "checkpoint_every=2", "debug_exit_after_step=3")
    assert proc.returncode == 17, proc.stderr[-3000:]
    proc = _run(root, model_dir, data, killed, "max_steps=4", "checkpoint_every=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from" in proc.stdout + proc.stderr
    assert _losses(killed) == losses


def test_lora_trains_only_adapters(setup):
    from peft import LoraConfig, get_peft_model
    from transformers import LlavaOnevisionForConditionalGeneration

    from reward_models.training import parameter_groups

    _, model_dir, _ = setup
    model = LlavaOnevisionForConditionalGeneration.from_pretrained(model_dir)
    model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    groups = parameter_groups(model, lr=1e-3, vision_lr=1e-4, train_vision_tower=False, train_projector=True,
                              train_language_model=True)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and "vision_tower" not in n for n in trainable)
    assert sum(len(g["params"]) for g in groups) == len(trainable) and len(groups) == 1


def test_full_finetune_groups_split_vision_lr(setup):
    from transformers import LlavaOnevisionForConditionalGeneration

    from reward_models.training import parameter_groups

    _, model_dir, _ = setup
    model = LlavaOnevisionForConditionalGeneration.from_pretrained(model_dir)
    groups = parameter_groups(model, lr=1e-5, vision_lr=2e-6, train_vision_tower=True, train_projector=False,
                              train_language_model=True)
    assert [g["lr"] for g in groups] == [1e-5, 2e-6]
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all("multi_modal_projector" in n or "image_newline" in n for n in frozen)
    with pytest.raises(ValueError, match="no trainable parameters"):
        parameter_groups(model, lr=1, vision_lr=None, train_vision_tower=False, train_projector=False,
                         train_language_model=False)


@pytest.mark.slow
def test_recipe_with_lora_saves_merged_judge(setup):
    from transformers import LlavaOnevisionForConditionalGeneration

    root, model_dir, data = setup
    run = root / "run_lora"
    lora = "lora={_target_:peft.LoraConfig,r:4,lora_alpha:8,target_modules:[q_proj,v_proj]}"
    proc = _run(root, model_dir, data, run, "max_steps=2", lora)
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = _losses(run)
    assert losses[2] < losses[1]
    merged, info = LlavaOnevisionForConditionalGeneration.from_pretrained(run / "final", output_loading_info=True)
    assert all(not v for v in info.values()), info
    base = LlavaOnevisionForConditionalGeneration.from_pretrained(model_dir)
    q = "model.language_model.layers.0.self_attn.q_proj.weight"
    k = "model.language_model.layers.0.self_attn.k_proj.weight"
    assert not torch.equal(merged.state_dict()[q], base.state_dict()[q])  # adapter merged into q_proj
    assert torch.equal(merged.state_dict()[k], base.state_dict()[k])  # untargeted weights untouched

    from reward_models.lmm_judge import LMMYesNoJudge

    judge = LMMYesNoJudge(run / "final")
    assert judge.score(["a red car"], [Image.new("RGB", (32, 32), (220, 20, 30))]).scores.shape == (1,)


@pytest.mark.parametrize("name", ["orm", "parm", "parmpp"])
def test_train_judge_config_composes(name, setup):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    _, _, data = setup
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name="train_judge", overrides=[f"judge_data={name}"])
        assert cfg.judge_data._target_ == "reward_models.data.JudgeDataset"
        assert len(cfg.judge_data.paths) == len(cfg.judge_data.fractions)
        assert cfg.optim.lr == 1e-5 and cfg.optim.vision_lr == 2e-6  # released orm_ft / parm recipe
        cfg = compose(config_name="train_judge", overrides=[f"judge_data.paths=[{data / 'orm.jsonl'}]"])
        assert len(instantiate(cfg.judge_data)) == 2


@pytest.mark.parametrize(
    "name, kind, stage",
    [("single", "NO", None), ("ddp", "MULTI_GPU", None), ("fsdp", "FSDP", None),
     ("deepspeed_zero2", "DEEPSPEED", 2), ("deepspeed_zero3", "DEEPSPEED", 3)],
)
def test_accelerate_configs_parse(name, kind, stage):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(REPO / "configs" / "accelerate" / f"{name}.yaml"))
    assert config.distributed_type.value == kind
    if stage is not None:
        assert config.deepspeed_config["zero_stage"] == stage
