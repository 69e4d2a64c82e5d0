"""JudgeEnsemble and normalizers: numbers derived by hand."""
from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from reward_models.base import JudgeCost, JudgeOutput, OutcomeJudge
from reward_models.ensemble import Identity, JudgeEnsemble, MinMax, Rank, ZScore


class FixedJudge:
    def __init__(self, scores):
        self.scores = torch.tensor(scores)

    def score(self, prompts, images):
        return JudgeOutput(
            scores=self.scores[: len(prompts)].clone(),
            components={"raw": self.scores[: len(prompts)] * 10},
            cost=JudgeCost(forward_passes=len(prompts), images_scored=len(prompts)),
        )


IMAGES = [Image.new("RGB", (4, 4))] * 3
PROMPTS = ["a", "b", "c"]


def test_normalizers_by_hand():
    s = torch.tensor([1.0, 2.0, 3.0])
    k = math.sqrt(3 / 2)  # population std of [1, 2, 3] is sqrt(2/3)
    torch.testing.assert_close(ZScore(eps=0)(s), torch.tensor([-k, 0.0, k]))
    torch.testing.assert_close(ZScore()(torch.tensor([5.0, 5.0])), torch.zeros(2))
    torch.testing.assert_close(MinMax()(torch.tensor([1.0, 3.0, 2.0])), torch.tensor([0.0, 1.0, 0.5]))
    torch.testing.assert_close(MinMax()(torch.tensor([4.0, 4.0])), torch.zeros(2))
    torch.testing.assert_close(Rank()(torch.tensor([10.0, 30.0, 20.0, 20.0])), torch.tensor([0.0, 1.0, 0.5, 0.5]))
    torch.testing.assert_close(Rank()(torch.tensor([7.0])), torch.zeros(1))
    torch.testing.assert_close(Identity()(s), s)


def test_weighted_combination_by_hand():
    ens = JudgeEnsemble(
        {"a": FixedJudge([0.0, 1.0, 2.0]), "b": FixedJudge([10.0, 30.0, 20.0])},
        weights={"a": 2.0},
        normalizer=MinMax(),
    )
    assert isinstance(ens, OutcomeJudge)
    out = ens.score(PROMPTS, IMAGES)
    # a -> [0, .5, 1] * 2 ; b -> [0, 1, .5] * 1
    torch.testing.assert_close(out.scores, torch.tensor([0.0, 2.0, 2.5]))
    torch.testing.assert_close(out.components["b"], torch.tensor([10.0, 30.0, 20.0]))
    torch.testing.assert_close(out.components["a/normalized"], torch.tensor([0.0, 0.5, 1.0]))
    torch.testing.assert_close(out.components["b/raw"], torch.tensor([100.0, 300.0, 200.0]))
    assert out.cost == JudgeCost(forward_passes=6, images_scored=6)


def test_identity_is_t2i_r1_sum():
    ens = JudgeEnsemble({"hps": FixedJudge([0.25, 0.3, 0.2]), "orm": FixedJudge([0.9, 0.1, 0.5])}, normalizer=Identity())
    torch.testing.assert_close(ens.score(PROMPTS, IMAGES).scores, torch.tensor([1.15, 0.4, 0.7]))


def test_default_zscore_makes_scales_comparable():
    small = FixedJudge([0.20, 0.21, 0.22])
    large = FixedJudge([0.0, 100.0, 200.0])
    out = JudgeEnsemble({"s": small, "l": large}).score(PROMPTS, IMAGES)
    torch.testing.assert_close(out.components["s/normalized"], out.components["l/normalized"], atol=1e-3, rtol=0)


def test_errors():
    with pytest.raises(ValueError, match="unknown judges"):
        JudgeEnsemble({"a": FixedJudge([1.0])}, weights={"b": 1.0})
    with pytest.raises(TypeError, match="score"):
        JudgeEnsemble({"a": object()})
    with pytest.raises(ValueError, match="at least one"):
        JudgeEnsemble({})


def test_ensemble_yaml_on_tiny_judges(tmp_path):
    """configs/reward/ensemble.yaml (HPS + fine-tuned ORM) instantiated with a tiny open_clip and a tiny LLaVA."""
    import json
    from pathlib import Path

    import open_clip
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from reward_models.tiny import build_tiny_llava_onevision

    arch = "imagecot-test-tiny-ensemble"
    config = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    (tmp_path / f"{arch}.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / f"{arch}.json")
    torch.save(open_clip.create_model(arch, pretrained=None).state_dict(), tmp_path / "hps.pt")
    judge_dir = build_tiny_llava_onevision(tmp_path / "orm")
    configs = Path(__file__).resolve().parents[2] / "configs"
    with initialize_config_dir(config_dir=str(configs), version_base="1.3"):
        cfg = compose(
            config_name=None,
            overrides=[
                "+reward=ensemble",
                f"reward.judges.hps.arch={arch}",
                f"reward.judges.hps.weights={tmp_path / 'hps.pt'}",
                "reward.judges.hps.device=cpu",
                f"reward.judges.orm.judge.model_dir={judge_dir}",
                "reward.judges.orm.judge.device=cpu",
                "reward.judges.orm.judge.dtype=float32",
                "reward.weights.orm=0.5",
            ],
        )
    ensemble = instantiate(cfg.reward)
    assert isinstance(ensemble, JudgeEnsemble) and isinstance(ensemble.normalizer, ZScore)
    images = [Image.new("RGB", (32, 32), c) for c in [(200, 0, 0), (0, 200, 0), (0, 0, 200)]]
    out = ensemble.score(["a red car", "a green dog", "a blue cup"], images)
    want = out.components["hps/normalized"] + 0.5 * out.components["orm/normalized"]
    torch.testing.assert_close(out.scores, want)
    torch.testing.assert_close(out.components["hps/normalized"], ZScore()(out.components["hps"]))
    assert out.cost.images_scored == 6
