#!/usr/bin/env bash
# Score a T2I-CompBench image folder (<IMAGE_DIR>/<category>/samples/<prompt>_<NNNNNN>.png) for one table row.
#   bash scripts/t2i_r1/eval_compbench.sh IMAGE_DIR [OUT_DIR] [hydra overrides...]
# Weights: IMAGECOT_CKPTS (default ckpts/) holding blip-vqa-capfilt-large/ (HF dir), owlv2-base-patch16-ensemble/
# (HF dir) and open_clip_vit_b32_openai.bin (ViT-B-32-quickgelu), or pass compbench.vqa.path=... etc.
# Multi-GPU: ACCELERATE="accelerate launch --num_processes 8" bash scripts/t2i_r1/eval_compbench.sh ...
# Table: python -m eval.t2i_compbench.report OUT_DIR/summary.json
set -euo pipefail
if [[ $# -lt 1 ]]; then
  echo "usage: $0 IMAGE_DIR [OUT_DIR] [overrides...]" >&2
  exit 2
fi
IMAGE_DIR=$1
OUT_DIR=${2:-runs/eval_compbench/$(basename "$IMAGE_DIR")}
shift $(( $# >= 2 ? 2 : 1 ))
CKPTS=${IMAGECOT_CKPTS:-ckpts}
exec ${ACCELERATE:-python} "$(dirname "$0")/../eval_compbench.py" \
  image_dir="$IMAGE_DIR" \
  run_dir="$OUT_DIR" \
  name="$(basename "$IMAGE_DIR")" \
  compbench.vqa.path="$CKPTS/blip-vqa-capfilt-large" \
  compbench.detector.path="$CKPTS/owlv2-base-patch16-ensemble" \
  compbench.clip.weights="$CKPTS/open_clip_vit_b32_openai.bin" \
  "$@"
