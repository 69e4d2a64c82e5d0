"""The T2I-CompBench model wrappers on tiny random models (BLIP VQA, OWL-ViT, open_clip) and the scorer's glue."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from eval.t2i_compbench.blip_vqa import BlipVqa
from eval.t2i_compbench.detector import OwlDetector
from eval.t2i_compbench.parsing import RuleParser
from eval.t2i_compbench.rules import Detection
from eval.t2i_compbench.scorer import CompBenchScorer, required_parts
from tests.eval.tiny_models import build_tiny_blip, build_tiny_owl

IMAGES = [Image.new("RGB", (40, 30), (200, 10, 10)), Image.effect_noise((64, 64), 80).convert("RGB"),
          Image.new("RGB", (24, 48), (10, 10, 220))]


@pytest.fixture(scope="module")
def blip_dir(tmp_path_factory):
    return build_tiny_blip(tmp_path_factory.mktemp("blip"))


@pytest.fixture(scope="module")
def owl_dir(tmp_path_factory):
    return build_tiny_owl(tmp_path_factory.mktemp("owl"))


def test_blip_yes_probability_is_batch_independent_and_uses_enc(blip_dir):
    vqa = BlipVqa.from_pretrained(blip_dir, image_size=48)  # != 32: position table interpolated, as at 480
    questions = ["a green bench?", "a blue bowl on the top of a cat and a dog?", "a red cake?"]
    batched = vqa.yes_probability(IMAGES, questions)
    single = torch.cat([vqa.yes_probability([im], [q]) for im, q in zip(IMAGES, questions)])
    # float32 model; padded question positions are masked, so batching changes only summation order (~1e-7).
    torch.testing.assert_close(batched, single, rtol=0, atol=1e-6)
    assert batched.dtype == torch.float64 and ((batched > 0) & (batched < 1)).all()
    assert len({f"{p:.4f}" for p in batched.tolist()}) == 3  # answers depend on image and question
    cls_first = BlipVqa(vqa.model, vqa.tokenizer, image_size=48, enc_token_id=vqa.tokenizer.cls_token_id)
    assert not torch.allclose(cls_first.yes_probability(IMAGES, questions), batched)  # [ENC] vs HF's [CLS]
    assert vqa.enc_id == vqa.tokenizer.convert_tokens_to_ids("[ENC]")
    assert vqa.dec_id == vqa.tokenizer.convert_tokens_to_ids("[DEC]")
    assert vqa.pixels(IMAGES[:1]).shape == (1, 3, 48, 48)


def test_owl_detector_answers_with_its_queries(owl_dir):
    det = OwlDetector.from_pretrained(owl_dir, threshold=0.0)
    out = det.detect(IMAGES[:2], [["cat", "dog"], ["bench"]])
    assert len(out) == 2 and out[0] and out[1]
    assert {d.label for d in out[0]} <= {"cat", "dog"} and {d.label for d in out[1]} == {"bench"}
    assert all(a.score >= b.score for a, b in zip(out[0], out[0][1:]))
    assert OwlDetector.from_pretrained(owl_dir, threshold=1.01).detect(IMAGES[:1], [["cat"]]) == [[]]
    closed = OwlDetector(det.model, det.processor, threshold=0.0, vocabulary=["dog"])
    assert {d.label for d in closed.detect(IMAGES[:1], [["cat", "dog"]])[0]} == {"dog"}


class FixedDetector:
    """Returns the same pixel-space detections for every image (labels filtered to the queries)."""

    def __init__(self, detections):
        self.detections = detections
        self.queries = []

    def detect(self, images, queries):
        self.queries += [list(q) for q in queries]
        return [[d for d in self.detections if d.label in q] for q in queries]


def test_spatial_scorer_measures_in_the_official_frame():
    # A 958-px image: frame scale 479/958 = 0.5. Centres 250 px apart in x and y -> 125 in the frame: "near" = 1,
    # where image pixels would give 150 / 250 = 0.6.
    dets = [Detection("dog", 0.8, (0, 0, 100, 100)), Detection("person", 0.8, (250, 250, 350, 350))]
    detector = FixedDetector(dets)
    scorer = CompBenchScorer(RuleParser(), detector=detector)
    out = scorer.spatial(["a woman near a dog"], [Image.new("RGB", (958, 958))])
    assert detector.queries == [["person", "dog"]]  # official alias: woman -> person
    assert out[0]["details"]["relation_score"] == 1.0 and out[0]["score"] == pytest.approx(0.9)
    big = scorer.spatial(["a woman near a dog"], [Image.new("RGB", (479, 479))])
    assert big[0]["details"]["relation_score"] == pytest.approx(150 / 250)


def test_numeracy_scorer_and_required_parts():
    dets = [Detection("cat", 0.9, (0, 0, 10, 10)), Detection("cat", 0.9, (40, 40, 60, 60))]
    scorer = CompBenchScorer(RuleParser(), detector=FixedDetector(dets))
    scorer.prepare("numeracy", ["two cats and one dog", "one cat"])
    out = scorer.numeracy(["two cats and one dog", "one cat"], [Image.new("RGB", (479, 479))] * 2)
    assert [o["score"] for o in out] == [0.5, 0.5]  # cats exact (0.25 + 0.25), dog absent; one cat: found, count 2
    assert required_parts(["color", "spatial"]) == {"vqa", "detector"}
    assert required_parts(["complex"]) == {"vqa", "detector", "clip", "complex_split"}
    with pytest.raises(ValueError, match="compbench.clip"):
        CompBenchScorer(RuleParser()).check("non_spatial")
