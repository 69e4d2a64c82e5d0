"""Recipe: the paper's Table 1 in miniature, on a CPU (docs/shapes_world.md, "Quickstart").

    python scripts/shapes/quickstart.py [run_dir=runs/shapes/quickstart]        # full run (committed checkpoints)
    python scripts/shapes/quickstart.py +experiment=shapes/quick run_dir=RUN    # reduced CI setting
    python scripts/shapes/quickstart.py train=true                              # retrain every model first

Reads top to bottom, every step a fingerprinted stage of one run directory (:class:`common.stages.Stages`): a
finished stage is skipped when the command is run again with the same settings, and a finished stage whose settings
changed is an error naming them (``if_exists=overwrite`` redoes it).

1. models: the committed tiny MAGVIT-v2 / Show-o / judges / self-correction Show-o / Janus-Pro (``models.*``), or,
   when one is missing (or ``train=true``), trained here with the project's recipes (``RUN/train/<name>``); a
   training row (``trains``: the models it makes, e.g. iterative DPO's two rounds) runs only when one of its models
   is not committed (or ``train=true``), otherwise later rows read the committed ones;
2. prompts: the held-out eval split as GenEval metadata, the training prompts for DPO (``RUN/prompts``);
3. rows (``rows`` in the config, in table order): reference rows, plain generation (``scripts/generate.py``),
   test-time search (``scripts/run_search.py``), DPO (``scripts/iterative_dpo.py``); every row's images are judged
   with the GenEval judge + the exact shapes detector into ``RUN/rows/<key>/eval/summary.json``;
4. the table (``table.md`` / ``table.json``), the scaling plot and the candidate grid, the GRPO rows' reward curves
   (``grpo_reward_curves.png``; each training run's own in its run dir), then the wall time per stage.

Recipes run in-process through their ``run(cfg)`` (configs composed with Hydra, as on the command line); only DPO
training runs as a child process (an accelerate launcher can be configured there). With ``jobs=N`` (default 2) the
recipe rows run first, ``N`` at a time, each as ``python scripts/<recipe>.py`` with the config composed here (a row
starts once every row it reads has finished; its output goes to ``RUN/logs/<stage>.log``); the pass in table order
that follows then finds them done. Each child pins ``threads`` itself, so ``jobs`` changes the wall time, not a number
of the table (a run started with one ``jobs`` resumes with another).
"""
from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from string import Formatter
from typing import Any, Callable

import hydra
from hydra import compose
from hydra.utils import instantiate
from omegaconf import DictConfig

from common.recipe import check, open_run
from common.stages import Stages
from common.validate import Bool, ConfigError, Int
from eval.geneval.prompts import load_class_names, load_prompts
from common.io import atomic_write_json
from eval.geneval.report import load_summary
from eval.geneval.score import read_results
from eval.plots import scaling_curves
from eval.shapes.figures import qualitative_grid
from eval.shapes.report import Comparison, Row, evaluate_shapes_folder, write_table
from eval.stats import geneval_score, paired_bootstrap, slot_verdicts
from eval.shapes.rows import ground_truth_images, random_code_images, write_prompt_sets
from eval.shapes.suite import build_shapes_suite
from grpo.plots import reward_curves
from reward_models.judge_steps import STEPS_SELF_CORRECTION
from search.pool import load_pool
from search.scaling import default_policies, evaluate_policies, powers_of_two, stored_verdict, write_policy_images
from showo.magvit import MAGVITv2, decode_codes

SCRIPTS = Path(__file__).resolve().parents[1]
SETTINGS = (Int("images_per_prompt", min=1), Int("prompts_per_task", min=1, optional=True),
            Int("images_per_task", min=1, optional=True), Int("steps", min=1),
            Int("candidates", min=1), Int("pool_candidates", min=1), Bool("train"), Int("seed"),
            Int("table.replicates", min=100), Int("jobs", min=1))


