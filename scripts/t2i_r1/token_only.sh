#!/usr/bin/env bash
# T2I-R1 ablation row "token-level CoT only": GRPO on the image tokens alone (no semantic CoT, the image prompt is the
# raw prompt), otherwise the official settings; generated without a plan.
#   bash scripts/t2i_r1/token_only.sh [extra hydra overrides for scripts/train_grpo.py]
set -euo pipefail
RUN=${RUN:-runs/t2i_r1/token_only} POLICY=janus_token exec bash "$(dirname "$0")/t2i_r1.sh" "$@"
