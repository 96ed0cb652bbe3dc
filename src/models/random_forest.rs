//! Random forest regression as scikit-learn's `RandomForestRegressor` (bootstrap samples,
//! exact best splits, variance reduction; the trees in `regression_tree`), trees grown in
//! parallel: the strong non-linear baseline.

use ndarray::{Array1, ArrayView2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::regression_tree::{Columns, Tree, TreeParams};
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
        use super::size_limits as limit;
        p.extend(super::size_problem("n_trees", self.n_trees, limit::TREES));
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

    /// Features tried at each split: scikit-learn's `max(1, int(max_features * features))`.
    pub fn features_per_split(&self, features: usize) -> usize {
        ((self.max_features * features as f64) as usize).clamp(1, features.max(1))
    }

    pub fn fit(
        &self,
        x: ArrayView2<f64>,
        y: &Array1<f64>,
        seed: u64,
    ) -> Result<Box<dyn FittedModel>> {
        if x.nrows() == 0 || x.ncols() == 0 {
            return Err(Error::Model(
                "random_forest: no training rows or features".into(),
            ));
        }
        let columns = Columns::new(x);
        let params = TreeParams {
            max_depth: self.max_depth.map(usize::from),
            min_samples_leaf: self.min_samples_leaf,
            min_samples_split: self.min_samples_split,
            max_features: self.features_per_split(columns.features()),
        };
        let targets = y
            .as_slice()
            .expect("a training target vector is contiguous");
        // Each tree draws its bootstrap and features from its own stream of the seed, so the
        // forest is the same whichever thread grows which tree.
        let trees: Vec<Tree> = (0..self.n_trees)
            .into_par_iter()
            .map(|t| {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                rng.set_stream(t as u64);
                let mut counts = vec![0.0; x.nrows()];
                for _ in 0..x.nrows() {
                    counts[rng.gen_range(0..x.nrows())] += 1.0;
                }
                Tree::grow(&columns, targets, &counts, &params, &mut rng)
            })
            .collect();
        Ok(Box::new(FittedForest {
            trees,
            max_features: params.max_features,
        }))
    }
}

struct FittedForest {
    trees: Vec<Tree>,
    max_features: usize,
}

impl FittedModel for FittedForest {
    /// The mean of the trees' predictions, summed in tree order (the same on any core count).
    fn predict(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        let rows: Vec<Vec<f32>> = x
            .rows()
            .into_iter()
            .map(|r| r.iter().map(|&v| v as f32).collect())
            .collect();
        let n = self.trees.len() as f64;
        let predictions: Vec<f64> = rows
            .par_iter()
            .map(|row| self.trees.iter().map(|t| t.predict(row)).sum::<f64>() / n)
            .collect();
        Ok(Array1::from(predictions))
    }

    fn describe(&self, _names: &[String]) -> serde_json::Value {
        serde_json::json!({
            "n_trees": self.trees.len(),
            "features_per_split": self.max_features,
            "nodes": self.trees.iter().map(Tree::node_count).sum::<usize>(),
        })
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

    /// The same seed gives the same forest on 1 and 3 threads; another seed another forest.
    #[test]
    fn same_seed_same_forest_on_any_thread_count() {
        let f = oracle::regression();
        let cfg = RandomForestConfig {
            n_trees: 10,
            max_depth: Some(4),
            min_samples_leaf: 1,
            min_samples_split: 2,
            max_features: 0.5,
        };
        let fit = |threads: usize, seed: u64| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                cfg.fit(f.x_train.view(), &f.y_train, seed)
                    .unwrap()
                    .predict(f.x_test.view())
                    .unwrap()
            })
        };
        assert_eq!(fit(1, 7), fit(3, 7));
        assert_ne!(fit(1, 7), fit(1, 8));
    }

    #[test]
    fn features_per_split_truncates_as_scikit_learn() {
        let cfg = RandomForestConfig {
            max_features: 0.5,
            ..RandomForestConfig::default()
        };
        assert_eq!(cfg.features_per_split(53), 26);
        assert_eq!(cfg.features_per_split(1), 1);
        let third = RandomForestConfig {
            max_features: 0.33,
            ..RandomForestConfig::default()
        };
        assert_eq!(third.features_per_split(53), 17);
        assert_eq!(third.features_per_split(2), 1);
    }
}
