#!/usr/bin/env python3
"""Our OpenCarbon runs against the PyTorch peer trained on the same data, split and recipe.

    python scripts/compare_peer.py results/peer [--threads 2] [--python /tmp/peer-venv/bin/python]

For every finished OpenCarbon run of the experiment directory, runs
scripts/train_opencarbon_torch.py on it with the job's seed (once: its JSON is kept in
<dir>/peer/<run id>.json), then prints and writes <dir>/tables/peer.md: test R² per seed of
ours and of PyTorch, their means ± std, and the paired difference (ours − PyTorch) with its
standard error. Pairs share the split, so the difference removes the split's share of the noise.
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--python", default=sys.executable)
    args = ap.parse_args()
    os.makedirs(os.path.join(args.dir, "peer"), exist_ok=True)
    rows = []
    for name in sorted(os.listdir(args.dir)):
        run = os.path.join(args.dir, name)
        if not os.path.isfile(os.path.join(run, "DONE")):
            continue
        with open(os.path.join(run, "metrics.json")) as f:
            ours = json.load(f)
        if ours["model_kind"] != "opencarbon":
            continue
        out = os.path.join(args.dir, "peer", name + ".json")
        if not os.path.isfile(out):
            subprocess.run(
                [args.python, os.path.join(HERE, "train_opencarbon_torch.py"), "--run", run,
                 "--threads", str(args.threads), "--out", out, "--quiet"],
                check=True,
            )
        with open(out) as f:
            peer = json.load(f)
        rows.append((ours["dataset"], ours["seed"], ours["model"], ours["test"]["r2"],
                     peer["test"]["r2"], ours.get("fit_seconds"), peer.get("wall_seconds")))
    rows.sort()
    lines = ["| dataset | seed | ours test R² | PyTorch test R² | ours − PyTorch | ours s | PyTorch s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for d, s, _, a, b, ta, tb in rows:
        lines.append(f"| {d} | {s} | {a:.3f} | {b:.3f} | {a - b:+.3f} | {ta:.0f} | {tb:.0f} |")
    ours = [r[3] for r in rows]
    peer = [r[4] for r in rows]
    diffs = [a - b for a, b in zip(ours, peer)]
    n = len(rows)
    sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0
    se = sd(diffs) / math.sqrt(n) if n > 1 else float("nan")
    summary = (f"\nmean over {n} seeds: ours {statistics.fmean(ours):.3f} ± {sd(ours):.3f}, "
               f"PyTorch {statistics.fmean(peer):.3f} ± {sd(peer):.3f}; paired difference "
               f"{statistics.fmean(diffs):+.3f} ± {se:.3f} (standard error)")
    models = sorted({r[2] for r in rows})
    text = ("### OpenCarbon: ours vs the PyTorch peer (scripts/compare_peer.py)\n\n"
            f"model: {', '.join(models)}\n\n" + "\n".join(lines) + "\n" + summary + "\n")
    print(text)
    os.makedirs(os.path.join(args.dir, "tables"), exist_ok=True)
    with open(os.path.join(args.dir, "tables", "peer.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
