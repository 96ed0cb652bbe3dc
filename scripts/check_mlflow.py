#!/usr/bin/env python3
"""Read an MLflow file store written by `opencarbon export mlflow` with MLflow's own client and
check what it holds against the experiment's run directories (issue: MLflow export).

    python scripts/check_mlflow.py <mlruns dir> <experiment results dir>

Needs the packages of scripts/requirements-mlflow.txt (MLflow >= 3.13 opens a file store only
with MLFLOW_ALLOW_FILE_STORE=true, which this script sets). Opening the store makes MLflow create
`<mlruns>/.trash/` if it is missing; nothing else is written.

The run directories are the sub-directories of the results directory named by 8-64 hex digits
that hold a `DONE` file (hidden .tmp-/.trash-/.resume- dirs, tables/ and figures/ are not
runs). Checked, through MlflowClient only, so that what passes is what MLflow itself reads:

- an experiment named like the results directory exists, is active and is tagged
  mlflow.experimentKind = custom_model_development (MLflow 3's UI opens it on its runs), and
  its active runs are exactly the run directories: MLflow run id = our run id, status
  FINISHED, run name (= tag mlflow.runName) the short name `<kind> [<tags and the fields
  that vary>] <dataset> <split> s<seed>` (metrics.json), unique within the experiment;
- start time (ms) = manifest.json `started`; end time = start + `wall_seconds` in ms;
- params are exactly those derived from config.yaml and metrics.json (dataset, split, seed,
  model, kind, image_size, poi_raster_size, input.*, <kind>.<key> for every non-null key of
  job.model.model but `kind`: namespaced by model kind, so models never share a column);
  numbers compare as numbers, lists and maps as JSON structures;
- one step-0 value per final metric (<part>_<r2|rmse|mae|mape|spearman>, fit_seconds) equal
  to metrics.json, and best_epoch / best_valid_r2 equal to model.json's best_epoch /
  best_validation_score where it has them;
- every TensorBoard scalar of the run but the final `metrics/...` copies has an MLflow metric
  history `epoch/<tag>` with the same steps and values (TensorBoard keeps float32, so 1e-6
  relative): the per-epoch curves never share a name with the kept model's scores;
- tags mlflow.source.git.commit (manifest.json git_commit) and opencarbon.run_id;
- every file of the run directory but DONE is an artifact (event files under tensorboard/),
  and the experiment's figures of the run's split and dataset are under figures/.

config.yaml is read with YAML 1.2 scalar rules, as serde_yaml writes and reads it (`tol: 1e-6`
is a number, not PyYAML's string). A final metric that metrics.json holds as null may be absent
or NaN. MLflow metrics outside the contract are listed as a note, not as a failure. A run that
MLflow cannot read at all (a missing params/, metrics/ or artifacts/ folder, a malformed
meta.yaml or metric file) is reported with MLflow's own error.

Exits 1 listing every failed check; exits 0 printing "N runs, P params, M metric histories
checked" when all pass.
"""
import datetime
import json
import math
import os
import sys
import warnings

os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"

from run_records import (  # noqa: E402
    close, expected_params, finished_run_dirs, is_number, read_config, same_json, viewer_params)
from mlflow.tracking import MlflowClient  # noqa: E402
from tensorboard.backend.event_processing import event_accumulator as ea  # noqa: E402

PARTS = ("train", "valid", "test")
FINAL_METRICS = ("r2", "rmse", "mae", "mape", "spearman")
# Every file of the run directory but DONE is an artifact (event files under tensorboard/), and
# the experiment's figures of the run's split and dataset under figures/.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
EPOCH_PREFIX = "epoch/"
BEST_CHECKPOINT = {"best_epoch": "best_epoch", "best_valid_r2": "best_validation_score"}


