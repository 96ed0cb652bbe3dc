#!/usr/bin/env bash
# The fault suite CI runs (issue 26): what the deterministic tests of tests/it/faults.rs cannot
# reach, with the real binary and real signals, in about a minute on 2 cores.
#   1. random SIGKILLs of `run --force`, `report` and `synth`, at moments drawn from the
#      measured length of each command; after each, the state must be one a user can trust;
#   2. broken pipes: `plan --json | head -c 1` and `report | head -1` end without a panic;
#   3. a copied run directory and an orphaned one are never counted;
#   4. a real full disk: the results on a small tmpfs (in a private mount namespace, where
#      this machine allows one): exit 1 with ENOSPC named, twice, then the space is given
#      back and the next `run` completes the experiment.
# Every check prints one line; the first failing one stops the suite (exit 1).
#
#   scripts/fault_suite.sh [kills per command, default 12] [random seed, default 1]
set -euo pipefail
kills="${1:-12}"
seed="${2:-1}"
bin="$(realpath "${OPENCARBON_BIN:-${CARGO_TARGET_DIR:-target}/release/opencarbon}")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
RANDOM="$seed"

fail() { echo "fault suite: FAILED: $*" >&2; exit 1; }
# A delay in seconds, uniform in [0, $1 ms), from bash's seeded RANDOM.
delay() { local ms=$(( (RANDOM * 32768 + RANDOM) % $1 )); printf '%d.%03d' $((ms / 1000)) $((ms % 1000)); }
# Run "$@" in the background and SIGKILL it after `delay $ms`.
# Counts the kills that found the command still running (the others came after its end).
landed=0
kill_after() {
  local ms="$1"; shift
  "$@" >/dev/null 2>&1 &
  local pid=$!
  sleep "$(delay "$ms")"
  # Still running, not a zombie waiting to be reaped (which kill would also "find").
  local state
  state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1 || true)
  if [ -n "$state" ] && [ "$state" != Z ]; then landed=$((landed + 1)); fi
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
millis() { date +%s%3N; }
# A command's wall time in ms (at least 50), to draw kill moments over its whole length.
measure() {
  local t0; t0=$(millis)
  "$@" >/dev/null 2>&1 || fail "unfaulted: $*"
  local ms=$(( $(millis) - t0 ))
  echo $(( ms < 50 ? 50 : ms ))
}
jobs_of() { "$bin" plan "$1" --json | python3 -c "import json,sys; print(len(json.load(sys.stdin)['jobs']))"; }
rows_of() { echo $(( $(wc -l < "$1") - 1 )); }
# Files that only a killed or failing process leaves (none may survive a completed run).
leftovers() {
  find "$1" -maxdepth 2 \( -name '.tmp-*' -o -name '.trash-*' -o -name '*.lock' \
    -o -name '*.tmp-*' -o -name '.resume-*' \) | wc -l
}

cat > exp.yaml <<YAML
name: f
results_dir: $work/results
cache_dir: $work/cache
image_size: 32
poi_raster_size: 32
datasets: [{preset: tiny}]
models:
  - {kind: lasso, alpha: [0.01, 0.1]}
  - {kind: mlp, hidden: 16, max_epochs: 30, min_epochs: 30}
splits: [{kind: random}]
seeds: [0, 1]
YAML
jobs=$(jobs_of exp.yaml)
run_ms=$(measure "$bin" -q run exp.yaml)
"$bin" report exp.yaml >/dev/null 2>&1 || fail "unfaulted report"
# Every column of summary.csv but the timing (fit_seconds), by run id: what must not change.
metrics() {
  python3 -c 'import csv,sys; rows=[{k:v for k,v in r.items() if k!="fit_seconds"} for r in csv.DictReader(open(sys.argv[1]))]; print(sorted(map(str,rows)))' results/f/summary.csv
}
expected="$(metrics)"

# 1a. run --force killed at random moments; each time a plain run and a report recover it.
landed=0
for i in $(seq "$kills"); do
  kill_after "$run_ms" "$bin" -q run exp.yaml --force
  "$bin" -q run exp.yaml >/dev/null 2>&1 || fail "run after kill $i of run --force"
  "$bin" report exp.yaml >/dev/null 2>&1 || fail "report after kill $i of run --force"
  [ "$(rows_of results/f/summary.csv)" = "$jobs" ] || fail "kill $i: summary rows != $jobs jobs"
  [ "$(leftovers results/f)" = 0 ] || fail "kill $i: leftovers $(find results/f -maxdepth 2 -name '.*')"
  [ "$(metrics)" = "$expected" ] || fail "kill $i: results changed"
done
echo "fault suite: $kills random kills of run --force ($landed mid-run): every job once, same results, nothing left"

