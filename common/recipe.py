"""The start of every recipe, written once: check the settings, pin the threads, open the run directory.

::

    check(cfg, "generate", SETTINGS)           # ConfigError naming key and value; threads pinned and recorded
    ...load prompts and models (errors here leave nothing on disk)...
    run = open_run(cfg, ignore=("batch_size",), main_process=state.is_main_process)

The fingerprint's inputs are found in the config itself: every value under a key named like a path (``prompts``,
``model_dir``, ``directory``, ...) that names an existing file or folder is hashed by content (:data:`PATH_KEYS`), so a
resumed run with another checkpoint or prompt file is refused even when the path string is the same.
"""
from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

from .env import keep_freed_memory, set_threads
from .rundir import IF_EXISTS, RunDir, _plain, flatten
from .validate import Choice, ConfigError, Int, Setting, Str, lookup, validate

__all__ = ["PATH_KEYS", "RUN_IGNORE", "RUN_SETTINGS", "build_generator", "check", "open_run", "path_inputs",
           "unset_variables"]

RUN_SETTINGS = (Str("run_dir"), Choice("if_exists", IF_EXISTS), Int("threads", min=1))
# keys that never change what a run writes: where it lives, what to do with an old one, Hydra's own settings
RUN_IGNORE = ("run_dir", "if_exists", "hydra")
PATH_KEYS = frozenset({"pretrained", "vq_pretrained", "tokenizer", "directory", "vq_directory", "model_dir", "weights",
                       "checkpoint", "corrector", "prompts", "class_names", "pairs", "metadata", "image_dir", "paths",
                       "phi_config", "config_file"})


_ENV = re.compile(r"oc\.env:\s*([A-Za-z_][A-Za-z0-9_]*)")


def unset_variables(cfg: Any) -> list[str]:
    """Every interpolated value of ``cfg`` that cannot be used, named with its key and environment variables: one
    that resolves to the placeholder ``'???'`` (``${oc.env:SHOWO_CKPT,???}`` with ``SHOWO_CKPT`` unset would otherwise
    be read as a path named ``???``) or that fails to resolve. Plain ``???`` values stay Hydra's (an error when
    read)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    problems = []
    for key, raw in flatten(OmegaConf.to_container(cfg, resolve=False)).items():
        if not isinstance(raw, str) or "${" not in raw or key.split(".")[0] in RUN_IGNORE:
            continue
        names = ", ".join(_ENV.findall(raw))
        where = f" (environment variable {names} is not set)" if names else ""
        try:
            value = lookup(cfg, key)  # OmegaConf.select would read a resolved '???' as "missing" and return None
        except OmegaConfBaseException as err:
            problems.append(f"{key} = {raw!r}: cannot be resolved{where}: {str(err).splitlines()[0]}")
            continue
        if value == "???":
            problems.append(f"{key} = {raw!r} resolves to '???'{where}: set it, or override {key}=...")
    return problems


def check(cfg: Any, recipe: str, settings: Iterable[Setting] = ()) -> int:
    """Validate the run settings and ``settings`` (all violations at once, unset environment variables included:
    :func:`unset_variables`), then pin torch's thread count to ``cfg.threads`` and keep freed memory in the process
    (:func:`common.env.keep_freed_memory`: speed, not results); returns the thread count."""
    unset = unset_variables(cfg)
    if unset:
        raise ConfigError(f"{recipe}: {len(unset)} setting{'s' * (len(unset) > 1)} from unset environment "
                          "variables\n  " + "\n  ".join(unset))
    validate(cfg, (*RUN_SETTINGS, *settings), recipe)
    keep_freed_memory()
    return set_threads(cfg.threads)


def path_inputs(cfg: Any) -> dict[str, str]:
    """Dotted config key -> path, for every value under a :data:`PATH_KEYS` key that names an existing file or folder
    (list values give ``key.0``, ``key.1``, ...)."""
    found = {}
    for key, value in flatten(_plain(cfg)).items():
        if key.split(".")[-1] not in PATH_KEYS or key.split(".")[0] in RUN_IGNORE:
            continue
        for name, item in ([(key, value)] if not isinstance(value, list) else
                           [(f"{key}.{i}", v) for i, v in enumerate(value)]):
            if isinstance(item, str) and item and Path(item).exists():
                found[name] = item
    return found


def open_run(cfg: Any, *, ignore: Iterable[str] = (), inputs: Mapping[str, Any] | None = None,
             main_process: bool = True, device: Any = None) -> RunDir:
    """Open ``cfg.run_dir`` as the run of ``cfg`` (:meth:`common.rundir.RunDir.open`): inputs = the config's paths
    plus ``inputs``; ``ignore`` = keys that do not change the outputs (besides :data:`RUN_IGNORE`)."""
    return RunDir.open(cfg.run_dir, cfg, inputs={**path_inputs(cfg), **dict(inputs or {})},
                       ignore=(*RUN_IGNORE, *ignore), if_exists=cfg.if_exists, main_process=main_process, device=device)


def build_generator(model_cfg: Any):
    """``(bundle, pipeline, sampling)`` from a ``model`` config group: ``bundle._target_`` loads the model, the
    optional ``scheduler._target_`` its sampler (Show-o), the optional ``cot`` block a semantic CoT (Janus-Pro), the
    optional ``fast`` block an opt-in fast sampling mode (Show-o, :mod:`showo.fast`),
    ``sampling`` the keyword settings of every generation (checked by the pipeline's ``check_sampling``, so a bad
    value is named before any output exists). The pipeline follows :class:`common.generator.ImageGenerator`."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    bundle = instantiate(model_cfg.bundle)
    kwargs = {}
    if model_cfg.get("scheduler") is not None:
        kwargs["scheduler"] = instantiate(model_cfg.scheduler)
    if model_cfg.get("cot") is not None:
        kwargs["cot"] = OmegaConf.to_container(model_cfg.cot, resolve=True)
    if model_cfg.get("fast") is not None:  # opt-in fast sampling (Show-o: showo/fast.py); null = exact mode
        if "fast" not in inspect.signature(bundle.pipeline).parameters:
            raise ConfigError(f"model.fast = {OmegaConf.to_container(model_cfg.fast)}: {type(bundle).__name__} has "
                              "no fast mode; set model.fast=null")
        kwargs["fast"] = OmegaConf.to_container(model_cfg.fast, resolve=True)
    pipe = bundle.pipeline(**kwargs)
    sampling = OmegaConf.to_container(model_cfg.sampling, resolve=True) if model_cfg.get("sampling") else {}
    pipe.check_sampling(sampling)
    return bundle, pipe, sampling
