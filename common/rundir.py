"""One run directory per job: its resolved config, the fingerprint of what determines its outputs, stage markers and
the environment it ran in (STYLE.md point 6, ARCHITECTURE.md "every long job writes into one run directory").

::

    <run_dir>/config.yaml        the resolved config (what the user asked for)
    <run_dir>/run.json           fingerprint (config values + input content hashes), environment of every session
    <run_dir>/stages/<name>.json a finished stage (written last, atomically), with what it reported
    <run_dir>/...                the recipe's outputs

A run *resumes* only into a directory whose fingerprint matches: the same config values (except the keys a recipe
declares as not changing outputs, e.g. a batch size that never changes an image) and inputs with the same content.
Otherwise :meth:`RunDir.open` raises :class:`RunMismatch` naming every differing key, unless the caller asks to
``overwrite`` the directory or to start a ``new`` one beside it. Nothing is written before the checks pass, so a run
refused for bad input leaves no directory that looks like a run.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from .env import environment
from .io import atomic_write_json, atomic_write_text, path_sha256, remove_temporaries

__all__ = ["IF_EXISTS", "Fingerprint", "RunDir", "RunMismatch", "fingerprint", "flatten"]

RUN_FILE = "run.json"
CONFIG_FILE = "config.yaml"
STAGES_DIR = "stages"
IF_EXISTS = ("resume", "overwrite", "new")
PathLike = str | os.PathLike


class RunMismatch(RuntimeError):
    """A run directory holds outputs of another config or other inputs; the message names each difference."""


def _plain(config: Any) -> Any:
    """Plain (resolved) dicts, lists and scalars from any mix of them with DictConfig / ListConfig / paths."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(config, (DictConfig, ListConfig)):
        return OmegaConf.to_container(config, resolve=True)
    if isinstance(config, Mapping):
        return {str(k): _plain(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [_plain(v) for v in config]
    if isinstance(config, os.PathLike):
        return os.fspath(config)
    return config


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values (an element change names the list's key)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _ignored(key: str, ignore: Iterable[str]) -> bool:
    return any(key == pat or key.startswith(pat + ".") for pat in ignore)


ORDER = "[order]"  # suffix of a fingerprint entry holding a mapping's key order


def _key_orders(config: Mapping[str, Any], skip: Iterable[str], prefix: str = "") -> dict[str, list[str]]:
    """``{"<path>[order]": [keys in order]}`` for every mapping of two or more kept keys: a config's mappings are
    ordered, and order can decide outputs (the shapes palette's order decides every drawn prompt), so it is part of a
    fingerprint. Ignored keys are left out of the lists."""
    out: dict[str, list[str]] = {}
    keys = [str(k) for k in config if not _ignored(f"{prefix}{k}", skip)]
    if len(keys) > 1:
        out[f"{prefix.rstrip('.')}{ORDER}"] = keys
    for key in keys:
        value = config[key]
        if isinstance(value, Mapping):
            out.update(_key_orders(value, skip, f"{prefix}{key}."))
    return out


@dataclass(frozen=True)
class Fingerprint:
    """What determines a run's outputs: config values by dotted key, and input content hashes by name."""

    config: dict[str, Any]
    inputs: dict[str, Optional[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"config": self.config, "inputs": self.inputs}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Fingerprint":
        return cls(dict(data.get("config", {})), dict(data.get("inputs", {})))

    def differences(self, new: "Fingerprint") -> list[str]:
        """One line per differing config key or input ("on disk" = ``self``)."""
        lines = []
        for key in sorted(set(self.config) | set(new.config)):
            if key.endswith(ORDER) and key not in self.config:
                continue  # written before key orders were fingerprinted: nothing to compare with
            old_v, new_v = self.config.get(key, "<absent>"), new.config.get(key, "<absent>")
            if json.dumps(old_v, sort_keys=True) != json.dumps(new_v, sort_keys=True):
                lines.append(f"config '{key}': on disk {old_v!r}, now {new_v!r}")
        for name in sorted(set(self.inputs) | set(new.inputs)):
            old_h, new_h = self.inputs.get(name, "<absent>"), new.inputs.get(name, "<absent>")
            if old_h != new_h:
                lines.append(f"input '{name}': content differs (sha256 on disk {str(old_h)[:12]}, now {str(new_h)[:12]})")
        return lines


def fingerprint(config: Any, inputs: Mapping[str, Optional[PathLike]] | None = None,
                ignore: Iterable[str] = ()) -> Fingerprint:
    """Fingerprint of a resolved config and input paths.

    ``inputs`` maps a name to a file or directory (or ``None`` for an absent optional input); when the name is a
    dotted config key, that key's *path string* leaves the config part, so a moved file with the same content still
    matches. ``ignore`` lists dotted keys (and their sub-keys) that do not change the outputs. Every mapping's key
    order is part of it too (``<key>[order]`` entries; a run directory written without them is not held to them).
    """
    inputs = dict(inputs or {})
    skip = [*ignore, *inputs]
    plain = _plain(config)
    flat = {k: v for k, v in flatten(plain).items() if not _ignored(k, skip)}
    if isinstance(plain, Mapping):
        flat.update(_key_orders(plain, skip))
    hashes = {name: None if path is None else path_sha256(path) for name, path in inputs.items()}
    return Fingerprint(flat, hashes)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class RunDir:
    """A run directory (see the module docstring). Build it with :meth:`open`; ``RunDir(path)`` only reads."""

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)

    # ------------------------------------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: PathLike, config: Any, *, inputs: Mapping[str, Optional[PathLike]] | None = None,
             ignore: Iterable[str] = (), if_exists: str = "resume", main_process: bool = True,
             device: Any = None) -> "RunDir":
        """Create ``path`` as a run of ``config`` / ``inputs``, or resume it when its fingerprint matches.

        ``if_exists``: ``"resume"`` (a different fingerprint is a :class:`RunMismatch`), ``"overwrite"`` (delete what
        is there first) or ``"new"`` (use ``<path>_1``, ``<path>_2``, ... when ``path`` holds a run). A non-empty
        directory that is not a run directory is refused unless overwritten. Only the main process writes.
        """
        if if_exists not in IF_EXISTS:
            raise ValueError(f"if_exists must be one of {IF_EXISTS}, got {if_exists!r}")
        path = Path(path)
        fp = fingerprint(config, inputs, ignore)
        if if_exists == "new":
            path = cls._fresh(path)
        run = cls(path)
        if path.exists() and any(path.iterdir()):
            if if_exists == "overwrite":
                if main_process:
                    _remove_tree(path)
            elif not (path / RUN_FILE).is_file():
                raise RunMismatch(f"{path} is not empty and holds no {RUN_FILE}: not a run directory of this code "
                                  "(pass if_exists=overwrite to replace it, or if_exists=new)")
            else:
                diffs = run.fingerprint.differences(fp)
                if diffs:
                    raise RunMismatch(f"{path} holds a run with another config or other inputs:\n  "
                                      + "\n  ".join(diffs) + "\n(pass if_exists=overwrite to replace it, if_exists=new "
                                      "for a new directory beside it, or the same settings to resume)")
                if main_process:  # what a killed session was writing: never reused, so never left lying around
                    remove_temporaries(path)
        if main_process:
            run._record(config, fp, device)
        return run

    @staticmethod
    def _fresh(path: Path) -> Path:
        if not path.exists() or not any(path.iterdir()):
            return path
        k = 1
        while (candidate := path.with_name(f"{path.name}_{k}")).exists() and any(candidate.iterdir()):
            k += 1
        return candidate

    def _record(self, config: Any, fp: Fingerprint, device: Any) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        info = self.info if (self.path / RUN_FILE).is_file() else {"created": _now(), "sessions": []}
        info["fingerprint"] = fp.to_json()
        info["sessions"] = [*info.get("sessions", []), {"started": _now(), "environment": environment(device)}]
        plain = _plain(config)
        from omegaconf import OmegaConf

        atomic_write_text(self.path / CONFIG_FILE, OmegaConf.to_yaml(OmegaConf.create(plain)))
        atomic_write_json(self.path / RUN_FILE, info)

    # ------------------------------------------------------------------------------------------------ reading
    @property
    def info(self) -> dict[str, Any]:
        path = self.path / RUN_FILE
        try:
            return json.loads(path.read_text())
        except FileNotFoundError as err:
            raise FileNotFoundError(f"not a run directory (no {RUN_FILE}): {self.path}") from err
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: invalid JSON ({err.msg})") from err

    @property
    def config(self) -> dict[str, Any]:
        """The resolved config recorded in ``config.yaml``."""
        from omegaconf import OmegaConf

        path = self.path / CONFIG_FILE
        if not path.is_file():
            raise FileNotFoundError(f"not a run directory (no {CONFIG_FILE}): {self.path}")
        return OmegaConf.to_container(OmegaConf.load(path))

    @property
    def fingerprint(self) -> Fingerprint:
        return Fingerprint.from_json(self.info.get("fingerprint", {}))

    @property
    def environment(self) -> dict[str, Any]:
        """The environment of the latest session."""
        sessions = self.info.get("sessions") or [{}]
        return sessions[-1].get("environment", {})

    # ------------------------------------------------------------------------------------------------ stages
    def stage_path(self, name: str) -> Path:
        return self.path / STAGES_DIR / f"{name}.json"

    def done(self, name: str) -> bool:
        return self.stage_path(name).is_file()

    def stage_info(self, name: str) -> dict[str, Any]:
        return json.loads(self.stage_path(name).read_text())

    def mark_done(self, name: str, info: Mapping[str, Any] | None = None) -> None:
        """Record stage ``name`` as finished (written last, atomically)."""
        atomic_write_json(self.stage_path(name), {"finished": _now(), **dict(info or {})})


def _remove_tree(path: Path) -> None:
    resolved = path.resolve()
    if resolved == Path(resolved.anchor) or resolved == Path.home().resolve() or resolved == Path.cwd().resolve():
        raise ValueError(f"refusing to overwrite {resolved}: pick a run directory below the working directory")
    shutil.rmtree(resolved)
