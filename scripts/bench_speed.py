#!/usr/bin/env python3
"""Speed against same-algorithm peers, measured side by side: our OpenCarbon epoch against
PyTorch doing the same steps (scripts/bench_epoch_torch.py --same-algorithm on the batches
ours writes), and our convolution layer against PyTorch's (scripts/bench_conv_torch.py), at
1 and 2 threads, interleaved A B A B ... so that drift of the machine falls on both.

Run on an otherwise idle machine, from the repository root, with a Python that has torch
(scripts/requirements-torch-peer.txt):
    python scripts/bench_speed.py [--pairs 5] [--threads 1 2] [--only cpu32-patch conv whole]
(all configurations at 1 and 2 threads, except resnet256 at 2 unless named with --only:
about 45 minutes on the 2-core machine, plus the whole trainings)
`whole` is a whole training, ours (`opencarbon run` of one job: london, 4x4-block split, seed
0, the CPU recipe configs/models/opencarbon_cpu.yaml at 32 px images and 64 px POI rasters, as
in experiments/main.yaml) against scripts/train_opencarbon_torch.py on that run, each timed as
its process's wall time (ours: plan, data from the cache, training, evaluation and records;
the peer: the same after importing torch).
Prints, per configuration and thread count, the median ratio ours / peer of the per-pair
ratios with its min-max, and both medians in seconds; `--json F` also writes every pair.
Ours' thread count is OPENCARBON_THREADS; the peer's torch.set_num_threads.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

CPU = "configs/models/opencarbon_cpu.yaml"
PAPER = "configs/models/opencarbon_paper.yaml"
# name -> (model configuration, image size, patch_tiles or None for the configuration's own,
# training tiles or None for all 757). The ResNet-18 configuration (random batches of 32) is
# timed on the first 32 training tiles: one batch of 32 targets and their neighbourhoods.
EPOCH_CONFIGS = {
    "cpu32-patch": (CPU, 32, None, None),
    "cpu32-random": (CPU, 32, 0, None),
    "cpu64-patch": (CPU, 64, None, None),
    "cpu64-random": (CPU, 64, 0, None),
    "resnet256": (PAPER, 256, None, 32),
}


WHOLE_EXPERIMENT = """name: whole
results_dir: {results}
image_size: 32
poi_raster_size: 64
datasets: [{{preset: london}}]
models: [{{use: {config}}}]
splits: [{{kind: block, block_tiles: 4}}]
seeds: [0]
"""


def main_binary():
    """Build the release binary and return its path."""
    out = subprocess.run(["cargo", "build", "--release", "--message-format=json"], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    for line in out.stdout.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable") \
                and msg["target"]["name"] == "opencarbon":
            return msg["executable"]
    raise RuntimeError("no opencarbon executable in cargo's output")


def whole_run_dir(results):
    """The finished run of the whole-training experiment, if any."""
    exp = os.path.join(results, "whole")
    done = [os.path.join(exp, d) for d in sorted(os.listdir(exp))
            if os.path.isfile(os.path.join(exp, d, "DONE"))] if os.path.isdir(exp) else []
    return done[0] if done else None


def whole_pair(exe, python, threads, tmp, order):
    """Wall seconds of our whole training and of the peer's on the same run. The first call
    makes the run once untimed (and with it the city's cache), so every timed run of ours
    finds the data prepared, as the peer does."""
    import time

    results = os.path.join(tmp, "whole-results")
    experiment = os.path.join(tmp, "whole.yaml")
    with open(experiment, "w") as f:
        f.write(WHOLE_EXPERIMENT.format(results=results, config=os.path.join(ROOT, CPU)))
    ours_cmd = [exe, "-q", "run", experiment, "--force"]
    env = {"OPENCARBON_THREADS": str(threads)}
    if whole_run_dir(results) is None:
        run(ours_cmd, env)
    result = {}
    for who in order:
        started = time.perf_counter()
        if who == "ours":
            run(ours_cmd, env)
            result["ours"] = time.perf_counter() - started
        else:
            out_json = os.path.join(tmp, "peer.json")
            run([python, "scripts/train_opencarbon_torch.py", "--run", whole_run_dir(results),
                 "--threads", str(threads), "--quiet", "--out", out_json])
            result["peer"] = time.perf_counter() - started
            with open(out_json) as f:
                result["peer_test_r2"] = json.load(f).get("test", {}).get("r2")
    return result["ours"], result["peer"], result


def bench_binaries():
    """Build the benches and return {name: executable}."""
    out = subprocess.run(["cargo", "bench", "--no-run"], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    found = dict(re.findall(r"Executable benches/(\w+)\.rs \(([^)]+)\)", out.stderr))
    return {k: os.path.join(ROOT, v) for k, v in found.items()}


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON line in:\n{text}")


def run(cmd, env=None):
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, **(env or {})})
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout


def epoch_pair(exe, python, name, threads, batches, order):
    config, size, patch, tiles = EPOCH_CONFIGS[name]
    ours_cmd = [exe, "--epochs", "2", "--config", config, "--image-size", str(size),
                "--batches-out", batches]
    if patch is not None:
        ours_cmd += ["--patch-tiles", str(patch)]
    if tiles is not None:
        ours_cmd += ["--tiles", str(tiles)]
    peer_cmd = [python, "scripts/bench_epoch_torch.py", "--same-algorithm", "--batches", batches,
                "--config", config, "--image-size", str(size), "--threads", str(threads)]
    env = {"OPENCARBON_THREADS": str(threads)}
    result = {}
    for who in order:
        if who == "ours":
            result["ours"] = last_json(run(ours_cmd, env))
        else:  # ours writes the batches; every first pair runs ours first
            result["peer"] = last_json(run(peer_cmd))
    return result["ours"]["epoch_s"], result["peer"]["epoch_s"], result


def conv_pair(exe, python, threads, order):
    result = {}
    for who in order:
        if who == "ours":
            out = run([exe], {"OPENCARBON_THREADS": str(threads)})
            result["ours"] = float(re.search(r"median ([\d.]+) ms", out).group(1)) / 1000
        else:
            out = run([python, "scripts/bench_conv_torch.py", "--threads", str(threads)])
            result["peer"] = float(re.search(r"median ([\d.]+) ms", out).group(1)) / 1000
    return result["ours"], result["peer"], result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--only", nargs="+", choices=[*EPOCH_CONFIGS, "conv", "whole"])
    ap.add_argument("--python", default=sys.executable, help="the Python that has torch")
    ap.add_argument("--json", help="write every pair's measurements here")
    args = ap.parse_args()
    names = args.only or [*EPOCH_CONFIGS, "conv", "whole"]
    # The 256 px ResNet epoch takes minutes at one thread: it runs at 2 unless named.
    default_threads = {"resnet256": [t for t in args.threads if t > 1] or args.threads}
    exes = bench_binaries()
    if "whole" in names:
        exes["whole"] = main_binary()
    peer_version = run([args.python, "-c", "import torch; print(torch.__version__, "
                        "torch.backends.cpu.get_cpu_capability(), "
                        "'oneDNN', torch.backends.mkldnn.is_available())"]).strip()
    print(f"peer: torch {peer_version}; pairs {args.pairs}, interleaved; ratio = ours / peer "
          "time per pair (< 1: ours faster)")
    rows, record = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            for threads in (args.threads if args.only else default_threads.get(name, args.threads)):
                batches = os.path.join(tmp, f"{name}.json")
                ratios, ours_s, peer_s = [], [], []
                for i in range(args.pairs):
                    order = ("ours", "peer") if i % 2 == 0 else ("peer", "ours")
                    if name == "conv":
                        o, p, raw = conv_pair(exes["conv"], args.python, threads, order)
                    elif name == "whole":
                        o, p, raw = whole_pair(exes["whole"], args.python, threads, tmp, order)
                    else:
                        o, p, raw = epoch_pair(exes["epoch"], args.python, name, threads,
                                               batches, order)
                    ratios.append(o / p)
                    ours_s.append(o)
                    peer_s.append(p)
                    record.append({"config": name, "threads": threads, "pair": i, **raw})
                    print(f"  {name} t={threads} pair {i + 1}: ours {o:.3f} s, peer {p:.3f} s, "
                          f"ratio {o / p:.2f}", flush=True)
                rows.append((name, threads, statistics.median(ratios), min(ratios), max(ratios),
                             statistics.median(ours_s), statistics.median(peer_s)))
    print()
    print("| configuration | threads | ours / peer (median) | min–max | ours median s | peer median s |")
    print("|---|---|---|---|---|---|")
    for name, t, med, lo, hi, o, p in rows:
        print(f"| {name} | {t} | {med:.2f} | {lo:.2f}–{hi:.2f} | {o:.3f} | {p:.3f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
