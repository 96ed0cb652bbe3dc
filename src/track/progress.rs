//! What a long command tells the user while it works: indicatif bars (jobs of an experiment,
//! epochs of a job, with ETA and the current validation R²) when stderr is a terminal, plain
//! lines otherwise (CI, Slurm logs). `-q` keeps only warnings and errors; `-v` adds every
//! run.log line (epochs, early stopping) to stderr.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicI8, Ordering};
use std::sync::OnceLock;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

static VERBOSITY: AtomicI8 = AtomicI8::new(0);

/// -1 quiet, 0 normal, 1 verbose.
pub fn set_verbosity(level: i8) {
    VERBOSITY.store(level, Ordering::Relaxed);
}

fn verbosity() -> i8 {
    VERBOSITY.load(Ordering::Relaxed)
}

/// Bars only on a terminal, and not when quiet.
fn bars_on() -> bool {
    verbosity() >= 0 && std::io::stderr().is_terminal()
}

fn multi() -> &'static MultiProgress {
    static M: OnceLock<MultiProgress> = OnceLock::new();
    M.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

fn print(line: &str) {
    if bars_on() {
        let _ = multi().println(line);
    } else {
        eprintln!("{line}");
    }
}

/// A line of normal progress output (not shown with -q).
pub fn info(line: &str) {
    if verbosity() >= 0 {
        print(line);
    }
}

/// A detail line, shown with -v only.
pub fn detail(line: &str) {
    if verbosity() > 0 {
        print(line);
    }
}

/// A warning (always shown).
pub fn warn(line: &str) {
    print(&format!("warning: {line}"));
}

/// A progress bar, or nothing when bars are off.
pub struct Bar(Option<ProgressBar>);

impl Bar {
    /// `total` steps of `what` (e.g. "jobs", "epochs").
    pub fn new(total: u64, what: &str) -> Bar {
        if !bars_on() {
            return Bar(None);
        }
        let bar = multi().add(ProgressBar::new(total));
        let style = ProgressStyle::with_template(&format!(
            "{{prefix}} [{{bar:30}}] {{pos}}/{{len}} {what} (ETA {{eta}}) {{msg}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        Bar(Some(bar))
    }

    pub fn prefix(self, p: impl Into<String>) -> Bar {
        if let Some(b) = &self.0 {
            b.set_prefix(p.into());
        }
        self
    }

    pub fn set(&self, pos: u64, message: impl Into<String>) {
        if let Some(b) = &self.0 {
            b.set_position(pos);
            b.set_message(message.into());
        }
    }

    pub fn inc(&self) {
        if let Some(b) = &self.0 {
            b.inc(1);
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(b) = self.0.take() {
            b.finish_and_clear();
            multi().remove(&b);
        }
    }
}
