//! Deterministic fault injection for the tests of the run store: with
//! `OPENCARBON_FAULT_AFTER=k` the process aborts (no destructors, no cleanup, as if killed) at
//! its k-th fault point, so a test can stop a run, a report or a city generation at every one
//! of its file operations in turn instead of hoping a random kill lands there.
//! `OPENCARBON_FAULT_TRACE=1` prints every point reached on stderr (to count them).
//!
//! Fault points sit just before each file operation whose interruption matters: writes of
//! records, renames, deletions, the DONE marker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The environment variable holding k.
pub const FAULT_AFTER: &str = "OPENCARBON_FAULT_AFTER";
pub const FAULT_TRACE: &str = "OPENCARBON_FAULT_TRACE";

static COUNT: AtomicU64 = AtomicU64::new(0);

fn settings() -> &'static (Option<u64>, bool) {
    static SETTINGS: OnceLock<(Option<u64>, bool)> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        let after = std::env::var(FAULT_AFTER)
            .ok()
            .and_then(|v| v.trim().parse().ok());
        let trace = std::env::var_os(FAULT_TRACE).is_some_and(|v| v == "1");
        (after, trace)
    })
}

/// A fault point named `what` (e.g. `rename work dir -> run dir`).
pub fn point(what: &str) {
    let (after, trace) = *settings();
    if after.is_none() && !trace {
        return;
    }
    let k = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
    if trace {
        eprintln!("fault point {k}: {what}");
    }
    if after == Some(k) {
        eprintln!("fault injected at point {k}: {what}");
        std::process::abort();
    }
}
