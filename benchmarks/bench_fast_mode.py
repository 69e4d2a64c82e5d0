"""Fast mode against exact mode: images/s of the Show-o sampler on one random mid-size model, in one run.

    python benchmarks/bench_fast_mode.py [--threads 2] [--batches 1 8 32] [--steps 4] [--runs 2] [--compile]
                                         [--device cpu|cuda] [--json out.json]

One random Show-o of 6 x 512 with the real 58,498-token vocabulary and the 256 px layout (387 positions, 256 image
tokens), as in ``bench_sampler.py``; exact mode samples it in float32, fast mode (:mod:`showo.fast`) a bf16 copy of the
same weights (``--compile``: also a fast mode with the step compiled, where torch.compile can run here). For every
batch size the samplers run interleaved, run by run in alternating order, after a one-step warm-up each (for the
compiled one: its compilation). Printed: median images/s, the ratio to exact mode in wall time and in process CPU time
(less sensitive to a shared host), and the share of fast-mode tokens equal to exact mode's (the same seeds; bf16 is not
expected to give the same tokens). Images/s scale with 1/steps; the ratios are what to compare. The machine is
recorded: ``lscpu``'s model name, core count, torch threads, the load average, and whether a GPU was available.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import time

import torch

from common.seeding import generators
from showo.fast import FastMode, compile_unsupported_reason
from showo.modeling import ShowoConfig, ShowoModel, init_weights
from showo.pipeline import ShowoPipeline
from showo.prompting import build_t2i_sequences
from showo.tokens import TokenLayout

SHAPE = dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=6, num_attention_heads=8)


def machine() -> dict:
    """What ran the benchmark: lscpu's model name and CPU count, torch threads, load, GPU availability."""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        info = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
        info = {k.strip(): v.strip() for k, v in info.items()}
    except (OSError, subprocess.CalledProcessError) as err:
        info = {"error": str(err)}
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu_model": info.get("Model name"), "cpus": info.get("CPU(s)"), "flags_bf16": "avx512_bf16" in
            info.get("Flags", "") or "amx_bf16" in info.get("Flags", ""), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "loadavg": os.getloadavg(), "gpu": gpu, "python": platform.python_version()}


def samplers(device: str, want_compile: bool) -> tuple[dict[str, ShowoPipeline], TokenLayout, str | None]:
    """``exact`` (float32), ``fast`` (bf16) and optionally ``fast+compile`` pipelines over copies of one model."""
    layout = TokenLayout()
    model = init_weights(ShowoModel(ShowoConfig(vocab_size=layout.vocab_size, **SHAPE)),
                         generator=torch.Generator().manual_seed(0)).eval().to(device)
    pipes = {"exact": ShowoPipeline(model, layout),
             "fast": ShowoPipeline(copy.deepcopy(model), layout, fast=FastMode(torch.bfloat16))}
    skipped = None
    if want_compile:
        skipped = compile_unsupported_reason(device)
        if skipped is None:
            pipes["fast+compile"] = ShowoPipeline(copy.deepcopy(model), layout, fast=FastMode(torch.bfloat16, True))
    return pipes, layout, skipped


def timed(pipe: ShowoPipeline, ids: torch.Tensor, steps: int, device: str) -> tuple[float, float, torch.Tensor]:
    """(wall s, process CPU s, tokens [B, N]) of one generation with per-image seeds 0..B-1."""
    if device == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    out = pipe(input_ids=ids, guidance_scale=1.75, num_inference_steps=steps, output_type="tokens",
               generator=generators(list(range(ids.shape[0])), device))
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu, out.tokens


def bench_batch(pipes: dict, layout: TokenLayout, batch: int, steps: int, runs: int, device: str) -> dict:
    prompts = [[1 + (i * 7 + j) % 1000 for j in range(4 + (2 * i) % 20)] for i in range(batch)]
    ids = build_t2i_sequences(prompts, layout)
    for pipe in pipes.values():  # warm-up (and compilation): one step
        timed(pipe, ids, 1, device)
    names = list(pipes)
    wall = {n: [] for n in names}
    cpu = {n: [] for n in names}
    tokens = {}
    for r in range(runs):
        for name in names if r % 2 == 0 else names[::-1]:
            w, c, tokens[name] = timed(pipes[name], ids, steps, device)
            wall[name].append(w)
            cpu[name].append(c)
    row = {}
    for name in names:
        row[name] = {"images_per_s": [batch / w for w in wall[name]],
                     "x_exact_wall": statistics.median(a / b for a, b in zip(wall["exact"], wall[name])),
                     "x_exact_cpu": statistics.median(a / b for a, b in zip(cpu["exact"], cpu[name])),
                     "tokens_equal_exact": float((tokens[name] == tokens["exact"]).float().mean())}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time fast mode with a compiled step")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    info = machine()
    print(f"machine: {info['cpu_model']} ({info['cpus']} CPUs, avx512_bf16/amx_bf16: {info['flags_bf16']}), torch "
          f"{info['torch']}, {info['threads']} threads, load average {info['loadavg']}; device {args.device}; GPU: "
          f"{info['gpu'] or 'none available (torch.cuda.is_available() is False): CPU numbers only'}")
    pipes, layout, skipped = samplers(args.device, args.compile)
    if skipped:
        print(f"fast+compile skipped: {skipped}")
    print(f"mid-size random Show-o {SHAPE['num_hidden_layers']} x {SHAPE['hidden_size']}, vocabulary "
          f"{layout.vocab_size}, {layout.seq_len} positions, guidance 1.75, {args.steps} steps, {args.runs} "
          "interleaved runs (median)")
    print(f"{'batch':>5s} {'sampler':13s} {'img/s':>8s} {'x exact (wall)':>15s} {'x exact (CPU)':>14s} "
          f"{'tokens = exact':>15s}")
    results = {"machine": info, "steps": args.steps, "runs": args.runs, "device": args.device, "shape": SHAPE,
               "compile_skipped": skipped, "batches": {}}
    for batch in args.batches:
        row = bench_batch(pipes, layout, batch, args.steps, args.runs, args.device)
        results["batches"][batch] = row
        for name, r in row.items():
            print(f"{batch:5d} {name:13s} {statistics.median(r['images_per_s']):8.4f} {r['x_exact_wall']:15.2f} "
                  f"{r['x_exact_cpu']:14.2f} {r['tokens_equal_exact']:15.1%}", flush=True)
    results["loadavg_end"] = os.getloadavg()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    with torch.no_grad():
        main()
