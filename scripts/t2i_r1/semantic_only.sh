#!/usr/bin/env bash
# T2I-R1 ablation row "semantic-level CoT only": GRPO on the CoT tokens alone (the image tokens are sampled from the
# plan-conditioned prompt but get no gradient), otherwise the official settings; generated with the plan.
#   bash scripts/t2i_r1/semantic_only.sh [extra hydra overrides for scripts/train_grpo.py]
set -euo pipefail
RUN=${RUN:-runs/t2i_r1/semantic_only} POLICY=janus_semantic exec bash "$(dirname "$0")/t2i_r1.sh" "$@"
