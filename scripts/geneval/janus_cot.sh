#!/usr/bin/env bash
# T2I-R1 row "Janus-Pro-7B + semantic CoT" (reference t2i_r1.md §3; no GenEval number is published for it): generate
# the 553 GenEval prompts x 4 samples with Janus-Pro-7B and this strategy, then score the images with the GenEval
# harness. Rerunning resumes per (prompt, sample) slot.
# Each image writes its plan first (T2I-R1 reasoning prompt, T = 1, top-k 50); the plan goes beside the image as
# samples/<k>.cot.txt.
#   bash scripts/geneval/janus_cot.sh [extra hydra overrides for scripts/run_search.py, e.g. model=janus_pro_1b]
# Env: RUN (output folder), JANUS_PRO_7B (a local Janus-Pro-7B checkpoint, either layout:
#      configs/model/janus_pro_7b.yaml, docs/janus.md) and those of scripts/geneval/lib/row.sh
#      (GENEVAL_METADATA, GENEVAL_IMAGES_PER_PROMPT, IMAGECOT_DEVICE, IMAGECOT_CKPTS).
set -euo pipefail
. "$(dirname "$0")/lib/row.sh"
RUN=${RUN:-runs/geneval/janus_cot}
search_row janus_cot "$RUN" model=janus_pro_7b search=baseline reward=none +cot@model.cot=t2i_r1 "$@"
