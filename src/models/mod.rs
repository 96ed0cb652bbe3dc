//! Models. Each file holds one model and its `XConfig` (the resolved, single-valued
//! hyperparameters of one job); `ModelConfig` is the closed set of them.
//!
//! The classical baselines are tabular: they see the per-tile feature table of
//! `data::features`, standardised with the training rows' mean and deviation.

pub mod gbdt;
pub mod graphsage;
pub mod lasso;
pub mod ols;
pub mod opencarbon;
pub mod random_forest;

use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::data::{PreparedDataset, SplitPart};
use crate::error::Result;

pub use gbdt::GbdtConfig;
pub use graphsage::{GraphSageConfig, MlpConfig};
pub use lasso::{LassoConfig, LassoSmartcoreConfig};
pub use ols::OlsConfig;
pub use random_forest::RandomForestConfig;

/// One labelled tile of a job: which dataset, which tile, which part.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub dataset: usize,
    pub tile: usize,
    pub part: SplitPart,
}

/// What a model hands back: a prediction (log emission) per row, and what it learned.
pub struct Fitted {
    pub predictions: Vec<f64>,
    pub description: serde_json::Value,
}

/// The feature columns `inputs` allows: indices and names.
pub fn feature_columns(inputs: Inputs, names: &[String]) -> (Vec<usize>, Vec<String>) {
    let columns: Vec<usize> = (0..names.len())
        .filter(|&c| inputs.allows_feature(&names[c]))
        .collect();
    let used = columns.iter().map(|&c| names[c].clone()).collect();
    (columns, used)
}

/// Rows of features for tiles (dataset, tile), the given columns.
pub fn feature_matrix(
    datasets: &[&PreparedDataset],
    tiles: &[(usize, usize)],
    columns: &[usize],
) -> Array2<f64> {
    let mut x = Array2::zeros((tiles.len(), columns.len()));
    for (i, &(d, t)) in tiles.iter().enumerate() {
        let features = &datasets[d].features.rows[t];
        for (k, &c) in columns.iter().enumerate() {
            x[[i, k]] = features[c];
        }
    }
    x
}

/// One job's model: which kind, with which hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelConfig {
    Lasso(LassoConfig),
    LassoSmartcore(LassoSmartcoreConfig),
    Ols(OlsConfig),
    RandomForest(RandomForestConfig),
    Gbdt(GbdtConfig),
    Mlp(MlpConfig),
    GraphSage(GraphSageConfig),
    OpenCarbon(opencarbon::OpenCarbonConfig),
}

/// Which inputs a model may use: the ablation switches every model accepts in YAML
/// (`image: false`, `poi: false`, `neighborhood: false`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    pub image: bool,
    pub poi: bool,
    pub neighborhood: bool,
}

impl Default for Inputs {
    fn default() -> Self {
        Inputs {
            image: true,
            poi: true,
            neighborhood: true,
        }
    }
}

impl Inputs {
    pub const KEYS: [&'static str; 3] = ["image", "poi", "neighborhood"];

    /// Empty for the full input set, else e.g. `[poi-only]`, `[no-nb]`.
    pub fn label(&self) -> String {
        let mut parts = Vec::new();
        match (self.image, self.poi) {
            (true, false) => parts.push("image-only"),
            (false, true) => parts.push("poi-only"),
            _ => {}
        }
        if !self.neighborhood {
            parts.push("no-nb");
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("[{}]", parts.join(","))
        }
    }

    /// Whether a handcrafted feature (by its name in `data::features`) is allowed.
    pub fn allows_feature(&self, name: &str) -> bool {
        let own = name.strip_prefix("nb_");
        if own.is_some() && !self.neighborhood {
            return false;
        }
        let base = own.unwrap_or(name);
        (self.image || !base.starts_with("img_")) && (self.poi || !base.starts_with("poi_"))
    }
}

/// A model with the inputs it may use: one entry of an experiment's model list after grid
/// expansion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub model: ModelConfig,
    pub inputs: Inputs,
}

impl ModelSpec {
    pub fn label(&self) -> String {
        format!("{}{}", self.model.label(), self.inputs.label())
    }
}

/// The model kinds a YAML file may name.
pub const MODEL_KINDS: [&str; 8] = [
    "lasso",
    "lasso_smartcore",
    "ols",
    "random_forest",
    "gbdt",
    "mlp",
    "graphsage",
    "opencarbon",
];

