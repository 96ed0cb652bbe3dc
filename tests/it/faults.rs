//! The run store under faults: `run`, `run --force` and `report` stopped at each of their
//! file operations in turn (`OPENCARBON_FAULT_AFTER=k`, see `track::fault`), stale locks,
//! killed city generations, and array tasks whose job another process runs.

use std::path::Path;

use super::{read, Cli, Ran};

const EXPERIMENT: &str = "name: f\ndatasets: [{preset: tiny}]\nmodels: [{kind: lasso, alpha: 0.1}]\nsplits: [{kind: random}]\nseeds: [0, 1]\n";

fn fault_at(cli: &Cli, k: usize, args: &[&str]) -> Ran {
    cli.run_env(&[("OPENCARBON_FAULT_AFTER", &k.to_string())], args)
}

/// Every file under `dir`, recursively, as paths relative to it.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The run ids in summary.csv (its first column), with repetitions.
fn summary_run_ids(cli: &Cli) -> Vec<String> {
    read(&cli.path("results/f/summary.csv"))
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect()
}

/// What must hold right after a kill, whatever point it hit: `report` either succeeds or says
/// which jobs are missing; no run is counted twice; no figure is a broken file.
fn check_after_kill(cli: &Cli, k: usize) {
    let r = cli.run(&["report", "exp.yaml"]);
    let ok = r.code == 0
        || (r.code == 1 && r.stderr.contains("the experiment is incomplete"))
        || (r.code == 2 && r.stderr.contains("holds no finished runs"));
    assert!(ok, "fault {k}: report: {}", r.stderr);
    if cli.path("results/f/summary.csv").is_file() {
        let mut ids = summary_run_ids(cli);
        let n = ids.len();
        ids.dedup();
        assert!(n <= 2 && ids.len() == n, "fault {k}: summary {ids:?}");
    }
    for f in tree(&cli.path("results/f/figures")) {
        let bytes = std::fs::read(cli.path("results/f/figures").join(&f)).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG"),
            "fault {k}: figures/{f} is not a PNG"
        );
    }
}

/// What must hold after a clean `run` follows a kill: both runs, each once, with the given
/// test metrics, and nothing left of the killed attempt.
fn check_recovered(cli: &Cli, k: usize, expected: &[String]) {
    let r = cli.run(&["run", "exp.yaml"]);
    assert_eq!(r.code, 0, "fault {k}: rerun: {}", r.stderr);
    let r = cli.run(&["report", "exp.yaml"]);
    assert_eq!(r.code, 0, "fault {k}: report: {}", r.stderr);
    assert!(
        read(&cli.path("results/f/report.md")).contains("2 finished runs"),
        "fault {k}"
    );
    assert_eq!(metrics_of_runs(cli), expected, "fault {k}: results changed");
    let left: Vec<String> = tree(&cli.path("results/f"))
        .into_iter()
        .filter(|p| p.starts_with('.') || p.ends_with(".lock") || p.contains(".tmp-"))
        .collect();
    assert!(left.is_empty(), "fault {k}: leftovers {left:?}");
}

/// metrics.json of every run directory, in name order.
fn metrics_of_runs(cli: &Cli) -> Vec<String> {
    let mut dirs: Vec<_> = std::fs::read_dir(cli.path("results/f"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.join("DONE").is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.')
        })
        .collect();
    dirs.sort();
    dirs.iter()
        .map(|d| {
            let m: serde_json::Value =
                serde_json::from_str(&read(&d.join("metrics.json"))).unwrap();
            m["test"].to_string()
        })
        .collect()
}

/// Kill `run` (from nothing, then with `--force` over finished results) at every file
/// operation of the run store and the report in turn. Nothing is lost, nothing counted
/// twice, and the next plain `run` completes the experiment with the same numbers.
#[test]
fn a_kill_at_any_file_operation_loses_nothing_and_counts_nothing_twice() {
    let cli = Cli::in_temp_dir();
    cli.write("exp.yaml", EXPERIMENT);
    // The city is generated once, outside the enumeration (its own test is below).
    assert_eq!(cli.run(&["run", "exp.yaml"]).code, 0);
    let expected = metrics_of_runs(&cli);
    assert_eq!(expected.len(), 2);

    for force in [false, true] {
        let mut k = 1;
        loop {
            if !force {
                std::fs::remove_dir_all(cli.path("results")).unwrap();
            }
            let args: &[&str] = if force {
                &["run", "exp.yaml", "--force"]
            } else {
                &["run", "exp.yaml"]
            };
            let r = fault_at(&cli, k, args);
            if r.code == 0 {
                // The run ended before its k-th fault point: every point has been tried.
                assert!(k > 20, "only {k} fault points (force {force})");
                break;
            }
            assert!(
                r.stderr.contains("fault injected"),
                "fault {k}: {}",
                r.stderr
            );
            check_after_kill(&cli, k);
            check_recovered(&cli, k, &expected);
            k += 1;
        }
    }
}

