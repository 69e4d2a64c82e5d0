"""The ``Detector`` implementations: the pure-PyTorch Mask2Former end to end, and the optional mmdet backend."""
from __future__ import annotations

import importlib.util
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from eval.geneval.detectors import GENEVAL_CLASS_NAMES, Mask2FormerDetector, MMDetDetector
from eval.geneval.mask2former import Mask2Former, Mask2FormerConfig
from eval.geneval.types import Detector
from tests.helpers import require_shared

FIXTURE = ("fixtures", "mask2former_tiny")


@pytest.fixture(scope="module")
def detector():
    root = require_shared(*FIXTURE)
    return Mask2FormerDetector(root / "weights_mmdet3.safetensors", Mask2FormerConfig.from_json(root / "config.json"))


def test_class_names_are_genevals():
    names = require_shared("geneval", "object_names.txt").read_text().splitlines()
    assert list(GENEVAL_CLASS_NAMES) == [n.strip() for n in names if n.strip()]


def test_protocol_and_bad_arguments(detector):
    assert isinstance(detector, Detector)
    weights = require_shared(*FIXTURE, "weights_mmdet3.safetensors")
    config = detector.config
    with pytest.raises(ValueError, match="preprocessing must be one of"):
        Mask2FormerDetector(weights, config, preprocessing="hf")
    with pytest.raises(ValueError, match="dtype must be one of"):
        Mask2FormerDetector(weights, config, dtype="float16")
    with pytest.raises(ValueError, match="3 class names for a model with 80 classes"):
        Mask2FormerDetector(weights, config, class_names=["a", "b", "c"])


# float32 bound on detection scores against the fixture's float32 run (README §6): the decoder's attention mask
# ``sigmoid(logit) < 0.5`` flips on logits within rounding of 0, so another CPU (other MKL / oneDNN / ATen kernels) or
# thread count moves class logits by up to ~1e-3; a softmax probability p then moves by at most
# 2 p (1 - p) 1e-3 <= 5e-4, the mean mask sigmoid (the other factor of a score) by less. Measured with AVX2 /
# MKL-compatible kernels instead of this machine's AVX-512 ones: <= 1.2e-4.
SCORE_ATOL = 1e-3
GENEVAL_THRESHOLDS = (0.3, 0.9)  # GenEval keeps scores above 0.3, above 0.9 on counting prompts


def _fixture_instances(case):
    tensors = load_file(case / "tensors.safetensors")
    p = "geneval.f32.result."
    n, h, w = tensors[p + "masks_shape"].tolist()
    buf = tensors[p + "masks_packbits_zlib"].numpy().tobytes()
    masks = np.unpackbits(np.frombuffer(zlib.decompress(buf), np.uint8), count=n * h * w).astype(bool).reshape(n, h, w)
    keys = [(int(q), int(lab)) for q, lab in zip(tensors[p + "query_index"], tensors[p + "labels"])]
    return keys, tensors[p + "scores"].numpy(), tensors[p + "bboxes"].numpy(), masks


def test_detect_matches_fixture(detector):
    """One image at a time (the default) → mmdetection's float32 GenEval-path detections (1 thread).

    Scores within SCORE_ATOL, at most 0.1% of mask pixels flipped (README §6); exact: the 100 (query, label) pairs,
    every box whose mask is unchanged (a box is the tight box of its mask), and what GenEval's verdicts count: per
    class the number of detections above 0.3 and above 0.9 (the fixture's scores are farther than SCORE_ATOL from
    both, checked first, so float32 noise cannot move one across).
    """
    case = require_shared(*FIXTURE, "cases", "a_256x256")
    image = Image.open(case / "image.png")
    keys, scores, boxes, masks = _fixture_instances(case)
    margin = min(float(np.abs(scores.astype(np.float64) - t).min()) for t in GENEVAL_THRESHOLDS)
    assert margin > SCORE_ATOL, f"fixture score {margin:.2g} from a threshold: kept counts not comparable exactly"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the fixture's float32 numbers were computed with one thread (README §6)
    try:
        inst = detector.instances([image])[0]
        dets = detector.detect([image])[0]  # the per-class layout GenEval reads
    finally:
        torch.set_num_threads(threads)
    ours = {(int(q), int(lab)): i for i, (q, lab) in enumerate(zip(inst.query_index, inst.labels))}
    assert sorted(ours) == sorted(keys)
    a = [ours[k] for k in keys]  # our instance for each fixture instance
    np.testing.assert_allclose(inst.scores.numpy()[a], scores, atol=SCORE_ATOL, rtol=0)
    flipped = (inst.masks.numpy()[a] != masks).reshape(len(keys), -1).sum(1)
    assert flipped.sum() <= 1e-3 * masks.size, f"{flipped.sum()} mask pixels differ"
    np.testing.assert_array_equal(inst.bboxes.numpy()[a][flipped == 0], boxes[flipped == 0])
    assert dets.image_size == image.size
    labels = np.array([lab for _, lab in keys])
    for t in GENEVAL_THRESHOLDS:
        expected = {int(lab): int((scores[labels == lab] > t).sum()) for lab in np.unique(labels)}
        got = {lab: int((d.bboxes[:, 4] > t).sum()) for lab, d in dets.by_label.items()}
        assert got == expected, f"detections above {t} per class differ"


