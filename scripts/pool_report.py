"""Recipe: turn a candidate pool into a test-time scaling report and candidate grids (generate once, select many).

    # 1. every candidate of the pool as a GenEval sample (sample k*M + c of prompt p = candidate c of slot k)
    python scripts/pool_report.py export RUN/pool RUN/pool_images --prompts evaluation_metadata.jsonl --vq MAGVIT_DIR
    # 2. score them once with the harness
    bash scripts/geneval/evaluate.sh RUN/pool_images RUN/pool_eval
    # 3. selection policies from the stored scores: GenEval vs N and vs generator forward passes, plus grids
    python scripts/pool_report.py report RUN/pool RUN/pool_report --results RUN/pool_eval/results.jsonl --vq MAGVIT_DIR

``report`` writes ``policies.json`` (per policy: GenEval overall / task scores of the picked candidates, mean
forward passes per slot), ``scaling.png`` (score vs N and vs forward passes for orm@N, parm@N and random@N) and,
with ``--vq``, ``grid_<prompt>_<sample>.png`` for the first ``--grids`` slots (each candidate captioned with its
scores, the orm pick marked ``*``, the parm pick ``P``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tqdm import tqdm

from common.io import atomic_write_json
from eval.geneval.evaluate import record_key
from eval.geneval.layout import write_prompt_folder
from eval.geneval.prompts import load_prompts
from eval.geneval.score import read_results
from eval.shapes.render import image_grid
from eval.plots import scaling_curves
from search.pool import OrmPolicy, ParmPolicy, PoolEntry, load_pool
from search.scaling import default_policies, evaluate_policies
from showo.magvit import MAGVITv2, decode_codes


def decode(vq: MAGVITv2, tokens: torch.Tensor) -> list:
    """The project's one decode path (:func:`showo.magvit.decode_codes`) for a pool's square token grids."""
    side = int(tokens.shape[1] ** 0.5)
    return decode_codes(vq, tokens, (side, side))


def export(args: argparse.Namespace) -> None:
    entries = load_pool(args.pool)
    specs = {s.index: s for s in load_prompts(Path(args.prompts))}
    vq = MAGVITv2.from_pretrained(args.vq).eval()
    by_prompt: dict[int, list[PoolEntry]] = {}
    for e in entries:
        by_prompt.setdefault(e.slot.prompt_index, []).append(e)
    for index, slots in tqdm(sorted(by_prompt.items()), desc="export", dynamic_ncols=True):
        slots.sort(key=lambda e: e.slot.sample_index)
        images = [im for e in slots for im in decode(vq, e.tokens)]
        write_prompt_folder(args.images, specs[index], images)
    print(f"exported {len(entries)} slots of {len(by_prompt)} prompts to {args.images}")


def grid(entry: PoolEntry, vq: MAGVITv2) -> "object":
    orm = OrmPolicy().select(entry).index if entry.outcome_scores is not None else None
    parm = ParmPolicy().select(entry).index if entry.parm is not None else None
    labels = []
    for i in range(entry.size):
        parts = [f"{i}{'*' if i == orm else ''}{'P' if i == parm else ''}"]
        if entry.outcome_scores is not None:
            parts.append(f"{entry.outcome_scores[i]:.2f}")
        if entry.parm is not None:
            parts.append("pot" if entry.parm[i].potential else "x")
        labels.append(" ".join(parts))
    return image_grid(decode(vq, entry.tokens), nrow=min(entry.size, 5), labels=labels)


def report(args: argparse.Namespace) -> None:
    entries = load_pool(args.pool)
    out = Path(args.out)
    results = {record_key(r): r for r in read_results(args.results)} if args.results else None
    max_n = min(e.size for e in entries) if args.max_n is None else args.max_n
    verdict = None
    if results is not None:
        def verdict(e: PoolEntry, index: int) -> tuple[str, bool]:
            key = f"{e.slot.prompt_index:05d}/samples/{e.slot.sample_index * e.size + index:04d}.png"
            if key not in results:
                raise KeyError(f"no GenEval record for {key} (export the pool and evaluate it first)")
            return results[key]["tag"], bool(results[key]["correct"])
    rows = evaluate_policies(entries, default_policies(range(1, max_n + 1)), verdict)
    atomic_write_json(out / "policies.json", rows)
    if results is not None:
        scaling_curves(rows, out / "scaling.png")
    if args.vq:
        vq = MAGVITv2.from_pretrained(args.vq).eval()
        for e in entries[: args.grids]:
            grid(e, vq).save(out / f"grid_{e.slot.prompt_index:05d}_{e.slot.sample_index:02d}.png")
    print(f"{len(rows)} policies over {len(entries)} slots -> {out}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="write every pool candidate into a GenEval folder layout")
    ex.set_defaults(run=export)
    ex.add_argument("pool")
    ex.add_argument("images")
    ex.add_argument("--prompts", required=True, help="GenEval evaluation_metadata.jsonl the pool was built from")
    ex.add_argument("--vq", required=True, help="MAGVIT-v2 directory (decodes the tokens)")
    rep = sub.add_parser("report", help="selection policies, scaling plot and candidate grids")
    rep.set_defaults(run=report)
    rep.add_argument("pool")
    rep.add_argument("out")
    rep.add_argument("--results", help="results.jsonl of the exported pool")
    rep.add_argument("--vq", help="MAGVIT-v2 directory, for candidate grids")
    rep.add_argument("--max-n", type=int, default=None)
    rep.add_argument("--grids", type=int, default=8)
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
