"""Typed, range-checked settings, checked before a recipe writes anything (DEVELOPERS.md "Runs cannot lie").

A recipe lists its settings once::

    SETTINGS = (Int("batch_size", min=1), Float("model.sampling.guidance_scale", min=0), File("prompts"))
    validate(cfg, SETTINGS, "generate")

and every violation is reported at once, each naming the key and the value::

    ConfigError: generate: 2 invalid settings
      batch_size = 0: must be an integer >= 1
      prompts = 'p.txt': file not found
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

__all__ = ["Bool", "Choice", "Choices", "ConfigError", "Device", "Dir", "File", "Float", "Int", "MISSING", "Setting",
           "Str", "lookup", "validate"]


class ConfigError(ValueError):
    """Invalid settings; the message names every offending key and value."""


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING = _Missing()


def lookup(cfg: Any, key: str) -> Any:
    """The value at a dotted ``key`` of a mapping / DictConfig (``MISSING`` when a part is absent)."""
    from omegaconf import DictConfig, OmegaConf

    node = cfg
    for part in key.split("."):
        try:
            if isinstance(node, DictConfig) and part in node.keys() and OmegaConf.is_missing(node, part):
                return "???"
            if part not in node:
                return MISSING
            node = node[part]
        except TypeError:
            return MISSING
    return node


@dataclass(frozen=True)
class Setting:
    """One setting: its dotted key, kind and constraints. Use the constructors below."""

    key: str
    kind: str  # int | float | str | bool | choice | choices | file | dir | device
    min: Optional[float] = None
    max: Optional[float] = None
    choices: tuple = ()
    optional: bool = False  # None (or no such key) allowed
    nonempty: bool = False

    def problem(self, value: Any) -> Optional[str]:
        """Why ``value`` is invalid, or None."""
        if value is MISSING:
            return None if self.optional else "is missing"
        if value is None or (isinstance(value, str) and value == "???"):
            return None if self.optional and value is None else "must be set"
        check = getattr(self, f"_check_{self.kind}")
        return check(value)

    def _range(self, value: float, what: str) -> Optional[str]:
        bounds = [f">= {self.min}" if self.min is not None else "", f"<= {self.max}" if self.max is not None else ""]
        bounds = " and ".join(b for b in bounds if b)
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            return f"must be {what} {bounds}"
        return None

    def _check_int(self, value: Any) -> Optional[str]:
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be an integer" + (f" {self._bounds()}" if self._bounds() else "")
        return self._range(value, "an integer")

    def _check_float(self, value: Any) -> Optional[str]:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return "must be a finite number" + (f" {self._bounds()}" if self._bounds() else "")
        return self._range(value, "a number")

    def _check_bool(self, value: Any) -> Optional[str]:
        return None if isinstance(value, bool) else "must be true or false"

    def _check_str(self, value: Any) -> Optional[str]:
        if not isinstance(value, str):
            return "must be a string"
        return "must not be empty" if self.nonempty and not value.strip() else None

    def _check_choice(self, value: Any) -> Optional[str]:
        return None if value in self.choices else f"must be one of {list(self.choices)}"

    def _check_choices(self, value: Any) -> Optional[str]:
        from collections.abc import Sequence

        if isinstance(value, str) or not isinstance(value, Sequence) or len(value) == 0:
            return f"must be a non-empty list of {list(self.choices)}"
        unknown = [v for v in value if v not in self.choices]
        return f"{unknown} not among {list(self.choices)}" if unknown else None

    def _check_file(self, value: Any) -> Optional[str]:
        return None if isinstance(value, (str, Path)) and Path(value).is_file() else "file not found"

    def _check_dir(self, value: Any) -> Optional[str]:
        return None if isinstance(value, (str, Path)) and Path(value).is_dir() else "directory not found"

    def _check_device(self, value: Any) -> Optional[str]:
        import torch

        try:
            device = torch.device(value) if isinstance(value, str) else None
        except RuntimeError:
            device = None
        if device is None:
            return "is not a device name (cpu, cuda, cuda:N, mps)"
        if device.type == "cuda" and torch.cuda.device_count() <= (device.index or 0):
            return f"this machine has {torch.cuda.device_count()} CUDA device(s)"
        if device.type == "mps" and not torch.backends.mps.is_available():
            return "MPS is not available on this machine"
        return None

    def _bounds(self) -> str:
        parts = [f">= {self.min}" if self.min is not None else "", f"<= {self.max}" if self.max is not None else ""]
        return " and ".join(p for p in parts if p)


def Int(key: str, min: Optional[int] = None, max: Optional[int] = None, optional: bool = False) -> Setting:
    return Setting(key, "int", min=min, max=max, optional=optional)


def Float(key: str, min: Optional[float] = None, max: Optional[float] = None, optional: bool = False) -> Setting:
    return Setting(key, "float", min=min, max=max, optional=optional)


def Bool(key: str, optional: bool = False) -> Setting:
    return Setting(key, "bool", optional=optional)


def Str(key: str, nonempty: bool = True, optional: bool = False) -> Setting:
    return Setting(key, "str", nonempty=nonempty, optional=optional)


def Choice(key: str, choices: Iterable[Any], optional: bool = False) -> Setting:
    return Setting(key, "choice", choices=tuple(choices), optional=optional)


def Choices(key: str, choices: Iterable[Any], optional: bool = False) -> Setting:
    """A non-empty list, every element one of ``choices``."""
    return Setting(key, "choices", choices=tuple(choices), optional=optional)


def File(key: str, optional: bool = False) -> Setting:
    return Setting(key, "file", optional=optional)


def Dir(key: str, optional: bool = False) -> Setting:
    return Setting(key, "dir", optional=optional)


def Device(key: str, optional: bool = False) -> Setting:
    """A torch device name that this machine has (so ``device=cuda`` on a CPU-only machine fails before any output)."""
    return Setting(key, "device", optional=optional)


def validate(cfg: Any, settings: Iterable[Setting], recipe: str) -> None:
    """Raise :class:`ConfigError` listing every setting of ``cfg`` that violates its declaration."""
    problems = []
    for setting in settings:
        value = lookup(cfg, setting.key)
        why = setting.problem(value)
        if why is not None:
            shown = value if value is MISSING else repr(value)
            problems.append(f"{setting.key} = {shown}: {why}")
    if problems:
        raise ConfigError(f"{recipe}: {len(problems)} invalid setting{'s' * (len(problems) > 1)}\n  "
                          + "\n  ".join(problems))
