"""Convert a LLaVA-NeXT ``llava_qwen`` checkpoint into a transformers ``LlavaOnevisionForConditionalGeneration`` dir.

The released fine-tuned judges (``ckpts/orm_ft``, ``ckpts/parm``) and the zero-shot judge
(``lmms-lab/llava-onevision-qwen2-7b-ov``) are stored in the LLaVA-NeXT trainer's format (imagegen_cot.md §3,
§11.1), which transformers cannot load. This module renames the weights, derives the transformers config from the
``llava_qwen`` ``config.json`` (Qwen2 fields + ``mm_*`` fields) and the weight shapes, and writes a complete
directory: ``config.json``, safetensors weights, tokenizer with ``<image>``/``<video>`` tokens, image processor
and processor with the ``qwen_1_5`` chat template.

Key mapping (LLaVA-NeXT name prefix -> transformers module name prefix, first match wins):

==============================================  =========================================
``model.vision_tower.vision_tower.vision_model.``  ``model.vision_tower.``  (SigLIP)
``model.mm_projector.0.``                          ``model.multi_modal_projector.linear_1.``
``model.mm_projector.2.``                          ``model.multi_modal_projector.linear_2.``
``model.image_newline``                            ``model.image_newline``
``model.``  (``embed_tokens``, ``layers``, ``norm``)  ``model.language_model.``  (Qwen2)
``lm_head.``                                       ``lm_head.``
==============================================  =========================================

Facts behind the vision config: LLaVA-NeXT's SigLIP tower drops the last encoder layer and replaces the pooling
head by an identity, then takes the last remaining layer's hidden states (no post-layernorm). transformers
reproduces that with ``num_hidden_layers`` = the number of stored layers, ``vision_feature_layer=-1`` and
``vision_feature_select_strategy="full"``. The SigLIP config is not in ``config.json`` (only ``mm_hidden_size``),
so sizes are read from the weight shapes; the head count cannot be, and defaults to SigLIP's head dim of 72.

The released judges were queried with ``image_aspect_ratio="pad"`` (one padded view; reference §3), which
transformers does not implement: the converted directory records ``"image_view": "pad"`` in ``imagecot_judge.json``
and :class:`reward_models.lmm_judge.LMMYesNoJudge` builds that view itself by default (``image_view=null``).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import (AutoTokenizer, LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration,
                          LlavaOnevisionImageProcessor, LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor,
                          Qwen2Config, SiglipVisionConfig)

from common.io import atomic_write_dir
from reward_models.lmm_judge import IMAGE_VIEWS, JUDGE_INFO
from reward_models.tiny import QWEN_1_5_CHAT_TEMPLATE

__all__ = [
    "KEY_PREFIXES",
    "ConvertOptions",
    "convert_llava_next",
    "load_llava_next_state_dict",
    "rename_llava_next_keys",
]

_VISION_SRC = "model.vision_tower.vision_tower.vision_model."
KEY_PREFIXES: tuple[tuple[str, str], ...] = (
    (_VISION_SRC, "model.vision_tower."),
    ("model.mm_projector.0.", "model.multi_modal_projector.linear_1."),
    ("model.mm_projector.2.", "model.multi_modal_projector.linear_2."),
    ("model.image_newline", "model.image_newline"),
    ("model.", "model.language_model."),
    ("lm_head.", "lm_head."),
)
# The SigLIP pooling head is an identity in LLaVA-NeXT; stray head weights are dropped, not loaded.
_DROPPED = (_VISION_SRC + "head.",)
# Modules the converter does not know how to map: failing loudly beats loading a half-converted judge.
_UNSUPPORTED = ("model.vision_resampler.", "model.mm_projector.4.")
# Qwen2 fields copied verbatim from the llava_qwen config.json when present.
_QWEN2_FIELDS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "hidden_act", "max_position_embeddings", "rms_norm_eps", "rope_theta",
    "tie_word_embeddings", "use_sliding_window", "sliding_window", "max_window_layers", "attention_dropout",
)
_QWEN_IMAGE_TOKEN_INDEX = 151646  # ``<image>`` id of the llava-hf Qwen2 conversions (first id after Qwen2's specials)
_SIGLIP_HEAD_DIM = 72  # siglip-so400m-patch14-384: 1152 / 16 heads
_SIGLIP_MEAN_STD = [0.5, 0.5, 0.5]


@dataclass
class ConvertOptions:
    """Choices the source checkpoint cannot tell us.

    Attributes:
        vision_num_attention_heads: SigLIP heads; ``None`` = hidden size / 72 (so400m).
        dtype: weight dtype written; ``None`` keeps the checkpoint's dtype.
        vision_aspect_ratio: override of the ``image_aspect_ratio`` field (transformers supports ``anyres_max_N``;
            a ``pad`` checkpoint is written as ``anyres_max_9`` and the judge must pad the image itself).
        image_view: the view the judge uses by default (``imagecot_judge.json``): ``"pad"``, the released
            inference, or ``"anyres"``, transformers' preprocessing (the released fine-tuning used anyres).
    """

    vision_num_attention_heads: int | None = None
    dtype: torch.dtype | None = None
    vision_aspect_ratio: str | None = None
    image_view: str = "pad"


def rename_llava_next_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """LLaVA-NeXT names -> transformers module names (see :data:`KEY_PREFIXES`); errors on unknown modules."""
    renamed: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state_dict.items():
        if key.startswith(_DROPPED):
            continue
        if key.startswith(_UNSUPPORTED):
            unknown.append(key)
            continue
        for src, dst in KEY_PREFIXES:
            if key.startswith(src):
                renamed[dst + key[len(src):]] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"LLaVA-NeXT checkpoint has weights the converter cannot map: {sorted(unknown)[:10]}")
    return renamed


def load_llava_next_state_dict(src: str | Path) -> dict[str, torch.Tensor]:
    """All weights of ``src``: sharded or single safetensors, else ``pytorch_model*.bin`` (``weights_only``)."""
    src = Path(src)
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index_path = src / index_name
        if index_path.is_file():
            weight_map = json.loads(index_path.read_text()).get("weight_map")
            if not isinstance(weight_map, dict):
                raise ValueError(f"{index_path}: field 'weight_map' missing or not an object")
            return _load_files([src / name for name in sorted(set(weight_map.values()))])
    for pattern in ("*.safetensors", "pytorch_model*.bin"):
        files = sorted(src.glob(pattern))
        if files:
            return _load_files(files)
    raise FileNotFoundError(f"no weights in {src}: expected model.safetensors(.index.json) or pytorch_model*.bin")


def _load_files(files: list[Path]) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(f"weight shard listed in the index is missing: {path}")
        if path.suffix == ".safetensors":
            state.update(load_file(str(path)))
        else:
            state.update(torch.load(path, map_location="cpu", weights_only=True))
    return state


def _read_config(src: Path) -> dict:
    path = src / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"LLaVA-NeXT config not found: {path}")
    config = json.loads(path.read_text())
    model_type = config.get("model_type")
    if model_type != "llava_qwen":
        raise ValueError(f"{path}: field 'model_type' is {model_type!r}; only 'llava_qwen' checkpoints are supported")
    projector = config.get("mm_projector_type", "mlp2x_gelu")
    if projector != "mlp2x_gelu":
        raise ValueError(f"{path}: field 'mm_projector_type' is {projector!r}; only 'mlp2x_gelu' is supported")
    return config


def _vision_config(state: dict[str, torch.Tensor], heads: int | None) -> SiglipVisionConfig:
    for suffix in ("embeddings.patch_embedding.weight", "embeddings.position_embedding.weight",
                   "encoder.layers.0.mlp.fc1.weight"):
        if _VISION_SRC + suffix not in state:
            raise ValueError(f"LLaVA-NeXT checkpoint lacks the SigLIP weight {_VISION_SRC + suffix!r}")
    patch = state[_VISION_SRC + "embeddings.patch_embedding.weight"]  # [D, 3, p, p]
    positions = state[_VISION_SRC + "embeddings.position_embedding.weight"].shape[0]
    side = int(round(positions**0.5))
    if side * side != positions:
        raise ValueError(f"SigLIP position embedding has {positions} rows, not a square grid of patches")
    layer_key = re.compile(re.escape(_VISION_SRC) + r"encoder\.layers\.(\d+)\.")
    layers = {int(m.group(1)) for k in state if (m := layer_key.match(k))}
    hidden = patch.shape[0]
    if heads is None:
        if hidden % _SIGLIP_HEAD_DIM:
            raise ValueError(f"SigLIP hidden size {hidden} is not a multiple of 72: pass vision_num_attention_heads")
        heads = hidden // _SIGLIP_HEAD_DIM
    return SiglipVisionConfig(
        hidden_size=hidden,
        intermediate_size=state[_VISION_SRC + "encoder.layers.0.mlp.fc1.weight"].shape[0],
        num_hidden_layers=len(layers),
        num_attention_heads=heads,
        image_size=side * patch.shape[-1],
        patch_size=patch.shape[-1],
        layer_norm_eps=1e-6,
        vision_use_head=False,
    )


def _grid_pinpoints(raw: object, image_size: int) -> list[list[int]]:
    """``[[h, w], ...]`` in pixels; also expands the trainer's ``"(1x1),...,(6x6)"`` range notation."""
    if isinstance(raw, list):
        return [[int(h), int(w)] for h, w in raw]
    if isinstance(raw, str):
        found = re.findall(r"\((\d+)x(\d+)\)", raw)
        if len(found) == 2:
            (r0, c0), (r1, c1) = [(int(a), int(b)) for a, b in found]
            return [[i * image_size, j * image_size] for i in range(r0, r1 + 1) for j in range(c0, c1 + 1)]
    if raw is None:
        return [[image_size, image_size]]
    raise ValueError(f"config.json: field 'image_grid_pinpoints' has an unsupported value {raw!r}")


