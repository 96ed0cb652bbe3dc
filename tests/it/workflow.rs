//! plan → run → rerun skips → report, and recovery from an interrupted run.

use super::{read, Cli};

const EXPERIMENT: &str = "\
name: tiny_exp
datasets:
  - preset: tiny
models:
  - kind: lasso
    alpha: [0.01, 0.1]
  - kind: random_forest
    n_trees: 10
splits:
  - kind: random
  - kind: block
    block_tiles: 2
seeds: [0, 1]
";

fn run_dirs(cli: &Cli) -> Vec<std::path::PathBuf> {
    run_dirs_of(cli, "results/tiny_exp")
}

#[test]
fn plan_run_rerun_and_report() {
    let cli = Cli::in_temp_dir();
    cli.write("exp.yaml", EXPERIMENT);

    let plan = cli.run(&["plan", "exp.yaml"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout.contains("12 jobs, 0 done, 12 to run"),
        "{}",
        plan.stdout
    );
    assert!(
        !cli.path("results").exists(),
        "plan must not write anything"
    );

    let run = cli.run(&["run", "exp.yaml"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let dirs = run_dirs(&cli);
    assert_eq!(dirs.len(), 12);
    for d in &dirs {
        for f in [
            "config.yaml",
            "manifest.json",
            "metrics.json",
            "predictions.csv",
            "split.csv",
            "run.log",
            "DONE",
            "model.json",
        ] {
            assert!(d.join(f).is_file(), "{} lacks {f}", d.display());
        }
        let manifest: serde_json::Value =
            serde_json::from_str(&read(&d.join("manifest.json"))).unwrap();
        assert_eq!(manifest["status"], "done");
        assert!(manifest["wall_seconds"].as_f64().unwrap() >= 0.0);
        assert_eq!(manifest["datasets"][0]["name"], "tiny");
        let preds = read(&d.join("predictions.csv"));
        assert!(preds.starts_with("dataset,x,y,split,target,prediction\n"));
        assert!(preds.lines().count() > 30);
    }
    assert!(cli.path("results/tiny_exp/summary.csv").is_file());
    let table = read(&cli.path("results/tiny_exp/tables/block2.md"));
    // Rows by short name (the kind and what varies within it), the unit from dataset.yaml,
    // MAPE in percent; summary.csv names each run.
    assert!(
        table.contains("| lasso alpha=0.01 |")
            && table.contains("| random_forest |")
            && table.contains("tiny R²")
            && table.contains("tiny MAPE % |")
            && table.contains("RMSE and MAE in ln(t CO2 / year)."),
        "{table}"
    );
    let summary = read(&cli.path("results/tiny_exp/summary.csv"));
    assert!(
        summary.starts_with("run_id,name,dataset,model,")
            && summary.contains(",lasso alpha=0.1 tiny block2 s1,tiny,lasso alpha=0.1,"),
        "{summary}"
    );
    assert!(table.contains("n = 2 runs per cell"), "{table}");

    // A rerun skips every finished job and touches none of them.
    let done_before = std::fs::metadata(dirs[0].join("DONE"))
        .unwrap()
        .modified()
        .unwrap();
    let rerun = cli.run(&["run", "exp.yaml"]);
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert!(rerun.stderr.contains("nothing to run"), "{}", rerun.stderr);
    assert_eq!(
        std::fs::metadata(dirs[0].join("DONE"))
            .unwrap()
            .modified()
            .unwrap(),
        done_before
    );
    assert!(cli
        .run(&["plan", "exp.yaml"])
        .stdout
        .contains("12 jobs, 12 done, 0 to run"));

    // Same seed, same numbers: --force reruns everything and reproduces the metrics.
    let metrics_before = read(&dirs[5].join("metrics.json"));
    let forced = cli.run(&["run", "exp.yaml", "--force"]);
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    let strip_time = |s: &str| {
        s.lines()
            .filter(|l| !l.contains("fit_seconds"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        strip_time(&read(&dirs[5].join("metrics.json"))),
        strip_time(&metrics_before)
    );

    // The report rebuilds from the run directories, given the experiment or its directory.
    std::fs::remove_dir_all(cli.path("results/tiny_exp/tables")).unwrap();
    let rep = cli.run(&["report", "results/tiny_exp"]);
    assert_eq!(rep.code, 0, "{}", rep.stderr);
    assert!(rep.stdout.contains("split `random`"), "{}", rep.stdout);
    assert!(cli.path("results/tiny_exp/tables/random.csv").is_file());
    assert_eq!(cli.run(&["report", "exp.yaml"]).code, 0);
}

#[test]
fn an_interrupted_job_is_redone_and_a_changed_config_gets_its_own_run() {
    let cli = Cli::in_temp_dir();
    cli.write("exp.yaml", EXPERIMENT);
    assert_eq!(cli.run(&["run", "exp.yaml"]).code, 0);
    let dirs = run_dirs(&cli);

    // A job killed before it finished leaves no DONE marker (and a hidden temp dir).
    std::fs::remove_file(dirs[3].join("DONE")).unwrap();
    std::fs::create_dir_all(cli.path(&format!(
        "results/tiny_exp/.tmp-{}-99999",
        dirs[3].file_name().unwrap().to_string_lossy()
    )))
    .unwrap();
    let plan = cli.run(&["plan", "exp.yaml"]);
    assert!(plan.stdout.contains("failed"), "{}", plan.stdout);
    let run = cli.run(&["run", "exp.yaml"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("1 jobs to run, 11 already done"),
        "{}",
        run.stderr
    );
    assert!(dirs[3].join("DONE").is_file());
    let leftovers: Vec<_> = std::fs::read_dir(cli.path("results/tiny_exp"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".tmp")
        })
        .collect();
    assert!(leftovers.is_empty());

    // Changing a hyperparameter makes new run ids; old results stay untouched.
    cli.write(
        "exp.yaml",
        &EXPERIMENT.replace("n_trees: 10", "n_trees: 12"),
    );
    let run = cli.run(&["run", "exp.yaml"]);
    assert!(
        run.stderr.contains("4 jobs to run, 8 already done"),
        "{}",
        run.stderr
    );
    assert_eq!(run_dirs(&cli).len(), 16);
}

#[test]
fn synth_inspect_and_a_dataset_path_experiment() {
    let cli = Cli::in_temp_dir();
    cli.tiny_city("city");
    let r = cli.run(&["inspect", "city"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("tiles          64"), "{}", r.stdout);
    assert!(r.stdout.contains("Moran's I"), "{}", r.stdout);
    let j = cli.run(&["inspect", "city", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(v["tiles"], 64);

    // A dataset given by path, with a predefined split file.
    let mut split = String::from("x,y,split\n");
    for (i, line) in read(&cli.path("city/tiles.csv"))
        .lines()
        .skip(1)
        .enumerate()
    {
        let mut f = line.split(',');
        let (x, y) = (f.next().unwrap(), f.next().unwrap());
        split.push_str(&format!(
            "{x},{y},{}\n",
            ["train", "train", "valid", "test"][i % 4]
        ));
    }
    cli.write("city/splits/fixed.csv", &split);
    cli.write(
        "exp.yaml",
        "name: p\ndatasets: [{path: city}]\nmodels: [{kind: ols}]\nsplits: [{kind: predefined, file: fixed}]\nseeds: [0]\n",
    );
    let r = cli.run(&["run", "exp.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dir = run_dirs_of(&cli, "results/p");
    let split_csv = read(&dir[0].join("split.csv"));
    assert!(split_csv.lines().skip(1).all(|l| l.starts_with("tiny,")));
}

/// The run directories of an experiment, sorted (so indices are stable between calls).
fn run_dirs_of(cli: &Cli, rel: &str) -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(cli.path(rel))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.is_dir()
                && !["tables", "figures", "_hparams"]
                    .contains(&p.file_name().unwrap().to_str().unwrap())
        })
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn every_subcommand_explains_itself() {
    let cli = Cli::in_temp_dir();
    for sub in [
        "run", "plan", "report", "synth", "inspect", "predict", "compare", "export",
    ] {
        let r = cli.run(&[sub, "--help"]);
        assert_eq!(r.code, 0, "{sub}: {}", r.stderr);
        assert!(
            r.stdout.contains("Usage: opencarbon"),
            "{sub}: {}",
            r.stdout
        );
    }
    let r = cli.run(&["frobnicate"]);
    assert_eq!(r.code, 2);
}

/// experiments/paper/*.yaml are valid experiments once the real cities exist: stand-in
/// datasets under the names they expect.
#[test]
fn the_paper_experiments_validate_against_stand_in_cities() {
    let cli = Cli::in_temp_dir();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["experiments/paper", "configs/cities", "configs/models"] {
        std::fs::create_dir_all(cli.path(dir)).unwrap();
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), cli.path(dir).join(e.file_name())).unwrap();
        }
    }
    for city in [
        "london",
        "beijing",
        "yinchuan",
        "west_midlands",
        "south_yorkshire",
        "manchester",
    ] {
        let dir = format!("data/{city}");
        cli.tiny_city(&dir);
        let meta = cli.path(&format!("{dir}/dataset.yaml"));
        let text = read(&meta).replace("name: tiny", &format!("name: {city}"));
        std::fs::write(&meta, text).unwrap();
        // The published split files the paper experiments name.
        let split = match city {
            "beijing" => Some("fengtai"),
            "yinchuan" => Some("paper"),
            _ => None,
        };
        if let Some(name) = split {
            let tiles = read(&cli.path(&format!("{dir}/tiles.csv")));
            let mut csv = String::from("x,y,split\n");
            for (i, l) in tiles.lines().skip(1).enumerate() {
                let c: Vec<&str> = l.split(',').collect();
                let part = ["train", "train", "train", "valid", "test"][i % 5];
                csv.push_str(&format!("{},{},{part}\n", c[0], c[1]));
            }
            cli.write(&format!("{dir}/splits/{name}.csv"), &csv);
        }
    }
    for (file, jobs) in [
        ("experiments/paper/main.yaml", 2 * 3 * 7),
        ("experiments/paper/ablation.yaml", 3 * (4 + 1 + 2)),
        ("experiments/paper/transfer.yaml", 6 * 3),
    ] {
        let r = cli.run(&["plan", file, "--json"]);
        assert_eq!(r.code, 0, "{file}: {}", r.stderr);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(v["jobs"].as_array().unwrap().len(), jobs, "{file}");
    }
}

#[test]
fn quiet_and_verbose_control_what_stderr_shows() {
    let cli = Cli::in_temp_dir();
    cli.write(
        "exp.yaml",
        "name: v\ndatasets: [{preset: tiny}]\nmodels:\n  - {kind: mlp, max_epochs: 60}\nsplits: [{kind: random}]\nseeds: [0]\n",
    );
    let quiet = cli.run(&["-q", "run", "exp.yaml"]);
    assert_eq!(quiet.code, 0, "{}", quiet.stderr);
    // Quiet leaves warnings only: here at most the one a test binary built from a tree with
    // uncommitted changes earns (its runs' build is dirty).
    let other: Vec<&str> = quiet
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("uncommitted changes"))
        .collect();
    assert!(other.is_empty(), "{}", quiet.stderr);
    let verbose = cli.run(&["run", "exp.yaml", "--force", "-v"]);
    assert_eq!(verbose.code, 0, "{}", verbose.stderr);
    assert!(verbose.stderr.contains("epoch   50:"), "{}", verbose.stderr);
    let normal = cli.run(&["run", "exp.yaml", "--force"]);
    assert!(normal.stderr.contains("[1/1]") && !normal.stderr.contains("epoch   50:"));
}

/// The model added through the "one file plus one registration line" path runs end to end.
#[test]
fn ridge_runs_from_yaml() {
    let cli = Cli::in_temp_dir();
    cli.write(
        "exp.yaml",
        "name: r\ndatasets: [{preset: tiny}]\nmodels: [{kind: ridge, alpha: [0.1, 10.0]}]\nsplits: [{kind: random}]\nseeds: [0]\n",
    );
    let r = cli.run(&["run", "exp.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("ridge(a=10)"), "{}", r.stderr);
    let dirs = run_dirs_of(&cli, "results/r");
    assert_eq!(dirs.len(), 2);
    let model: serde_json::Value =
        serde_json::from_str(&read(&dirs[0].join("model.json"))).unwrap();
    assert!(
        model["coefficients"]
            .as_object()
            .is_some_and(|c| !c.is_empty()),
        "{model}"
    );
    cli.write(
        "bad.yaml",
        &read(&cli.path("exp.yaml")).replace("[0.1, 10.0]", "0"),
    );
    let r = cli.run(&["plan", "bad.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("models[0].alpha: is 0, expected a number > 0"),
        "{}",
        r.stderr
    );
}
