#!/usr/bin/env python3
"""Generate small oracle fixtures with scikit-learn / scipy.

The Rust unit tests compare opencarbon's own metric and model implementations
against the values written here.

Usage (from the repository root):

    bash scripts/setup_venv.sh
    .venv/bin/python scripts/make_oracle_fixtures.py

Outputs (tests/fixtures/oracle/):
    metrics.csv, metrics_expected.json
    regression.csv, regression_expected.json
    README.md

Everything is deterministic (fixed numpy seeds). Expected values are always
computed from the numbers *as written* to the CSV (the CSV is re-read after
writing), so the Rust side sees exactly the same inputs as the oracle.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import scipy
import scipy.stats
import sklearn
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import Lasso, LinearRegression
from sklearn.tree import DecisionTreeRegressor
from sklearn.metrics import (
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    r2_score,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "tests" / "fixtures" / "oracle"

METRICS_SEED = 20240601
REGRESSION_SEED = 20240602

N_FEATURES = 8
N_TRAIN = 120
N_TEST = 40

LASSO_ALPHA = 0.05
RF_SEEDS = [0, 1, 2, 3, 4]
TREE_WEIGHT_SEED = 20240603


def versions() -> dict:
    return {
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "scipy_version": scipy.__version__,
    }


def write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


def floats(values) -> list:
    # "+ 0.0" turns -0.0 (sklearn's Lasso emits it) into a plain 0.0.
    return [float(v) + 0.0 for v in values]


# --------------------------------------------------------------------------
# metrics.csv / metrics_expected.json
# --------------------------------------------------------------------------


def make_metrics() -> None:
    rng = np.random.default_rng(METRICS_SEED)
    n = 60
    # Log-emission-like targets: normal(6, 2), kept strictly positive.
    y_true = rng.normal(6.0, 2.0, size=n)
    y_true = np.clip(y_true, 0.6, None)
    # A few small values near 0.5 (these dominate MAPE).
    y_true[5] = 0.48
    y_true[17] = 0.52
    y_true[41] = 0.55
    # Ties in y_true so Spearman's average-rank handling is exercised:
    # a triple and a pair.
    y_true[12] = y_true[30] = y_true[50] = 6.25
    y_true[8] = y_true[44] = 3.5
    y_pred = y_true + rng.normal(0.0, 0.6, size=n)

    path = OUT_DIR / "metrics.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["y_true", "y_pred"])
        for t, p in zip(y_true, y_pred):
            w.writerow([f"{t:.6f}", f"{p:.6f}"])

    # Re-read exactly what was written.
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    yt = np.array([float(r["y_true"]) for r in rows])
    yp = np.array([float(r["y_pred"]) for r in rows])
    assert len(yt) == n
    assert np.all(yt > 0), "y_true must be strictly positive (MAPE)"
    _, counts = np.unique(yt, return_counts=True)
    assert (counts > 1).sum() >= 2, "expected tied values in y_true"

    expected = {
        "n": int(n),
        "r2": float(r2_score(yt, yp)),
        "rmse": float(math.sqrt(mean_squared_error(yt, yp))),
        "mae": float(mean_absolute_error(yt, yp)),
        "mape": float(mean_absolute_percentage_error(yt, yp)),
        "spearman": float(scipy.stats.spearmanr(yt, yp).statistic),
        "notes": (
            "Computed from metrics.csv as written (6 decimals). mape is a "
            "fraction (sklearn mean_absolute_percentage_error), not percent. "
            "spearman uses average ranks for ties (scipy.stats.spearmanr)."
        ),
        **versions(),
    }
    write_json(OUT_DIR / "metrics_expected.json", expected)


# --------------------------------------------------------------------------
# regression.csv / regression_expected.json
# --------------------------------------------------------------------------


def make_regression() -> float:
    rng = np.random.default_rng(REGRESSION_SEED)
    n = N_TRAIN + N_TEST
    x = rng.normal(0.0, 1.0, size=(n, N_FEATURES))
    # f0 and f1 correlated with r ~ 0.7.
    rho = 0.7
    x[:, 1] = rho * x[:, 0] + math.sqrt(1.0 - rho * rho) * x[:, 1]
    noise = rng.normal(0.0, 0.3, size=n)
    y = (
        2.0 * x[:, 0]
        - 1.5 * x[:, 1]
        + 0.8 * x[:, 2]
        + 1.2 * np.sin(2.0 * x[:, 3])
        + 0.7 * x[:, 4] * x[:, 5]
        + noise
    )

    path = OUT_DIR / "regression.csv"
    header = ["split"] + [f"f{j}" for j in range(N_FEATURES)] + ["y"]
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for i in range(n):
            split = "train" if i < N_TRAIN else "test"
            w.writerow([split] + [f"{v:.5f}" for v in x[i]] + [f"{y[i]:.5f}"])

    # Re-read exactly what was written.
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    split = np.array([r["split"] for r in rows])
    X = np.array([[float(r[f"f{j}"]) for j in range(N_FEATURES)] for r in rows])
    Y = np.array([float(r["y"]) for r in rows])
    tr = split == "train"
    te = split == "test"
    assert tr.sum() == N_TRAIN and te.sum() == N_TEST
    assert np.all(tr[:N_TRAIN]) and np.all(te[N_TRAIN:])
    Xtr, Ytr, Xte, Yte = X[tr], Y[tr], X[te], Y[te]

    # LASSO. Bump alpha if none of f5..f7 is exactly zero.
    alpha = LASSO_ALPHA
    for alpha in [LASSO_ALPHA, 0.08, 0.1, 0.15, 0.2]:
        lasso = Lasso(alpha=alpha, fit_intercept=True, max_iter=100000, tol=1e-10)
        lasso.fit(Xtr, Ytr)
        if np.any(lasso.coef_[5:8] == 0.0):
            break
    else:
        raise RuntimeError("lasso never zeroed any of f5..f7")
    lasso_out = {
        "alpha": float(alpha),
        "r2_test": float(r2_score(Yte, lasso.predict(Xte))),
        "coef": floats(lasso.coef_),
        "intercept": float(lasso.intercept_),
        "n_nonzero": int(np.count_nonzero(lasso.coef_)),
        "max_iter": 100000,
        "tol": 1e-10,
    }

    ols = LinearRegression(fit_intercept=True).fit(Xtr, Ytr)
    ols_out = {
        "r2_test": float(r2_score(Yte, ols.predict(Xte))),
        "coef": floats(ols.coef_),
        "intercept": float(ols.intercept_),
    }

    runs = []
    for seed in RF_SEEDS:
        rf = RandomForestRegressor(
            n_estimators=100,
            max_depth=8,
            min_samples_leaf=1,
            min_samples_split=2,
            max_features=1.0,
            bootstrap=True,
            random_state=seed,
        ).fit(Xtr, Ytr)
        runs.append(float(r2_score(Yte, rf.predict(Xte))))
    rf_out = {
        "n_estimators": 100,
        "max_depth": 8,
        "min_samples_leaf": 1,
        "min_samples_split": 2,
        "max_features": 1.0,
        "bootstrap": True,
        "random_states": RF_SEEDS,
        "r2_test_mean": float(np.mean(runs)),
        "r2_test_runs": runs,
    }

    expected = {
        "n_train": N_TRAIN,
        "n_test": N_TEST,
        "features": [f"f{j}" for j in range(N_FEATURES)],
        "target": "y",
        "generating_model": (
            "y = 2.0*f0 - 1.5*f1 + 0.8*f2 + 1.2*sin(2*f3) + 0.7*f4*f5 "
            "+ N(0, 0.3^2); f0,f1 correlated (r~0.7); f6,f7 pure noise"
        ),
        "notes": (
            "Computed from regression.csv as written (5 decimals); models fit "
            "on split==train, r2_test = sklearn r2_score on split==test."
        ),
        "lasso": lasso_out,
        "ols": ols_out,
        "random_forest": rf_out,
        "trees": make_trees(Xtr, Ytr, Xte),
        **versions(),
    }
    write_json(OUT_DIR / "regression_expected.json", expected)
    return alpha


def make_trees(Xtr, Ytr, Xte) -> list:
    """Single exact-split trees (all features at every node, so no random draw decides a
    split), unweighted and with bootstrap-like integer weights that include zeros."""
    weights = np.random.default_rng(TREE_WEIGHT_SEED).integers(0, 3, size=len(Ytr)).astype(float)
    out = []
    for min_samples_leaf, max_depth, sample_weight in [
        (1, None, None),
        (2, None, weights),
        (3, 5, weights),
    ]:
        tree = DecisionTreeRegressor(
            min_samples_leaf=min_samples_leaf, max_depth=max_depth, random_state=0
        ).fit(Xtr, Ytr, sample_weight=sample_weight)
        out.append({
            "min_samples_leaf": min_samples_leaf,
            "max_depth": max_depth,
            "weights": None if sample_weight is None else floats(sample_weight),
            "node_count": int(tree.tree_.node_count),
            "predict_train": floats(tree.predict(Xtr)),
            "predict_test": floats(tree.predict(Xte)),
        })
    return out


README = """\
# Oracle fixtures (generated; do not edit by hand)
Made by `scripts/make_oracle_fixtures.py` (pinned deps in `scripts/requirements-oracle.txt`).
Regenerate: `bash scripts/setup_venv.sh && .venv/bin/python scripts/make_oracle_fixtures.py`
`metrics.csv` (y_true,y_pred; 60 rows, ties in y_true) -> `metrics_expected.json`: sklearn r2/rmse/mae/mape(fraction), scipy spearman.
`regression.csv` (split,f0..f7,y; 120 train then 40 test) -> `regression_expected.json`: Lasso/OLS coef+test R^2, RandomForest test R^2 over seeds 0..4, DecisionTreeRegressor predictions (`trees`).
"""


def main() -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    make_metrics()
    alpha = make_regression()
    (OUT_DIR / "README.md").write_text(README)
    for p in sorted(OUT_DIR.iterdir()):
        print(f"{p.relative_to(REPO_ROOT)}  {p.stat().st_size} bytes")
    print(f"lasso alpha used: {alpha}")


if __name__ == "__main__":
    main()
