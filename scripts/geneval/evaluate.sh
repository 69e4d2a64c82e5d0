#!/usr/bin/env bash
# Evaluate a GenEval image folder with the official recipe (configs/eval/geneval.yaml), against GENEVAL_METADATA: the
# same prompts the rows generate from (scripts/geneval/lib/row.sh).
#   bash scripts/geneval/evaluate.sh IMAGE_DIR [OUT_DIR] [hydra overrides...]
# Weights: set IMAGECOT_CKPTS (default ckpts/) holding mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.pth and
# open_clip_vit_l14_openai.safetensors, or pass detector.checkpoint=... eval.color_classifier.checkpoint=...
set -euo pipefail
if [[ $# -lt 1 ]]; then
  echo "usage: $0 IMAGE_DIR [OUT_DIR] [overrides...]" >&2
  exit 2
fi
. "$(dirname "$0")/lib/row.sh"
IMAGE_DIR=$1
OUT_DIR=${2:-runs/eval_geneval/$(basename "$IMAGE_DIR")}
shift $(( $# >= 2 ? 2 : 1 ))
CKPTS=${IMAGECOT_CKPTS:-ckpts}
exec python "$ROOT/scripts/eval_geneval.py" \
  image_dir="$IMAGE_DIR" \
  run_dir="$OUT_DIR" \
  eval.metadata="$META" \
  eval.images_per_prompt="$IMAGES" \
  detector.checkpoint="$CKPTS/mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.pth" \
  eval.color_classifier.checkpoint="$CKPTS/open_clip_vit_l14_openai.safetensors" \
  name="$(basename "$IMAGE_DIR")" \
  "$@"
