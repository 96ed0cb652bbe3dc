//! Ridge regression: least squares with an L2 penalty, scikit-learn's `Ridge` objective
//! ‖y − Xw − b‖² + α‖w‖² with the intercept b not penalised. Solved exactly: centre X and y on
//! the training rows, solve (XᵀX + αI) w = Xᵀy by Cholesky (a tile has a few dozen features),
//! b = ȳ − x̄ᵀw. Checked against scikit-learn on tests/fixtures/oracle
//! (scripts/make_ridge_fixture.py).
//!
//! This file is the whole model: the next model a user asks for follows the same path
//! (docs/config.md, "Adding a model").

use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use super::{coefficients_json, FieldProblem, FittedModel};
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RidgeConfig {
    /// L2 penalty α (scikit-learn's `Ridge` scale).
    pub alpha: f64,
}

impl RidgeConfig {
    pub fn label(&self) -> String {
        format!("ridge(a={})", self.alpha)
    }

    pub fn check(&self) -> Vec<FieldProblem> {
        if self.alpha.is_finite() && self.alpha > 0.0 {
            Vec::new()
        } else {
            vec![("alpha", format!("is {}, expected a number > 0", self.alpha))]
        }
    }

    pub fn fit(&self, x: ArrayView2<f64>, y: &Array1<f64>) -> Result<Box<dyn FittedModel>> {
        let x_mean = x
            .mean_axis(Axis(0))
            .ok_or_else(|| Error::Model("ridge: no training rows".into()))?;
        let y_mean = y.mean().unwrap_or(0.0);
        let xc = &x - &x_mean;
        let yc = y - y_mean;
        let mut gram: Array2<f64> = xc.t().dot(&xc);
        for i in 0..gram.nrows() {
            gram[[i, i]] += self.alpha;
        }
        let coef = solve_cholesky(gram, xc.t().dot(&yc)).ok_or_else(|| {
            Error::Model("ridge: the penalised Gram matrix is not positive definite".into())
        })?;
        let intercept = y_mean - x_mean.dot(&coef);
        Ok(Box::new(FittedRidge { coef, intercept }))
    }
}

// `Model` (kind `ridge`) and `TabularModel` from the methods above.
super::tabular::tabular_model!(RidgeConfig, "ridge", unseeded);

/// Solve A x = b for a symmetric positive definite A; None when A is not.
fn solve_cholesky(a: Array2<f64>, b: Array1<f64>) -> Option<Array1<f64>> {
    let n = a.nrows();
    let mut l = Array2::<f64>::zeros((n, n));
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[[i, k]] * l[[j, k]]).sum();
            if i == j {
                let d = a[[i, i]] - s;
                if d.is_nan() || d <= 0.0 {
                    return None;
                }
                l[[i, i]] = d.sqrt();
            } else {
                l[[i, j]] = (a[[i, j]] - s) / l[[j, j]];
            }
        }
    }
    // L z = b, then Lᵀ x = z.
    let mut z = Array1::<f64>::zeros(n);
    for i in 0..n {
        z[i] = (b[i] - (0..i).map(|k| l[[i, k]] * z[k]).sum::<f64>()) / l[[i, i]];
    }
    let mut x = Array1::<f64>::zeros(n);
    for i in (0..n).rev() {
        x[i] = (z[i] - (i + 1..n).map(|k| l[[k, i]] * x[k]).sum::<f64>()) / l[[i, i]];
    }
    Some(x)
}

struct FittedRidge {
    coef: Array1<f64>,
    intercept: f64,
}

impl FittedModel for FittedRidge {
    fn predict(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        Ok(x.dot(&self.coef) + self.intercept)
    }

    fn describe(&self, feature_names: &[String]) -> serde_json::Value {
        coefficients_json(feature_names, &self.coef.to_vec(), self.intercept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::oracle::regression;

    /// Coefficients, intercept and test R² equal scikit-learn's `Ridge` for α from 0.01 to
    /// 100 (tests/fixtures/oracle/ridge_expected.json).
    #[test]
    fn matches_scikit_learn_ridge() {
        let f = regression();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/oracle/ridge_expected.json");
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for fit in expected["fits"].as_array().unwrap() {
            let alpha = fit["alpha"].as_f64().unwrap();
            let model = RidgeConfig { alpha }
                .fit(f.x_train.view(), &f.y_train)
                .unwrap();
            let names: Vec<String> = (0..f.x_train.ncols()).map(|i| format!("f{i}")).collect();
            let d = model.describe(&names);
            for (i, want) in fit["coef"].as_array().unwrap().iter().enumerate() {
                let got = d["coefficients"][format!("f{i}")].as_f64().unwrap();
                let want = want.as_f64().unwrap();
                assert!(
                    (got - want).abs() < 1e-9 * want.abs().max(1.0),
                    "α {alpha} f{i}: {got} vs {want}"
                );
            }
            let b = d["intercept"].as_f64().unwrap();
            let want_b = fit["intercept"].as_f64().unwrap();
            assert!(
                (b - want_b).abs() < 1e-9,
                "α {alpha}: intercept {b} vs {want_b}"
            );
            let pred = model.predict(f.x_test.view()).unwrap();
            let r2 = crate::metrics::r2(f.y_test.as_slice().unwrap(), pred.as_slice().unwrap());
            let want_r2 = fit["test_r2"].as_f64().unwrap();
            assert!(
                (r2 - want_r2).abs() < 1e-9,
                "α {alpha}: R² {r2} vs {want_r2}"
            );
        }
    }

    #[test]
    fn a_non_positive_penalty_is_refused() {
        assert!(RidgeConfig { alpha: 0.0 }.check()[0].1.contains("> 0"));
        assert!(RidgeConfig { alpha: 1.0 }.check().is_empty());
    }
}
