//! The command line: parses arguments and hands each subcommand to the module that does it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{self, Plan};
use crate::data::{inspect, synth, CityDataset};
use crate::error::{Error, Result};
use crate::report;
use crate::train::{self, RunOptions};

#[derive(Parser, Debug)]
#[command(
    name = "opencarbon",
    version,
    about = "Urban carbon emission prediction from satellite tiles and POIs"
)]
pub struct Cli {
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
    },
    /// Print the expanded job table without running anything.
    Plan {
        /// The experiment file (YAML).
        experiment: PathBuf,
    },
    /// Rebuild summary.csv and the tables from the run directories.
    Report {
        /// An experiment file (YAML) or an experiment's results directory.
        target: PathBuf,
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
    match cli.command {
        Command::Synth { preset, out, seed } => {
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
        } => {
            let o = crate::models::opencarbon::predict::run_predict(
                &run,
                &dataset,
                out.as_deref(),
                &cache_dir,
            )?;
            println!(
                "predicted {} tiles: {} and {}",
                o.tiles,
                o.csv.display(),
                o.map.display()
            );
            Ok(())
        }
        Command::Inspect { dataset, json } => {
            let ds = CityDataset::open(&dataset)?;
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
        Command::Plan { experiment } => {
            let plan = Plan::new(config::load_experiment(&experiment)?);
            print!("{}", plan.table());
            Ok(())
        }
        Command::Run { experiment, force } => {
            let plan = Plan::new(config::load_experiment(&experiment)?);
            let result = train::run_experiment(&plan, RunOptions { force });
            // Tables are rebuilt even when some jobs failed, from the runs that finished.
            let dir = plan.experiment.experiment_dir();
            if dir.exists()
                && report::collect_runs(&dir)
                    .map(|r| !r.is_empty())
                    .unwrap_or(false)
            {
                report::write_report(&dir, &plan.experiment.name)?;
                eprintln!("report: {}", dir.join("report.md").display());
            }
            result.map(|_| ())
        }
        Command::Report { target } => {
            let (dir, title) = if target.is_dir() {
                let title = target
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (target, title)
            } else {
                let e = config::load_experiment(&target)?;
                (e.experiment_dir(), e.name)
            };
            print!("{}", report::write_report(&dir, &title)?);
            Ok(())
        }
    }
}
