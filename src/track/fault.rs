//! Deterministic fault injection for the tests of the run store: with
//! `OPENCARBON_FAULT_AFTER=k` the process aborts (no destructors, no cleanup, as if killed) at
//! its k-th fault point, so a test can stop a run, a report or a city generation at every one
//! of its file operations in turn instead of hoping a random kill lands there.
//! `OPENCARBON_FAULT_TRACE=1` prints every point reached on stderr (to count them).
//! `OPENCARBON_FAULT_ENOSPC_AFTER=k` makes the k-th point and every later one fail with
//! ENOSPC instead, as a disk that fills up at that moment and stays full: the test that every
//! write error becomes an error value (exit 1, a message) and never a panic or a lost record.
//!
//! Fault points sit just before each file operation whose interruption matters: writes of
//! records and event files, renames, deletions, the DONE marker, locks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The environment variable holding k.
pub const FAULT_AFTER: &str = "OPENCARBON_FAULT_AFTER";
pub const FAULT_TRACE: &str = "OPENCARBON_FAULT_TRACE";
pub const FAULT_ENOSPC_AFTER: &str = "OPENCARBON_FAULT_ENOSPC_AFTER";

static COUNT: AtomicU64 = AtomicU64::new(0);

struct Settings {
    abort_at: Option<u64>,
    full_from: Option<u64>,
    trace: bool,
}

fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        let number = |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse().ok());
        Settings {
            abort_at: number(FAULT_AFTER),
            full_from: number(FAULT_ENOSPC_AFTER),
            trace: std::env::var_os(FAULT_TRACE).is_some_and(|v| v == "1"),
        }
    })
}

/// Count a fault point named `what`, abort at the chosen one; whether the disk is "full" here.
fn reach(what: &str) -> bool {
    let s = settings();
    if s.abort_at.is_none() && s.full_from.is_none() && !s.trace {
        return false;
    }
    let k = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
    if s.trace {
        eprintln!("fault point {k}: {what}");
    }
    if s.abort_at == Some(k) {
        eprintln!("fault injected at point {k}: {what}");
        std::process::abort();
    }
    s.full_from.is_some_and(|from| k >= from)
}

/// A fault point named `what` before a rename or a removal (e.g. `rename work dir -> run
/// dir`), which a full disk does not stop.
pub fn point(what: &str) {
    reach(what);
}

/// A fault point before a write: the error that write would meet on a full disk, when one is
/// injected.
pub fn write_point(what: &str) -> std::io::Result<()> {
    if reach(what) {
        // ENOSPC, as the kernel reports it.
        return Err(std::io::Error::from_raw_os_error(28));
    }
    Ok(())
}
