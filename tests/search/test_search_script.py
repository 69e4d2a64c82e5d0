"""scripts/run_search.py and scripts/pool_report.py end to end on the tiny Show-o (CPU), plus config composition."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from PIL import Image

from common.seeding import image_seed
from search.base import Slot
from search.pool import ParmRecord, PoolEntry, save_entry
from search.seeds import candidate_generators

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _run(*args):
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_every_table_script_composes():
    scripts = sorted((ROOT / "scripts" / "geneval").glob("*.sh"))
    pairs = []
    for script in scripts:
        m = re.search(r"\b(search=\w+ reward=\w+)", script.read_text())  # search_row NAME RUN search=X reward=Y
        if m:
            pairs.append((script.name, m.group(1).split()))
    assert {name for name, _ in pairs} >= {f"{n}.sh" for n in ("baseline", "orm_zeroshot", "orm_finetuned",
                                                                 "prm_zeroshot", "prm_finetuned", "parm", "parmpp")}
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        for name, overrides in pairs:
            cfg = compose("run_search", overrides=[*overrides, "prompts=p.txt"])
            assert cfg.search.strategy._target_.startswith("search."), name
        pool = compose("run_search", overrides=["search=pool", "prompts=p.txt"])
        assert pool.search.strategy.parm._target_ == "reward_models.parm.Parm"


def test_a_strategy_with_the_wrong_kind_of_judge_fails_at_composition():
    from hydra.errors import MissingConfigException

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        with pytest.raises(MissingConfigException, match="search_judge/parm/orm_zeroshot"):
            compose("run_search", overrides=["search=parm", "reward=orm_zeroshot", "prompts=p.txt"])
        cfg = compose("run_search", overrides=["search=parm", "reward=parm", "prompts=p.txt"])
        assert cfg.search.strategy.parm._target_ == "reward_models.parm.Parm"  # the judge is bound into the strategy


def test_search_recipe_writes_geneval_layout_and_resumes(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\na blue square\n")
    out = tmp_path / "run"
    args = ["scripts/run_search.py", "model=showo_tiny", "search=baseline", f"prompts={prompts}", "images_per_prompt=2",
            "device=cpu", "seed=3", f"run_dir={out}"]
    _run(*args)
    first = {p: p.read_bytes() for p in sorted((out / "images").rglob("*.png"))}
    assert len(first) == 4
    # the baseline is plain generation with the generate.py seeds
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        model_cfg = compose("generate", overrides=["model=showo_tiny", "prompts=x"]).model
    pipe = instantiate(model_cfg.bundle).pipeline()
    steps = model_cfg.sampling.num_inference_steps
    ref = pipe(["a blue square"] * 2, num_inference_steps=steps,
               generator=candidate_generators([image_seed(3, 1, k) for k in range(2)]), output_type="tokens").tokens
    record = json.loads((out / "slots" / "00001_01.json").read_text())
    assert record["candidates"][0]["tokens"] == ref[1].tolist()
    assert record["cost"]["generator_forward_passes"] == steps
    assert json.loads((out / "cost.json").read_text())["generator_forward_passes"] == 4 * steps
    # kill-like damage: one slot result and one prompt folder gone; the rerun recomputes only those
    (out / "slots" / "00001_01.json").unlink()
    kept = (out / "slots" / "00000_00.json").stat().st_mtime_ns
    for p in (out / "images" / "00001").rglob("*"):
        if p.is_file():
            p.unlink()
    _run(*args)
    assert {p: p.read_bytes() for p in sorted((out / "images").rglob("*.png"))} == first
    assert (out / "slots" / "00000_00.json").stat().st_mtime_ns == kept


def test_slots_searched_together_write_what_slot_by_slot_writes(tmp_path):
    # the baseline takes batch_size (16) slots per call; one at a time gives the same slot records and PNG bytes
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\na blue square\nthree green triangles\n")
    runs = {}
    for batch in (1, 16):
        out = tmp_path / f"b{batch}"
        _run("scripts/run_search.py", "model=showo_tiny", "search=baseline", f"prompts={prompts}",
             "images_per_prompt=3", "device=cpu", "seed=5", f"search.strategy.batch_size={batch}", f"run_dir={out}")
        runs[batch] = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*"))
                       if p.is_file() and (p.suffix == ".png" or p.parent.name == "slots")}
    assert len([p for p in runs[1] if p.suffix == ".png"]) == 9
    assert runs[1] == runs[16]


def test_pool_report_policies_and_plot(tmp_path):
    n, steps = 3, 4
    tokens = torch.arange(n * 16).view(n, 16) % 64
    pool = tmp_path / "pool"
    records = []
    for p in range(2):
        entry = PoolEntry(slot=Slot(f"prompt {p}", p, 0, 0), num_steps=steps, seeds=[1, 2, 3], tokens=tokens,
                          outcome_scores=[0.1, 0.9, 0.5] if p == 0 else [0.7, 0.2, 0.3],
                          parm=[ParmRecord(1, False, 0.4, 1, None), ParmRecord(2, True, 0.2, None, 0.3),
                                ParmRecord(1, True, 0.1, None, 0.6)])
        save_entry(pool, entry)
        for c in range(n):
            correct = (p, c) in {(0, 1), (1, 2)}
            records.append({"filename": f"/x/{p:05d}/samples/{c:04d}.png", "tag": "single_object", "correct": correct,
                            "metadata": json.dumps({"prompt": f"prompt {p}"})})
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in records))
    _run("scripts/pool_report.py", "report", str(pool), str(tmp_path / "rep"), "--results", str(results))
    rows = {r["policy"]: r for r in json.loads((tmp_path / "rep" / "policies.json").read_text())}
    assert rows["orm@3"]["picks"] == [1, 0] and rows["orm@3"]["geneval"] == pytest.approx(0.5)
    assert rows["parm@3"]["picks"] == [2, 2] and rows["parm@3"]["geneval"] == pytest.approx(0.5)
    # parm@3: candidate 0 pruned after step 1 (2 passes), the others run all 4 steps
    assert rows["parm@3"]["forward_passes"] == 2 + 4 + 4
    assert rows["first"]["geneval"] == 0.0 and rows["orm@1"]["forward_passes"] == steps
    assert Image.open(tmp_path / "rep" / "scaling.png").size[0] > 100


def test_parmpp_recipe_with_a_tiny_llava_judge(tmp_path):
    """search=parmpp reward=parmpp through Hydra with a real (tiny, random) LLaVA-OneVision judge on CPU."""
    from reward_models.tiny import build_tiny_llava_onevision

    judge = build_tiny_llava_onevision(tmp_path / "judge")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n")
    out = tmp_path / "run"
    j = "reward.parm.judge"
    _run("scripts/run_search.py", "model=showo_tiny", "search=parmpp", "reward=parmpp", f"{j}.model_dir={judge}",
         f"{j}.device=cpu", f"{j}.dtype=float32", "reward.max_new_tokens=8", "search.strategy.num_candidates=3",
         "search.strategy.max_feedback_length=4", f"prompts={prompts}", "images_per_prompt=1", "device=cpu",
         "search.corrector=searched", f"run_dir={out}")
    record = json.loads((out / "slots" / "00000_00.json").read_text())
    actions = [e["action"] for e in record["trace"]]
    reflections = actions.count("reflect")
    assert 1 <= reflections <= 3 and actions.count("correct") in (reflections - 1, reflections)
    assert record["cost"]["judge_calls"] > 0 and record["cost"]["generator_forward_passes"] > 0
    chosen = record["candidates"][record["chosen"]]
    assert chosen["tokens"] is not None and (chosen["round"] > 0) == (actions.count("correct") > 0)
    assert len(list((out / "images" / "00000" / "samples").glob("*.png"))) == 1


def test_parmpp_corrector_from_its_own_bundle_directory(tmp_path):
    """search.corrector: a separately saved Show-o regenerates; a copy of the searched model changes nothing."""
    from reward_models.tiny import build_tiny_llava_onevision

    judge = build_tiny_llava_onevision(tmp_path / "judge")
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        bundle = instantiate(compose("generate", overrides=["model=showo_tiny", "prompts=x"]).model.bundle)
    bundle.save_pretrained(tmp_path / "same")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in bundle.model.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=gen))
    bundle.save_pretrained(tmp_path / "other")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\na blue square\na green triangle\n")
    j = "reward.parm.judge"
    runs = {}
    for name in ("none", "same", "other"):
        extra = [f"search.corrector={'searched' if name == 'none' else tmp_path / name}"]
        _run("scripts/run_search.py", "model=showo_tiny", "search=parmpp", "reward=parmpp", f"{j}.model_dir={judge}",
             f"{j}.device=cpu", f"{j}.dtype=float32", "reward.max_new_tokens=8", "search.strategy.num_candidates=2",
             "search.strategy.max_feedback_length=4", f"prompts={prompts}", "images_per_prompt=1", "device=cpu",
             f"run_dir={tmp_path / name / 'run'}", *extra)
        runs[name] = [json.loads(p.read_text()) for p in sorted((tmp_path / name / "run" / "slots").glob("*.json"))]
    assert len(runs["none"]) == 3
    keys = ("candidates", "chosen", "trace")
    assert [[r[k] for k in keys] for r in runs["same"]] == [[r[k] for k in keys] for r in runs["none"]]
    corrected = 0
    for a, b in zip(runs["none"], runs["other"]):
        assert a["candidates"][:2] == b["candidates"][:2]  # the PARM stage is the searched model's
        first_a = next((c for c in a["candidates"] if c["round"] == 1), None)
        first_b = next((c for c in b["candidates"] if c["round"] == 1), None)
        assert (first_a is None) == (first_b is None)  # the same first reflection verdict
        if first_a is not None:
            corrected += 1
            assert first_a["seed"] == first_b["seed"] and first_a["tokens"] != first_b["tokens"]
    assert corrected > 0


def test_pool_export_writes_every_candidate_in_geneval_layout(tmp_path):
    from tests.helpers import assert_same_image, require_shared
    from tests.search.search_doubles import tiny_bundle

    meta = require_shared("geneval", "evaluation_metadata.jsonl")
    bundle = tiny_bundle()
    bundle.vq_model.save_pretrained(tmp_path / "vq")
    pool = tmp_path / "pool"
    tokens = torch.randint(0, 64, (3, 16), generator=torch.Generator().manual_seed(0))
    for k in range(2):
        save_entry(pool, PoolEntry(slot=Slot("x", 1, k, 0), num_steps=4, seeds=[1, 2, 3], tokens=tokens.roll(k, 0)))
    _run("scripts/pool_report.py", "export", str(pool), str(tmp_path / "images"), "--prompts", str(meta),
         "--vq", str(tmp_path / "vq"))
    folder = tmp_path / "images" / "00001"
    samples = sorted((folder / "samples").glob("*.png"))
    assert [p.name for p in samples] == [f"{k:04d}.png" for k in range(6)]  # sample k*3 + candidate c
    expected = bundle.pipeline().decode(tokens.roll(1, 0)[2:3], "pil")[0]
    assert_same_image(Image.open(samples[5]).convert("RGB"), expected, "exported sample")  # decoded in a batch of 3
    assert json.loads((folder / "metadata.jsonl").read_text()) == json.loads(meta.read_text().splitlines()[1])


@pytest.mark.parametrize("search,reward,judge_key,judge", [
    ("best_of_n", "orm_zeroshot", "search.strategy.judge", "{_target_: tests.search.search_doubles.RecordingOutcomeJudge}"),
    ("parm", "parm", "search.strategy.parm", "{_target_: tests.search.search_doubles.recording_parm}"),
])
def test_the_png_written_is_the_image_the_judge_scored(tmp_path, search, reward, judge_key, judge):
    """One decode path: every sample PNG is byte-for-byte (in pixels) an image the judge was shown for that slot."""
    import importlib.util

    from eval.geneval.layout import load_image
    from tests.search import search_doubles

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\na blue square\n")
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("run_search", overrides=[
            "model=showo_tiny", f"search={search}", f"reward={reward}", f"~{judge_key}", f"+{judge_key}={judge}",
            "search.strategy.num_candidates=3", "search.strategy.batch_size=2", f"prompts={prompts}",
            "images_per_prompt=2", "device=cpu", f"run_dir={tmp_path / 'run'}", "threads=1"])
    spec = importlib.util.spec_from_file_location("run_search_recipe", ROOT / "scripts" / "run_search.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    search_doubles.RECORDED.clear()
    run_dir = recipe.run(cfg)
    seen = {im.tobytes() for im in search_doubles.RECORDED}
    written = sorted((run_dir / "images").rglob("samples/*.png"))
    assert len(written) == 4 and len(seen) >= 4
    for png in written:
        assert load_image(png).tobytes() in seen, png


def test_parmpp_recipe_replays_its_parm_stage_from_a_pool(tmp_path):
    """search.strategy.pool: a pool built with this PARM++'s PARM as a named PARM (search.strategy.parms.pp) gives
    the PARM++ recipe the slot records and images of the live run; the pool is an input of the run (changed, the run
    no longer resumes), and a pool without those records is refused by name."""
    from reward_models.tiny import build_tiny_llava_onevision

    judge = build_tiny_llava_onevision(tmp_path / "judge")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\na blue square\n")
    common = ["model=showo_tiny", f"prompts={prompts}", "images_per_prompt=2", "device=cpu"]
    pp = "search.strategy.parms.pp.judge"
    _run("scripts/run_search.py", *common, "search=pool", "reward=none", "search.strategy.num_candidates=3",
         "search.strategy.outcome_judge=null", "search.strategy.process_judge=null", "search.strategy.parm=null",
         "+reward@search.strategy.parms.pp=parm", f"{pp}.model_dir={judge}", f"{pp}.device=cpu", f"{pp}.dtype=float32",
         f"run_dir={tmp_path / 'pool'}")
    j = "reward.parm.judge"
    parmpp = [*common, "search=parmpp", "reward=parmpp", f"{j}.model_dir={judge}", f"{j}.device=cpu",
              f"{j}.dtype=float32", "reward.max_new_tokens=8", "search.strategy.num_candidates=3",
              "search.strategy.max_feedback_length=4", "search.corrector=searched"]
    replay = [f"search.strategy.pool={tmp_path / 'pool' / 'pool'}", "search.strategy.pool_parm=pp"]
    _run("scripts/run_search.py", *parmpp, f"run_dir={tmp_path / 'live'}")
    _run("scripts/run_search.py", *parmpp, *replay, f"run_dir={tmp_path / 'replay'}")
    for slot in sorted((tmp_path / "live" / "slots").glob("*.json")):
        live, again = (json.loads((tmp_path / run / "slots" / slot.name).read_text()) for run in ("live", "replay"))
        assert again["chosen"] == live["chosen"]
        assert [(c["index"], c["tokens"], c["stopped_step"], c["round"]) for c in again["candidates"]] == \
            [(c["index"], c["tokens"], c["stopped_step"], c["round"]) for c in live["candidates"]]
        loop = [e for e in live["trace"] if e["action"] in ("reflect", "correct", "score")]
        assert loop and loop == [e for e in again["trace"] if e["action"] in ("reflect", "correct", "score")]
        assert [again["cost"][k] for k in ("generator_forward_passes", "judge_forward_passes")] == \
            [live["cost"][k] for k in ("generator_forward_passes", "judge_forward_passes")]
    images = [sorted((tmp_path / run / "images").rglob("*.png")) for run in ("live", "replay")]
    assert images[0] and [p.read_bytes() for p in images[0]] == [p.read_bytes() for p in images[1]]
    entry = next((tmp_path / "pool" / "pool").glob("*.json"))
    entry.write_text(entry.read_text().replace('"seeds"', '"seeds" ', 1))  # the same pool in other bytes
    proc = subprocess.run([sys.executable, "scripts/run_search.py", *parmpp, *replay, f"run_dir={tmp_path / 'replay'}"],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "search.strategy.pool" in proc.stderr
    proc = subprocess.run([sys.executable, "scripts/run_search.py", *parmpp, replay[0], f"run_dir={tmp_path / 'own'}"],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "has no PARM records" in proc.stderr
    assert not (tmp_path / "own").exists()  # refused before the run directory was written
