#!/usr/bin/env bash
# Judge a WISE image folder (<IMAGE_DIR>/<prompt_id>.png, legacy set) for one table row.
#   bash scripts/t2i_r1/eval_wise.sh IMAGE_DIR [OUT_DIR] [hydra overrides...]
# Default judge: a local VLM, IMAGECOT_CKPTS (default ckpts/)/Qwen2.5-VL-7B-Instruct (HF dir), or
# wise_judge.judge.path=...; the official GPT-4o judge: add wise_judge=openai (reads OPENAI_API_KEY).
# Multi-GPU: ACCELERATE="accelerate launch --num_processes 8" bash scripts/t2i_r1/eval_wise.sh ...
# Table: python -m eval.wise.report OUT_DIR/summary.json
set -euo pipefail
if [[ $# -lt 1 ]]; then
  echo "usage: $0 IMAGE_DIR [OUT_DIR] [overrides...]" >&2
  exit 2
fi
IMAGE_DIR=$1
OUT_DIR=${2:-runs/eval_wise/$(basename "$IMAGE_DIR")}
shift $(( $# >= 2 ? 2 : 1 ))
CKPTS=${IMAGECOT_CKPTS:-ckpts}
JUDGE=()
if [[ " $* " != *" wise_judge=openai "* ]]; then
  JUDGE=(wise_judge.judge.path="$CKPTS/Qwen2.5-VL-7B-Instruct")
fi
exec ${ACCELERATE:-python} "$(dirname "$0")/../eval_wise.py" \
  image_dir="$IMAGE_DIR" \
  run_dir="$OUT_DIR" \
  name="$(basename "$IMAGE_DIR")" \
  "${JUDGE[@]}" \
  "$@"
