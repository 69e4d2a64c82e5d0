#!/usr/bin/env bash
# Table 1 row "Iterative DPO" (reference §10.1, §8.1): two rounds (round 2 generates with the round-1 model, is judged
# again, and trains from it with it as the reference, as the shipped config), then GenEval without search.
#   bash scripts/geneval/dpo_iterative.sh [extra hydra overrides for scripts/iterative_dpo.py]
# Env: as scripts/geneval/dpo.sh.
set -euo pipefail
RUN=${RUN:-runs/geneval/dpo_iterative} ROUNDS=2 exec bash "$(dirname "$0")/dpo.sh" "$@"
