#!/usr/bin/env bash
# The README's door to the shapes world (docs/shapes_world.md): bash scripts/shapes/quickstart.sh [RUN_DIR] [overrides]
# QUICK=1 selects the reduced CI setting (+experiment=shapes/quick); everything else is scripts/shapes/quickstart.py.
exec python "$(dirname "$0")/quickstart.py" run_dir="${1:-runs/shapes/quickstart}" ${QUICK:+$([[ $QUICK == 1 ]] && echo +experiment=shapes/quick)} "${@:2}"
