#!/usr/bin/env python3
"""Generate baseline fixtures: an XGBoost regression oracle and PyG SAGEConv semantics.

The Rust tests compare opencarbon's own gradient-boosted trees and GraphSAGE layers against
the values written here. Python is never needed to build or test the crate.

Usage (from the repository root):

    .venv/bin/python -m pip install -r scripts/requirements-baselines.txt
    .venv/bin/python scripts/make_baseline_fixtures.py

Outputs:
    tests/fixtures/gbdt/  data.csv, predictions.csv, expected.json, README.md
    tests/fixtures/sage/  edges.csv, case_mean.json, case_mean_norm.json,
                          case_max_project.json, case_two_layer.json, README.md

Everything is deterministic (fixed numpy/torch seeds, single-threaded XGBoost). Expected
values are always computed from the numbers *as written* (CSV re-read after writing, weights
and features rounded to 7 significant digits before use), so the Rust side sees exactly the
inputs the oracle saw. SAGEConv is evaluated in float64.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path

import numpy as np
import sklearn
import torch
import xgboost
from sklearn.metrics import mean_squared_error, r2_score

warnings.filterwarnings("ignore", category=FutureWarning)
import torch_geometric  # noqa: E402
from torch_geometric.nn import SAGEConv  # noqa: E402
from torch_geometric.nn.aggr import MaxAggregation, MeanAggregation  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
GBDT_DIR = REPO_ROOT / "tests" / "fixtures" / "gbdt"
SAGE_DIR = REPO_ROOT / "tests" / "fixtures" / "sage"

GBDT_SEED = 20240701
SAGE_SEED = 20240702

N_ROWS = 400
N_TRAIN = 300
N_FEATURES = 8

GBDT_CONFIGS = {
    "shallow": dict(
        n_estimators=100,
        max_depth=4,
        learning_rate=0.1,
        subsample=1.0,
        colsample_bytree=1.0,
        reg_lambda=1.0,
        min_child_weight=1.0,
    ),
    "deep_subsample": dict(
        n_estimators=200,
        max_depth=6,
        learning_rate=0.05,
        subsample=0.8,
        colsample_bytree=1.0,
        reg_lambda=1.0,
        min_child_weight=1.0,
    ),
}
# Common to both configs.
GBDT_COMMON = dict(
    objective="reg:squarederror",
    tree_method="exact",
    gamma=0.0,
    reg_alpha=0.0,
    max_delta_step=0.0,
    random_state=0,
    n_jobs=1,
)


def g7(v: float) -> float:
    """Round to 7 significant digits (what the fixtures store); -0.0 -> 0.0."""
    return float(f"{float(v):.7g}") + 0.0


def nested(t) -> list:
    """Tensor/array -> nested lists of 7-significant-digit floats."""
    a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
    if a.ndim == 0:
        return g7(a)
    return [nested(x) for x in a] if a.ndim > 1 else [g7(x) for x in a]


def write_json(path: Path, obj: dict) -> None:
    # Compact but line-broken per top-level key: small files, readable diffs.
    lines = [json.dumps(k) + ": " + json.dumps(v, separators=(",", ":")) for k, v in obj.items()]
    path.write_text("{\n" + ",\n".join(lines) + "\n}\n")


# --------------------------------------------------------------------------
# GBDT: data.csv, predictions.csv, expected.json
# --------------------------------------------------------------------------


def make_gbdt_data() -> None:
    rng = np.random.default_rng(GBDT_SEED)
    # Features uniform on [0, 1), written with 2 decimals (many ties between rows, on purpose:
    # they exercise the exact greedy split search's handling of equal feature values, and
    # keep the file small).
    x = np.round(rng.uniform(0.0, 1.0, size=(N_ROWS, N_FEATURES)), 2)
    noise = rng.normal(0.0, 0.3, size=N_ROWS)
    y = (
        2.0 * (x[:, 0] > 0.5)
        + 3.0 * x[:, 1] * x[:, 2]
        + np.sin(2.0 * math.pi * x[:, 3])
        + 1.5 * ((x[:, 4] > 0.3) & (x[:, 5] < 0.6))
        + 0.5 * x[:, 6]
        + noise
    )
    with (GBDT_DIR / "data.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow([f"f{j}" for j in range(N_FEATURES)] + ["y", "split"])
        for i in range(N_ROWS):
            split = "train" if i < N_TRAIN else "test"
            w.writerow([f"{v:.2f}" for v in x[i]] + [f"{y[i]:.7g}", split])


def read_gbdt_data():
    with (GBDT_DIR / "data.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    X = np.array([[float(r[f"f{j}"]) for j in range(N_FEATURES)] for r in rows])
    Y = np.array([float(r["y"]) for r in rows])
    split = np.array([r["split"] for r in rows])
    assert len(rows) == N_ROWS
    assert np.all(split[:N_TRAIN] == "train") and np.all(split[N_TRAIN:] == "test")
    return X[:N_TRAIN], Y[:N_TRAIN], X[N_TRAIN:], Y[N_TRAIN:]


def eval_dump_tree(node: dict, x: np.ndarray) -> float:
    """Walk one tree of XGBoost's JSON dump: go to "yes" (left) iff x[f] < split."""
    while "leaf" not in node:
        f = int(node["split"][1:])  # feature names are "f<j>"
        v = x[f]
        nxt = node["yes"] if (np.float32(v) < np.float32(node["split_condition"])) else node["no"]
        node = next(c for c in node["children"] if c["nodeid"] == nxt)
    return float(np.float32(node["leaf"]))


