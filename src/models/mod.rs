//! Models. Each file holds one model and its `XConfig` (the resolved, single-valued
//! hyperparameters of one job); `ModelConfig` is the closed set of them.
//!
//! The classical baselines are tabular: they see the per-tile feature table of
//! `data::features`, standardised with the training rows' mean and deviation.

mod coordinate_descent;
pub mod gbdt;
pub mod graphsage;
pub mod lasso;
pub mod latent_oracle;
pub mod linear_probe;
pub mod mlp;
pub mod ols;
pub mod opencarbon;
pub mod random_forest;
mod regression_tree;
pub mod ridge;
pub mod ssl;
pub mod tabular;

use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::data::{PreparedDataset, SplitPart};
use crate::error::Result;

pub use gbdt::GbdtConfig;
pub use graphsage::GraphSageConfig;
pub use lasso::{LassoConfig, LassoSmartcoreConfig};
pub use mlp::MlpConfig;
pub use ols::OlsConfig;
pub use random_forest::RandomForestConfig;

/// One labelled tile of a job: which dataset, which tile, which part.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub dataset: usize,
    pub tile: usize,
    pub part: SplitPart,
}

impl Row {
    /// Where the row's tile is: its dataset's name and the tile's x and y, the key columns of a
    /// run's per-tile CSVs.
    pub fn place(&self, datasets: &[&PreparedDataset]) -> (String, u32, u32) {
        let t = datasets[self.dataset].data.tiles[self.tile];
        (datasets[self.dataset].entry.name.clone(), t.x, t.y)
    }
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

/// A problem with one hyperparameter: (field, message).
pub type FieldProblem = (&'static str, String);

/// What a model gets to fit one job: its inputs, seed and device, the job's identity (for
/// models that read another run, e.g. GraphSAGE on OpenCarbon's embeddings), the prepared
/// datasets and the job's labelled tiles.
pub struct JobInput<'a> {
    pub inputs: Inputs,
    pub seed: u64,
    pub device: crate::nn::device::DeviceSpec,
    /// The job's dataset and split labels, as in metrics.json.
    pub dataset_label: String,
    pub split_label: String,
    pub datasets: &'a [&'a PreparedDataset],
    pub rows: &'a [Row],
    /// The run of this experiment whose output the job reads (`JobConfig::reads_run`).
    pub reads_run: Option<&'a str>,
}

/// Largest sizes a configuration may ask for, checked at validation from the configuration
/// alone: far above any model of the paper or this project (OpenCarbon 64-512 dimensions,
/// 64-512 channels, 500 trees), and far below what would make the allocator abort (an
/// embedding_dim of 1e8 asked for ~1e16 weights) instead of a message and exit 2.
pub mod size_limits {
    pub const EMBEDDING_DIM: usize = 8192;
    pub const CHANNELS: usize = 4096;
    pub const BLOCKS: usize = 64;
    pub const BATCH_SIZE: usize = 8192;
    pub const HIDDEN: usize = 16384;
    pub const LAYERS: usize = 64;
    pub const TREES: usize = 100_000;
    pub const TREE_DEPTH: usize = 64;
    /// Weights of one network, estimated from its sizes together (each within its own limit
    /// may still multiply past memory: 64 layers of 16384 hidden units): 2^28 f32, 1 GiB.
    pub const WEIGHTS: f64 = 268_435_456.0;
}

/// A network whose estimated weight count (`estimate`) passes `size_limits::WEIGHTS`, as a
/// problem of its sizes together.
pub fn weights_problem(estimate: f64, sizes: &'static str) -> Option<FieldProblem> {
    (estimate > size_limits::WEIGHTS).then(|| {
        (
            sizes,
            format!(
                "together ask for about {estimate:.3e} weights, more than the limit of {:.3e} (1 GiB of f32)",
                size_limits::WEIGHTS
            ),
        )
    })
}

/// A size field above its limit (`size_limits`), as a problem of that field.
pub fn size_problem(name: &'static str, value: usize, limit: usize) -> Option<FieldProblem> {
    (value > limit).then(|| {
        (
            name,
            format!("is {value}, more than the limit of {limit} (docs/config.md, \"Limits\")"),
        )
    })
}

