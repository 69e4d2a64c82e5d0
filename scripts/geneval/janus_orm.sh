#!/usr/bin/env bash
# Table 4 (IGC v2) row "Janus-Pro-7B + Ft. ORM (0.89)" (reference imagegen_cot.md §10.5; best-of-20): generate the 553
# GenEval prompts x 4 samples with Janus-Pro-7B and this strategy, then score the images with the GenEval harness.
# Rerunning resumes per (prompt, sample) slot.
# Add +cot@model.cot=t2i_r1 for best-of-N over (plan, image) pairs.
#   bash scripts/geneval/janus_orm.sh [extra hydra overrides for scripts/run_search.py, e.g. model=janus_pro_1b]
# Env: GENEVAL_METADATA (evaluation_metadata.jsonl), RUN (output folder), IMAGECOT_CKPTS (judge + eval weights),
#      JANUS_PRO_7B (a local Janus-Pro-7B checkpoint, either layout: configs/model/janus_pro_7b.yaml, docs/janus.md).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
META=${GENEVAL_METADATA:-${IMAGECOT_CACHE:-$HOME/.cache/imagecot}/geneval/evaluation_metadata.jsonl}
RUN=${RUN:-runs/geneval/janus_orm}
python "$ROOT/scripts/run_search.py" model=janus_pro_7b search=best_of_n reward=orm_finetuned prompts="$META" images_per_prompt=4 seed=0 run_dir="$RUN/search" "$@"
bash "$ROOT/scripts/geneval/evaluate.sh" "$RUN/search/images" "$RUN/eval" name=janus_orm
