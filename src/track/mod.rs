//! Run directories: where a job's results live, written so that an interrupted run leaves
//! nothing half-written behind.
//!
//! A job works in `results/<experiment>/.tmp-<run-id>-<pid>/`; the directory is renamed to
//! `<run-id>/` only when the job ends, with `DONE` written last on success. A killed job leaves
//! only a hidden temporary directory, which the next attempt at the same job removes.

use std::fs;
use std::io::Write;

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

pub mod claim;
pub mod event_file;
pub mod fault;
pub mod mlflow;
pub mod names;
pub mod plot;
pub mod progress;
pub mod provenance;
pub mod records;
pub mod render;
pub mod tensorboard;

use serde::Serialize;

use crate::error::{Error, Result};

/// Write `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// reader never sees a partial file.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let tmp = temp_path(path);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    fault::write_point(&format!("write {name}")).map_err(|e| Error::io(&tmp, e))?;
    {
        let mut f = fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    }
    fault::point(&format!("rename temp -> {name}"));
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// `path` without a trailing `/` (its components joined again).
fn without_trailing_slash(path: &Path) -> PathBuf {
    path.components().collect()
}

/// Refuse `out` as the target of a new directory unless it does not exist or is empty
/// (callers check before long work, `write_dir_atomically` again before writing).
pub fn check_new_dir(out: &Path) -> Result<()> {
    let out = &without_trailing_slash(out);
    let occupied = match fs::read_dir(out) {
        Ok(mut entries) => entries.next().is_some(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(Error::io(out, e)),
    };
    if occupied {
        return Err(Error::Usage(format!(
            "{} exists and is not empty: give a new directory",
            out.display()
        )));
    }
    Ok(())
}

/// Write a new directory `out` with `write` (given the directory to fill) through a
/// temporary sibling renamed at the end, so a killed or failed writer leaves nothing where
/// `out` was asked for (a dataset being generated or imported). The temporaries that killed
/// writers of `out` left are removed first. `out` must not exist, or be an empty directory
/// (made by the user, or by a shell's mkdir).
pub fn write_dir_atomically(out: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    // `city/` must get the sibling `city.tmp-…`, not `city/.tmp-…` inside it.
    let out = &without_trailing_slash(out);
    check_new_dir(out)?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let stem = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    remove_dead_temps_of(&parent, &format!("{stem}.tmp-"))?;
    let tmp = temp_path(out);
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    if let Err(e) = write(&tmp) {
        // A failure (bad input, a full disk) leaves nothing either.
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    fault::point("rename a written directory into place");
    if out.exists() {
        fs::remove_dir(out).map_err(|e| Error::io(out, e))?;
    }
    fs::rename(&tmp, out).map_err(|e| Error::io(out, e))
}

/// Where this process writes `path` before renaming it into place: `<path>.tmp-<host>-<pid>`,
/// so that `remove_dead_temps` can tell the temp files of dead processes of this host.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}-{}", host_name(), std::process::id()));
    PathBuf::from(tmp)
}

/// True when `name` is a temp name of `temp_path` whose process, on this host, is gone.
/// Temp names of other hosts are left alone: only their own host can tell they are dead.
pub fn is_dead_temp(name: &str) -> bool {
    let Some((_, owner)) = name.rsplit_once(".tmp-") else {
        return false;
    };
    let Some((host, pid)) = owner.rsplit_once('-') else {
        return false;
    };
    // Figures keep their extension after the pid (`r2.tmp-host-12.png`).
    let pid = pid.split('.').next().unwrap_or_default();
    match pid.parse::<u32>() {
        Ok(pid) => host == host_name() && !claim::process_exists(pid),
        Err(_) => false,
    }
}

/// Remove the temp files and directories that dead processes of this host left in `dir`
/// (a killed report, a killed city generation). Returns how many were removed.
pub fn remove_dead_temps(dir: &Path) -> Result<usize> {
    remove_dead_temps_of(dir, "")
}

/// `remove_dead_temps` for the temps whose name starts with `prefix` only (those of one path,
/// in a directory that is not ours).
pub fn remove_dead_temps_of(dir: &Path, prefix: &str) -> Result<usize> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(prefix) || !is_dead_temp(&name) {
            continue;
        }
        let path = entry.path();
        fault::point("remove a dead process's temp");
        let gone = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        match gone {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
    }
    Ok(removed)
}

