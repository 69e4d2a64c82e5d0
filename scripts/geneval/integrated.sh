#!/usr/bin/env bash
# Table 3 row "Iterative DPO + PARM" (reference §10.3): the iteratively DPO'd Show-o searched with PARM at test time.
# Trains (or resumes) the iterative-DPO model with scripts/geneval/dpo_iterative.sh's settings, then runs
# scripts/run_search.py search=parm reward=parm on it and scores the images with the GenEval harness.
#   bash scripts/geneval/integrated.sh [extra hydra overrides for scripts/run_search.py]
# Env: as scripts/geneval/dpo.sh; DPO_RUN (the iterative-DPO run, default runs/geneval/dpo_iterative).
set -euo pipefail
. "$(dirname "$0")/lib/row.sh"
DPO_RUN=${DPO_RUN:-runs/geneval/dpo_iterative}
RUN=${RUN:-runs/geneval/integrated}
dpo_rounds "$DPO_RUN/train" 2
search_row integrated "$RUN" search=parm reward=parm model=showo_bundle \
  model.bundle.directory="$DPO_RUN/train/round_1/train/final" "$@"
