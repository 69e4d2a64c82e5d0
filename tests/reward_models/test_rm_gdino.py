"""GroundingDinoReward on a tiny random transformers GroundingDINO built here (nothing downloaded)."""
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from PIL import Image

from reward_models.base import OutcomeJudge
from reward_models.detector_rules import DetectorRules, detection_caption, detector_score
from reward_models.gdino import GroundingDinoReward, positive_map
from reward_models.requirements import CountInfo, Requirements
from reward_models.tiny_experts import build_tiny_grounding_dino

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
IMAGES = [Image.new("RGB", (64, 64), (40 * i, 120, 200 - 40 * i)) for i in range(4)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_grounding_dino(tmp_path_factory.mktemp("gdino") / "tiny")


def test_positive_map_by_hand(model_dir):
    reward = GroundingDinoReward(model_dir)
    # Word-level tokenizer: [CLS] cat . traffic light . [SEP] -> "cat" is token 1, "traffic light" tokens 3-4.
    caption, spans, _ = detection_caption(["cat", "traffic light"], full_phrase=True)
    encoding = reward.processor.tokenizer([caption, "dog."], padding=True)
    pmap = positive_map(encoding, 0, spans, 8)
    support = torch.zeros(2, 8)
    support[0, 1] = 1.0
    support[1, 3:5] = 1.0
    assert torch.equal(pmap > 0, support > 0)
    # Rows divided by (count + 1e-6) as officially: 1 / (1 + 1e-6) and 1 / (2 + 1e-6); float32 rounding: 1e-7.
    torch.testing.assert_close(pmap[support > 0], torch.tensor([1 / (1 + 1e-6), 1 / (2 + 1e-6), 1 / (2 + 1e-6)]), rtol=0, atol=1e-7)


def test_detections_follow_the_official_grounding(model_dir):
    """Each phrase's confidence = mean sigmoid logit over its tokens; boxes above the threshold are kept in order."""
    reward = GroundingDinoReward(model_dir, box_threshold=0.0)
    nouns = [["cat", "dog"], ["traffic light"]]
    got = reward.detect(IMAGES[:2], nouns)
    for row, (image, names) in enumerate(zip(IMAGES[:2], nouns)):
        caption, spans, labels = detection_caption(names)
        inputs = reward.processor(images=[image], text=[caption], return_tensors="pt")
        with torch.no_grad():
            out = reward.model(**inputs)
        probs = out.logits[0].sigmoid()  # [queries, 256]
        tokens = reward.processor.tokenizer([caption])
        conf = positive_map(tokens, 0, spans, probs.shape[-1]) @ probs.T  # [phrases, queries]
        want = [(labels[j], q, float(conf[j, q])) for j in range(len(labels)) for q in range(conf.shape[1])]
        assert [d.phrase for d in got[row]] == [w[0] for w in want]
        # float32, batched vs single (padding of the captions changes the summation order): 1e-4.
        assert [d.score for d in got[row]] == pytest.approx([w[2] for w in want], abs=1e-4)
        assert got[row][0].box == pytest.approx(tuple(out.pred_boxes[0, 0].tolist()), abs=1e-4)


def test_batch_equals_singletons_and_threshold(model_dir):
    reward = GroundingDinoReward(model_dir, box_threshold=0.5, batch_size=4)
    nouns = [["cat", "dog"], ["traffic light", "bus"], ["zebra"], ["cup"]]
    batched = reward.detect(IMAGES, nouns)
    reward.batch_size = 1
    singles = reward.detect(IMAGES, nouns)
    assert [[d.phrase for d in ds] for ds in batched] == [[d.phrase for d in ds] for ds in singles]
    assert all(d.score > 0.5 for ds in batched for d in ds)
    assert sum(len(ds) for ds in batched) > 0  # the tiny model is confident enough for a non-trivial check


def test_score_routes_requirements_and_skips_empty_nouns(model_dir):
    rules = DetectorRules.official()
    reward = GroundingDinoReward(model_dir, rules=rules, box_threshold=0.5)
    assert isinstance(reward, OutcomeJudge)
    prompts = ["a photo of a cat left of a dog", "a photo of two cats", "a photo of a red car and a blue cup", "x"]
    needs = [reward.requirements(p) for p in prompts[:3]] + [Requirements("object", ())]
    out = reward.score(prompts, IMAGES, requirements=needs)
    detections = reward.detect(IMAGES[:3], [n.nouns for n in needs[:3]])
    want = [detector_score(n, d, rules) for n, d in zip(needs, detections)] + [1.0]
    assert out.scores.tolist() == pytest.approx(want)
    assert out.components["num_detections"].tolist() == [float(len(d)) for d in detections] + [0.0]
    assert out.cost.forward_passes == 3 and out.cost.images_scored == 4  # no detector call without nouns
    # The resolver parses GenEval-style prompts by itself.
    assert reward.score(prompts[:3], IMAGES[:3]).scores.tolist() == pytest.approx(want[:3])
    assert needs[1].numeracy == (CountInfo("cat", 2),)


def test_yaml_instantiates_and_missing_directory(model_dir, tmp_path):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name=None, overrides=["+reward=gdino", f"reward.model_dir={model_dir}", "reward.device=cpu",
                                                   "reward.rules.credit_above=false"])
    reward = instantiate(cfg.reward)
    assert isinstance(reward, GroundingDinoReward) and reward.box_threshold == 0.3
    assert reward.rules == DetectorRules(credit_above=False)
    with pytest.raises(FileNotFoundError, match="GroundingDINO directory not found"):
        GroundingDinoReward(tmp_path / "nothing")
