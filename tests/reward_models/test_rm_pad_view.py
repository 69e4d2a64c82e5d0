"""The released judges' single padded image view (imagegen_cot.md §3: LLaVA-NeXT ``image_aspect_ratio="pad"``) as an
option of the LMM judge, and the default of judges converted from the LLaVA-NeXT format."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from reward_models.convert import ConvertOptions, convert_llava_next
from reward_models.lmm_judge import JUDGE_INFO, LMMYesNoJudge, pad_to_square, recorded_view
from reward_models.standin import build_llava_next_judge
from reward_models.tiny import build_tiny_llava_onevision

QUESTION = [{"role": "user", "content": "<image> Does this image show a red car?"}]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_llava_onevision(tmp_path_factory.mktemp("judge") / "hf")


def _images():
    rng = np.random.default_rng(0)
    wide = Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8))  # 40 x 24: padded top and bottom
    return [wide, Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))]


def test_pad_to_square_centres_the_image_on_the_mean_colour():
    image = Image.new("RGB", (40, 24), (200, 10, 10))
    square = np.asarray(pad_to_square(image, (127, 127, 127)))
    assert square.shape == (40, 40, 3)
    assert (square[:8] == 127).all() and (square[32:] == 127).all()  # (40 - 24) / 2 = 8 rows each side
    assert (square[8:32] == (200, 10, 10)).all()
    assert pad_to_square(Image.new("RGB", (5, 5)), (0, 0, 0)).size == (5, 5)


def test_pad_view_is_one_view_plus_the_newline_token(tiny_dir):
    """(size / patch)^2 features + image_newline per image, where anyres spends a base view, tiles and newlines."""
    pad = LMMYesNoJudge(tiny_dir, image_view="pad")
    anyres = LMMYesNoJudge(tiny_dir, image_view="anyres")
    images = _images()
    config = pad.model.config
    per_image = (config.vision_config.image_size // config.vision_config.patch_size) ** 2 + 1
    pad_batch = pad.build_inputs([QUESTION] * 2, images)
    any_batch = anyres.build_inputs([QUESTION] * 2, images)
    pad_tokens = pad.tokenizer([pad.render(QUESTION).replace("<image>", "<image>" * per_image)])["input_ids"][0]
    assert pad_batch["inputs_embeds"].shape[:2] == (2, len(pad_tokens))
    image_id = config.image_token_id
    assert int((any_batch["input_ids"][1] == image_id).sum()) > per_image  # base view + tiles
    assert pad_tokens.count(image_id) == per_image


def test_pad_view_features_are_transformers_single_view_packing(tiny_dir):
    """Our features = the model's own packing of one un-tiled view (base features, then image_newline): the LLaVA-NeXT
    "pad" layout. Compared on the embeddings the model receives."""
    judge = LMMYesNoJudge(tiny_dir, image_view="pad")
    images = _images()
    pixels = judge.pad_view_pixels(images)
    inner = judge.model.model
    with torch.inference_mode():
        # batch_num_images > 1 makes transformers skip anyres tiling: one view per image, packed with its newline
        packed = inner.get_image_features(pixel_values=pixels, image_sizes=torch.tensor([[32, 32]] * 2),
                                          vision_feature_layer=-1, vision_feature_select_strategy="full",
                                          batch_num_images=torch.tensor([2]), output_hidden_states=True).pooler_output
        batch = judge.build_inputs([QUESTION] * 2, images)
    for row, features in enumerate(packed):
        ids = judge.tokenizer([judge.render(QUESTION).replace("<image>", "<image>" * features.shape[0])],
                              padding=False)["input_ids"][0]
        embeds = batch["inputs_embeds"][row][batch["attention_mask"][row].bool()]
        slots = torch.tensor(ids) == judge.model.config.image_token_id
        # same float32 operations in the same order: equal up to nothing
        assert torch.equal(embeds[slots], features)


def test_pad_view_pixels_follow_llava_next_preprocessing(tiny_dir):
    judge = LMMYesNoJudge(tiny_dir, image_view="pad")
    wide = Image.new("RGB", (40, 24), (255, 0, 0))
    pixels = judge.pad_view_pixels([wide])[0]  # [3, 32, 32], normalised with the processor's mean / std
    mean = np.asarray(judge.processor.image_processor.image_mean)
    std = np.asarray(judge.processor.image_processor.image_std)
    background = (np.floor(mean * 255) / 255 - mean) / std  # expand2square fills int(mean * 255)
    assert torch.allclose(pixels[:, 0, 0], torch.tensor(background, dtype=torch.float32), atol=1e-6)
    red = (np.array([1.0, 0.0, 0.0]) - mean) / std
    assert torch.allclose(pixels[:, 16, 16], torch.tensor(red, dtype=torch.float32), atol=1e-6)


def test_pad_and_anyres_judges_score_and_explain(tiny_dir):
    for view in ("pad", "anyres"):
        judge = LMMYesNoJudge(tiny_dir, image_view=view)
        out = judge.score(["a red car"] * 2, _images())
        singles = [judge.score(["a red car"], [im]).scores for im in _images()]
        assert torch.allclose(out.scores, torch.cat(singles), rtol=1e-4, atol=1e-7)  # left padding: batch == singles
        text = judge.generate_text([QUESTION], _images()[:1], max_new_tokens=3)
        assert text.cost.generated_tokens <= 3 and len(text.texts) == 1


def test_converted_released_judges_default_to_the_pad_view(tmp_path):
    source = build_llava_next_judge(tmp_path / "llava_next")
    assert json.loads((source / "config.json").read_text())["model_type"] == "llava_qwen"
    converted = convert_llava_next(source, tmp_path / "hf")
    info = json.loads((converted / JUDGE_INFO).read_text())
    assert info == {"source": "llava_next", "source_image_aspect_ratio": "anyres_max_9", "image_view": "pad"}
    assert recorded_view(converted) == "pad" and LMMYesNoJudge(converted).image_view == "pad"
    assert LMMYesNoJudge(converted, image_view="anyres").image_view == "anyres"  # still an option
    anyres = convert_llava_next(source, tmp_path / "hf_anyres", ConvertOptions(image_view="anyres"))
    assert LMMYesNoJudge(anyres).image_view == "anyres"
    assert recorded_view(tmp_path) == "anyres"  # a directory without the record: transformers' view
    with pytest.raises(ValueError, match="image_view"):
        LMMYesNoJudge(converted, image_view="square")
