"""configs/reward/t2i_r1.yaml: HPS + GIT + GroundingDINO + ORM on tiny models, the official plain sum (§8.5)."""
import json
from pathlib import Path

import open_clip
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from PIL import Image

from reward_models.ensemble import Identity, JudgeEnsemble
from reward_models.gdino import GroundingDinoReward
from reward_models.git_vqa import GitVQAReward
from reward_models.orm_t2i_r1 import T2IR1ORM
from reward_models.tiny import build_tiny_llava_onevision
from reward_models.tiny_experts import build_tiny_git, build_tiny_grounding_dino

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
ARCH = "imagecot-test-tiny-t2i-r1-hps"


def test_t2i_r1_ensemble_on_tiny_experts(tmp_path):
    (tmp_path / f"{ARCH}.json").write_text(json.dumps({
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }))
    open_clip.add_model_config(tmp_path / f"{ARCH}.json")
    torch.save(open_clip.create_model(ARCH, pretrained=None).state_dict(), tmp_path / "hps.pt")
    records = tmp_path / "data.json"
    records.write_text(json.dumps({"prompt": "rubber gloves and a fluffy teddy bear", "task_type": "texture",
                                   "nouns": ["glove", "teddy bear"], "attr_nouns": ["rubber glove", "fluffy teddy bear"]}))
    overrides = [
        "+reward=t2i_r1",
        f"reward.judges.hps.arch={ARCH}", f"reward.judges.hps.weights={tmp_path / 'hps.pt'}", "reward.judges.hps.device=cpu",
        f"reward.judges.git.model_dir={build_tiny_git(tmp_path / 'git')}", "reward.judges.git.device=cpu",
        f"reward.judges.git.requirements.records={records}",
        f"reward.judges.gdino.model_dir={build_tiny_grounding_dino(tmp_path / 'gdino')}", "reward.judges.gdino.device=cpu",
        f"reward.judges.gdino.requirements.records={records}",
        f"reward.judges.orm.judge.model_dir={build_tiny_llava_onevision(tmp_path / 'orm')}",
        "reward.judges.orm.judge.device=cpu", "reward.judges.orm.judge.dtype=float32",
    ]
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name=None, overrides=overrides)
    ensemble = instantiate(cfg.reward)
    assert isinstance(ensemble, JudgeEnsemble) and isinstance(ensemble.normalizer, Identity)
    assert list(ensemble.judges) == ["hps", "git", "gdino", "orm"] and set(ensemble.weights.values()) == {1.0}
    assert isinstance(ensemble.judges["gdino"], GroundingDinoReward) and ensemble.judges["gdino"].rules.credit_above
    assert isinstance(ensemble.judges["git"], GitVQAReward) and isinstance(ensemble.judges["orm"], T2IR1ORM)

    prompts = ["rubber gloves and a fluffy teddy bear"] * 2 + ["a photo of a cat left of a dog"] * 2
    images = [Image.new("RGB", (48, 48), (60 * i, 90, 200 - 40 * i)) for i in range(4)]
    out = ensemble.score(prompts, images, group_size=2)
    raw = {name: out.components[name] for name in ensemble.judges}
    # The official combination: the plain sum of the four raw rewards.
    torch.testing.assert_close(out.scores, sum(raw.values()), rtol=0, atol=1e-6)
    assert out.components["git/num_questions"].tolist() == [2.0, 2.0, 0.0, 0.0]  # record's attr_nouns; spatial: 0
    assert raw["git"][2:].tolist() == [0.0, 0.0]
    assert out.cost.images_scored == 16
    assert all(((v >= -1) & (v <= 1)).all() for v in raw.values())
    with pytest.raises(ValueError, match="whole number of groups"):
        ensemble.score(prompts[:3], images[:3], group_size=2)
