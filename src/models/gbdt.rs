//! Gradient-boosted regression trees (the paper's XGBoost baseline) with forust-ml, a pure-Rust
//! implementation of XGBoost's algorithm: squared loss, second-order gain with L2
//! regularisation, histogram splits. Chosen over `gbdt` (dormant) and `perpetual` (nightly
//! Rust only); see docs/baselines.md for the measured comparison with Python xgboost.

use forust_ml::objective::ObjectiveType;
use forust_ml::sampler::SampleMethod;
use forust_ml::{GradientBooster, Matrix};
use ndarray::{Array1, ArrayView2};
use serde::{Deserialize, Serialize};

use super::{FieldProblem, FittedModel};
use crate::error::{Error, Result};

/// XGBoost's names and defaults, except a smaller learning rate with more trees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GbdtConfig {
    pub n_trees: usize,
    pub max_depth: usize,
    pub learning_rate: f64,
    /// Share of the training rows drawn (without replacement) for each tree.
    pub subsample: f64,
    /// Share of the features drawn for each tree.
    pub colsample_bytree: f64,
    /// L2 penalty on leaf weights (xgboost's `lambda`).
    pub l2: f64,
    /// Minimum hessian sum (= rows, for squared loss) in a child.
    pub min_child_weight: f64,
    /// Minimum gain to split (xgboost's `gamma`).
    pub gamma: f64,
    /// Histogram bins per feature.
    pub bins: u16,
}

impl Default for GbdtConfig {
    fn default() -> Self {
        GbdtConfig {
            n_trees: 300,
            max_depth: 6,
            learning_rate: 0.05,
            subsample: 1.0,
            colsample_bytree: 1.0,
            l2: 1.0,
            min_child_weight: 1.0,
            gamma: 0.0,
            bins: 256,
        }
    }
}

impl GbdtConfig {
    /// A short label with the hyperparameters that distinguish runs.
    pub fn label(&self) -> String {
        format!(
            "gbdt(t={},d={},lr={})",
            self.n_trees, self.max_depth, self.learning_rate
        )
    }

    pub fn check(&self) -> Vec<FieldProblem> {
        let mut p = Vec::new();
        if self.n_trees == 0 {
            p.push(("n_trees", "is 0, expected at least 1".into()));
        }
        use super::size_limits as limit;
        p.extend(super::size_problem("n_trees", self.n_trees, limit::TREES));
        p.extend(super::size_problem(
            "max_depth",
            self.max_depth,
            limit::TREE_DEPTH,
        ));
        if self.max_depth == 0 {
            p.push(("max_depth", "is 0, expected at least 1".into()));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            p.push((
                "learning_rate",
                format!("is {}, expected 0 < rate <= 1", self.learning_rate),
            ));
        }
        for (name, v) in [
            ("subsample", self.subsample),
            ("colsample_bytree", self.colsample_bytree),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                p.push((name, format!("is {v}, expected 0 < share <= 1")));
            }
        }
        for (name, v) in [
            ("l2", self.l2),
            ("min_child_weight", self.min_child_weight),
            ("gamma", self.gamma),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                p.push((name, format!("is {v}, expected a number >= 0")));
            }
        }
        if self.bins < 2 {
            p.push(("bins", format!("is {}, expected at least 2", self.bins)));
        }
        p
    }

    /// The booster with these settings, on all cores: forust cuts the histogram work into
    /// tasks and segments that depend on the data size only and sums them in a fixed order,
    /// so parallel and serial fits are identical (tested below).
    fn booster(&self, seed: u64) -> GradientBooster {
        let sample = if self.subsample < 1.0 {
            SampleMethod::Random
        } else {
            SampleMethod::None
        };
        GradientBooster::default()
            .set_objective_type(ObjectiveType::SquaredLoss)
            .set_iterations(self.n_trees)
            .set_learning_rate(self.learning_rate as f32)
            .set_max_depth(self.max_depth)
            .set_l2(self.l2 as f32)
            .set_gamma(self.gamma as f32)
            .set_min_leaf_weight(self.min_child_weight as f32)
            .set_nbins(self.bins)
            .set_subsample(self.subsample as f32)
            .set_colsample_bytree(self.colsample_bytree)
            .set_sample_method(sample)
            .set_seed(seed)
            .set_parallel(true)
            .set_num_threads(Some(crate::track::provenance::threads()))
    }

    pub fn fit(
        &self,
        x: ArrayView2<f64>,
        y: &Array1<f64>,
        seed: u64,
    ) -> Result<Box<dyn FittedModel>> {
        let mut booster = self.booster(seed);
        let columns = column_major(x);
        let matrix = Matrix::new(&columns, x.nrows(), x.ncols());
        booster
            .fit_unweighted(&matrix, y.as_slice().expect("contiguous targets"), None)
            .map_err(|e| Error::Model(format!("gbdt: {e}")))?;
        Ok(Box::new(FittedGbdt {
            booster,
            n_trees: self.n_trees,
        }))
    }
}

