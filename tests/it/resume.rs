//! A training killed with SIGKILL continues from its resume checkpoint on the next `run` and
//! ends bit for bit where an uninterrupted run ends.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{names_starting_with, read, Cli};

/// An OpenCarbon job long enough to be killed half-way, with every piece of state a resume
/// must carry: moving average, augmentation's random stream, random batches' order.
fn experiment(name: &str) -> String {
    format!(
        "name: {name}\nimage_size: 32\npoi_raster_size: 32\ndatasets: [{{preset: tiny}}]\nmodels:\n  - kind: opencarbon\n    embedding_dim: 8\n    image_widths: [8]\n    max_epochs: 40\n    valid_every: 2\n    min_epochs: 40\n    batch_size: 16\n    contrastive_epoch: 2\n    ema: 0.9\n    augment: true\n    schedule: cosine\n    warmup_epochs: 2\nsplits: [{{kind: random}}]\nseeds: [0]\n"
    )
}

fn finished_run(cli: &Cli, experiment: &str) -> std::path::PathBuf {
    std::fs::read_dir(cli.path(&format!("results/{experiment}")))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("DONE").is_file())
        .unwrap()
}

/// Start `opencarbon args` and SIGKILL it as soon as the first resume checkpoint exists under
/// `results`; that checkpoint's path.
fn kill_at_first_checkpoint(
    cli: &Cli,
    args: &[&str],
    results: &std::path::Path,
) -> std::path::PathBuf {
    let mut child = Command::new(env!("CARGO_BIN_EXE_opencarbon"))
        .args(args)
        .current_dir(cli.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let checkpoint = loop {
        let found = std::fs::read_dir(results).ok().and_then(|d| {
            d.flatten()
                .map(|e| e.path().join("state.safetensors"))
                .find(|p| p.is_file())
        });
        if let Some(p) = found {
            break p;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its first checkpoint"
        );
        assert!(started.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(2));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    checkpoint
}

#[test]
fn a_killed_training_resumes_and_ends_as_an_uninterrupted_one() {
    let cli = Cli::in_temp_dir();
    cli.write("whole.yaml", &experiment("whole"));
    cli.write("killed.yaml", &experiment("killed"));
    let r = cli.run(&["run", "whole.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    let results = cli.path("results/killed");
    let checkpoint = kill_at_first_checkpoint(&cli, &["-q", "run", "killed.yaml"], &results);
    assert!(checkpoint.is_file());
    assert!(
        std::fs::read_dir(&results)
            .unwrap()
            .all(|e| !e.unwrap().path().join("DONE").exists()),
        "the killed run must not have finished"
    );

    let r = cli.run(&["run", "killed.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (whole, killed) = (finished_run(&cli, "whole"), finished_run(&cli, "killed"));
    let log = read(&killed.join("run.log"));
    assert!(log.contains("resumed at epoch"), "{log}");
    for file in ["predictions.csv", "best.safetensors", "embeddings.csv"] {
        assert!(
            std::fs::read(whole.join(file)).unwrap() == std::fs::read(killed.join(file)).unwrap(),
            "{file} differs after the resume"
        );
    }
    let metrics = |dir: &std::path::Path| -> serde_json::Value {
        let mut m: serde_json::Value =
            serde_json::from_str(&read(&dir.join("metrics.json"))).unwrap();
        m.as_object_mut().unwrap().remove("fit_seconds");
        m
    };
    assert_eq!(metrics(&whole), metrics(&killed));
    // The finished run took its checkpoint away and kept the killed attempt's events, which
    // the resumed attempt's SessionLog START (at the resumed step) supersedes in TensorBoard.
    assert!(
        !checkpoint.exists(),
        "the resume checkpoint outlived the run"
    );
    let event_files = names_starting_with(&killed, "events.out.tfevents.").len();
    assert_eq!(event_files, 2);
    let leftovers = names_starting_with(&results, ".");
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A killed `run --force` of the finished job leaves a checkpoint that nothing would
    // continue (issue 26 item 9): the next plain run removes it and keeps the finished run.
    let again = kill_at_first_checkpoint(&cli, &["-q", "run", "killed.yaml", "--force"], &results);
    assert!(again.is_file() && killed.join("DONE").is_file());
    let r = cli.run(&["run", "killed.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let leftovers = names_starting_with(&results, ".");
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(finished_run(&cli, "killed"), killed);
}

/// A pretraining stage killed with SIGKILL continues from its checkpoint on the next `run`
/// and writes the same encoder, byte for byte, as an uninterrupted stage.
#[test]
fn a_killed_pretraining_stage_resumes_to_the_same_encoder() {
    let cli = Cli::in_temp_dir();
    let experiment = |name: &str| {
        format!(
            "name: {name}\ncache_dir: cache_{name}\nimage_size: 32\npoi_raster_size: 32\ndatasets: [{{preset: tiny}}]\npretrain:\n  - {{name: c, method: simclr, image_widths: [4, 8], image_blocks: 1, epochs: 60, batch_size: 16, unlabelled: [{{preset: tiny, seed: 100}}]}}\nmodels: [{{kind: linear_probe, image_encoder: resnet, image_widths: [4, 8], image_blocks: 1, image_weights: \"pretrain:c\"}}]\nsplits: [{{kind: random}}]\nseeds: [0]\n"
        )
    };
    cli.write("whole.yaml", &experiment("whole"));
    cli.write("killed.yaml", &experiment("killed"));
    let r = cli.run(&["run", "whole.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let stages = cli.path("cache_killed/pretrain");
    let checkpoint = kill_at_first_checkpoint(&cli, &["-q", "run", "killed.yaml"], &stages);
    assert!(checkpoint.is_file());
    let r = cli.run(&["run", "killed.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let stage = |cache: &str| -> std::path::PathBuf {
        std::fs::read_dir(cli.path(&format!("{cache}/pretrain")))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.join("DONE").is_file())
            .unwrap()
    };
    let (whole, killed) = (stage("cache_whole"), stage("cache_killed"));
    assert_eq!(
        whole.file_name(),
        killed.file_name(),
        "the same stage, the same name"
    );
    let log = read(&killed.join("run.log"));
    assert!(log.contains("resumed at epoch"), "{log}");
    assert!(
        std::fs::read(whole.join("encoder.safetensors")).unwrap()
            == std::fs::read(killed.join("encoder.safetensors")).unwrap(),
        "the resumed stage's encoder differs"
    );
    assert!(!checkpoint.exists(), "the checkpoint outlived the stage");
}
