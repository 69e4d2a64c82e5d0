"""Strict loading (and writing) of Janus-Pro checkpoints from local directories (reference t2i_r1.md §11).

Two layouts, told apart by ``config.json``'s ``model_type``:

* ``"janus"``: transformers' layout (``deepseek-community/Janus-Pro-7B`` / ``-1B``): ``model.safetensors`` (or
  shards with ``model.safetensors.index.json``), tokenizer / processor files, ``generation_config.json``;
* ``"multi_modality"``: DeepSeek's original layout (``deepseek-ai/Janus-Pro-7B`` / ``-1B``, T2I-R1's ``CaraJ/T2I-R1``):
  ``pytorch_model.bin`` (or shards with ``pytorch_model.bin.index.json``) renamed through :mod:`janus.keymap`.

Loading is strict: every tensor the config implies must be in the files with its exact shape, and every stored tensor
must be used (except the two documented groups :data:`janus.keymap.IGNORED_PREFIXES`); otherwise a
:class:`CheckpointError` names the keys (in the layout of the files). ``.bin`` files are read with
``torch.load(weights_only=True)``; nothing is downloaded and no remote code runs.

Tied embeddings: ``JanusConfig`` ties ``lm_head`` to the input embeddings by default, while Janus-Pro's LLM has its
own output matrix. When the files hold an ``lm_head`` that differs from the embeddings, the model is untied (and a
warning says so) rather than silently overwriting one with the other.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from common.io import check_finite_tensors, read_tensor_file

from . import keymap
from .layout import JanusLayout

logger = logging.getLogger(__name__)
PathLike = str | os.PathLike
EMBED = "model.language_model.embed_tokens.weight"
HEAD = "lm_head.weight"


class CheckpointError(ValueError):
    """A checkpoint that does not match its config: names the missing, unexpected or mis-shaped keys."""


def _cot_settings():
    from common.validate import Bool, Float, Int, Str

    return (Float("temperature", min=1e-6), Int("top_k", min=1, optional=True), Int("max_new_tokens", min=1),
            Str("instruction"), Str("system_prompt", nonempty=False), Bool("official_template"))


@dataclass
class JanusBundle:
    model: "torch.nn.Module"  # transformers.JanusForConditionalGeneration, eval mode
    layout: JanusLayout
    tokenizer: object
    decoder: Optional[Callable] = None  # codes -> images instead of the model's VQ (the shapes world's MAGVIT-v2)

    def pipeline(self, cot: Optional[dict] = None, **kwargs):
        """A :class:`~janus.pipeline.JanusPipeline`; ``cot`` (the ``model.cot`` block of a config: ``temperature``,
        ``top_k``, ``max_new_tokens``, ``instruction``, ``system_prompt``, ``official_template``) adds T2I-R1's
        semantic CoT. ``official_template: true`` renders the reasoning *and* the image prompts with T2I-R1's
        ``User:`` / ``Assistant:`` roles (default: Janus-Pro's ``<|User|>`` / ``<|Assistant|>``)."""
        from common.validate import ConfigError, validate

        from .cot import SemanticCoT
        from .pipeline import JanusPipeline
        from .prompting import chat_template

        if cot is not None:
            cot = dict(cot)
            known = {s.key for s in _cot_settings()}
            unknown = sorted(set(cot) - known)
            if unknown:
                raise ConfigError(f"model.cot: unknown setting(s) {unknown}; known {sorted(known)}")
            validate(cot, [s for s in _cot_settings() if s.key in cot], "model.cot")
            template = chat_template(bool(cot.pop("official_template", False)))
            kwargs.setdefault("template", template)
            cot = SemanticCoT(self.model, self.layout, self.tokenizer, template=kwargs["template"], **cot)
        return JanusPipeline(self.model, self.layout, self.tokenizer, cot=cot, decoder=self.decoder, **kwargs)


# ---------------------------------------------------------------------------------------------------- files
def read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err


def _read_file(path: Path) -> dict[str, torch.Tensor]:
    """One weights file; a damaged file or a non-finite tensor is an error naming the file (and the tensors)."""
    state = read_tensor_file(path, "cpu", mmap=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a flat dict of tensors")
    check_finite_tensors(state, str(path))
    return state


def read_weights(directory: Path) -> tuple[dict[str, torch.Tensor], str]:
    """All tensors of a checkpoint directory (single file or shards listed by an index) and the files' name."""
    for single, index in (("model.safetensors", "model.safetensors.index.json"),
                          ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        if (directory / index).is_file():
            weight_map = read_json(directory / index).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise ValueError(f"{directory / index} has no weight_map")
            state: dict[str, torch.Tensor] = {}
            for shard in sorted(set(weight_map.values())):
                if not (directory / shard).is_file():
                    raise FileNotFoundError(f"{directory / shard} (listed in {index}) not found")
                state.update(_read_file(directory / shard))
            absent = sorted(k for k, shard in weight_map.items() if k not in state)
            if absent:
                raise CheckpointError(
                    f"{directory / index}: keys listed but not in their shard: {', '.join(absent[:10])}")
            return state, str(directory / index)
        if (directory / single).is_file():
            return _read_file(directory / single), str(directory / single)
    raise FileNotFoundError(
        f"no weights in {directory}: expected model.safetensors, pytorch_model.bin or a sharded index of either"
    )


# ---------------------------------------------------------------------------------------------------- strict load
def _describe(keys, rename: Callable[[str], str]) -> str:
    keys = sorted(keys)
    shown = [k if rename(k) == k else f"{rename(k)} (transformers: {k})" for k in keys[:10]]
    return ", ".join(shown) + (f" and {len(keys) - 10} more" if len(keys) > 10 else "")


def build_strict(config, state: dict[str, torch.Tensor], source: str, *, dtype: Optional[torch.dtype] = None,
                 device: Optional[str | torch.device] = None, rename: Callable[[str], str] = lambda k: k):
    """``JanusForConditionalGeneration(config)`` holding exactly ``state`` (transformers key names).

    ``rename`` maps a transformers key back to the stored name for error messages. The model is built on the meta
    device (no random initialisation of billions of weights) and the tensors are assigned in place.
    """
    from accelerate import init_empty_weights
    from transformers import JanusForConditionalGeneration

    state = dict(state)
    if config.tie_word_embeddings and HEAD in state and EMBED in state:
        if torch.equal(state[HEAD], state[EMBED]):
            state.pop(HEAD)
        else:
            logger.warning("%s: config ties lm_head to the embeddings but the files hold a different lm_head; "
                           "loading it untied", source)
            config.tie_word_embeddings = False
    tied = bool(config.tie_word_embeddings)
    with init_empty_weights(include_buffers=False):
        model = JanusForConditionalGeneration(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if tied:
        expected.pop(HEAD)
    missing = expected.keys() - state.keys()
    unexpected = state.keys() - expected.keys()
    problems = []
    if missing:
        problems.append(f"missing keys: {_describe(missing, rename)}")
    if unexpected:
        problems.append(f"unexpected keys: {_describe(unexpected, rename)}")
    wrong = sorted(k for k in expected.keys() & state.keys() if tuple(state[k].shape) != expected[k])
    if wrong:
        problems.append("mis-shaped keys: " + ", ".join(
            f"{rename(k)} has shape {list(state[k].shape)}, the config implies {list(expected[k])}"
            for k in wrong[:10]))
    if problems:
        raise CheckpointError(f"{source}: " + "; ".join(problems))
    if tied:
        state[HEAD] = state[EMBED]
    model.load_state_dict(state, strict=True, assign=True)
    if tied:
        model.tie_weights()
    if dtype is not None:
        model.to(dtype)
    return model.to(device or "cpu").eval()


# ---------------------------------------------------------------------------------------------------- loaders
def load_tokenizer(path: PathLike):
    from transformers import AutoTokenizer

    path = Path(path)
    if not (path / "tokenizer_config.json").is_file() and not (path / "tokenizer.json").is_file():
        raise FileNotFoundError(f"no tokenizer files (tokenizer.json / tokenizer_config.json) in {path}")
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def load_janus(directory: PathLike, *, tokenizer: Optional[PathLike] = None, dtype: Optional[str | torch.dtype] = None,
               device: Optional[str | torch.device] = None) -> JanusBundle:
    """A Janus-Pro checkpoint from a local directory, either layout (``config.json``'s ``model_type`` decides).

    ``tokenizer``: a directory with the tokenizer files when they are not beside the weights. ``dtype``: e.g.
    ``"bfloat16"``; ``None`` keeps the stored dtype.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint directory {directory} not found")
    kind = read_json(directory / "config.json").get("model_type")
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    tok = load_tokenizer(tokenizer if tokenizer is not None else directory)
    if kind == "janus":
        model = _load_hf(directory, dtype, device)
    elif kind == "multi_modality":
        model = _load_deepseek(directory, tok, dtype, device)
    else:
        raise ValueError(f"{directory / 'config.json'}: model_type={kind!r}; expected 'janus' (transformers layout) "
                         "or 'multi_modality' (DeepSeek layout)")
    return JanusBundle(model, JanusLayout.from_model_config(model.config, tok), tok)


def _load_hf(directory: Path, dtype, device):
    from transformers import JanusConfig

    config = JanusConfig.from_pretrained(str(directory), local_files_only=True)
    state, source = read_weights(directory)
    return build_strict(config, state, source, dtype=dtype, device=device)


def _load_deepseek(directory: Path, tokenizer, dtype, device):
    path = directory / "config.json"
    config = keymap.deepseek_config_to_hf(read_json(path), tokenizer, str(path))
    raw, source = read_weights(directory)
    state = keymap.deepseek_to_hf_state(raw, source)
    return build_strict(config, state, source, dtype=dtype, device=device, rename=keymap.hf_to_deepseek_key)


# ---------------------------------------------------------------------------------------------------- writers
def save_hf(bundle: JanusBundle, directory: PathLike) -> Path:
    """transformers' layout: ``model.safetensors``, ``config.json``, tokenizer files and the generation config the
    official conversion writes (temperature 1, guidance 5, pad and ``<begin_of_image>`` ids)."""
    from transformers import GenerationConfig

    directory = Path(directory)
    bundle.model.save_pretrained(str(directory))
    bundle.tokenizer.save_pretrained(str(directory))
    lay = bundle.layout
    GenerationConfig(temperature=1.0, guidance_scale=5, pad_token_id=lay.pad_id, bos_token_id=lay.bos_id,
                     eos_token_id=lay.eos_id, boi_token_id=lay.boi_id,
                     generation_kwargs={"boi_token_id": lay.boi_id}).save_pretrained(str(directory))
    return directory


def save_deepseek(bundle: JanusBundle, directory: PathLike, *, shards: int = 1,
                  extra: Optional[dict[str, torch.Tensor]] = None) -> Path:
    """DeepSeek's original layout: ``config.json`` (``multi_modality``), ``pytorch_model.bin`` (or ``shards`` files
    with ``pytorch_model.bin.index.json``) and tokenizer files. ``extra``: additional stored tensors (original names),
    e.g. the groups the loader drops by design."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = keymap.hf_to_deepseek_state({k: v.detach().cpu() for k, v in bundle.model.state_dict().items()
                                         if not (k == HEAD and bundle.model.config.tie_word_embeddings)})
    state.update(extra or {})
    config = keymap.hf_config_to_deepseek(bundle.model.config)
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    keys = sorted(state)
    if shards <= 1:
        torch.save(state, directory / "pytorch_model.bin")
    else:
        weight_map = {}
        for i in range(shards):
            name = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
            part = {k: state[k] for k in keys[i::shards]}
            torch.save(part, directory / name)
            weight_map.update(dict.fromkeys(part, name))
        (directory / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}, indent=2))
    bundle.tokenizer.save_pretrained(str(directory))
    return directory
