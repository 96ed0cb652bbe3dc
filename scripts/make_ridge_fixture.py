#!/usr/bin/env python3
"""Ridge regression oracle for `models::ridge` (scikit-learn's `Ridge`, the reference).

Reads the committed tests/fixtures/oracle/regression.csv (split,f0..f7,y: 120 training rows,
then 40 test rows; written by scripts/make_oracle_fixtures.py) and writes
tests/fixtures/oracle/ridge_expected.json: for several α, the coefficients, the intercept and
the test R² of `Ridge(alpha, fit_intercept=True)` (objective ‖y − Xw − b‖² + α‖w‖², intercept
not penalised).

    python scripts/make_ridge_fixture.py      # needs scripts/requirements-oracle.txt
"""
import json
from pathlib import Path

import numpy as np
import sklearn
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score

OUT_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "oracle"


def main() -> None:
    rows = [line.split(",") for line in (OUT_DIR / "regression.csv").read_text().splitlines()[1:]]
    split = np.array([r[0] for r in rows])
    values = np.array([[float(v) for v in r[1:]] for r in rows])
    x, y = values[:, :-1], values[:, -1]
    train, test = split == "train", split == "test"
    expected = {"versions": {"numpy": np.__version__, "scikit-learn": sklearn.__version__}, "fits": []}
    for alpha in [0.01, 1.0, 10.0, 100.0]:
        model = Ridge(alpha=alpha, fit_intercept=True, solver="cholesky").fit(x[train], y[train])
        expected["fits"].append({
            "alpha": alpha,
            "coef": [float(c) for c in model.coef_],
            "intercept": float(model.intercept_),
            "test_r2": float(r2_score(y[test], model.predict(x[test]))),
        })
    (OUT_DIR / "ridge_expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    print(f"wrote {OUT_DIR / 'ridge_expected.json'}")


if __name__ == "__main__":
    main()
