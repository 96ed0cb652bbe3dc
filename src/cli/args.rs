//! The command line's arguments (clap): one struct per subcommand.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::data::import::{ImportSpec, Region};
use crate::error::{Error, Result};

#[derive(Parser, Debug)]
#[command(
    name = "opencarbon",
    version,
    about = "Urban carbon emission prediction from satellite tiles and POIs"
)]
pub struct Cli {
    /// Only warnings and errors on stderr (no progress).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Also print every run.log line (epochs, early stopping) on stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run every job of an experiment that is not already finished.
    Run(RunArgs),
    /// Print the expanded job table without running anything.
    Plan(PlanArgs),
    /// Write scripts that run an experiment's jobs on a cluster scheduler.
    Emit(EmitCommandArgs),
    /// Rebuild summary.csv and the tables from the run directories.
    Report(ReportArgs),
    /// The premise ladder of a finished experiment over generated cities
    /// (docs/benchmark-acceptance.md): per dataset and split seed T0 (acquisition parameters
    /// only), their Spearman correlations, T1 (feature baselines), T2 (the oracle), the
    /// inventory-error ceiling, Moran's I, the top-1 % share and the total; per preset their
    /// means and, with --rule, the acceptance verdicts. Writes ladder.md and ladder.json in
    /// the experiment's results directory.
    Ladder(LadderArgs),
    /// Compare two result sets run by run: B against A, paired by dataset, split, seed and
    /// every hyperparameter (not by run id or label); per cell both means, the paired
    /// difference B − A and its standard error.
    Compare(CompareArgs),
    /// Export an experiment's finished runs for another tool.
    Export(ExportArgs),
    /// Write a synthetic benchmark city as a dataset directory.
    Synth(SynthArgs),
    /// Apply a trained OpenCarbon run to a dataset (e.g. a new city): per-tile predicted
    /// emission (log and raw units) as CSV, and an emission map PNG beside it.
    Predict(PredictArgs),
    /// Build a dataset from raw open data: emission GeoTIFFs (ODIAC layout), a slippy-map
    /// tile cache and POIs from CSV or OpenStreetMap, over a lon/lat box or a tile range.
    Import(ImportArgs),
    /// Write the handcrafted feature table of a dataset (x, y, emission, then the features the
    /// tabular and graph baselines see, before standardisation) as CSV, e.g. for benchmarks
    /// against Python implementations.
    Features(FeaturesArgs),
    /// Print a dataset's statistics: tiles, POIs per category, emission quantiles, share of
    /// zero tiles, Moran's I of log emission, missing or extra images.
    Inspect(InspectArgs),
}

/// The arguments of `run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The experiment file (YAML), e.g. experiments/baselines.yaml.
    pub experiment: PathBuf,
    /// Run finished jobs again, replacing their results.
    #[arg(long)]
    pub force: bool,
    /// Run only job I of the plan (`plan` lists the indices), e.g. a Slurm array task.
    #[arg(long, value_name = "I", conflicts_with = "shard")]
    pub index: Option<usize>,
    /// Run every N-th job starting at job I.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Train on this device instead of the experiment's `device` (cpu, cuda, cuda:N).
    #[arg(long)]
    pub device: Option<String>,
}

/// The arguments of `ladder`.
#[derive(clap::Args, Debug)]
pub struct LadderArgs {
    /// The experiment file (YAML), every job finished: generated cities (with latents.csv),
    /// feature baselines and `kind: oracle`, one split.
    pub experiment: PathBuf,
    /// The acceptance rule (YAML; docs/config.md, "The premise ladder"), e.g.
    /// experiments/ladder/acceptance.yaml. Without it, the statistics alone.
    #[arg(long, value_name = "FILE")]
    pub rule: Option<PathBuf>,
}

/// The arguments of `plan`.
#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    /// The experiment file (YAML).
    pub experiment: PathBuf,
    /// Print the frozen job list as JSON (index, run id, configuration, status).
    #[arg(long)]
    pub json: bool,
}

/// The arguments of `emit`.
#[derive(clap::Args, Debug)]
pub struct EmitCommandArgs {
    #[command(subcommand)]
    pub target: EmitTarget,
}