# 1b. report killed at random moments: the next report succeeds, every figure is a PNG.
report_ms=$(measure "$bin" report exp.yaml)
landed=0
for i in $(seq "$kills"); do
  kill_after "$report_ms" "$bin" report exp.yaml
  "$bin" report exp.yaml >/dev/null 2>&1 || fail "report after kill $i of report"
  for f in results/f/figures/*.png; do
    head -c 4 "$f" | grep -q PNG || fail "kill $i of report: $f is not a PNG"
  done
  [ "$(rows_of results/f/summary.csv)" = "$jobs" ] || fail "kill $i of report: summary rows"
done
echo "fault suite: $kills random kills of report ($landed mid-report): the next report is whole"

# 1c. synth killed at random moments: its target is absent or a whole dataset, never half.
synth_ms=$(measure "$bin" synth tiny probe --seed 5)
landed=0
for i in $(seq "$kills"); do
  kill_after "$synth_ms" "$bin" synth tiny city --seed 5
  if [ -e city ]; then
    "$bin" inspect city >/dev/null 2>&1 || fail "kill $i of synth: city exists but is not a dataset"
    rm -rf city
  fi
done
"$bin" synth tiny city --seed 5 >/dev/null 2>&1 || fail "synth after the kills"
diff -r city probe >/dev/null || fail "synth after the kills differs from an unkilled one"
[ -z "$(find . -maxdepth 1 -name 'city.tmp-*')" ] || fail "synth left temporaries"
echo "fault suite: $kills random kills of synth ($landed mid-synth): never a half dataset"

# 2. Broken pipes: a plan whose table and JSON are larger than a pipe's buffer (64 KiB), so
# the reader's exit always breaks the pipe: SIGPIPE (141), never a panic (101). A report's
# output may fit the buffer, so it may also end 0.
seeds=$(seq -s, 0 1199)
sed "s/^seeds: .*/seeds: [$seeds]/" exp.yaml > big.yaml
for i in $(seq 10); do
  set +o pipefail
  "$bin" plan big.yaml 2>err.txt | head -1 >/dev/null; table_rc=${PIPESTATUS[0]}
  "$bin" plan big.yaml --json 2>>err.txt | head -c 1 >/dev/null; json_rc=${PIPESTATUS[0]}
  "$bin" report exp.yaml 2>>err.txt | head -1 >/dev/null; report_rc=${PIPESTATUS[0]}
  set -o pipefail
  [ "$table_rc" = 141 ] && [ "$json_rc" = 141 ] || fail "closed pipe: plan exits $table_rc / $json_rc, want 141: $(cat err.txt)"
  [ "$report_rc" = 0 ] || [ "$report_rc" = 141 ] || fail "closed pipe: report exits $report_rc: $(cat err.txt)"
  ! grep -q panicked err.txt || fail "closed pipe: $(cat err.txt)"
done
echo "fault suite: 30 closed pipes (plan table and JSON of $(jobs_of big.yaml) jobs: SIGPIPE every time; report): no panic"

# 3. A copy of a run directory and an orphan (a run id no job has) are never counted.
first=$(find results/f -mindepth 1 -maxdepth 1 -type d -name '[0-9a-f]*' | sort | head -1)
cp -a "$first" results/f/0000000000
cp -a "$first" results/f/ffffffffff
# The orphan claims to be run ffffffffff in every record: a job of no plan.
sed -i 's/"run_id": "[0-9a-f]*"/"run_id": "ffffffffff"/' results/f/ffffffffff/manifest.json \
  results/f/ffffffffff/metrics.json
"$bin" report exp.yaml > report.txt 2>&1 || fail "report with copied dirs: $(cat report.txt)"
[ "$(rows_of results/f/summary.csv)" = "$jobs" ] || fail "copied or orphaned run dirs were counted"
grep -q "0000000000: not counted: the directory is not named after the run" report.txt \
  || fail "the copy is not named as such: $(cat report.txt)"
grep -q "ffffffffff: not counted: not a job of this experiment" report.txt \
  || fail "the orphan is not named as such: $(cat report.txt)"
rm -rf results/f/0000000000 results/f/ffffffffff
echo "fault suite: a copied and an orphaned run directory: not counted"

# 4. A real full disk, where a private mount namespace and tmpfs are allowed.
mkdir -p probe_mount
if unshare -rm sh -c 'mount -t tmpfs -o size=1m tmpfs "$1"' _ probe_mount 2>/dev/null; then
  used_kb=$(du -sk results/f | cut -f1)
  small_kb=$(( used_kb / 2 ))
  mkdir -p full
  sed "s|results_dir: .*|results_dir: $work/full|" exp.yaml > full.yaml
  unshare -rm bash -euc '
    bin="$1"; small="$2"; jobs="$3"
    mount -t tmpfs -o size="${small}k" tmpfs full
    for attempt in full "still full"; do
      rc=0; "$bin" -q run full.yaml > out.txt 2>&1 || rc=$?
      [ "$rc" = 1 ] || { echo "tmpfs $attempt: exit $rc: $(tail -3 out.txt)"; exit 1; }
      grep -q "No space left on device" out.txt || { echo "tmpfs $attempt: $(tail -3 out.txt)"; exit 1; }
      ! grep -q panicked out.txt || { echo "tmpfs $attempt: panic"; exit 1; }
      [ -z "$(find full -name "*.lock" -size 0)" ] || { echo "tmpfs $attempt: an empty lock"; exit 1; }
    done
    mount -o remount,size=64m full
    "$bin" -q run full.yaml > out.txt 2>&1 || { echo "after space came back: $(tail -3 out.txt)"; exit 1; }
    "$bin" report full.yaml > /dev/null 2>&1 || { echo "report after space came back"; exit 1; }
    rows=$(( $(wc -l < full/f/summary.csv) - 1 ))
    [ "$rows" = "$jobs" ] || { echo "after space came back: $rows rows for $jobs jobs"; exit 1; }
  ' _ "$bin" "$small_kb" "$jobs" || fail "real full disk"
  echo "fault suite: results on a ${small_kb} KiB tmpfs: exit 1 naming ENOSPC twice, then complete once space is back"
else
  echo "fault suite: no private mount namespace with tmpfs here; the full disk is covered by ENOSPC injection (tests/it/faults.rs)"
fi
echo "fault suite: passed"
