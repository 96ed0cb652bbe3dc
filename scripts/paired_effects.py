#!/usr/bin/env python3
"""Paired effects in an experiment directory, from metrics.json (standard library only; runs
that predate metrics.json's typed model facts need PyYAML to read their config.yaml).

    python3 scripts/paired_effects.py results/ablation [--part test]

Per dataset, for the full OpenCarbon (its facts: family opencarbon, no module or input
switched off; never read from its label) against every other
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


def facts_of(run_dir, metrics):
    """The run's typed model facts: metrics.json's, else (a run written before they were
    recorded) derived from its config.yaml by scripts/run_records.py, which needs PyYAML."""
    if metrics.get("facts") is not None:
        return metrics["facts"]
    from run_records import model_facts
    return model_facts(run_dir, metrics)


def is_full_opencarbon(facts):
    return facts["family"] == "opencarbon" and not facts["modules_off"] and not facts["inputs_off"]

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
                run = json.load(f)
            run["facts"] = facts_of(os.path.join(args.dir, name), run)
            runs.append(run)
    runs.sort(key=lambda r: r["job_index"])
    datasets = list(dict.fromkeys(r["dataset"] for r in runs))
    models = list(dict.fromkeys(r["model"] for r in runs))
    full = next((r["model"] for r in runs if is_full_opencarbon(r["facts"])), None)
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
