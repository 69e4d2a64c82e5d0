"""Tiny random models of every class the T2I-CompBench / WISE harnesses load, saved as local directories.

Built in the tests (nothing downloaded, ~1 s each): a BLIP VQA model with a small BERT word-piece vocabulary, an
OWL-ViT detector with a character-level CLIP BPE tokenizer, an open_clip model from a registered tiny config, and
(from :mod:`reward_models.tiny`) a LLaVA-OneVision VLM for the WISE judge.
"""
from __future__ import annotations

import json
from pathlib import Path

import open_clip
import torch

BLIP_WORDS = ("yes no a an the green blue red bench bowl cake cat dog cup chair table book top left right side "
              "of on near next to and with plate bottle").split()
TINY_CLIP_ARCH = "imagecot-test-tiny-clip-b32"
TINY_CLIP_CONFIG = {
    "embed_dim": 16,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def build_tiny_blip(directory: str | Path, seed: int = 0) -> Path:
    """A BlipForQuestionAnswering (32-px images, 1 layer each) and its BERT tokenizer with [DEC] / [ENC]."""
    from transformers import BertTokenizer, BlipConfig, BlipForQuestionAnswering

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "?", *BLIP_WORDS, "[DEC]", "[ENC]"]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    tokenizer.save_pretrained(directory)
    text = dict(vocab_size=len(vocab), hidden_size=32, encoder_hidden_size=32, intermediate_size=64,
                num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=64,
                bos_token_id=vocab.index("[DEC]"), pad_token_id=0, sep_token_id=vocab.index("[SEP]"),
                initializer_range=0.5)
    # Large random weights (0.5 instead of 0.02 / 1e-10) so that answers visibly depend on image and question.
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                  patch_size=16, initializer_range=0.5)
    config = BlipConfig(text_config=text, vision_config=vision, projection_dim=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BlipForQuestionAnswering(config).eval()
    model.save_pretrained(directory)
    return directory


def _char_clip_tokenizer():
    """A CLIP BPE tokenizer without merges: every word is spelled in byte-level characters."""
    from transformers import CLIPTokenizer

    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [" "]
    vocab = {}
    for c in chars:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[])


def build_tiny_owl(directory: str | Path, seed: int = 0) -> Path:
    """An OwlViTForObjectDetection (32-px images, 16 patches) with its processor."""
    from transformers import OwlViTConfig, OwlViTForObjectDetection, OwlViTImageProcessor, OwlViTProcessor

    directory = Path(directory)
    tokenizer = _char_clip_tokenizer()
    text = dict(vocab_size=len(tokenizer.get_vocab()), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=16, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                  patch_size=8)
    config = OwlViTConfig(text_config=text, vision_config=vision, projection_dim=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = OwlViTForObjectDetection(config).eval()
    model.save_pretrained(directory)
    image_processor = OwlViTImageProcessor(size={"height": 32, "width": 32}, crop_size={"height": 32, "width": 32})
    OwlViTProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    return directory


def tiny_open_clip(directory: str | Path, arch: str = TINY_CLIP_ARCH, seed: int = 0, quick_gelu: bool = True):
    """A tiny random ViT open_clip model, its config registered under ``arch`` (the JSON written to ``directory``).

    Every ``arch`` name must keep one config for the whole test session: open_clip's registry is global.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / f"{arch}.json"
    config.write_text(json.dumps({**TINY_CLIP_CONFIG, "quick_gelu": quick_gelu}))
    open_clip.add_model_config(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return open_clip.create_model(arch, pretrained=None)


def build_tiny_clip(directory: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """(model config JSON, weights) of a tiny QuickGELU ViT open_clip model (registered under TINY_CLIP_ARCH)."""
    model = tiny_open_clip(directory, seed=seed)
    weights = Path(directory) / "tiny_clip.pt"
    torch.save(model.state_dict(), weights)
    return Path(directory) / f"{TINY_CLIP_ARCH}.json", weights


QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]


def build_tiny_qwen2_5_vl(directory: str | Path, seed: int = 0) -> Path:
    """A Qwen2.5-VL (the default WISE judge's class): 1-layer vision tower and language model, a byte-level BPE
    tokenizer trained here on the WISE rubric, the Qwen chat format, 56-px images."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration,
                              Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    from eval.wise.rubric import SYSTEM_PROMPT, render_rubric

    directory = Path(directory)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=QWEN_SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator([render_rubric("p", "e"), SYSTEM_PROMPT, "Consistency: 2 Realism: 1"] * 3, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        additional_special_tokens=QWEN_SPECIAL[1:])
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL}
    text = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
                bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    vision = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=14,
                  spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[0])
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                              video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                              vision_end_token_id=ids["<|vision_end|>"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(directory)
    image_processor = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=56 * 56, patch_size=14,
                                            merge_size=2, temporal_patch_size=2)
    video_processor = Qwen2VLVideoProcessor(min_pixels=56 * 56, max_pixels=56 * 56)
    Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
                        chat_template=QWEN_CHAT_TEMPLATE).save_pretrained(directory)
    return directory