/// A disk that fills up at any write of `run` (then `run --force`) and stays full (issue 26
/// item 6): exit 1 naming ENOSPC, never a panic; a second run on the still-full disk fails
/// the same way and leaves no lock (an empty lock once read as "being run by pid 0"); once
/// there is space again, the next plain `run` completes the experiment with the same numbers.
#[test]
fn a_full_disk_at_any_write_fails_cleanly_and_loses_nothing() {
    let cli = Cli::in_temp_dir();
    cli.write("exp.yaml", EXPERIMENT);
    assert_eq!(cli.run(&["run", "exp.yaml"]).code, 0);
    let expected = metrics_of_runs(&cli);
    let full_from = |k: usize, args: &[&str]| {
        cli.run_env(&[("OPENCARBON_FAULT_ENOSPC_AFTER", &k.to_string())], args)
    };
    for force in [false, true] {
        let args: &[&str] = if force {
            &["run", "exp.yaml", "--force"]
        } else {
            &["run", "exp.yaml"]
        };
        let mut k = 1;
        loop {
            if !force {
                std::fs::remove_dir_all(cli.path("results")).unwrap();
            }
            let r = full_from(k, args);
            if r.code == 0 {
                assert!(k > 20, "only {k} writes (force {force})");
                break;
            }
            for (what, r) in [("full", r), ("still full", full_from(1, args))] {
                assert_eq!(r.code, 1, "write {k}, {what}: {}", r.stderr);
                assert!(
                    r.stderr.contains("No space left on device") && !r.stderr.contains("panicked"),
                    "write {k}, {what}: {}",
                    r.stderr
                );
                let locks: Vec<String> = tree(&cli.path("results/f"))
                    .into_iter()
                    .filter(|p| p.contains(".lock"))
                    .collect();
                assert!(locks.is_empty(), "write {k}, {what}: {locks:?}");
            }
            check_recovered(&cli, k, &expected);
            k += 1;
        }
    }
}

