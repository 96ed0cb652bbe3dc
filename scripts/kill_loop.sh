#!/usr/bin/env bash
# Kill a real `opencarbon run` at random moments, N times, then check that a final clean run
# and report count every job exactly once. By hand (timing-dependent); the deterministic
# version, which stops the run at each of its file operations in turn, is tests/it/faults.rs.
#
#   scripts/kill_loop.sh [experiment.yaml] [kills] [max delay in seconds]
set -euo pipefail
exp="${1:-experiments/quick.yaml}"
kills="${2:-20}"
max_delay="${3:-3}"
bin="${OPENCARBON_BIN:-target/release/opencarbon}"
for i in $(seq 1 "$kills"); do
  "$bin" -q run "$exp" --force &
  pid=$!
  sleep "$(python3 -c "import random; print(random.uniform(0, $max_delay))")"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  echo "kill $i done"
done
"$bin" -q run "$exp"
"$bin" report "$exp" > /dev/null
jobs=$("$bin" plan "$exp" --json | python3 -c "import json,sys; print(len(json.load(sys.stdin)['jobs']))")
dir=$("$bin" plan "$exp" --json | python3 -c "import json,sys; print(json.load(sys.stdin)['results_dir'])")
rows=$(($(wc -l < "$dir/summary.csv") - 1))
left=$(find "$dir" -maxdepth 2 \( -name '.tmp-*' -o -name '.trash-*' -o -name '*.lock' -o -name '*.tmp-*' \) | wc -l)
echo "jobs $jobs, summary rows $rows, leftovers $left"
[ "$jobs" = "$rows" ] && [ "$left" = 0 ]
