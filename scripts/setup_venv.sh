#!/usr/bin/env bash
# Create (or update) the Python virtual environment used to generate the oracle fixtures
# and run the benchmarks against the Python stack. Idempotent: reuses .venv if it exists.
# Usage: bash scripts/setup_venv.sh [all]
#   (no argument) scikit-learn/scipy oracles (scripts/make_oracle_fixtures.py)
#   all           also torch (layer fixtures, conv and epoch benchmarks), xgboost and PyTorch
#                 Geometric (baseline fixtures, scripts/bench_baselines.py), rasterio and
#                 pyosmium (import fixtures), tensorboard (scripts/check_tensorboard.py)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi

.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r scripts/requirements-oracle.txt
if [ "${1:-}" = "all" ]; then
    for r in torch baselines import tensorboard; do
        .venv/bin/python -m pip install --quiet -r "scripts/requirements-$r.txt"
    done
fi

echo "venv ready: $repo_root/.venv"
.venv/bin/python -c 'import numpy, scipy, sklearn; print("numpy", numpy.__version__, "scipy", scipy.__version__, "scikit-learn", sklearn.__version__)'
