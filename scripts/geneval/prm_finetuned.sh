#!/usr/bin/env bash
# Table 1 row "+ Ft. PRM (0.55)" (reference §10.1): the GenEval prompts x 4 samples with this test-time strategy, then the
# GenEval harness on those images. Rerunning resumes per (prompt, sample) slot.
# The fine-tuned PRM was never released: train it first (scripts/geneval/prm_judge.sh, docs/rehearsal.md).
#   bash scripts/geneval/prm_finetuned.sh [extra hydra overrides for scripts/run_search.py]
# Env: RUN (output folder) and those of scripts/geneval/lib/row.sh (GENEVAL_METADATA, IMAGECOT_CKPTS, SHOWO_CKPT, ...).
set -euo pipefail
. "$(dirname "$0")/lib/row.sh"
RUN=${RUN:-runs/geneval/prm_finetuned}
search_row prm_finetuned "$RUN" search=step_level reward=prm_finetuned "$@"
