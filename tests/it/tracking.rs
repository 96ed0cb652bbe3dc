//! Tracking through the CLI: `compare` of two result sets, the records of a run's build,
//! and `export mlflow`.

use super::{read, Cli};

const EXPERIMENT: &str = "name: t\ndatasets: [{preset: tiny}]\nmodels: [{kind: lasso, alpha: [0.01, 0.1]}, {kind: random_forest, n_trees: 8}]\nsplits: [{kind: random}]\nseeds: [0, 1]\n";

/// Two fresh runs of one experiment are identical; a changed hyperparameter's runs do not pair
/// with the old ones and count as missing; labels do not matter, hyperparameters do.
#[test]
fn compare_pairs_runs_by_what_they_are() {
    let cli = Cli::in_temp_dir();
    cli.write("a.yaml", EXPERIMENT);
    cli.write("b.yaml", &EXPERIMENT.replace("name: t", "name: u"));
    assert_eq!(cli.run(&["run", "a.yaml"]).code, 0);
    assert_eq!(cli.run(&["run", "b.yaml"]).code, 0);
    let r = cli.run(&[
        "compare",
        "results/t",
        "results/u/summary.csv",
        "--require-identical",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("| tiny | random | lasso alpha=0.01 | 0."),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("+0.0000 | 0.0000 | 2 |"), "{}", r.stdout);

    // 12 trees instead of 8: that cell of A is missing from B.
    cli.write(
        "c.yaml",
        &EXPERIMENT
            .replace("name: t", "name: v")
            .replace("n_trees: 8", "n_trees: 12"),
    );
    assert_eq!(cli.run(&["run", "c.yaml"]).code, 0);
    let r = cli.run(&["compare", "results/t", "results/v", "--fail-on-regression"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("1 of 4 cells regressed or are missing"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("random_forest"), "{}", r.stderr);
    // RMSE: lower is better, said in the header.
    let r = cli.run(&["compare", "results/t", "results/u", "--metric", "test_rmse"]);
    assert!(r.stdout.contains("lower is better"), "{}", r.stdout);
    let r = cli.run(&["compare", "results/t", "results/u", "--metric", "nope"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

/// Every run records the build that made it, summary.csv carries the build and every
/// hyperparameter, and `--strict` refuses runs of several commits.
#[test]
fn runs_record_their_build_and_strict_reports_refuse_mixed_builds() {
    let cli = Cli::in_temp_dir();
    cli.write("a.yaml", EXPERIMENT);
    assert_eq!(cli.run(&["run", "a.yaml"]).code, 0);
    let dir = std::fs::read_dir(cli.path("results/t"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("DONE").is_file())
        .unwrap();
    let manifest: serde_json::Value =
        serde_json::from_str(&read(&dir.join("manifest.json"))).unwrap();
    assert_eq!(manifest["record_version"], 2);
    assert!(manifest["build"]["rustc"]
        .as_str()
        .unwrap()
        .starts_with("rustc "));
    assert!(manifest["threads"].as_u64().unwrap() >= 1);
    let dirty = manifest["git_dirty"].as_bool();
    assert_eq!(dir.join("diff.patch").is_file(), dirty == Some(true));
    let summary = read(&cli.path("results/t/summary.csv"));
    let header = summary.lines().next().unwrap();
    for col in [
        "commit",
        "dirty",
        "param.kind",
        "param.model.alpha",
        "param.model.n_trees",
        "param.seed",
    ] {
        assert!(header.split(',').any(|c| c == col), "{col} not in {header}");
    }

    // A run made by another commit: the report warns, and refuses with --strict.
    let mut other: serde_json::Value = manifest.clone();
    other["git_commit"] = "0123456789abcdef0123456789abcdef01234567".into();
    std::fs::write(dir.join("manifest.json"), other.to_string()).unwrap();
    let r = cli.run(&["report", "results/t"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("2 commits"), "{}", r.stderr);
    let r = cli.run(&["report", "results/t", "--strict"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--strict"), "{}", r.stderr);
}

/// `export mlflow` writes one MLflow run per finished run (MLflow's own reader is
/// scripts/check_mlflow.py, run by CI); a second export replaces, never duplicates.
#[test]
fn export_mlflow_writes_the_file_store_layout() {
    let cli = Cli::in_temp_dir();
    cli.write("a.yaml", EXPERIMENT);
    assert_eq!(cli.run(&["run", "a.yaml"]).code, 0);
    for _ in 0..2 {
        let r = cli.run(&["export", "mlflow", "a.yaml", "--out", "mlruns"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.stdout.contains("exported 6 runs"), "{}", r.stdout);
    }
    let exp = cli.path("mlruns/1");
    assert!(read(&exp.join("meta.yaml")).contains("name: \"t\""));
    let runs: Vec<_> = std::fs::read_dir(&exp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("meta.yaml").is_file())
        .collect();
    assert_eq!(runs.len(), 6);
    for run in &runs {
        for sub in ["params", "metrics", "tags", "artifacts"] {
            assert!(run.join(sub).is_dir(), "{} lacks {sub}", run.display());
        }
        let meta = read(&run.join("meta.yaml"));
        assert!(meta.contains("status: 3"), "{meta}");
        let line = read(&run.join("metrics/test_r2"));
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.len(), 3, "{line}");
        assert_eq!(fields[2], "0");
        // Namespaced by model kind: a LASSO alpha never shares a column with another model's.
        let kind = read(&run.join("params/kind"));
        assert!(
            run.join(format!("params/{kind}.alpha")).is_file()
                || run.join(format!("params/{kind}.n_trees")).is_file(),
            "{kind}"
        );
        assert!(!run.join("params/model.alpha").exists());
        assert!(run.join("artifacts/predictions.csv").is_file());
        assert!(
            std::fs::read_dir(run.join("artifacts/tensorboard"))
                .unwrap()
                .count()
                > 0
        );
    }
    assert_eq!(
        read(&exp.join("tags/mlflow.experimentKind")),
        "custom_model_development"
    );
    // MLflow's run names, and the folders of the TensorBoard view by name that report wrote,
    // are the same six short names, each linking to its run's event file.
    let mut mlflow_names: Vec<String> = runs
        .iter()
        .map(|r| read(&r.join("tags/mlflow.runName")))
        .collect();
    mlflow_names.sort();
    let view = cli.path("results/tensorboard.runs/t");
    let mut view_names: Vec<String> = std::fs::read_dir(&view)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "_hparams")
        .collect();
    view_names.sort();
    assert_eq!(mlflow_names, view_names);
    for name in &view_names {
        assert!(name.ends_with(" s0") || name.ends_with(" s1"), "{name}");
        let events: Vec<_> = std::fs::read_dir(view.join(name))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(events.len(), 1, "{name}");
        assert!(
            std::fs::metadata(&events[0]).unwrap().is_file(),
            "{name}: dangling link"
        );
    }
}

/// `report --rows … --cols … --over seed` writes the pivot table as Markdown, CSV and LaTeX;
/// an axis that is no hyperparameter is refused before any table is rewritten.
#[test]
fn report_writes_pivot_tables() {
    let cli = Cli::in_temp_dir();
    cli.write("a.yaml", EXPERIMENT);
    assert_eq!(cli.run(&["run", "a.yaml"]).code, 0);
    let r = cli.run(&[
        "report",
        "a.yaml",
        "--rows",
        "kind,model.alpha",
        "--cols",
        "dataset,split",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("| kind | model.alpha | tiny / random |"),
        "{}",
        r.stdout
    );
    // n_trees belongs to the random forest, which `kind` already separates: no note.
    assert!(!r.stdout.contains("kept apart"), "{}", r.stdout);
    let tex = read(&cli.path("results/t/tables/pivot_test_r2.tex"));
    assert!(
        tex.contains("\\toprule") && tex.contains("\\mathbf{"),
        "{tex}"
    );
    assert!(read(&cli.path("results/t/tables/pivot_test_r2.csv"))
        .starts_with("kind,model.alpha,dataset,split,mean,std,n\n"));
    // Without the kind, LASSO's α values would share a row: they are kept apart, with a note.
    let r = cli.run(&["report", "a.yaml", "--rows", "kind", "--cols", "dataset"]);
    assert!(
        r.stdout.contains("Runs also differ in model.alpha"),
        "{}",
        r.stdout
    );
    let r = cli.run(&["report", "a.yaml", "--rows", "colour"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("`colour` is no hyperparameter"),
        "{}",
        r.stderr
    );
}

/// A seeded sampler expands to n configurations; raising n keeps the earlier ones' run ids.
#[test]
fn raising_a_samplers_n_keeps_earlier_run_ids() {
    let cli = Cli::in_temp_dir();
    let ids = |n: usize| -> Vec<String> {
        cli.write(
            "s.yaml",
            &format!("name: s\ndatasets: [{{preset: tiny}}]\nmodels: [{{kind: lasso, alpha: {{log_uniform: [1.0e-4, 1.0e-1], n: {n}, seed: 3}}}}]\nsplits: [{{kind: random}}]\nseeds: [0]\n"),
        );
        cli.plan_run_ids("s.yaml")
    };
    let (three, five) = (ids(3), ids(5));
    assert_eq!(five.len(), 5);
    assert_eq!(three[..], five[..3]);
}

/// `OPENCARBON_THREADS` changes how many threads run, never a result: OpenCarbon (parallel
/// convolution chunks and dfdx GEMMs), the forest and boosting give identical runs at 1 and
/// 2 threads. A value that is not a whole number >= 1 is refused with exit 2.
#[test]
fn the_thread_count_changes_no_result() {
    let cli = Cli::in_temp_dir();
    let experiment = "name: t1\nimage_size: 32\npoi_raster_size: 32\ndatasets: [{preset: tiny}]\nmodels:\n  - {kind: opencarbon, embedding_dim: 8, image_widths: [8], max_epochs: 2, valid_every: 1, min_epochs: 2, batch_size: 32, contrastive_epoch: 0}\n  - {kind: random_forest, n_trees: 8}\n  - {kind: gbdt, n_trees: 20}\nsplits: [{kind: random}]\nseeds: [0]\n";
    cli.write("t1.yaml", experiment);
    cli.write("t2.yaml", &experiment.replace("name: t1", "name: t2"));
    for (threads, file) in [("1", "t1.yaml"), ("2", "t2.yaml")] {
        let r = cli.run_env(&[("OPENCARBON_THREADS", threads)], &["run", file]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let manifest = read(&cli.path("results/t1/summary.csv"));
    assert!(manifest.contains("opencarbon"), "{manifest}");
    let r = cli.run(&["compare", "results/t1", "results/t2", "--require-identical"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    for bad in ["0", "two", ""] {
        let r = cli.run_env(&[("OPENCARBON_THREADS", bad)], &["plan", "t1.yaml"]);
        assert_eq!(r.code, 2, "{bad}: {}", r.stderr);
        assert!(
            r.stderr.contains(&format!("OPENCARBON_THREADS is `{bad}`")),
            "{}",
            r.stderr
        );
    }
}
