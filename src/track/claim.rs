//! Job claims: several processes (shards of one experiment on a cluster, or the same `run`
//! started twice) may share one results directory. Before a process runs a job it creates
//! `<experiment>/<run id>.lock` with O_EXCL, so exactly one process runs each job; the lock
//! is removed when the job ends.
//!
//! A process that crashes leaves its lock behind. A lock is stale, and is taken over, when
//! its holder is a process of this host that no longer exists, or when its heartbeat (the
//! holder touches the file every `STALE_AFTER / 8`) is older than `STALE_AFTER` (holders on
//! other hosts, whose processes cannot be checked).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};

/// A lock whose heartbeat is older than this is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(600);

/// Who holds a lock, as written in the lock file: `pid host started`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub since: String,
}

impl Holder {
    fn me() -> Holder {
        Holder {
            pid: std::process::id(),
            host: super::host_name(),
            since: super::rfc3339(SystemTime::now()),
        }
    }

    fn line(&self) -> String {
        format!("{} {} {}\n", self.pid, self.host, self.since)
    }

    fn parse(text: &str) -> Option<Holder> {
        let mut it = text.split_whitespace();
        Some(Holder {
            pid: it.next()?.parse().ok()?,
            host: it.next()?.to_string(),
            since: it.next()?.to_string(),
        })
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} on {} since {}", self.pid, self.host, self.since)
    }
}

/// The lock file of a job.
pub fn lock_path(experiment_dir: &Path, run_id: &str) -> PathBuf {
    experiment_dir.join(format!("{run_id}.lock"))
}

/// A held claim; dropping it stops the heartbeat and removes the lock.
pub struct JobClaim {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    heartbeat: Option<std::thread::JoinHandle<()>>,
}

impl Drop for JobClaim {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.heartbeat.take() {
            h.thread().unpark();
            let _ = h.join();
        }
        let _ = fs::remove_file(&self.path);
    }
}

pub enum Claim {
    Claimed(JobClaim),
    /// Another live process holds the job.
    Busy(Holder),
}

/// Try to claim job `run_id`, taking over a stale lock.
pub fn claim(experiment_dir: &Path, run_id: &str) -> Result<Claim> {
    fs::create_dir_all(experiment_dir).map_err(|e| Error::io(experiment_dir, e))?;
    let path = lock_path(experiment_dir, run_id);
    // Two rounds: the second follows the removal of a stale lock.
    for _ in 0..2 {
        match create_exclusive(&path)? {
            true => return Ok(Claim::Claimed(start_heartbeat(path))),
            false => {
                let Some((holder, text)) = read_lock(&path)? else {
                    continue; // released between our attempt and the read
                };
                if !is_stale(&path, &holder) {
                    return Ok(Claim::Busy(holder));
                }
                take_over_stale(&path, &text)?;
            }
        }
    }
    // The lock came back at once: someone else took the stale lock over first.
    match read_lock(&path)? {
        Some((holder, _)) => Ok(Claim::Busy(holder)),
        None => Err(Error::Internal(format!(
            "{}: could not claim the job (lock contention)",
            path.display()
        ))),
    }
}

/// Who holds the lock of `run_id`, and whether the lock is stale (its holder is gone); None
/// when nobody holds it.
pub fn lock_state(experiment_dir: &Path, run_id: &str) -> Option<(Holder, bool)> {
    let path = lock_path(experiment_dir, run_id);
    let (holder, _) = read_lock(&path).ok()??;
    let stale = is_stale(&path, &holder);
    Some((holder, stale))
}