def compact_tree(node: dict) -> dict:
    if "leaf" in node:
        return {"leaf": g7(node["leaf"])}
    return {
        "feature": int(node["split"][1:]),
        "threshold": g7(node["split_condition"]),
        "gain": g7(node["gain"]),
        "cover": g7(node["cover"]),
        "left": compact_tree(next(c for c in node["children"] if c["nodeid"] == node["yes"])),
        "right": compact_tree(next(c for c in node["children"] if c["nodeid"] == node["no"])),
    }


def make_gbdt() -> dict:
    make_gbdt_data()
    Xtr, Ytr, Xte, Yte = read_gbdt_data()
    base_score = float(np.mean(Ytr))
    feature_names = [f"f{j}" for j in range(N_FEATURES)]

    configs_out = {}
    preds = {}
    for name, params in GBDT_CONFIGS.items():
        model = xgboost.XGBRegressor(**params, **GBDT_COMMON, base_score=base_score)
        model.fit(Xtr, Ytr)
        booster = model.get_booster()
        booster.feature_names = feature_names
        pte = model.predict(Xte).astype(np.float64)
        ptr = model.predict(Xtr).astype(np.float64)

        # base_score must be used as given (no intercept re-estimation in xgboost >= 2).
        cfg = json.loads(booster.save_config())
        bs_used = cfg["learner"]["learner_model_param"]["base_score"]
        bs_used = float(bs_used.strip("[]").split(",")[0])
        assert abs(bs_used - base_score) < 1e-5 * max(1.0, abs(base_score)), (bs_used, base_score)

        # Re-evaluate the dumped trees: prediction = base_score + sum of leaf values
        # (learning rate is already folded into the leaves).
        dump = [json.loads(s) for s in booster.get_dump(dump_format="json", with_stats=True)]
        assert len(dump) == params["n_estimators"]
        manual = np.array(
            [np.float32(base_score) + sum(eval_dump_tree(t, x) for t in dump) for x in Xte]
        )
        assert np.max(np.abs(manual - pte)) < 1e-4, np.max(np.abs(manual - pte))

        out = {
            "params": {**params, **GBDT_COMMON, "base_score": base_score},
            "r2_test": float(r2_score(Yte, pte)),
            "rmse_test": float(math.sqrt(mean_squared_error(Yte, pte))),
            "r2_train": float(r2_score(Ytr, ptr)),
            "n_trees": len(dump),
            "max_depth_seen": max(tree_depth(t) for t in dump),
        }
        if params["subsample"] == 1.0:
            # Deterministic (no sampling): the first tree is fully reproducible.
            out["first_tree"] = compact_tree(dump[0])
            check_first_tree(out["first_tree"], Xtr, Ytr, base_score, params)
        configs_out[name] = out
        preds[name] = pte

    with (GBDT_DIR / "predictions.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["row"] + list(preds))
        for i in range(len(Yte)):
            w.writerow([N_TRAIN + i] + [f"{preds[k][i]:.7g}" for k in preds])

    expected = {
        "n_train": N_TRAIN,
        "n_test": N_ROWS - N_TRAIN,
        "features": feature_names,
        "target": "y",
        "generating_model": (
            "f_j ~ U(0,1) rounded to 2 decimals; y = 2*[f0>0.5] + 3*f1*f2 + sin(2*pi*f3) "
            "+ 1.5*[f4>0.3 and f5<0.6] + 0.5*f6 + N(0, 0.3^2); f7 pure noise"
        ),
        "base_score": base_score,
        "notes": (
            "Fit on the first 300 rows of data.csv as written, evaluated on the last 100. "
            "r2/rmse via sklearn. base_score = mean(y_train) passed explicitly. "
            "Predictions are float32 from xgboost, written with 7 significant digits."
        ),
        "configs": configs_out,
        "xgboost_version": xgboost.__version__,
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
    }
    write_json(GBDT_DIR / "expected.json", expected)
    return {k: (v["r2_test"], v["rmse_test"]) for k, v in configs_out.items()}


def check_first_tree(tree: dict, X, Y, base_score: float, params: dict) -> None:
    """Check the README's formulas: gain without the 1/2 factor, leaf = -G/(H+lambda)*eta."""
    lam, eta = params["reg_lambda"], params["learning_rate"]
    g = base_score - Y  # gradient of 1/2 (pred - y)^2 at pred = base_score; h = 1

    def score(mask):
        return g[mask].sum() ** 2 / (mask.sum() + lam)

    def walk(node, mask):
        if "leaf" in node:
            leaf = -g[mask].sum() / (mask.sum() + lam) * eta
            assert abs(leaf - node["leaf"]) < 1e-4 * max(1.0, abs(leaf)), (leaf, node)
            return
        left = mask & (X[:, node["feature"]] < node["threshold"])
        right = mask & ~(X[:, node["feature"]] < node["threshold"])
        gain = score(left) + score(right) - score(mask)
        assert abs(gain - node["gain"]) < 1e-3 * max(1.0, abs(gain)), (gain, node["gain"])
        assert node["cover"] == mask.sum()
        walk(node["left"], left)
        walk(node["right"], right)

    walk(tree, np.ones(len(Y), dtype=bool))


def tree_depth(node: dict) -> int:
    if "leaf" in node:
        return 0
    return 1 + max(tree_depth(c) for c in node["children"])


# --------------------------------------------------------------------------
# SAGE: edges.csv, case_*.json
# --------------------------------------------------------------------------

GRID_W, GRID_H = 4, 3  # node id = row * GRID_W + col; nodes 0..11
N_NODES = GRID_W * GRID_H + 1  # node 12 is isolated
ISOLATED = N_NODES - 1
IN_DIM = 5


def grid_edges() -> list[tuple[int, int]]:
    edges = []
    for r in range(GRID_H):
        for c in range(GRID_W):
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    if dr == 0 and dc == 0:
                        continue
                    rr, cc = r + dr, c + dc
                    if 0 <= rr < GRID_H and 0 <= cc < GRID_W:
                        edges.append((r * GRID_W + c, rr * GRID_W + cc))
    return sorted(edges)


def rounded(rng: np.random.Generator, *shape, scale: float = 1.0) -> torch.Tensor:
    a = rng.normal(0.0, scale, size=shape)
    return torch.tensor(np.vectorize(g7)(a), dtype=torch.float64)


def set_linear(lin, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    with torch.no_grad():
        lin.weight.copy_(weight)
        if bias is not None:
            lin.bias.copy_(bias)
        else:
            assert lin.bias is None


def init_conv(conv: SAGEConv, rng: np.random.Generator, fin: int, fout: int) -> dict:
    s = 1.0 / math.sqrt(fin)
    params = {}
    if conv.project:
        params["lin.weight"] = rounded(rng, fin, fin, scale=s)
        params["lin.bias"] = rounded(rng, fin, scale=s)
        set_linear(conv.lin, params["lin.weight"], params["lin.bias"])
    params["lin_l.weight"] = rounded(rng, fout, fin, scale=s)
    params["lin_l.bias"] = rounded(rng, fout, scale=s)
    params["lin_r.weight"] = rounded(rng, fout, fin, scale=s)
    set_linear(conv.lin_l, params["lin_l.weight"], params["lin_l.bias"])
    set_linear(conv.lin_r, params["lin_r.weight"], None)
    # Make sure every parameter of the module is covered by the fixture.
    assert sorted(n for n, _ in conv.named_parameters()) == sorted(params), list(
        conv.named_parameters()
    )
    return params


def check_empty_aggregation(edge_index: torch.Tensor, x: torch.Tensor) -> dict:
    """Verify what PyG returns for a node with no incoming edges, and max over negatives."""
    src, dst = edge_index
    msgs = x[src]
    mean = MeanAggregation()(msgs, dst, dim_size=N_NODES)
    mx = MaxAggregation()(msgs, dst, dim_size=N_NODES)
    assert torch.all(mean[ISOLATED] == 0.0), mean[ISOLATED]
    assert torch.all(mx[ISOLATED] == 0.0), mx[ISOLATED]
    # For nodes WITH neighbours max is the true max, even when it is negative (no 0 floor).
    neg = -msgs.abs() - 1.0
    mx_neg = MaxAggregation()(neg, dst, dim_size=N_NODES)
    for i in range(ISOLATED):
        ref = neg[dst == i].max(dim=0).values
        assert torch.equal(mx_neg[i], ref)
        assert torch.all(mx_neg[i] < 0)
    assert torch.all(mx_neg[ISOLATED] == 0.0)
    # Same with gradients enabled (PyG can take a different code path then).
    negg = neg.clone().requires_grad_(True)
    mx_g = MaxAggregation()(negg, dst, dim_size=N_NODES)
    assert torch.all(mx_g[ISOLATED] == 0.0)
    return {
        "mean_of_empty_set": 0.0,
        "max_of_empty_set": 0.0,
        "max_of_all_negative_nonempty_set": "true (negative) max, no clamping at 0",
    }


def make_sage() -> dict:
    torch.set_default_dtype(torch.float64)
    edges = grid_edges()
    with (SAGE_DIR / "edges.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["src", "dst"])
        w.writerows(edges)
    with (SAGE_DIR / "edges.csv").open(newline="") as f:
        edges = [(int(r["src"]), int(r["dst"])) for r in csv.DictReader(f)]
    edge_index = torch.tensor(edges, dtype=torch.long).t().contiguous()
    assert len(edges) == 58
    assert set(edges) == {(b, a) for a, b in edges}, "graph must be symmetric"
    assert ISOLATED not in edge_index.flatten().tolist()
    in_deg = torch.bincount(edge_index[1], minlength=N_NODES).tolist()

    rng = np.random.default_rng(SAGE_SEED)
    x = rounded(rng, N_NODES, IN_DIM)
    empty = check_empty_aggregation(edge_index, x)

    common = {
        "num_nodes": N_NODES,
        "in_degree": in_deg,
        "torch_version": torch.__version__,
        "torch_geometric_version": torch_geometric.__version__,
        "dtype": "float64",
    }

    single = [
        ("case_mean.json", dict(aggr="mean", normalize=False, project=False)),
        ("case_mean_norm.json", dict(aggr="mean", normalize=True, project=False)),
        ("case_max_project.json", dict(aggr="max", normalize=False, project=True)),
    ]
    # Gradients only where the backward pass is not already covered by case_two_layer
    # (plain mean): keeps the fixtures small.
    with_grads = {"case_mean_norm.json", "case_max_project.json"}
    outputs = {}
    for fname, kw in single:
        conv = SAGEConv(IN_DIM, 4, **kw)
        params = init_conv(conv, rng, IN_DIM, 4)
        xin = x.clone().requires_grad_(True)
        out = conv(xin, edge_index)
        # Independent re-implementation of the documented formula.
        ref = manual_sage(x, edge_index, params, **kw)
        assert torch.allclose(out, ref, atol=1e-12, rtol=0), (out - ref).abs().max()
        loss = 0.5 * (out**2).sum()
        loss.backward()
        doc = {
            "config": {"in_channels": IN_DIM, "out_channels": 4, **kw, "root_weight": True,
                       "bias": True},
            "x": nested(x),
            "params": {k: nested(v) for k, v in params.items()},
            "output": nested(out),
            **common,
        }
        if fname in with_grads:
            doc["loss"] = "0.5 * sum(output**2)"
            doc["grads"] = {
                **{k: nested(p.grad) for k, p in conv.named_parameters()},
                "x": nested(xin.grad),
            }
        write_json(SAGE_DIR / fname, doc)
        outputs[fname] = out.detach()

    # Two-layer stack: SAGEConv(5,6,mean) -> ReLU -> SAGEConv(6,1,mean).
    conv1 = SAGEConv(IN_DIM, 6, aggr="mean")
    conv2 = SAGEConv(6, 1, aggr="mean")
    p1 = init_conv(conv1, rng, IN_DIM, 6)
    p2 = init_conv(conv2, rng, 6, 1)
    target = rounded(rng, N_NODES, 1)
    xin = x.clone().requires_grad_(True)
    hidden_pre = conv1(xin, edge_index)
    hidden = hidden_pre.relu()
    out = conv2(hidden, edge_index)
    # No pre-activation may sit at exactly 0 (ReLU derivative ambiguity).
    assert hidden_pre.detach().abs().min() > 1e-6
    loss = ((out - target) ** 2).mean()
    loss.backward()
    ref = manual_sage(
        manual_sage(x, edge_index, p1, aggr="mean", normalize=False, project=False).relu(),
        edge_index, p2, aggr="mean", normalize=False, project=False,
    )
    assert torch.allclose(out, ref, atol=1e-12, rtol=0)
    doc = {
        "config": {
            "layers": ["conv1 = SAGEConv(5, 6, aggr='mean')", "relu",
                       "conv2 = SAGEConv(6, 1, aggr='mean')"],
            "normalize": False, "root_weight": True, "bias": True, "project": False,
        },
        "x": nested(x),
        "params": {**{f"conv1.{k}": nested(v) for k, v in p1.items()},
                   **{f"conv2.{k}": nested(v) for k, v in p2.items()}},
        "hidden_pre_relu": nested(hidden_pre),
        "output": nested(out),
        "target": nested(target),
        "loss_formula": "mean over nodes of (output - target)^2  (13 nodes, 1 output each)",
        "loss": g7(loss.item()),
        "grads": {
            **{f"conv1.{k}": nested(p.grad) for k, p in conv1.named_parameters()},
            **{f"conv2.{k}": nested(p.grad) for k, p in conv2.named_parameters()},
            "x": nested(xin.grad),
        },
        **common,
    }
    write_json(SAGE_DIR / "case_two_layer.json", doc)
    return {"isolated_rows": {k: v[ISOLATED].tolist() for k, v in outputs.items()}, **empty}


def manual_sage(x, edge_index, params, aggr, normalize, project):
    """h_i' = lin_l(agg_{j in N(i)} m_j) + lin_r(x_i); m_j = relu(lin(x_j)) if project else x_j."""
    src, dst = edge_index.tolist()
    m = x
    if project:
        m = torch.relu(x @ params["lin.weight"].T + params["lin.bias"])
    agg = torch.zeros(x.shape[0], m.shape[1])
    for i in range(x.shape[0]):
        nb = [s for s, d in zip(src, dst) if d == i]
        if nb:
            agg[i] = m[nb].mean(0) if aggr == "mean" else m[nb].max(0).values
    out = agg @ params["lin_l.weight"].T + params["lin_l.bias"] + x @ params["lin_r.weight"].T
    if normalize:
        out = out / out.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return out


# --------------------------------------------------------------------------
# READMEs
# --------------------------------------------------------------------------

GBDT_README = """\
# XGBoost baseline fixtures (generated; do not edit by hand)
Made by `scripts/make_baseline_fixtures.py` (pinned deps in `scripts/requirements-baselines.txt`).
Regenerate: `.venv/bin/python scripts/make_baseline_fixtures.py`

## data.csv
Columns `f0..f7,y,split`; 400 rows, rows 0..299 `split=train`, rows 300..399 `split=test`.
Features are U(0,1) written with 2 decimals (so equal values occur across rows).
Target: `y = 2*[f0>0.5] + 3*f1*f2 + sin(2*pi*f3) + 1.5*[f4>0.3 and f5<0.6] + 0.5*f6 + N(0,0.3^2)`
(f7 is pure noise), written with 7 significant digits. Everything was fit on the file as written.

## predictions.csv
Columns `row,shallow,deep_subsample`: `row` is the 0-based row index in data.csv (300..399),
then the xgboost test prediction of each config (float32, 7 significant digits).

## expected.json
- `base_score`: mean(y_train), passed explicitly to both models.
- `configs.<name>.params`: every hyper-parameter used (`XGBRegressor` keyword arguments).
  - `shallow`: n_estimators=100, max_depth=4, learning_rate=0.1, subsample=1.0.
  - `deep_subsample`: n_estimators=200, max_depth=6, learning_rate=0.05, subsample=0.8.
  - both: tree_method=exact, reg_lambda=1, min_child_weight=1, gamma=0, reg_alpha=0,
    colsample_bytree=1, objective=reg:squarederror, random_state=0, n_jobs=1.
- `configs.<name>.r2_test`, `rmse_test` (sklearn, on the 100 test rows), `r2_train`.
- `configs.shallow.first_tree`: the first tree (no sampling, so it is deterministic) as nested
  `{feature, threshold, gain, cover, left, right}` / `{leaf}`; a row goes `left` iff
  `x[feature] < threshold`. Leaf values already include the learning rate.
- `xgboost_version` etc.

## Semantics a re-implementation must follow to match
- Prediction = base_score + sum over trees of the leaf value (identity link for squared error).
  With an explicit base_score xgboost does not re-estimate the intercept.
- Squared error: g_i = pred_i - y_i, h_i = 1 per row. Leaf weight = -G / (H + lambda), times
  learning_rate. The dumped `gain` is xgboost's loss change WITHOUT the usual 1/2 factor:
  G_L^2/(H_L+lambda) + G_R^2/(H_R+lambda) - G^2/(H+lambda) (gamma is compared against this
  value; the script checks the root gain and one leaf of `first_tree` against these formulas).
  `cover` is H (= rows here). A split is only allowed if each child has hessian sum >=
  min_child_weight (here: >= 1 row). max_depth counts split levels (depth 4 -> <= 16 leaves).
- tree_method=exact: all distinct feature values are candidates; the threshold is the midpoint
  of two consecutive distinct values (in float32); rows with `x < threshold` go left.
- xgboost works in float32 (features, thresholds, leaves, predictions).
- subsample=0.8 draws rows per tree with xgboost's own RNG; it cannot be reproduced bit-for-bit,
  so only the test R^2 of `deep_subsample` is meaningful (tests allow |delta R^2| <= 0.02).
"""

SAGE_README = """\
# PyG SAGEConv fixtures (generated; do not edit by hand)
Made by `scripts/make_baseline_fixtures.py` (pinned deps in `scripts/requirements-baselines.txt`),
torch_geometric `SAGEConv`, computed in float64; all numbers are written with 7 significant digits
and inputs/weights were rounded to 7 digits *before* the computation (the files are exact inputs).

## Graph (edges.csv)
13 nodes. Nodes 0..11 form a 4 (wide) x 3 (tall) grid, node id = row*4 + col, with queen
(8-neighbour) contiguity; node 12 is isolated (no edges). Every undirected edge is stored in
both directions: 58 rows `src,dst`, sorted. A row means the message flows src -> dst, i.e. node
`dst` aggregates over `src` (PyG `edge_index = [src; dst]`, flow source_to_target).
In-degrees are repeated in each JSON as `in_degree`.

## Layer semantics (PyG 2.x SAGEConv, root_weight=True, bias=True)
    m_j   = x_j                                  (project=False)
    m_j   = relu(lin(x_j)) = relu(W_p x_j + b_p) (project=True; only the neighbour/source side)
    a_i   = agg_{j in N(i)} m_j                  (N(i) = {src : (src, i) in edges}; no self loop)
    h_i'  = lin_l(a_i) + lin_r(x_i) = W_l a_i + b_l + W_r x_i
    if normalize: h_i' = h_i' / max(||h_i'||_2, 1e-12)   (F.normalize over the output features)
- `lin_l` carries the only bias; `lin_r` has no bias. With project=True, `lin_r` still sees the
  *raw* x_i (the projection is applied to the source side only).
- Weights are in PyTorch layout `[out, in]`; y = x W^T + b.
- mean: sum / count. max: feature-wise max; for non-empty neighbourhoods it is the true max,
  even when negative (no clamping at 0).
- Node with no neighbours (node 12): PyG returns a_i = 0 for mean AND for max (checked by the
  script: scatter mean divides by clamp(count, min=1); scatter max starts from zeros with
  include_self=False). So h_12' = b_l + W_r x_12 (then normalised if normalize=True).
  Gradients flow to nothing from an empty aggregation.

## Files
Single-layer cases (`in_channels=5`, `out_channels=4`):
- `case_mean.json`: aggr='mean', normalize=False.
- `case_mean_norm.json`: aggr='mean', normalize=True.
- `case_max_project.json`: aggr='max', project=True (max-pool aggregator; params include
  `lin.weight` [5,5] and `lin.bias` [5]).
Keys: `config`, `x` [13,5], `params` {`lin_l.weight` [4,5], `lin_l.bias` [4], `lin_r.weight`
[4,5] (+ `lin.*`)}, `output` [13,4], `in_degree`, versions; `case_mean_norm.json` and
`case_max_project.json` also have `loss` and `grads` (d loss / d each param and `x`, loss =
0.5*sum(output^2)); plain-mean gradients are covered by `case_two_layer.json`.

`case_two_layer.json`: conv1 = SAGEConv(5,6,mean) -> ReLU -> conv2 = SAGEConv(6,1,mean).
Keys: `x` [13,5], `params` (`conv1.lin_l.weight` [6,5], `conv1.lin_l.bias` [6],
`conv1.lin_r.weight` [6,5], `conv2.lin_l.weight` [1,6], `conv2.lin_l.bias` [1],
`conv2.lin_r.weight` [1,6]), `hidden_pre_relu` [13,6], `output` [13,1], `target` [13,1],
`loss` = mean over the 13 nodes of (output - target)^2, `grads` w.r.t. every param and `x`.
"""


def main() -> None:
    GBDT_DIR.mkdir(parents=True, exist_ok=True)
    SAGE_DIR.mkdir(parents=True, exist_ok=True)
    gbdt = make_gbdt()
    sage = make_sage()
    (GBDT_DIR / "README.md").write_text(GBDT_README)
    (SAGE_DIR / "README.md").write_text(SAGE_README)
    total = 0
    for d in (GBDT_DIR, SAGE_DIR):
        for p in sorted(d.iterdir()):
            total += p.stat().st_size
            print(f"{p.relative_to(REPO_ROOT)}  {p.stat().st_size} bytes")
    print(f"total {total} bytes")
    for k, (r2, rmse) in gbdt.items():
        print(f"xgboost {k}: test R2 = {r2:.4f}, RMSE = {rmse:.4f}")
    print("sage:", sage)
    print("versions: xgboost", xgboost.__version__, "torch", torch.__version__,
          "torch_geometric", torch_geometric.__version__, "numpy", np.__version__,
          "sklearn", sklearn.__version__)


if __name__ == "__main__":
    main()
