#!/usr/bin/env python3
"""The v5 control of issue 24's first point: on the v5 synthetic cities, a ridge regression on
the 10 colour statistics of data/features.rs (the tile's own, not its neighbours') recovers the
part of ln emission that the image determines.

That part is `log_emission_image_part` of the city's latents.csv: the v5 generator's sectors
with every hidden factor at its median (energy intensity, vibrancy, site intensity, unmodelled
activity), a drawn plant at the median plant size, before the inventory
(src/data/synth/latents_v5.rs). If colour statistics recover it almost fully, a model that reads
pixels can know nothing about emission that the features do not, and the data cannot rank them.

Usage (from the repository root, after `cargo build --release` and `bash scripts/setup_venv.sh`):

    .venv/bin/python scripts/v5_colour_control.py [--presets london beijing yinchuan]
        [--seed 0] [--image-size 32] [--binary target/release/opencarbon]

Prints, per preset, the 5-fold cross-validated R² (folds shuffled with seed 0, pooled out of
fold) of ridge regression (alpha chosen by RidgeCV inside each training fold, standardised
features) over the tiles with a positive emission.
"""

import argparse
import csv
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

COLOUR = [
    "img_mean_r", "img_mean_g", "img_mean_b", "img_std_r", "img_std_g", "img_std_b",
    "img_edges", "img_green_share", "img_blue_share", "img_bright_share",
]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def control(binary, preset, seed, image_size, work):
    city = os.path.join(work, f"{preset}-s{seed}")
    subprocess.run([binary, "-q", "synth", preset, city, "--seed", str(seed)], check=True,
                   stdout=subprocess.DEVNULL)
    table = os.path.join(work, f"{preset}-features.csv")
    subprocess.run([binary, "-q", "features", city, "--out", table, "--image-size",
                    str(image_size), "--cache-dir", os.path.join(work, "cache")], check=True,
                   stdout=subprocess.DEVNULL)
    features = {(r["x"], r["y"]): r for r in read_csv(table)}
    x, y = [], []
    for r in read_csv(os.path.join(city, "latents.csv")):
        f = features[(r["x"], r["y"])]
        if float(f["emission"]) <= 0 or r["log_emission_image_part"] == "":
            continue
        x.append([float(f[c]) for c in COLOUR])
        y.append(float(r["log_emission_image_part"]))
    x, y = np.array(x), np.array(y)
    predicted = np.empty_like(y)
    for train, test in KFold(5, shuffle=True, random_state=0).split(x):
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-4, 3, 15)))
        model.fit(x[train], y[train])
        predicted[test] = model.predict(x[test])
    r2 = 1 - ((y - predicted) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    return r2, len(y)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["london", "beijing", "yinchuan"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--binary", default="target/release/opencarbon")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        print(f"| preset | tiles | CV R² of ridge on the 10 colour statistics ({a.image_size} px) |")
        print("|---|---:|---:|")
        for p in a.presets:
            r2, n = control(a.binary, p, a.seed, a.image_size, work)
            print(f"| {p} | {n} | {r2:.3f} |")
            sys.stdout.flush()
            assert math.isfinite(r2)


if __name__ == "__main__":
    main()
