#!/usr/bin/env bash
# Table 1 row "DPO" (reference §10.1, §8.1): one round of DPO on yes/no pairs judged by the fine-tuned ORM, then the
# GenEval prompts x 4 samples from the DPO'd model (no search), scored with the GenEval harness.
# Pairs are built here (generate N=20 per training prompt -> ORM -> one "yes" vs one "no"): the paper's initial pair
# file was never released. Rerunning resumes every stage (generation, judging, training, GenEval images).
#   bash scripts/geneval/dpo.sh [extra hydra overrides for scripts/iterative_dpo.py, e.g. dpo=ipo]
# Env: DPO_PROMPTS (training prompts, one per line; the paper used the 13K ORM prompts), GENEVAL_METADATA, RUN,
#      IMAGECOT_CKPTS (judge + eval weights), SHOWO_CKPT / MAGVIT_CKPT / PHI_TOKENIZER (configs/model/showo_256.yaml),
#      LAUNCHER (training launcher, default: accelerate with configs/accelerate/ddp.yaml).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
META=${GENEVAL_METADATA:-${IMAGECOT_CACHE:-$HOME/.cache/imagecot}/geneval/evaluation_metadata.jsonl}
PROMPTS=${DPO_PROMPTS:?set DPO_PROMPTS to a text file of training prompts}
RUN=${RUN:-runs/geneval/dpo}
ROUNDS=${ROUNDS:-1}
LAUNCHER=${LAUNCHER:-"[accelerate,launch,--config_file,$ROOT/configs/accelerate/ddp.yaml]"}
python "$ROOT/scripts/iterative_dpo.py" model=showo_256 device=cuda reward@iterative.judge=orm_finetuned \
  iterative.prompts="$PROMPTS" iterative.rounds="$ROUNDS" iterative.launcher="$LAUNCHER" run_dir="$RUN/train" "$@"
FINAL="$RUN/train/round_$((ROUNDS - 1))/train/final"
python "$ROOT/scripts/run_search.py" search=baseline reward=none model=showo_bundle model.bundle.directory="$FINAL" \
  prompts="$META" images_per_prompt=4 seed=0 run_dir="$RUN/search"
bash "$ROOT/scripts/geneval/evaluate.sh" "$RUN/search/images" "$RUN/eval" name="$(basename "$RUN")"
