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
import json
from pathlib import Path

import torch
from tqdm import tqdm

from common.io import atomic_write_text
from eval.geneval.evaluate import record_key
from eval.geneval.layout import write_prompt_folder
from eval.geneval.prompts import load_prompts
from eval.geneval.score import read_results, summarize
from eval.shapes.render import image_grid
from search.pool import FirstPolicy, OrmPolicy, ParmPolicy, PoolEntry, RandomPolicy, load_pool
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


def policies(max_n: int) -> list:
    sweep = [FirstPolicy()]
    for n in range(1, max_n + 1):
        sweep += [OrmPolicy(n), ParmPolicy(n), RandomPolicy(n)]
    return sweep


def evaluate_policy(policy, entries: list[PoolEntry], results: dict | None) -> dict:
    picks, records = [], []
    for e in entries:
        pick = policy.select(e)
        picks.append(pick)
        if results is not None:
            key = f"{e.slot.prompt_index:05d}/samples/{e.slot.sample_index * e.size + pick.index:04d}.png"
            if key not in results:
                raise KeyError(f"no GenEval record for {key} (export the pool and evaluate it first)")
            records.append(results[key])
    out = {"policy": policy.name, "forward_passes": sum(p.forward_passes for p in picks) / len(picks),
           "picks": [p.index for p in picks]}
    if records:
        summary = summarize(records)
        out.update(geneval=summary.overall, tasks=summary.task_accuracies())
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for family in ("orm", "parm", "random"):
        pts = [(int(r["policy"].split("@")[1]), r["forward_passes"], r.get("geneval")) for r in rows
               if r["policy"].startswith(family + "@")]
        if not pts or pts[0][2] is None:
            continue
        axes[0].plot([p[0] for p in pts], [p[2] for p in pts], marker="o", label=family)
        axes[1].plot([p[1] for p in pts], [p[2] for p in pts], marker="o", label=family)
    axes[0].set_xlabel("N (candidates per slot)")
    axes[1].set_xlabel("generator forward passes per slot")
    for ax in axes:
        ax.set_ylabel("GenEval overall")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
    rows = []
    for policy in policies(max_n):
        try:
            rows.append(evaluate_policy(policy, entries, results))
        except ValueError as err:  # e.g. a pool built without a PARM judge: that policy is skipped, and said so
            print(f"skipping {policy.name}: {err}")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "policies.json", json.dumps(rows, indent=1))
    if results is not None:
        plot(rows, out / "scaling.png")
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
