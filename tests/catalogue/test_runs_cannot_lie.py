"""The silent failures of issue 18's "Why", each run on the real recipe: resuming into another config's directory,
divergence, prompts the tokenizer cannot represent, and the environment a number came from.

A refused resume must name every differing key (and input) and leave the old run byte for byte as it was; a diverged
training run must stop naming the step, keep the last good checkpoint and write no ``final/``.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from common.rundir import RunMismatch
from common.training import Divergence
from tests.catalogue.world import config, recipe, tree


def run(name, world, run_dir, *overrides):
    return recipe(name).run(config(name, world, run_dir, overrides))


def refused(name, world, run_dir, *overrides) -> str:
    """Run ``name`` into an existing ``run_dir`` with other settings: RunMismatch, and nothing on disk changed."""
    before = tree(run_dir, skip=())
    with pytest.raises(RunMismatch) as err:
        run(name, world, run_dir, *overrides)
    assert tree(run_dir, skip=()) == before  # config.yaml and run.json included: the old run is untouched
    return str(err.value)


# ------------------------------------------------------------------------------------------------ resume
def test_generate_refuses_another_seed_guidance_or_prompt_file(world, tmp_path):
    prompts = tmp_path / "prompts.txt"
    shutil.copy(world.prompts, prompts)
    out = tmp_path / "run"
    run("generate", world, out, f"prompts={prompts}")
    message = refused("generate", world, out, f"prompts={prompts}", "seed=1", "model.sampling.guidance_scale=5")
    assert "config 'seed': on disk 0, now 1" in message
    assert "config 'model.sampling.guidance_scale': on disk 1.75, now 5" in message
    prompts.write_text("a blue circle\n")  # same path, other content
    assert "input 'prompts': content differs" in refused("generate", world, out, f"prompts={prompts}")
    # the same settings resume (batch size never changes an image), if_exists=new starts beside the old run
    run("generate", world, out, f"prompts={world.prompts}", "batch_size=3")
    assert run("generate", world, out, f"prompts={prompts}", "if_exists=new") == tmp_path / "run_1"


def test_run_search_refuses_another_strategy_setting(world, tmp_path):
    out = tmp_path / "run"
    run("run_search", world, out)
    message = refused("run_search", world, out, "images_per_prompt=2", "seed=4")
    assert "config 'images_per_prompt': on disk 1, now 2" in message and "config 'seed': on disk 0, now 4" in message


def test_train_dpo_refuses_other_pairs_and_learning_rate_on_a_finished_run(world, tmp_path):
    out = tmp_path / "run"
    final = run("train_dpo", world, out)
    assert final == out / "final"
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(reversed(world.pairs.read_text().splitlines(keepends=True))))
    message = refused("train_dpo", world, out, f"data.pairs={pairs}", "train.optimizer.lr=1e-3")
    assert "config 'train.optimizer.lr': on disk 1e-05, now 0.001" in message
    assert "input 'data.pairs': content differs" in message


def test_train_showo_refuses_another_step_count(world, tmp_path):
    out = tmp_path / "run"
    run("train_showo", world, out)
    assert "config 'max_steps': on disk 4, now 6" in refused("train_showo", world, out, "max_steps=6")


def test_eval_geneval_refuses_other_images_under_the_same_path(world, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(world.images, images)
    out = tmp_path / "run"
    record = run("eval_geneval", world, out, f"image_dir={images}")
    assert record["scores"]["overall"] == 1.0  # rendered ground truth
    # another image under the same file name: old verdicts must not be reused for it
    shutil.copy(images / "00000" / "samples" / "0000.png", images / "00001" / "samples" / "0000.png")
    assert "input 'image_dir': content differs" in refused("eval_geneval", world, out, f"image_dir={images}")


def test_quickstart_refuses_another_setting_and_a_row_with_other_images(world, tmp_path):
    quickstart = recipe("quickstart")
    out = tmp_path / "run"
    q = quickstart.Quickstart(config("quickstart", world, out, ["candidates=2", "images_per_prompt=2"]))
    q.paths = {"metadata": world.metadata, "class_names": world.class_names}
    from eval.shapes.render import ShapesWorld

    q.world = ShapesWorld()
    images = out / "rows" / "baseline" / "images"
    shutil.copytree(world.images, images)
    summary = json.loads(q.evaluate("baseline", "Show-o (baseline)").read_text())
    assert summary["scores"]["overall"] == 1.0 and summary["environment"]["torch_threads"] == 1
    message = refused("quickstart", world, out, "candidates=3", "images_per_prompt=2")
    assert "config 'candidates': on disk 2, now 3" in message
    # a row whose images changed since it was judged is not skipped on the strength of its summary.json
    shutil.copy(images / "00000" / "samples" / "0000.png", images / "00001" / "samples" / "0000.png")
    with pytest.raises(RunMismatch, match="stage 'rows/baseline/eval'.*\n.*input 'images': content differs"):
        q.evaluate("baseline", "Show-o (baseline)")


def test_quickstart_refuses_a_palette_listed_in_another_order(world, tmp_path):
    """The palette's order decides every drawn prompt: the same colours in another order are another run."""
    from omegaconf import OmegaConf, open_dict

    quickstart = recipe("quickstart")
    out = tmp_path / "run"
    cfg = config("quickstart", world, out, ["prompts_per_task=1"])
    first = quickstart.Quickstart(cfg).prompts()["metadata"].read_text()
    reordered = OmegaConf.create(OmegaConf.to_container(cfg))
    palette = OmegaConf.to_container(cfg.data.world.palette)
    with open_dict(reordered):
        reordered.data.world.palette = dict(reversed(list(palette.items())))
    assert dict(reordered.data.world.palette) == palette and list(reordered.data.world.palette) != list(palette)
    with pytest.raises(RunMismatch, match="config 'data.world.palette\\[order\\]'"):
        quickstart.Quickstart(reordered)
    assert (out / "prompts" / "evaluation_metadata.jsonl").read_text() == first
    assert quickstart.Quickstart(cfg).prompts()["metadata"].read_text() == first  # the same order resumes


