#!/usr/bin/env bash
# Table 5 row "+ PARM++ (with reflection) (0.70)" (reference §10.4, §7): PARM++ on a self-correction fine-tuned Show-o,
# which searches (PARM, N = 20) and corrects (at most 3 reflections), as in the paper's Table 5. The fine-tuned model
# (never released) is built here, each stage resumable:
#   1. scripts/build_reflection_data.py: 20 images per PARMPP_PROMPTS line from the base Show-o, the PARM++ judge's
#      reflection on each ("yes", or "no" + its explanation), groups (prompt, rejected image, explanation, accepted one)
#   2. scripts/train_showo.py dataset=self_correction: the self-correction fine-tuning (paper: 10K groups)
#   3. scripts/run_search.py search=parmpp reward=parmpp with the fine-tuned model, then the GenEval harness.
#   bash scripts/geneval/parmpp.sh [extra hydra overrides for scripts/run_search.py]
# Env: PARMPP_PROMPTS (training prompts, one per line; never the GenEval prompts), SC_STEPS (fine-tuning steps, default
#      1000 = one epoch of 10K groups at 10 per step; the paper gives none), RUN, and those of scripts/geneval/lib/row.sh.
set -euo pipefail
. "$(dirname "$0")/lib/row.sh"
PROMPTS=${PARMPP_PROMPTS:?set PARMPP_PROMPTS to a text file of training prompts}
RUN=${RUN:-runs/geneval/parmpp}
python "$ROOT/scripts/build_reflection_data.py" prompts="$PROMPTS" run_dir="$RUN/data"
python "$ROOT/scripts/train_showo.py" model=showo_256 dataset=self_correction \
  dataset.directory="$RUN/data/self_correction" device="$IMAGECOT_DEVICE" max_steps="${SC_STEPS:-1000}" \
  run_dir="$RUN/corrector"
search_row parmpp "$RUN" search=parmpp reward=parmpp model=showo_bundle model.bundle.directory="$RUN/corrector/final" \
  search.corrector=searched "$@"