/// The arguments of `report`.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// An experiment file (YAML) or an experiment's results directory.
    pub target: PathBuf,
    /// Refuse (exit 2) an experiment whose runs span several commits or come from a build
    /// with uncommitted changes, instead of warning.
    #[arg(long)]
    pub strict: bool,
    /// Also write a pivot table with these row axes (any hyperparameter: model, kind,
    /// dataset, split, seed, model.alpha, input.poi, ...), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub rows: Vec<String>,
    /// The pivot table's column axes.
    #[arg(long, value_delimiter = ',', requires = "rows")]
    pub cols: Vec<String>,
    /// The axes the pivot table averages over (mean ± std).
    #[arg(long, value_delimiter = ',', default_value = "seed", requires = "rows")]
    pub over: Vec<String>,
    /// The pivot table's metric: <train|valid|test>_<r2|rmse|mae|mape|spearman>.
    #[arg(long, default_value = "test_r2", requires = "rows")]
    pub metric: String,
    /// How the headline chooses OpenCarbon's configuration and the best baseline: by
    /// validation R² or by test R² (the paper's definition). Default: the experiment's
    /// `select`, else valid.
    #[arg(long, value_enum)]
    pub select: Option<crate::track::records::Select>,
}

/// The arguments of `compare`.
#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// The reference: an experiment results directory or a summary.csv.
    pub a: PathBuf,
    /// The result set compared with it.
    pub b: PathBuf,
    /// The summary.csv column compared (errors such as test_rmse: lower is better).
    #[arg(long, default_value = "test_r2")]
    pub metric: String,
    /// Exit 1 when a cell of B is worse than A by more than 2 standard errors (≥ 2 paired
    /// seeds) or by more than --tolerance (one seed), or is missing from B.
    #[arg(long)]
    pub fail_on_regression: bool,
    /// Allowed worsening before a cell counts as a regression.
    #[arg(long, default_value_t = 0.0)]
    pub tolerance: f64,
    /// Exit 1 unless every cell is in both and every paired difference is exactly 0
    /// (determinism checks).
    #[arg(long)]
    pub require_identical: bool,
}

/// The arguments of `export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    #[command(subcommand)]
    pub format: ExportFormat,
}

/// The arguments of `synth`.
#[derive(clap::Args, Debug)]
pub struct SynthArgs {
    /// The preset: london, beijing, yinchuan or tiny.
    pub preset: String,
    /// The output directory (created; must not hold a dataset already).
    pub out: PathBuf,
    /// Generator seed: the same seed always gives the same city.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Scale the preset to this many tiles (default: the preset's own size).
    #[arg(long)]
    pub tiles: Option<usize>,
}

