#!/usr/bin/env bash
# Table 1 row "DPO" (reference §10.1, §8.1): one round of DPO on yes/no pairs judged by the fine-tuned ORM, then the
# GenEval prompts x 4 samples from the DPO'd model (no search; Show-o's 18 steps and guidance 1.75), scored with the
# GenEval harness. Pairs are built here (generate N=20 per training prompt -> ORM -> one "yes" vs one "no"): the paper's
# initial pair file was never released. Rerunning resumes every stage (generation, judging, training, GenEval images).
#   bash scripts/geneval/dpo.sh [extra hydra overrides for scripts/iterative_dpo.py, e.g. dpo=ipo]
# Env: DPO_PROMPTS (training prompts, one per line; the paper used the 13K ORM prompts), RUN, ROUNDS (default 1),
#      DPO_PROCESSES / LAUNCHER (training processes: see dpo_rounds in scripts/geneval/lib/row.sh), and those of
#      scripts/geneval/lib/row.sh (GENEVAL_METADATA, IMAGECOT_CKPTS, SHOWO_CKPT / MAGVIT_CKPT / PHI_TOKENIZER, ...).
set -euo pipefail
. "$(dirname "$0")/lib/row.sh"
RUN=${RUN:-runs/geneval/dpo}
ROUNDS=${ROUNDS:-1}
dpo_rounds "$RUN/train" "$ROUNDS" "$@"
search_row "$(basename "$RUN")" "$RUN" search=baseline reward=none model=showo_bundle \
  model.bundle.directory="$RUN/train/round_$((ROUNDS - 1))/train/final"
