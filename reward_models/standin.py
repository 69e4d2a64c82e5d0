"""Tiny stand-ins for the released LLaVA-NeXT judges, written in the LLaVA-NeXT trainer's format (for rehearsals).

The released judges (``lmms-lab/llava-onevision-qwen2-7b-ov``, ``ckpts/orm_ft``, ``ckpts/parm``; reference §3, §11.1)
are ``llava_qwen`` checkpoints that only reach transformers through :mod:`reward_models.convert`. A rehearsal of the
real-scale recipes therefore starts from the same format: :func:`build_llava_next_judge` writes a directory as the
LLaVA-NeXT trainer does (``config.json`` with ``model_type: llava_qwen`` and the ``mm_*`` fields of a fine-tuned
judge, the weights under LLaVA-NeXT's names in two safetensors shards with an index, Qwen2-style tokenizer files
without ``<image>``), and the rehearsal converts it like a real download.

The network is tiny and random (SigLIP-style tower of width 72 = one head of SigLIP's head size, so the converter's
default head count applies; a 2-layer Qwen2 of width 64), with one adjustment: the ``yes`` / ``no`` rows of the LM
head are set so that the answer follows the *image*. A random judge otherwise answers the same for every image of a
prompt, and recipes that need both answers for one prompt (DPO pairs, self-correction groups) would have nothing to
rehearse on. The rows are ``w_no = w``, ``w_yes = w + a·v`` with ``v`` a random direction orthogonal to the mean
final hidden state over calibration inputs (so ``v·h`` is centred) and ``a`` scaling its spread to ``spread``.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import (LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration, LlavaOnevisionImageProcessor,
                          LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor, Qwen2Config, SiglipVisionConfig)

from reward_models import questions
from reward_models.convert import KEY_PREFIXES
from reward_models.lmm_judge import LMMYesNoJudge, user_turn
from reward_models.tiny import QWEN_1_5_CHAT_TEMPLATE, _build_tokenizer

__all__ = ["build_judge", "build_llava_next_judge", "to_llava_next_keys"]

_QWEN2_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")  # Qwen2 has no <image> token (a -200 sentinel)
_VISION_WIDTH = 72  # one attention head of SigLIP's head size: the converter's default head count fits
_TEXT_WIDTH = 64
_IMAGE_SIZE, _PATCH = 32, 8


def to_llava_next_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers module names -> LLaVA-NeXT names: :data:`reward_models.convert.KEY_PREFIXES` read backwards."""
    out = {}
    for key, value in state.items():
        for src, dst in KEY_PREFIXES:
            if key.startswith(dst):
                out[src + key[len(dst):]] = value
                break
        else:
            raise ValueError(f"no LLaVA-NeXT name for {key!r}")
    return out


