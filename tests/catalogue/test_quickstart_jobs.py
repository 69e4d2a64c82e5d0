"""``jobs=N`` of the shapes quickstart (scripts/shapes/quickstart.py, ``Quickstart.run_parallel``): recipe rows run as
child processes, a row only once the rows it reads have finished, never more than ``jobs`` at once; a child's row is
the row the in-process pass would have made (same fingerprint, same images), and a failed child names its stage and
log before anything else starts."""
from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager

import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

from tests.catalogue.world import REPO, base_overrides, config, recipe, tree


@contextmanager
def composing():
    """The quickstart composes its rows' configs inside ``hydra.main``; here, inside this."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        yield


def quickstart(world, run_dir, rows: dict, jobs: int):
    cfg = config("quickstart", world, run_dir, [f"jobs={jobs}"])
    with open_dict(cfg):
        cfg.rows = rows
        cfg.eval_set = {}
    q = recipe("quickstart").Quickstart(cfg)
    q.paths = {"metadata": world.metadata, "class_names": world.class_names, "train_prompts": world.prompts}
    return q


def test_rows_wait_for_the_rows_they_read_and_never_exceed_jobs(world, tmp_path, monkeypatch):
    rows = {"a": {"name": "A", "recipe": "generate", "images": False, "overrides": []},
            "b": {"name": "B", "recipe": "generate", "images": True, "overrides": ["x={row_a}/final"]},
            "c": {"name": "C", "recipe": "generate", "images": True, "overrides": []},
            "d": {"name": "D", "recipe": "generate", "images": True, "overrides": ["x={row_c}", "y={row_a}"]}}
    q = quickstart(world, tmp_path / "run", rows, jobs=2)
    events, lock, running = [], threading.Lock(), set()
    most = []

    def fake_launch(key, recipe_name, overrides):
        def job():
            with lock:
                running.add(key)
                most.append(len(running))
                events.append(("start", key, overrides))
            time.sleep({"train/a": 0.3, "rows/c": 0.05}.get(key, 0.01))
            with lock:
                running.discard(key)
                events.append(("end", key, None))
        return job

    monkeypatch.setattr(q, "launch", fake_launch)
    q.run_parallel(2)
    order = [(what, key) for what, key, _ in events]
    assert max(most) == 2  # two at once, never three
    assert order.index(("start", "rows/b")) > order.index(("end", "train/a"))
    assert order.index(("start", "rows/d")) > max(order.index(("end", "train/a")), order.index(("end", "rows/c")))
    assert order[:2] == [("start", "train/a"), ("start", "rows/c")]  # b waits; c, the next ready row, does not
    started = {key: overrides for what, key, overrides in events if what == "start"}
    assert started["rows/b"] == [f"x={tmp_path / 'run' / 'train' / 'a'}/final"]  # {row_a}: a's run directory


def test_a_failed_row_stops_new_starts_and_names_itself(world, tmp_path, monkeypatch):
    rows = {"a": {"name": "A", "recipe": "generate", "images": True, "overrides": []},
            "slow": {"name": "S", "recipe": "generate", "images": True, "overrides": []},
            "after": {"name": "B", "recipe": "generate", "images": True, "overrides": ["x={row_a}"]},
            "free": {"name": "F", "recipe": "generate", "images": True, "overrides": []}}
    q = quickstart(world, tmp_path / "run", rows, jobs=2)
    started, ended = [], []

    def fake_launch(key, recipe_name, overrides):
        def job():
            started.append(key)
            if key == "rows/a":
                raise RuntimeError("stage 'rows/a' failed")
            time.sleep(0.2)
            ended.append(key)
        return job

    monkeypatch.setattr(q, "launch", fake_launch)
    with pytest.raises(RuntimeError, match="stage 'rows/a' failed"):
        q.run_parallel(2)
    assert started == ["rows/a", "rows/slow"] and ended == ["rows/slow"]  # the running row finished, none started


def test_a_child_row_is_the_in_process_row_and_resumes_in_process(world, tmp_path):
    gen = [o for o in base_overrides("generate", world) if not o.startswith("threads=")]
    rows = {"gen": {"name": "tiny", "recipe": "generate", "images": True, "overrides": gen}}
    child = quickstart(world, tmp_path / "child", rows, jobs=2)
    alone = quickstart(world, tmp_path / "alone", rows, jobs=1)
    with composing():
        child.run_parallel(2)
        log = tmp_path / "child" / "logs" / "rows_gen.log"
        assert log.is_file() and (tmp_path / "child" / "stages" / "rows" / "gen.json").is_file()
        for q in (child, alone):  # the serial pass: child's stage is found done (the same fingerprint) or it raises
            row = q.recipe_rows()["gen"]
            q.call("rows/gen", "generate", q.row_overrides(row))
    images = [tree(root / "rows" / "gen" / "images") for root in (tmp_path / "child", tmp_path / "alone")]
    assert images[0] and images[0] == images[1]  # byte for byte


def test_a_failing_child_names_its_stage_and_log_and_marks_nothing_done(world, tmp_path):
    gen = [o for o in base_overrides("generate", world) if not o.startswith("threads=")]
    rows = {"bad": {"name": "bad", "recipe": "generate", "images": True, "overrides": [*gen, "images_per_prompt=0"]}}
    q = quickstart(world, tmp_path / "run", rows, jobs=2)
    failed = r"stage 'rows/bad' \(generate\) failed with exit code [1-9].*rows_bad.log(.|\n)*images_per_prompt"
    with composing(), pytest.raises(RuntimeError, match=failed):
        q.run_parallel(2)
    assert "images_per_prompt" in (tmp_path / "run" / "logs" / "rows_bad.log").read_text()
    assert not (tmp_path / "run" / "stages" / "rows" / "bad.json").exists()


def test_an_interrupted_run_terminates_its_children(world, tmp_path, monkeypatch):
    """Ctrl-C (or SIGTERM, turned into SystemExit) while rows run as child processes: the children are terminated
    before the quickstart stops, none is left writing into the run, no stage is marked done."""
    import _thread
    import sys

    gen = [o for o in base_overrides("generate", world) if not o.startswith("threads=")]
    rows = {key: {"name": key, "recipe": "generate", "images": True, "overrides": gen} for key in ("one", "two")}
    q = quickstart(world, tmp_path / "run", rows, jobs=2)
    sleeper = [sys.executable, "-c", "import time; time.sleep(300)"]
    monkeypatch.setattr(q, "child_command", lambda recipe_name, args: sleeper)
    seen, handlers, before = [], [], signal.getsignal(signal.SIGTERM)

    def interrupt_when_both_run():
        deadline = time.monotonic() + 60
        while len(q.children) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        seen.extend(q.children)
        handlers.append(signal.getsignal(signal.SIGTERM))
        _thread.interrupt_main()

    # Ctrl-C as Python handles it: a process started in the background by a non-interactive shell (`pytest &`)
    # inherits SIGINT ignored, and then interrupt_main does nothing
    sigint = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Thread(target=interrupt_when_both_run, daemon=True).start()
        start = time.monotonic()
        with composing(), pytest.raises(KeyboardInterrupt):
            q.run_parallel(2)
    finally:
        signal.signal(signal.SIGINT, sigint)
    assert len(seen) == 2 and all(proc.poll() is not None for proc in seen)  # both terminated, not left running
    assert time.monotonic() - start < 60 and not q.children
    assert not (tmp_path / "run" / "stages" / "rows").exists()
    # SIGTERM takes the same way out while rows run (SystemExit), and the previous handler is back afterwards
    assert handlers == [recipe("quickstart").terminated] and signal.getsignal(signal.SIGTERM) is before
    with pytest.raises(SystemExit, match="terminated"):
        recipe("quickstart").terminated(signal.SIGTERM, None)


def trains_quickstart(world, run_dir, model_dir, train: bool = False):
    """A training row ``t`` that makes model ``m`` (``models.m`` = ``model_dir``) and a row that reads ``{m}``."""
    rows = {"t": {"name": "T", "recipe": "generate", "images": False, "trains": {"m": "final"}, "overrides": []},
            "free": {"name": "F", "recipe": "generate", "images": True, "overrides": []},
            "reader": {"name": "R", "recipe": "generate", "images": True, "overrides": ["x={m}"]}}
    cfg = config("quickstart", world, run_dir, [f"train={str(train).lower()}"])
    with open_dict(cfg):
        cfg.rows = rows
        cfg.eval_set = {}
        cfg.models.m = str(model_dir)
    q = recipe("quickstart").Quickstart(cfg)
    q.paths = {"metadata": world.metadata, "class_names": world.class_names, "train_prompts": world.prompts}
    return q


def fake_jobs(q, monkeypatch, seconds: dict) -> list:
    events = []

    def fake_launch(key, recipe_name, overrides):
        def job():
            events.append(("start", key, overrides))
            time.sleep(seconds.get(key, 0.01))
            events.append(("end", key, None))
        return job

    monkeypatch.setattr(q, "launch", fake_launch)
    return events


def test_a_training_row_whose_models_are_committed_is_not_run(world, tmp_path, monkeypatch):
    committed = tmp_path / "committed"
    (committed / "showo").mkdir(parents=True)
    (committed / "showo" / "config.json").write_text("{}")  # a Show-o bundle
    q = trains_quickstart(world, tmp_path / "run", committed)
    assert q.committed_rows == {"t"} and "t" not in q.recipe_rows() and q.models["m"] == str(committed)
    events = fake_jobs(q, monkeypatch, {})
    q.run_parallel(2)
    started = {key: overrides for what, key, overrides in events if what == "start"}
    assert sorted(started) == ["rows/free", "rows/reader"] and started["rows/reader"] == [f"x={committed}"]


@pytest.mark.parametrize("case", ["missing", "train=true"])
def test_a_training_row_runs_when_a_model_is_missing_or_train_is_asked(world, tmp_path, monkeypatch, case):
    committed = tmp_path / "committed"
    if case != "missing":
        committed.mkdir()
        (committed / "config.json").write_text("{}")  # a single model
    q = trains_quickstart(world, tmp_path / "run", committed, train=case == "train=true")
    made = tmp_path / "run" / "train" / "t" / "final"
    assert not q.committed_rows and "t" in q.recipe_rows() and q.models["m"] == str(made)
    events = fake_jobs(q, monkeypatch, {"train/t": 0.3})
    q.run_parallel(2)
    order = [(what, key) for what, key, _ in events]
    assert order[:2] == [("start", "train/t"), ("start", "rows/free")]  # the reader waits for the model it reads
    assert order.index(("start", "rows/reader")) > order.index(("end", "train/t"))
    assert [o for what, key, o in events if key == "rows/reader" and what == "start"] == [[f"x={made}"]]


def test_trains_must_name_models_entries():
    from omegaconf import OmegaConf

    from common.validate import ConfigError

    check_trains = recipe("quickstart").check_trains
    cfg = OmegaConf.create({"models": {"dpo": "a"}, "rows": {"t": {"trains": {"dpo": "x"}}, "r": {"images": True}}})
    check_trains(cfg)
    cfg.rows.t.trains = {"dpo": "x", "nope": "y"}
    with pytest.raises(ConfigError, match=r"rows.t.trains names \['nope'\]"):
        check_trains(cfg)
