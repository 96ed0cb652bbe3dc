#!/usr/bin/env python3
"""Where the premise ladder's headroom goes (issue 24): on one generated city, the same learner
(scikit-learn's HistGradientBoostingRegressor, 300 iterations, learning rate 0.05) fitted on
the handcrafted features that the feature baselines see, and on the oracle's visible latents
(floor area by use, traffic by road class, facility capacity; the tile's own and its queen
neighbours' mean), cross-validated over 4x4-tile blocks (5 group folds), for three targets:

  obs       ln of the reported emission (tiles.csv: after the ODIAC-like inventory and its error)
  phys      ln of the true emission before the inventory (latents.csv)
  phys+S    the true emission with a log-normal error of sigma S, as a bottom-up inventory
            with the same error would report it

and R² over all tiles and over the urban half and quarter (tiles whose 3x3 floor area is above
the median / upper quartile). Not a rung of the ladder: a diagnosis of why one passes or fails.

Usage (from the repository root, after `cargo build --release` and `bash scripts/setup_venv.sh`):

    .venv/bin/python scripts/v6_headroom_diagnosis.py --preset london6 --seed 100 \
        [--targets obs phys phys+0.4] [--binary target/release/opencarbon]
"""

import argparse
import csv
import os
import subprocess
import tempfile

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.model_selection import GroupKFold

VISIBLE_PREFIXES = ("floor_", "traffic_", "facility_")


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def cross_validated(x, y, groups):
    predicted = np.empty_like(y)
    for train, test in GroupKFold(5).split(x, y, groups):
        model = HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, random_state=0)
        predicted[test] = model.fit(x[train], y[train]).predict(x[test])
    return predicted


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="london6")
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--targets", nargs="+", default=["obs", "phys", "phys+0.4"])
    ap.add_argument("--binary", default="target/release/opencarbon")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        city = os.path.join(work, "city")
        subprocess.run([a.binary, "-q", "synth", a.preset, city, "--seed", str(a.seed)],
                       check=True, stdout=subprocess.DEVNULL)
        table = os.path.join(work, "features.csv")
        subprocess.run([a.binary, "-q", "features", city, "--out", table, "--cache-dir",
                        os.path.join(work, "cache")], check=True, stdout=subprocess.DEVNULL)
        features = read_csv(table)
        latents = read_csv(os.path.join(city, "latents.csv"))
    names = [c for c in features[0] if c not in ("x", "y", "emission")]
    x_features = np.array([[float(r[c]) for c in names] for r in features])
    visible = [c for c in latents[0] if c.startswith(VISIBLE_PREFIXES)]
    xy = [(int(r["x"]), int(r["y"])) for r in latents]
    assert xy == [(int(r["x"]), int(r["y"])) for r in features]
    index = {k: i for i, k in enumerate(xy)}
    v = np.array([[float(r[c]) for c in visible] for r in latents])
    around = np.zeros_like(v)
    for i, (tx, ty) in enumerate(xy):
        nb = [index[(tx + dx, ty + dy)] for dx in (-1, 0, 1) for dy in (-1, 0, 1)
              if (dx or dy) and (tx + dx, ty + dy) in index]
        around[i] = v[nb].mean(0) if nb else 0.0
    x_oracle = np.column_stack([np.log1p(v), np.log1p(around)])
    floors = [k for k, c in enumerate(visible) if c.startswith("floor_")]
    floor3x3 = v[:, floors].sum(1) + 8 * around[:, floors].sum(1)
    groups = np.array([(tx // 4) * 100_000 + ty // 4 for tx, ty in xy])
    physical = np.array([float(r["log_emission_physical"] or "nan") for r in latents])
    observed = np.log(np.array([float(r["emission"]) for r in features]))
    print(f"{a.preset} seed {a.seed}: {len(xy)} tiles")
    print("| target | tiles | n | features R² | oracle R² | oracle − features |")
    print("|---|---|---:|---:|---:|---:|")
    for target in a.targets:
        if target == "obs":
            y = observed
        elif target == "phys":
            y = physical.copy()
        else:
            sigma = float(target.split("+")[1])
            y = physical + np.random.default_rng(0).normal(0.0, sigma, len(physical))
        ok = np.isfinite(y)
        p_f = cross_validated(x_features[ok], y[ok], groups[ok])
        p_o = cross_validated(x_oracle[ok], y[ok], groups[ok])
        yy, fl = y[ok], floor3x3[ok]
        for label, mask in (("all", np.ones(len(yy), bool)),
                            ("urban half", fl >= np.median(fl)),
                            ("urban quarter", fl >= np.quantile(fl, 0.75))):
            def r2(p):
                return 1 - ((yy[mask] - p[mask]) ** 2).sum() / ((yy[mask] - yy[mask].mean()) ** 2).sum()
            f, o = r2(p_f), r2(p_o)
            print(f"| {target} | {label} | {mask.sum()} | {f:.3f} | {o:.3f} | {o - f:+.3f} |")


if __name__ == "__main__":
    main()
