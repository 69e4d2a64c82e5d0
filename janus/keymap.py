"""The original DeepSeek Janus checkpoint layout <-> transformers' Janus layout (reference t2i_r1.md §11.4).

The DeepSeek release (``deepseek-ai/Janus-Pro-7B``, the T2I-R1 policy ``CaraJ/T2I-R1``) stores a
``MultiModalityCausalLM``: ``language_model`` (a ``LlamaForCausalLM``), ``gen_vision_model`` (the VQ-16 tokenizer),
``gen_embed`` / ``gen_aligner`` / ``gen_head`` (image-generation path), ``vision_model`` (a timm SigLIP-L tower) and
``aligner`` (understanding path). transformers' ``JanusForConditionalGeneration`` holds the same tensors under other
names. The module-level renames are the documented table:

=================================  ===============================
original                            transformers
=================================  ===============================
``language_model.model``            ``model.language_model``
``language_model.lm_head``          ``lm_head``
``gen_head`` (``output_mlp_projector``, ``vision_head``)   ``model.generation_head`` (``proj_out``, ``vision_head``)
``gen_embed``                       ``model.generation_embeddings``
``gen_aligner`` (``layers.0``, ``layers.2``)   ``model.generation_aligner`` (``fc1``, ``hidden_layers.0``)
``gen_vision_model``                ``model.vqmodel``
``vision_model.vision_tower``       ``model.vision_model``
``aligner``                         ``model.aligner``
=================================  ===============================

Inside the VQ model ``conv_blocks`` is ``down`` (encoder) / ``up`` (decoder), ``res`` is ``block`` and ``mid.0/1/2``
is ``mid.block_1/attn_1/block_2``. Inside the vision tower ``patch_embed.proj`` is ``embeddings.patch_embedding``,
``pos_embed`` [1, N, D] is ``embeddings.position_embedding.weight`` [N, D], ``blocks.i`` is ``encoder.layers.i`` with
``norm1/2`` -> ``layer_norm1/2``, the fused ``attn.qkv`` [3D, ...] split into ``q_proj``, ``k_proj``, ``v_proj`` and
``attn.proj`` -> ``projection_layer``; the final ``norm`` is ``post_layernorm``. Two groups of original tensors have
no counterpart and are dropped by design (``IGNORED_PREFIXES``): the SigLIP attention-pooling head (unused by Janus)
and the VQ codebook-usage counter. Any other unknown key is an error naming it.
"""
from __future__ import annotations

import re
from typing import Optional

import torch

IGNORED_PREFIXES = ("vision_model.vision_tower.attn_pool.", "gen_vision_model.quantize.codebook_used")
_TOWER = "vision_model.vision_tower."
_VQ_MID = {"0": "block_1", "1": "attn_1", "2": "block_2"}
_QKV = ("q_proj", "k_proj", "v_proj")


class UnknownKeyError(ValueError):
    pass


def _mlp_layer(index: str, key: str) -> str:
    """``MlpProjector.layers.i`` (Linear, GELU, Linear, ...) -> ``fc1`` / ``hidden_layers.j``."""
    i = int(index)
    if i % 2:
        raise UnknownKeyError(f"{key}: layers.{i} of an MlpProjector is an activation, it holds no tensor")
    return "fc1" if i == 0 else f"hidden_layers.{i // 2 - 1}"


def _vq_inner(rest: str, key: str) -> str:
    parts = rest.split(".")
    if parts[0] in ("encoder", "decoder") and len(parts) > 2:
        if parts[1] == "conv_blocks":
            parts[1] = "down" if parts[0] == "encoder" else "up"
            if len(parts) > 3 and parts[3] == "res":
                parts[3] = "block"
        elif parts[1] == "mid":
            if parts[2] not in _VQ_MID:
                raise UnknownKeyError(f"{key}: the VQ mid block has entries 0, 1, 2")
            parts[2] = _VQ_MID[parts[2]]
    return ".".join(parts)


