//! The command line: parses the arguments (`args`) and hands each subcommand to one function
//! here, which calls the module that does the work. Errors are printed in one place, `main.rs`.

use std::path::PathBuf;

use clap::Parser;

mod args;

pub use args::*;

use crate::config::{self, Plan};
use crate::data::import;
use crate::data::{inspect, synth, CityDataset};
use crate::error::{Error, Result};
use crate::report;
use crate::train::cluster::{self, EmitOptions};
use crate::train::{self, JobSelection, RunOptions};

/// Output piped into a reader that stops early (`opencarbon plan --json e.yaml | head -1`)
/// ends the program as it ends `cat`, by SIGPIPE, instead of a panic in `println!` (Rust
/// ignores SIGPIPE, so every write to the closed pipe would fail). The run store is safe
/// under such a kill as under any other.
pub fn die_quietly_on_closed_pipe() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: called first thing in main, before any thread exists; restoring a signal's
    // default disposition has no other effect on the program.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
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
        Command::Synth(args) => synth_command(args),
        Command::Predict(args) => predict_command(args),
        Command::Import(args) => import_command(args),
        Command::Features(args) => features_command(args),
        Command::Inspect(args) => inspect_command(args),
        Command::Plan(args) => plan_command(args),
        Command::Emit(args) => emit_command(args),
        Command::Run(args) => run_command(args),
        Command::Compare(args) => compare_command(args),
        Command::Export(args) => export_command(args),
        Command::Report(args) => report_command(args),
        Command::Ladder(args) => ladder_command(args),
    }
}

/// `report` without a pivot table: the experiment file's or directory's report.
fn write_report_of(
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
                    select.unwrap_or(plan.experiment.select),
                    Some(&plan.run_ids()),
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
        report::write_report(dir, &title, strict, select.unwrap_or_default(), None)?
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

fn synth_command(args: SynthArgs) -> Result<()> {
    let SynthArgs {
        preset,
        out,
        seed,
        tiles,
    } = args;
    if out.join("dataset.yaml").exists() {
        return Err(Error::Usage(format!(
            "{} already holds a dataset",
            out.display()
        )));
    }
    if tiles == Some(0) {
        return Err(Error::Usage("--tiles must be at least 1".into()));
    }
    synth::write_preset_atomically(&preset, seed, tiles, &out)?;
    let ds = CityDataset::open(&out)?;
    println!("wrote {}", out.display());
    print!("{}", inspect::dataset_stats(&ds));
    Ok(())
}

fn predict_command(args: PredictArgs) -> Result<()> {
    let PredictArgs {
        run,
        dataset,
        out,
        cache_dir,
        device,
    } = args;
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

fn import_command(args: ImportArgs) -> Result<()> {
    let spec = args.into_spec()?;
    let summary = import::run(&spec)?;
    println!("{summary}");
    println!("wrote {} (report: import_report.json)", spec.out.display());
    Ok(())
}

fn features_command(args: FeaturesArgs) -> Result<()> {
    let FeaturesArgs {
        dataset,
        out,
        image_size,
        poi_raster_size,
        cache_dir,
    } = args;
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

fn inspect_command(args: InspectArgs) -> Result<()> {
    let InspectArgs { dataset, json } = args;
    let ds = CityDataset::open(&dataset)?;
    inspect::check_images(&ds)?;
    let stats = inspect::dataset_stats(&ds);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&stats).map_err(|e| Error::Internal(e.to_string()))?
        );
    } else {
        print!("{stats}");
    }
    Ok(())
}

fn plan_command(args: PlanArgs) -> Result<()> {
    let PlanArgs { experiment, json } = args;
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

fn emit_command(args: EmitCommandArgs) -> Result<()> {
    let EmitCommandArgs { target } = args;
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
        EmitTarget::K8s { image, claim, .. } => cluster::kubernetes(&plan, &options, image, claim)?,
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

fn run_command(args: RunArgs) -> Result<()> {
    let RunArgs {
        experiment,
        force,
        index,
        shard,
        device,
    } = args;
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
        report::write_report(
            &dir,
            &plan.experiment.name,
            false,
            plan.experiment.select,
            Some(&plan.run_ids()),
        )
        .map(|_| {
            crate::track::progress::info(&format!("report: {}", dir.join("report.md").display()))
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

fn compare_command(args: CompareArgs) -> Result<()> {
    let CompareArgs {
        a,
        b,
        metric,
        fail_on_regression,
        tolerance,
        require_identical,
    } = args;
    let c = report::compare::compare(&a, &b, &metric)?;
    print!(
        "{}",
        c.markdown(&a.display().to_string(), &b.display().to_string())
    );
    let bad = |cells: Vec<&report::compare::Cell>, what: &str| -> Result<()> {
        if cells.is_empty() {
            return Ok(());
        }
        Err(Error::Regressed(format!(
            "{} of {} cells {what}: {}",
            cells.len(),
            c.cells.len(),
            cells
                .iter()
                .map(|c| c.name())
                .collect::<Vec<_>>()
                .join("; ")
        )))
    };
    if require_identical {
        bad(c.differences(), "differ")?;
    }
    if fail_on_regression {
        let rule = report::compare::RegressionRule { tolerance };
        bad(c.regressions(rule), "regressed or are missing")?;
    }
    Ok(())
}

fn export_command(args: ExportArgs) -> Result<()> {
    let ExportArgs {
        format: ExportFormat::Mlflow { target, out },
    } = args;
    let (dir, name) = experiment_target(&target)?;
    let e = crate::track::mlflow::export(&dir, &name, &out)?;
    println!(
        "exported {} runs ({} metric histories) of `{name}` as MLflow experiment {} in {}",
        e.runs,
        e.histories,
        e.experiment_id,
        e.dir.display()
    );
    // MLflow 3.13+ opens a file store only when told to (docs/config.md, "MLflow").
    let store = e.dir.parent().unwrap_or(&e.dir).display().to_string();
    println!(
        "open it with: MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri file://{store}\n  (or convert it once: mlflow migrate-filestore --source {store} --target sqlite:///mlflow.db; then mlflow ui --backend-store-uri sqlite:///mlflow.db)"
    );
    Ok(())
}

fn report_command(args: ReportArgs) -> Result<()> {
    let ReportArgs {
        target,
        strict,
        rows,
        cols,
        over,
        metric,
        select,
    } = args;
    if !rows.is_empty() {
        let (dir, _) = experiment_target(&target)?;
        let spec = report::pivot::PivotSpec {
            rows,
            cols,
            over,
            metric,
        };
        // Built first, so bad axes are refused before any table is rewritten.
        let summaries = crate::track::records::collect_summaries(&dir)?;
        let pivot = report::pivot::pivot(&summaries, &spec)?;
        let result = write_report_of(&target, strict, select);
        print!("{}", report::write_pivot(&dir, &pivot)?);
        return result;
    }
    write_report_of(&target, strict, select)
}

fn ladder_command(args: LadderArgs) -> Result<()> {
    let LadderArgs { experiment, rule } = args;
    // The rule first: a bad rule file fails before any work.
    let rule = rule
        .map(|f| train::ladder::AcceptanceRule::load(&f).map(|r| (f, r)))
        .transpose()?;
    let plan = Plan::new(config::load_experiment(&experiment)?);
    let ladder = train::ladder::compute(&plan, rule)?;
    let dir = plan.experiment.experiment_dir();
    print!("{}", train::ladder::write(&ladder, &dir)?);
    crate::track::progress::info(&format!(
        "wrote {} and {}",
        dir.join("ladder.md").display(),
        dir.join("ladder.json").display()
    ));
    Ok(())
}
