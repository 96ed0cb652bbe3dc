#!/usr/bin/env python3
"""Read opencarbon run directories with the official TensorBoard reader and check what they
hold against the runs' own files (issue: TensorBoard inspection).

    python scripts/check_tensorboard.py <run dir | experiment results dir> ...

Needs the `tensorboard` package (scripts/requirements-tensorboard.txt). An argument holding a
metrics.json is a run directory; any other argument is an experiment results directory and
stands for its finished runs: the sub-directories named by 8-64 hex digits that hold a `DONE`
file (tables/, figures/, _hparams/ and hidden .tmp-/.trash- dirs are not runs).

Per run (EventAccumulator on the run directory):
- the event file parses; the final-metric scalars (metrics/test_r2, ...) equal metrics.json;
  the `config` text names the run id and the model's kind as YAML names it (`opencarbon`, not
  the serialised `open_carbon`), and shows OpenCarbon's fields that the job's identity leaves
  out at their defaults;
- HParams: the run's records are exactly `_hparams_/session_start_info` and
  `_hparams_/session_end_info` (a per-run `_hparams_/experiment` would compete with the
  experiment-level one: TensorBoard shows the first experiment record it finds and ignores the
  others). The session start's group_name is the run id (so the HPARAMS tab has one row per
  run; runs that share a group are averaged into one row) and its hyperparameters are exactly
  the run's params (below); the session end's status is success;
- the emission-map and scatter images are PNGs of the labelled figures' widths (axes, units,
  colour bars: the same drawing as report's figures). Neural runs (a model.json with
  best_epoch) also need per-epoch train/valid scalars whose best validation R² equals
  model.json's best_validation_score, and OpenCarbon runs the embedding histograms and the
  loss/gradient/learning-rate scalars.

A run's params (the same contract as summary.csv's `param.<name>` columns and the MLflow
export, see scripts/check_mlflow.py): dataset, split, seed, model (the label), kind
(metrics.json model_kind), image_size and poi_raster_size (from config.yaml's job),
input.image|poi|neighborhood (bools, job.model.inputs), and <kind>.<k> for every key k of
job.model.model but `kind` whose value is not null (summary.csv's param.model.<k>: namespaced
by model kind in the viewers, so a LASSO alpha and an OpenCarbon alpha never share a column). Numbers are HParams numbers (compared
within 1e-9 relative), bools bools, strings strings, lists and maps strings holding compact
JSON (compared as JSON structures). config.yaml is read with YAML 1.2 scalar rules, as serde_yaml
writes it (`tol: 1e-6` is a number); scripts/run_records.py holds that reader and the rule.

Per experiment results directory, through TensorBoard's own HParams backend for that logdir
(EventMultiplexer + AddRunsFromDirectory + Reload, MultiplexerDataProvider, HParamsPlugin and
its list_session_groups / get_experiment handlers, i.e. what the HPARAMS tab is served):
- the experiment record comes from `<experiment>/_hparams/` and from no other run (without it
  TensorBoard would improvise an experiment from the session starts);
- the experiment's hyperparameters are the union of the runs' param names (so a column exists
  for each model's fields, whichever run TensorBoard reads first; a name no run has fails too),
  a declared hyperparameter type and domain must fit every run's value, `differs` is set
  exactly on those whose runs disagree, and TensorBoard lists those first; its metrics are
  exactly metrics/{test_r2,test_rmse,test_mae,test_mape,valid_r2,valid_rmse,train_r2,
  train_rmse,best_epoch,best_valid_r2};
- there is one session group per finished run directory, named by its run id, each holding
  exactly one session (the run id) with status success, and nothing else (an unfinished run
  or a stray event file shows up as an extra group);
- each group's hyperparameters are its run's params, and its metric values equal
  metrics.json (float32, 1e-5 relative; metrics/test_r2 must be there).

Per experiment, the view of its runs by short name (`<results root>/tensorboard.runs/
<experiment>/`, written by report), read by TensorBoard's EventMultiplexer and HParams
backend: one run per finished run directory, each named `<kind> [<tags and the fields that
vary>] <dataset> <split> s<seed>`, linking to exactly one run's event files, whose
metrics/test_r2 equals that run's metrics.json; the HParams experiment record is there too.

Exits 1 listing every failed check; on success prints one line per run and, per experiment,
"experiment <name>: N session groups, H hyperparameters, M metrics, ...".
"""
import json
import os
import sys


