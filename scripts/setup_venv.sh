#!/usr/bin/env bash
# Create (or update) the Python virtual environment used to generate the
# scikit-learn/scipy oracle fixtures. Idempotent: reuses .venv if it exists.
# Usage: bash scripts/setup_venv.sh
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi

.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r scripts/requirements-oracle.txt

echo "venv ready: $repo_root/.venv"
.venv/bin/python -c 'import numpy, scipy, sklearn; print("numpy", numpy.__version__, "scipy", scipy.__version__, "scikit-learn", sklearn.__version__)'