/// forust reads features column by column.
fn column_major(x: ArrayView2<f64>) -> Vec<f64> {
    x.t().iter().copied().collect()
}

struct FittedGbdt {
    booster: GradientBooster,
    n_trees: usize,
}

impl FittedModel for FittedGbdt {
    fn predict(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        let columns = column_major(x);
        let matrix = Matrix::new(&columns, x.nrows(), x.ncols());
        Ok(Array1::from(self.booster.predict(&matrix, false)))
    }

    fn describe(&self, _names: &[String]) -> serde_json::Value {
        serde_json::json!({ "n_trees": self.n_trees, "base_score": self.booster.base_score })
    }
}

super::tabular::tabular_model!(GbdtConfig, "gbdt");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::r2;
    use ndarray::Array2;

    /// tests/fixtures/gbdt (scripts/make_baseline_fixtures.py): 300 training and 100 test
    /// rows of a non-linear target, and Python xgboost's test R² for two configurations.
    fn fixture() -> (
        Array2<f64>,
        Array1<f64>,
        Array2<f64>,
        Vec<f64>,
        serde_json::Value,
    ) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gbdt");
        let text = std::fs::read_to_string(dir.join("data.csv")).unwrap();
        let (mut train, mut y_train, mut test, mut y_test) = (vec![], vec![], vec![], vec![]);
        for line in text.lines().skip(1) {
            let cells: Vec<&str> = line.split(',').collect();
            let x: Vec<f64> = cells[..8].iter().map(|c| c.parse().unwrap()).collect();
            let y: f64 = cells[8].parse().unwrap();
            if cells[9] == "train" {
                train.extend(x);
                y_train.push(y);
            } else {
                test.extend(x);
                y_test.push(y);
            }
        }
        let expected =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
                .unwrap();
        (
            Array2::from_shape_vec((y_train.len(), 8), train).unwrap(),
            Array1::from(y_train),
            Array2::from_shape_vec((y_test.len(), 8), test).unwrap(),
            y_test,
            expected,
        )
    }

    #[test]
    fn test_r2_is_within_0_02_of_python_xgboost() {
        let (x, y, x_test, y_test, expected) = fixture();
        for name in ["shallow", "deep_subsample"] {
            let c = &expected["configs"][name];
            let p = &c["params"];
            let cfg = GbdtConfig {
                n_trees: p["n_estimators"].as_u64().unwrap() as usize,
                max_depth: p["max_depth"].as_u64().unwrap() as usize,
                learning_rate: p["learning_rate"].as_f64().unwrap(),
                subsample: p["subsample"].as_f64().unwrap(),
                colsample_bytree: 1.0,
                l2: p["reg_lambda"].as_f64().unwrap(),
                min_child_weight: p["min_child_weight"].as_f64().unwrap(),
                gamma: 0.0,
                bins: 256,
            };
            assert!(cfg.check().is_empty());
            let model = cfg.fit(x.view(), &y, 0).unwrap();
            let pred = model.predict(x_test.view()).unwrap();
            let ours = r2(&y_test, pred.as_slice().unwrap());
            let theirs = c["r2_test"].as_f64().unwrap();
            eprintln!("{name}: forust-ml R² {ours:.4}, xgboost {theirs:.4}");
            assert!((ours - theirs).abs() < 0.02, "{name}: {ours} vs {theirs}");
        }
    }

    #[test]
    fn parallel_and_serial_fits_are_identical() {
        let (x, y, x_test, _, _) = fixture();
        let cfg: GbdtConfig = serde_yaml::from_str("{n_trees: 40, subsample: 0.8}").unwrap();
        let columns = column_major(x.view());
        let matrix = Matrix::new(&columns, x.nrows(), x.ncols());
        let test_columns = column_major(x_test.view());
        let test = Matrix::new(&test_columns, x_test.nrows(), x_test.ncols());
        let fit = |threads: usize| {
            let mut b = cfg
                .booster(3)
                .set_parallel(threads > 1)
                .set_num_threads(Some(threads));
            b.fit_unweighted(&matrix, y.as_slice().unwrap(), None)
                .unwrap();
            b.predict(&test, false)
        };
        assert_eq!(fit(1), fit(2));
        assert_eq!(fit(1), fit(4));
    }

    #[test]
    fn the_same_seed_gives_the_same_model() {
        let (x, y, x_test, _, _) = fixture();
        let cfg: GbdtConfig = serde_yaml::from_str("{n_trees: 30, subsample: 0.7}").unwrap();
        let fit = |seed| {
            cfg.fit(x.view(), &y, seed)
                .unwrap()
                .predict(x_test.view())
                .unwrap()
        };
        assert_eq!(fit(1), fit(1));
        assert_ne!(fit(1), fit(2));
    }
}