def _tower_inner(rest: str, key: str) -> list[str]:
    if rest == "pos_embed":
        return ["embeddings.position_embedding.weight"]
    if rest.startswith("patch_embed.proj."):
        return ["embeddings.patch_embedding." + rest[len("patch_embed.proj."):]]
    if rest.startswith("norm."):
        return ["post_layernorm." + rest[len("norm."):]]
    m = re.fullmatch(r"blocks\.(\d+)\.(.+)", rest)
    if m is None:
        raise UnknownKeyError(f"{key}: not a SigLIP tower tensor known to the mapping")
    layer, sub = f"encoder.layers.{m.group(1)}.", m.group(2)
    for old, new in (("norm1.", "layer_norm1."), ("norm2.", "layer_norm2."), ("mlp.", "mlp."),
                     ("attn.proj.", "self_attn.projection_layer."), ("attn.q_norm.", "self_attn.q_norm."),
                     ("attn.k_norm.", "self_attn.k_norm.")):
        if sub.startswith(old):
            return [layer + new + sub[len(old):]]
    if sub.startswith("attn.qkv."):
        leaf = sub[len("attn.qkv."):]
        return [f"{layer}self_attn.{p}.{leaf}" for p in _QKV]
    raise UnknownKeyError(f"{key}: not a SigLIP tower tensor known to the mapping")


def deepseek_to_hf_keys(key: str) -> Optional[list[str]]:
    """The transformers key(s) of one original key (three for a fused ``qkv``); ``None`` for a dropped tensor."""
    if key.startswith(IGNORED_PREFIXES):
        return None
    simple = (("language_model.model.", "model.language_model."), ("language_model.lm_head.", "lm_head."),
              ("gen_head.output_mlp_projector.", "model.generation_head.proj_out."),
              ("gen_head.vision_head.", "model.generation_head.vision_head."),
              ("gen_embed.", "model.generation_embeddings."))
    for old, new in simple:
        if key.startswith(old):
            return [new + key[len(old):]]
    m = re.fullmatch(r"(gen_aligner|aligner)\.layers\.(\d+)\.(.+)", key)
    if m is not None:
        module = "model.generation_aligner" if m.group(1) == "gen_aligner" else "model.aligner"
        return [f"{module}.{_mlp_layer(m.group(2), key)}.{m.group(3)}"]
    if key.startswith("gen_vision_model."):
        return ["model.vqmodel." + _vq_inner(key[len("gen_vision_model."):], key)]
    if key.startswith(_TOWER):
        return ["model.vision_model." + k for k in _tower_inner(key[len(_TOWER):], key)]
    raise UnknownKeyError(f"{key}: not a tensor of the DeepSeek Janus layout known to the mapping")


def hf_to_deepseek_key(key: str) -> str:
    """The original key holding a transformers tensor (``q/k/v_proj`` -> the fused ``qkv``)."""
    simple = (("model.language_model.", "language_model.model."), ("lm_head.", "language_model.lm_head."),
              ("model.generation_head.proj_out.", "gen_head.output_mlp_projector."),
              ("model.generation_head.vision_head.", "gen_head.vision_head."),
              ("model.generation_embeddings.", "gen_embed."))
    for new, old in simple:
        if key.startswith(new):
            return old + key[len(new):]
    m = re.fullmatch(r"model\.(generation_aligner|aligner)\.(fc1|hidden_layers\.(\d+))\.(.+)", key)
    if m is not None:
        module = "gen_aligner" if m.group(1) == "generation_aligner" else "aligner"
        index = 0 if m.group(2) == "fc1" else 2 * (int(m.group(3)) + 1)
        return f"{module}.layers.{index}.{m.group(4)}"
    if key.startswith("model.vqmodel."):
        parts = key[len("model.vqmodel."):].split(".")
        if parts[0] in ("encoder", "decoder") and len(parts) > 2:
            if parts[1] in ("down", "up"):
                parts[1] = "conv_blocks"
                if len(parts) > 3 and parts[3] == "block":
                    parts[3] = "res"
            elif parts[1] == "mid":
                parts[2] = {v: k for k, v in _VQ_MID.items()}[parts[2]]
        return "gen_vision_model." + ".".join(parts)
    if key.startswith("model.vision_model."):
        return _TOWER + _tower_inverse(key[len("model.vision_model."):], key)
    raise UnknownKeyError(f"{key}: not a tensor of transformers' Janus layout known to the mapping")


def _tower_inverse(rest: str, key: str) -> str:
    if rest == "embeddings.position_embedding.weight":
        return "pos_embed"
    for new, old in (("embeddings.patch_embedding.", "patch_embed.proj."), ("post_layernorm.", "norm.")):
        if rest.startswith(new):
            return old + rest[len(new):]
    m = re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)", rest)
    if m is None:
        raise UnknownKeyError(f"{key}: not a vision tensor known to the mapping")
    sub = m.group(2)
    for new, old in (("layer_norm1.", "norm1."), ("layer_norm2.", "norm2."), ("mlp.", "mlp."),
                     ("self_attn.projection_layer.", "attn.proj."), ("self_attn.q_norm.", "attn.q_norm."),
                     ("self_attn.k_norm.", "attn.k_norm.")):
        if sub.startswith(new):
            return f"blocks.{m.group(1)}.{old}{sub[len(new):]}"
    for p in _QKV:
        if sub.startswith(f"self_attn.{p}."):
            return f"blocks.{m.group(1)}.attn.qkv.{sub[len(f'self_attn.{p}.'):]}"
    raise UnknownKeyError(f"{key}: not a vision tensor known to the mapping")


