"""Recipe: test-time search (best-of-N, step-level, PARM, PARM++, pools) into the official GenEval folder layout.

    python scripts/run_search.py search=parm reward=parm prompts=evaluation_metadata.jsonl run_dir=runs/parm
    python scripts/run_search.py search=best_of_n reward=orm_finetuned ...
    python scripts/run_search.py search=pool reward=none ...   # generate once, select many (scripts/pool_report.py)

``search=`` picks the strategy (configs/search/), ``reward=`` the judge it is given (configs/reward/); the pair must be
one of configs/search_judge/<search>/<reward>.yaml, so a strategy with the wrong kind of judge fails when the config
is composed (``Could not find 'search_judge/parm/orm_zeroshot'``), before anything is loaded.

Reads top to bottom: check settings -> prompts -> model and strategy (with its judge) -> open the run directory
(:mod:`common.rundir`) -> for every (prompt, sample) slot: search (every strategy has ``search_many`` and takes
``slots_per_call`` slots at once: their paths share forward passes, each keeps its generator), store the result JSON
(``<run>/slots/<prompt:05d>_<sample:02d>.json``: chosen tokens, every candidate with its seed and scores, the trace
and the cost) -> once a prompt's samples are done, write its GenEval folder with the very images the judge scored
(a resumed slot is decoded from its stored tokens by the same decode path, giving the same bytes; a Janus-Pro's
semantic CoT of the chosen candidate goes beside its image as ``samples/<k:04d>.cot.txt``). Any generator of the
generator protocol (:mod:`common.generator`), e.g. ``model=janus_pro_7b`` (+ ``+cot@model.cot=t2i_r1``). Pools
(``search=pool``) go to ``<run>/pool/`` (:class:`search.pool.PoolEntry`); ``cost.json`` sums every slot's cost.
"""
from __future__ import annotations

import json
from pathlib import Path

import hydra
import torch
from accelerate import PartialState
from hydra.utils import instantiate
from omegaconf import DictConfig
from tqdm import tqdm

from common.io import atomic_write_json, atomic_write_text
from common.recipe import build_generator, check, open_run
from common.validate import ConfigError, Device, File, Int
from eval.geneval.layout import write_prompt_folder
from eval.geneval.prompts import load_prompt_set
from search.base import CostCounter, Slot
from search.pool import save_entry
from showo.factory import load_bundle
from showo.prompting import warn_unrepresentable

SETTINGS = (File("prompts"), File("class_names", optional=True), Int("images_per_prompt", min=1), Int("seed"),
            Device("device"), Int("search.strategy.batch_size", min=1, optional=True),
            Int("search.strategy.num_candidates", min=1, optional=True))  # search.corrector: check_corrector
SEARCHED = "searched"  # search.corrector: the searched model regenerates (it must be self-correction fine-tuned)


def check_corrector(cfg: DictConfig) -> None:
    """PARM++ regenerates with a self-correction fine-tuned Show-o (paper §7): ``search.corrector`` must name its
    bundle directory, or be ``searched`` when the searched model is that model (Table 5's setting). Unset, the base
    Show-o, never trained to read feedback, would regenerate: refused before anything runs."""
    if "corrector" not in cfg.search:
        return
    corrector = cfg.search.corrector
    if corrector is None:
        raise ConfigError("run_search: search.corrector is not set: PARM++ regenerates with a self-correction "
                          "fine-tuned Show-o (scripts/geneval/parmpp.sh fine-tunes one). Set search.corrector=<its "
                          f"bundle directory>, or search.corrector={SEARCHED} if the searched model was fine-tuned "
                          "for self-correction (to run the base model anyway, ask for it this way)")
    if corrector != SEARCHED and not Path(corrector).is_dir():
        raise ConfigError(f"run_search: search.corrector = {corrector!r}: directory not found (a Show-o bundle "
                          f"directory, or {SEARCHED!r})")


def build_strategy(cfg: DictConfig, pipe=None):
    """The ``search=`` strategy with its judge (bound by configs/search_judge/), and (PARM++) the self-correction
    model: the Show-o bundle in ``search.corrector`` (sampled with ``pipe``'s scheduler), or the searched model's
    pipeline (``searched``)."""
    kwargs = {}
    if cfg.search.get("corrector") not in (None, SEARCHED):
        kwargs["corrector"] = load_bundle(cfg.search.corrector, device=cfg.device).pipeline(getattr(pipe, "scheduler",
                                                                                                    None))
    return instantiate(cfg.search.strategy, **kwargs)


