#!/usr/bin/env bash
# Table 3 row "Iterative DPO + PARM" (reference §10.3): the iteratively DPO'd Show-o searched with PARM at test time.
# Trains (or resumes) the iterative-DPO model with scripts/geneval/dpo_iterative.sh's settings, then runs
# scripts/run_search.py search=parm reward=parm on it and scores the images with the GenEval harness.
#   bash scripts/geneval/integrated.sh [extra hydra overrides for scripts/run_search.py]
# Env: as scripts/geneval/dpo.sh; DPO_RUN (the iterative-DPO run, default runs/geneval/dpo_iterative).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
META=${GENEVAL_METADATA:-${IMAGECOT_CACHE:-$HOME/.cache/imagecot}/geneval/evaluation_metadata.jsonl}
PROMPTS=${DPO_PROMPTS:?set DPO_PROMPTS to a text file of training prompts}
DPO_RUN=${DPO_RUN:-runs/geneval/dpo_iterative}
RUN=${RUN:-runs/geneval/integrated}
LAUNCHER=${LAUNCHER:-"[accelerate,launch,--config_file,$ROOT/configs/accelerate/ddp.yaml]"}
python "$ROOT/scripts/iterative_dpo.py" model=showo_256 device=cuda reward@iterative.judge=orm_finetuned \
  iterative.prompts="$PROMPTS" iterative.rounds=2 iterative.launcher="$LAUNCHER" run_dir="$DPO_RUN/train"
python "$ROOT/scripts/run_search.py" search=parm reward=parm model=showo_bundle \
  model.bundle.directory="$DPO_RUN/train/round_1/train/final" prompts="$META" images_per_prompt=4 seed=0 \
  run_dir="$RUN/search" "$@"
bash "$ROOT/scripts/geneval/evaluate.sh" "$RUN/search/images" "$RUN/eval" name=integrated