def deepseek_to_hf_state(state: dict[str, torch.Tensor], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Rename (and split / squeeze) every tensor; all unknown keys are reported together, named as stored."""
    out, unknown = {}, []
    for key, tensor in state.items():
        try:
            new = deepseek_to_hf_keys(key)
        except UnknownKeyError as err:
            unknown.append(str(err))
            continue
        if new is None:
            continue
        if len(new) == 3:  # fused qkv [3D, ...] -> three [D, ...]
            if tensor.shape[0] % 3:
                raise ValueError(f"{source}: {key} has shape {tuple(tensor.shape)}; "
                                 "a fused qkv needs a first dim divisible by 3")
            out.update(zip(new, tensor.chunk(3, dim=0)))
        elif key == _TOWER + "pos_embed":
            if tensor.dim() != 3 or tensor.shape[0] != 1:
                raise ValueError(f"{source}: {key} has shape {tuple(tensor.shape)}, expected [1, num_patches, hidden]")
            out[new[0]] = tensor[0]
        else:
            out[new[0]] = tensor
    if unknown:
        raise ValueError(f"{source}: {len(unknown)} unexpected keys: " + "; ".join(unknown[:10]))
    return out


def hf_to_deepseek_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`deepseek_to_hf_state` (fuses q/k/v in that order, restores ``pos_embed``'s batch dim)."""
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        old = hf_to_deepseek_key(key)
        if ".attn.qkv." in old:
            part = next(p for p in _QKV if f"self_attn.{p}." in key)
            fused.setdefault(old, {})[part] = tensor
        elif old == _TOWER + "pos_embed":
            out[old] = tensor[None].clone()
        else:
            out[old] = tensor.clone()
    for old, parts in fused.items():
        if set(parts) != set(_QKV):
            raise ValueError(f"{old}: needs q_proj, k_proj and v_proj, got {sorted(parts)}")
        out[old] = torch.cat([parts[p] for p in _QKV], dim=0)
    return out


# ---------------------------------------------------------------------------------------------------- config.json
# Language-model fields carried over from the original ``language_config`` (a LlamaConfig dict).
LLAMA_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "hidden_act", "max_position_embeddings", "rms_norm_eps", "rope_theta",
                "attention_bias", "mlp_bias", "tie_word_embeddings", "initializer_range")
SIGLIP_L_384 = "siglip_large_patch16_384"  # the released vision tower: JanusVisionConfig's defaults
# Extra ``params`` the tiny writer records so that a non-released size round-trips (the released files have none).
VISION_OVERRIDES = ("hidden_size", "num_hidden_layers", "num_attention_heads", "patch_size", "mlp_ratio",
                    "initializer_range")
VQ_OVERRIDES = ("base_channels", "channel_multiplier", "latent_channels", "num_res_blocks", "initializer_range")


def _params(cfg: dict, name: str, source: str) -> dict:
    try:
        return dict(cfg[name]["params"])
    except (KeyError, TypeError) as err:
        raise ValueError(f"{source}: missing {name}.params") from err


