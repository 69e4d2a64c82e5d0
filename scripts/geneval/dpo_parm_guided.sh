#!/usr/bin/env bash
# Table 3 row "Iterative DPO w/ PARM guidance" (reference §9, §10.3): iterative DPO whose every round adds the online
# reward-guidance term judged by PARM (configs/dpo/parm_guided.yaml). Unlike the released code, the term has a
# gradient path (dpo/guidance.py, bug #7 / issue #22), so results are not those of the release: label them so.
# Ablation: scripts/geneval/dpo_iterative.sh (same pairs, dpo=sigmoid).
#   bash scripts/geneval/dpo_parm_guided.sh [extra hydra overrides]
# Env: as scripts/geneval/dpo.sh.
set -euo pipefail
RUN=${RUN:-runs/geneval/dpo_parm_guided} ROUNDS=2 exec bash "$(dirname "$0")/dpo.sh" dpo=parm_guided "$@"
