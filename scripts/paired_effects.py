#!/usr/bin/env python3
"""Paired effects in an experiment directory (standard library only), from metrics.json.

    python3 scripts/paired_effects.py results/ablation [--part test]

Per dataset, for the full OpenCarbon (its label carries no ablation mark) against every other
model of the experiment: the mean over seeds of the per-seed difference of R² (full minus the
other: a module's effect when the other is its ablation), its standard error, the standard
deviation of the per-seed difference, and n. Seeds share their split, so the pairing removes
the split's share of the noise.
"""
import argparse
import json
import math
import os
import statistics

MARKS = {"no-se", "no-cl", "image-only", "poi-only", "no-nb"}


def is_full_opencarbon(label):
    if not label.startswith("opencarbon"):
        return False
    rest = label[len("opencarbon"):]
    marks = set(rest.replace("[", ",").replace("]", ",").split(","))
    return (rest == "" or rest.startswith("[")) and not (marks & MARKS)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--part", default="test", choices=["train", "valid", "test"])
    args = ap.parse_args()
    runs = []
    for name in sorted(os.listdir(args.dir)):
        path = os.path.join(args.dir, name, "metrics.json")
        if os.path.isfile(os.path.join(args.dir, name, "DONE")) and os.path.isfile(path):
            with open(path) as f:
                runs.append(json.load(f))
    runs.sort(key=lambda r: r["job_index"])
    datasets = list(dict.fromkeys(r["dataset"] for r in runs))
    models = list(dict.fromkeys(r["model"] for r in runs))
    full = next((m for m in models if is_full_opencarbon(m)), None)
    if full is None:
        raise SystemExit("no full OpenCarbon in " + args.dir)
    score = {(r["model"], r["dataset"], r["seed"]): r[args.part]["r2"] for r in runs if r.get(args.part)}
    print(f"full model: {full}; {args.part} R²\n")
    print("| dataset | full minus | mean difference ± SE | std of the difference | n |")
    print("|---|---|---:|---:|---:|")
    for d in datasets:
        for m in models:
            if m == full:
                continue
            diffs = [score[(full, d, s)] - v for (mm, dd, s), v in score.items()
                     if mm == m and dd == d and (full, d, s) in score]
            if len(diffs) < 2:
                continue
            mean = statistics.fmean(diffs)
            sd = statistics.stdev(diffs)
            print(f"| {d} | {m} | {mean:+.3f} ± {sd / math.sqrt(len(diffs)):.3f} | {sd:.3f} | {len(diffs)} |")


if __name__ == "__main__":
    main()
