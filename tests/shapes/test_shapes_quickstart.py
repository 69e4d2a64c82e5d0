"""The shapes world's quickstart end to end (reduced setting) and the pieces it is built from."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from eval.shapes.data import build_suite
from eval.shapes.report import Row, markdown_table, read_table_json
from eval.shapes.suite import shapes_words
from eval.stats import Interval
from showo.magvit import MagvitOutput
from showo.magvit_loss import foreground_mask, magvit_loss
from showo.text_tokenizer import build_word_tokenizer

REPO = Path(__file__).resolve().parents[2]
TASK_COUNT = 6


def test_shapes_words_cover_every_prompt_of_the_suite():
    suite = build_suite("shapes32")
    world = suite.config.world
    tok = build_word_tokenizer(shapes_words(world.shapes, world.colors, suite.config.counts))
    unk = tok.convert_tokens_to_ids("<unk>")
    for line in suite.lines:
        ids = tok(line["prompt"], add_special_tokens=False)["input_ids"]
        assert unk not in ids, line["prompt"]
        assert len(ids) == len(line["prompt"].split())


def test_magvit_loss_by_hand():
    target = torch.zeros(1, 3, 2, 2)
    recon = torch.tensor([0.5, -0.5, 1.0, 0.0] * 3).reshape(1, 3, 2, 2)
    out = MagvitOutput(recon, torch.zeros(1, 1, dtype=torch.long), torch.tensor(0.25), torch.tensor(-0.1))
    losses = magvit_loss(out, target, l1_weight=2.0, l2_weight=1.0)
    # |d| mean = (0.5 + 0.5 + 1 + 0) / 4 = 0.5 ; d^2 mean = (0.25 + 0.25 + 1 + 0) / 4 = 0.375
    assert losses["l1"].item() == pytest.approx(0.5)
    assert losses["l2"].item() == pytest.approx(0.375)
    assert losses["loss"].item() == pytest.approx(2 * 0.5 + 0.375 + 0.25 - 0.1)
    with pytest.raises(ValueError, match="reconstruction"):
        magvit_loss(out, torch.zeros(1, 3, 4, 4))


def test_foreground_weight_multiplies_the_loss_of_object_pixels():
    target = torch.full((1, 3, 4, 4), 0.4)  # flat background ...
    target[0, :, 1, 2] = torch.tensor([1.0, -1.0, -1.0])  # ... one red object pixel
    mask = foreground_mask(target)
    assert mask.shape == (1, 1, 4, 4) and mask.sum() == 1 and mask[0, 0, 1, 2] == 1
    grown = foreground_mask(target, dilation=1)  # the 3 x 3 block around (1, 2), clipped at the right edge
    assert grown[0, 0].tolist() == [[0, 1, 1, 1], [0, 1, 1, 1], [0, 1, 1, 1], [0, 0, 0, 0]]
    recon = target.clone()
    recon[0, :, 1, 2] = 0.4  # the object lost: error 0.6 / 1.4 / 1.4 on its three channels
    recon[0, :, 0, 0] = 0.5  # a background pixel off by 0.1 on every channel
    out = MagvitOutput(recon, torch.zeros(1, 1, dtype=torch.long), torch.tensor(0.0), torch.tensor(0.0))
    n = 3 * 16
    plain = magvit_loss(out, target)
    assert plain["l1"].item() == pytest.approx((0.6 + 1.4 + 1.4 + 0.3) / n)
    weighted = magvit_loss(out, target, foreground_weight=10.0, foreground_dilation=0)
    assert weighted["l1"].item() == pytest.approx((10 * (0.6 + 1.4 + 1.4) + 0.3) / n)
    assert weighted["l2"].item() == pytest.approx((10 * (0.36 + 1.96 + 1.96) + 0.03) / n)
    # with the default dilation (2 px) the off background pixel at (0, 0) lies near the object and weighs 10x too
    dilated = magvit_loss(out, target, foreground_weight=10.0)
    assert dilated["l1"].item() == pytest.approx(10 * (0.6 + 1.4 + 1.4 + 0.3) / n)
    with pytest.raises(ValueError, match="foreground_weight"):
        magvit_loss(out, target, foreground_weight=-1.0)


def test_table_prints_not_run_rows_without_numbers():
    text = markdown_table([Row("+ PARM", reason="no judge")])
    assert "| + PARM | not run (no judge) |" in text
    assert "Images" in text.splitlines()[0]


def test_a_row_compared_to_its_own_baseline_names_it():
    summary = {"scores": {"tasks": {"single_object": {"accuracy": 0.5}}, "overall": 0.5, "total_images": 8}}
    delta = Interval(0.125, -0.25, 0.5, 0.95, 2000)
    text = markdown_table([Row("tiny Janus + CoT", summary, delta=delta, against="tiny Janus (baseline)"),
                           Row("+ ORM", summary, delta=delta)])
    assert "| +12.5 [-25.0, +50.0] vs tiny Janus (baseline) |" in text
    assert "| +12.5 [-25.0, +50.0] |" in text  # the table's own baseline is not repeated on every row


def test_comparisons_must_name_two_rows_of_the_table():
    from omegaconf import OmegaConf

    from common.validate import ConfigError
    from tests.helpers import load_recipe

    check_comparisons = load_recipe("shapes/quickstart").check_comparisons
    cfg = OmegaConf.create({"rows": {"orm": {"images": True}, "parm": {"images": True}, "pool": {"images": False}},
                            "table": {"comparisons": [["parm", "orm"]]}})
    check_comparisons(cfg)
    for bad in (["parm", "pool"], ["parm", "nope"], ["parm"]):  # a training row has no images; an unknown row
        cfg.table.comparisons = [bad]
        with pytest.raises(ConfigError, match=r"table.comparisons\[0\]"):
            check_comparisons(cfg)


def test_the_grid_shows_each_prompt_once():
    from types import SimpleNamespace

    from tests.helpers import load_recipe

    specs = [SimpleNamespace(index=i, prompt=p) for i, p in enumerate(["a", "a", "b", "b", "b", "c"])]
    assert load_recipe("shapes/quickstart").grid_prompts(specs) == {0: "a", 2: "b", 5: "c"}


def test_comparison_table_names_both_rows_and_their_passes():
    from eval.shapes.report import Comparison, markdown_comparisons

    text = markdown_comparisons([Comparison("+ PARM", "+ ORM", Interval(-0.05, -0.1, 0.0, 0.95, 100), 30.0, 48.0),
                                 Comparison("+ DPO", "+ GRPO", Interval(0.0125, -0.02, 0.04, 0.95, 100))])
    assert "| + PARM − + ORM | -5.0 [-10.0, +0.0] | 30 / 48 |" in text
    assert "| + DPO − + GRPO | +1.2 [-2.0, +4.0] | – / – |" in text


def test_quickstart_reduced_end_to_end(tmp_path):
    run = tmp_path / "run"
    # the committed Show-o, PRM, PARM and DPO round 0 are loaded; the ORM, the PARM++ judge, the self-correction
    # Show-o and iterative DPO's round 1 are missing on purpose, so the reduced run also goes through judge data, the
    # vision pre-training, the judge recipe, the PARM data (PARM++ is fine-tuned from the ORM trained here),
    # self-correction tuning and iterative DPO (both rounds: a training row makes all its models)
    env = {**os.environ, "QUICK": "1", "OMP_NUM_THREADS": "2", "SHAPES_PARMPP": str(tmp_path / "no_parmpp"),
           "SHAPES_ORM": str(tmp_path / "no_orm"), "SHAPES_ITERATIVE_DPO": str(tmp_path / "no_iterative_dpo"),
           "SHAPES_CORRECTOR": str(tmp_path / "no_corrector")}
    proc = subprocess.run(["bash", "scripts/shapes/quickstart.sh", str(run)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=2400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = read_table_json(run / "table.json")
    by_name = {row["name"]: row for row in table}
    prompts = [json.loads(line) for line in (run / "prompts" / "evaluation_metadata.jsonl").read_text().splitlines()]
    assert len(prompts) == TASK_COUNT  # QUICK: one eval prompt per task
    expected_images = 4 * len(prompts)
    truth = by_name["rendered ground truth (reference)"]
    assert truth["overall"] == 1.0 and truth["images"] == expected_images
    oracles = ["ORACLE: best-of-2 by the exact verdict", "ORACLE: step-level (2 paths) by the exact verdict"]
    methods = ["+ ORM (best-of-2)", "+ PRM (step-level, 2 paths)", "+ PARM (2 paths)", "+ PARM++ (2 paths)", "+ DPO",
               "+ iterative DPO", "+ iterative DPO + PARM", "+ iterative DPO + ORM (best-of-2)",
               "+ GRPO (ORM reward, 512 samples)"]
    janus = ["tiny Janus + semantic CoT", "tiny Janus + semantic CoT + ORM (best-of-2)",
             "tiny Janus + semantic CoT + PARM (2 paths)", "tiny Janus + BiCoT-GRPO", "tiny Janus + token-only GRPO",
             "tiny Janus + semantic-only GRPO"]
    measured = ["random codes (chance)", "Show-o (baseline)", *oracles, *methods, "tiny Janus (baseline)", *janus]
    assert [row["name"] for row in table] == ["rendered ground truth (reference)", *measured]  # every row, in order
    for name in measured:
        assert by_name[name]["images"] == expected_images, name
        assert 0.0 <= by_name[name]["overall"] <= 1.0
        assert set(by_name[name]["tasks"]) == {p["tag"] for p in prompts}
    for name in [*oracles, *methods, "tiny Janus (baseline)", *janus]:  # a paired interval against its baseline
        delta = by_name[name]["delta"]
        assert delta["low"] <= delta["estimate"] <= delta["high"], name
        assert by_name[name]["against"] == ("tiny Janus (baseline)" if name in janus else None), name
    base_score = by_name["Show-o (baseline)"]["overall"]
    assert by_name[oracles[0]]["delta"]["estimate"] == pytest.approx(by_name[oracles[0]]["overall"] - base_score)
    assert by_name[oracles[0]]["overall"] >= base_score  # the exact verdict never picks worse than candidate 0
    for name in ("+ ORM (best-of-2)", "+ PARM (2 paths)"):  # share of the oracle's gain, where it has one
        assert (by_name[name]["oracle_share"] is None) == (by_name[oracles[0]]["overall"] == base_score), name
    # search rows cost more generator passes per image than the baseline (the scaling plot's x axis)
    base = by_name["Show-o (baseline)"]["forward_passes_per_image"]
    assert base == 4  # QUICK: 4 sampling steps, one pass per image and step
    for name in ("+ ORM (best-of-2)", "+ PRM (step-level, 2 paths)", "+ PARM (2 paths)", "+ PARM++ (2 paths)",
                 "+ iterative DPO + ORM (best-of-2)"):
        assert by_name[name]["forward_passes_per_image"] > base, name
    assert not [row for row in table if "not_run" in row]  # every Table 1 row is measured
    # the paired differences between rows (table.comparisons), in table.md and table.json
    comparisons = json.loads((run / "table.json").read_text())["comparisons"]
    assert [(c["name"], c["against"]) for c in comparisons][:2] == [("+ PARM (2 paths)", "+ ORM (best-of-2)"),
                                                                    ("+ PARM++ (2 paths)", "+ PARM (2 paths)")]
    for c in comparisons:
        assert c["delta"]["low"] <= c["delta"]["estimate"] <= c["delta"]["high"], c
        assert c["delta"]["estimate"] == pytest.approx(by_name[c["name"]]["overall"] - by_name[c["against"]]["overall"])
    assert "| + PARM (2 paths) − + ORM (best-of-2) |" in (run / "table.md").read_text()
    env_record = json.loads((run / "table.json").read_text())["environment"]
    assert env_record["torch_threads"] == 1 and env_record["cpu"]  # pinned by the config, whatever OMP says
    # jobs=2 (the default): every recipe row ran as a child process with its own log, the models trained here did not
    assert "== rows/prm: started in a child process" in proc.stdout and (run / "logs" / "rows_prm.log").is_file()
    assert "== train/orm: started in a child process" not in proc.stdout
    # PARM++ reflected on every slot: its slot records carry the judge's verdict (and corrections where it said no)
    slots = [json.loads(p.read_text()) for p in sorted((run / "rows" / "parmpp" / "slots").glob("*.json"))]
    assert len(slots) == expected_images
    assert all(any(event["action"] == "reflect" for event in slot["trace"]) for slot in slots)
    reflections = [event for slot in slots for event in slot["trace"] if event["action"] == "reflect"]
    corrections = [event for slot in slots for event in slot["trace"] if event["action"] == "correct"]
    assert len(corrections) == sum(not event["detail"]["accept"] for event in reflections)  # every "no" regenerates
    # its PARM stage was replayed from the pool, which stored the PARM++ judge's PARM records (the integrated rows'
    # pool did not need them)
    assert all(slot["trace"][0]["detail"].get("policy") == "parmpp@2" for slot in slots)
    parmpp_row = yaml.safe_load((run / "rows" / "parmpp" / "config.yaml").read_text())
    assert Path(parmpp_row["search"]["strategy"]["pool"]) == run / "train" / "pool" / "pool"
    for pool, named in (("pool", ["parmpp"]), ("pool_iterative", [])):
        entry = json.loads(next((run / "train" / pool / "pool").glob("*.json")).read_text())
        assert sorted(entry.get("named_parm", {})) == named, pool
    assert (run / "train" / "parmpp" / "final" / "config.json").is_file()
    assert (run / "train" / "corrector" / "final" / "showo" / "config.json").is_file()
    # the corrector learnt from groups of the Show-o's own paths (a rejected one -> an accepted one of its line)
    corrector_cfg = yaml.safe_load((run / "train" / "corrector" / "config.yaml").read_text())
    assert Path(corrector_cfg["dataset"]["directory"]) == run / "train" / "parm_data" / "steps_self_correction"
    assert (run / "train" / "parm_data" / "steps_self_correction" / "groups.jsonl").read_text().strip()
    printed = proc.stdout
    assert "| Show-o (baseline) |" in printed and "wall time per stage" in printed
    assert (run / "table.md").read_text() in printed
    for figure in ("scaling.png", "grid.png", "compute.png"):
        assert (run / figure).stat().st_size > 0, figure
    # PARM++ from the ORM trained here, on the Show-o's own paths (scripts/build_parm_data.py); the describe base
    # is only the PRM's, which is committed
    assert (run / "train" / "parm_data" / "potential_steps.jsonl").is_file()
    parmpp_cfg = yaml.safe_load((run / "train" / "parmpp" / "config.yaml").read_text())
    assert Path(parmpp_cfg["model_dir"]) == run / "train" / "orm" / "final"
    assert not (run / "train" / "judge_base").exists()
    assert (run / "train" / "judge_vision" / "final" / "config.json").is_file()  # the ORM's pre-trained tower
    assert (run / "train" / "orm" / "final" / "config.json").is_file()
    assert (run / "train" / "judge_data" / "finals.jsonl").is_file()
    # iterative DPO ran here (a model it makes was missing): both DPO rows and the pool of the integrated rows read
    # its rounds, not the committed round 0
    rounds = run / "train" / "iterative_dpo"
    generated = {key: yaml.safe_load((run / "rows" / key / "config.yaml").read_text()) for key in ("dpo",)}
    assert Path(generated["dpo"]["model"]["bundle"]["directory"]) == rounds / "round_0" / "train" / "final"
    pool_cfg = yaml.safe_load((run / "train" / "pool_iterative" / "config.yaml").read_text())
    assert Path(pool_cfg["model"]["bundle"]["directory"]) == rounds / "round_1" / "train" / "final"
    # the tiny Janus's CoT rows are picks from its pool: each image with the plan it was drawn after
    for key in ("janus_cot", "janus_cot_orm", "janus_cot_parm"):
        images = run / "rows" / key / "images"
        assert len(list(images.rglob("*.cot.txt"))) == len(list(images.rglob("*.png"))) == expected_images, key
    # the tiny-Janus GRPO rows sample their trained model: with its plan where the policy trains one, without for
    # token-only GRPO; each training run wrote its reward curve, and the quickstart all of them on one plot
    for key, plans in (("grpo_janus", True), ("grpo_janus_token", False), ("grpo_janus_semantic", True)):
        assert (run / "train" / f"{key}_train" / "final" / "config.json").is_file(), key
        assert (run / "train" / f"{key}_train" / "reward_curve.png").stat().st_size > 0, key
        assert bool(list((run / "rows" / key / "images").rglob("*.cot.txt"))) == plans, key
    assert (run / "grpo_reward_curves.png").stat().st_size > 0
    # the held-out prompts are the eval split: none of them is a training prompt
    train = {line["prompt"] for line in build_suite("shapes32").train}
    assert not train & {p["prompt"] for p in prompts}

    # a second run, every row in this process (jobs=1), resumes every stage the children finished (same fingerprints,
    # nothing redone); the same run dir with another setting is refused, naming it
    again = subprocess.run(["bash", "scripts/shapes/quickstart.sh", str(run), "jobs=1"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and read_table_json(run / "table.json") == table, again.stderr[-3000:]
    assert "started in a child process" not in again.stdout
    changed = subprocess.run(["bash", "scripts/shapes/quickstart.sh", str(run), "candidates=3"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=600)
    assert changed.returncode != 0 and "config 'candidates': on disk 2, now 3" in changed.stderr


def test_export_stores_weights_in_bfloat16_and_keeps_the_tokenizer(tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from safetensors.torch import load_file

    from showo.factory import load_bundle

    src = tmp_path / "src"
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        instantiate(compose("generate", overrides=["model=showo_tiny", "prompts=x"]).model.bundle).save_pretrained(src)
    proc = subprocess.run(["python", "scripts/export_checkpoint.py", str(src), str(tmp_path / "out")], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for path in src.rglob("*"):
        if path.is_file():
            copied = tmp_path / "out" / path.relative_to(src)
            if path.suffix == ".safetensors" and "vq" not in path.parts:
                before, after = load_file(str(path)), load_file(str(copied))
                assert before.keys() == after.keys()
                for key, value in before.items():
                    expected = value.to(torch.bfloat16) if value.is_floating_point() else value
                    assert after[key].dtype == expected.dtype and torch.equal(after[key], expected), key
            else:
                assert copied.read_bytes() == path.read_bytes(), path  # tokenizer, configs, MAGVIT-v2 unchanged
    bundle = load_bundle(tmp_path / "out")
    assert next(bundle.model.parameters()).dtype == torch.float32  # computes in float32
    proc = subprocess.run(["python", "scripts/export_checkpoint.py", str(src), str(tmp_path / "novq"), "--exclude",
                           "vq"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and not (tmp_path / "novq" / "vq").exists()
    assert load_bundle(tmp_path / "novq").vq_model is None


def test_reward_curves_read_only_the_grpo_training_rows():
    """The quickstart's rows mix recipe rows, pool-policy rows (no ``recipe`` key, struct config) and tiny-Janus rows:
    the GRPO reward plot lists exactly the ``train_grpo`` rows, without tripping over a row that has no recipe."""
    import importlib.util

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    spec = importlib.util.spec_from_file_location("imagecot_quickstart", REPO / "scripts" / "shapes" / "quickstart.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name="quickstart", overrides=["+experiment=shapes/quick"])
    assert "recipe" not in cfg.rows.baseline and "policy" in cfg.rows.baseline  # a policy row is in the table
    runs = module.grpo_runs(cfg.rows, Path("RUN"))
    assert [path for _, path in runs] == [Path(f"RUN/train/{key}_train/metrics.jsonl") for key in (
        "grpo_showo", "grpo_janus", "grpo_janus_token", "grpo_janus_semantic")]
