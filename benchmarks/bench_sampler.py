"""Sampler speed: plain full-sequence recompute vs the prefix-cached path, same weights, same run.

    python benchmarks/bench_sampler.py [--threads 2] [--repeats 3]

Prints images/s of both paths and their ratio for a tiny config and a mid-size one (6 layers x 512 hidden, the real
58,498-token vocabulary and the 256 px layout: 387 positions, 256 image tokens). Also checks that both paths produce
the same tokens (they must).
"""
from __future__ import annotations

import argparse
import time

import torch

from showo.modeling import ShowoConfig, ShowoModel, init_weights
from showo.pipeline import ShowoPipeline
from showo.prompting import build_t2i_sequences
from showo.tokens import TokenLayout

CONFIGS = {
    "tiny (2x64, 16 tokens)": (dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2),
                               TokenLayout(llm_vocab_size=64, codebook_size=64, num_image_tokens=16, max_seq_length=16,
                                           bos_id=0, eos_id=0), 8, 12),
    "mid (6x512, 256 px layout)": (dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=6, num_attention_heads=8),
                                   TokenLayout(), 2, 6),
}


def bench(pipe: ShowoPipeline, ids: torch.Tensor, steps: int, cache: bool, repeats: int) -> tuple[float, torch.Tensor]:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = pipe(input_ids=ids, guidance_scale=1.75, num_inference_steps=steps, output_type="tokens",
                   generator=torch.Generator().manual_seed(0), use_prefix_cache=cache)
        best = min(best, time.perf_counter() - t0)
    return ids.shape[0] / best, out.tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, CPU, float32, guidance 1.75, best of {args.repeats}")
    print(f"{'config':28s} {'batch':>5s} {'steps':>5s} {'plain img/s':>12s} {'cached img/s':>13s} {'ratio':>6s}")
    for name, (shape, layout, batch, steps) in CONFIGS.items():
        model = init_weights(ShowoModel(ShowoConfig(vocab_size=layout.vocab_size, **shape)),
                             generator=torch.Generator().manual_seed(0)).eval()
        pipe = ShowoPipeline(model, layout)
        prompts = [[1 + (i * 7 + j) % (layout.llm_vocab_size - 2) for j in range(4 + 2 * i)] for i in range(batch)]
        ids = build_t2i_sequences(prompts, layout)
        plain, tok_plain = bench(pipe, ids, steps, False, args.repeats)
        cached, tok_cached = bench(pipe, ids, steps, True, args.repeats)
        same = "same tokens" if torch.equal(tok_plain, tok_cached) else "TOKENS DIFFER"
        print(f"{name:28s} {batch:5d} {steps:5d} {plain:12.3f} {cached:13.3f} {cached / plain:6.2f}  {same}")


if __name__ == "__main__":
    with torch.no_grad():
        main()