def as_float(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def rfc3339_ms(s):
    """'2026-11-29T12:07:33Z' -> milliseconds since the epoch."""
    t = datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return (t - epoch) // datetime.timedelta(milliseconds=1)


def name_fits(name, metrics):
    """A short run name (src/track/names.rs): `<kind>[ <tag or field=value>...] <dataset>
    <split> s<seed>`, with the run id appended where two runs would share it."""
    tail = f" {metrics['dataset']} {metrics['split']} s{metrics['seed']}"
    stem = name[: -len(" " + metrics["run_id"])] if name.endswith(" " + metrics["run_id"]) else name
    return name.split(" ")[0] == metrics["model_kind"] and stem.endswith(tail)


def param_matches(got, want):
    """Compare an MLflow param (a string) with a contract value; returns (ok, rendered want)."""
    if isinstance(want, bool):
        shown = "true" if want else "false"
        return got == shown, shown
    if is_number(want):
        g = as_float(got)
        return g is not None and close(g, float(want), 1e-12), repr(want)
    if isinstance(want, (list, dict)):
        shown = json.dumps(want, separators=(",", ":"))
        try:
            return same_json(json.loads(got), want), shown
        except ValueError:
            return False, shown
    return got == str(want), str(want)


def check_run(client, run, path, counts, problems):
    """Append to `problems` what differs between one MLflow run and its run directory."""

    def need(ok, what):
        if not ok:
            problems.append(f"run {run.info.run_id}: {what}")

    rid = os.path.basename(path)
    metrics = json.load(open(os.path.join(path, "metrics.json")))
    manifest = json.load(open(os.path.join(path, "manifest.json")))
    config = read_config(os.path.join(path, "config.yaml"))
    info, data = run.info, run.data

    # Run info.
    need(info.status == "FINISHED", f"status {info.status}, want FINISHED")
    need(name_fits(info.run_name, metrics),
         f"run name {info.run_name!r} is not `{metrics['model_kind']} ... {metrics['dataset']} "
         f"{metrics['split']} s{metrics['seed']}`")
    need(data.tags.get("mlflow.runName") == info.run_name,
         f"tag mlflow.runName {data.tags.get('mlflow.runName')!r}, run name {info.run_name!r}")
    counts.setdefault("names", []).append(info.run_name)
    start = rfc3339_ms(manifest["started"])
    end = start + round(manifest["wall_seconds"] * 1000)
    need(info.start_time == start, f"start_time {info.start_time}, want {start} (manifest.json started)")
    need(info.end_time == end,
         f"end_time {info.end_time}, want {end} (started + wall_seconds {manifest['wall_seconds']} in ms)")

    # Tags.
    if manifest.get("git_commit") is not None:
        got = data.tags.get("mlflow.source.git.commit")
        need(got == manifest["git_commit"], f"tag mlflow.source.git.commit {got!r}, want {manifest['git_commit']!r}")
    need(data.tags.get("opencarbon.run_id") == rid,
         f"tag opencarbon.run_id {data.tags.get('opencarbon.run_id')!r}, want {rid!r}")

    # Params: exactly the contract's.
    want_params = viewer_params(expected_params(config, metrics))
    got_params = data.params
    for k in sorted(set(want_params) - set(got_params)):
        need(False, f"param {k} missing")
    for k in sorted(set(got_params) - set(want_params)):
        need(False, f"unexpected param {k} = {got_params[k]!r}")
    for k in sorted(set(want_params) & set(got_params)):
        ok, shown = param_matches(got_params[k], want_params[k])
        need(ok, f"param {k} = {got_params[k]!r}, want {shown}")
    counts["params"] += len(want_params)

    # Final metrics: one value at step 0 each.
    want_metrics = {}
    for part in PARTS:
        if metrics.get(part) is None:
            continue
        for m in FINAL_METRICS:
            want_metrics[f"{part}_{m}"] = metrics[part].get(m)
    want_metrics["fit_seconds"] = metrics.get("fit_seconds")
    model = json.load(open(os.path.join(path, "model.json")))
    for key, field in BEST_CHECKPOINT.items():
        if model.get(field) is not None:
            want_metrics[key] = model[field]
    for key, want in want_metrics.items():
        hist = client.get_metric_history(info.run_id, key)
        if want is None:
            # metrics.json null (not computable): no value, or a NaN, is acceptable.
            need(len(hist) == 0 or (len(hist) == 1 and math.isnan(hist[0].value)),
                 f"metric {key} has {[(h.step, h.value) for h in hist]}, metrics.json null")
            continue
        need(len(hist) == 1, f"metric {key}: {len(hist)} history entries, want 1")
        if len(hist) == 1:
            need(hist[0].step == 0, f"metric {key} at step {hist[0].step}, want 0")
            need(close(hist[0].value, float(want), 1e-9), f"metric {key} = {hist[0].value!r}, metrics.json {want!r}")
        counts["histories"] += 1

    # Metric histories from the TensorBoard scalars.
    acc = ea.EventAccumulator(path, size_guidance={ea.SCALARS: 0})
    acc.Reload()
    tb_tags = [t for t in acc.Tags()["scalars"] if not t.startswith("metrics/")]
    for tag in tb_tags:
        want = sorted(((e.step, e.value) for e in acc.Scalars(tag)), key=lambda x: x[0])
        got = sorted(((m.step, m.value) for m in client.get_metric_history(info.run_id, EPOCH_PREFIX + tag)),
                     key=lambda x: x[0])
        if len(got) != len(want):
            need(False, f"metric history {tag}: {len(got)} entries, TensorBoard has {len(want)}")
        else:
            bad = [(w, g) for w, g in zip(want, got) if w[0] != g[0] or not close(g[1], w[1], 1e-6, 1e-37)]
            if bad:
                need(False, f"metric history {tag}: {len(bad)} (step, value) pairs differ, first: "
                            f"TensorBoard {bad[0][0]} vs MLflow {bad[0][1]}")
        counts["histories"] += 1

    extra = sorted(set(data.metrics) - set(want_metrics) - {EPOCH_PREFIX + t for t in tb_tags})
    if extra:
        print(f"  note: run {rid}: metrics outside the contract (not checked): {', '.join(extra)}")

    # Artifacts.
    def listed(folder=None):
        return {a.path for a in client.list_artifacts(info.run_id, folder)}
    arts = listed()
    for f in sorted(os.listdir(path)):
        if f == "DONE" or not os.path.isfile(os.path.join(path, f)):
            continue
        a = f"tensorboard/{f}" if f.startswith("events.out.tfevents.") else f
        need(a in (listed("tensorboard") if a.startswith("tensorboard/") else arts),
             f"artifact {a} missing (artifacts: {sorted(arts)})")
    figures_dir = os.path.join(os.path.dirname(path), "figures")
    suffix = f"_{metrics['split']}_{metrics['dataset']}.png"
    if os.path.isdir(figures_dir):
        for f in sorted(os.listdir(figures_dir)):
            if f.endswith(suffix):
                need(f"figures/{f}" in listed("figures"), f"figure artifact figures/{f} missing")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    mlruns, results = (os.path.abspath(a) for a in sys.argv[1:])
    if not os.path.isdir(mlruns):
        # MlflowClient would create it (with a Default experiment): refuse instead.
        sys.exit(f"no such directory: {mlruns}")
    if not os.path.isdir(results):
        sys.exit(f"no such directory: {results}")
    runs = finished_run_dirs(results)
    if not runs:
        sys.exit(f"no finished run directories in {results}")

    warnings.filterwarnings("ignore", category=FutureWarning)  # the file store's deprecation
    client = MlflowClient(tracking_uri="file://" + mlruns)
    problems = []
    name = os.path.basename(results)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        names = [e.name for e in client.search_experiments()]
        print(f"FAILED: no MLflow experiment named {name!r} in {mlruns} (experiments: {names})")
        sys.exit(1)
    if exp.lifecycle_stage != "active":
        problems.append(f"experiment {name!r} is {exp.lifecycle_stage}, want active")
    if exp.tags.get(EXPERIMENT_KIND[0]) != EXPERIMENT_KIND[1]:
        problems.append(f"experiment {name!r}: tag {EXPERIMENT_KIND[0]} = {exp.tags.get(EXPERIMENT_KIND[0])!r}, "
                        f"want {EXPERIMENT_KIND[1]!r} (MLflow's UI would open on traces)")

    try:
        found, token = [], None
        while True:
            page = client.search_runs([exp.experiment_id], max_results=1000, page_token=token)
            found += page
            token = page.token
            if not token:
                break
    except Exception as e:  # a malformed run makes MLflow fail the whole search
        problems.append(f"search_runs on experiment {name!r} fails: {type(e).__name__}: {e}")
        found = None
    want_ids = {os.path.basename(p): p for p in runs}
    if found is not None:
        listed = [r.info.run_id for r in found]
        for rid in sorted({i for i in listed if listed.count(i) > 1}):
            problems.append(f"run {rid}: listed twice")
        for rid in sorted(set(want_ids) - set(listed)):
            problems.append(f"run {rid}: not listed by search_runs in experiment {name!r}")
        for rid in sorted(set(listed) - set(want_ids)):
            problems.append(f"run {rid}: in MLflow but not a finished run directory of {results}")

    counts = {"params": 0, "histories": 0}
    checked = 0
    for rid, path in sorted(want_ids.items()):
        try:
            run = client.get_run(rid)
        except Exception as e:
            if found is not None and rid not in listed:
                continue  # already reported
            problems.append(f"run {rid}: MLflow cannot read it: {type(e).__name__}: {e}")
            continue
        if run.info.experiment_id != exp.experiment_id:
            problems.append(f"run {rid}: in experiment {run.info.experiment_id}, want {exp.experiment_id}")
        try:
            check_run(client, run, path, counts, problems)
        except Exception as e:
            problems.append(f"run {rid}: check aborted: {type(e).__name__}: {e}")
        checked += 1

    names = counts.get("names", [])
    for n in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"run name {n!r} is shared by {names.count(n)} runs")
    if problems:
        print(f"FAILED: {len(problems)} problem(s) in {mlruns} (experiment {name!r}, {len(runs)} run directories)")
        for p in problems:
            print("  " + p)
        sys.exit(1)
    print(f"{checked} runs, {counts['params']} params, {counts['histories']} metric histories checked")


if __name__ == "__main__":
    main()
