#!/usr/bin/env bash
# T2I-R1 tables, row "Janus-Pro-7B" (reference §10.2-10.3: CompBench mean 0.3921, WISE 0.35): the base model, no
# semantic CoT, no training; CompBench and WISE images, then both harnesses. Rerunning resumes per image.
#   bash scripts/t2i_r1/janus_pro.sh [extra hydra overrides for scripts/generate_benchmark.py]
# Env: RUN (output folder) and those of scripts/t2i_r1/lib/row.sh (JANUS_PRO_7B, IMAGECOT_CKPTS, ...).
set -euo pipefail
. "$(dirname "$0")/lib/row.sh"
RUN=${RUN:-runs/t2i_r1/janus_pro}
bench_row janus_pro_7b "$RUN" model=janus_pro_7b "$@"
