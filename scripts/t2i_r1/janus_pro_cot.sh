#!/usr/bin/env bash
# Ablation row "Janus-Pro-7B + semantic CoT, no training": the base model writes T2I-R1's plan before each image
# (T = 1, top-k 50), which separates what the plan alone gives from what BiCoT-GRPO adds.
#   bash scripts/t2i_r1/janus_pro_cot.sh [extra hydra overrides for scripts/generate_benchmark.py]
# Env: RUN and those of scripts/t2i_r1/lib/row.sh.
set -euo pipefail
. "$(dirname "$0")/lib/row.sh"
RUN=${RUN:-runs/t2i_r1/janus_pro_cot}
bench_row janus_pro_7b_cot "$RUN" model=janus_pro_7b +cot@model.cot=t2i_r1 "$@"
