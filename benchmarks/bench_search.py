"""Search cost: best-of-N, PARM as the released code runs it, and PARM with pruning, on the same random models.

    python benchmarks/bench_search.py [--small] [--threads 2] [--n 4 8 20] [--keep-fraction 0.5] [--json out.json]

Builds, in the script, a random mid-size Show-o (word tokenizer, 256 image tokens, a random MAGVIT-v2 decoding
64 px images) and a random "tiny but wider" LLaVA-OneVision judge (:func:`reward_models.tiny.build_tiny_llava_onevision`
at a larger width), then runs one slot with each strategy at every N and counts, per strategy:

* generator forward passes (per image and step, ``CostCounter.generator_forward_passes``) and judge forward passes
  (per conversation);
* FLOPs from ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions and attention; CPU SDPA is counted
  with the same formula torch uses for the GPU kernels), split into generator, VQ decode and judge;
* wall time of a second, uncounted run (the counter slows the ops it counts).

Strategies (reference imagegen_cot.md §6): ``best_of_n`` (ORM question on N final images); ``parm_official``
(released ``parm.py``: clarity until clear, potential once, **every path decoded to the end**, best-of-N' among
paths with potential, ``Parm(truncate=False)``); ``parm_ours`` (the paper's reading: a path without potential leaves
the batch at its clear step, ``Parm(truncate=True)``); ``parm_ours_cached`` (``parm_ours`` with the potential
question reusing the clarity turn's KV cache, ``Parm(reuse_clarity_cache=True)``, when the judge supports it);
``parm_ours_rule`` (``parm_ours_cached`` asking clarity only from the first step the static clarity training rule does
not label "no", ``Parm(clarity_from="rule")``: step 10 of 18; a scheduled first clear step before it moves to it).

A random judge's answers mean nothing, so PARM's *decisions* are scheduled (every judge forward pass still runs on
the real random judge and is counted): path i is first judged clear at step ``round(S * c_i / 18)`` with c_i cycling
through 8..12 (the paper's "first clear image at steps 8-12 of 18", §6.4) and has potential for a
``--keep-fraction`` of the paths (spread evenly over the indices). All strategies see the same paths (same seeds).
Ratios are against best-of-N measured in the same run; the JSON output records the machine, threads and versions.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from reward_models.lmm_judge import LMMYesNoJudge
from reward_models.parm import Parm
from reward_models.tiny import build_tiny_llava_onevision
from search.base import Slot
from search.best_of_n import BestOfN
from search.parm import ParmSearch
from showo.factory import build_tiny_showo
from showo.pipeline import ShowoPipeline

WORDS = ["a", "photo", "of", "red", "blue", "green", "circle", "square", "triangle", "left", "right", "two", "three"]
PROMPT = "a photo of two red circle left of a blue square"
SIZES = {
    # Show-o transformer / MAGVIT-v2 (64 px -> 16 x 16 = 256 codes) / judge text and vision widths.
    # mid: a judge call costs about 9 generator image-steps, as at the real scale with the released judges' pad view
    # (Show-o 1.3B over 2 x 258 positions ~ 1.3 TFLOP per image-step; LLaVA-OV-7B over ~730 visual + ~120 text
    # tokens plus SigLIP ~ 12 TFLOP per call); the printed "judge call / image-step" line gives the measured ratio.
    "mid": dict(showo=dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                           max_seq_length=32, num_image_tokens=256),
                vq=dict(ch=32, encoder_ch_mult=[1, 2, 2], encoder_num_res_blocks=[1, 1, 1], decoder_ch_mult=[1, 2, 2],
                        decoder_num_res_blocks=[1, 1, 1], z_channels=8, codebook_dim=8, num_groups=8, resolution=64),
                judge=dict(image_size=64, patch_size=8, hidden_size=512, text_layers=8, vision_layers=4,
                           vision_hidden_size=256, vocab_size=600),
                steps=18),
    "small": dict(showo=dict(hidden_size=128, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                             max_seq_length=16, num_image_tokens=64),
                  vq=dict(ch=16, encoder_ch_mult=[1, 2, 2], encoder_num_res_blocks=[1, 1, 1],
                          decoder_ch_mult=[1, 2, 2], decoder_num_res_blocks=[1, 1, 1], z_channels=6, codebook_dim=6,
                          num_groups=8, resolution=32),
                  judge=dict(image_size=32, patch_size=8, hidden_size=128, text_layers=2, vision_layers=2,
                             vocab_size=600),
                  steps=9),
}


def _sdpa_cpu_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    """CPU fused attention: QK^T and PV, 2 FLOPs per multiply-add (torch's own formula for the GPU kernels)."""
    b, h, q, d = query_shape
    k, dv = key_shape[-2], value_shape[-1]
    return 2 * b * h * q * k * d + 2 * b * h * q * k * dv


CUSTOM_FLOPS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flops}