def test_model_outputs_do_not_depend_on_batch_size(detector):
    """A batch of 3 gives each image the logits it gets alone (small inputs keep this cheap)."""
    model = detector.model
    x = torch.randn(3, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        together = model(x)
        alone = [model(x[i:i + 1]) for i in range(3)]
    for i in range(3):
        torch.testing.assert_close(together.cls_logits[-1][i], alone[i].cls_logits[-1][0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(together.mask_logits[-1][i], alone[i].mask_logits[-1][0], atol=1e-4, rtol=1e-4)


def test_official_model_forward_shapes():
    """The official-width model (random weights) runs and returns GenEval's shapes: 100 queries × 81 logits."""
    torch.manual_seed(0)
    out = Mask2Former().eval()(torch.zeros(1, 3, 64, 96))
    assert out.cls_logits[-1].shape == (1, 100, 81)
    assert out.mask_logits[-1].shape == (1, 100, 16, 24)


@pytest.mark.skipif(importlib.util.find_spec("mmdet") is not None, reason="mmdet is installed")
def test_mmdet_backend_explains_how_to_install(tmp_path):
    with pytest.raises(ImportError, match=r"imagecot\[mmdet\].*docs/geneval_detector.md"):
        MMDetDetector(tmp_path / "cfg.py", tmp_path / "ckpt.pth")


def test_hydra_configs_instantiate(tmp_path):
    """``configs/detector/*.yaml`` build their detectors (the tiny fixture model; mmdet without the extra → the
    install message)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from tests.helpers import REPO_ROOT

    root = require_shared(*FIXTURE)
    cfg = OmegaConf.load(REPO_ROOT / "configs" / "detector" / "mask2former.yaml")
    cfg.checkpoint, cfg.device = str(root / "weights_mmdet3.safetensors"), "cpu"
    cfg.config = {"_target_": "eval.geneval.mask2former.Mask2FormerConfig.from_json", "path": str(root / "config.json")}
    det = instantiate(cfg)
    assert isinstance(det, Mask2FormerDetector) and det.config.embed_dims == 32 and det.batch_size == 1
    mm = OmegaConf.load(REPO_ROOT / "configs" / "detector" / "mmdet.yaml")
    assert mm._target_ == "eval.geneval.detectors.MMDetDetector"
    if importlib.util.find_spec("mmdet") is None:
        mm.config_file, mm.checkpoint = str(tmp_path / "c.py"), str(tmp_path / "c.pth")
        with pytest.raises(Exception, match=r"imagecot\[mmdet\]"):
            instantiate(mm)


def test_mmdet_result_conversion_without_mmdet():
    """mmdet 2.x ``(bbox_results, mask_results)`` and 3.x ``pred_instances`` both become the same ImageDetections."""
    from types import SimpleNamespace

    backend = MMDetDetector.__new__(MMDetDetector)  # conversion only: no mmdet model is built
    masks = np.zeros((2, 4, 6), bool)
    masks[0, 1:3, 2:5] = True
    masks[1, 0, 0] = True
    rows = np.array([[2, 1, 5, 3, 0.9], [0, 0, 1, 1, 0.4]], np.float32)
    bbox_results = [np.zeros((0, 5), np.float32) for _ in range(80)]
    mask_results = [[] for _ in range(80)]
    bbox_results[7], mask_results[7] = rows, [masks[0], masks[1]]
    v2 = backend._to_detections((bbox_results, mask_results), (6, 4))
    pred = SimpleNamespace(scores=torch.tensor([0.9, 0.4]), labels=torch.tensor([7, 7]),
                           bboxes=torch.tensor(rows[:, :4]), masks=torch.from_numpy(masks))
    v3 = backend._to_detections(SimpleNamespace(pred_instances=SimpleNamespace(cpu=lambda: pred)), (6, 4))
    for dets in (v2, v3):
        assert list(dets.by_label) == [7]
        np.testing.assert_array_equal(dets.by_label[7].bboxes, rows)
        np.testing.assert_array_equal(dets.by_label[7].masks, masks)