def _fill_post_layernorm(state: dict[str, torch.Tensor], width: int, dtype: torch.dtype) -> None:
    # LLaVA-NeXT never applies SigLIP's post-layernorm (features are taken before it), so some checkpoints omit it;
    # an identity norm keeps the strict load and changes nothing downstream.
    state.setdefault("model.vision_tower.post_layernorm.weight", torch.ones(width, dtype=dtype))
    state.setdefault("model.vision_tower.post_layernorm.bias", torch.zeros(width, dtype=dtype))


def _build_tokenizer(src: Path, vocab_size: int):
    if not any((src / name).is_file() for name in ("tokenizer.json", "vocab.json", "tokenizer_config.json")):
        raise FileNotFoundError(f"no tokenizer files in {src}: expected tokenizer.json or vocab.json + merges.txt")
    tokenizer = AutoTokenizer.from_pretrained(str(src), trust_remote_code=False)
    missing = [t for t in ("<image>", "<video>") if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    for token in ("<image>", "<video>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id >= vocab_size:
            raise ValueError(f"tokenizer id {token_id} of {token} does not fit the embedding table ({vocab_size} rows)")
    tokenizer.chat_template = QWEN_1_5_CHAT_TEMPLATE
    tokenizer.padding_side = "left"
    return tokenizer


def _build_config(raw: dict, vision: SiglipVisionConfig, tokenizer, aspect: str | None) -> LlavaOnevisionConfig:
    text = Qwen2Config(**{k: raw[k] for k in _QWEN2_FIELDS if k in raw})
    text.pad_token_id = tokenizer.pad_token_id
    text.eos_token_id = tokenizer.eos_token_id
    aspect = aspect or raw.get("image_aspect_ratio", "anyres_max_9")
    if not str(aspect).startswith("anyres_max_"):
        aspect = "anyres_max_9"  # transformers only implements anyres_max_N; "pad" is the judge's job (§3)
    return LlavaOnevisionConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=_grid_pinpoints(raw.get("image_grid_pinpoints"), vision.image_size),
        vision_aspect_ratio=aspect,
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        projector_hidden_act="gelu",
        multimodal_projector_bias=True,
        tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
    )


def _build_processor(config: LlavaOnevisionConfig, tokenizer) -> LlavaOnevisionProcessor:
    vision = config.vision_config
    size = {"height": vision.image_size, "width": vision.image_size}
    return LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(
            size=size,
            image_grid_pinpoints=config.image_grid_pinpoints,
            image_mean=_SIGLIP_MEAN_STD,
            image_std=_SIGLIP_MEAN_STD,
        ),
        tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(size=size),  # unused by the judges; the class requires one
        num_image_tokens=(vision.image_size // vision.patch_size) ** 2,
        vision_feature_select_strategy="full",
        chat_template=QWEN_1_5_CHAT_TEMPLATE,
        vision_aspect_ratio=config.vision_aspect_ratio,
    )


def convert_llava_next(src: str | Path, dst: str | Path, options: ConvertOptions | None = None) -> Path:
    """Convert the LLaVA-NeXT checkpoint directory ``src`` into a transformers directory ``dst``; returns ``dst``.

    The weights are loaded into a ``LlavaOnevisionForConditionalGeneration`` built on the meta device with
    ``strict=True`` (so every expected weight is present and nothing is left over), then saved. ``dst`` is written
    in a temporary sibling directory and moved into place at the end, so a crash never leaves a half-written judge.
    """
    options = options or ConvertOptions()
    if options.image_view not in IMAGE_VIEWS:
        raise ValueError(f"ConvertOptions.image_view must be one of {IMAGE_VIEWS}, got {options.image_view!r}")
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(f"LLaVA-NeXT checkpoint directory not found: {src}")
    if dst.exists():
        raise FileExistsError(f"destination already exists: {dst} (remove it or choose another path)")
    raw = _read_config(src)
    source = load_llava_next_state_dict(src)
    dtype = options.dtype or next(iter(source.values())).dtype
    vision = _vision_config(source, options.vision_num_attention_heads)
    state = {k: v.to(dtype) for k, v in rename_llava_next_keys(source).items()}
    _fill_post_layernorm(state, vision.hidden_size, dtype)
    tokenizer = _build_tokenizer(src, int(raw.get("vocab_size", Qwen2Config().vocab_size)))
    config = _build_config(raw, vision, tokenizer, options.vision_aspect_ratio)
    with torch.device("meta"):
        model = LlavaOnevisionForConditionalGeneration(config)
    # ``assign`` keeps the checkpoint tensors (no second copy of a 7B model); ``strict`` names any gap.
    model.load_state_dict(state, strict=True, assign=True)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    processor = _build_processor(config, tokenizer)

    info = {"source": "llava_next", "source_image_aspect_ratio": raw.get("image_aspect_ratio"),
            "image_view": options.image_view}

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)
        (tmp / JUDGE_INFO).write_text(json.dumps(info, indent=2) + "\n")

    return atomic_write_dir(dst, write)