pub const DONE_MARKER: &str = "DONE";

/// The version of the run-directory layout this build writes (in `manifest.json`). Version 1
/// (no `record_version` field) is every run directory written before it was introduced.
pub const RECORD_VERSION: u32 = 2;

/// The records a finished run of layout `version` holds besides `DONE`.
fn required_records(version: u32) -> &'static [&'static str] {
    match version {
        1 => &["manifest.json", "metrics.json"],
        _ => &[
            "manifest.json",
            "metrics.json",
            "config.yaml",
            "split.csv",
            "predictions.csv",
            "model.json",
        ],
    }
}

/// True when `dir` holds a finished run: `DONE` and every record its layout version requires
/// (a directory that lost a record, e.g. to an interrupted delete, is not finished).
pub fn is_done(dir: &Path) -> bool {
    #[derive(serde::Deserialize)]
    struct Version {
        #[serde(default = "legacy_version")]
        record_version: u32,
    }
    fn legacy_version() -> u32 {
        1
    }
    if !dir.join(DONE_MARKER).is_file() {
        return false;
    }
    let Ok(text) = fs::read_to_string(dir.join("manifest.json")) else {
        return false;
    };
    let Ok(v) = serde_json::from_str::<Version>(&text) else {
        return false;
    };
    required_records(v.record_version)
        .iter()
        .all(|r| dir.join(r).is_file())
}

/// True when `name` can be a run directory's name (a run id: hex digits). Hidden attempt,
/// trash and resume directories never are.
pub fn is_run_id(name: &str) -> bool {
    (8..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_hexdigit())
}

pub use records::{BuildStamp, DatasetStamp, Manifest, RunStatus};

/// A job's working directory while it runs.
pub struct RunDir {
    final_dir: PathBuf,
    work_dir: PathBuf,
    started: SystemTime,
    clock: Instant,
    log: fs::File,
    board: Option<tensorboard::Board>,
    /// Set by the job runner: what a resume checkpoint must match to be continued from.
    resume_key: Option<String>,
}

impl RunDir {
    /// Start a run of `run_id` under `experiment_dir`, clearing leftovers of earlier attempts.
    pub fn begin(experiment_dir: &Path, run_id: &str) -> Result<RunDir> {
        fs::create_dir_all(experiment_dir).map_err(|e| Error::io(experiment_dir, e))?;
        keep_history_for_resume(experiment_dir, run_id)?;
        remove_stale_attempts(experiment_dir, run_id)?;
        let work_dir = experiment_dir.join(format!(".tmp-{run_id}-{}", std::process::id()));
        fs::create_dir_all(&work_dir).map_err(|e| Error::io(&work_dir, e))?;
        let log_path = work_dir.join("run.log");
        let log = fs::File::create(&log_path).map_err(|e| Error::io(&log_path, e))?;
        Ok(RunDir {
            final_dir: experiment_dir.join(run_id),
            work_dir,
            started: SystemTime::now(),
            clock: Instant::now(),
            log,
            board: None,
            resume_key: None,
        })
    }

    /// The experiment directory the run belongs to.
    pub fn experiment_dir(&self) -> &Path {
        self.final_dir.parent().unwrap_or(Path::new("."))
    }

    /// Where this run id's resume checkpoint lives: beside the run directories, outside any
    /// attempt directory (which the next attempt deletes).
    pub fn resume_dir(&self) -> PathBuf {
        resume_dir(
            self.experiment_dir(),
            &self
                .final_dir
                .file_name()
                .unwrap_or_default()
                .to_string_lossy(),
        )
    }

    /// Let the learner write and continue resume checkpoints under `key`.
    pub fn set_resume_key(&mut self, key: String) {
        self.resume_key = Some(key);
    }

