//! The command line: parses arguments and hands each subcommand to the module that does it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{self, Plan};
use crate::data::import::{self, ImportSpec, Region};
use crate::data::{inspect, synth, CityDataset};
use crate::error::{Error, Result};
use crate::report;
use crate::train::cluster::{self, EmitOptions};
use crate::train::{self, JobSelection, RunOptions};

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
    Run {
        /// The experiment file (YAML), e.g. experiments/baselines.yaml.
        experiment: PathBuf,
        /// Run finished jobs again, replacing their results.
        #[arg(long)]
        force: bool,
        /// Run only job I of the plan (`plan` lists the indices), e.g. a Slurm array task.
        #[arg(long, value_name = "I", conflicts_with = "shard")]
        index: Option<usize>,
        /// Run every N-th job starting at job I.
        #[arg(long, value_name = "I/N")]
        shard: Option<String>,
        /// Train on this device instead of the experiment's `device` (cpu, cuda, cuda:N).
        #[arg(long)]
        device: Option<String>,
    },
    /// Print the expanded job table without running anything.
    Plan {
        /// The experiment file (YAML).
        experiment: PathBuf,
        /// Print the frozen job list as JSON (index, run id, configuration, status).
        #[arg(long)]
        json: bool,
    },
    /// Write scripts that run an experiment's jobs on a cluster scheduler.
    Emit {
        #[command(subcommand)]
        target: EmitTarget,
    },
    /// Rebuild summary.csv and the tables from the run directories.
    Report {
        /// An experiment file (YAML) or an experiment's results directory.
        target: PathBuf,
        /// Refuse (exit 2) an experiment whose runs span several commits or come from a build
        /// with uncommitted changes, instead of warning.
        #[arg(long)]
        strict: bool,
        /// Also write a pivot table with these row axes (any hyperparameter: model, kind,
        /// dataset, split, seed, model.alpha, input.poi, ...), comma-separated.
        #[arg(long, value_delimiter = ',')]
        rows: Vec<String>,
        /// The pivot table's column axes.
        #[arg(long, value_delimiter = ',', requires = "rows")]
        cols: Vec<String>,
        /// The axes the pivot table averages over (mean ± std).
        #[arg(long, value_delimiter = ',', default_value = "seed", requires = "rows")]
        over: Vec<String>,
        /// The pivot table's metric: <train|valid|test>_<r2|rmse|mae|mape|spearman>.
        #[arg(long, default_value = "test_r2", requires = "rows")]
        metric: String,
        /// How the headline chooses OpenCarbon's configuration and the best baseline: by
        /// validation R² or by test R² (the paper's definition). Default: the experiment's
        /// `select`, else valid.
        #[arg(long, value_enum)]
        select: Option<crate::track::records::Select>,
    },
    /// Compare two result sets run by run: B against A, paired by dataset, split, seed and
    /// every hyperparameter (not by run id or label); per cell both means, the paired
    /// difference B − A and its standard error.
    Compare {
        /// The reference: an experiment results directory or a summary.csv.
        a: PathBuf,
        /// The result set compared with it.
        b: PathBuf,
        /// The summary.csv column compared (errors such as test_rmse: lower is better).
        #[arg(long, default_value = "test_r2")]
        metric: String,
        /// Exit 1 when a cell of B is worse than A by more than 2 standard errors (≥ 2 paired
        /// seeds) or by more than --tolerance (one seed), or is missing from B.
        #[arg(long)]
        fail_on_regression: bool,
        /// Allowed worsening before a cell counts as a regression.
        #[arg(long, default_value_t = 0.0)]
        tolerance: f64,
        /// Exit 1 unless every cell is in both and every paired difference is exactly 0
        /// (determinism checks).
        #[arg(long)]
        require_identical: bool,
    },
    /// Export an experiment's finished runs for another tool.
    Export {
        #[command(subcommand)]
        format: ExportFormat,
    },
    /// Write a synthetic benchmark city as a dataset directory.
    Synth {
        /// The preset: london, beijing, yinchuan or tiny.
        preset: String,
        /// The output directory (created; must not hold a dataset already).
        out: PathBuf,
        /// Generator seed: the same seed always gives the same city.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Scale the preset to this many tiles (default: the preset's own size).
        #[arg(long)]
        tiles: Option<usize>,
    },
    /// Apply a trained OpenCarbon run to a dataset (e.g. a new city): per-tile predicted
    /// emission (log and raw units) as CSV, and an emission map PNG beside it.
    Predict {
        /// The run directory (results/<experiment>/<run id>) of a finished OpenCarbon job.
        #[arg(long)]
        run: PathBuf,
        /// The dataset directory to predict for.
        #[arg(long)]
        dataset: PathBuf,
        /// The CSV to write (default: <run>/predict-<dataset name>.csv); the map is the same
        /// path with .png.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Where decoded images and POI rasters are cached.
        #[arg(long, default_value = ".cache")]
        cache_dir: PathBuf,
        /// Run the network on this device (cpu, cuda, cuda:N).
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Build a dataset from raw open data: emission GeoTIFFs (ODIAC layout), a slippy-map
    /// tile cache and POIs from CSV or OpenStreetMap, over a lon/lat box or a tile range.
    Import(ImportArgs),
    /// Write the handcrafted feature table of a dataset (x, y, emission, then the features the
    /// tabular and graph baselines see, before standardisation) as CSV, e.g. for benchmarks
    /// against Python implementations.
    Features {
        /// The dataset directory.
        dataset: PathBuf,
        /// The CSV to write.
        #[arg(long)]
        out: PathBuf,
        /// Image size the image statistics are computed at (as `image_size` in experiments).
        #[arg(long, default_value_t = 64)]
        image_size: usize,
        /// POI raster size (as `poi_raster_size` in experiments).
        #[arg(long, default_value_t = 64)]
        poi_raster_size: usize,
        /// Where decoded images and POI rasters are cached.
        #[arg(long, default_value = ".cache")]
        cache_dir: PathBuf,
    },
    /// Print a dataset's statistics: tiles, POIs per category, emission quantiles, share of
    /// zero tiles, Moran's I of log emission, missing or extra images.
    Inspect {
        /// The dataset directory.
        dataset: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
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
        common: EmitArgs,
    },
    /// A Kubernetes Indexed Job (`run --index $JOB_COMPLETION_INDEX`) and a report Job.
    K8s {
        /// The experiment file (YAML), relative to the repository root mounted at /work.
        experiment: PathBuf,
        #[command(flatten)]
        common: EmitArgs,
        /// Container image that holds the opencarbon binary.
        #[arg(long, default_value = "opencarbon:latest")]
        image: String,
        /// PersistentVolumeClaim with the repository (experiments, configs, results).
        #[arg(long, default_value = "opencarbon-work")]
        claim: String,
    },
}

