"""What keeping freed memory in the process (``common.env.keep_freed_memory``) saves, against glibc's defaults.

    python benchmarks/bench_allocator.py [--runs 3] [--images-per-prompt 6] [--threads 1] \
        [--showo checkpoints/shapes/showo]

The same recipe runs in child processes, taking turns (order alternating run by run): ``scripts/generate.py`` with the
committed tiny shapes Show-o (12 steps, guidance 3: the quickstart's setting) on a fixed list of shapes prompts, once
with ``IMAGECOT_MALLOC=default`` (glibc's adaptive mmap threshold and heap trimming) and once as every recipe runs
(freed memory kept). Printed per setting, from the children's own resource usage (``os.wait4``): wall seconds, user and
kernel CPU seconds, minor page faults and peak resident memory (medians over runs), the ratios kept / default (wall and
CPU time, the latter less sensitive to other jobs on the host) and whether the images of every run are byte for byte
the same (they must be: where memory comes from changes no arithmetic).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROMPTS = ["a photo of a red circle", "a photo of a blue square and a yellow triangle",
           "a photo of three green squares",
           "a photo of a purple triangle left of a white circle", "a photo of two orange circles",
           "a photo of a pink square", "a photo of a brown triangle above a black square", "a photo of a blue circle"]
SETTINGS = {"glibc defaults": {"IMAGECOT_MALLOC": "default"}, "freed memory kept": {}}


def images_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.png")):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def run_once(env_extra: dict, args, prompts: Path, out: Path) -> dict:
    """One child process; its wall time and its own resource usage."""
    env = {k: v for k, v in os.environ.items() if k != "IMAGECOT_MALLOC"}
    env.update(env_extra, PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    command = [sys.executable, str(REPO / "scripts" / "generate.py"), "+experiment=shapes/generate",
               f"model.bundle.directory={args.showo}", f"prompts={prompts}",
               f"images_per_prompt={args.images_per_prompt}",
               "model.sampling.num_inference_steps=12", "grid=false", f"threads={args.threads}", f"run_dir={out}",
               "if_exists=overwrite"]
    start = time.perf_counter()
    child = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{child.stderr.read().decode()[-3000:]}")
    return {"wall": wall, "user": usage.ru_utime, "sys": usage.ru_stime, "faults": usage.ru_minflt,
            "rss_mb": usage.ru_maxrss / 1024, "images": images_digest(out / "images")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--images-per-prompt", type=int, default=6, help=f"x {len(PROMPTS)} prompts")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--showo", default=str(REPO / "checkpoints" / "shapes" / "showo"))
    args = parser.parse_args()
    if not (Path(args.showo) / "showo" / "config.json").is_file():
        sys.exit(f"no Show-o bundle at {args.showo} (showo/config.json missing)")
    results = {name: [] for name in SETTINGS}
    with tempfile.TemporaryDirectory() as tmp:
        prompts = Path(tmp) / "prompts.txt"
        prompts.write_text("\n".join(PROMPTS) + "\n")
        for run in range(args.runs):
            order = list(SETTINGS) if run % 2 == 0 else list(reversed(SETTINGS))
            for name in order:
                results[name].append(run_once(SETTINGS[name], args, prompts, Path(tmp) / "run"))
                r = results[name][-1]
                print(f"run {run + 1}/{args.runs} {name}: {r['wall']:.1f} s wall, {r['user']:.1f} s user, "
                      f"{r['sys']:.1f} s kernel, {r['faults']:,} minor faults", flush=True)
    median = {name: {key: statistics.median(r[key] for r in rs) for key in ("wall", "user", "sys", "faults", "rss_mb")}
              for name, rs in results.items()}
    images = len(PROMPTS) * args.images_per_prompt
    print(f"\nscripts/generate.py, tiny shapes Show-o, {images} images, 12 steps, threads={args.threads}, "
          f"{args.runs} runs each (medians):")
    print("| allocator | wall s | user s | kernel s | minor faults | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, m in median.items():
        print(f"| {name} | {m['wall']:.1f} | {m['user']:.1f} | {m['sys']:.1f} | {m['faults']:,.0f} "
              f"| {m['rss_mb']:.0f} |")
    base, kept = median["glibc defaults"], median["freed memory kept"]
    cpu = (kept["user"] + kept["sys"]) / (base["user"] + base["sys"])
    print(f"kept / default: wall {kept['wall'] / base['wall']:.2f}x, CPU time {cpu:.2f}x, "
          f"minor faults {kept['faults'] / base['faults']:.2f}x")
    same = len({r["images"] for rs in results.values() for r in rs}) == 1
    print(f"images identical across every run and both allocators: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