def deepseek_config_to_hf(cfg: dict, tokenizer, source: str = "config.json"):
    """A ``transformers.JanusConfig`` equal to an original ``multi_modality`` config (values checked, not assumed).

    transformers' Janus shares one ``projection_dim`` between the generation aligner's output, the generation head's
    hidden layer and the LLM width; an original config where these differ cannot be represented and is rejected.
    """
    from transformers import JanusConfig, JanusVisionConfig, JanusVQVAEConfig, LlamaConfig

    if cfg.get("model_type") != "multi_modality":
        raise ValueError(f"{source}: model_type={cfg.get('model_type')!r}, expected 'multi_modality' (DeepSeek layout)")
    lang = dict(cfg.get("language_config") or {})
    if not lang:
        raise ValueError(f"{source}: missing language_config")
    text = LlamaConfig(**{k: lang[k] for k in LLAMA_FIELDS if k in lang}, pad_token_id=tokenizer.pad_token_id,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    vis, align = _params(cfg, "vision_config", source), _params(cfg, "aligner_config", source)
    overrides = {k: vis[k] for k in VISION_OVERRIDES if k in vis}
    if vis.get("model_name", SIGLIP_L_384) != SIGLIP_L_384 and not overrides:
        raise ValueError(
            f"{source}: vision tower {vis.get('model_name')!r} is not {SIGLIP_L_384} and has no explicit sizes")
    vision = JanusVisionConfig(image_size=vis["image_size"], projection_dim=align["n_embed"], depth=align["depth"],
                               **overrides)
    vision.num_image_tokens = (vision.image_size // vision.patch_size) ** 2
    gen, gen_align, head = (_params(cfg, n, source)
                            for n in ("gen_vision_config", "gen_aligner_config", "gen_head_config"))
    checks = {
        "gen_aligner_config.params.input_dim == gen_vision_config.params.n_embed":
            gen_align["input_dim"] == gen["n_embed"],
        "gen_head_config.params.image_token_size == gen_vision_config.params.image_token_size":
            head["image_token_size"] == gen["image_token_size"],
        "gen_head_config.params.image_token_embed == gen_aligner_config.params.n_embed":
            head["image_token_embed"] == gen_align["n_embed"],
        "gen_aligner_config.params.n_embed == language_config.hidden_size": gen_align["n_embed"] == text.hidden_size,
        "gen_head_config.params.n_embed == language_config.hidden_size": head["n_embed"] == text.hidden_size,
    }
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        raise ValueError(f"{source}: not representable in transformers' Janus: {', '.join(failed)} does not hold")
    vq = JanusVQVAEConfig(embed_dim=gen["n_embed"], num_embeddings=gen["image_token_size"],
                          projection_dim=gen_align["n_embed"], num_hidden_layers=gen_align["depth"],
                          image_token_embed_dim=head["n_embed"], **{k: gen[k] for k in VQ_OVERRIDES if k in gen})
    image_token_id = tokenizer.convert_tokens_to_ids("<image_placeholder>")
    return JanusConfig(text_config=text, vision_config=vision, vq_config=vq, image_token_id=image_token_id,
                       tie_word_embeddings=bool(lang.get("tie_word_embeddings", False)))


def hf_config_to_deepseek(config) -> dict:
    """The original ``config.json`` dict of a ``JanusConfig`` (sizes that differ from the release go in ``params``)."""
    from transformers import JanusVisionConfig, JanusVQVAEConfig

    text, vision, vq = config.text_config, config.vision_config, config.vq_config
    lang = {k: getattr(text, k) for k in LLAMA_FIELDS if k != "rope_theta" and hasattr(text, k)}
    lang["rope_theta"] = text.rope_parameters["rope_theta"]
    lang["tie_word_embeddings"] = bool(config.tie_word_embeddings)
    lang["model_type"] = "llama"
    vis_default, vq_default = JanusVisionConfig(), JanusVQVAEConfig()
    vis = {"image_size": vision.image_size, "select_feature": "same", "select_layer": -1, "model_name": SIGLIP_L_384}
    extra = {k: getattr(vision, k) for k in VISION_OVERRIDES if getattr(vision, k) != getattr(vis_default, k)}
    if extra:
        vis.update(extra, model_name="tiny")
    gen = {"image_token_size": vq.num_embeddings, "n_embed": vq.embed_dim}
    gen.update({k: list(v) if isinstance(v, tuple) else v for k in VQ_OVERRIDES
                if (v := getattr(vq, k)) != getattr(vq_default, k)})
    mlp = {"projector_type": "mlp_gelu"}
    return {
        "model_type": "multi_modality", "architectures": ["MultiModalityCausalLM"], "language_config": lang,
        "vision_config": {"cls": "CLIPVisionTower", "model_type": "vision", "params": vis},
        "aligner_config": {"cls": "MlpProjector", "model_type": "aligner", "params": {
            **mlp, "depth": vision.depth, "input_dim": vision.hidden_size, "n_embed": vision.projection_dim}},
        "gen_vision_config": {"cls": "VQ-16", "model_type": "gen_vision", "params": gen},
        "gen_aligner_config": {"cls": "MlpProjector", "model_type": "gen_aligner", "params": {
            **mlp, "depth": vq.num_hidden_layers, "input_dim": vq.embed_dim, "n_embed": vq.projection_dim}},
        "gen_head_config": {"cls": "vision_head", "model_type": "gen_head", "params": {
            "image_token_embed": vq.projection_dim, "image_token_size": vq.num_embeddings,
            "n_embed": vq.image_token_embed_dim}},
    }