/// Early stopping cannot start before `min_epochs`; more of them than `max_epochs` means the
/// configuration says two things (the default min_epochs counts: lower it with max_epochs).
pub fn min_epochs_problem(min_epochs: usize, max_epochs: usize) -> Option<String> {
    (min_epochs > max_epochs).then(|| {
        format!(
            "is {min_epochs}, more than max_epochs ({max_epochs}); expected at most {max_epochs} (set min_epochs when lowering max_epochs below the default min_epochs)"
        )
    })
}

/// A model: its `XConfig` (the resolved hyperparameters of one job) implements this, and one
/// line in `model_table!` below registers it. Adding a model is one file plus that line
/// (docs/config.md, "Adding a model").
pub trait Model {
    /// The `kind:` that names the model in YAML.
    const KIND: &'static str;
    /// Fields whose value is itself a list; for them a list of lists gives grid alternatives.
    const LIST_FIELDS: &'static [&'static str] = &[];
    /// A short label with the hyperparameters that distinguish runs, for tables.
    fn label(&self) -> String;
    /// Range checks of the hyperparameters.
    fn check(&self) -> Vec<FieldProblem> {
        Vec::new()
    }
    /// Every field and its value (the serialised config, unless fields are left out of it
    /// at their defaults to keep older run ids: then with those too).
    fn all_fields(&self) -> serde_json::Value
    where
        Self: Serialize,
    {
        serde_json::to_value(self).unwrap_or_default()
    }
    /// What the model needs of a job's datasets beyond the dataset format (the oracle's
    /// latents.csv), checked for every pending job before any job starts, so that missing
    /// input is an input error (exit 2) rather than failed jobs.
    fn check_datasets(&self, _datasets: &[&PreparedDataset]) -> Result<()> {
        Ok(())
    }
    /// Fit on the job's training tiles; predict every tile of the job (log emission).
    fn fit(&self, job: &JobInput, run: &mut crate::track::RunDir) -> Result<Fitted>;
}

/// A model fitted on the standardised per-tile feature table (`tabular::fit_job` gives such a
/// model its `Model::fit`).
pub trait TabularModel {
    fn fit_table(
        &self,
        x: ArrayView2<f64>,
        y: &Array1<f64>,
        seed: u64,
    ) -> Result<Box<dyn FittedModel>>;
}

/// The closed set of models, from one table: the enum `ModelConfig` (serialised with a `kind`
/// tag into every job configuration, so into run ids), `MODEL_KINDS`, and the dispatch of
/// `Model`'s methods. The compiler checks every entry.
macro_rules! model_table {
    ($($variant:ident($config:ty)),* $(,)?) => {
        /// One job's model: which kind, with which hyperparameters.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        pub enum ModelConfig {
            $($variant($config)),*
        }

        /// The model kinds a YAML file may name.
        pub const MODEL_KINDS: &[&str] = &[$(<$config as Model>::KIND),*];

        impl ModelConfig {
            pub fn kind(&self) -> &'static str {
                match self {
                    $(ModelConfig::$variant(_) => <$config as Model>::KIND),*
                }
            }

            /// Deserialise the hyperparameters of `kind` from a YAML mapping without its `kind`
            /// key. Errors carry the path inside the mapping (e.g. `alpha`).
            pub fn from_yaml(
                kind: &str,
                body: serde_yaml::Value,
            ) -> std::result::Result<ModelConfig, (String, String)> {
                $(if kind == <$config as Model>::KIND {
                    return Ok(ModelConfig::$variant(parse_yaml(body)?));
                })*
                Err((
                    "kind".into(),
                    format!("unknown model `{kind}`, expected one of {}", MODEL_KINDS.join(", ")),
                ))
            }

            /// `Model::LIST_FIELDS` of `kind`.
            pub fn list_fields(kind: &str) -> &'static [&'static str] {
                $(if kind == <$config as Model>::KIND {
                    return <$config as Model>::LIST_FIELDS;
                })*
                &[]
            }

            /// Every hyperparameter with its value, the kind named as YAML names it
            /// (`opencarbon`, not the serialised variant `open_carbon`), the fields that a
            /// job's identity leaves out at their defaults included (`Model::all_fields`):
            /// what a person is shown as the resolved configuration.
            pub fn resolved_json(&self) -> serde_json::Value {
                let mut v = match self {
                    $(ModelConfig::$variant(c) => Model::all_fields(c)),*
                };
                if let serde_json::Value::Object(map) = &mut v {
                    map.insert("kind".into(), self.kind().into());
                }
                v
            }

            pub fn check(&self) -> Vec<FieldProblem> {
                match self {
                    $(ModelConfig::$variant(c) => Model::check(c)),*
                }
            }

            pub fn label(&self) -> String {
                match self {
                    $(ModelConfig::$variant(c) => Model::label(c)),*
                }
            }

            pub fn check_datasets(&self, datasets: &[&PreparedDataset]) -> Result<()> {
                match self {
                    $(ModelConfig::$variant(c) => Model::check_datasets(c, datasets)),*
                }
            }

            pub fn fit(&self, job: &JobInput, run: &mut crate::track::RunDir) -> Result<Fitted> {
                match self {
                    $(ModelConfig::$variant(c) => Model::fit(c, job, run)),*
                }
            }
        }
    };
}

