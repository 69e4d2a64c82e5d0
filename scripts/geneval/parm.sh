#!/usr/bin/env bash
# Table 1 row "+ PARM (0.67)" (reference §10.1): generate the 553 GenEval prompts x 4 samples with this test-time strategy,
# then score the images with the GenEval harness. Rerunning resumes per (prompt, sample) slot.
#   bash scripts/geneval/parm.sh [extra hydra overrides for scripts/run_search.py, e.g. model=showo_bundle]
# Env: GENEVAL_METADATA (evaluation_metadata.jsonl), RUN (output folder), IMAGECOT_CKPTS (judge + eval weights),
#      SHOWO_CKPT / MAGVIT_CKPT / PHI_TOKENIZER (configs/model/showo_256.yaml).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
META=${GENEVAL_METADATA:-${IMAGECOT_CACHE:-$HOME/.cache/imagecot}/geneval/evaluation_metadata.jsonl}
RUN=${RUN:-runs/geneval/parm}
python "$ROOT/scripts/run_search.py" search=parm reward=parm prompts="$META" images_per_prompt=4 seed=0 run_dir="$RUN/search" "$@"
bash "$ROOT/scripts/geneval/evaluate.sh" "$RUN/search/images" "$RUN/eval" name=parm
