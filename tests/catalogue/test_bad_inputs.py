"""The bad-input catalogue (issue 18, item 6): every recipe refuses each kind of bad input with an error that names the
key / value / file, before it writes anything — no run directory is left that looks like a run.

Each case runs the recipe's ``run(cfg)`` in-process on the tiny world (tests/catalogue/world.py) with the config the
command line would compose; the command line turns the same exception into exit code 1 (Hydra's error handler; a
representative subset runs as real subprocesses in test_bad_inputs_cli.py). ``names`` are substrings the message must
contain, ``never`` substrings it must not (a missing bundle is not "a missing phi-1_5 tokenizer").
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import pytest
import torch

from common.validate import ConfigError
from eval.geneval.prompts import MetadataError
from tests.catalogue.bad_files import MAKERS
from tests.catalogue.world import config, recipe

COMPOSE = "compose"  # the error is raised while Hydra composes the config (a typo in a key or an option)


@dataclass(frozen=True)
class Case:
    id: str
    recipe: str
    overrides: tuple[str, ...]
    error: type | str
    names: tuple[str, ...]
    make: Optional[str] = None  # a bad_files maker writing the damaged inputs into {tmp}
    never: tuple[str, ...] = ()


def C(id, recipe, overrides, error, names, make=None, never=()):
    overrides = (overrides,) if isinstance(overrides, str) else tuple(overrides)
    names = (names,) if isinstance(names, str) else tuple(names)
    return Case(id, recipe, overrides, error, names, make, never)


NO_CUDA = not torch.cuda.is_available()
CASES = [
    # ---- generate: settings
    C("steps_abc", "generate", "model.sampling.num_inference_steps=abc", ConfigError,
      ["num_inference_steps = 'abc'", "integer"]),
    C("steps_float", "generate", "model.sampling.num_inference_steps=2.5", ConfigError, "num_inference_steps = 2.5"),
    C("batch_size_0", "generate", "batch_size=0", ConfigError, "batch_size = 0: must be an integer >= 1"),
    C("guidance_negative", "generate", "model.sampling.guidance_scale=-3", ConfigError, "guidance_scale = -3"),
    C("guidance_nan", "generate", "model.sampling.guidance_scale=nan", ConfigError, "guidance_scale = nan"),
    C("temperature_negative", "generate", "model.scheduler.temperature=-1", ValueError, ["temperature", "-1"]),
    C("mask_schedule", "generate", "model.scheduler.mask_schedule=spiral", ValueError, ["mask_schedule", "spiral"]),
    C("unknown_sampling_key", "generate", "+model.sampling.top_k=5", ConfigError, ["model.sampling", "top_k"]),
    C("images_per_prompt_0", "generate", "images_per_prompt=0", ConfigError, "images_per_prompt = 0"),
    C("seed_abc", "generate", "seed=abc", ConfigError, "seed = 'abc'"),
    C("grid_maybe", "generate", "grid=maybe", ConfigError, "grid = 'maybe'"),
    C("threads_0", "generate", "threads=0", ConfigError, "threads = 0"),
    C("if_exists_unknown", "generate", "if_exists=append", ConfigError, "if_exists = 'append'"),
    C("device_name", "generate", "device=gpu", ConfigError, ["device = 'gpu'", "not a device name"]),
    pytest.param(C("device_absent", "generate", "device=cuda", ConfigError, ["device = 'cuda'", "0 CUDA device"]),
                 marks=pytest.mark.skipif(not NO_CUDA, reason="this machine has a CUDA device")),
    C("key_typo", "generate", "image_per_prompt=2", COMPOSE, "image_per_prompt"),
    C("unknown_option", "generate", "model=showo_nope", COMPOSE, "showo_nope"),
    # ---- generate: prompt files
    C("prompts_missing", "generate", "prompts={tmp}/nope.txt", ConfigError,
      ["prompts = '", "nope.txt", "file not found"]),
    C("prompts_empty", "generate", "prompts={tmp}/empty.txt", MetadataError, ["empty.txt", "no prompts"], "text_files"),
    C("prompts_blank", "generate", "prompts={tmp}/blank.txt", MetadataError, ["blank.txt", "no prompts"], "text_files"),
    C("prompts_latin1", "generate", "prompts={tmp}/latin1.txt", MetadataError, ["latin1.txt", "not UTF-8"],
      "text_files"),
    C("metadata_malformed", "generate", ["prompts={tmp}/malformed.jsonl", "class_names={w.class_names}"], MetadataError,
      ["malformed.jsonl:2", "invalid JSON"], "metadata_files"),
    C("metadata_unknown_class", "generate", ["prompts={tmp}/unknown_class.jsonl", "class_names={w.class_names}"],
      MetadataError, ["unknown_class.jsonl:2", "'unicorn'"], "metadata_files"),
    C("metadata_empty_line", "generate", ["prompts={tmp}/empty_line.jsonl", "class_names={w.class_names}"],
      MetadataError, ["empty_line.jsonl:2", "empty line"], "metadata_files"),
    C("metadata_latin1", "generate", ["prompts={tmp}/latin1.jsonl", "class_names={w.class_names}"], MetadataError,
      ["latin1.jsonl:2", "not UTF-8"], "metadata_files"),
    C("class_names_missing", "generate", ["prompts={w.metadata}", "class_names={tmp}/names.txt"], ConfigError,
      ["class_names = '", "names.txt", "file not found"]),
    # ---- generate: model bundles
    C("bundle_missing", "generate", ["model=showo_bundle", "model.bundle.directory={tmp}/nobundle"], FileNotFoundError,
      ["bundle directory not found", "nobundle"], never=("phi-1_5",)),
    C("bundle_without_tokenizer", "generate", ["model=showo_bundle", "model.bundle.directory={tmp}/notok"],
      FileNotFoundError, ["notok is not a Show-o bundle", "tokenizer/"], "bundles", never=("phi-1_5",)),
    C("bundle_without_vq", "generate", ["model=showo_bundle", "model.bundle.directory={tmp}/novq"], FileNotFoundError,
      ["novq", "vq/"], "bundles"),
    C("weights_truncated", "generate", ["model=showo_bundle", "model.bundle.directory={tmp}/truncated"], ValueError,
      "truncated/showo/pytorch_model.safetensors", "bundles"),
    C("vq_weights_garbage", "generate", ["model=showo_bundle", "model.bundle.directory={tmp}/garbage_vq"], ValueError,
      "garbage_vq/vq/pytorch_model.safetensors", "bundles"),
    C("weights_nan", "generate", ["model=showo_bundle", "model.bundle.directory={tmp}/nan"], ValueError,
      ["nan/showo/pytorch_model.safetensors", "{nan_name}", "non-finite"], "bundles"),
    C("vq_weights_inf", "generate", ["model=showo_bundle", "model.bundle.directory={tmp}/inf_vq"], ValueError,
      ["inf_vq/vq/pytorch_model.safetensors", "{inf_name}", "non-finite"], "bundles"),
    C("bundle_config_json", "generate", ["model=showo_bundle", "model.bundle.directory={tmp}/badcfg"], ValueError,
      ["badcfg/showo/config.json", "not valid JSON"], "bundles"),
    # ---- run_search
    C("judge_of_wrong_kind", "run_search", ["search=parm", "reward=orm_zeroshot"], COMPOSE,
      "search_judge/parm/orm_zeroshot"),
    C("num_candidates_0", "run_search", ["search=best_of_n", "reward=orm_zeroshot", "search.strategy.num_candidates=0"],
      ConfigError, "search.strategy.num_candidates = 0"),
    C("search_batch_size_0", "run_search", ["search=best_of_n", "reward=orm_zeroshot", "search.strategy.batch_size=0"],
      ConfigError, "search.strategy.batch_size = 0"),
    C("judge_missing", "run_search",
      ["search=best_of_n", "reward=orm_zeroshot", "reward.judge.model_dir={tmp}/nojudge"], FileNotFoundError,
      ["judge directory not found", "nojudge"]),
    C("corrector_missing", "run_search", ["search=parmpp", "reward=parmpp", "search.corrector={tmp}/nocorrector"],
      ConfigError, ["search.corrector = '", "nocorrector", "directory not found"]),
    C("search_steps_abc", "run_search", "model.sampling.num_inference_steps=abc", ConfigError,
      "num_inference_steps = 'abc'"),
    # ---- train_showo
    C("per_device_batch_size_0", "train_showo", "per_device_batch_size=0", ConfigError, "per_device_batch_size = 0"),
    C("checkpoint_every_0", "train_showo", "checkpoint_every=0", ConfigError, "checkpoint_every = 0"),
    C("max_steps_abc", "train_showo", "max_steps=abc", ConfigError, "max_steps = 'abc'"),
    C("accumulation_0", "train_showo", "gradient_accumulation_steps=0", ConfigError, "gradient_accumulation_steps = 0"),
    C("mixed_precision", "train_showo", "mixed_precision=fp8", ConfigError, "mixed_precision = 'fp8'"),
    C("lr_negative", "train_showo", "optim.lr=-1", ConfigError, "optim.lr = -1"),
    C("cond_dropout_2", "train_showo", "dataset.cond_dropout_prob=2", ConfigError, "dataset.cond_dropout_prob = 2"),
    C("dataset_missing", "train_showo", "dataset.directory={tmp}/nodata", FileNotFoundError,
      ["nodata/prompts.jsonl", "not found"]),
    C("dataset_bad_line", "train_showo", "dataset.directory={tmp}/bad_line", ValueError,
      ["bad_line/prompts.jsonl:3", "'prompt'"], "datasets"),
    C("dataset_bad_codes", "train_showo", "dataset.directory={tmp}/bad_codes", ValueError,
      "bad_codes/codes.safetensors", "datasets"),
    # ---- train_dpo
    C("pairs_malformed", "train_dpo", "data.pairs={tmp}/malformed.jsonl", ValueError,
      ["malformed.jsonl:2", "not valid JSON"], "pairs"),
    C("pairs_empty", "train_dpo", "data.pairs={tmp}/empty.jsonl", ValueError, ["empty.jsonl", "no preference pairs"],
      "pairs"),
    C("pairs_latin1", "train_dpo", "data.pairs={tmp}/latin1.jsonl", ValueError, ["latin1.jsonl:2", "not UTF-8"],
      "pairs"),
    C("pairs_code_range", "train_dpo", "data.pairs={tmp}/out_of_range.jsonl", ValueError,
      ["out_of_range.jsonl:1", "'chosen'", "100000"], "pairs"),
    C("pairs_missing", "train_dpo", "data.pairs={tmp}/nopairs.jsonl", FileNotFoundError, "nopairs.jsonl"),
    C("dpo_per_device_0", "train_dpo", "train.per_device_batch_size=0", ConfigError, "train.per_device_batch_size = 0"),
    C("dpo_batch_split", "train_dpo", "train.per_device_batch_size=3", ConfigError,
      ["train.global_batch_size = 4", "train.per_device_batch_size = 3"]),
    C("dpo_checkpoint_every_0", "train_dpo", "train.checkpoint_every=0", ConfigError, "train.checkpoint_every = 0"),
    C("dpo_batch_too_big", "train_dpo", "train.global_batch_size=100", ValueError, ["pairs.jsonl", "100"]),
    C("dpo_beta", "train_dpo", "dpo.loss.beta=-1", ValueError, ["beta", "-1"]),
    C("dpo_lr_negative", "train_dpo", "train.optimizer.lr=-1", ConfigError, "train.optimizer.lr = -1"),
    C("dpo_warmup_ratio", "train_dpo", "train.warmup_ratio=2", ConfigError, "train.warmup_ratio = 2"),
    # ---- iterative_dpo
    C("iterative_prompts_empty", "iterative_dpo", "iterative.prompts={tmp}/empty.txt", ValueError,
      ["empty.txt", "no prompts"], "text_files"),
    C("iterative_prompts_latin1", "iterative_dpo", "iterative.prompts={tmp}/latin1.txt", ValueError,
      ["latin1.txt", "not UTF-8"], "text_files"),
    C("iterative_candidates_1", "iterative_dpo", "iterative.candidates_per_prompt=1", ConfigError,
      "iterative.candidates_per_prompt = 1"),
    C("iterative_no_judge", "iterative_dpo", "~iterative.judge", ValueError, "iterative.judge is not set"),
    # ---- eval_geneval
    C("image_dir_missing", "eval_geneval", "image_dir={tmp}/noimages", ConfigError, ["image_dir = '", "noimages"]),
    C("folder_of_another_prompt", "eval_geneval", "image_dir={tmp}/shifted", ValueError,
      ["shifted/00001/metadata.jsonl", "benchmark line 2"], "image_folders"),
    C("sample_missing_strict", "eval_geneval", ["image_dir={tmp}/missing_sample", "eval.strict_layout=true"],
      ValueError, ["missing_sample/00001/samples", "expected 2 images"], "image_folders"),
    C("folder_beyond_benchmark", "eval_geneval", "image_dir={tmp}/extra_folder", ValueError,
      ["extra_folder/00099", "folder index 99"], "image_folders"),
    C("folder_without_metadata", "eval_geneval", "image_dir={tmp}/no_metadata", FileNotFoundError,
      "no_metadata/00002/metadata.jsonl", "image_folders"),
    C("judge_option_unknown", "eval_geneval", "+eval.options.tresh=0.5", ValueError, ["'tresh'", "threshold"]),
    C("judge_option_value", "eval_geneval", "+eval.options.threshold=high", ValueError, ["'threshold'", "'high'"]),
    C("eval_metadata_malformed", "eval_geneval", "eval.metadata={tmp}/malformed.jsonl", MetadataError,
      "malformed.jsonl:2", "metadata_files"),
    C("eval_images_per_prompt_0", "eval_geneval", "eval.images_per_prompt=0", ConfigError,
      "eval.images_per_prompt = 0"),
    # ---- T2I-CompBench, WISE, MAGVIT, judges, quickstart
    C("compbench_no_category", "eval_compbench", "categories=[]", ConfigError, "categories = []"),
    C("compbench_unknown_category", "eval_compbench", "categories=[colour]", ConfigError, "['colour'] not among"),
    C("wise_no_prompt", "eval_wise", "prompt_ids=[]", ConfigError, "prompt_ids = []"),
    C("wise_prompt_dir", "eval_wise", "prompt_dir={tmp}/nowise", FileNotFoundError, "nowise"),
    C("magvit_batch_size_0", "train_magvit", "batch_size=0", ConfigError, "batch_size = 0"),
    C("magvit_resolution", "train_magvit", "magvit.resolution=16", ValueError,
      ["magvit.resolution=16", "canvas_size=32"]),
    C("judge_model_missing", "train_judge", "model_dir={tmp}/nollava", FileNotFoundError, "nollava"),
    C("quickstart_images_0", "quickstart", "images_per_prompt=0", ConfigError, "images_per_prompt = 0"),
    C("judge_data_showo_missing", "build_judge_data", "showo={tmp}/noshowo", ConfigError, "noshowo"),
    C("judge_data_source", "build_judge_data", "source=eval", ConfigError, ["source", "'eval'"]),
    C("parm_data_showo_missing", "build_parm_data", "showo={tmp}/noshowo", ConfigError, "noshowo"),
    C("parm_data_clear_from", "build_parm_data", "clear_from=3", ConfigError, ["clear_from = 3", "[7, 12]"]),
    C("parm_data_steps_per_path", "build_parm_data", "steps_per_path=3", ConfigError, ["steps_per_path = 3", "[10]"]),
    C("judge_quality_not_a_run", "judge_quality", "run={tmp}", ConfigError, "evaluation_metadata.jsonl"),
    C("judge_quality_batch_0", "judge_quality", "judge_batch_size=0", ConfigError, "judge_batch_size = 0"),
    C("parm_pruning_not_a_run", "parm_pruning", "run={tmp}", ConfigError, ["not a shapes quickstart run", "train/pool"]),
    C("parm_pruning_batch_0", "parm_pruning", "batch_size=0", ConfigError, "batch_size = 0"),
    C("parm_pruning_candidates_0", "parm_pruning", "candidates=0", ConfigError, "candidates = 0"),
    C("judge_vision_images_missing", "pretrain_judge_vision", "judge_data_dir={tmp}/nodata", ConfigError,
      ["nodata/orm.jsonl", "build_judge_data"]),
    C("judge_vision_steps_0", "pretrain_judge_vision", "pretrain.steps=0", ConfigError, "pretrain.steps = 0"),
]


def _case(param) -> Case:
    return param.values[0] if hasattr(param, "values") else param


def user_error(err: BaseException) -> BaseException:
    """The error a user reads: Hydra's InstantiationException wraps the loader's own."""
    while type(err).__name__ == "InstantiationException" and err.__cause__ is not None:
        err = err.__cause__
    return err


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.recipe}:{c.id}")
def test_bad_input_is_refused_naming_it_before_any_output(case, world, tmp_path):
    if case.make:
        MAKERS[case.make](world, tmp_path)
    fill = {"w": world, "tmp": tmp_path}
    for name in ("nan_name", "inf_name"):  # the tensor a damaged bundle holds (bad_files.bundles)
        fill[name] = (tmp_path / f"{name}.txt").read_text() if (tmp_path / f"{name}.txt").is_file() else ""
    run_dir = tmp_path / "run"
    overrides = [o.format(**fill) for o in case.overrides]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "prompt has words the tokenizer cannot represent": not the point here
        with pytest.raises(Exception) as info:
            cfg = config(case.recipe, world, run_dir, overrides)
            recipe(case.recipe).run(cfg)
    err = user_error(info.value)
    message = str(err)
    if case.error == COMPOSE:
        assert type(err).__module__.startswith("hydra"), f"{type(err).__name__}: {message}"
    else:
        assert isinstance(err, case.error), f"{type(err).__name__}: {message}"
    for name in case.names:
        assert name.format(**fill) in message, message
    for name in case.never:
        assert name not in message, message
    assert not run_dir.exists(), sorted(p.name for p in run_dir.iterdir())


def test_the_catalogue_has_at_least_40_kinds_over_every_recipe():
    cases = [_case(p) for p in CASES]
    assert len({c.id for c in cases}) == len(cases) >= 40
    assert {c.recipe for c in cases} >= {"generate", "run_search", "train_showo", "train_dpo", "iterative_dpo",
                                         "eval_geneval", "eval_compbench", "eval_wise", "train_magvit", "train_judge",
                                         "quickstart"}