/// Create the lock file if it does not exist; false when it does.
fn create_exclusive(path: &Path) -> Result<bool> {
    super::fault::point("create lock");
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(mut f) => {
            f.write_all(Holder::me().line().as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(|e| Error::io(path, e))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// The holder and raw text of a lock file; None when it is gone. A lock file that cannot be
/// parsed (a holder that died while writing it) counts as held by nobody alive.
fn read_lock(path: &Path) -> Result<Option<(Holder, String)>> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let holder = Holder::parse(&text).unwrap_or(Holder {
                pid: 0,
                host: String::new(),
                since: "?".into(),
            });
            Ok(Some((holder, text)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn is_stale(path: &Path, holder: &Holder) -> bool {
    if holder.pid == 0 {
        // Unparsable: stale once it is old enough that its writer has surely finished.
        return heartbeat_age(path).is_some_and(|a| a > Duration::from_secs(5));
    }
    if holder.host == super::host_name() && !process_exists(holder.pid) {
        return true;
    }
    heartbeat_age(path).is_some_and(|a| a > STALE_AFTER)
}

fn heartbeat_age(path: &Path) -> Option<Duration> {
    let modified = fs::metadata(path).ok()?.modified().ok()?;
    SystemTime::now().duration_since(modified).ok()
}

pub(crate) fn process_exists(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true // cannot tell: rely on the heartbeat age
    }
}

/// Move a stale lock out of the way. Renaming is atomic, so of several processes that judged
/// the same lock stale only one moves it; if what was moved is not the lock that was judged
/// (a fresh claim made in between), it is put back.
fn take_over_stale(path: &Path, judged: &str) -> Result<()> {
    let aside = path.with_extension(format!("lock.stale-{}", std::process::id()));
    match fs::rename(path, &aside) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
    }
    let moved = fs::read_to_string(&aside).unwrap_or_default();
    if moved != judged {
        // Someone's fresh lock: restore it unless yet another lock appeared meanwhile.
        let _ = fs::hard_link(&aside, path);
    }
    fs::remove_file(&aside).map_err(|e| Error::io(&aside, e))
}

fn start_heartbeat(path: PathBuf) -> JobClaim {
    let stop = Arc::new(AtomicBool::new(false));
    let (flag, p) = (stop.clone(), path.clone());
    let heartbeat = std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            std::thread::park_timeout(STALE_AFTER / 8);
            if let Ok(f) = fs::OpenOptions::new().append(true).open(&p) {
                let _ = f.set_modified(SystemTime::now());
            }
        }
    });
    JobClaim {
        path,
        stop,
        heartbeat: Some(heartbeat),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let Claim::Claimed(held) = claim(dir.path(), "abc").unwrap() else {
            panic!("first claim must succeed");
        };
        match claim(dir.path(), "abc").unwrap() {
            Claim::Busy(h) => assert_eq!(h.pid, std::process::id()),
            Claim::Claimed(_) => panic!("second claim must fail while the first is held"),
        }
        drop(held);
        assert!(!lock_path(dir.path(), "abc").exists());
        assert!(matches!(
            claim(dir.path(), "abc").unwrap(),
            Claim::Claimed(_)
        ));
    }

    #[test]
    fn a_lock_of_a_dead_process_on_this_host_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        // A pid above the kernel's pid_max cannot be alive.
        let dead = Holder {
            pid: 4_194_305,
            host: crate::track::host_name(),
            since: "2026-01-01T00:00:00Z".into(),
        };
        fs::write(lock_path(dir.path(), "abc"), dead.line()).unwrap();
        assert!(matches!(
            claim(dir.path(), "abc").unwrap(),
            Claim::Claimed(_)
        ));
        assert!(!dir.path().read_dir().unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("stale")));
    }

    #[test]
    fn a_fresh_lock_of_another_host_is_respected_and_an_old_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let other = Holder {
            pid: 1,
            host: "some-other-node".into(),
            since: "2026-01-01T00:00:00Z".into(),
        };
        let path = lock_path(dir.path(), "abc");
        fs::write(&path, other.line()).unwrap();
        assert!(matches!(claim(dir.path(), "abc").unwrap(), Claim::Busy(h) if h == other));
        let old = SystemTime::now() - STALE_AFTER - Duration::from_secs(60);
        fs::File::options()
            .append(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(matches!(
            claim(dir.path(), "abc").unwrap(),
            Claim::Claimed(_)
        ));
    }
}
