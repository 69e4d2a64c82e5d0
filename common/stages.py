"""A small stage runner over run directories: each named stage of a run is done once, and a finished stage is reused
only while its config and inputs are the ones that produced it (:mod:`common.rundir`).

::

    stages = Stages(RunDir.open(...))
    info = stages("round_0/generate", config, lambda: generate(...), inputs={"model": model_dir})

A stage that finished with another fingerprint is a :class:`~common.rundir.RunMismatch` naming the differences
(``if_exists="overwrite"`` reruns it instead). Every stage records its wall time, so a run can report where its time
went (:meth:`Stages.timings`). Recipes (``scripts/iterative_dpo.py``, ``scripts/shapes/quickstart.py``) are built on it.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Mapping, Optional

from .rundir import Fingerprint, RunDir, RunMismatch, fingerprint

__all__ = ["Stages"]


class Stages:
    """Named, fingerprinted, resumable stages of one :class:`RunDir`."""

    def __init__(self, run: RunDir, if_exists: str = "resume", main_process: bool = True) -> None:
        self.run = run
        self.if_exists = if_exists
        self.main_process = main_process

    def __call__(self, name: str, config: Any, fn: Callable[[], Optional[Mapping[str, Any]]], *,
                 inputs: Mapping[str, Any] | None = None, ignore: Iterable[str] = ()) -> dict[str, Any]:
        """Run ``fn`` as stage ``name`` unless it finished with the same fingerprint; returns what it reported."""
        fp = fingerprint(config, inputs, ignore)
        if self.run.done(name):
            info = self.run.stage_info(name)
            diffs = Fingerprint.from_json(info.get("fingerprint", {})).differences(fp)
            if not diffs:
                return info
            if self.if_exists != "overwrite":
                raise RunMismatch(f"stage '{name}' of {self.run.path} finished with another config or other inputs:\n  "
                                  + "\n  ".join(diffs) + "\n(pass if_exists=overwrite to redo it)")
        start = time.perf_counter()
        info = dict(fn() or {})
        info.update(fingerprint=fp.to_json(), seconds=round(time.perf_counter() - start, 3))
        if self.main_process:
            self.run.mark_done(name, info)
        return info

    def done(self, name: str) -> bool:
        return self.run.done(name)

    def timings(self) -> dict[str, float]:
        """Stage name -> wall seconds of every finished stage (in the order they finished)."""
        found = []
        stages_dir = self.run.path / "stages"
        for path in stages_dir.rglob("*.json") if stages_dir.is_dir() else []:
            name = path.relative_to(stages_dir).with_suffix("").as_posix()
            info = self.run.stage_info(name)
            found.append((info.get("finished", ""), name, float(info.get("seconds", 0.0))))
        return {name: seconds for _, name, seconds in sorted(found)}