impl ModelConfig {
    /// The image encoder's pretrained weights file, for the models that read one.
    pub fn image_weights(&self) -> Option<&str> {
        match self {
            ModelConfig::OpenCarbon(c) => c.image_weights.as_deref(),
            ModelConfig::LinearProbe(c) => c.image_weights.as_deref(),
            _ => None,
        }
    }
}

model_table! {
    Lasso(LassoConfig),
    LassoSmartcore(LassoSmartcoreConfig),
    Ols(OlsConfig),
    RandomForest(RandomForestConfig),
    Gbdt(GbdtConfig),
    Mlp(MlpConfig),
    GraphSage(GraphSageConfig),
    OpenCarbon(opencarbon::OpenCarbonConfig),
    Ridge(ridge::RidgeConfig),
    Oracle(latent_oracle::OracleConfig),
    LinearProbe(linear_probe::LinearProbeConfig),
}

/// A model's hyperparameters from YAML, with the path of the first problem.
fn parse_yaml<T: serde::de::DeserializeOwned>(
    v: serde_yaml::Value,
) -> std::result::Result<T, (String, String)> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let mut message = e.into_inner().to_string();
        // serde's words for a model without hyperparameters (ols) read as if nothing at all
        // could be written there.
        if let Some(head) = message.strip_suffix(", there are no fields") {
            message = format!(
                "{head}: this model has no hyperparameters; every model accepts only the input switches image, poi and neighborhood besides kind"
            );
        }
        (if path == "." { String::new() } else { path }, message)
    })
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

    /// The configuration shown to a person names the kind as YAML does and holds the fields
    /// that the job's identity (what its run id hashes) leaves out at their defaults; the
    /// identity itself is unchanged.
    #[test]
    fn the_resolved_configuration_shows_every_field() {
        let oc = ModelConfig::OpenCarbon(opencarbon::OpenCarbonConfig::default());
        let identity = serde_json::to_value(&oc).unwrap();
        assert_eq!(identity["kind"], "open_carbon");
        assert!(identity.get("loss").is_none() && identity.get("ema").is_none());
        let shown = oc.resolved_json();
        assert_eq!(shown["kind"], "opencarbon");
        for field in [
            "loss",
            "schedule",
            "ema",
            "augment",
            "patience_mode",
            "image_encoder",
        ] {
            assert!(shown.get(field).is_some(), "{field} missing");
        }
        let lasso = ModelConfig::Lasso(LassoConfig {
            alpha: 0.1,
            max_iter: 100,
            tol: 1e-6,
        });
        assert_eq!(lasso.resolved_json()["kind"], "lasso");
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