def _model(tokenizer_size: int, image_token: int, pad_id: int, eos_id: int, seed: int):
    vision = SiglipVisionConfig(hidden_size=_VISION_WIDTH, intermediate_size=2 * _VISION_WIDTH, num_hidden_layers=2,
                                num_attention_heads=1, image_size=_IMAGE_SIZE, patch_size=_PATCH, vision_use_head=False,
                                layer_norm_eps=1e-6)
    # Qwen2 checkpoints pad the embedding table beyond the tokenizer; the converter's <image>/<video> land there.
    text = Qwen2Config(vocab_size=tokenizer_size + 8, hidden_size=_TEXT_WIDTH, intermediate_size=2 * _TEXT_WIDTH,
                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                       tie_word_embeddings=False, pad_token_id=pad_id, eos_token_id=eos_id, bos_token_id=None)
    config = LlavaOnevisionConfig(vision_config=vision, text_config=text, image_token_index=image_token,
                                  video_token_index=image_token + 1, image_grid_pinpoints=[[_IMAGE_SIZE, _IMAGE_SIZE]],
                                  vision_aspect_ratio="anyres_max_9", vision_feature_layer=-1,
                                  vision_feature_select_strategy="full", multimodal_projector_bias=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlavaOnevisionForConditionalGeneration(config).eval()


def _calibration(seed: int, prompts: Sequence[str], images: Sequence[Image.Image] | None
                 ) -> tuple[list[list[dict]], list[Image.Image]]:
    """Judge questions (ORM, PRM, clarity) about ``images``, default: 48 noisy coloured images."""
    if images is None:
        rng = np.random.default_rng(seed)
        images = [Image.fromarray(np.clip(rng.integers(0, 256, 3) + rng.normal(0, 60, (_IMAGE_SIZE, _IMAGE_SIZE, 3)),
                                          0, 255).astype(np.uint8)) for _ in range(48)]
    templates = [questions.ORM_QUESTION, questions.PRM_QUESTION, questions.CLARITY_CODE]
    conversations = [[user_turn(templates[i % len(templates)], prompts[i % len(prompts)], "<image>")]
                     for i in range(len(images))]
    return conversations, list(images)


@torch.inference_mode()
def _answer_by_image(judge: LMMYesNoJudge, seed: int, prompts: Sequence[str],
                     images: Sequence[Image.Image] | None, spread: float) -> None:
    """Set the yes/no rows of ``judge.model``'s LM head so that the decision follows the image (module docstring)."""
    conversations, images = _calibration(seed, prompts, images)
    batch = judge.build_inputs(conversations, images)
    hidden = judge.model(**batch, output_hidden_states=True, use_cache=False).hidden_states[-1][:, -1].float()  # [B, D]
    mean = hidden.mean(0)
    direction = torch.randn(hidden.shape[1], generator=torch.Generator().manual_seed(seed))
    direction -= (direction @ mean) / (mean @ mean) * mean
    direction *= spread / float((hidden - mean).matmul(direction).std())
    head = judge.model.lm_head.weight
    no_ids = [judge.tokenizer.convert_tokens_to_ids(t) for t in ("no", "No")]
    yes_ids = [judge.tokenizer.convert_tokens_to_ids(t) for t in ("yes", "Yes")]
    base = head[no_ids[0]].clone()
    for i in no_ids:
        head[i] = base
    for i in yes_ids:
        head[i] = base + direction.to(head.dtype)


def _llava_next_config(model, tokenizer_size: int) -> dict:
    text = model.config.text_config
    return {
        "architectures": ["LlavaQwenForCausalLM"], "model_type": "llava_qwen", "vocab_size": text.vocab_size,
        "hidden_size": text.hidden_size, "intermediate_size": text.intermediate_size,
        "num_hidden_layers": text.num_hidden_layers, "num_attention_heads": text.num_attention_heads,
        "num_key_value_heads": text.num_key_value_heads, "hidden_act": "silu", "rms_norm_eps": text.rms_norm_eps,
        "rope_theta": 10000.0, "max_position_embeddings": text.max_position_embeddings, "tie_word_embeddings": False,
        "use_sliding_window": False, "bos_token_id": None, "eos_token_id": text.eos_token_id,
        # the mm_* fields of the released fine-tuned judges (LLaVA-NeXT trainer, reference §4.2)
        "mm_vision_tower": "google/siglip-so400m-patch14-384", "mm_projector_type": "mlp2x_gelu",
        "mm_hidden_size": model.config.vision_config.hidden_size, "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch", "mm_patch_merge_type": "spatial_unpad",
        "image_aspect_ratio": "anyres_max_9", "image_grid_pinpoints": "(1x1),...,(6x6)",
        "mm_newline_position": "one_token", "tokenizer_model_max_length": 32768, "tokenizer_padding_side": "right",
        "torch_dtype": "bfloat16", "tokenizer_size": tokenizer_size,
    }


def build_judge(directory: str | Path, *, seed: int = 0, prompts: Sequence[str] = ("a photo of a dog",),
                images: Sequence[Image.Image] | None = None, view: str = "anyres", spread: float = 2.0) -> Path:
    """Write a tiny judge in transformers' format (weights + processor, as ``scripts/train_judge.py`` saves one) into
    ``directory``; returns it. The yes/no rows are calibrated on ``prompts`` with ``images`` (default: noisy colour
    images) seen through ``view``, the view the judge will be used with."""
    directory = Path(directory)
    if directory.exists():
        raise FileExistsError(f"stand-in judge directory already exists: {directory}")
    tokenizer = _build_tokenizer(600, special_tokens=_QWEN2_SPECIALS)
    base_size = len(tokenizer)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>", "<video>"]},
                                 replace_extra_special_tokens=False)
    model = _model(base_size, tokenizer.convert_tokens_to_ids("<image>"), tokenizer.pad_token_id,
                   tokenizer.eos_token_id, seed)
    model.save_pretrained(directory)
    size = {"height": _IMAGE_SIZE, "width": _IMAGE_SIZE}
    LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size=size, image_grid_pinpoints=[[_IMAGE_SIZE] * 2],
                                                     image_mean=[0.5] * 3, image_std=[0.5] * 3),
        tokenizer=tokenizer, video_processor=LlavaOnevisionVideoProcessor(size=size),
        num_image_tokens=(_IMAGE_SIZE // _PATCH) ** 2, vision_feature_select_strategy="full",
        chat_template=QWEN_1_5_CHAT_TEMPLATE, vision_aspect_ratio="anyres_max_9").save_pretrained(directory)
    judge = LMMYesNoJudge(directory, image_view=view)
    _answer_by_image(judge, seed, list(prompts), images, spread)
    judge.model.save_pretrained(directory)
    return directory


def build_llava_next_judge(directory: str | Path, *, seed: int = 0, prompts: Sequence[str] = ("a photo of a dog",),
                           images: Sequence[Image.Image] | None = None, spread: float = 2.0) -> Path:
    """Write a tiny LLaVA-NeXT-format judge (bfloat16 weights, as released) into ``directory``; returns it.

    Calibrated (module docstring) on ``prompts`` / ``images`` in the released judges' padded view, the view a
    converted judge uses by default.
    """
    directory = Path(directory)
    if directory.exists():
        raise FileExistsError(f"stand-in judge directory already exists: {directory}")
    work = directory.with_name(directory.name + ".hf-tmp")
    shutil.rmtree(work, ignore_errors=True)
    try:
        build_judge(work, seed=seed, prompts=prompts, images=images, view="pad", spread=spread)
        model = LlavaOnevisionForConditionalGeneration.from_pretrained(work).eval()
        state = {k: v.to(torch.bfloat16).contiguous() for k, v in to_llava_next_keys(model.state_dict()).items()}
        tokenizer = _build_tokenizer(600, special_tokens=_QWEN2_SPECIALS)  # Qwen2's: no <image> token
    finally:
        shutil.rmtree(work, ignore_errors=True)
    tokenizer.save_pretrained(directory)
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    weight_map = {}
    for name, part in shards.items():
        save_file({k: state[k] for k in part}, str(directory / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in part})
    (directory / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (directory / "config.json").write_text(json.dumps(_llava_next_config(model, len(tokenizer)), indent=2))
    (directory / "generation_config.json").write_text(json.dumps(
        {"eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}, indent=2))
    return directory