/// A problem with one hyperparameter: (field, message).
pub type FieldProblem = (&'static str, String);

impl ModelConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            ModelConfig::Lasso(_) => "lasso",
            ModelConfig::LassoSmartcore(_) => "lasso_smartcore",
            ModelConfig::Ols(_) => "ols",
            ModelConfig::RandomForest(_) => "random_forest",
            ModelConfig::Gbdt(_) => "gbdt",
            ModelConfig::Mlp(_) => "mlp",
            ModelConfig::GraphSage(_) => "graphsage",
            ModelConfig::OpenCarbon(_) => "opencarbon",
        }
    }

    /// Deserialise the hyperparameters of `kind` from a YAML mapping without its `kind` key.
    /// Errors carry the path inside the mapping (e.g. `alpha`).
    pub fn from_yaml(
        kind: &str,
        body: serde_yaml::Value,
    ) -> std::result::Result<ModelConfig, (String, String)> {
        fn parse<T: serde::de::DeserializeOwned>(
            v: serde_yaml::Value,
        ) -> std::result::Result<T, (String, String)> {
            serde_path_to_error::deserialize(v).map_err(|e| {
                let path = e.path().to_string();
                (
                    if path == "." { String::new() } else { path },
                    e.into_inner().to_string(),
                )
            })
        }
        Ok(match kind {
            "lasso" => ModelConfig::Lasso(parse(body)?),
            "lasso_smartcore" => ModelConfig::LassoSmartcore(parse(body)?),
            "ols" => ModelConfig::Ols(parse(body)?),
            "random_forest" => ModelConfig::RandomForest(parse(body)?),
            "gbdt" => ModelConfig::Gbdt(parse(body)?),
            "mlp" => ModelConfig::Mlp(parse(body)?),
            "graphsage" => ModelConfig::GraphSage(parse(body)?),
            "opencarbon" => ModelConfig::OpenCarbon(parse(body)?),
            other => {
                return Err((
                    "kind".into(),
                    format!(
                        "unknown model `{other}`, expected one of {}",
                        MODEL_KINDS.join(", ")
                    ),
                ))
            }
        })
    }

    /// Fields of `kind` whose value is itself a list; for them a list of lists gives grid
    /// alternatives.
    pub fn list_fields(kind: &str) -> &'static [&'static str] {
        match kind {
            "opencarbon" => &opencarbon::LIST_FIELDS,
            _ => &[],
        }
    }

    /// Range checks of the hyperparameters.
    pub fn check(&self) -> Vec<FieldProblem> {
        match self {
            ModelConfig::Lasso(c) => c.check(),
            ModelConfig::LassoSmartcore(c) => c.check(),
            ModelConfig::Ols(_) => Vec::new(),
            ModelConfig::RandomForest(c) => c.check(),
            ModelConfig::Gbdt(c) => c.check(),
            ModelConfig::Mlp(c) => c.spec().check(),
            ModelConfig::GraphSage(c) => c.spec().check(),
            ModelConfig::OpenCarbon(c) => c.check(),
        }
    }

    /// A short label with the hyperparameters that distinguish runs, for tables.
    pub fn label(&self) -> String {
        match self {
            ModelConfig::Lasso(c) => format!("lasso(a={})", c.alpha),
            ModelConfig::LassoSmartcore(c) => format!("lasso_smartcore(a={})", c.alpha),
            ModelConfig::Ols(_) => "ols".into(),
            ModelConfig::RandomForest(c) => format!(
                "random_forest(t={},d={})",
                c.n_trees,
                c.max_depth.map_or("none".to_string(), |d| d.to_string())
            ),
            ModelConfig::Gbdt(c) => format!(
                "gbdt(t={},d={},lr={})",
                c.n_trees, c.max_depth, c.learning_rate
            ),
            ModelConfig::Mlp(c) => format!("mlp(l={},h={})", c.layers, c.hidden),
            ModelConfig::GraphSage(c) => format!(
                "graphsage(l={},h={},{},{}{})",
                c.layers,
                c.hidden,
                serde_json::to_value(c.aggregator)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                String::from(c.contiguity),
                if c.embeddings_from.is_some() {
                    ",opencarbon-emb"
                } else {
                    ""
                }
            ),
            ModelConfig::OpenCarbon(c) => c.label(),
        }
    }

    /// Fit on standardised features.
    pub fn fit(
        &self,
        x: ArrayView2<f64>,
        y: &Array1<f64>,
        seed: u64,
    ) -> Result<Box<dyn FittedModel>> {
        match self {
            ModelConfig::Lasso(c) => c.fit(x, y),
            ModelConfig::LassoSmartcore(c) => c.fit(x, y),
            ModelConfig::Ols(c) => c.fit(x, y),
            ModelConfig::RandomForest(c) => c.fit(x, y, seed),
            ModelConfig::Gbdt(c) => c.fit(x, y, seed),
            ModelConfig::OpenCarbon(_) | ModelConfig::Mlp(_) | ModelConfig::GraphSage(_) => {
                Err(crate::error::Error::Internal(format!(
                    "{} is trained by its own module, not as a tabular model",
                    self.kind()
                )))
            }
        }
    }
}