    pub fn resume_key(&self) -> Option<&str> {
        self.resume_key.as_deref()
    }

    /// Remove this run id's resume checkpoint and history (`run --force`).
    pub fn discard_resume(&self) -> Result<()> {
        let dir = self.resume_dir();
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&dir, e)),
            _ => Ok(()),
        }
    }

    /// Write a resume point with `save` (given the resume directory), after flushing the
    /// event file so the history kept for a resumed run reaches the checkpoint.
    pub fn save_resume_point(&mut self, save: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
        if let Some(board) = &mut self.board {
            board.flush()?;
        }
        let dir = self.resume_dir();
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        save(&dir)
    }

    /// Continue from a resume checkpoint: the earlier attempts' event files and run.log
    /// lines come into this attempt, and the new events start with a SessionLog START at
    /// `step`, so TensorBoard shows each step once.
    pub fn continue_board(&mut self, step: usize) -> Result<()> {
        let history = self.resume_dir().join(HISTORY);
        if let Ok(entries) = fs::read_dir(&history) {
            let mut names: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            names.sort();
            for path in names {
                let name = path
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .to_string();
                if name.starts_with(EVENTS_PREFIX) {
                    let to = self.work_dir.join(&name);
                    fs::copy(&path, &to).map_err(|e| Error::io(&to, e))?;
                } else if name == "run.log" {
                    let earlier = fs::read(&path).map_err(|e| Error::io(&path, e))?;
                    let _ = self.log.write_all(&earlier);
                }
            }
        }
        self.board().session_start(step);
        Ok(())
    }

    pub fn started(&self) -> SystemTime {
        self.started
    }

    pub fn elapsed_seconds(&self) -> f64 {
        self.clock.elapsed().as_secs_f64()
    }

    /// The run's TensorBoard event file (opened on first use).
    pub fn board(&mut self) -> &mut tensorboard::Board {
        let dir = &self.work_dir;
        self.board
            .get_or_insert_with(|| tensorboard::Board::open(dir))
    }

    /// Append a line to the run's `run.log`.
    pub fn log(&mut self, line: &str) {
        // A log line that cannot be written must not fail the run; the result files still are.
        let _ = writeln!(self.log, "{line}");
        progress::detail(line);
    }

    /// Where a file of this run is written while the run is in progress.
    pub fn path(&self, name: &str) -> PathBuf {
        self.work_dir.join(name)
    }

    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        atomic_write(&self.work_dir.join(name), bytes)
    }

    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let text =
            serde_json::to_string_pretty(value).map_err(|e| Error::Internal(e.to_string()))?;
        self.write(name, text.as_bytes())
    }

    /// Close the run: write the manifest, `DONE` when it succeeded, and move the directory to
    /// its final name (replacing a failed or unfinished earlier attempt).
    pub fn finish(mut self, manifest: &Manifest) -> Result<PathBuf> {
        // Closing the event file before the directory moves; a write error in any of its
        // events (a full disk) fails the run here.
        if let Some(board) = self.board.take() {
            board.close()?;
        }
        self.write_json("manifest.json", manifest)?;
        if manifest.status == RunStatus::Done {
            self.write(DONE_MARKER, b"")?;
        }
        let _ = self.log.flush();
        // Replacing an earlier run only by renames: at every instant the run id's directory
        // is either the old run, complete, or absent, or the new one, complete.
        let parent = self.final_dir.parent().unwrap_or(Path::new("."));
        let trash = parent.join(format!(
            ".trash-{}-{}",
            self.final_dir
                .file_name()
                .unwrap_or_default()
                .to_string_lossy(),
            std::process::id()
        ));
        let replaced = if self.final_dir.exists() {
            fault::point("rename old run dir -> trash");
            fs::rename(&self.final_dir, &trash).map_err(|e| Error::io(&self.final_dir, e))?;
            true
        } else {
            false
        };
        fault::point("rename work dir -> run dir");
        fs::rename(&self.work_dir, &self.final_dir).map_err(|e| Error::io(&self.final_dir, e))?;
        if replaced {
            fault::point("remove trash");
            fs::remove_dir_all(&trash).map_err(|e| Error::io(&trash, e))?;
        }
        if manifest.status == RunStatus::Done {
            fault::point("remove resume checkpoint");
            self.discard_resume()?;
        }
        Ok(self.final_dir.clone())
    }
}

