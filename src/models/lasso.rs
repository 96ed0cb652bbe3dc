//! LASSO: scikit-learn's `Lasso` (the LASSO of record: its objective, 1/(2n)·‖y − Xw‖² + α‖w‖₁,
//! its coordinate descent and stopping rule, in `coordinate_descent`; exact zeros), and
//! smartcore's LASSO beside it for comparison (its α is not on the same scale and it leaves no
//! zeros).

use ndarray::{Array1, ArrayView2, Axis};
use serde::{Deserialize, Serialize};
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::lasso::{Lasso, LassoParameters};

use super::{coefficients_json, coordinate_descent, FieldProblem, FittedModel};
use crate::error::{Error, Result};

fn default_max_iter() -> u32 {
    10_000
}
fn default_tol() -> f64 {
    1e-6
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LassoConfig {
    /// L1 penalty α (scikit-learn's scale).
    pub alpha: f64,
    #[serde(default = "default_max_iter")]
    pub max_iter: u32,
    #[serde(default = "default_tol")]
    pub tol: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LassoSmartcoreConfig {
    /// L1 penalty α (smartcore's scale: about twice scikit-learn's for the same fit).
    pub alpha: f64,
    #[serde(default = "default_max_iter")]
    pub max_iter: u32,
    #[serde(default = "default_tol")]
    pub tol: f64,
}

fn check_common(alpha: f64, max_iter: u32, tol: f64) -> Vec<FieldProblem> {
    let mut p = Vec::new();
    if !(alpha.is_finite() && alpha > 0.0) {
        p.push(("alpha", format!("is {alpha}, expected a number > 0")));
    }
    if max_iter == 0 {
        p.push(("max_iter", "is 0, expected at least 1".into()));
    }
    if !(tol.is_finite() && tol > 0.0) {
        p.push(("tol", format!("is {tol}, expected a number > 0")));
    }
    p
}

impl LassoConfig {
    /// A short label with the hyperparameters that distinguish runs.
    pub fn label(&self) -> String {
        format!("lasso(a={})", self.alpha)
    }

    pub fn check(&self) -> Vec<FieldProblem> {
        check_common(self.alpha, self.max_iter, self.tol)
    }

    pub fn fit(&self, x: ArrayView2<f64>, y: &Array1<f64>) -> Result<Box<dyn FittedModel>> {
        // scikit-learn's Lasso fits on centred features and targets and puts the means back
        // into the intercept.
        let x_mean = x
            .mean_axis(Axis(0))
            .ok_or_else(|| Error::Model("lasso: no training rows".into()))?;
        let y_mean = y.mean().unwrap_or(0.0);
        // Column-major, as scikit-learn keeps it: each step reads one feature column.
        let columns: Vec<f64> = x
            .columns()
            .into_iter()
            .zip(&x_mean)
            .flat_map(|(c, m)| c.into_iter().map(move |v| v - m))
            .collect();
        let centred_y: Vec<f64> = y.iter().map(|v| v - y_mean).collect();
        let fit =
            coordinate_descent::lasso(&columns, &centred_y, self.alpha, self.max_iter, self.tol);
        let coef = Array1::from(fit.coef);
        let intercept = y_mean - x_mean.dot(&coef);
        Ok(Box::new(FittedLasso {
            coef,
            intercept,
            iterations: fit.iterations,
            duality_gap: fit.duality_gap,
        }))
    }
}

struct FittedLasso {
    coef: Array1<f64>,
    intercept: f64,
    iterations: u32,
    duality_gap: f64,
}

impl FittedModel for FittedLasso {
    fn predict(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        Ok(x.dot(&self.coef) + self.intercept)
    }

    fn describe(&self, names: &[String]) -> serde_json::Value {
        let mut d = coefficients_json(names, &self.coef.to_vec(), self.intercept);
        d["iterations"] = self.iterations.into();
        d["duality_gap"] = self.duality_gap.into();
        d
    }
}

fn to_dense(x: ArrayView2<f64>) -> Result<DenseMatrix<f64>> {
    let rows: Vec<Vec<f64>> = x.rows().into_iter().map(|r| r.to_vec()).collect();
    DenseMatrix::from_2d_vec(&rows).map_err(|e| Error::Model(format!("smartcore matrix: {e}")))
}

impl LassoSmartcoreConfig {
    /// A short label with the hyperparameters that distinguish runs.
    pub fn label(&self) -> String {
        format!("lasso_smartcore(a={})", self.alpha)
    }

    pub fn check(&self) -> Vec<FieldProblem> {
        check_common(self.alpha, self.max_iter, self.tol)
    }

    pub fn fit(&self, x: ArrayView2<f64>, y: &Array1<f64>) -> Result<Box<dyn FittedModel>> {
        let params = LassoParameters::default()
            .with_alpha(self.alpha)
            .with_normalize(false)
            .with_max_iter(self.max_iter as usize)
            .with_tol(self.tol);
        let model = Lasso::fit(&to_dense(x)?, &y.to_vec(), params)
            .map_err(|e| Error::Model(format!("lasso_smartcore: {e}")))?;
        Ok(Box::new(FittedSmartcoreLasso(model)))
    }
}

struct FittedSmartcoreLasso(Lasso<f64, f64, DenseMatrix<f64>, Vec<f64>>);

impl FittedModel for FittedSmartcoreLasso {
    fn predict(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        self.0
            .predict(&to_dense(x)?)
            .map(Array1::from)
            .map_err(|e| Error::Model(format!("lasso_smartcore: {e}")))
    }

    fn describe(&self, names: &[String]) -> serde_json::Value {
        use smartcore::linalg::basic::arrays::Array;
        let c = self.0.coefficients();
        let coef: Vec<f64> = (0..names.len()).map(|i| *c.get((i, 0))).collect();
        coefficients_json(names, &coef, *self.0.intercept())
    }
}

super::tabular::tabular_model!(LassoConfig, "lasso", unseeded);

super::tabular::tabular_model!(LassoSmartcoreConfig, "lasso_smartcore", unseeded);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::r2;
    use crate::models::oracle;

    #[test]
    fn lasso_matches_scikit_learn() {
        let f = oracle::regression();
        let e = &f.expected["lasso"];
        let cfg = LassoConfig {
            alpha: e["alpha"].as_f64().unwrap(),
            max_iter: 100_000,
            tol: 1e-10,
        };
        let m = cfg.fit(f.x_train.view(), &f.y_train).unwrap();
        let pred = m.predict(f.x_test.view()).unwrap();
        let got = r2(f.y_test.as_slice().unwrap(), pred.as_slice().unwrap());
        let want = e["r2_test"].as_f64().unwrap();
        eprintln!("oracle lasso: test R² {got:.6}, scikit-learn {want:.6}");
        assert!((got - want).abs() < 0.01, "R² {got} vs scikit-learn {want}");
        let names: Vec<String> = (0..8).map(|i| format!("f{i}")).collect();
        let d = m.describe(&names);
        for (i, c) in e["coef"].as_array().unwrap().iter().enumerate() {
            let got = d["coefficients"][&names[i]].as_f64().unwrap();
            let want = c.as_f64().unwrap();
            assert!((got - want).abs() < 1e-12, "coef {i}: {got} vs {want}");
            assert_eq!(got == 0.0, want == 0.0, "coef {i} zero pattern differs");
        }
        let intercept = e["intercept"].as_f64().unwrap();
        assert!((d["intercept"].as_f64().unwrap() - intercept).abs() < 1e-12);
    }

    #[test]
    fn smartcore_lasso_reaches_the_same_fit_quality() {
        let f = oracle::regression();
        let e = &f.expected["lasso"];
        let cfg = LassoSmartcoreConfig {
            alpha: e["alpha"].as_f64().unwrap(),
            max_iter: 100_000,
            tol: 1e-8,
        };
        let m = cfg.fit(f.x_train.view(), &f.y_train).unwrap();
        let pred = m.predict(f.x_test.view()).unwrap();
        let got = r2(f.y_test.as_slice().unwrap(), pred.as_slice().unwrap());
        let want = e["r2_test"].as_f64().unwrap();
        eprintln!("oracle lasso (smartcore): test R² {got:.6}, scikit-learn {want:.6}");
        assert!((got - want).abs() < 0.03, "R² {got} vs scikit-learn {want}");
    }

    #[test]
    fn bad_alpha_is_reported() {
        let c = LassoConfig {
            alpha: -1.0,
            max_iter: 0,
            tol: 1e-6,
        };
        let fields: Vec<&str> = c.check().iter().map(|p| p.0).collect();
        assert_eq!(fields, vec!["alpha", "max_iter"]);
    }
}
