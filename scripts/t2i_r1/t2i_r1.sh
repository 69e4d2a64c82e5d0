#!/usr/bin/env bash
# T2I-R1 tables, row "T2I-R1" (reference §10.2-10.3: CompBench mean 0.5281, WISE 0.54): BiCoT-GRPO from Janus-Pro-7B
# with the official settings (configs/experiment/t2i_r1.yaml: 1600 steps x 16 prompts x G = 8, four-expert reward,
# DeepSpeed ZeRO-3 on 8 GPUs), then the trained model writes its semantic CoT before every CompBench / WISE image.
# Every stage resumes (training from its newest checkpoint, generation per image).
#   bash scripts/t2i_r1/t2i_r1.sh [extra hydra overrides for scripts/train_grpo.py, e.g. policy.official_template=true]
# Env: RUN (output folder) and those of scripts/t2i_r1/lib/row.sh; POLICY (default janus: BiCoT) selects the ablations.
set -euo pipefail
. "$(dirname "$0")/lib/row.sh"
RUN=${RUN:-runs/t2i_r1/t2i_r1}
POLICY=${POLICY:-janus}
train_row "$RUN" policy="$POLICY" "$@"
COT=(+cot@model.cot=t2i_r1)
[[ $POLICY == janus_token ]] && COT=()  # token-only GRPO trains and generates without a plan
bench_row "$(basename "$RUN")" "$RUN" model=janus_pro_7b model.bundle.directory="$RUN/train/final" \
  model.bundle.dtype=bfloat16 "${COT[@]}"
