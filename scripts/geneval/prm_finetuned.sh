#!/usr/bin/env bash
# Table 1 row "+ Ft. PRM (0.55)" (reference §10.1): the GenEval prompts x 4 samples with this test-time strategy, then the
# GenEval harness on those images. Rerunning resumes per (prompt, sample) slot.
# The fine-tuned PRM was never released; this row reads it from $IMAGECOT_CKPTS/hf/prm_ft (configs/reward/prm_finetuned.yaml).
# Build it first (docs/reward_models.md, "Fine-tuned PRM data"; paper §5: step i labelled "yes" iff any of 4 roll-outs
# from it is accepted by GenEval's judge), from PRM_PROMPTS (GenEval-style metadata JSONL of TRAINING prompts):
#   python scripts/build_prm_data.py prompts="$PRM_PROMPTS" run_dir=runs/prm/data
#   accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml scripts/train_judge.py judge_data=prm \
#     judge_data.paths=[runs/prm/data/prm.jsonl] mixed_precision=bf16 device=cuda run_dir=runs/prm/judge
#   ln -s "$PWD/runs/prm/judge/final" "$IMAGECOT_CKPTS/hf/prm_ft"
#   bash scripts/geneval/prm_finetuned.sh [extra hydra overrides for scripts/run_search.py]
# Env: RUN (output folder) and those of scripts/geneval/lib/row.sh (GENEVAL_METADATA, IMAGECOT_CKPTS, SHOWO_CKPT, ...).
set -euo pipefail
. "$(dirname "$0")/lib/row.sh"
RUN=${RUN:-runs/geneval/prm_finetuned}
search_row prm_finetuned "$RUN" search=step_level reward=prm_finetuned "$@"