from tensorboard import context as tb_context
from tensorboard.backend.event_processing import data_ingester
from tensorboard.backend.event_processing import data_provider as tb_data_provider
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import get_experiment
from tensorboard.plugins.hparams import hparams_plugin
from tensorboard.plugins.hparams import list_session_groups
from tensorboard.plugins.hparams import metadata as hp_metadata
from tensorboard.plugins.hparams import plugin_data_pb2

from run_records import (RUN_DIR_NAME, close, expected_params, is_number, read_config, same_json,
                         viewer_params)

# The fonts the binary looks for (track::plot::font_ready): without one it writes unlabelled
# pictures, and their widths are not checked.
HAS_FONT = bool(os.environ.get("OPENCARBON_FONT")) or any(os.path.isfile(p) for p in (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf", "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/Library/Fonts/Arial.ttf"))

SIZE = {ea.SCALARS: 0, ea.IMAGES: 0, ea.HISTOGRAMS: 0, ea.TENSORS: 0}
EXPERIMENT_RUN = "_hparams"  # <experiment dir>/_hparams/: the experiment-level record
RUN_HPARAMS_TAGS = {hp_metadata.SESSION_START_INFO_TAG, hp_metadata.SESSION_END_INFO_TAG}
EXPERIMENT_METRICS = ("metrics/test_r2", "metrics/test_rmse", "metrics/test_mae", "metrics/test_mape",
                      "metrics/valid_r2", "metrics/valid_rmse", "metrics/train_r2", "metrics/train_rmse",
                      "metrics/best_epoch", "metrics/best_valid_r2")
# The early-stopping metrics and model.json's keys they come from (neural runs only).
BEST_CHECKPOINT = {"metrics/best_epoch": "best_epoch", "metrics/best_valid_r2": "best_validation_score"}


def show_value(v):
    """A google.protobuf.Value as text."""
    kind = v.WhichOneof("kind")
    return f"{kind}={getattr(v, kind)!r}" if kind else "unset"


def hparam_matches(v, want):
    """Compare an HParams value (google.protobuf.Value) with a contract value; returns
    (ok, rendered want)."""
    kind = v.WhichOneof("kind")
    if isinstance(want, bool):
        return kind == "bool_value" and v.bool_value == want, f"bool_value={want!r}"
    if is_number(want):
        return kind == "number_value" and close(v.number_value, float(want), 1e-9), f"number_value={want!r}"
    if isinstance(want, (list, dict)):
        shown = json.dumps(want, separators=(",", ":"))
        if kind != "string_value":
            return False, f"string_value={shown!r}"
        try:
            return same_json(json.loads(v.string_value), want), f"string_value={shown!r}"
        except ValueError:
            return False, f"string_value={shown!r}"
    return kind == "string_value" and v.string_value == str(want), f"string_value={str(want)!r}"


def compare_hparams(got, want, need, where):
    """`got`: a map name -> google.protobuf.Value; `want`: expected_params()."""
    for k in sorted(set(want) - set(got)):
        need(False, f"{where}: hparam {k} missing (want {want[k]!r})")
    for k in sorted(set(got) - set(want)):
        need(False, f"{where}: unexpected hparam {k} = {show_value(got[k])}")
    for k in sorted(set(want) & set(got)):
        ok, shown = hparam_matches(got[k], want[k])
        need(ok, f"{where}: hparam {k} = {show_value(got[k])}, want {shown}")


def load_run(run):
    metrics = json.load(open(os.path.join(run, "metrics.json")))
    config = read_config(os.path.join(run, "config.yaml"))
    return metrics, viewer_params(expected_params(config, metrics))


# ------------------------------------------------------------------------------ per run

def check_run(run, problems):
    def need(ok, what):
        if not ok:
            problems.append(f"{run}: {what}")

    acc = ea.EventAccumulator(run, size_guidance=SIZE)
    acc.Reload()
    tags = acc.Tags()
    metrics, want_params = load_run(run)
    model = json.load(open(os.path.join(run, "model.json")))
    rid = os.path.basename(os.path.normpath(run))
    need(metrics.get("run_id") == rid, f"metrics.json run_id {metrics.get('run_id')!r}, directory {rid!r}")

    scalars = set(tags["scalars"])
    for part in ("train", "valid", "test"):
        if metrics.get(part) is None:
            continue
        for m in ("r2", "rmse", "mae", "mape"):
            tag = f"metrics/{part}_{m}"
            if part == "test" or (m in ("r2", "rmse") and part != "test"):
                need(tag in scalars, f"scalar {tag} missing")
                if tag in scalars:
                    got = acc.Scalars(tag)[-1].value
                    want = metrics[part][m]
                    need(abs(got - want) <= 1e-5 * max(1.0, abs(want)), f"{tag} = {got}, metrics.json {want}")

    texts = acc.PluginTagToContent("text")
    need("config" in texts, "text `config` missing")
    if "config" in texts:
        t = acc.Tensors("config")[0].tensor_proto.string_val[0].decode()
        need(metrics["run_id"] in t, "config text does not name the run id")
        need(f"kind: {metrics['model_kind']}\n" in t,
             f"config text does not name the model's kind as YAML does ({metrics['model_kind']})")
        if metrics["model_kind"] == "opencarbon":
            # Fields a job's identity leaves out at their defaults are shown too.
            for field in ("loss:", "schedule:", "ema:", "patience_mode:"):
                need(field in t, f"config text lacks {field} (a default left out)")

    hp = acc.PluginTagToContent(hp_metadata.PLUGIN_NAME)
    for tag in sorted(RUN_HPARAMS_TAGS - set(hp)):
        need(False, f"hparams record {tag} missing")
    for tag in sorted(set(hp) - RUN_HPARAMS_TAGS):
        need(False, f"unexpected hparams record {tag} (only the session start/end belong in a run; "
                    f"the experiment record lives in <experiment>/{EXPERIMENT_RUN}/)")
    if hp_metadata.SESSION_START_INFO_TAG in hp:
        d = plugin_data_pb2.HParamsPluginData.FromString(hp[hp_metadata.SESSION_START_INFO_TAG])
        start = d.session_start_info
        need(start.group_name == rid, f"session start group_name {start.group_name!r}, want the run id {rid!r}")
        compare_hparams(start.hparams, want_params, need, "session start")
    if hp_metadata.SESSION_END_INFO_TAG in hp:
        d = plugin_data_pb2.HParamsPluginData.FromString(hp[hp_metadata.SESSION_END_INFO_TAG])
        need(d.session_end_info.status == api_pb2.STATUS_SUCCESS,
             f"session end status {api_pb2.Status.Name(d.session_end_info.status)}, want STATUS_SUCCESS")

    images = tags["images"]
    # The labelled figures (report's maps and scatter: axes, units, colour bars) have fixed
    # widths; the font-less fallback's pictures do not, so a width tells which was written.
    labelled_width = {"maps/": 1200, "scatter/": 560}
    if not HAS_FONT:
        need(not os.environ.get("OPENCARBON_REQUIRE_FONT"), "OPENCARBON_REQUIRE_FONT is set but no font found")
        labelled_width = {}  # the binary found no font either: pictures without labels
    need(any(t.startswith("maps/") for t in images), f"no emission map image among {images}")
    need(any(t.startswith("scatter/") for t in images), f"no scatter image among {images}")
    for t in images:
        img = acc.Images(t)[-1]
        need(img.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n", f"image {t} is not a PNG")
        need(img.width > 0 and img.height > 0, f"image {t} has no size")
        for prefix, width in labelled_width.items():
            if t.startswith(prefix):
                need(img.width == width, f"image {t} is {img.width} px wide, want the labelled figure's {width}")

    for tag, key in BEST_CHECKPOINT.items():
        if model.get(key) is not None:
            need(tag in scalars, f"scalar {tag} missing (model.json {key} = {model[key]})")
            if tag in scalars:
                got = acc.Scalars(tag)[-1].value
                need(close(got, float(model[key]), 1e-5, 1e-30), f"{tag} = {got}, model.json {key} {model[key]}")
    if "best_epoch" in model:
        need("valid/r2" in scalars, "per-epoch valid/r2 missing")
        train = [t for t in scalars if t.startswith("train/")]
        need(len(train) > 0, "no per-epoch train scalars")
        if "valid/r2" in scalars and model.get("best_validation_score") is not None:
            best = max(e.value for e in acc.Scalars("valid/r2"))
            want = model["best_validation_score"]
            need(abs(best - want) <= 1e-4 * max(1.0, abs(want)), f"best valid/r2 {best} vs model.json {want}")
    if metrics["model_kind"] == "opencarbon":
        need("embeddings/grid_x_g_valid" in tags["histograms"], "embedding histogram missing")
        for t in ("train/loss_total", "train/loss_prediction", "train/loss_contrastive", "train/grad_norm", "train/learning_rate"):
            need(t in scalars, f"scalar {t} missing")
    return sorted(scalars), sorted(images)


# ------------------------------------------------------------------------------ per experiment

def tensorboard_hparams(logdir):
    """What TensorBoard's HPARAMS tab is served for `logdir`: (backend metadata per run,
    ListSessionGroupsResponse, Experiment), through the plugin's own handlers."""
    # As tensorboard.backend.event_processing.data_ingester.LocalDataIngester does for --logdir.
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        size_guidance=data_ingester.DEFAULT_SIZE_GUIDANCE,
        tensor_size_guidance=dict(data_ingester.DEFAULT_TENSOR_SIZE_GUIDANCE),
    )
    multiplexer.AddRunsFromDirectory(logdir)
    multiplexer.Reload()
    provider = tb_data_provider.MultiplexerDataProvider(multiplexer, logdir)
    plugin = hparams_plugin.HParamsPlugin(
        base_plugin.TBContext(logdir=logdir, multiplexer=multiplexer, data_provider=provider))
    backend = plugin._context  # the plugin's backend_context.Context, as its routes use it
    ctx = tb_context.RequestContext()
    experiment_id = ""  # plugin_util.experiment_id() of a local TensorBoard
    request = api_pb2.ListSessionGroupsRequest(
        start_index=0,
        slice_size=1 << 30,
        # The dashboard's default: sessions of every status are listed.
        allowed_statuses=[api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_SUCCESS,
                          api_pb2.STATUS_FAILURE, api_pb2.STATUS_RUNNING],
    )
    groups = list_session_groups.Handler(ctx, backend, experiment_id, request).run()
    experiment = get_experiment.Handler(ctx, backend, experiment_id, api_pb2.GetExperimentRequest()).run()
    run_tags = backend.hparams_metadata(ctx, experiment_id)
    return run_tags, groups, experiment


def check_experiment(results, runs, problems):
    """Append to `problems` what TensorBoard's HParams backend shows wrongly for the experiment
    results directory `results` whose finished run directories are `runs`. Returns the summary
    line."""
    name = os.path.basename(os.path.normpath(results))

    def need(ok, what):
        if not ok:
            problems.append(f"experiment {name}: {what}")

    want = {}
    for run in runs:
        try:
            want[os.path.basename(run)] = load_run(run)
        except Exception as e:
            need(False, f"run {os.path.basename(run)}: cannot read metrics.json/config.yaml: {type(e).__name__}: {e}")

    run_tags, response, experiment = tensorboard_hparams(results)

    # The experiment record: <experiment>/_hparams/ only.
    holders = sorted(r for r, tags in run_tags.items() if hp_metadata.EXPERIMENT_TAG in tags)
    if EXPERIMENT_RUN not in holders:
        need(False, f"no {hp_metadata.EXPERIMENT_TAG} record in {os.path.join(results, EXPERIMENT_RUN)}/ "
                    + (f"(TensorBoard runs holding one: {holders})" if holders else
                       "(TensorBoard improvises the experiment from the session starts and scalars)"))
    others = [r for r in holders if r != EXPERIMENT_RUN]
    need(not others, f"runs other than {EXPERIMENT_RUN} hold an experiment record: {others} "
                     "(TensorBoard shows whichever it reads first)")
    if EXPERIMENT_RUN in holders:
        record = hp_metadata.parse_experiment_plugin_data(run_tags[EXPERIMENT_RUN][hp_metadata.EXPERIMENT_TAG])
        need({h.name for h in experiment.hparam_infos} == {h.name for h in record.hparam_infos}
             and {m.name.tag for m in experiment.metric_infos} == {m.name.tag for m in record.metric_infos},
             f"TensorBoard's experiment is not the {EXPERIMENT_RUN}/ record")

    hparam_names = [h.name for h in experiment.hparam_infos]
    for n in sorted({n for n in hparam_names if hparam_names.count(n) > 1}):
        need(False, f"hyperparameter {n} listed twice")
    all_params = {}
    for rid, (_, params) in want.items():
        for k in params:
            all_params.setdefault(k, []).append(rid)
    for k in sorted(set(all_params) - set(hparam_names)):
        need(False, f"experiment lacks hyperparameter {k} (a param of run(s) {', '.join(sorted(all_params[k]))})")
    for k in sorted(set(hparam_names) - set(all_params)):
        need(False, f"experiment hyperparameter {k} is a param of no run")
    # A declared type must fit the runs' values (unset types are left to TensorBoard).
    kinds = {api_pb2.DATA_TYPE_BOOL: lambda v: isinstance(v, bool),
             api_pb2.DATA_TYPE_FLOAT64: is_number,
             api_pb2.DATA_TYPE_STRING: lambda v: isinstance(v, (str, list, dict))}
    for h in experiment.hparam_infos:
        if h.type in kinds:
            bad = sorted(rid for rid, (_, p) in want.items() if h.name in p and not kinds[h.type](p[h.name]))
            need(not bad, f"hyperparameter {h.name} declared {api_pb2.DataType.Name(h.type)}, runs {bad} differ")

    # Declared domains hold every run's value, and `differs` says whether runs disagree, so
    # that TensorBoard lists (and the dashboard ticks) the columns that tell runs apart first.
    for h in experiment.hparam_infos:
        values = [p[h.name] for _, p in want.values() if h.name in p]
        distinct = {json.dumps(v, sort_keys=True) for v in values}
        need(h.differs == (len(distinct) > 1),
             f"hyperparameter {h.name}: differs={h.differs}, but the runs hold {len(distinct)} distinct values")
        domain = h.WhichOneof("domain")
        if domain == "domain_interval":
            lo, hi = h.domain_interval.min_value, h.domain_interval.max_value
            need(all(lo <= float(v) <= hi for v in values), f"hyperparameter {h.name}: a value outside [{lo}, {hi}]")
        elif domain == "domain_discrete":
            listed = [getattr(v, v.WhichOneof("kind")) for v in h.domain_discrete.values]
            need(all((v if isinstance(v, (bool, str)) else json.dumps(v, separators=(",", ":"))) in listed
                     or str(v) in listed for v in values),
                 f"hyperparameter {h.name}: a run's value is not in its domain {listed}")
        need(domain is not None or len({type(v) for v in values}) > 1,
             f"hyperparameter {h.name}: one type of value but no domain")
    differing = [h.differs for h in experiment.hparam_infos]
    need(differing == sorted(differing, reverse=True),
         "TensorBoard does not list the differing hyperparameters first")

    metric_names = [m.name.tag for m in experiment.metric_infos]
    need(all(not m.name.group for m in experiment.metric_infos),
         f"metric infos with a group (would be read from a sub-run): "
         f"{[(m.name.group, m.name.tag) for m in experiment.metric_infos if m.name.group]}")
    for m in EXPERIMENT_METRICS:
        need(m in metric_names, f"experiment lacks metric {m} (metric infos: {metric_names})")
    for m in metric_names:
        need(m in EXPERIMENT_METRICS, f"unexpected experiment metric {m}")

    # Session groups: one per finished run, named by its run id.
    groups = list(response.session_groups)
    need(response.total_size == len(groups), f"total_size {response.total_size}, {len(groups)} groups returned")
    names = [g.name for g in groups]
    need(len(groups) == len(runs),
         f"TensorBoard shows {len(groups)} session groups, want one per finished run directory ({len(runs)})")
    for g in sorted({n for n in names if names.count(n) > 1}):
        need(False, f"session group {g!r} listed twice")
    for rid in sorted(set(want) - set(names)):
        need(False, f"run {rid}: no session group named by it")
    for g in sorted(set(names) - {os.path.basename(r) for r in runs}):
        group = next(x for x in groups if x.name == g)
        need(False, f"session group {g!r} (sessions {[s.name for s in group.sessions]}) is not a finished run directory")
    matched = 0
    for g in groups:
        if g.name not in want:
            continue
        rid = g.name
        metrics, params = want[rid]
        sessions = [s.name for s in g.sessions]
        need(sessions == [rid], f"group {rid}: sessions {sessions}, want exactly [{rid!r}]")
        for s in g.sessions:
            need(s.status == api_pb2.STATUS_SUCCESS,
                 f"group {rid}: session {s.name} status {api_pb2.Status.Name(s.status)}, want STATUS_SUCCESS")
        compare_hparams(g.hparams, params, need, f"group {rid}")
        values = {v.name.tag: v.value for v in g.metric_values if not v.name.group}
        need("metrics/test_r2" in values, f"group {rid}: no metrics/test_r2 value (values: {sorted(values)})")
        for tag in metric_names:
            if tag in BEST_CHECKPOINT:
                continue  # from model.json, checked per run
            part, _, m = tag[len("metrics/"):].partition("_")
            want_v = (metrics.get(part) or {}).get(m)
            if want_v is None:
                continue
            if tag not in values:
                need(tag == "metrics/test_r2", f"group {rid}: no {tag} value, metrics.json {part}.{m} = {want_v}")
                continue
            ok = close(values[tag], float(want_v), 1e-5, 1e-30)
            need(ok, f"group {rid}: {tag} = {values[tag]!r}, metrics.json {part}.{m} = {want_v!r}")
            if ok and tag == "metrics/test_r2":
                matched += 1
    return (f"experiment {name}: {len(groups)} session groups, {len(hparam_names)} hyperparameters, "
            f"{len(metric_names)} metrics, metrics/test_r2 of {matched}/{len(runs)} runs = metrics.json")


# ------------------------------------------------------------------------------ runs by name

def name_fits(name, metrics):
    """A short run name (src/track/names.rs): `<kind>[ <tag or field=value>...] <dataset>
    <split> s<seed>`, the run id appended where two runs would share it."""
    tail = f" {metrics['dataset']} {metrics['split']} s{metrics['seed']}"
    stem = name[: -len(" " + metrics["run_id"])] if name.endswith(" " + metrics["run_id"]) else name
    return name.split(" ")[0] == metrics["model_kind"] and stem.endswith(tail)


def check_named_view(results, runs, problems):
    """`<results root>/tensorboard.runs/<experiment>/`, read by TensorBoard: one run per
    finished run, named by its short name, whose scalars are that run's; the HParams record
    is there too."""
    name = os.path.basename(os.path.normpath(results))
    view = os.path.join(os.path.dirname(os.path.normpath(results)), "tensorboard.runs", name)

    def need(ok, what):
        if not ok:
            problems.append(f"named view {view}: {what}")

    if not os.path.isdir(view):
        need(False, "missing (report writes it)")
        return f"named view of {name}: missing"
    run_tags, _, experiment = tensorboard_hparams(view)
    listed = sorted(r for r in run_tags if r != EXPERIMENT_RUN)
    need(EXPERIMENT_RUN in run_tags, "no _hparams experiment record")
    need(len(experiment.hparam_infos) > 0, "TensorBoard finds no hyperparameters")
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(view)
    multiplexer.Reload()
    tb_runs = sorted(r for r in multiplexer.Runs() if r != EXPERIMENT_RUN)
    need(len(tb_runs) == len(runs), f"TensorBoard lists {len(tb_runs)} runs, want {len(runs)}")
    by_id = {}
    for r in tb_runs:
        folder = os.path.join(view, r)
        targets = {os.path.basename(os.path.dirname(os.path.realpath(os.path.join(folder, f))))
                   for f in os.listdir(folder)}
        need(len(targets) == 1, f"run {r!r} links into {sorted(targets)}, want one run directory")
        rid = targets.pop() if targets else None
        by_id[rid] = r
        metrics = json.load(open(os.path.join(results, rid, "metrics.json")))
        need(name_fits(r, metrics), f"run {r!r} is not `{metrics['model_kind']} ... {metrics['dataset']} "
                                    f"{metrics['split']} s{metrics['seed']}`")
        acc = ea.EventAccumulator(folder, size_guidance={ea.SCALARS: 0})
        acc.Reload()
        got = acc.Scalars("metrics/test_r2")[-1].value
        want = metrics["test"]["r2"]
        need(close(got, want, 1e-5, 1e-30), f"run {r!r}: metrics/test_r2 {got}, its run's metrics.json {want}")
    need(sorted(by_id) == sorted(os.path.basename(x) for x in runs), "the named runs are not the finished runs")
    return f"named view of {name}: {len(tb_runs)} runs by name, e.g. {tb_runs[0]!r}" if tb_runs else ""


# ------------------------------------------------------------------------------ main

def finished_runs(results):
    return [os.path.join(results, d) for d in sorted(os.listdir(results))
            if RUN_DIR_NAME.match(d) and os.path.isfile(os.path.join(results, d, "DONE"))]


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    targets = []  # (run dir, None) or (experiment dir, [run dirs])
    for arg in sys.argv[1:]:
        if not os.path.isdir(arg):
            sys.exit(f"no such directory: {arg}")
        if os.path.isfile(os.path.join(arg, "metrics.json")):
            targets.append((arg, None))
        else:
            runs = finished_runs(arg)
            if not runs:
                sys.exit(f"no finished run directories in {arg}")
            targets.append((arg, runs))
    failed = []
    for path, runs in targets:
        for run in (runs if runs is not None else [path]):
            problems = []
            try:
                scalars, images = check_run(run, problems)
                counts = f"{len(scalars)} scalar tags, {len(images)} images, "
            except Exception as e:
                problems.append(f"{run}: check aborted: {type(e).__name__}: {e}")
                counts = ""
            failed += problems
            print(f"{run}: {counts}{'ok' if not problems else 'FAILED'}")
        if runs is not None:
            problems = []
            try:
                summary = check_experiment(path, runs, problems)
            except Exception as e:
                problems.append(f"experiment {os.path.basename(os.path.normpath(path))}: check aborted: "
                                f"{type(e).__name__}: {e}")
                summary = f"experiment {os.path.basename(os.path.normpath(path))}"
            failed += problems
            print(summary if not problems else f"{summary}: FAILED")
            problems = []
            summary = f"named view of {path}"
            try:
                summary = check_named_view(path, runs, problems)
            except Exception as e:
                problems.append(f"named view of {path}: check aborted: {type(e).__name__}: {e}")
            failed += problems
            print(summary if not problems else f"{summary}: FAILED")
    for p in failed:
        print("  " + p)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