/// The resume directory of `run_id` in `experiment_dir`.
pub fn resume_dir(experiment_dir: &Path, run_id: &str) -> PathBuf {
    experiment_dir.join(format!(".resume-{run_id}"))
}

/// Inside a resume directory: the event files and run.log of earlier attempts.
const HISTORY: &str = "history";
const EVENTS_PREFIX: &str = "events.out.tfevents.";

/// Before a new attempt deletes the attempts of dead processes: when a resume checkpoint
/// exists, move their event files and run.log into its history (the resumed run carries
/// them on). Without a checkpoint nothing is kept: the run starts over.
fn keep_history_for_resume(experiment_dir: &Path, run_id: &str) -> Result<()> {
    let resume = resume_dir(experiment_dir, run_id);
    if !resume.is_dir() {
        return Ok(());
    }
    let history = resume.join(HISTORY);
    let prefix = format!(".tmp-{run_id}-");
    for entry in fs::read_dir(experiment_dir).map_err(|e| Error::io(experiment_dir, e))? {
        let entry = entry.map_err(|e| Error::io(experiment_dir, e))?;
        if !entry.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        fs::create_dir_all(&history).map_err(|e| Error::io(&history, e))?;
        for file in fs::read_dir(entry.path()).map_err(|e| Error::io(entry.path(), e))? {
            let file = file.map_err(|e| Error::io(entry.path(), e))?;
            let name = file.file_name().to_string_lossy().to_string();
            if name.starts_with(EVENTS_PREFIX) {
                let to = history.join(&name);
                fs::rename(file.path(), &to).map_err(|e| Error::io(&to, e))?;
            } else if name == "run.log" {
                // The history's run.log is every earlier attempt's, in order; a resumed
                // attempt's log already starts with the history it carried on.
                let kept = fs::read(history.join("run.log")).unwrap_or_default();
                let log = fs::read(file.path()).map_err(|e| Error::io(file.path(), e))?;
                let all = if log.starts_with(&kept) {
                    log
                } else {
                    [kept, log].concat()
                };
                atomic_write(&history.join("run.log"), &all)?;
            }
        }
    }
    Ok(())
}

/// Remove the attempt and trash directories of `run_id` (the caller holds its claim, so no
/// live process owns them).
fn remove_stale_attempts(experiment_dir: &Path, run_id: &str) -> Result<()> {
    let prefixes = [format!(".tmp-{run_id}-"), format!(".trash-{run_id}-")];
    for entry in fs::read_dir(experiment_dir).map_err(|e| Error::io(experiment_dir, e))? {
        let entry = entry.map_err(|e| Error::io(experiment_dir, e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if prefixes.iter().any(|p| name.starts_with(p)) {
            let p = entry.path();
            fault::point("remove a stale attempt");
            match fs::remove_dir_all(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&p, e)),
                _ => {}
            }
        }
    }
    Ok(())
}

/// The run id an attempt (`.tmp-<id>-<pid>`) or trash (`.trash-<id>-<pid>`) directory
/// belongs to.
fn leftover_run_id(name: &str) -> Option<&str> {
    let rest = name
        .strip_prefix(".tmp-")
        .or_else(|| name.strip_prefix(".trash-"))?;
    let (id, pid) = rest.rsplit_once('-')?;
    (is_run_id(id) && pid.parse::<u32>().is_ok()).then_some(id)
}

