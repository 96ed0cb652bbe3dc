//! Random forest regression with smartcore (bootstrap samples, best splits, variance
//! reduction): the strong non-linear baseline.

use ndarray::{Array1, ArrayView2};
use serde::{Deserialize, Serialize};
use smartcore::ensemble::random_forest_regressor::{
    RandomForestRegressor, RandomForestRegressorParameters,
};
use smartcore::linalg::basic::matrix::DenseMatrix;

use super::lasso::to_dense;
use super::{FieldProblem, FittedModel};
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RandomForestConfig {
    pub n_trees: usize,
    /// Maximum tree depth; absent or null for unlimited.
    pub max_depth: Option<u16>,
    pub min_samples_leaf: usize,
    pub min_samples_split: usize,
    /// Share of the features tried at each split (scikit-learn's float `max_features`).
    pub max_features: f64,
}

/// scikit-learn's `RandomForestRegressor` defaults.
impl Default for RandomForestConfig {
    fn default() -> Self {
        RandomForestConfig {
            n_trees: 100,
            max_depth: None,
            min_samples_leaf: 1,
            min_samples_split: 2,
            max_features: 1.0,
        }
    }
}

impl RandomForestConfig {
    /// A short label with the hyperparameters that distinguish runs.
    pub fn label(&self) -> String {
        format!(
            "random_forest(t={},d={})",
            self.n_trees,
            self.max_depth.map_or("none".to_string(), |d| d.to_string())
        )
    }

    pub fn check(&self) -> Vec<FieldProblem> {
        let mut p = Vec::new();
        if self.n_trees == 0 {
            p.push(("n_trees", "is 0, expected at least 1".into()));
        }
        if self.max_depth == Some(0) {
            p.push((
                "max_depth",
                "is 0, expected at least 1 (or null for unlimited)".into(),
            ));
        }
        if self.min_samples_leaf == 0 {
            p.push(("min_samples_leaf", "is 0, expected at least 1".into()));
        }
        if self.min_samples_split < 2 {
            p.push((
                "min_samples_split",
                format!("is {}, expected at least 2", self.min_samples_split),
            ));
        }
        if !(self.max_features > 0.0 && self.max_features <= 1.0) {
            p.push((
                "max_features",
                format!("is {}, expected 0 < share <= 1", self.max_features),
            ));
        }
        p
    }

    pub fn fit(
        &self,
        x: ArrayView2<f64>,
        y: &Array1<f64>,
        seed: u64,
    ) -> Result<Box<dyn FittedModel>> {
        let m =
            ((self.max_features * x.ncols() as f64).round() as usize).clamp(1, x.ncols().max(1));
        // The forest is grown as SUB_FORESTS independent forests of about n_trees / SUB_FORESTS
        // trees each (every tree is an independent bootstrap, so the union is a forest of
        // n_trees), on all cores. The partition and each part's seed do not depend on the
        // number of cores, so results are the same on any machine.
        let parts: Vec<usize> = (0..SUB_FORESTS)
            .map(|k| self.n_trees / SUB_FORESTS + usize::from(k < self.n_trees % SUB_FORESTS))
            .filter(|&t| t > 0)
            .collect();
        let dense = to_dense(x)?;
        let targets = y.to_vec();
        let grow = |k: usize, trees: usize| {
            let params = RandomForestRegressorParameters {
                max_depth: self.max_depth,
                min_samples_leaf: self.min_samples_leaf,
                min_samples_split: self.min_samples_split,
                n_trees: trees,
                m: Some(m),
                keep_samples: false,
                seed: seed.wrapping_mul(SUB_FORESTS as u64).wrapping_add(k as u64),
            };
            RandomForestRegressor::fit(&dense, &targets, params)
                .map_err(|e| Error::Model(format!("random_forest: {e}")))
        };
        let threads = crate::track::provenance::threads();
        let forests: Vec<Result<Forest>> = if threads > 1 {
            std::thread::scope(|sc| {
                let handles: Vec<_> = parts
                    .iter()
                    .enumerate()
                    .map(|(k, &t)| sc.spawn(move || grow(k, t)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("forest worker panicked"))
                    .collect()
            })
        } else {
            parts.iter().enumerate().map(|(k, &t)| grow(k, t)).collect()
        };
        Ok(Box::new(FittedForest {
            forests: forests.into_iter().collect::<Result<_>>()?,
            parts,
            n_trees: self.n_trees,
            m,
        }))
    }
}

/// Independent sub-forests a forest is grown as (see `fit`).
const SUB_FORESTS: usize = 4;

type Forest = RandomForestRegressor<f64, f64, DenseMatrix<f64>, Vec<f64>>;

struct FittedForest {
    forests: Vec<Forest>,
    /// Trees per sub-forest: the weights of their mean predictions.
    parts: Vec<usize>,
    n_trees: usize,
    m: usize,
}

impl FittedModel for FittedForest {
    fn predict(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        let dense = to_dense(x)?;
        let mut out = Array1::zeros(x.nrows());
        for (f, &trees) in self.forests.iter().zip(&self.parts) {
            let p = f
                .predict(&dense)
                .map_err(|e| Error::Model(format!("random_forest: {e}")))?;
            out.scaled_add(trees as f64 / self.n_trees as f64, &Array1::from(p));
        }
        Ok(out)
    }

    fn describe(&self, _names: &[String]) -> serde_json::Value {
        serde_json::json!({ "n_trees": self.n_trees, "features_per_split": self.m })
    }
}

super::tabular::tabular_model!(RandomForestConfig, "random_forest");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::r2;
    use crate::models::oracle;

    #[test]
    fn matches_scikit_learn_random_forest_within_0_03() {
        let f = oracle::regression();
        let e = &f.expected["random_forest"];
        let cfg = RandomForestConfig {
            n_trees: e["n_estimators"].as_u64().unwrap() as usize,
            max_depth: Some(e["max_depth"].as_u64().unwrap() as u16),
            min_samples_leaf: 1,
            min_samples_split: 2,
            max_features: 1.0,
        };
        // Average over seeds, as the oracle does, so the comparison is not one draw's luck.
        let runs: Vec<f64> = (0..5)
            .map(|seed| {
                let m = cfg.fit(f.x_train.view(), &f.y_train, seed).unwrap();
                let pred = m.predict(f.x_test.view()).unwrap();
                r2(f.y_test.as_slice().unwrap(), pred.as_slice().unwrap())
            })
            .collect();
        let got = runs.iter().sum::<f64>() / runs.len() as f64;
        let want = e["r2_test_mean"].as_f64().unwrap();
        eprintln!(
            "oracle random forest: mean test R² {got:.6} over 5 seeds, scikit-learn {want:.6}"
        );
        assert!(
            (got - want).abs() < 0.03,
            "R² {got} ({runs:?}) vs scikit-learn {want}"
        );
    }

    #[test]
    fn same_seed_same_forest() {
        let f = oracle::regression();
        let cfg = RandomForestConfig {
            n_trees: 10,
            max_depth: Some(4),
            min_samples_leaf: 1,
            min_samples_split: 2,
            max_features: 0.5,
        };
        let a = cfg
            .fit(f.x_train.view(), &f.y_train, 7)
            .unwrap()
            .predict(f.x_test.view())
            .unwrap();
        let b = cfg
            .fit(f.x_train.view(), &f.y_train, 7)
            .unwrap()
            .predict(f.x_test.view())
            .unwrap();
        assert_eq!(a, b);
    }
}
