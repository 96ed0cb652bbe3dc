//! End-to-end tests: the real `opencarbon` binary on tiny generated cities, each test in its
//! own temporary working directory.

mod bad_input;
mod faults;
mod import;
mod latents;
mod neural;
mod pretrained;
mod resume;
mod scale;
mod tracking;
mod workflow;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Cli {
    pub dir: tempfile::TempDir,
}

pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// The same output without the progress lines a run prints before it fails.
    pub fn without_progress(&self) -> Ran {
        Ran {
            code: self.code,
            stdout: self.stdout.clone(),
            stderr: self
                .stderr
                .lines()
                .filter(|l| l.starts_with("error: "))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    pub fn from(o: Output) -> Ran {
        Ran {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Cli {
    pub fn in_temp_dir() -> Cli {
        Cli {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn run(&self, args: &[&str]) -> Ran {
        Ran::from(
            Command::new(env!("CARGO_BIN_EXE_opencarbon"))
                .args(args)
                .current_dir(self.dir.path())
                .output()
                .unwrap(),
        )
    }

    /// `run` with extra environment variables (e.g. the fault injection of `track::fault`).
    pub fn run_env(&self, env: &[(&str, &str)], args: &[&str]) -> Ran {
        Ran::from(
            Command::new(env!("CARGO_BIN_EXE_opencarbon"))
                .args(args)
                .envs(env.iter().copied())
                .current_dir(self.dir.path())
                .output()
                .unwrap(),
        )
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// The run ids of an experiment's plan (`plan --json`), in plan order.
    pub fn plan_run_ids(&self, experiment: &str) -> Vec<String> {
        let r = self.run(&["plan", experiment, "--json"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        v["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["run_id"].as_str().unwrap().to_string())
            .collect()
    }

    /// A tiny synthetic city as a dataset directory `rel`.
    pub fn tiny_city(&self, rel: &str) {
        let r = self.run(&["synth", "tiny", rel, "--seed", "3"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
}

/// Names of the entries of `dir` that start with `prefix`.
pub fn names_starting_with(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}