/// Remove the leftovers of killed attempts in `experiment_dir`: attempt and trash directories
/// and stale locks of every run id that no live process holds (each is claimed while it is
/// cleaned; the history of a run with a resume checkpoint is kept for it), and dead
/// processes' temp files.
/// Returns how many run ids were cleaned.
pub fn clean_dead_attempts(experiment_dir: &Path) -> Result<usize> {
    let Ok(entries) = fs::read_dir(experiment_dir) else {
        return Ok(0);
    };
    // Run ids with attempt or trash directories, with locks of dead holders (a process
    // killed after its job finished leaves one that no later run would otherwise claim), and
    // finished runs with a resume checkpoint (a killed `run --force` of a finished job leaves
    // one that nothing would ever continue: only --force runs a finished job, and it starts
    // over).
    let ids: std::collections::BTreeSet<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(id) = leftover_run_id(&name) {
                return Some(id.to_string());
            }
            if let Some(id) = name.strip_prefix(".resume-") {
                return is_done(&experiment_dir.join(id)).then(|| id.to_string());
            }
            let id = name.strip_suffix(".lock")?;
            let (_, stale) = claim::lock_state(experiment_dir, id)?;
            stale.map(|_| id.to_string())
        })
        .collect();
    let mut cleaned = 0;
    for id in ids {
        if let claim::Claim::Claimed(_held) = claim::claim(experiment_dir, &id)? {
            if is_done(&experiment_dir.join(&id)) {
                let resume = resume_dir(experiment_dir, &id);
                fault::point("remove a finished run's resume checkpoint");
                match fs::remove_dir_all(&resume) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Error::io(&resume, e))
                    }
                    _ => {}
                }
            } else {
                keep_history_for_resume(experiment_dir, &id)?;
            }
            remove_stale_attempts(experiment_dir, &id)?;
            cleaned += 1;
        }
    }
    remove_dead_temps(experiment_dir)?;
    Ok(cleaned)
}

/// The file of a run directory that holds the exact text its run id hashes: the job's
/// configuration as compact JSON, in the order the program serialises it (config.yaml holds
/// the same values, readable, with keys sorted). Lets a run be checked against its id
/// without the experiment that planned it.
pub const JOB_IDENTITY: &str = "job.json";

/// The run id of a job whose identity (`JOB_IDENTITY`) is `json`: its SHA-256's first ten
/// hex digits.
pub fn run_id_of(json: &str) -> String {
    content_hash(json.as_bytes())[..10].to_string()
}

/// The first 16 hex digits of the SHA-256 of `bytes`.
pub fn content_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// This program's build: the hash of its executable file, read once per process ("unknown"
/// when it cannot be read). Unlike a git commit, it changes with every code change that
/// reaches the binary, committed or not.
pub fn build_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        std::env::current_exe()
            .and_then(fs::read)
            .map(|b| content_hash(&b))
            .unwrap_or_else(|_| "unknown".into())
    })
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

pub fn host_name() -> String {
    fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_run_replaces_failed_attempt_and_leaves_no_temp_dir() {
        let root = tempfile::tempdir().unwrap();
        let exp = root.path();
        let stamp = |status| Manifest {
            record_version: 1,
            run_id: "abc".into(),
            status,
            ..Manifest::default()
        };
        let run = RunDir::begin(exp, "abc").unwrap();
        run.write("metrics.json", b"{}").unwrap();
        let dir = run.finish(&stamp(RunStatus::Failed)).unwrap();
        assert!(!is_done(&dir));
        // An attempt killed half-way leaves a hidden temp dir; the next attempt clears it.
        fs::create_dir_all(exp.join(".tmp-abc-999999")).unwrap();
        let run = RunDir::begin(exp, "abc").unwrap();
        assert!(!exp.join(".tmp-abc-999999").exists());
        run.write("metrics.json", b"{\"new\": 1}").unwrap();
        let dir = run.finish(&stamp(RunStatus::Done)).unwrap();
        assert!(is_done(&dir));
        assert_eq!(
            fs::read(dir.join("metrics.json")).unwrap(),
            b"{\"new\": 1}",
            "the finished attempt replaces the failed one"
        );
        // A finished run that lost a record its layout requires is not finished.
        fs::remove_file(dir.join("metrics.json")).unwrap();
        assert!(!is_done(&dir));
        let names: Vec<_> = fs::read_dir(exp)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("abc")]);
    }
}