@pytest.mark.parametrize("name", ["generate", "train_dpo"])
def test_a_directory_that_is_not_a_run_directory_is_refused(name, world, tmp_path):
    out = tmp_path / "mine"
    (out / "images").mkdir(parents=True)
    (out / "images" / "notes.txt").write_text("my own files")
    with pytest.raises(RunMismatch, match="not empty and holds no run.json: not a run directory"):
        run(name, world, out)
    assert tree(out, skip=()) == {"images/notes.txt": b"my own files"}


# ------------------------------------------------------------------------------------------------ divergence
@pytest.mark.parametrize("name, overrides", [
    ("train_showo", ["optim.lr=1e10", "checkpoint_every=1", "keep_checkpoints=1"]),
    ("train_dpo", ["train.optimizer.lr=1e10", "train.checkpoint_every=1", "train.keep_checkpoints=1", "train.epochs=2",
                   "train.warmup_ratio=0"]),
])
def test_divergence_stops_naming_the_step_and_keeps_the_last_good_checkpoint(name, overrides, world, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(Divergence) as err:
        run(name, world, out, *overrides)
    message = str(err.value)
    step = int(message.split("training diverged at step ")[1].split(":")[0])
    assert step >= 2 and "non-finite" in message and "no final weights written" in message
    last_good = out / "checkpoints" / f"step_{step - 1:06d}"
    assert str(last_good) in message
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [last_good.name]
    weights = load_file(str(last_good / "model.safetensors"))
    assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())
    assert not (out / "final").exists()
    logged = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged == list(range(1, step))  # the diverged step is not logged as if it had happened