def say(line: str) -> None:
    """One line to stdout in one write (rows running at once print from several threads)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@cache
def recipe(name: str):
    """``scripts/<name>.py`` as a module (recipes are scripts, never imported by the library)."""
    spec = importlib.util.spec_from_file_location(f"imagecot_recipe_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def recipe_config(name: str, overrides: list[str]) -> DictConfig:
    """The recipe's entry config composed with ``overrides``, as ``python scripts/<name>.py <overrides>`` would."""
    return compose(config_name=name, overrides=overrides)


class Quickstart:
    """The stages of one quickstart run (see the module docstring)."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.run = open_run(cfg, ignore=("jobs",))  # how many rows run at once changes no output
        self.stages = Stages(self.run, cfg.if_exists)
        self.root = self.run.path
        self.models: dict[str, str] = {}
        self.common = [f"threads={cfg.threads}"]  # recipes resume: an overwritten quickstart starts from an empty dir
        self.children: set[subprocess.Popen] = set()  # the rows running as child processes (run_parallel)
        self.committed_rows = {key for key, row in cfg.rows.items() if row.get("trains") and self.committed(row)}
        self.row_outputs = {key: str(self.root / self.row_stage(key, row)) for key, row in self.recipe_rows().items()}
        self.models.update(self.trained_models())

    def stage(self, name: str, config: Any, fn: Callable[[], Any], **kw) -> dict:
        print(f"== {name}", flush=True)
        return self.stages(name, config, fn, **kw)

    def recipe_args(self, key: str, recipe_name: str, overrides: list[str]) -> tuple[list[str], DictConfig]:
        """The command-line overrides of a recipe run into ``RUN/<key>`` and the config they compose."""
        args = [*overrides, *self.common, f"run_dir={self.root / key}"]
        return args, recipe_config(getattr(recipe(recipe_name), "CONFIG_NAME", recipe_name), args)

    def call(self, key: str, recipe_name: str, overrides: list[str]) -> Path:
        """Run a recipe into ``RUN/<key>`` as a stage, in this process; returns its run directory."""
        _, cfg = self.recipe_args(key, recipe_name, overrides)
        self.stage(key, cfg, lambda: {"run_dir": str(recipe(recipe_name).run(cfg))})
        return self.root / key

    def launch(self, key: str, recipe_name: str, overrides: list[str]) -> Callable[[], dict]:
        """The stage of :meth:`call` as a child process, ``python scripts/<recipe>.py`` with the same overrides (so
        the same config and fingerprint); composed here, run by the returned function."""
        out = self.root / key
        args, cfg = self.recipe_args(key, recipe_name, overrides)
        log = self.root / "logs" / f"{key.replace('/', '_')}.log"

        def child() -> dict:
            say(f"== {key}: started in a child process (log {log})")
            start = time.perf_counter()
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "w") as stream:
                proc = subprocess.Popen(self.child_command(recipe_name, args), stdout=stream,
                                        stderr=subprocess.STDOUT, env=child_env())
                self.children.add(proc)
                try:
                    code = proc.wait()
                finally:
                    self.children.discard(proc)
            if code:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
                raise RuntimeError(f"stage '{key}' ({recipe_name}) failed with exit code {code}; its log: {log}\n"
                                   f"{tail}")
            say(f"== {key}: finished in {time.perf_counter() - start:.0f} s")
            return {"run_dir": str(out)}

        return lambda: self.stages(key, cfg, child)

    def child_command(self, recipe_name: str, args: list[str]) -> list[str]:
        return [sys.executable, str(SCRIPTS / f"{recipe_name}.py"), *args]

    # ------------------------------------------------------------------------------------------------ 1. models
    def model(self, name: str, present: str, train: Callable[[], str]) -> str:
        """The committed checkpoint ``models.<name>`` when its marker file ``present`` exists, else ``train()``."""
        path = Path(self.cfg.models[name])
        self.models[name] = str(path) if not self.cfg.train and (path / present).is_file() else train()
        return self.models[name]

    def train_magvit(self) -> str:
        out = self.call("train/magvit", "train_magvit", ["+experiment=shapes/magvit", *self.cfg.training.magvit])
        return str(out / "final")

    def train_showo(self) -> str:
        magvit = self.model("magvit", "pytorch_model.safetensors", self.train_magvit)
        tokens = Path(magvit).parent / "tokens"
        out = self.call("train/showo", "train_showo", ["+experiment=shapes/showo", f"model.bundle.vq_directory={magvit}",
                                                       f"dataset.directory={tokens}", *self.cfg.training.showo])
        return str(out / "final")

    def once(self, key: str, recipe_name: str, overrides: list[str]) -> Path:
        """:meth:`call` unless stage ``key`` finished (the shared inputs of several models); returns its run dir."""
        if not self.stages.done(key):
            self.call(key, recipe_name, overrides)
        return self.root / key

    def judge_data(self) -> Path:
        return self.once("train/judge_data", "build_judge_data", ["+experiment=shapes/judge_data",
                                                                   f"showo={self.models['showo']}",
                                                                   *self.cfg.training.judge_data])

    def judge_base(self) -> Path:
        """The tiny judge that learnt to describe shapes images, which the PRM is fine-tuned from."""
        return self.once("train/judge_base", "train_judge", ["+experiment=shapes/judge_base",
                                                              f"judge_data_dir={self.judge_data()}",
                                                              *self.cfg.training.judge_base]) / "final"

    def judge_vision(self) -> Path:
        """The tiny judge whose vision tower learnt the exact detector's shape and colour of every patch, which the
        ORM is fine-tuned from (scripts/pretrain_judge_vision.py)."""
        return self.once("train/judge_vision", "pretrain_judge_vision", ["+experiment=shapes/judge_vision",
                                                                          f"judge_data_dir={self.judge_data()}",
                                                                          *self.cfg.training.judge_vision]) / "final"

    def parm_data(self) -> Path:
        """The Show-o's own paths with every question a PARM is asked (scripts/build_parm_data.py)."""
        return self.once("train/parm_data", "build_parm_data", ["+experiment=shapes/parm_data",
                                                                 f"showo={self.models['showo']}",
                                                                 *self.cfg.training.parm_data])

    def train_judge(self, name: str) -> str:
        """The ORM from the vision-pre-trained judge, the PARM and PARM++ from the ORM on the PARM data, the PRM from
        the describe base (not yet the ORM's way)."""
        if name in ("parm", "parmpp"):
            base, data = self.models["orm"], self.parm_data()
        else:
            base, data = (self.judge_vision() if name == "orm" else self.judge_base()), self.judge_data()
        out = self.call(f"train/{name}", "train_judge", [f"+experiment=shapes/judge_{name}", f"model_dir={base}",
                                                        f"judge_data_dir={data}", *self.cfg.training.judge])
        return str(out / "final")

    def train_corrector(self) -> str:
        """PARM++'s self-correction Show-o from the Show-o, on the PARM data's groups of its own paths."""
        data = self.parm_data()
        out = self.call("train/corrector", "train_showo", [
            "+experiment=shapes/self_correction", f"model.bundle.directory={self.models['showo']}",
            f"dataset.directory={data / STEPS_SELF_CORRECTION}", *self.cfg.training.corrector])
        return str(out / "final")

    def train_janus(self) -> str:
        out = self.call("train/janus", "train_janus", ["+experiment=shapes/janus",
                                                       f"model.bundle.vq_directory={self.models['magvit']}",
                                                       *self.cfg.training.janus])
        return str(out / "final")

    def committed(self, row: DictConfig) -> bool:
        """A training row (``trains``: model name -> where the row writes it) is not run when every model it trains is
        committed (``models.<name>`` holds a checkpoint) and ``train=false``: later rows read the committed models."""
        return not self.cfg.train and all(is_checkpoint(Path(self.cfg.models[name])) for name in row.trains)

    def trained_models(self) -> dict[str, str]:
        """The models of the training rows: the committed ones, or the ones a row trains in this run (all of a row's
        models come from one place: its rounds continue each other)."""
        out = {}
        for key, row in self.cfg.rows.items():
            for name, inside in (row.get("trains") or {}).items():
                out[name] = (str(self.cfg.models[name]) if key in self.committed_rows
                             else str(self.root / self.row_stage(key, row) / inside))
        return out

    def load_models(self) -> None:
        self.model("showo", "showo/config.json", self.train_showo)
        for name in ("orm", "prm", "parm", "parmpp"):
            self.model(name, "config.json", lambda n=name: self.train_judge(n))
        self.model("corrector", "showo/config.json", self.train_corrector)
        self.model("magvit", "pytorch_model.safetensors", self.train_magvit)  # the tiny Janus draws its codes
        self.model("janus", "config.json", self.train_janus)
        print("== models: " + ", ".join(f"{k} {v}" for k, v in self.models.items()), flush=True)

    # ------------------------------------------------------------------------------------------------ 2-3. rows
    def prompts(self) -> dict[str, Path]:
        suite = build_shapes_suite(instantiate(self.cfg.data))
        self.world = suite.config.world
        paths = {"metadata": self.root / "prompts" / "evaluation_metadata.jsonl",
                 "class_names": self.root / "prompts" / "object_names.txt",
                 "train_prompts": self.root / "prompts" / "train_prompts.txt"}
        balance = self.cfg.images_per_task
        self.stage("prompts", {"data": self.cfg.data, "prompts_per_task": self.cfg.prompts_per_task,
                               **({} if balance is None else {"images_per_task": balance,
                                                              "images_per_prompt": self.cfg.images_per_prompt})},
                   lambda: {k: str(v) for k, v in write_prompt_sets(
                       self.root / "prompts", suite, self.cfg.prompts_per_task, balance,
                       self.cfg.images_per_prompt).items()})
        self.paths = paths
        self.specs = load_prompts(paths["metadata"], load_class_names(paths["class_names"]))
        return paths

    def evaluate(self, key: str, name: str, forward_passes: float | None = None) -> Path:
        images, out = self.root / "rows" / key / "images", self.root / "rows" / key / "eval"
        cost = images.parent / "cost.json"
        if forward_passes is None and cost.is_file():  # scripts/run_search.py's cost summary: passes over all slots
            import json

            total = json.loads(cost.read_text())
            forward_passes = total["generator_forward_passes"] / max(total["slots"], 1)
        extra = {"forward_passes_per_image": forward_passes} if forward_passes is not None else {}
        self.stage(f"rows/{key}/eval", {"name": name, "extra": extra}, lambda: {"overall": evaluate_shapes_folder(
            images, out, self.paths["metadata"], self.paths["class_names"], self.world, name,
            self.cfg.images_per_prompt, extra)["scores"]["overall"]}, inputs={"images": images})
        return out / "summary.json"

    def reference_rows(self) -> None:
        n, seed = self.cfg.images_per_prompt, self.cfg.seed
        self.stage("rows/ground_truth", {"images_per_prompt": n, "seed": seed}, lambda: {"images": str(
            ground_truth_images(self.specs, self.world, self.root / "rows" / "ground_truth" / "images", n, seed))},
            inputs={"metadata": self.paths["metadata"]})
        vq_dir = Path(self.models["showo"]) / "vq"
        self.stage("rows/chance", {"images_per_prompt": n, "seed": seed}, lambda: {"images": str(random_code_images(
            self.specs, MAGVITv2.from_pretrained(vq_dir), self.root / "rows" / "chance" / "images", n, seed))},
            inputs={"metadata": self.paths["metadata"], "vq": vq_dir})

    def row_stage(self, key: str, row: DictConfig) -> str:
        """The stage (and run directory under RUN) of a recipe row."""
        return f"rows/{key}" if row.images else f"train/{key}"

    def recipe_rows(self) -> dict[str, DictConfig]:
        """The rows that run a recipe (not a policy replayed on a pool), in table order; their run directories
        (``self.row_outputs``) are ``row_<key>`` of the overrides."""
        return {key: row for key, row in self.cfg.rows.items()
                if row.get("policy") is None and row.get("recipe") and key not in self.committed_rows}

    def run_parallel(self, jobs: int) -> None:
        """Every recipe row as a child process (:meth:`launch`), ``jobs`` at a time, in table order as far as the
        rows they read (``{row_<key>}`` in their overrides) have finished. A failed row stops new starts; the
        running ones finish, then its error is raised. Interrupted (Ctrl-C, or SIGTERM, which is turned into
        ``SystemExit`` here), it terminates the running children before it stops: none is left writing the run."""
        rows = self.recipe_rows()
        makers = {name: key for key, row in rows.items() for name in (row.get("trains") or {})}  # trained in this run

        def reads_of(row: DictConfig) -> set[str]:  # {row_<key>}, and models a row of this run trains
            fields = {field for text in row.overrides for _, field, _, _ in Formatter().parse(text) if field}
            return ({makers[f] for f in fields if f in makers}
                    | {f[4:] for f in fields if f.startswith("row_") and f[4:] in rows})

        reads = {key: reads_of(row) for key, row in rows.items()}
        pending = {key: self.launch(self.row_stage(key, row), row.recipe, self.row_overrides(row))
                   for key, row in rows.items()}  # composed here, in this thread
        done: set[str] = set()
        errors: list[BaseException] = []
        running: dict = {}
        with sigterm_as_exit(), ThreadPoolExecutor(jobs) as pool:
            try:
                while pending or running:
                    ready = [key for key in pending if reads[key] <= done] if not errors else []
                    for key in ready[:jobs - len(running)]:
                        running[pool.submit(pending.pop(key))] = key
                    if not running:
                        break
                    # a timeout, so an interrupt reaches this thread within a second whichever thread got it
                    finished, _ = wait(running, timeout=1.0, return_when=FIRST_COMPLETED)
                    for future in finished:
                        key = running.pop(future)
                        if future.exception() is None:
                            done.add(key)
                        else:
                            errors.append(future.exception())
            except BaseException:  # interrupted: no child is left writing into the run
                for proc in list(self.children):
                    proc.terminate()
                raise
        if errors:
            raise errors[0]

    def row_overrides(self, row: DictConfig) -> list[str]:
        """A row's recipe overrides with the run's prompts, sampling, models and candidate count filled in."""
        fill = {"metadata": self.paths["metadata"], "class_names": self.paths["class_names"],
                "train_prompts": self.paths["train_prompts"], "steps": self.cfg.steps,
                "candidates": self.cfg.candidates, "images_per_prompt": self.cfg.images_per_prompt,
                "pool_candidates": self.cfg.pool_candidates,
                **self.models, **{f"row_{k}": v for k, v in self.row_outputs.items()}}
        eval_set = self.cfg.eval_set.get(row.get("eval_set", row.get("recipe")), [])  # a row may pick another list
        return [o.format(**fill) for o in [*row.overrides, *eval_set]]

    def rows(self) -> list[tuple[str, str, Path]]:
        """Every row of the table: ``(key, name, summary path)``, in table order."""
        entries = [(k, n, self.evaluate(k, n)) for k, n in (("ground_truth", "rendered ground truth (reference)"),
                                                            ("chance", "random codes (chance)"))]
        recipes = self.recipe_rows()
        for key, row in self.cfg.rows.items():
            name = row.name.format(candidates=self.cfg.candidates)
            if row.get("policy") is not None:  # a selection policy replayed on a stored pool: no new generation
                self.pool_row(key, row)
            elif key in recipes:  # done already when run_parallel ran it
                self.call(self.row_stage(key, row), row.recipe, self.row_overrides(row))
            if row.images:
                plain = row.get("recipe") == "generate"  # one pass per image and step; the others report their cost
                entries.append((key, name, self.evaluate(key, name, self.cfg.steps if plain else None)))
        return entries

    def pool_row(self, key: str, row: DictConfig) -> None:
        """``RUN/rows/<key>``: the picks of ``row.policy`` among the candidates of the pool row ``row.pool`` (the live
        strategy's images, same seeds; :func:`search.scaling.write_policy_images`)."""
        pool = Path(self.row_outputs[row.pool]) / "pool"
        vq = Path(self.models["magvit"])  # the world's MAGVIT-v2: every Show-o bundle carries it, the Janus draws its codes

        def replay() -> dict:
            decoder = MAGVITv2.from_pretrained(vq)
            side = int(decoder.config.num_codes ** 0.5)
            return write_policy_images(load_pool(pool), instantiate(row.policy),
                                       lambda tokens: decode_codes(decoder, tokens, (side, side)),
                                       {spec.index: spec for spec in self.specs}, self.root / "rows" / key)

        self.stage(f"rows/{key}", {"policy": row.policy, "pool": str(pool)}, replay, inputs={"pool": pool, "vq": vq})

    def table_rows(self, entries: list[tuple[str, str, Path]], verdicts: dict[str, dict]) -> list[Row]:
        """Rows with their paired bootstrap interval against the baseline and, for search rows, the share of the
        oracle's best-of-N gain they reach."""
        base, oracle = self.cfg.table.baseline, self.cfg.table.oracle
        scores = {key: geneval_score(v) for key, v in verdicts.items()}
        rows = []
        for key, name, path in entries:
            delta = share = None
            mine = self.cfg.rows[key].get("baseline", base) if key in self.cfg.rows else base  # a row may name its own
            if key not in (mine, "ground_truth", "chance") and mine in verdicts:
                delta = self.paired(verdicts[mine], verdicts[key])
            gain = scores[oracle] - scores[base] if oracle in scores and base in scores else 0.0
            if key in self.cfg.table.oracle_share and gain > 0:
                share = (scores[key] - scores[base]) / gain
            against = dict((k, n) for k, n, _ in entries).get(mine) if mine != base else None
            rows.append(Row(name, load_summary(path), delta=delta, oracle_share=share, against=against))
        return rows

    @staticmethod
    def verdicts(entries: list[tuple[str, str, Path]]) -> dict[str, dict]:
        """Every row's slot verdicts (its GenEval ``results.jsonl``): read once by :func:`run` for the table, the
        comparisons and the grid."""
        return {key: slot_verdicts(read_results(path.parent / "results.jsonl")) for key, _, path in entries}

    def paired(self, baseline: dict, method: dict):
        """The table's paired bootstrap of ``method - baseline``; a prompt's repeated lines are one prompt."""
        return paired_bootstrap(baseline, method, self.cfg.table.replicates, seed=self.cfg.seed,
                                units={s.index: s.prompt for s in self.specs})

    def comparisons(self, entries: list[tuple[str, str, Path]], verdicts: dict[str, dict]) -> list[Comparison]:
        """``table.comparisons`` (checked before the run, :func:`check_comparisons`): the paired difference of each
        ``[row, against]`` pair of rows (the paper's claims compare methods, not only a method and the baseline)."""
        found = {key: (name, path) for key, name, path in entries}
        out = []
        for key, against in self.cfg.table.get("comparisons") or []:
            passes = [(load_summary(found[k][1]).get("config") or {}).get("forward_passes_per_image")
                      for k in (key, against)]
            out.append(Comparison(found[key][0], found[against][0], self.paired(verdicts[against], verdicts[key]),
                                  *passes))
        return out

    def scaling(self) -> Path | None:
        """Accuracy vs N / generator / judge forward passes of every policy, from the pool row's stored candidates."""
        pool = Path(self.row_outputs.get(self.cfg.table.pool, "")) / "pool"
        if not pool.is_dir():
            return None
        entries = load_pool(pool)
        tasks = {spec.index: spec.tag for spec in self.specs}
        ns = powers_of_two(min(e.size for e in entries))
        rows = evaluate_policies(entries, default_policies(ns, oracle="oracle"), stored_verdict(tasks))
        atomic_write_json(self.root / "scaling.json", rows)
        return scaling_curves(rows, self.root / "scaling.png",
                              title=f"shapes world: test-time scaling from one pool of {ns[-1]} paths per slot")


