#!/usr/bin/env python3
"""Read opencarbon run directories with the official TensorBoard reader and check what they
hold against the runs' own files (issue: TensorBoard inspection).

    python scripts/check_tensorboard.py <run dir | experiment results dir> ...

(an experiment results directory stands for every finished run in it)

For every run: the event file parses (EventAccumulator); the final-metric scalars
(metrics/test_r2, ...) equal metrics.json; the `config` text names the run id; the HParams
plugin holds an experiment, a session start whose hyperparameters include the job's seed,
split and model, and a successful session end; the emission-map and scatter images are PNGs of
the stated size. Neural runs (a model.json with best_epoch) also need per-epoch train/valid
scalars whose best validation R² equals model.json's best_validation_score, and OpenCarbon runs
the embedding histograms. Exits 1 listing every failed check.
"""
import json
import os
import sys

from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.plugins.hparams import plugin_data_pb2

SIZE = {ea.SCALARS: 0, ea.IMAGES: 0, ea.HISTOGRAMS: 0, ea.TENSORS: 0}


def check_run(run):
    problems = []

    def need(ok, what):
        if not ok:
            problems.append(f"{run}: {what}")

    acc = ea.EventAccumulator(run, size_guidance=SIZE)
    acc.Reload()
    tags = acc.Tags()
    metrics = json.load(open(os.path.join(run, "metrics.json")))
    model = json.load(open(os.path.join(run, "model.json")))

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

    hp = acc.PluginTagToContent("hparams")
    for tag in ("_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"):
        need(tag in hp, f"hparams record {tag} missing")
    if "_hparams_/session_start_info" in hp:
        d = plugin_data_pb2.HParamsPluginData.FromString(hp["_hparams_/session_start_info"])
        h = d.session_start_info.hparams
        need(h["seed"].number_value == metrics["seed"], "hparams seed differs from metrics.json")
        need(h["split"].string_value == metrics["split"], "hparams split differs")
        need(h["model"].string_value == metrics["model"], "hparams model differs")
    if "_hparams_/experiment" in hp:
        d = plugin_data_pb2.HParamsPluginData.FromString(hp["_hparams_/experiment"])
        names = {m.name.tag for m in d.experiment.metric_infos}
        need("metrics/test_r2" in names, "hparams experiment lacks metric metrics/test_r2")
    if "_hparams_/session_end_info" in hp:
        d = plugin_data_pb2.HParamsPluginData.FromString(hp["_hparams_/session_end_info"])
        need(d.session_end_info.status == 1, "session end status is not success")

    images = tags["images"]
    need(any(t.startswith("maps/") for t in images), "no emission map image")
    need("scatter/test_predicted_vs_true_log_emission" in images, "no scatter image")
    for t in images:
        img = acc.Images(t)[-1]
        need(img.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n", f"image {t} is not a PNG")
        need(img.width > 0 and img.height > 0, f"image {t} has no size")

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
    return problems, sorted(scalars), sorted(images)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    runs = []
    for arg in sys.argv[1:]:
        if os.path.isfile(os.path.join(arg, "metrics.json")):
            runs.append(arg)
        else:
            runs += sorted(os.path.join(arg, d) for d in os.listdir(arg)
                           if os.path.isfile(os.path.join(arg, d, "DONE")))
    if not runs:
        sys.exit("no run directories given")
    failed = []
    for run in runs:
        problems, scalars, images = check_run(run)
        failed += problems
        print(f"{run}: {len(scalars)} scalar tags, {len(images)} images, {'ok' if not problems else 'FAILED'}")
    for p in failed:
        print("  " + p)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
