"""Recipe: test-time search (best-of-N, step-level, PARM, PARM++, pools) into the official GenEval folder layout.

    python -P scripts/search.py search=parm reward=parm prompts=evaluation_metadata.jsonl output_dir=runs/parm
    python -P scripts/search.py search=best_of_n reward=orm_finetuned ...
    python -P scripts/search.py search=pool ... # generate once, select many (search/pool.py, scripts/pool_report.py)

(``-P``, Python >= 3.11: keep ``scripts/`` off ``sys.path``, where this file would shadow the ``search`` package;
``python -m scripts.search`` works too.)

Reads top to bottom: config -> Show-o bundle -> judge (``reward=`` group, built only when the strategy uses one)
-> strategy (``search=`` group) -> for every (prompt, sample) slot: search, store the result JSON -> once a prompt's
samples are all done, write its GenEval folder. Slot results are written atomically as
``<run>/slots/<prompt:05d>_<sample:02d>.json`` (chosen tokens, every candidate with its seed and scores, the trace
and the cost; ``cost.json`` sums them), so a killed run restarted with the same arguments resumes at the first missing slot and decodes
finished slots from their stored tokens. Pools (``search=pool``) go to ``<run>/pool/``.
"""
from __future__ import annotations

import json
from pathlib import Path

import hydra
import torch
from accelerate import PartialState
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from eval.geneval.layout import atomic_write_text, write_prompt_folder
from eval.geneval.prompts import load_prompt_set
from showo.factory import load_bundle
from showo.scheduler import MaskGITScheduler

try:
    from search.base import CostCounter, Sampling, Slot
    from search.pool import save_entry
except ModuleNotFoundError as err:  # `python scripts/search.py` puts scripts/ first on sys.path: this file shadows
    raise SystemExit("run this recipe as `python -P scripts/search.py ...` or `python -m scripts.search ...`: "
                     f"plain `python scripts/search.py` makes this file shadow the `search` package ({err})") from err


def build_strategy(cfg: DictConfig, scheduler: MaskGITScheduler | None = None):
    """The ``search=`` strategy, given the ``reward=`` judge under the argument its config names, and (PARM++) a
    separately fine-tuned self-correction model when ``search.corrector`` names a bundle directory."""
    kwargs = {}
    if cfg.search.judge_argument is not None:
        kwargs[cfg.search.judge_argument] = instantiate(cfg.reward)
    if cfg.search.get("corrector"):
        kwargs["corrector"] = load_bundle(cfg.search.corrector, device=cfg.device).pipeline(scheduler)
    return instantiate(cfg.search.strategy, **kwargs)


@hydra.main(config_path="../configs", config_name="search", version_base="1.3")
def main(cfg: DictConfig) -> None:
    state = PartialState()
    out = Path(cfg.output_dir)
    slots_dir, images_dir = out / "slots", out / "images"
    if state.is_main_process:
        atomic_write_text(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

    specs = load_prompt_set(cfg.prompts, cfg.class_names)
    mine = [s for s in specs if s.index % state.num_processes == state.process_index]
    todo = [s for s in mine if not (images_dir / f"{s.index:05d}" / "metadata.jsonl").is_file()]

    bundle = instantiate(cfg.model.bundle)
    sm = cfg.model.sampling
    pipe = bundle.pipeline(MaskGITScheduler(sm.mask_schedule, sm.temperature, sm.temperature_schedule))
    sampling = Sampling(sm.guidance_scale, sm.num_inference_steps)
    strategy = build_strategy(cfg, pipe.scheduler) if todo else None
    total = CostCounter()
    bar = tqdm(total=len(todo) * cfg.images_per_prompt, desc=f"search:{cfg.search.name} [{state.process_index}]",
               disable=not todo, dynamic_ncols=True)
    for spec in todo:
        tokens = []
        for k in range(cfg.images_per_prompt):
            path = slots_dir / f"{spec.index:05d}_{k:02d}.json"
            if not path.is_file():
                result = strategy.search(pipe, Slot(spec.prompt, spec.index, k, cfg.seed), sampling)
                if "pool_entry" in result.extras:
                    save_entry(out / "pool", result.extras["pool_entry"])
                atomic_write_text(path, json.dumps(result.to_json()))
                total += result.cost
            record = json.loads(path.read_text())
            tokens.append(record["candidates"][record["chosen"]]["tokens"])
            bar.update(1)
        write_prompt_folder(images_dir, spec, pipe.decode(torch.tensor(tokens), "pil"))
    bar.close()
    atomic_write_text(out / f"cost.part{state.process_index:03d}.json", json.dumps(total.as_dict()))
    state.wait_for_everyone()
    if state.is_main_process:
        done = sum((images_dir / f"{s.index:05d}" / "metadata.jsonl").is_file() for s in specs)
        run_cost = CostCounter()  # rebuilt from every stored slot, so it covers resumed runs too
        for path in sorted(slots_dir.glob("*.json")):
            run_cost += CostCounter(**json.loads(path.read_text())["cost"])
        atomic_write_text(out / "cost.json", json.dumps({"slots": len(list(slots_dir.glob("*.json"))),
                                                         **run_cost.as_dict()}, indent=1))
        print(f"{done}/{len(specs)} prompts complete in {images_dir}; cost {run_cost.as_dict()}")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