class Meter:
    """Where FLOPs go: the counter's running total, attributed to the judge or the decoder around their calls."""

    def __init__(self, counter: FlopCounterMode | None) -> None:
        self.counter = counter
        self.flops = {"judge": 0, "decode": 0}

    def total(self) -> int:
        return 0 if self.counter is None else self.counter.get_total_flops()

    def timed(self, kind: str, fn, *args, **kwargs):
        before = self.total()
        out = fn(*args, **kwargs)
        self.flops[kind] += self.total() - before
        return out


class MeteredPipe:
    """The generator with its VQ decodes attributed apart (everything else is delegated unchanged)."""

    def __init__(self, pipe: ShowoPipeline, meter: Meter) -> None:
        self._pipe, self._meter = pipe, meter

    def __getattr__(self, name):
        return getattr(self._pipe, name)

    def decode(self, tokens, output_type="pil"):
        return self._meter.timed("decode", self._pipe.decode, tokens, output_type)


class ScheduledJudge:
    """The real judge runs every question; PARM's clarity / potential *answers* follow the schedule (module doc).

    ``context`` = (step, awaiting paths) is set by :class:`ScheduledParm` before each step's questions.
    """

    def __init__(self, judge: LMMYesNoJudge, meter: Meter, clear_at: Sequence[int], keep: set[int]) -> None:
        self.judge, self.meter, self.clear_at, self.keep = judge, meter, list(clear_at), keep
        self.image_token = judge.image_token
        self.context: tuple[int, list[int]] | None = None

    def ask(self, conversations, images, *, generator=None):
        out = self.meter.timed("judge", self.judge.ask, conversations, images, generator=generator)
        return self._schedule(conversations, out)

    def score(self, prompts, images, **kwargs):  # best-of-N's outcome judge: real scores
        return self.meter.timed("judge", self.judge.score, prompts, images, **kwargs)

    def ask_keeping_cache(self, conversations, images, *, generator=None):
        out, cache = self.meter.timed("judge", self.judge.ask_keeping_cache, conversations, images,
                                      generator=generator)
        return self._schedule(conversations, out), cache

    def ask_follow_up(self, cache, rows, conversations, *, generator=None):
        out = self.meter.timed("judge", self.judge.ask_follow_up, cache, rows, conversations, generator=generator)
        return self._schedule(conversations, out)

    def _schedule(self, conversations, out):
        if self.context is None or self.context[0] < 0:
            return out  # selection question: the real scores decide
        step, awaiting = self.context
        if len(conversations[0]) == 1:  # clarity
            paths, rule = awaiting, (lambda i: step >= self.clear_at[i])
        else:  # potential: the paths that just became clear, in awaiting order
            paths, rule = [i for i in awaiting if step >= self.clear_at[i]], (lambda i: i in self.keep)
        yes = torch.tensor([float(rule(i)) for i in paths])
        out.components["answer_yes"], out.components["answer_no"] = yes, 1.0 - yes
        return out