#[derive(clap::Args, Debug)]
pub struct EmitArgs {
    /// Most tasks running at once (0 = as many as the scheduler allows).
    #[arg(long, default_value_t = 0)]
    parallel: usize,
    /// CPU cores per task. One job uses what the machine gives it; a node must have at least
    /// this many CPUs, or the tasks stay pending.
    #[arg(long, default_value_t = 1)]
    cpus: usize,
    /// Where to write the scripts (default: results/<experiment>/<slurm|k8s>/).
    #[arg(long)]
    out: Option<PathBuf>,
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
    fn into_spec(self) -> Result<ImportSpec> {
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

pub fn main() -> Result<()> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are successes; everything else is bad usage (exit 2).
            let _ = e.print();
            return if e.use_stderr() {
                Err(Error::Usage("see --help".into()))
            } else {
                Ok(())
            };
        }
    };
    crate::track::progress::set_verbosity(match (cli.quiet, cli.verbose) {
        (true, _) => -1,
        (_, true) => 1,
        _ => 0,
    });
    match cli.command {
        Command::Synth {
            preset,
            out,
            seed,
            tiles,
        } => {
            let p = synth::preset(&preset).ok_or_else(|| {
                Error::Usage(format!(
                    "unknown preset `{preset}`, expected one of {}",
                    synth::preset_names().join(", ")
                ))
            })?;
            if out.join("dataset.yaml").exists() {
                return Err(Error::Usage(format!(
                    "{} already holds a dataset",
                    out.display()
                )));
            }
            let p = match tiles {
                Some(0) => return Err(Error::Usage("--tiles must be at least 1".into())),
                Some(n) => p.with_tiles(n),
                None => p,
            };
            synth::SynthCity::generate(&p, seed).write(&out)?;
            let ds = CityDataset::open(&out)?;
            println!("wrote {}", out.display());
            print!("{}", inspect::dataset_stats(&ds));
            Ok(())
        }
        Command::Predict {
            run,
            dataset,
            out,
            cache_dir,
            device,
        } => {
            let device = config::DeviceSpec::parse(&device).map_err(Error::Usage)?;
            crate::nn::device::check_available(device)?;
            let o = crate::models::opencarbon::predict::run_predict(
                &run,
                &dataset,
                out.as_deref(),
                &|entry, image_size, poi_raster_size| {
                    train::prepare_dataset(entry, &cache_dir, image_size, poi_raster_size)
                },
                device,
            )?;
            println!(
                "predicted {} tiles: {} and {}",
                o.tiles,
                o.csv.display(),
                o.map.display()
            );
            Ok(())
        }
        Command::Import(args) => {
            let spec = args.into_spec()?;
            let summary = import::run(&spec)?;
            println!("{summary}");
            println!("wrote {} (report: import_report.json)", spec.out.display());
            Ok(())
        }
        Command::Features {
            dataset,
            out,
            image_size,
            poi_raster_size,
            cache_dir,
        } => {
            let ds = CityDataset::open(&dataset)?;
            let entry = config::DatasetEntry {
                name: ds.meta.name.clone(),
                source: config::DatasetSource::Path { path: dataset },
            };
            let p = train::prepare_dataset(&entry, &cache_dir, image_size, poi_raster_size)?;
            let mut csv = format!("x,y,emission,{}\n", p.features.names.join(","));
            for (t, row) in p.data.tiles.iter().zip(&p.features.rows) {
                let values: Vec<String> = row.iter().map(|v| format!("{v}")).collect();
                csv.push_str(&format!(
                    "{},{},{},{}\n",
                    t.x,
                    t.y,
                    t.emission,
                    values.join(",")
                ));
            }
            crate::track::atomic_write(&out, csv.as_bytes())?;
            println!(
                "wrote {} ({} tiles, {} features)",
                out.display(),
                p.data.tiles.len(),
                p.features.names.len()
            );
            Ok(())
        }
        Command::Inspect { dataset, json } => {
            let ds = CityDataset::open(&dataset)?;
            inspect::check_images(&ds)?;
            let stats = inspect::dataset_stats(&ds);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&stats)
                        .map_err(|e| Error::Internal(e.to_string()))?
                );
            } else {
                print!("{stats}");
            }
            Ok(())
        }
        Command::Plan { experiment, json } => {
            let plan = Plan::new(config::load_experiment(&experiment)?);
            if json {
                let text = serde_json::to_string_pretty(&plan.to_json())
                    .map_err(|e| Error::Internal(e.to_string()))?;
                println!("{text}");
            } else {
                print!("{}", plan.table());
            }
            Ok(())
        }
        Command::Emit { target } => {
            let (experiment, common, scheduler) = match &target {
                EmitTarget::Slurm { experiment, common } => (experiment, common, "slurm"),
                EmitTarget::K8s {
                    experiment, common, ..
                } => (experiment, common, "k8s"),
            };
            let plan = Plan::new(config::load_experiment(experiment)?);
            let options = EmitOptions {
                parallel: common.parallel,
                cpus: common.cpus,
            };
            let emitted = match &target {
                EmitTarget::Slurm { .. } => cluster::slurm(&plan, &options)?,
                EmitTarget::K8s { image, claim, .. } => {
                    cluster::kubernetes(&plan, &options, image, claim)?
                }
            };
            let dir = common
                .out
                .clone()
                .unwrap_or_else(|| plan.experiment.experiment_dir().join(scheduler));
            for p in cluster::write(&emitted, &dir)? {
                println!("wrote {}", p.display());
            }
            println!(
                "{} jobs; submit with: {} (in {})",
                plan.jobs.len(),
                emitted.submit,
                dir.display()
            );
            Ok(())
        }
        Command::Run {
            experiment,
            force,
            index,
            shard,
            device,
        } => {
            let mut exp = config::load_experiment(&experiment)?;
            if let Some(d) = device {
                exp.device = config::DeviceSpec::parse(&d).map_err(Error::Usage)?;
            }
            crate::nn::device::check_available(exp.device)?;
            let selection = match (index, shard) {
                (Some(i), _) => JobSelection::Index(i),
                (None, Some(s)) => JobSelection::parse_shard(&s)?,
                (None, None) => JobSelection::All,
            };
            let plan = Plan::new(exp);
            let result = train::run_experiment(&plan, RunOptions { force, selection });
            // One task of many leaves the tables to the report job (`emit`), which runs once
            // every task has finished. Bad input (exit 2) is found before any job runs and
            // must not touch the results either.
            let input_error = matches!(&result, Err(e) if e.exit_code() == 2);
            if selection != JobSelection::All || input_error {
                return result.map(|_| ());
            }
            // Tables are rebuilt even when some jobs failed, from the runs that finished; the
            // jobs' outcome is said first when the report fails too.
            let dir = plan.experiment.experiment_dir();
            let written = if dir.exists()
                && report::collect_runs(&dir)
                    .map(|r| !r.is_empty())
                    .unwrap_or(false)
            {
                report::write_report(&dir, &plan.experiment.name, false, plan.experiment.select)
                    .map(|_| {
                        crate::track::progress::info(&format!(
                            "report: {}",
                            dir.join("report.md").display()
                        ))
                    })
            } else {
                Ok(())
            };
            match (result, written) {
                (Ok(_), Ok(())) => Ok(()),
                (Err(e), Ok(())) | (Ok(_), Err(e)) => Err(e),
                (Err(jobs), Err(report)) => Err(Error::Several(vec![jobs, report])),
            }
        }
        Command::Compare {
            a,
            b,
            metric,
            fail_on_regression,
            tolerance,
            require_identical,
        } => {
            let c = report::compare::compare(&a, &b, &metric)?;
            print!(
                "{}",
                c.markdown(&a.display().to_string(), &b.display().to_string())
            );
            let show = |cells: Vec<&report::compare::Cell>| -> String {
                cells
                    .iter()
                    .map(|c| c.name())
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            if require_identical && !c.differences().is_empty() {
                return Err(Error::Regressed(format!(
                    "{} of {} cells differ: {}",
                    c.differences().len(),
                    c.cells.len(),
                    show(c.differences())
                )));
            }
            let rule = report::compare::RegressionRule { tolerance };
            if fail_on_regression && !c.regressions(rule).is_empty() {
                return Err(Error::Regressed(format!(
                    "{} of {} cells regressed or are missing: {}",
                    c.regressions(rule).len(),
                    c.cells.len(),
                    show(c.regressions(rule))
                )));
            }
            Ok(())
        }
        Command::Export {
            format: ExportFormat::Mlflow { target, out },
        } => {
            let (dir, name) = experiment_target(&target)?;
            let e = crate::track::mlflow::export(&dir, &name, &out)?;
            println!(
                "exported {} runs ({} metric histories) of `{name}` as MLflow experiment {} in {}",
                e.runs,
                e.histories,
                e.experiment_id,
                e.dir.display()
            );
            Ok(())
        }
        Command::Report {
            target,
            strict,
            rows,
            cols,
            over,
            metric,
            select,
        } => {
            if !rows.is_empty() {
                let (dir, _) = experiment_target(&target)?;
                let spec = report::pivot::PivotSpec {
                    rows,
                    cols,
                    over,
                    metric,
                };
                // Checked first, so bad axes are refused before any table is rewritten.
                let summaries = crate::track::records::collect_summaries(&dir)?;
                report::pivot::pivot(&summaries, &spec)?;
                let result = report_command(&target, strict, select);
                print!("{}", report::write_pivot(&dir, &spec)?);
                return result;
            }
            report_command(&target, strict, select)
        }
    }
}

/// `report` without a pivot table.
fn report_command(
    target: &std::path::Path,
    strict: bool,
    select: Option<crate::track::records::Select>,
) -> Result<()> {
    let (dir, title) = if target.is_dir() {
        let title = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        (target, title)
    } else {
        let plan = Plan::new(config::load_experiment(target)?);
        let dir = plan.experiment.experiment_dir();
        if dir.exists() {
            print!(
                "{}",
                report::write_report(
                    &dir,
                    &plan.experiment.name,
                    strict,
                    select.unwrap_or(plan.experiment.select)
                )?
            );
        }
        // Given the experiment, the report knows which jobs should exist.
        plan.check_complete()?;
        println!("all {} jobs are done", plan.jobs.len());
        return Ok(());
    };
    print!(
        "{}",
        report::write_report(dir, &title, strict, select.unwrap_or_default())?
    );
    Ok(())
}

/// The results directory and name of an experiment given as its YAML file or its directory.
fn experiment_target(target: &std::path::Path) -> Result<(PathBuf, String)> {
    if target.is_dir() {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok((target.to_path_buf(), name));
    }
    let experiment = config::load_experiment(target)?;
    Ok((experiment.experiment_dir(), experiment.name))
}