# ------------------------------------------------------------------------------------------------ prompts, environment
@pytest.mark.parametrize("name", ["generate", "run_search"])
def test_prompts_the_tokenizer_cannot_represent_are_named(name, world, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\nun cercle rouge ☃\n")
    with pytest.warns(UserWarning, match=r"1 prompt\(s\).*'un cercle rouge ☃': \['un', 'cercle', 'rouge', '☃'\]"):
        run(name, world, tmp_path / "run", f"prompts={prompts}")
    assert len(list((tmp_path / "run" / "images").glob("*/samples/*.png"))) == 2  # a warning, not an error


def test_threads_cpu_and_versions_are_recorded_with_every_run(world, tmp_path):
    out = run("generate", world, tmp_path / "run", "threads=1")
    env = json.loads((Path(out) / "run.json").read_text())["sessions"][-1]["environment"]
    assert env["torch_threads"] == 1 and env["cpu"] and torch.__version__.startswith(env["packages"]["torch"])
    record = run("eval_geneval", world, tmp_path / "eval")
    assert record["environment"]["torch_threads"] == 1 and record["environment"]["cpu"] == env["cpu"]


def test_a_missing_image_is_an_error_or_a_reported_shortfall_never_a_silent_one(world, tmp_path):
    from eval.geneval.score import MissingImagesWarning

    images = tmp_path / "images"
    shutil.copytree(world.images, images)
    (images / "00001" / "samples" / "0001.png").unlink()
    with pytest.raises(ValueError, match="00001/samples: expected 2 images"):
        run("eval_geneval", world, tmp_path / "strict", f"image_dir={images}", "eval.strict_layout=true")
    assert not (tmp_path / "strict").exists()
    with pytest.warns(MissingImagesWarning, match="1 of 12 expected images were not evaluated"):
        record = run("eval_geneval", world, tmp_path / "lax", f"image_dir={images}")
    saved = json.loads((tmp_path / "lax" / "summary.json").read_text())
    assert record["scores"] == saved["scores"]
    assert (saved["scores"]["expected_images"], saved["scores"]["total_images"], saved["scores"]["missing_images"]) \
        == (12, 11, 1)


@pytest.mark.parametrize("damage", ["nan", "truncated"])
def test_janus_and_dataset_readers_name_a_damaged_file(damage, tmp_path):
    """The loaders the recipes above do not reach: Janus checkpoints and tokenized datasets."""
    from safetensors.torch import save_file

    from janus.checkpoint import read_weights
    from showo.data import TokenizedT2IDataset, write_tokenized_dataset

    weights = tmp_path / "model.safetensors"
    save_file({"a.weight": torch.ones(2), "b.weight": torch.tensor([1.0, float("nan")])}, str(weights))
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:20])
    why = "non-finite.*b.weight" if damage == "nan" else "damaged or not a weights file"
    with pytest.raises(ValueError, match=f"{weights}: {why}"):
        read_weights(tmp_path)
    write_tokenized_dataset(tmp_path / "data", ["a red circle"], torch.zeros(1, 4, dtype=torch.long))
    (tmp_path / "data" / "codes.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match="data/codes.safetensors: damaged"):
        TokenizedT2IDataset(tmp_path / "data")


def test_resuming_removes_what_a_killed_write_left(tmp_path):
    from common.rundir import RunDir

    RunDir.open(tmp_path / "run", {"seed": 0})
    left = [tmp_path / "run" / "images" / ".0000.png.k2j4h1.tmp", tmp_path / "run" / "final" / "showo" / ".tmpAb3xYz"]
    for path in left:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    (tmp_path / "run" / ".final.x8d1.tmp").mkdir()  # atomic_write_dir's temporary folder
    (tmp_path / "run" / "images" / ".keep").write_text("not a temporary")
    RunDir.open(tmp_path / "run", {"seed": 0})
    assert sorted(str(p.relative_to(tmp_path / "run")) for p in (tmp_path / "run").rglob(".*")) == ["images/.keep"]
