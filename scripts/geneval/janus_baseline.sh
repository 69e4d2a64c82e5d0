#!/usr/bin/env bash
# Table 4 (IGC v2) row "Janus-Pro-7B (0.80)" (reference imagegen_cot.md §10.5): generate the 553 GenEval prompts x 4
# samples with Janus-Pro-7B and this strategy, then score the images with the GenEval harness. Rerunning resumes per
# (prompt, sample) slot.
#   bash scripts/geneval/janus_baseline.sh [extra hydra overrides for scripts/run_search.py, e.g. model=janus_pro_1b]
# Env: RUN (output folder), JANUS_PRO_7B (a local Janus-Pro-7B checkpoint, either layout:
#      configs/model/janus_pro_7b.yaml, docs/janus.md) and those of scripts/geneval/lib/row.sh
#      (GENEVAL_METADATA, GENEVAL_IMAGES_PER_PROMPT, IMAGECOT_DEVICE, IMAGECOT_CKPTS).
set -euo pipefail
. "$(dirname "$0")/lib/row.sh"
RUN=${RUN:-runs/geneval/janus_baseline}
search_row janus_baseline "$RUN" model=janus_pro_7b search=baseline reward=none "$@"