/// A fitted tabular model.
pub trait FittedModel {
    fn predict(&self, x: ArrayView2<f64>) -> Result<Array1<f64>>;
    /// What the model learned, for `model.json` (coefficients, tree counts, ...).
    fn describe(&self, feature_names: &[String]) -> serde_json::Value;
}

/// Column-wise standardisation fitted on the training rows. Constant columns are centred
/// but not scaled.
#[derive(Debug, Clone)]
pub struct Standardizer {
    mean: Array1<f64>,
    scale: Array1<f64>,
}

impl Standardizer {
    pub fn fit(x: ArrayView2<f64>) -> Standardizer {
        let mean = x.mean_axis(Axis(0)).expect("at least one training row");
        let scale = x
            .std_axis(Axis(0), 0.0)
            .mapv(|s| if s > 1e-12 { s } else { 1.0 });
        Standardizer { mean, scale }
    }

    pub fn apply(&self, x: ArrayView2<f64>) -> Array2<f64> {
        (&x - &self.mean) / &self.scale
    }
}

/// Linear-model coefficients as JSON, named by feature.
fn coefficients_json(names: &[String], coef: &[f64], intercept: f64) -> serde_json::Value {
    let named: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .zip(coef)
        .map(|(n, c)| (n.clone(), serde_json::json!(c)))
        .collect();
    serde_json::json!({
        "intercept": intercept,
        "non_zero": coef.iter().filter(|c| **c != 0.0).count(),
        "coefficients": named,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_select_features_by_name() {
        let poi_only = Inputs {
            image: false,
            poi: true,
            neighborhood: true,
        };
        assert!(poi_only.allows_feature("poi_food") && poi_only.allows_feature("nb_poi_food"));
        assert!(!poi_only.allows_feature("img_mean_r") && !poi_only.allows_feature("nb_img_edges"));
        let no_nb = Inputs {
            neighborhood: false,
            ..Inputs::default()
        };
        assert!(no_nb.allows_feature("img_mean_r") && !no_nb.allows_feature("nb_present"));
        assert_eq!(poi_only.label(), "[poi-only]");
        assert_eq!(Inputs::default().label(), "");
    }
}

#[cfg(test)]
pub(crate) mod oracle {
    //! The scikit-learn regression fixture (scripts/make_oracle_fixtures.py).
    use ndarray::{Array1, Array2};
    use std::path::Path;

    pub struct Fixture {
        pub x_train: Array2<f64>,
        pub y_train: Array1<f64>,
        pub x_test: Array2<f64>,
        pub y_test: Array1<f64>,
        pub expected: serde_json::Value,
    }

    pub fn regression() -> Fixture {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oracle");
        let mut rdr = csv::Reader::from_path(dir.join("regression.csv")).unwrap();
        let (mut tr, mut te, mut ytr, mut yte) = (vec![], vec![], vec![], vec![]);
        let mut p = 0;
        for rec in rdr.records() {
            let rec = rec.unwrap();
            p = rec.len() - 2;
            let feats: Vec<f64> = (1..=p).map(|i| rec[i].parse().unwrap()).collect();
            let y: f64 = rec[p + 1].parse().unwrap();
            if &rec[0] == "train" {
                tr.extend(feats);
                ytr.push(y);
            } else {
                te.extend(feats);
                yte.push(y);
            }
        }
        let expected = serde_json::from_str(
            &std::fs::read_to_string(dir.join("regression_expected.json")).unwrap(),
        )
        .unwrap();
        Fixture {
            x_train: Array2::from_shape_vec((ytr.len(), p), tr).unwrap(),
            y_train: Array1::from(ytr),
            x_test: Array2::from_shape_vec((yte.len(), p), te).unwrap(),
            y_test: Array1::from(yte),
            expected,
        }
    }
}