def is_checkpoint(path: Path) -> bool:
    """A saved model: a Show-o bundle (``showo/config.json``) or a single model (``config.json``)."""
    return (path / "config.json").is_file() or (path / "showo" / "config.json").is_file()


def terminated(signum, frame) -> None:
    raise SystemExit(f"quickstart: terminated (signal {signum})")


@contextmanager
def sigterm_as_exit():
    """SIGTERM raises SystemExit (:func:`terminated`) inside the block, so the block can clean up; the previous
    handler is back afterwards. Outside the main thread (where handlers cannot be set) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def child_env() -> dict[str, str]:
    """This process's environment with the repository first on ``PYTHONPATH`` (a checkout that is not installed)."""
    path = [str(SCRIPTS.parent), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def grpo_runs(rows: DictConfig, root: Path) -> list[tuple[str, Path]]:
    """(name, metrics.jsonl) of every GRPO training row; policy rows have no ``recipe`` key (read with ``get``: the
    config is in struct mode)."""
    return [(row.name, root / "train" / key / "metrics.jsonl") for key, row in rows.items()
            if row.get("recipe") == "train_grpo"]


def grid_prompts(specs) -> dict[int, str]:
    """Prompt index -> text for the qualitative grid: one row per prompt, at the first line that asks it (the
    balanced eval repeats lines)."""
    first: dict[str, int] = {}
    for spec in specs:
        first.setdefault(spec.prompt, spec.index)
    return {index: prompt for prompt, index in first.items()}


def check_comparisons(cfg: DictConfig) -> None:
    """Every ``table.comparisons`` entry is a pair of table rows (a recipe or policy row with images, or a reference
    row), checked before anything runs."""
    rows = {"ground_truth", "chance", *(k for k, row in cfg.rows.items() if row.get("images", True))}
    for i, pair in enumerate(cfg.table.get("comparisons") or []):
        if len(pair) != 2 or any(k not in rows for k in pair):
            raise ConfigError(f"quickstart: table.comparisons[{i}] = {list(pair)} must be [row, against], two of the "
                              f"table's rows ({', '.join(sorted(rows))})")


def check_trains(cfg: DictConfig) -> None:
    """A training row's ``trains`` names ``models.*`` entries (where its committed models are), checked before
    anything runs."""
    for key, row in cfg.rows.items():
        unknown = [name for name in (row.get("trains") or {}) if name not in cfg.models]
        if unknown:
            raise ConfigError(f"quickstart: rows.{key}.trains names {unknown}, which are not models.* entries "
                              f"({', '.join(cfg.models)})")


def run(cfg: DictConfig) -> Path:
    check(cfg, "quickstart", SETTINGS)
    check_comparisons(cfg)
    check_trains(cfg)
    start = time.perf_counter()
    q = Quickstart(cfg)
    print(f"== shapes world quickstart: run dir {q.root} (threads {cfg.threads}, jobs {cfg.jobs})", flush=True)
    q.load_models()
    q.prompts()
    q.reference_rows()
    if cfg.jobs > 1:
        q.run_parallel(cfg.jobs)
    entries = q.rows()

    # ---- 4. table (intervals, oracle share), scaling curves, qualitative grid, where the time went
    verdicts = q.verdicts(entries)
    rows = q.table_rows(entries, verdicts)
    text = write_table(q.root, rows, environment=q.run.environment, comparisons=q.comparisons(entries, verdicts))
    q.scaling()
    columns = [(name, path.parent.parent / "images", {slot: ok for slot, (_, ok) in verdicts[key].items()})
               for key, name, path in entries if key != "chance"]
    qualitative_grid(columns, grid_prompts(q.specs), q.root / "grid.png")
    reward_curves(grpo_runs(cfg.rows, q.root), q.root / "grpo_reward_curves.png")  # each run's own: its run dir
    print(text)
    timings = q.stages.timings()
    print("wall time per stage (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    print(f"== quickstart finished in {time.perf_counter() - start:.0f} s (this session); table -> {q.root / 'table.md'}, "
          f"scaling curves -> {q.root / 'scaling.png'}, qualitative grid -> {q.root / 'grid.png'}")
    return q.root


if __name__ == "__main__":
    hydra.main(config_path="../../configs", config_name="quickstart", version_base="1.3")(run)()