class ScheduledParm(Parm):
    """Tells the scheduled judge which step and paths the coming questions are about."""

    def observe_step(self, state, prompts, step_images, step, num_steps):
        self.judge.context = (step, state.awaiting_paths())
        return super().observe_step(state, prompts, step_images, step, num_steps)

    def select(self, state, prompts, final_images):
        self.judge.context = (-1, [])
        return super().select(state, prompts, final_images)


def build_models(size: dict, workdir: Path) -> tuple[ShowoPipeline, LMMYesNoJudge]:
    bundle = build_tiny_showo(WORDS, vq=size["vq"], codebook_dim=size["vq"]["codebook_dim"], seed=0, **size["showo"])
    pipe = ShowoPipeline(bundle.model, bundle.layout, bundle.tokenizer, bundle.vq_model)
    judge_dir = build_tiny_llava_onevision(workdir / "judge", seed=0, **size["judge"])
    return pipe, LMMYesNoJudge(judge_dir, batch_size=20, image_view="anyres")


def strategies(judge: ScheduledJudge, n: int) -> dict:
    out = {"best_of_n": BestOfN(judge, num_candidates=n, batch_size=n),
           "parm_official": ParmSearch(ScheduledParm(judge, truncate=False), n, batch_size=n),
           "parm_ours": ParmSearch(ScheduledParm(judge, truncate=True), n, batch_size=n)}
    reuse = hasattr(judge.judge, "ask_follow_up")
    if reuse:
        cached = ScheduledParm(judge, truncate=True, reuse_clarity_cache=True)
        out["parm_ours_cached"] = ParmSearch(cached, n, batch_size=n)
    rule = ScheduledParm(judge, truncate=True, reuse_clarity_cache=reuse, clarity_from="rule")
    out["parm_ours_rule"] = ParmSearch(rule, n, batch_size=n)
    return out


def run_one(name: str, pipe, judge_base, n: int, steps: int, keep_fraction: float, count: bool) -> dict:
    """One search of one slot; FLOPs when ``count``, else wall time."""
    counter = FlopCounterMode(display=False, custom_mapping=CUSTOM_FLOPS) if count else None
    meter = Meter(counter)
    clear_at = [round(steps * (8 + i % 5) / 18) for i in range(n)]
    keep = {i for i in range(n) if int((i + 1) * keep_fraction) > int(i * keep_fraction)}
    judge = ScheduledJudge(judge_base, meter, clear_at, keep)
    strategy = strategies(judge, n)[name]
    sampling = {"guidance_scale": 1.75, "num_inference_steps": steps}
    start, cpu_start = time.perf_counter(), time.process_time()
    with counter if counter is not None else nullcontext():
        result = strategy.search(MeteredPipe(pipe, meter), Slot(PROMPT, seed=0), sampling)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    row = {"gen_passes": result.cost.generator_forward_passes, "judge_passes": result.cost.judge_forward_passes,
           "decoded": result.cost.decoded_images, "chosen": result.chosen}
    if count:
        total = meter.total()
        row.update(flops_judge=meter.flops["judge"], flops_decode=meter.flops["decode"],
                   flops_gen=total - meter.flops["judge"] - meter.flops["decode"], flops_total=total)
    else:
        row.update(wall_s=wall, cpu_s=cpu)  # CPU time: steadier than wall time on a shared machine
    return row


def machine() -> dict:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if ln.startswith("Model name")), "?")
    except (OSError, subprocess.CalledProcessError):
        model = platform.processor() or "?"
    return {"cpu": model, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version()}


