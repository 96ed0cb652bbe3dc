#!/usr/bin/env python3
"""Tables of a recipe study from its run directories' metrics.json (standard library only).

  python3 scripts/recipe_table.py results/recipe [more dirs] --part valid
  python3 scripts/recipe_table.py results/recipe --part test --reference LABEL

Per model label: mean ± std over seeds of the part's R² per dataset, the mean over datasets,
and the paired difference to the reference label (default: the first label in plan order):
mean over (dataset, seed) pairs of the per-pair difference ± its standard error. Run with
`--part valid` to choose a recipe; `--part test` only after the choice is committed.
"""
import argparse
import json
import math
import os
import statistics


def load(dirs):
    runs = []
    for d in dirs:
        for name in sorted(os.listdir(d)):
            run = os.path.join(d, name)
            if name.startswith(".") or not os.path.isfile(os.path.join(run, "DONE")):
                continue
            with open(os.path.join(run, "metrics.json")) as f:
                runs.append(json.load(f))
    return runs


def mean_std(values):
    m = statistics.fmean(values)
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return m, s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--part", choices=["valid", "test"], required=True)
    ap.add_argument("--reference")
    args = ap.parse_args()
    runs = [r for r in load(args.dirs) if r.get(args.part)]
    labels, datasets = [], []
    for r in sorted(runs, key=lambda r: r["job_index"]):
        if r["model"] not in labels:
            labels.append(r["model"])
        if r["dataset"] not in datasets:
            datasets.append(r["dataset"])
    score = {(r["model"], r["dataset"], r["seed"]): r[args.part]["r2"] for r in runs}
    reference = args.reference or labels[0]
    head = "| recipe (model label) | " + " | ".join(f"{d} {args.part} R²" for d in datasets)
    print(head + f" | mean | paired vs first | n |")
    print("|---" * (len(datasets) + 4) + "|")
    for label in labels:
        cells, means = [], []
        for d in datasets:
            v = [s for (m, dd, _), s in score.items() if m == label and dd == d]
            if v:
                m, s = mean_std(v)
                means.append(m)
                cells.append(f"{m:.3f} ± {s:.3f}")
            else:
                cells.append("–")
        diffs = [
            s - score[(reference, d, seed)]
            for (m, d, seed), s in score.items()
            if m == label and (reference, d, seed) in score
        ]
        if label == reference or len(diffs) < 2:
            paired = "–"
        else:
            dm, ds = mean_std(diffs)
            paired = f"{dm:+.3f} ± {ds / math.sqrt(len(diffs)):.3f}"
        n = sum(1 for (m, _, _) in score if m == label)
        overall = f"{statistics.fmean(means):.3f}" if means else "–"
        print(f"| {label} | " + " | ".join(cells) + f" | {overall} | {paired} | {n} |")


if __name__ == "__main__":
    main()
