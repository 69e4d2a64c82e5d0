"""ClipScore with a tiny random open_clip model built from a config (no weights downloaded)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from reward_models.base import OutcomeJudge
from reward_models.clip_score import ClipScore, load_open_clip
from tests.eval.tiny_models import tiny_open_clip

TINY_ARCH = "imagecot-test-tiny-clip"


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip")
    model = tiny_open_clip(root, TINY_ARCH, seed=0, quick_gelu=False)
    weights = root / "tiny.pt"
    torch.save(model.state_dict(), weights)
    return weights


def _images(n):
    colors = [(255, 0, 0), (0, 200, 0), (10, 10, 240), (128, 128, 0), (0, 0, 0), (250, 250, 250)]
    return [Image.new("RGB", (48 + 8 * i, 40), colors[i % len(colors)]) for i in range(n)]


PROMPTS = ["a red square", "a green dog", "a blue car", "two bananas", "a black cat", "a white clock"]


def test_scores_follow_clipscore_formula(tiny_weights):
    scorer = ClipScore.from_checkpoint(TINY_ARCH, tiny_weights)
    assert isinstance(scorer, OutcomeJudge)
    images = _images(4)
    out = scorer.score(PROMPTS[:4], images)
    # Independent path: embed with the open_clip model directly.
    model, preprocess, tokenizer = load_open_clip(TINY_ARCH, tiny_weights)
    with torch.no_grad():
        img = model.encode_image(torch.stack([preprocess(i) for i in images]))
        txt = model.encode_text(tokenizer(PROMPTS[:4]))
    cos = F.cosine_similarity(img, txt, dim=-1)
    torch.testing.assert_close(out.components["cosine"], cos, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.scores, 2.5 * cos.clamp(min=0), rtol=0, atol=1e-6)
    assert out.cost.images_scored == 4 and out.cost.forward_passes == 4

    percent = ClipScore(model, preprocess, tokenizer, scale=100.0, clip_at_zero=False).score(PROMPTS[:4], images)
    torch.testing.assert_close(percent.scores, 100 * cos, rtol=0, atol=1e-4)


def test_batch_size_does_not_change_scores(tiny_weights):
    model, preprocess, tokenizer = load_open_clip(TINY_ARCH, tiny_weights)
    images = _images(6)
    # Unclipped, so that a random model's negative cosines are compared too.
    kw = {"scale": 100.0, "clip_at_zero": False}
    whole = ClipScore(model, preprocess, tokenizer, batch_size=6, **kw).score(PROMPTS, images).scores
    ones = ClipScore(model, preprocess, tokenizer, batch_size=1, **kw).score(PROMPTS, images).scores
    pairs = ClipScore(model, preprocess, tokenizer, batch_size=4, **kw).score(PROMPTS, images).scores
    torch.testing.assert_close(ones, whole, rtol=0, atol=1e-4)
    torch.testing.assert_close(pairs, whole, rtol=0, atol=1e-4)
    assert whole.unique().numel() > 1


def test_errors(tmp_path, tiny_weights):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        ClipScore.from_checkpoint(TINY_ARCH, tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="unknown open_clip architecture"):
        ClipScore.from_checkpoint("no-such-arch", tiny_weights)
    scorer = ClipScore.from_checkpoint(TINY_ARCH, tiny_weights)
    with pytest.raises(ValueError, match="len"):
        scorer.score(["a"], _images(2))
    with pytest.raises(ValueError, match="mode"):
        scorer.score(["a"], [Image.new("L", (8, 8))])


def test_clip_yaml_instantiates(tiny_weights):
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    configs = Path(__file__).resolve().parents[2] / "configs"
    with initialize_config_dir(config_dir=str(configs), version_base="1.3"):
        cfg = compose(
            config_name=None,
            overrides=["+reward=clip", f"reward.arch={TINY_ARCH}", f"reward.weights={tiny_weights}", "reward.device=cpu"],
        )
    scorer = instantiate(cfg.reward)
    assert isinstance(scorer, ClipScore) and scorer.scale == 2.5 and scorer.clip_at_zero
    assert scorer.score(["a red square"], _images(1)).scores.shape == (1,)