/// The arguments of `predict`.
#[derive(clap::Args, Debug)]
pub struct PredictArgs {
    /// The run directory (results/<experiment>/<run id>) of a finished OpenCarbon job.
    #[arg(long)]
    pub run: PathBuf,
    /// The dataset directory to predict for.
    #[arg(long)]
    pub dataset: PathBuf,
    /// The CSV to write (default: <run>/predict-<dataset name>.csv); the map is the same
    /// path with .png.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where decoded images and POI rasters are cached.
    #[arg(long, default_value = ".cache")]
    pub cache_dir: PathBuf,
    /// Run the network on this device (cpu, cuda, cuda:N).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// The arguments of `features`.
#[derive(clap::Args, Debug)]
pub struct FeaturesArgs {
    /// The dataset directory.
    pub dataset: PathBuf,
    /// The CSV to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Image size the image statistics are computed at (as `image_size` in experiments).
    #[arg(long, default_value_t = 64)]
    pub image_size: usize,
    /// POI raster size (as `poi_raster_size` in experiments).
    #[arg(long, default_value_t = 64)]
    pub poi_raster_size: usize,
    /// Where decoded images and POI rasters are cached.
    #[arg(long, default_value = ".cache")]
    pub cache_dir: PathBuf,
}

/// The arguments of `inspect`.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// The dataset directory.
    pub dataset: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum ExportFormat {
    /// MLflow's file store (`mlruns/`): one MLflow run per finished run, with its
    /// hyperparameters, final metrics, per-epoch metric histories and records. View with
    /// `MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri <out>`.
    Mlflow {
        /// An experiment file (YAML) or an experiment's results directory.
        target: PathBuf,
        /// The MLflow store directory (created; other experiments in it are kept).
        #[arg(long, default_value = "mlruns")]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum EmitTarget {
    /// A Slurm job array (`run --index $SLURM_ARRAY_TASK_ID`) and a report job that runs after
    /// every task ended (`afterany`); submit with the written submit.sh.
    Slurm {
        /// The experiment file (YAML).
        experiment: PathBuf,
        #[command(flatten)]
        common: EmitCommon,
    },
    /// A Kubernetes Indexed Job (`run --index $JOB_COMPLETION_INDEX`) and a report Job.
    K8s {
        /// The experiment file (YAML), relative to the repository root mounted at /work.
        experiment: PathBuf,
        #[command(flatten)]
        common: EmitCommon,
        /// Container image that holds the opencarbon binary.
        #[arg(long, default_value = "opencarbon:latest")]
        image: String,
        /// PersistentVolumeClaim with the repository (experiments, configs, results).
        #[arg(long, default_value = "opencarbon-work")]
        claim: String,
    },
}

#[derive(clap::Args, Debug)]
pub struct EmitCommon {
    /// Most tasks running at once (0 = as many as the scheduler allows).
    #[arg(long, default_value_t = 0)]
    pub parallel: usize,
    /// CPU cores per task. One job uses what the machine gives it; a node must have at least
    /// this many CPUs, or the tasks stay pending.
    #[arg(long, default_value_t = 1)]
    pub cpus: usize,
    /// Where to write the scripts (default: results/<experiment>/<slurm|k8s>/).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The dataset directory to write (must not hold a dataset).
    #[arg(long)]
    out: PathBuf,
    /// The dataset's name ([a-z0-9_-]+).
    #[arg(long)]
    name: String,
    /// Slippy-map zoom level of the tiles (15 ≈ 1 km² at mid latitudes).
    #[arg(long, default_value_t = 15)]
    zoom: u8,
    /// Region as west,south,east,north in degrees (default: what the rasters cover).
    #[arg(
        long,
        value_name = "W,S,E,N",
        conflicts_with = "tiles",
        allow_hyphen_values = true
    )]
    bbox: Option<String>,
    /// Region as an inclusive tile range x0,y0,x1,y1 at --zoom.
    #[arg(long, value_name = "X0,Y0,X1,Y1")]
    tiles: Option<String>,
    /// Emission GeoTIFF in EPSG:4326 (repeat to sum several, e.g. 12 monthly ODIAC files).
    #[arg(long, required = true)]
    emissions: Vec<PathBuf>,
    /// Convert tonnes of carbon to tonnes of CO2 (× 44/12).
    #[arg(long)]
    co2: bool,
    /// The dataset's emission unit text (default: from the files and --co2).
    #[arg(long)]
    unit: Option<String>,
    /// Tile cache directory: <dir>/<zoom>/<x>/<y>.png|jpg.
    #[arg(long)]
    images: PathBuf,
    /// POI CSV with lon and lat columns; every other column is a tag (repeatable).
    #[arg(long)]
    pois_csv: Vec<PathBuf>,
    /// OpenStreetMap extract (.osm.pbf) to take POIs from (repeatable).
    #[arg(long)]
    osm: Vec<PathBuf>,
    /// Rules from tags to categories.
    #[arg(long, default_value = "configs/poi_mapping/osm.yaml")]
    mapping: PathBuf,
    /// dataset.yaml's `source` text (where the data came from, licences).
    #[arg(long)]
    source: Option<String>,
}

impl ImportArgs {
    pub fn into_spec(self) -> Result<ImportSpec> {
        let region = match (&self.bbox, &self.tiles) {
            (Some(b), _) => Some(Region::Bbox(parse_numbers::<f64, 4>(b, "--bbox")?)),
            (None, Some(t)) => Some(Region::Tiles(parse_numbers::<u32, 4>(t, "--tiles")?)),
            (None, None) => None,
        };
        Ok(ImportSpec {
            out: self.out,
            name: self.name,
            zoom: self.zoom,
            region,
            emissions: self.emissions,
            co2: self.co2,
            unit: self.unit,
            images: self.images,
            pois_csv: self.pois_csv,
            osm: self.osm,
            mapping: self.mapping,
            source: self.source,
        })
    }
}

/// `a,b,c,d` as N numbers.
fn parse_numbers<T: std::str::FromStr, const N: usize>(text: &str, flag: &str) -> Result<[T; N]> {
    let parts: Vec<T> = text
        .split(',')
        .map(|p| p.trim().parse::<T>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| {
            Error::Usage(format!(
                "{flag} `{text}`: expected {N} comma-separated numbers"
            ))
        })?;
    parts.try_into().map_err(|_| {
        Error::Usage(format!(
            "{flag} `{text}`: expected {N} comma-separated numbers"
        ))
    })
}
