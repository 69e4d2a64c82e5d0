"""Tiny stand-ins for GenEval's two downloads, in their official formats (for rehearsals on a CPU).

* :func:`build_standin_mask2former` — an mmdetection 2.x checkpoint of the Mask2Former architecture
  (``{"meta": ..., "state_dict": ...}`` under mmdet 2.x key names, as ``mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco``
  ships), with narrow widths written to a config JSON (:meth:`Mask2FormerConfig.from_json`), since an mmdetection
  checkpoint carries no architecture the port can read.
* :func:`build_standin_clip` — OpenAI CLIP weights (the state-dict names of OpenAI's ``ViT-L-14.pt``, which open_clip
  keeps) as safetensors, with an open_clip model config JSON (QuickGELU, as the OpenAI models) for its tiny widths.

Random weights, seeded. The detector's 80 COCO classes and the CLIP tokenizer (49,408 BPE tokens, 77 positions) are
the real ones, so GenEval's judge and colour classifier run unchanged.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from eval.geneval.detectors import GENEVAL_CLASS_NAMES
from eval.geneval.mask2former import Mask2Former, Mask2FormerConfig, mmdet3_to_mmdet2_key

PathLike = str | os.PathLike

__all__ = ["STANDIN_CLIP", "STANDIN_MASK2FORMER", "build_standin_clip", "build_standin_mask2former"]

# One block per Swin stage, one encoder / decoder layer, 10 queries: the GenEval code path at ~0.4 M parameters.
STANDIN_MASK2FORMER = Mask2FormerConfig(embed_dims=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), channels=32,
                                        encoder_layers=1, encoder_heads=2, encoder_ffn=32, decoder_layers=1,
                                        decoder_heads=2, decoder_ffn=32, num_feats=16, gn_groups=8, num_queries=10,
                                        max_per_image=10)
STANDIN_CLIP = {
    "embed_dim": 16,
    "quick_gelu": True,  # OpenAI weights use QuickGELU; the colour classifier refuses anything else
    "vision_cfg": {"image_size": 224, "layers": 1, "width": 32, "head_width": 16, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def build_standin_mask2former(checkpoint: PathLike, config_path: PathLike,
                              config: Mask2FormerConfig = STANDIN_MASK2FORMER, seed: int = 0) -> Path:
    """Write a random Mask2Former as an mmdetection 2.x ``.pth`` and its config JSON; returns the checkpoint path.

    Weights are drawn with a large spread (normal, std 0.5) so that some queries pass GenEval's 0.3 threshold and the
    judge's counting and colour paths run, not only its "nothing detected" path.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Mask2Former(config)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if param.dim() > 1:
                    param.normal_(0.0, 0.5)
    state = {mmdet3_to_mmdet2_key(k): v.contiguous() for k, v in model.state_dict().items()}
    meta = {"mmdet_version": "2.25.0", "CLASSES": tuple(GENEVAL_CLASS_NAMES), "epoch": 50}
    Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"meta": meta, "state_dict": state}, checkpoint)
    Path(config_path).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    return Path(checkpoint)


def build_standin_clip(weights: PathLike, config_path: PathLike, seed: int = 0) -> Path:
    """Write a random QuickGELU CLIP's OpenAI-named weights (safetensors) and its open_clip config; returns
    ``weights``. The config's file stem is the architecture name open_clip registers it under."""
    import open_clip

    config_path = Path(config_path)
    config_path.write_text(json.dumps(STANDIN_CLIP, indent=2) + "\n")
    open_clip.add_model_config(config_path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model(config_path.stem, pretrained=None)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    return Path(weights)
