"""HPSv2Scorer: unscaled cosine, HPS checkpoint layout (state_dict + module. prefixes), tiny open_clip model."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from reward_models.hps import HPS_ARCH, HPSv2Scorer
from tests.eval.tiny_models import tiny_open_clip

TINY_ARCH = "imagecot-test-tiny-hps"


@pytest.fixture(scope="module")
def hps_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("hps")
    model = tiny_open_clip(root, TINY_ARCH, seed=1, quick_gelu=False).eval()
    path = root / "HPS_tiny.pt"
    # The released HPS files wrap the weights as {"state_dict": ...}; DDP training leaves "module." prefixes.
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    return path, model


def test_hps_score_is_unscaled_cosine(hps_checkpoint):
    path, model = hps_checkpoint
    assert HPS_ARCH == "ViT-H-14"
    scorer = HPSv2Scorer.from_checkpoint(path, arch=TINY_ARCH)
    images = [Image.new("RGB", (32, 32), c) for c in [(255, 0, 0), (0, 0, 255), (40, 200, 40)]]
    prompts = ["red", "a blue square", "green grass"]
    out = scorer.score(prompts, images)
    with torch.no_grad():
        pixels = torch.stack([scorer.preprocess(i) for i in images])
        cos = F.cosine_similarity(model.encode_image(pixels), model.encode_text(scorer.tokenizer(prompts)), dim=-1)
    torch.testing.assert_close(out.scores, cos, rtol=0, atol=1e-6)
    assert (out.scores < 0).any() or (out.scores > 0).all()  # no clipping: negative cosines stay negative
    torch.testing.assert_close(out.components["cosine"], out.scores)
    one_by_one = torch.cat([scorer.score([p], [i]).scores for p, i in zip(prompts, images)])
    torch.testing.assert_close(one_by_one, out.scores, rtol=0, atol=1e-6)


def test_negative_cosine_not_clipped(hps_checkpoint):
    path, _ = hps_checkpoint
    scorer = HPSv2Scorer.from_checkpoint(path, arch=TINY_ARCH)
    # Negate the image projection so every cosine flips sign: HPS must report the negatives.
    scorer.model.visual.proj.data.neg_()
    images = [Image.new("RGB", (32, 32), (i * 60, 30, 90)) for i in range(3)]
    flipped = scorer.score(["x", "y", "z"], images).scores
    scorer.model.visual.proj.data.neg_()
    original = scorer.score(["x", "y", "z"], images).scores
    torch.testing.assert_close(flipped, -original, rtol=0, atol=1e-6)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="HPS_v2.1_compressed.pt"):
        HPSv2Scorer.from_checkpoint(tmp_path / "HPS_v2.1_compressed.pt")


def test_hps_yaml_instantiates(hps_checkpoint):
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    path, _ = hps_checkpoint
    configs = Path(__file__).resolve().parents[2] / "configs"
    with initialize_config_dir(config_dir=str(configs), version_base="1.3"):
        cfg = compose(config_name=None, overrides=["+reward=hps"])
        assert cfg.reward.arch == HPS_ARCH
        cfg = compose(
            config_name=None, overrides=["+reward=hps", f"reward.arch={TINY_ARCH}", f"reward.weights={path}", "reward.device=cpu"]
        )
    scorer = instantiate(cfg.reward)
    assert isinstance(scorer, HPSv2Scorer) and scorer.scale == 1.0 and not scorer.clip_at_zero
