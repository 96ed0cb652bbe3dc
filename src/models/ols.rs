//! Ordinary least squares with linfa-linear: the floor every other model must beat.

use linfa::prelude::*;
use linfa_linear::{FittedLinearRegression, LinearRegression};
use ndarray::{Array1, ArrayView2};
use serde::{Deserialize, Serialize};

use super::{coefficients_json, FittedModel};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OlsConfig {}

impl OlsConfig {
    /// OLS has no hyperparameter to check.
    pub fn check(&self) -> Vec<super::FieldProblem> {
        Vec::new()
    }

    /// A short label with the hyperparameters that distinguish runs.
    pub fn label(&self) -> String {
        "ols".into()
    }

    pub fn fit(&self, x: ArrayView2<f64>, y: &Array1<f64>) -> Result<Box<dyn FittedModel>> {
        let data = Dataset::new(x.to_owned(), y.clone());
        let model = LinearRegression::new()
            .fit(&data)
            .map_err(|e| Error::Model(format!("ols: {e}")))?;
        Ok(Box::new(FittedOls(model)))
    }
}

struct FittedOls(FittedLinearRegression<f64>);

impl FittedModel for FittedOls {
    fn predict(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        Ok(self.0.predict(&x))
    }

    fn describe(&self, names: &[String]) -> serde_json::Value {
        coefficients_json(
            names,
            self.0.params().as_slice().unwrap_or(&[]),
            self.0.intercept(),
        )
    }
}

super::tabular::tabular_model!(OlsConfig, "ols", unseeded);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::r2;
    use crate::models::oracle;

    #[test]
    fn matches_scikit_learn_linear_regression() {
        let f = oracle::regression();
        let e = &f.expected["ols"];
        let m = OlsConfig {}.fit(f.x_train.view(), &f.y_train).unwrap();
        let pred = m.predict(f.x_test.view()).unwrap();
        let got = r2(f.y_test.as_slice().unwrap(), pred.as_slice().unwrap());
        let want = e["r2_test"].as_f64().unwrap();
        eprintln!("oracle ols: test R² {got:.6}, scikit-learn {want:.6}");
        assert!((got - want).abs() < 1e-6, "R² {got} vs scikit-learn {want}");
        let names: Vec<String> = (0..8).map(|i| format!("f{i}")).collect();
        let d = m.describe(&names);
        for (i, c) in e["coef"].as_array().unwrap().iter().enumerate() {
            let got = d["coefficients"][&names[i]].as_f64().unwrap();
            assert!((got - c.as_f64().unwrap()).abs() < 1e-6);
        }
    }
}
