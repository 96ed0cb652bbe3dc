//! What made a run: the build of this program (commit, dirty state and diff of the source it
//! was built from, embedded by build.rs), the compiler, the machine's CPU and thread count.
//! Unlike the working directory's git state, this is right wherever the binary runs.

/// The diff of the build's source against its commit (empty when clean), from build.rs.
pub const BUILD_DIFF: &str = include_str!(concat!(env!("OUT_DIR"), "/build_diff.patch"));

/// The build's commit; None when it was built outside a git checkout.
pub fn build_commit() -> Option<&'static str> {
    Some(env!("OPENCARBON_BUILD_COMMIT")).filter(|c| !c.is_empty())
}

/// Whether the build's source differed from its commit (untracked files included); None
/// without git.
pub fn build_dirty() -> Option<bool> {
    match env!("OPENCARBON_BUILD_DIRTY") {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// `rustc --version` of the compiler that built this program.
pub fn rustc_version() -> &'static str {
    env!("OPENCARBON_BUILD_RUSTC")
}

/// The CPU model (`/proc/cpuinfo`), or "unknown".
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The environment variable that sets how many threads the process uses.
pub const THREADS_VAR: &str = "OPENCARBON_THREADS";

/// The threads this process uses for its parallel work (convolution chunks, dfdx's GEMMs,
/// image decoding, forests, boosting): `OPENCARBON_THREADS` when it is set, else every
/// core. Results do not depend on it (every parallel split is fixed by the data, not by
/// the thread count); only the time does. `thread_setting` checks the variable at start-up.
pub fn threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| thread_setting().unwrap_or_else(|_| cores()))
}

/// The thread count `OPENCARBON_THREADS` asks for, or every core when it is unset; an error
/// naming the variable when it is not a whole number >= 1.
pub fn thread_setting() -> crate::error::Result<usize> {
    match std::env::var(THREADS_VAR) {
        Err(std::env::VarError::NotPresent) => Ok(cores()),
        Err(std::env::VarError::NotUnicode(v)) => Err(bad_threads(&v.to_string_lossy())),
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(bad_threads(&v)),
        },
    }
}

fn bad_threads(value: &str) -> crate::error::Error {
    crate::error::Error::Usage(format!(
        "{THREADS_VAR} is `{value}`, expected a whole number of threads >= 1"
    ))
}

/// The cores this process may run on.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded state is the build tree's: a commit of 40 hex digits where git is, and
    /// a diff exactly when the tree was dirty.
    #[test]
    fn the_build_state_is_embedded() {
        if let Some(c) = build_commit() {
            assert_eq!(c.len(), 40, "{c}");
            assert!(c.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        assert_eq!(build_dirty() == Some(true), !BUILD_DIFF.is_empty());
        assert!(rustc_version().starts_with("rustc "), "{}", rustc_version());
    }
}
