"""This project's Show-o sampler against the official ``Showo.t2i_generate``, same checkpoint, same seeds, same CPU.

    git clone https://github.com/showlab/Show-o /path/to/Show-o     # tested at revision 45a5a2d
    python benchmarks/bench_vs_official.py --official /path/to/Show-o [--settings mid real256 real512] [--runs 3]
        [--threads 2] [--baseline /path/to/other/imagecot/checkout] [--workdir DIR]

For every setting, one random checkpoint is built with the official constructor (``Showo(...)``, random init of the
official ``PhiForCausalLM``) and saved in the official layout (``config.json``, ``phi_config/``,
``pytorch_model.safetensors``). Two long-lived worker processes load that file, the official one with its own classes
and ours with :func:`showo.checkpoint.from_pretrained`, and take turns (run by run, order alternating, after one short
warm-up each): the official worker times its mask builder plus ``t2i_generate`` (inside ``torch.no_grad`` as in
``inference_t2i.py``), ours times ``ShowoPipeline.__call__`` with ``output_type="tokens"`` (exact mode, the default).
Both get the same prompt ids, the same ``''`` unconditional ids and one ``torch.Generator`` seeded alike, so the
tokens must be equal; every run's tokens are compared. With ``--baseline`` a third worker runs another checkout's
``showo`` (e.g. the code before a change) in the same rotation.

Printed per setting: images/s (median [min, max] over runs), the speed-up over the official sampler (median [min,
max] of the run-by-run ratios; also the median ratio of process CPU time, less sensitive to other jobs on a shared
host), the peak resident memory during a run (and its growth over the idle process), the share of the run spent in
model forwards, token equality, and the per-step FLOP budget of both samplers (positions through the transformer, LM
head rows x columns), also at the real depth of 24 layers for the real-width settings. With ``--workdir`` the runs are
also written to ``results.json``.

Settings (float32, batch ``B``, CFG on: 2B rows per forward):

* ``smoke``: 2 layers x 64 wide, 4 steps, B = 1: checks the set-up in seconds (not a speed measurement).
* ``mid``: 6 layers x 512 wide, the real 58,498-token vocabulary, 256 image tokens (387 positions), B = 2, 18 steps.
* ``real256`` / ``real512``: the real width (2048, 32 heads, MLP 8192) and vocabulary at the 256 px layout (387
  positions, 18 steps, w = 1.75) and the 512 px layout (1,155 positions, w = 5, ``--steps-512`` steps, 50 officially;
  the per-step ratio does not depend on it), with ``--real-layers`` layers (default 2 of 24, to fit a CPU run).

How the official code is run with this project's pinned packages (nothing of it is copied into this repository):
its modules are loaded from ``--official`` as a package named ``showo_official`` (``models/__init__.py`` is not run:
it imports the MAGVIT-v2 and CLIP modules, which need ``einops`` and are not used by the sampler);
``models/modeling_utils.py`` (a vendored copy of diffusers' ``ModelMixin`` that imports helpers the pinned diffusers
0.42 no longer has) is replaced by diffusers' own ``ModelMixin`` / ``ConfigMixin`` / ``register_to_config`` (the
sampler uses only the config registration); transformers 5 keeps ``rope_theta`` / ``partial_rotary_factor`` in
``PhiConfig.rope_parameters``, so they are set back as attributes (same values) on the config the official
``PhiForCausalLM`` reads; the demo-YAML values ``t2i_generate`` reads from ``config`` are passed as a namespace. Under these pins the official forward
reproduces the official fixture (fixtures/showo_tiny) and its float32 logits equal ours bit for bit.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
MARK = "@@bench "  # prefix of the worker's protocol lines (the official code prints to stdout too)


@dataclass(frozen=True)
class Setting:
    hidden: int
    inter: int
    layers: int
    heads: int
    num_image_tokens: int
    batch: int
    steps: int
    guidance: float


def settings(args) -> dict[str, Setting]:
    real = dict(hidden=2048, inter=8192, layers=args.real_layers, heads=32, batch=1)
    return {
        "smoke": Setting(64, 256, 2, 2, 256, 1, 4, 1.75),  # seconds: checks the set-up, not a speed
        "mid": Setting(512, 2048, 6, 8, 256, 2, 18, 1.75),
        "real256": Setting(**real, num_image_tokens=256, steps=18, guidance=1.75),
        "real512": Setting(**real, num_image_tokens=1024, steps=args.steps_512, guidance=5.0),
    }


# ------------------------------------------------------------------------------------------------ FLOP budget
def flops_per_step(s: Setting, layers: int, vocab: int = 58498, codebook: int = 8192, text: int = 129) -> dict:
    """Multiply-add FLOPs (x2) of one guided step: projections + MLP, attention scores/values, LM head.

    Official: every position of the 2B rows, the whole vocabulary. Ours: the N + 2 image positions (the text prefix
    comes from the cache; the conditional prefix is computed once per call, reported as ``prefix``), the N image rows
    of the LM head over the codebook columns.
    """
    rows, n = 2 * s.batch, s.num_image_tokens
    seq = text + n + 2
    dense = 2 * (4 * s.hidden**2 + 2 * s.hidden * s.inter) * layers  # per position
    attn = lambda q, k: 4 * q * k * s.hidden * layers  # QK^T and AV for q queries over k keys
    official = rows * (seq * dense + attn(seq, seq)) + rows * seq * 2 * s.hidden * vocab
    ours = rows * ((n + 2) * dense + attn(n + 2, seq)) + rows * n * 2 * s.hidden * codebook
    prefix = s.batch * (text * dense + attn(text, text))  # once per call: the conditional rows only
    return dict(official=official, ours=ours, prefix=prefix, official_rows=rows * seq, ours_rows=rows * (n + 2),
                official_head=(rows * seq, vocab), ours_head=(rows * n, codebook))


# ------------------------------------------------------------------------------------------------ official code
class _LegacyPhiAutoConfig:
    """``AutoConfig`` whose Phi config also has the transformers-4.41 attributes the official ``phi.py`` reads."""

    @staticmethod
    def from_pretrained(path, **kwargs):
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(path, **kwargs)
        rope = getattr(cfg, "rope_parameters", None) or {}
        for name in ("rope_theta", "partial_rotary_factor"):
            if not hasattr(cfg, name):
                setattr(cfg, name, rope[name])
        if rope.get("rope_type", "default") != "default":
            raise ValueError(f"rope_parameters={rope}: the benchmark builds unscaled RoPE only")
        cfg.rope_scaling = None  # transformers 5 aliases it to rope_parameters; phi.py expects None for plain RoPE
        return cfg


def import_official(src: Path):
    """(modeling_showo, sampling, prompting_utils) modules of the official source tree ``src``."""
    needed = [src / "models" / f for f in ("modeling_showo.py", "phi.py", "sampling.py")]
    needed.append(src / "training" / "prompting_utils.py")
    for path in needed:
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: --official must be a checkout of github.com/showlab/Show-o")
    from diffusers import ModelMixin
    from diffusers.configuration_utils import ConfigMixin, register_to_config

    package = types.ModuleType("showo_official")
    package.__path__ = [str(src / "models")]
    utils = types.ModuleType("showo_official.modeling_utils")
    utils.ModelMixin, utils.ConfigMixin, utils.register_to_config = ModelMixin, ConfigMixin, register_to_config
    sys.modules.update({"showo_official": package, "showo_official.modeling_utils": utils})
    modeling = importlib.import_module("showo_official.modeling_showo")
    modeling.AutoConfig = _LegacyPhiAutoConfig
    spec = importlib.util.spec_from_file_location("showo_official_prompting", src / "training" / "prompting_utils.py")
    prompting = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prompting)
    return modeling, importlib.import_module("showo_official.sampling"), prompting


def official_model(modeling, setting: Setting):
    """The official constructor on ``phi_config/`` of the current directory (the checkpoint's)."""
    return modeling.Showo(w_clip_vit=False, vocab_size=58498, llm_vocab_size=50295, llm_model_path="phi_config",
                          codebook_size=8192, num_vq_tokens=setting.num_image_tokens)


def build_checkpoint(src: Path, setting: Setting, directory: Path, seed: int) -> None:
    """A random checkpoint from the official constructor, saved in the official layout, plus the benchmark inputs."""
    from safetensors.torch import save_file

    from showo.modeling import ShowoConfig
    from showo.prompting import build_t2i_sequences
    from showo.tokens import TokenLayout

    directory.mkdir(parents=True, exist_ok=True)
    shape = ShowoConfig(hidden_size=setting.hidden, intermediate_size=setting.inter, num_hidden_layers=setting.layers,
                        num_attention_heads=setting.heads)
    (directory / "phi_config").mkdir(exist_ok=True)
    (directory / "phi_config" / "config.json").write_text(json.dumps(shape.to_phi_config(), indent=1))
    modeling, _, _ = import_official(src)
    torch.manual_seed(seed)  # the official init draws from the global generator
    cwd = os.getcwd()
    os.chdir(directory)  # llm_model_path="phi_config" is resolved from the current directory, as in the official repo
    try:
        model = official_model(modeling, setting)
    finally:
        os.chdir(cwd)
    model.save_config(str(directory))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(directory / "pytorch_model.safetensors"))
    layout = TokenLayout(num_image_tokens=setting.num_image_tokens)
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(0, 50000, (int(torch.randint(4, 30, (1,), generator=g)),), generator=g).tolist()
               for _ in range(setting.batch)]
    inputs = {"cond": build_t2i_sequences(prompts, layout), "uncond": build_t2i_sequences([[]] * setting.batch, layout)}
    save_file(inputs, str(directory / "inputs.safetensors"))


