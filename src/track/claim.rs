//! Job claims: several processes (shards of one experiment on a cluster, or the same `run`
//! started twice) may share one results directory. Before a process runs a job it creates
//! `<experiment>/<run id>.lock` with O_EXCL, so exactly one process runs each job; the lock
//! is removed when the job ends.
//!
//! A process that crashes leaves its lock behind. A lock is stale, and is taken over, when
//! its holder is a process of this host that no longer exists (the lock records the pid, the
//! boot id and the process's start time, so a pid that the kernel has since given to another
//! process, or a pid from before a reboot, is not taken for the holder), or when its
//! heartbeat (the holder touches the file every `STALE_AFTER / 8`) is older than
//! `STALE_AFTER` (holders on other hosts, whose processes cannot be checked).
//!
//! A lock appears whole: its line is written to a temporary file that is then hard-linked to
//! the lock's name (which fails if the lock exists), so a full disk or a kill never leaves an
//! empty lock that reads as held by nobody known.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};

/// A lock whose heartbeat is older than this is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(600);

/// Who holds a lock, as written in the lock file: `pid host started boot-id start-ticks`
/// (locks written before the last two fields existed have three).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub since: String,
    /// The kernel's boot id when the lock was taken (Linux).
    pub boot: Option<String>,
    /// The holder's start time in clock ticks after boot (Linux, /proc/<pid>/stat field 22).
    pub start_ticks: Option<u64>,
}

impl Holder {
    fn me() -> Holder {
        let pid = std::process::id();
        Holder {
            pid,
            host: super::host_name(),
            since: super::rfc3339(SystemTime::now()),
            boot: boot_id(),
            start_ticks: process_start_ticks(pid),
        }
    }

    fn line(&self) -> String {
        let mut line = format!("{} {} {}", self.pid, self.host, self.since);
        if let (Some(boot), Some(ticks)) = (&self.boot, self.start_ticks) {
            line.push_str(&format!(" {boot} {ticks}"));
        }
        line + "\n"
    }

    fn parse(text: &str) -> Option<Holder> {
        let mut it = text.split_whitespace();
        let mut holder = Holder {
            pid: it.next()?.parse().ok()?,
            host: it.next()?.to_string(),
            since: it.next()?.to_string(),
            boot: None,
            start_ticks: None,
        };
        if let (Some(boot), Some(ticks)) = (it.next(), it.next()) {
            holder.boot = Some(boot.to_string());
            holder.start_ticks = Some(ticks.parse().ok()?);
        }
        Some(holder)
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} on {} since {}", self.pid, self.host, self.since)
    }
}

/// Why a lock is stale: nobody is running its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staleness {
    /// No process has the holder's pid.
    Gone,
    /// The pid is alive but is another process (started at another time).
    PidReused,
    /// The lock was taken before this machine last booted.
    Rebooted,
    /// The heartbeat stopped more than `STALE_AFTER` ago (a holder on another host).
    Silent,
    /// The lock's line cannot be read (a lock of an older version, written partly).
    Unreadable,
}

impl Staleness {
    /// Words for `stale (…)`, given the holder's pid.
    pub fn describe(self, pid: u32) -> String {
        match self {
            Staleness::Gone => format!("pid {pid} gone"),
            Staleness::PidReused => format!("pid {pid} is now another process"),
            Staleness::Rebooted => format!("pid {pid} was before a reboot"),
            Staleness::Silent => format!("pid {pid} silent for over {} s", STALE_AFTER.as_secs()),
            Staleness::Unreadable => "unreadable lock".into(),
        }
    }
}

/// This boot's id (Linux); None elsewhere.
fn boot_id() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && !s.contains(char::is_whitespace))
}