/// `run` returns only when every job is done: a job that another live process holds is
/// waited for, then found finished or run here (it exited 0 with the job undone); a live
/// pid that started at another time than the lock records is not the holder (a reused
/// pid), so its job is run at once and `plan` says why the lock is stale (issue 26 item 7).
#[test]
fn run_waits_for_held_jobs_and_a_reused_pid_holds_nothing() {
    let cli = Cli::in_temp_dir();
    cli.write("exp.yaml", EXPERIMENT);
    let ids = run_ids(&cli);
    let r = run_beside_a_live_holder(&cli, &ids[0], &["run", "exp.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("waiting for 1 jobs"), "{}", r.stderr);
    for id in &ids {
        assert!(
            cli.path(&format!("results/f/{id}/DONE")).is_file(),
            "{}",
            r.stderr
        );
    }

    let Ok(boot) = std::fs::read_to_string("/proc/sys/kernel/random/boot_id") else {
        return; // not Linux: pids are not checked
    };
    std::fs::remove_dir_all(cli.path(&format!("results/f/{}", ids[1]))).unwrap();
    // pid 1 is alive, but it started at tick 0 or so, not at this made-up tick.
    cli.write(
        &format!("results/f/{}.lock", ids[1]),
        &format!(
            "1 {} 2026-01-01T00:00:00Z {} 987654321\n",
            host_name(),
            boot.trim()
        ),
    );
    let plan = cli.run(&["plan", "exp.yaml"]);
    assert!(
        plan.stdout.contains("stale (pid 1 is now another process)"),
        "{}",
        plan.stdout
    );
    let r = cli.run(&["run", "exp.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("waiting"), "{}", r.stderr);
    assert!(cli.path(&format!("results/f/{}/DONE", ids[1])).is_file());
}

/// A city generation killed part-way leaves a temp directory in the cache; the next run that
/// needs the city removes it.
#[test]
fn a_killed_city_generation_leaves_nothing_behind() {
    let cli = Cli::in_temp_dir();
    cli.write("exp.yaml", EXPERIMENT);
    for k in [1, 40, 100] {
        let r = fault_at(&cli, k, &["run", "exp.yaml"]);
        assert_ne!(r.code, 0, "fault {k}: {}", r.stderr);
    }
    let temps: Vec<String> = tree(&cli.path(".cache/cities"))
        .into_iter()
        .filter(|p| p.contains(".tmp-"))
        .collect();
    assert!(
        !temps.is_empty(),
        "the kills must have left temp directories"
    );
    let r = cli.run(&["run", "exp.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let left: Vec<String> = std::fs::read_dir(cli.path(".cache/cities"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

fn run_ids(cli: &Cli) -> Vec<String> {
    cli.plan_run_ids("exp.yaml")
}

/// Run `opencarbon args` while job `run_id` is held by a live process (a `sleep 3` whose
/// pid the lock records, old style: no boot id or start time), reaping the holder when it
/// exits, which makes its lock stale (a zombie still has a pid).
fn run_beside_a_live_holder(cli: &Cli, run_id: &str, args: &[&str]) -> Ran {
    let mut holder = std::process::Command::new("sleep")
        .arg("3")
        .spawn()
        .unwrap();
    cli.write(
        &format!("results/f/{run_id}.lock"),
        &format!("{} {} 2026-01-01T00:00:00Z\n", holder.id(), host_name()),
    );
    let (dir, args): (_, Vec<String>) = (
        cli.dir.path().to_path_buf(),
        args.iter().map(|a| a.to_string()).collect(),
    );
    let task = std::thread::spawn(move || {
        Ran::from(
            std::process::Command::new(env!("CARGO_BIN_EXE_opencarbon"))
                .args(&args)
                .current_dir(dir)
                .output()
                .unwrap(),
        )
    });
    holder.wait().unwrap();
    task.join().unwrap()
}

/// A lock whose process is gone is "stale", and its job counts as missing, not running.
#[test]
fn a_dead_process_lock_is_stale_not_running() {
    let cli = Cli::in_temp_dir();
    cli.write("exp.yaml", EXPERIMENT);
    assert_eq!(cli.run(&["run", "exp.yaml", "--index", "0"]).code, 0);
    let ids = run_ids(&cli);
    // A pid above the kernel's pid_max cannot be alive.
    cli.write(
        &format!("results/f/{}.lock", ids[1]),
        &format!("4194305 {} 2026-01-01T00:00:00Z\n", host_name()),
    );
    let plan = cli.run(&["plan", "exp.yaml"]);
    assert!(
        plan.stdout.contains("stale (pid 4194305 gone)"),
        "{}",
        plan.stdout
    );
    let r = cli.run(&["report", "exp.yaml"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("1 missing") && r.stderr.contains("stale lock, pid 4194305 gone"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("still running"), "{}", r.stderr);
}

/// An array task whose job another live process holds waits for it, so its exit status says
/// whether the job is done.
#[test]
fn an_index_task_waits_for_the_process_that_holds_its_job() {
    let cli = Cli::in_temp_dir();
    cli.write("exp.yaml", EXPERIMENT);
    let ids = run_ids(&cli);
    let r = run_beside_a_live_holder(&cli, &ids[0], &["run", "exp.yaml", "--index", "0"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("waiting for it"), "{}", r.stderr);
    assert!(
        cli.path(&format!("results/f/{}/DONE", ids[0])).is_file(),
        "exit 0 must mean the job is done"
    );
}

/// A failed job is reported before a report that cannot be written, and an experiment whose
/// input check fails writes no result at all.
#[test]
fn failures_are_reported_in_order_and_bad_input_writes_nothing() {
    let cli = Cli::in_temp_dir();
    // 0.1 % of 64 tiles for training: the job fails with "fewer than 2 training tiles".
    cli.write(
        "exp.yaml",
        &EXPERIMENT.replace(
            "splits: [{kind: random}]",
            "splits: [{kind: random}, {kind: random, fractions: [0.001, 0.5, 0.499]}]",
        ),
    );
    assert_eq!(cli.run(&["run", "exp.yaml", "--index", "0"]).code, 0);
    // summary.csv cannot be replaced while a directory holds its name.
    std::fs::create_dir_all(cli.path("results/f/summary.csv")).unwrap();
    let r = cli.run(&["run", "exp.yaml"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let errors: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 2, "{}", r.stderr);
    assert!(errors[0].contains("jobs failed"), "{}", r.stderr);
    assert!(errors[1].contains("summary.csv"), "{}", r.stderr);
    std::fs::remove_dir(cli.path("results/f/summary.csv")).unwrap();

    // A predefined split file that does not exist is found after the datasets are prepared,
    // before any result is written.
    std::fs::remove_file(cli.path("results/f/report.md")).ok();
    cli.write(
        "exp.yaml",
        &EXPERIMENT.replace(
            "splits: [{kind: random}]",
            "splits: [{kind: random}, {kind: predefined, file: nope}]",
        ),
    );
    let r = cli.run(&["run", "exp.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("splits[1].file"), "{}", r.stderr);
    for f in ["summary.csv", "report.md"] {
        assert!(
            !cli.path(&format!("results/f/{f}")).exists(),
            "{f} was written"
        );
    }
}

/// A killed `synth` leaves no half-written dataset where it was asked to write (issue 26,
/// item 3): the next `synth` into the same place succeeds, cleans up the killed runs'
/// temporaries and writes what an uninterrupted one writes.
#[test]
fn a_killed_synth_leaves_no_half_dataset() {
    let cli = Cli::in_temp_dir();
    let mut killed = 0;
    for k in [1, 5, 30, 60] {
        let r = fault_at(&cli, k, &["synth", "tiny", "city", "--seed", "2"]);
        assert_ne!(r.code, 0, "fault {k} was past the last point: {}", r.stderr);
        killed += 1;
        assert!(!cli.path("city").exists(), "fault {k} left city/ behind");
    }
    assert_eq!(killed, 4);
    let temps = |cli: &Cli| -> Vec<String> {
        std::fs::read_dir(cli.path("."))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect()
    };
    assert!(
        !temps(&cli).is_empty(),
        "the kills must have left temporaries"
    );
    let r = cli.run(&["synth", "tiny", "city", "--seed", "2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(temps(&cli).is_empty(), "{:?}", temps(&cli));
    let r = cli.run(&["synth", "tiny", "clean", "--seed", "2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for f in ["dataset.yaml", "tiles.csv", "pois.csv", "latents.csv"] {
        assert_eq!(
            read(&cli.path(&format!("city/{f}"))),
            read(&cli.path(&format!("clean/{f}"))),
            "{f}"
        );
    }
    // A directory that holds something else is refused before any work.
    cli.write("busy/notes.txt", "mine");
    let r = cli.run(&["synth", "tiny", "busy"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("exists and is not empty"), "{}", r.stderr);
}

/// Output into a pipe whose reader stops early ends the program by SIGPIPE, as it ends `cat`,
/// never by a panic (issue 26, item 4: `plan --json big.yaml | head -1` exited 101).
#[test]
fn a_closed_pipe_ends_the_program_without_a_panic() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    let cli = Cli::in_temp_dir();
    // 300 jobs: far more JSON than a pipe's buffer holds.
    let alphas: Vec<String> = (1..=100)
        .map(|k| format!("{}", k as f64 / 1000.0))
        .collect();
    cli.write(
        "big.yaml",
        &format!(
            "name: big\ndatasets: [{{preset: tiny}}]\nmodels: [{{kind: lasso, alpha: [{}]}}]\nsplits: [{{kind: random}}]\nseeds: [0, 1, 2]\n",
            alphas.join(", ")
        ),
    );
    for args in [
        ["plan", "--json", "big.yaml"],
        ["plan", "big.yaml", "--json"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_opencarbon"))
            .args(args)
            .current_dir(cli.path("."))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        // The reader is gone now (dropped with the BufReader).
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!first.is_empty());
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_ne!(out.status.code(), Some(101), "{stderr}");
        assert!(
            out.status.signal() == Some(13) || out.status.success(),
            "{:?}: {stderr}",
            out.status
        );
    }
}

/// The same job listed twice is planned once, with a warning naming it (issue 26, item 2:
/// `alpha: [0.1, 0.10, 1.0e-1]` gave three jobs with one run id, and report counted them as
/// three).
#[test]
fn a_job_listed_twice_is_planned_once() {
    let cli = Cli::in_temp_dir();
    cli.write(
        "dup.yaml",
        "name: dup\ndatasets: [{preset: tiny}]\nmodels: [{kind: ols}, {kind: ols}, {kind: lasso, alpha: [0.1, 0.10, 1.0e-1]}]\nsplits: [{kind: random}]\nseeds: [0, 1]\n",
    );
    let r = cli.run(&["plan", "--json", "dup.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let plan: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let jobs = plan["jobs"].as_array().or(plan.as_array()).unwrap();
    assert_eq!(jobs.len(), 4, "{}", r.stdout);
    let mut ids: Vec<&str> = jobs.iter().map(|j| j["run_id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 4);
    assert_eq!(
        r.stderr.matches("is listed twice").count(),
        6,
        "{}",
        r.stderr
    );
    let r = cli.run(&["run", "dup.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = cli.run(&["report", "dup.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("all 4 jobs are done") || r.stderr.contains("all 4 jobs are done"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
}

/// Report counts the runs of the plan's jobs and nothing else (issue 26, item 1): a copied run
/// directory, and a run of a seed since removed from the experiment, are named and left out
/// (before, "3 finished runs ... all 2 jobs are done", a cell with n = 3).
#[test]
fn report_counts_only_the_plans_runs() {
    let cli = Cli::in_temp_dir();
    cli.write("exp.yaml", EXPERIMENT);
    let r = cli.run(&["run", "exp.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let runs: Vec<String> = std::fs::read_dir(cli.path("results/f"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 10 && n.chars().all(|c| c.is_ascii_hexdigit()))
        .collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    let copy = cli.path("results/f/00000abcde");
    let status = std::process::Command::new("cp")
        .args(["-a"])
        .arg(cli.path(&format!("results/f/{}", runs[0])))
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    let r = cli.run(&["report", "exp.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("2 finished runs"), "{}", r.stdout);
    assert!(r.stderr.contains("00000abcde: not counted"), "{}", r.stderr);
    // The same experiment with one seed fewer: the other seed's run is not its job.
    cli.write(
        "exp.yaml",
        &EXPERIMENT.replace("seeds: [0, 1]", "seeds: [0]"),
    );
    let r = cli.run(&["report", "exp.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("1 finished runs"), "{}", r.stdout);
    assert!(r.stdout.contains("all 1 jobs are done"), "{}", r.stdout);
    assert!(
        r.stderr.contains("not a job of this experiment"),
        "{}",
        r.stderr
    );

    // Without a plan (`report <dir>`), a run counts only if its recorded job hashes to its
    // directory's name: a renamed copy whose manifest and metrics were edited to match, and
    // a run whose config.yaml was edited, are named and left out.
    std::fs::remove_dir_all(&copy).unwrap();
    let forged = cli.path("results/f/00000abcde");
    let status = std::process::Command::new("cp")
        .args(["-a"])
        .arg(cli.path(&format!("results/f/{}", runs[0])))
        .arg(&forged)
        .status()
        .unwrap();
    assert!(status.success());
    for file in ["metrics.json", "manifest.json", "config.yaml"] {
        let p = forged.join(file);
        std::fs::write(&p, read(&p).replace(&runs[0], "00000abcde")).unwrap();
    }
    let edited = cli.path(&format!("results/f/{}/config.yaml", runs[1]));
    std::fs::write(&edited, read(&edited).replace("alpha: 0.1", "alpha: 0.2")).unwrap();
    let r = cli.run(&["report", "results/f"]);
    assert!(
        r.stdout.contains("1 finished runs"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert!(
        r.stderr
            .contains("00000abcde: not counted: its job.json hashes to"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("does not hold the job its job.json"),
        "{}",
        r.stderr
    );
}

/// A target given with a trailing slash (`city/`) is written beside itself, as `city` is:
/// the temporary sibling was once made inside it, and the final rename then failed.
#[test]
fn a_target_with_a_trailing_slash_is_written_whole() {
    let cli = Cli::in_temp_dir();
    let r = cli.run(&["synth", "tiny", "city/", "--seed", "3"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(cli.path("city/dataset.yaml").is_file());
    let inside = super::names_starting_with(&cli.path("city"), ".");
    assert!(inside.is_empty(), "{inside:?}");
    let beside = super::names_starting_with(cli.dir.path(), "city.");
    assert!(beside.is_empty(), "{beside:?}");
}