# ------------------------------------------------------------------------------------------------ workers
def rss_mb(field: str) -> float:
    """VmRSS / VmHWM of this process in MB (Linux; nan elsewhere)."""
    try:
        found = re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    except OSError:
        return float("nan")
    return int(found.group(1)) / 1024 if found else float("nan")


def reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


class ModelClock:
    """Wall time spent inside ``module``'s forward calls (hooks)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.seconds, self._t0 = 0.0, 0.0
        module.register_forward_pre_hook(self._start)
        module.register_forward_hook(self._stop)

    def _start(self, *_):
        self._t0 = time.perf_counter()

    def _stop(self, *_):
        self.seconds += time.perf_counter() - self._t0


def official_runner(src: Path, setting: Setting, directory: Path):
    from safetensors.torch import load_file

    modeling, sampling, prompting = import_official(src)
    model = official_model(modeling, setting)  # cwd is the checkpoint directory
    model.load_state_dict(load_file("pytorch_model.safetensors"), strict=True)
    model.eval()
    inputs = load_file("inputs.safetensors")
    config = types.SimpleNamespace(  # the demo-YAML values t2i_generate reads
        model=types.SimpleNamespace(showo=types.SimpleNamespace(
            num_vq_tokens=setting.num_image_tokens, num_new_special_tokens=10, llm_vocab_size=50295)),
        dataset=types.SimpleNamespace(preprocessing=types.SimpleNamespace(max_seq_length=128)))
    schedule = sampling.get_mask_chedule("cosine")

    def run(seed: int, steps: int) -> torch.Tensor:
        cond, uncond = inputs["cond"].clone(), inputs["uncond"]
        mask = prompting.create_attention_mask_predict_next(
            torch.cat([cond, uncond]), pad_id=50295, soi_id=50296, eoi_id=50297, rm_pad_in_image=True)
        with torch.no_grad():
            return model.t2i_generate(cond, uncond_input_ids=uncond, attention_mask=mask,
                                      guidance_scale=setting.guidance, temperature=1.0, timesteps=steps,
                                      noise_schedule=schedule, generator=torch.Generator().manual_seed(seed),
                                      config=config)
    return model, run


def ours_runner(setting: Setting, directory: Path):
    from safetensors.torch import load_file

    from showo.checkpoint import from_pretrained
    from showo.pipeline import ShowoPipeline

    model, layout = from_pretrained(directory)
    pipe = ShowoPipeline(model.eval(), layout)
    inputs = load_file(str(directory / "inputs.safetensors"))

    def run(seed: int, steps: int) -> torch.Tensor:
        return pipe(input_ids=inputs["cond"], uncond_input_ids=inputs["uncond"], guidance_scale=setting.guidance,
                    num_inference_steps=steps, generator=torch.Generator().manual_seed(seed),
                    output_type="tokens").tokens
    return model, run


def worker(args) -> None:
    """Build the checkpoint, or serve runs over stdin/stdout: ``{"seed", "steps"}`` -> seconds, memory, tokens."""
    torch.set_num_threads(args.threads)
    setting, directory = Setting(**json.loads(args.setting)), Path(args.checkpoint)
    if args.worker == "build":
        return build_checkpoint(Path(args.official), setting, directory, args.seed)
    if args.worker == "official":
        model, run = official_runner(Path(args.official), setting, directory)
    else:
        model, run = ours_runner(setting, directory)
    clock = ModelClock(model)
    print(MARK + json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("quit"):
            break
        clock.seconds = 0.0
        reset_peak()
        before = rss_mb("VmRSS")
        t0, cpu0 = time.perf_counter(), time.process_time()
        tokens = run(request["seed"], request["steps"])
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        print(MARK + json.dumps({"seconds": seconds, "cpu_seconds": cpu, "model_seconds": clock.seconds,
                                 "peak_mb": rss_mb("VmHWM"), "before_mb": before, "tokens": tokens.tolist()}),
              flush=True)


def worker_command(role: str, args, setting: Setting, directory: Path) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--worker", role, "--checkpoint", str(directory),
            "--setting", json.dumps(setting.__dict__), "--threads", str(args.threads), "--official", args.official,
            "--seed", str(args.seed)]


def worker_env(code: Path, args) -> dict:
    """The worker imports ``showo`` from ``code`` (this checkout, or ``--baseline``) and uses ``--threads`` threads."""
    return dict(os.environ, PYTHONPATH=str(code), OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))


class Worker:
    """A worker subprocess (stderr goes to ``<checkpoint>/<name>.log``)."""

    def __init__(self, name: str, impl: str, code: Path, args, setting: Setting, directory: Path) -> None:
        self.name, self.log = name, directory / f"{name}.log"
        self.stderr = self.log.open("w")
        self.proc = subprocess.Popen(worker_command(impl, args, setting, directory), cwd=directory,
                                     env=worker_env(code, args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True)
        self.receive()

    def receive(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])
        tail = self.log.read_text()[-3000:]
        raise RuntimeError(f"worker {self.name} exited with {self.proc.wait()}; end of {self.log}:\n{tail}")

    def run(self, seed: int, steps: int) -> dict:
        self.proc.stdin.write(json.dumps({"seed": seed, "steps": steps}) + "\n")
        self.proc.stdin.flush()
        return self.receive()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=120)
        self.stderr.close()


# ------------------------------------------------------------------------------------------------ driver
def compare(name: str, setting: Setting, args, root: Path) -> dict:
    directory = root / name
    if not (directory / "pytorch_model.safetensors").is_file():
        directory.mkdir(parents=True, exist_ok=True)
        with (directory / "build.log").open("w") as log:  # the official constructor prints and warns
            done = subprocess.run(worker_command("build", args, setting, directory), env=worker_env(REPO, args),
                                  stdout=log, stderr=subprocess.STDOUT)
        if done.returncode:
            raise RuntimeError(f"building the checkpoint failed; see {directory / 'build.log'}")
    impls = [("official", "official", REPO), ("ours", "ours", REPO)]
    if args.baseline:
        impls.append(("baseline", "ours", Path(args.baseline).resolve()))
    workers = [Worker(n, impl, code, args, setting, directory) for n, impl, code in impls]
    results = {w.name: [] for w in workers}
    try:
        for w in workers:
            w.run(seed=10_000, steps=2)  # warm-up: allocator, thread pool, our unconditional-prefix cache
        for r in range(args.runs):
            order = workers if r % 2 == 0 else workers[::-1]
            for w in order:
                results[w.name].append(w.run(seed=args.seed + r, steps=setting.steps))
                print(f"  {name} run {r + 1}/{args.runs} {w.name}: {results[w.name][-1]['seconds']:.1f} s", flush=True)
    finally:
        for w in workers:
            w.close()
    return results


def summarize(name: str, setting: Setting, results: dict) -> list[str]:
    off = results["official"]
    lines = []
    for impl, runs in results.items():
        ips = [setting.batch / r["seconds"] for r in runs]
        ratios = [o["seconds"] / r["seconds"] for o, r in zip(off, runs)]
        cpu_ratios = [o["cpu_seconds"] / r["cpu_seconds"] for o, r in zip(off, runs)]
        same = [r["tokens"] == o["tokens"] for o, r in zip(off, runs)]
        digest = hashlib.sha256(json.dumps([r["tokens"] for r in runs]).encode()).hexdigest()[:10]
        lines.append(
            f"| {name} | {impl} | {statistics.median(ips):.4f} [{min(ips):.4f}, {max(ips):.4f}] | "
            f"{statistics.median(ratios):.2f} [{min(ratios):.2f}, {max(ratios):.2f}] | "
            f"{statistics.median(cpu_ratios):.2f} | "
            f"{statistics.median(r['peak_mb'] for r in runs):.0f} "
            f"(+{statistics.median(r['peak_mb'] - r['before_mb'] for r in runs):.0f}) | "
            f"{statistics.median(r['model_seconds'] / r['seconds'] for r in runs):.0%} | "
            f"{'identical' if all(same) else f'DIFFER in {same.count(False)}/{len(same)} runs'} ({digest}) |")
    return lines


def budget_lines(name: str, setting: Setting) -> list[str]:
    depths = [setting.layers] + ([24] if setting.hidden == 2048 and setting.layers != 24 else [])
    lines = []
    for layers in depths:
        f = flops_per_step(setting, layers)
        lines.append(
            f"| {name} | {layers} | {f['official_rows']} | {f['official_head'][0]} x {f['official_head'][1]} | "
            f"{f['official'] / 1e9:.1f} | {f['ours_rows']} | {f['ours_head'][0]} x {f['ours_head'][1]} | "
            f"{f['ours'] / 1e9:.1f} (+{f['prefix'] / 1e9 / setting.steps:.2f} prefix) | "
            f"{f['official'] / (f['ours'] + f['prefix'] / setting.steps):.2f} |")
    return lines


def cpu_name() -> str:
    try:
        found = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    except OSError:
        return "CPU"
    return found.group(1).strip() if found else "CPU"


RESULT_HEADER = ("| setting | sampler | images/s median [min, max] | x official median [min, max] | "
                 "x official, CPU time | peak RSS MB (+ in run) | in model | tokens vs official |\n"
                 "|---|---|---|---|---|---|---|---|")
BUDGET_HEADER = ("| setting | layers | official positions | official LM head rows x cols | official | our positions | "
                 "our LM head rows x cols | ours | FLOP ratio |\n|---|---|---|---|---|---|---|---|---|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", required=True, help="path of a Show-o checkout (github.com/showlab/Show-o)")
    parser.add_argument("--settings", nargs="+", default=["mid", "real256", "real512"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--real-layers", type=int, default=2)
    parser.add_argument("--steps-512", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline", help="another imagecot checkout to time in the same rotation (e.g. main)")
    parser.add_argument("--workdir", help="keep checkpoints, worker logs and results.json here (default: temporary)")
    parser.add_argument("--worker", choices=["build", "official", "ours"], help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--setting", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    args.official = str(Path(args.official).resolve())
    table = settings(args)
    unknown = sorted(set(args.settings) - set(table))
    if unknown:
        raise SystemExit(f"unknown settings {unknown}; choose from {sorted(table)}")
    root = Path(args.workdir or tempfile.mkdtemp(prefix="bench_vs_official_"))
    header = f"{cpu_name()}, torch {torch.__version__}, {args.threads} threads, float32, {args.runs} interleaved runs"
    print(header, flush=True)
    rows, budget, saved = [], [], {"machine": header, "settings": {}}
    try:
        for name in args.settings:
            s = table[name]
            print(f"{name}: {s.layers} x {s.hidden}, {s.num_image_tokens} image tokens, batch {s.batch}, "
                  f"{s.steps} steps, w = {s.guidance}", flush=True)
            results = compare(name, s, args, root)
            rows += summarize(name, s, results)
            budget += budget_lines(name, s)
            print("\n".join([RESULT_HEADER, *rows[-len(results):], *budget_lines(name, s)]), flush=True)
            saved["settings"][name] = {"setting": s.__dict__, "runs": results}
            if args.workdir:
                (root / "results.json").write_text(json.dumps(saved))
    finally:
        if not args.workdir:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\n{header}\n{RESULT_HEADER}\n" + "\n".join(rows))
    print("\nFLOP budget per step (2B rows per forward; GFLOP)\n" + BUDGET_HEADER + "\n" + "\n".join(budget))


if __name__ == "__main__":
    main()