/// When process `pid` started, in clock ticks after boot (Linux); None when it does not
/// exist or this is not Linux.
fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Fields 3, 4, ... follow; the start time is field 22.
    after_name.split_whitespace().nth(22 - 3)?.parse().ok()
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
                if staleness(&path, &holder).is_none() {
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

/// Who holds the lock of `run_id`, and why the lock is stale when it is (its holder is
/// gone); None when nobody holds it.
pub fn lock_state(experiment_dir: &Path, run_id: &str) -> Option<(Holder, Option<Staleness>)> {
    let path = lock_path(experiment_dir, run_id);
    let (holder, _) = read_lock(&path).ok()??;
    let stale = staleness(&path, &holder);
    Some((holder, stale))
}

/// Create the lock file, whole, if it does not exist; false when it does.
fn create_exclusive(path: &Path) -> Result<bool> {
    let line = Holder::me().line();
    let tmp = super::temp_path(path);
    let written = super::fault::write_point("create lock")
        .and_then(|_| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(line.as_bytes())?;
            f.sync_all()
        })
        .map_err(|e| Error::io(&tmp, e));
    let linked = written.and_then(|_| match fs::hard_link(&tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        // A file system without hard links: exclusive creation, then the line.
        Err(_) => create_new_with(path, &line),
    });
    let _ = fs::remove_file(&tmp);
    linked
}

/// Exclusive creation of `path` holding `line`; a lock whose line could not be written is
/// removed again, so no empty lock stays behind.
fn create_new_with(path: &Path, line: &str) -> Result<bool> {
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(mut f) => match f.write_all(line.as_bytes()).and_then(|_| f.sync_all()) {
            Ok(()) => Ok(true),
            Err(e) => {
                let _ = fs::remove_file(path);
                Err(Error::io(path, e))
            }
        },
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
                boot: None,
                start_ticks: None,
            });
            Ok(Some((holder, text)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Why the lock at `path` held by `holder` is stale; None while its holder may be running.
fn staleness(path: &Path, holder: &Holder) -> Option<Staleness> {
    if holder.pid == 0 {
        // Unparsable: stale once it is old enough that its writer has surely finished.
        return heartbeat_age(path)
            .is_some_and(|a| a > Duration::from_secs(5))
            .then_some(Staleness::Unreadable);
    }
    if holder.host == super::host_name() {
        if holder.boot.is_some() && boot_id().is_some() && holder.boot != boot_id() {
            return Some(Staleness::Rebooted);
        }
        if !process_exists(holder.pid) {
            return Some(Staleness::Gone);
        }
        if let (Some(then), Some(now)) = (holder.start_ticks, process_start_ticks(holder.pid)) {
            if then != now {
                return Some(Staleness::PidReused);
            }
        }
    }
    heartbeat_age(path)
        .is_some_and(|a| a > STALE_AFTER)
        .then_some(Staleness::Silent)
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
            boot: None,
            start_ticks: None,
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
            boot: None,
            start_ticks: None,
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

    /// A live pid is not the holder when it started at another time than the lock says (the
    /// kernel gave the dead holder's pid to a new process), nor when the lock is from before
    /// a reboot; a lock of three fields (an older version) still reads. Linux only: elsewhere
    /// neither is recorded.
    #[test]
    fn a_reused_pid_or_a_reboot_does_not_hold_a_lock() {
        let me = Holder::me();
        assert_eq!(Holder::parse(&me.line()), Some(me.clone()));
        let old = Holder::parse("12 node-a 2026-01-01T00:00:00Z\n").unwrap();
        assert_eq!((old.pid, old.boot, old.start_ticks), (12, None, None));
        let (Some(boot), Some(ticks)) = (me.boot.clone(), me.start_ticks) else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let path = lock_path(dir.path(), "abc");
        let variants = [
            (
                Holder {
                    start_ticks: Some(ticks + 1),
                    ..me.clone()
                },
                Staleness::PidReused,
            ),
            (
                Holder {
                    boot: Some(format!("{boot}x")),
                    ..me.clone()
                },
                Staleness::Rebooted,
            ),
        ];
        for (holder, why) in variants {
            fs::write(&path, holder.line()).unwrap();
            let (_, stale) = lock_state(dir.path(), "abc").unwrap();
            assert_eq!(stale, Some(why));
            assert!(matches!(
                claim(dir.path(), "abc").unwrap(),
                Claim::Claimed(_)
            ));
        }
        // Our own lock, as written: held.
        fs::write(&path, me.line()).unwrap();
        assert_eq!(lock_state(dir.path(), "abc").unwrap().1, None);
        assert!(matches!(claim(dir.path(), "abc").unwrap(), Claim::Busy(_)));
        // A claim leaves no temporary file beside the lock.
        fs::remove_file(&path).unwrap();
        let held = claim(dir.path(), "abc").unwrap();
        assert!(matches!(held, Claim::Claimed(_)));
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["abc.lock".to_string()]);
    }
}
