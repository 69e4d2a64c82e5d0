#!/usr/bin/env bash
# Table 1 row "+ PARM (0.67)" (reference §10.1): the GenEval prompts x 4 samples with this test-time strategy, then the
# GenEval harness on those images. Rerunning resumes per (prompt, sample) slot.
#   bash scripts/geneval/parm.sh [extra hydra overrides for scripts/run_search.py]
# Env: RUN (output folder) and those of scripts/geneval/lib/row.sh (GENEVAL_METADATA, IMAGECOT_CKPTS, SHOWO_CKPT, ...).
set -euo pipefail
. "$(dirname "$0")/lib/row.sh"
RUN=${RUN:-runs/geneval/parm}
search_row parm "$RUN" search=parm reward=parm "$@"
