#!/usr/bin/env bash
# Table 4 (IGC v2) row "Janus-Pro-7B + PARM (0.91)" (reference imagegen_cot.md §10.5): generate the 553 GenEval
# prompts x 4 samples with Janus-Pro-7B and this strategy, then score the images with the GenEval harness. Rerunning
# resumes per (prompt, sample) slot.
# PARM looks at the partial raster every model.sampling.rows_per_step rows (default 4: 6 steps), the rows below filled
# with a copy of the last generated row (janus/pipeline.py); how IGC applied PARM to raster-order models is not
# published, so this step definition is the project's.
#   bash scripts/geneval/janus_parm.sh [extra hydra overrides for scripts/run_search.py, e.g. model=janus_pro_1b]
# Env: GENEVAL_METADATA (evaluation_metadata.jsonl), RUN (output folder), IMAGECOT_CKPTS (judge + eval weights),
#      JANUS_PRO_7B (a local Janus-Pro-7B checkpoint, either layout: configs/model/janus_pro_7b.yaml, docs/janus.md).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
META=${GENEVAL_METADATA:-${IMAGECOT_CACHE:-$HOME/.cache/imagecot}/geneval/evaluation_metadata.jsonl}
RUN=${RUN:-runs/geneval/janus_parm}
python "$ROOT/scripts/run_search.py" model=janus_pro_7b search=parm reward=parm prompts="$META" images_per_prompt=4 seed=0 run_dir="$RUN/search" "$@"
bash "$ROOT/scripts/geneval/evaluate.sh" "$RUN/search/images" "$RUN/eval" name=janus_parm
