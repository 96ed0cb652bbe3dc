#!/usr/bin/env python3
"""Fit time and test R² of every Rust baseline against its Python counterpart, on the same
tile features and the same split, printed as ratios (issue: GraphSAGE, GBDT and the main table).

    cargo build --release
    .venv/bin/pip install -r scripts/requirements-baselines.txt   # numpy, sklearn, xgboost, torch, torch_geometric
    .venv/bin/python scripts/bench_baselines.py [--city london] [--seed 0] [--threads 2] [--repeat 5]

What it does:
1. writes the synthetic city with `opencarbon synth` and its feature table with `opencarbon
   features` (32 px images, 64 px POI rasters, as experiments/main.yaml);
2. runs the Rust baselines (configs/models/*.yaml settings, LASSO α = 0.003) on that dataset
   with a 4×4-block split through `opencarbon run`, and reads each run's test R² and, for the
   MLP and GraphSAGE, its fit time (metrics.json `fit_seconds`: assembling and standardising
   the features, training, predicting; no data loading);
3. times the tabular models (LASSO, random forest, GBDT) on exactly the Python side's work:
   `cargo bench --bench tabular` fits on the standardised training rows of the same table and
   split and predicts every row, `--repeat` times, median;
4. fits the Python counterparts on the same features (standardised with the training rows)
   and the same split (the runs' split.csv): scikit-learn Lasso and RandomForestRegressor,
   xgboost (hist) (each `--repeat` times, median), an MLP and GraphSAGE (PyTorch Geometric
   SAGEConv) trained full-batch with the same architecture, optimiser and early stopping as
   ours (once);
5. prints time ratios (Rust / Python; < 1 means Rust is faster) and R² differences.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "opencarbon")

MODELS = {
    "lasso": "  - kind: lasso\n    alpha: 0.003\n",
    "random_forest": "  - use: {root}/configs/models/random_forest.yaml\n",
    "gbdt": "  - use: {root}/configs/models/gbdt.yaml\n",
    "mlp": "  - use: {root}/configs/models/mlp.yaml\n",
    "graphsage": "  - use: {root}/configs/models/graphsage.yaml\n",
}


def sh(*args):
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{r.stderr}")
    return r.stdout


def r2(y, p):
    return 1.0 - np.sum((y - p) ** 2) / np.sum((y - np.mean(y)) ** 2)


def rust_runs(work, city_dir, seed):
    exp = os.path.join(work, "bench.yaml")
    with open(exp, "w") as f:
        f.write(f"name: bench\nresults_dir: {work}/results\ncache_dir: {work}/cache\n"
                "image_size: 32\npoi_raster_size: 64\n"
                f"datasets:\n  - path: {city_dir}\nmodels:\n")
        for m in MODELS.values():
            f.write(m.format(root=ROOT))
        f.write("splits:\n  - kind: block\n    block_tiles: 4\n    fractions: [0.6, 0.2, 0.2]\n"
                f"seeds: [{seed}]\n")
    sh(BIN, "run", exp)
    out = {}
    runs = os.path.join(work, "results", "bench")
    for d in os.listdir(runs):
        p = os.path.join(runs, d, "metrics.json")
        if os.path.isfile(p):
            m = json.load(open(p))
            out[m["model_kind"]] = (m["fit_seconds"], m["test"]["r2"], os.path.join(runs, d))
    return out


def load(work, city_dir, split_csv):
    feats = os.path.join(work, "features.csv")
    sh(BIN, "features", city_dir, "--out", feats, "--image-size", "32",
       "--poi-raster-size", "64", "--cache-dir", os.path.join(work, "cache"))
    with open(feats) as f:
        header = f.readline().strip().split(",")
        data = np.array([[float(v) for v in line.split(",")] for line in f])
    xy = data[:, :2].astype(int)
    emission, x = data[:, 2], data[:, 3:]
    index = {(a, b): i for i, (a, b) in enumerate(map(tuple, xy))}
    parts = {"train": [], "valid": [], "test": []}
    with open(split_csv) as f:
        f.readline()
        for line in f:
            _, a, b, part = line.strip().split(",")
            parts[part].append(index[(int(a), int(b))])
    parts = {k: np.array(v) for k, v in parts.items()}
    mean, std = x[parts["train"]].mean(0), x[parts["train"]].std(0)
    std[std < 1e-12] = 1.0
    # Queen contiguity on the tile grid, both directions (what TileGraph builds).
    src, dst = [], []
    for i, (a, b) in enumerate(map(tuple, xy)):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                j = index.get((a + dx, b + dy))
                if (dx or dy) and j is not None:
                    src.append(j)
                    dst.append(i)
    return (x - mean) / std, np.log(np.maximum(emission, 1e-300)), parts, np.array([src, dst]), header[3:]


def timed(fn, repeat=1):
    """The median time of `repeat` calls, and the last call's result."""
    seconds = []
    for _ in range(repeat):
        t = time.perf_counter()
        pred = fn()
        seconds.append(time.perf_counter() - t)
    return sorted(seconds)[len(seconds) // 2], pred


# Timed by benches/tabular.rs on the same table (the others through their runs).
TABULAR = {"lasso", "random_forest", "gbdt"}


def rust_tabular(work, kind, split_csv, seed, repeat):
    """Our fit + predict time on the standardised table (benches/tabular.rs), median."""
    model = os.path.join(work, f"{kind}.yaml")
    text = MODELS[kind].format(root=ROOT)
    if "use:" in text:
        body = open(text.split("use:", 1)[1].strip()).read()
    else:
        body = "".join(line.strip().removeprefix("- ") + "\n" for line in text.splitlines())
    with open(model, "w") as f:
        f.write(body)
    out = sh("cargo", "bench", "--quiet", "--bench", "tabular", "--", "--features",
             os.path.join(work, "features.csv"), "--split", split_csv, "--model", model,
             "--seed", str(seed), "--repeat", str(repeat))
    return json.loads(out.strip().splitlines()[-1])


def torch_node_model(x, y, parts, edges, graph, seed, threads):
    """Our MLP / GraphSAGE recipe in PyTorch (Geometric): 2 layers, 64 hidden, ReLU, dropout
    0.2, Adam(lr 5e-3, weight decay 5e-4), full-batch MSE on the standardised target, early
    stopping on validation R² (patience 100 after epoch 50, at most 1000 epochs)."""
    import torch
    from torch_geometric.nn import SAGEConv

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    tr, va = parts["train"], parts["valid"]
    ym, ys = y[tr].mean(), y[tr].std()
    X = torch.tensor(x, dtype=torch.float32)
    Y = torch.tensor((y - ym) / ys, dtype=torch.float32)
    E = torch.tensor(edges, dtype=torch.long)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            if graph:
                self.l1, self.l2 = SAGEConv(x.shape[1], 64), SAGEConv(64, 1)
            else:
                self.l1, self.l2 = torch.nn.Linear(x.shape[1], 64), torch.nn.Linear(64, 1)

        def forward(self, h):
            h = self.l1(h, E) if graph else self.l1(h)
            h = torch.nn.functional.dropout(torch.relu(h), 0.2, self.training)
            return (self.l2(h, E) if graph else self.l2(h)).squeeze(1)

    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=5e-3, weight_decay=5e-4)
    best, since, state = -np.inf, 0, None
    for epoch in range(1000):
        net.train()
        opt.zero_grad()
        loss = ((net(X)[tr] - Y[tr]) ** 2).mean()
        loss.backward()
        opt.step()
        net.eval()
        with torch.no_grad():
            p = net(X).numpy() * ys + ym
        score = r2(y[va], p[va])
        if score > best:
            best, since, state = score, 0, {k: v.clone() for k, v in net.state_dict().items()}
        else:
            since += 1
            if epoch + 1 >= 50 and since >= 100:
                break
    net.load_state_dict(state)
    net.eval()
    with torch.no_grad():
        return net(X).numpy() * ys + ym


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--city", default="london")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench_baselines_")
    city = os.path.join(work, args.city)
    sh(BIN, "synth", args.city, city)
    rust = rust_runs(work, city, args.seed)
    split_csv = os.path.join(rust["lasso"][2], "split.csv")
    x, y, parts, edges, names = load(work, city, split_csv)
    tr, te = parts["train"], parts["test"]

    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import Lasso
    import xgboost

    python = {}
    fits = {
        "lasso": ("scikit-learn Lasso", lambda: Lasso(alpha=0.003, max_iter=10000, tol=1e-6)
                  .fit(x[tr], y[tr]).predict(x)),
        "random_forest": ("scikit-learn RandomForest", lambda: RandomForestRegressor(
            n_estimators=200, min_samples_leaf=2, max_features=0.33, random_state=args.seed,
            n_jobs=args.threads).fit(x[tr], y[tr]).predict(x)),
        "gbdt": ("xgboost hist", lambda: xgboost.XGBRegressor(
            n_estimators=300, max_depth=6, learning_rate=0.05, subsample=0.8,
            colsample_bytree=0.8, reg_lambda=1.0, min_child_weight=1.0, tree_method="hist",
            random_state=args.seed, n_jobs=args.threads).fit(x[tr], y[tr]).predict(x)),
        "mlp": ("PyTorch MLP", lambda: torch_node_model(x, y, parts, edges, False, args.seed, args.threads)),
        "graphsage": ("PyG GraphSAGE", lambda: torch_node_model(x, y, parts, edges, True, args.seed, args.threads)),
    }
    print(f"{args.city}, 4x4-block split, seed {args.seed}: {len(tr)} train, {len(parts['valid'])} valid, "
          f"{len(te)} test tiles, {x.shape[1]} features; Python with {args.threads} threads")
    print(f"{'model':<15} {'python':<26} {'rust s':>8} {'python s':>9} {'rust/python':>12} "
          f"{'rust R²':>8} {'python R²':>10} {'ΔR²':>7}")
    for kind, (label, fit) in fits.items():
        repeat = args.repeat if kind in TABULAR else 1
        seconds, pred = timed(fit, repeat)
        rs, rr2, _ = rust[kind]
        if kind in TABULAR:
            rs = rust_tabular(work, kind, split_csv, args.seed, repeat)["median_seconds"]
        pr2 = r2(y[te], pred[te])
        python[kind] = (seconds, pr2)
        print(f"{kind:<15} {label:<26} {rs:8.3f} {seconds:9.3f} {rs / seconds:12.2f} "
              f"{rr2:8.3f} {pr2:10.3f} {rr2 - pr2:+7.3f}")


if __name__ == "__main__":
    main()