def run_inputs(cfg: DictConfig) -> dict[str, str]:
    """Inputs of the run besides the config's model and prompt paths: a stored pool a strategy replays from
    (``search.strategy.pool``, PARM++'s PARM stage), so a run resumes only on the pool that made it."""
    pool = cfg.search.strategy.get("pool")
    return {"search.strategy.pool": str(pool)} if pool else {}


def run(cfg: DictConfig) -> Path:
    check(cfg, "run_search", SETTINGS)
    check_corrector(cfg)
    specs = load_prompt_set(cfg.prompts, cfg.class_names)
    bundle, pipe, sampling = build_generator(cfg.model)
    warn_unrepresentable(bundle.tokenizer, [s.prompt for s in specs])
    strategy = build_strategy(cfg, pipe)  # a missing judge or a bad strategy setting fails before any output
    state = PartialState()
    run_dir = open_run(cfg, main_process=state.is_main_process, device=cfg.device, inputs=run_inputs(cfg)).path
    state.wait_for_everyone()
    slots_dir, images_dir = run_dir / "slots", run_dir / "images"
    mine = [s for s in specs if s.index % state.num_processes == state.process_index]
    todo = [s for s in mine if not (images_dir / f"{s.index:05d}" / "metadata.jsonl").is_file()]
    bar = tqdm(total=len(todo) * cfg.images_per_prompt, desc=f"search:{cfg.search.name} [{state.process_index}]",
               disable=not todo, dynamic_ncols=True)
    # every slot of the pending prompts, in order: a stored one is decoded from its tokens, the others are searched
    # `slots_per_call` at a time (a strategy with search_many decodes their paths together)
    chosen: dict[tuple[int, int], tuple] = {}
    pending = []
    for spec in todo:
        for k in range(cfg.images_per_prompt):
            path = slots_dir / f"{spec.index:05d}_{k:02d}.json"
            if path.is_file():  # resumed slot: the stored tokens through the same decode path
                record = json.loads(path.read_text())
                best = record["candidates"][record["chosen"]]
                chosen[spec.index, k] = (pipe.decode(torch.tensor([best["tokens"]]), "pil")[0], best["info"].get("cot"))
                bar.update(1)
            else:
                pending.append((spec, k))
    many = getattr(strategy, "search_many", None)
    per_call = strategy.slots_per_call if many is not None else 1

    def write_complete(specs) -> None:
        """Write the GenEval folder of every prompt of ``specs`` whose samples are all chosen now."""
        for spec in {spec.index: spec for spec in specs}.values():
            keys = [(spec.index, k) for k in range(cfg.images_per_prompt)]
            if all(key in chosen for key in keys):
                images, cots = zip(*(chosen.pop(key) for key in keys))
                write_prompt_folder(images_dir, spec, list(images),
                                    cots=list(cots) if any(c is not None for c in cots) else None)

    write_complete(todo)  # prompts whose every sample was stored already
    for start in range(0, len(pending), per_call):
        group = pending[start: start + per_call]
        slots = [Slot(spec.prompt, spec.index, k, cfg.seed) for spec, k in group]
        with torch.no_grad():
            results = many(pipe, slots, sampling) if many is not None else [strategy.search(pipe, slots[0], sampling)]
        for (spec, k), result in zip(group, results):
            if "pool_entry" in result.extras:
                save_entry(run_dir / "pool", result.extras["pool_entry"])
            atomic_write_text(slots_dir / f"{spec.index:05d}_{k:02d}.json", json.dumps(result.to_json()))
            image = result.image if result.image is not None else pipe.decode(result.tokens[None])[0]
            chosen[spec.index, k] = (image, result.candidates[result.chosen].info.get("cot"))
            bar.update(1)
        write_complete(spec for spec, _ in group)
    bar.close()
    state.wait_for_everyone()
    if state.is_main_process:
        done = sum((images_dir / f"{s.index:05d}" / "metadata.jsonl").is_file() for s in specs)
        run_cost = CostCounter()  # rebuilt from every stored slot, so it covers resumed runs too
        slot_files = sorted(slots_dir.glob("*.json"))
        for path in slot_files:
            run_cost += CostCounter(**json.loads(path.read_text())["cost"])
        atomic_write_json(run_dir / "cost.json", {"slots": len(slot_files), **run_cost.as_dict()})
        print(f"{done}/{len(specs)} prompts complete in {images_dir}; cost {run_cost.as_dict()}")
    return run_dir


if __name__ == "__main__":
    hydra.main(config_path="../configs", config_name="run_search", version_base="1.3")(run)()