def report(results: dict, ns: Sequence[int]) -> None:
    head = (f"{'N':>3s} {'strategy':17s} {'gen pass':>8s} {'judge pass':>10s} {'gen GFLOP':>10s} {'judge GFLOP':>11s}"
            f" {'dec GFLOP':>9s} {'wall s':>7s} {'CPU s':>7s} {'x BoN FLOP':>10s} {'x BoN CPU':>9s}"
            f" {'x official FLOP':>15s} {'x official CPU':>14s}")
    base = results[str(ns[0])]["best_of_n"]
    step, call = base["flops_gen"] / base["gen_passes"], base["flops_judge"] / base["judge_passes"]
    print(f"generator image-step {step / 1e9:.2f} GFLOP, judge call (ORM question) {call / 1e9:.2f} GFLOP: "
          f"judge call / image-step = {call / step:.1f}")
    print(head)
    for n in ns:
        rows = results[str(n)]
        base, official = rows["best_of_n"], rows["parm_official"]
        for name, r in rows.items():
            print(f"{n:3d} {name:17s} {r['gen_passes']:8d} {r['judge_passes']:10d} {r['flops_gen'] / 1e9:10.2f} "
                  f"{r['flops_judge'] / 1e9:11.2f} {r['flops_decode'] / 1e9:9.2f} {r['wall_s']:7.2f} {r['cpu_s']:7.2f} "
                  f"{r['flops_total'] / base['flops_total']:10.3f} {r['cpu_s'] / base['cpu_s']:9.3f} "
                  f"{(r['flops_gen'] + r['flops_judge']) / (official['flops_gen'] + official['flops_judge']):15.3f} "
                  f"{r['cpu_s'] / official['cpu_s']:14.3f}")
        if "parm_ours_cached" in rows:
            plain, cached = rows["parm_ours"], rows["parm_ours_cached"]
            print(f"    judge KV reuse (potential turn on the clarity cache): judge FLOPs x"
                  f"{cached['flops_judge'] / plain['flops_judge']:.3f}, total CPU time x"
                  f"{cached['cpu_s'] / plain['cpu_s']:.3f},"
                  f" same winner: {cached['chosen'] == plain['chosen']}")
        rule = rows["parm_ours_rule"]
        print(f"    clarity from the training rule's first unlabelled step: judge passes {rule['judge_passes']} vs "
              f"{rows['parm_ours']['judge_passes']}, decoded images {rule['decoded']} vs {rows['parm_ours']['decoded']}, "
              f"same winner: {rule['chosen'] == rows['parm_ours']['chosen']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="small models, N = 2 4, 9 steps: a one-minute smoke run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n", type=int, nargs="+", default=None, help="candidate counts (default 4 8 20)")
    parser.add_argument("--keep-fraction", type=float, default=0.5, help="share of paths with potential")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if not 0.0 <= args.keep_fraction <= 1.0:
        parser.error(f"--keep-fraction must be in [0, 1], got {args.keep_fraction}")
    torch.set_num_threads(args.threads)
    size_name = "small" if args.small else "mid"
    size = SIZES[size_name]
    ns = args.n or ([2, 4] if args.small else [4, 8, 20])
    info = {**machine(), "size": size_name, "sizes": size, "keep_fraction": args.keep_fraction, "n": ns}
    print(json.dumps({k: info[k] for k in ("cpu", "threads", "torch", "size", "keep_fraction")}))
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        pipe, judge = build_models(size, Path(tmp))
        names = list(strategies(ScheduledJudge(judge, Meter(None), [], set()), 1))
        for n in ns:
            results[str(n)] = {}
            for name in names:
                row = run_one(name, pipe, judge, n, size["steps"], args.keep_fraction, count=True)
                timed = run_one(name, pipe, judge, n, size["steps"], args.keep_fraction, count=False)
                if timed["chosen"] != row["chosen"]:
                    raise RuntimeError(f"{name} N={n}: the timed run chose {timed['chosen']}, the counted one "
                                       f"{row['chosen']}; runs must be deterministic")
                results[str(n)][name] = {**row, "wall_s": timed["wall_s"], "cpu_s": timed["cpu_s"]}
                print(f"  N={n} {name}: {timed['wall_s']:.1f} s wall, {timed['cpu_s']:.1f} s CPU", file=sys.stderr,
                      flush=True)
    report(results, ns)
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": info, "results": results}, indent=1))


if __name__ == "__main__":
    main()
