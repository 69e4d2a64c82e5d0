#!/usr/bin/env bash
# Create .venv and install imagecot with its pinned dependencies (CPU is enough; CUDA builds work the same way).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
.venv/bin/python -m pip install -q --no-deps -e .
echo "installed into $(pwd)/.venv (activate with: . .venv/bin/activate)"
