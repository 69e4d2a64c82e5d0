"""Tiny stand-ins of every real-scale download, in the official formats, for a rehearsal of scripts/geneval/*.sh.

    python scripts/make_rehearsal_checkpoints.py OUT            # ~1 min on a CPU, ~10 MB
    set -a && . OUT/rehearsal.env && set +a                     # point the row scripts at the stand-ins
    RUN=OUT/runs/parm bash scripts/geneval/parm.sh              # any row script, unchanged

Writes, into OUT (docs/rehearsal.md):

* ``show-o/``, ``magvitv2/``, ``phi-1_5/`` — laid out like ``showlab/show-o``, ``showlab/magvitv2`` and
  ``microsoft/phi-1_5``'s tokenizer (:mod:`showo.standin`);
* ``janus-pro/`` — a tiny random Janus-Pro in DeepSeek's released layout (``JANUS_PRO_7B``, the Janus rows;
  :mod:`janus.tiny`);
* ``llava_next/<judge>/`` — the released judges (``llava-onevision-qwen2-7b-ov``, ``orm_ft``, ``parm``) in the
  LLaVA-NeXT trainer's format, converted by :func:`reward_models.convert.convert_llava_next` (the converter of
  ``scripts/convert_llava_next.py``) into ``ckpts/hf/<judge>/``; the judges trained here (``prm_ft``, ``parmpp``)
  straight in transformers' format (:mod:`reward_models.standin`);
* ``ckpts/mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.pth`` + ``ckpts/open_clip_vit_l14_openai.safetensors`` —
  GenEval's detector (mmdetection 2.x checkpoint) and colour CLIP (OpenAI names), with config JSONs for their tiny
  widths (:mod:`eval.geneval.standin`);
* ``geneval/evaluation_metadata.jsonl`` (2 GenEval prompts) + ``object_names.txt``; ``prompts/train.txt`` (training
  prompts of DPO; its first 4 in ``train_small.txt`` for the PARM++ data recipe, and as GenEval-style metadata in
  ``train_small_metadata.jsonl`` for the PRM roll-out labelling, scripts/build_prm_data.py); ``t2i_tokens/`` (a tokenized
  text-to-image dataset of stand-in images);
* ``rehearsal.env`` — the environment variables the row scripts and configs read, pointing at all of the above.

The judges' yes/no answers are calibrated on the stand-in Show-o's own images of these prompts, so that every recipe
that needs both answers for one prompt (DPO pairs, self-correction groups) has some.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

DETECTOR = "mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.pth"  # the names scripts/geneval/evaluate.sh expects
CLIP = "open_clip_vit_l14_openai.safetensors"
RELEASED_JUDGES = ("llava-onevision-qwen2-7b-ov", "orm_ft", "parm")  # LLaVA-NeXT downloads (reference §11.1)
TRAINED_JUDGES = ("prm_ft", "parmpp")  # never released: trained with scripts/train_judge.py at real scale
GENEVAL_LINES = (
    {"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"},
    {"tag": "colors", "include": [{"class": "dog", "count": 1, "color": "purple"}], "prompt": "a photo of a purple dog"},
)  # never a training prompt (training_prompts() draws red / blue / green / yellow): the data recipes refuse eval prompts
COLORS = ("red", "blue", "green", "yellow")
OBJECTS = ("cat", "dog", "car", "cup", "bench", "clock")


def training_prompts() -> list[str]:
    """12 GenEval-style training prompts (one DPO global batch of 10 pairs needs at least 10 mixed prompts)."""
    return [f"a photo of a {c} {o}" for c, o in zip(COLORS * 3, OBJECTS * 2)]


def training_metadata(prompts: list[str]) -> list[dict]:
    """GenEval-style metadata lines (tag ``colors``) of ``training_prompts()``' prompts: what the PRM roll-out labeller
    (scripts/build_prm_data.py) judges against."""
    pairs = {f"a photo of a {c} {o}": (c, o) for c, o in zip(COLORS * 3, OBJECTS * 2)}
    return [{"tag": "colors", "include": [{"class": pairs[p][1], "count": 1, "color": pairs[p][0]}], "prompt": p}
            for p in prompts]


def write_prompts(out: Path) -> tuple[Path, Path]:
    from eval.geneval.prompts import COCO_CLASSES, load_prompt_set

    metadata = out / "geneval" / "evaluation_metadata.jsonl"
    metadata.parent.mkdir(parents=True, exist_ok=True)
    metadata.write_text("".join(json.dumps(line) + "\n" for line in GENEVAL_LINES))
    (metadata.parent / "object_names.txt").write_text("\n".join(COCO_CLASSES) + "\n")
    load_prompt_set(metadata)  # the stand-in metadata passes the harness's validation
    train = out / "prompts" / "train.txt"
    train.parent.mkdir(parents=True, exist_ok=True)
    train.write_text("\n".join(training_prompts()) + "\n")
    # the recipes that need no full batch of pairs (PARM++ groups, PRM roll-outs) rehearse on a third of them
    (train.parent / "train_small.txt").write_text("\n".join(training_prompts()[:4]) + "\n")
    (train.parent / "train_small_metadata.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in training_metadata(training_prompts()[:4])))
    return metadata, train


def build_generator(out: Path, prompts: list[str]):
    """Show-o + MAGVIT-v2 + tokenizer stand-ins; returns some of their images for the judges' calibration (their codes
    also make ``t2i_tokens/``, a tokenized text-to-image dataset for ``scripts/train_showo.py``)."""
    from common.seeding import generators
    from showo.data import write_tokenized_dataset
    from showo.factory import load_showo
    from showo.scheduler import MaskGITScheduler
    from showo.standin import build_phi_tokenizer, build_standin_magvit, build_standin_showo

    build_phi_tokenizer(out / "phi-1_5", prompts * 3)
    build_standin_magvit(out / "magvitv2")
    build_standin_showo(out / "show-o", out / "phi-1_5")
    bundle = load_showo(out / "show-o", tokenizer=out / "phi-1_5", vq_pretrained=out / "magvitv2")
    pipe = bundle.pipeline(MaskGITScheduler())
    out_images = pipe(prompts * 4, guidance_scale=1.75, num_inference_steps=18,
                      generator=generators(range(4 * len(prompts))))
    write_tokenized_dataset(out / "t2i_tokens", prompts * 4, out_images.tokens.cpu())
    return out_images.images


def build_janus(out: Path, prompts: list[str]) -> Path:
    """A tiny random Janus-Pro in the released (DeepSeek) layout: what ``JANUS_PRO_7B`` names for the Janus rows."""
    from janus.tiny import build_tiny_janus, write_deepseek_layout

    return write_deepseek_layout(build_tiny_janus(prompts, seed=0), out / "janus-pro")


def build_judges(out: Path, prompts: list[str], images) -> Path:
    from reward_models.convert import convert_llava_next
    from reward_models.standin import build_judge, build_llava_next_judge

    ckpts = out / "ckpts"
    calibration = [p for p in prompts for _ in range(len(images) // len(prompts))]
    for seed, name in enumerate(RELEASED_JUDGES):
        source = build_llava_next_judge(out / "llava_next" / name, seed=seed, prompts=calibration, images=images)
        convert_llava_next(source, ckpts / "hf" / name)
    for seed, name in enumerate(TRAINED_JUDGES, start=len(RELEASED_JUDGES)):
        build_judge(ckpts / "hf" / name, seed=seed, prompts=calibration, images=images)
    return ckpts


def build_geneval(ckpts: Path) -> tuple[Path, Path]:
    from eval.geneval.standin import build_standin_clip, build_standin_mask2former

    detector_config, clip_config = ckpts / "mask2former_config.json", ckpts / "imagecot-rehearsal-clip.json"
    build_standin_mask2former(ckpts / DETECTOR, detector_config)
    build_standin_clip(ckpts / CLIP, clip_config)
    return detector_config, clip_config


def write_env(out: Path, values: dict[str, str]) -> Path:
    path = out / "rehearsal.env"
    path.write_text("# Stand-in checkpoints of scripts/make_rehearsal_checkpoints.py: `set -a && . THIS && set +a`\n"
                    + "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items()))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="new folder for the stand-ins (must not exist)")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    if out.exists():
        print(f"error: {out} already exists (choose a new folder)", file=sys.stderr)
        return 1
    metadata, train = write_prompts(out)
    prompts = [line["prompt"] for line in GENEVAL_LINES] + train.read_text().split("\n")[:-1]
    images = build_generator(out, prompts)
    ckpts = build_judges(out, prompts, images)
    janus = build_janus(out, prompts)
    detector_config, clip_config = build_geneval(ckpts)
    env = write_env(out, {
        "SHOWO_CKPT": str(out / "show-o"), "JANUS_PRO_7B": str(janus), "MAGVIT_CKPT": str(out / "magvitv2"), "PHI_TOKENIZER": str(out / "phi-1_5"),
        "IMAGECOT_CKPTS": str(ckpts), "GENEVAL_DETECTOR_CONFIG": str(detector_config),
        "GENEVAL_CLIP_MODEL": str(clip_config), "GENEVAL_METADATA": str(metadata), "GENEVAL_IMAGES_PER_PROMPT": "2",
        "DPO_PROMPTS": str(train), "PARMPP_PROMPTS": str(train.parent / "train_small.txt"),
        "PRM_PROMPTS": str(train.parent / "train_small_metadata.jsonl"), "SC_STEPS": "2",
        "T2I_TOKENS": str(out / "t2i_tokens"),
        "IMAGECOT_DEVICE": "cpu", "IMAGECOT_THREADS": "1", "LAUNCHER": "null",
    })
    print(f"wrote {out}; use it with: set -a && . {env} && set +a")
    return 0


if __name__ == "__main__":
    sys.exit(main())
