"""DPO step cost: frozen-copy reference vs precomputed (cached) reference log-probs, same weights, same run.

    python benchmarks/bench_dpo.py [--threads 2] [--steps 4] [--configs tiny mid] [--device cpu|cuda]

Each mode runs in its own fresh process (so peak memory is that mode's alone): build the policy, build the
reference (a deep copy, or the table of ``ell_ref`` for every pair, timed separately as a one-off cost), then
``--steps`` timed optimizer steps (AdamW, the :class:`dpo.trainer.DPOObjective` of the recipe) after one warm-up step.
Prints pairs/s, the precompute time, peak memory (CUDA: ``max_memory_allocated``; CPU: peak RSS of the process) and the
ratios precomputed/frozen, plus the largest loss difference between the modes (they must agree).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time

CONFIGS = {
    # name: (model shape, layout kwargs, pairs per step)
    "tiny": (dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2),
             dict(llm_vocab_size=64, codebook_size=64, num_image_tokens=16, max_seq_length=16, bos_id=0, eos_id=0), 8),
    "mid": (dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4),
            dict(), 2),  # the real 256 px layout: 58,498-token vocabulary, 256 image tokens, 387 positions
}


def run_mode(mode: str, config: str, steps: int, threads: int, device: str) -> dict:
    import torch

    from dpo.batch import collate_pairs
    from dpo.loss import SigmoidLoss
    from dpo.reference import FrozenReference, PrecomputedReference, ReferenceContext, precompute_table
    from dpo.toy import toy_pairs
    from dpo.trainer import DPOObjective
    from showo.logprob import MaskingConfig
    from showo.modeling import ShowoConfig, ShowoModel, init_weights
    from showo.tokens import TokenLayout

    torch.set_num_threads(threads)
    shape, layout_kw, batch = CONFIGS[config]
    layout = TokenLayout(**layout_kw)
    model = init_weights(ShowoModel(ShowoConfig(vocab_size=layout.vocab_size, **shape)),
                         generator=torch.Generator().manual_seed(0)).to(device).train()
    num_pairs = batch * (steps + 1)
    pairs = toy_pairs(layout, ["p"], num_pairs, seed=0)
    prompt_ids = [[1 + (i * 7 + j) % (layout.llm_vocab_size - 2) for j in range(3 + i % 5)] for i in range(num_pairs)]
    masking = MaskingConfig()
    ctx = ReferenceContext(layout, pairs, prompt_ids, masking, seed=0, epochs=1, device=torch.device(device))
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    reference = FrozenReference(model, layout, torch.device(device)) if mode == "frozen" else \
        PrecomputedReference(precompute_table(model, ctx, batch_size=batch))
    setup_s = time.perf_counter() - t0
    objective = DPOObjective(layout, masking, 0, SigmoidLoss(beta=0.1), reference)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    losses, elapsed = [], 0.0
    for step in range(steps + 1):  # step 0 warms up
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss, _ = objective(model, collate_pairs(pairs, prompt_ids, list(range(step * batch, (step + 1) * batch)), 0),
                            step, device=torch.device(device))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if device == "cuda":
            torch.cuda.synchronize()
        if step:
            elapsed += time.perf_counter() - t0
        losses.append(loss.item())
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return {"pairs_per_s": steps * batch / elapsed, "setup_s": setup_s, "peak_mib": peak, "losses": losses, "batch": batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    memory = "peak CUDA MiB" if args.device == "cuda" else "peak RSS MiB"
    print(f"{args.device}, {args.threads} threads, float32, {args.steps} timed steps after 1 warm-up, one process per mode")
    print(f"{'config':6s} {'mode':12s} {'batch':>5s} {'pairs/s':>9s} {'setup s':>8s} {memory:>14s}")
    for config in args.configs:
        results = {}
        for mode in ("frozen", "precomputed"):
            with ctx.Pool(1) as pool:
                results[mode] = pool.apply(run_mode, (mode, config, args.steps, args.threads, args.device))
            r = results[mode]
            print(f"{config:6s} {mode:12s} {r['batch']:5d} {r['pairs_per_s']:9.3f} {r['setup_s']:8.2f} {r['peak_mib']:14.1f}")
        f, p = results["frozen"], results["precomputed"]
        diff = max(abs(a - b) for a, b in zip(f["losses"], p["losses"]))
        print(f"{config:6s} ratio precomputed/frozen: throughput x{p['pairs_per_s'] / f['pairs_per_s']:.2f}, "
              f"peak memory x{p['peak_mib'] / f['peak_mib']:.2f}; max |loss difference| {diff:.2e}")


if __name__ == "__main__":
    main()
