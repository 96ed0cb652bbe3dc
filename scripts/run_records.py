"""What the Python checkers share about opencarbon's run directories (standard library and
PyYAML): reading config.yaml the way serde_yaml writes it, finding finished runs, and the
parameters a run has: the rule of `records::run_params` in src/track/records.rs, which
summary.csv (`param.<name>`), the TensorBoard HParams sessions and the MLflow export all follow.
Imported by scripts/check_tensorboard.py and scripts/check_mlflow.py.
"""
import math
import os
import re

import yaml

RUN_DIR_NAME = re.compile(r"^[0-9a-fA-F]{8,64}$")


class Yaml12Loader(yaml.SafeLoader):
    """PyYAML speaks YAML 1.1, where `1e-6` is a string and `yes`/`no` are booleans; our
    config.yaml is written and read by serde_yaml (YAML 1.2 core schema), where `1e-6` is a
    float and only true/false are booleans. Resolve scalars the 1.2 way."""


Yaml12Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag not in ("tag:yaml.org,2002:float", "tag:yaml.org,2002:bool")]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def close(got, want, rel, floor=0.0):
    """Numbers equal within `rel` relative (NaN equals NaN, infinities must match)."""
    if math.isnan(got) or math.isnan(want):
        return math.isnan(got) and math.isnan(want)
    if math.isinf(got) or math.isinf(want):
        return got == want
    return abs(got - want) <= max(rel * max(abs(got), abs(want)), floor)


def read_config(path):
    """A run's config.yaml, read with YAML 1.2 scalars."""
    with open(path) as f:
        return yaml.load(f, Loader=Yaml12Loader)


def finished_run_dirs(results):
    """Run directories of an experiment results dir: named by 8-64 hex digits, with DONE."""
    return sorted(os.path.join(results, n) for n in os.listdir(results)
                  if RUN_DIR_NAME.match(n) and os.path.isfile(os.path.join(results, n, "DONE")))


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def same_json(got, want, rel=1e-12):
    """Structural equality of parsed JSON against a YAML value, numbers within `rel`."""
    if is_number(want):
        return is_number(got) and close(float(got), float(want), rel)
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(same_json(g, w, rel) for g, w in zip(got, want))
    if isinstance(want, dict):
        return (isinstance(got, dict) and set(got) == set(map(str, want))
                and all(same_json(got[str(k)], v, rel) for k, v in want.items()))
    return got == want


def expected_params(config, metrics):
    """The params contract: name -> value (bool/int/float/str/list/dict) before rendering."""
    job = config["job"]
    spec = job["model"]
    p = {
        "dataset": metrics["dataset"],
        "split": metrics["split"],
        "seed": metrics["seed"],
        "model": metrics["model"],
        "kind": metrics["model_kind"],
        "image_size": job["image_size"],
        "poi_raster_size": job["poi_raster_size"],
    }
    for k in ("image", "poi", "neighborhood"):
        p[f"input.{k}"] = bool(spec["inputs"][k])
    for k, v in spec["model"].items():
        if k != "kind" and v is not None:
            p[f"model.{k}"] = v
    return p


def viewer_params(params):
    """The names TensorBoard's HParams and MLflow give expected_params(): a model field is
    `<kind>.<field>` (summary.csv keeps `param.model.<field>`)."""
    kind = params["kind"]
    return {(f"{kind}.{k[len('model.'):]}" if k.startswith("model.") else k): v
            for k, v in params.items()}


MODULE_SWITCHES = ("se", "contrastive")


def model_facts(run_dir, metrics):
    """A run's typed model facts (src/track/records.rs ModelFacts): metrics.json's `facts`,
    or, for runs written before it, derived as the program does: family = metrics.json's
    model_kind (config.yaml's `kind` is the config variant's name, e.g. open_carbon),
    modules_off = OpenCarbon's switches that are false in config.yaml's job, inputs_off = the
    inputs that are false."""
    if metrics.get("facts") is not None:
        return metrics["facts"]
    spec = read_config(os.path.join(run_dir, "config.yaml"))["job"]["model"]
    return {
        "family": metrics["model_kind"],
        "modules_off": [k for k in MODULE_SWITCHES if spec["model"].get(k) is False],
        "inputs_off": [k for k in ("image", "poi", "neighborhood") if spec["inputs"].get(k) is False],
    }

