"""GitVQAReward on a tiny random transformers GIT built here (nothing downloaded; t2i_r1.md §8.3)."""
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from reward_models.base import OutcomeJudge
from reward_models.git_vqa import GitVQAReward, vqa_questions
from reward_models.requirements import CountInfo, Requirements, SpatialInfo
from reward_models.tiny_experts import build_tiny_git

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "reward"
IMAGES = [Image.new("RGB", (40, 40), (50 * i, 200 - 40 * i, 90)) for i in range(4)]


@pytest.fixture(scope="module")
def reward(tmp_path_factory):
    return GitVQAReward(build_tiny_git(tmp_path_factory.mktemp("git") / "tiny"), batch_size=8)


def official_single(reward, image, question):
    """The official computation, one question at a time: [CLS] + question ids, logits at the last position."""
    ids = [reward.tokenizer.cls_token_id] + reward.processor(text=question, add_special_tokens=False).input_ids
    pixels = reward.processor(images=image, return_tensors="pt").pixel_values
    with torch.no_grad():
        logits = reward.model(pixel_values=pixels, input_ids=torch.tensor([ids])).logits[:, -1]
    probs = logits.softmax(dim=1)[0]
    yes = reward.tokenizer.encode("yes")[1]  # [CLS] yes [SEP]
    no = reward.tokenizer.encode("no")[1]
    return float(probs[yes] / (probs[yes] + probs[no]))


def test_batched_yes_probability_equals_the_official_single_pass(reward):
    # Questions of different lengths in one right-padded batch.
    questions = ["green banana?", "red car?", "blue traffic light?", "cat?"]
    got = reward.yes_probability(IMAGES, questions)
    want = [official_single(reward, i, q) for i, q in zip(IMAGES, questions)]
    # float32; the batch changes matmul shapes only: 1e-6 on probabilities in (0, 1).
    assert got.tolist() == pytest.approx(want, abs=1e-6)
    assert len(set(round(w, 6) for w in want)) == 4  # distinct, so a mix-up of rows would fail


def test_score_averages_attribute_questions_and_skips_tasks(reward):
    needs = [
        Requirements("color", ("banana", "car"), attr_nouns=("green banana", "red car")),
        Requirements("object", ("cat", "dog")),  # no attribute phrases: the nouns are asked
        Requirements("spatial", ("cat", "dog"), spatial=SpatialInfo("cat", "dog", "left of")),
        Requirements("numeracy", ("cat",), numeracy=(CountInfo("cat", 2),)),
    ]
    out = reward.score(["p0", "p1", "p2", "p3"], IMAGES, requirements=needs)
    want0 = (official_single(reward, IMAGES[0], "green banana?") + official_single(reward, IMAGES[0], "red car?")) / 2
    want1 = (official_single(reward, IMAGES[1], "cat?") + official_single(reward, IMAGES[1], "dog?")) / 2
    assert out.scores.tolist() == pytest.approx([want0, want1, 0.0, 0.0], abs=1e-6)
    assert out.components["num_questions"].tolist() == [2.0, 2.0, 0.0, 0.0]
    assert out.cost.forward_passes == 4 and out.cost.images_scored == 4
    assert isinstance(reward, OutcomeJudge)
    # No nouns at all: 1 without a question.
    empty = reward.score(["x"], IMAGES[:1], requirements=[Requirements("object", ())])
    assert empty.scores.tolist() == [1.0]
    # Prompts resolved by the parser: "a photo of a red car and a blue cup" asks "red car?" and "blue cup?".
    parsed = reward.score(["a photo of a red car and a blue cup"], IMAGES[:1])
    want = (official_single(reward, IMAGES[0], "red car?") + official_single(reward, IMAGES[0], "blue cup?")) / 2
    assert parsed.scores.item() == pytest.approx(want, abs=1e-6)


def test_questions_and_yaml(reward):
    assert vqa_questions(Requirements("color", ("x",), attr_nouns=("green banana",))) == ["green banana?"]
    assert vqa_questions(Requirements("object", ("cat", "dog"))) == ["cat?", "dog?"]
    cfg = OmegaConf.load(CONFIGS / "git_vqa.yaml")
    cfg.model_dir, cfg.device = str(reward.model.name_or_path), "cpu"
    built = instantiate(cfg)
    assert isinstance(built, GitVQAReward) and built.skip_tasks == ("spatial", "numeracy") and built.skip_score == 0.0
