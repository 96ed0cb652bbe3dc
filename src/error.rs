//! The crate's single error type. Every failure a user can cause maps to one variant, and each
//! variant knows its process exit code, so `main` has exactly one place that prints errors.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a configuration file, located by its YAML path (e.g. `models[1].alpha`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigProblem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

#[derive(Debug)]
pub enum Error {
    /// Bad command-line usage that clap could not catch (exit 2).
    Usage(String),
    /// One or more problems in an experiment or config file (exit 2).
    Config {
        file: PathBuf,
        problems: Vec<ConfigProblem>,
    },
    /// An invalid dataset: the file, the line (1-based, when there is one) and the problem (exit 2).
    Dataset {
        file: PathBuf,
        line: Option<u64>,
        message: String,
    },
    /// An I/O failure on a named path (exit 1).
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A model could not be fitted or evaluated (exit 1).
    Model(String),
    /// Some jobs of an experiment failed; the others finished (exit 1).
    JobsFailed { failed: usize, total: usize },
    /// An experiment's report found jobs without a finished result (exit 1); each list holds
    /// "index run-id" entries.
    Incomplete {
        failed: Vec<String>,
        running: Vec<String>,
        missing: Vec<String>,
    },
    /// Anything else that is the program's fault rather than the input's (exit 1).
    Internal(String),
    /// `compare` found results worse than, or (with `--require-identical`) different from,
    /// the reference (exit 1).
    Regressed(String),
    /// Several failures of one command, in the order they happened (e.g. failed jobs, then a
    /// report that could not be written); the exit code is the highest of theirs.
    Several(Vec<Error>),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub fn dataset(file: impl AsRef<Path>, line: Option<u64>, message: impl Into<String>) -> Self {
        Error::Dataset {
            file: file.as_ref().to_path_buf(),
            line,
            message: message.into(),
        }
    }

    pub fn config(
        file: impl AsRef<Path>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Config {
            file: file.as_ref().to_path_buf(),
            problems: vec![ConfigProblem {
                path: path.into(),
                message: message.into(),
            }],
        }
    }

    /// The process exit code: 2 for anything the user must fix in their input, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) | Error::Config { .. } | Error::Dataset { .. } => 2,
            Error::Io { .. }
            | Error::Model(_)
            | Error::JobsFailed { .. }
            | Error::Incomplete { .. }
            | Error::Internal(_)
            | Error::Regressed(_) => 1,
            Error::Several(errors) => errors.iter().map(Error::exit_code).max().unwrap_or(1),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) => write!(f, "{m}"),
            Error::Config { file, problems } => {
                if problems.len() == 1 {
                    write!(f, "{}: {}", file.display(), problems[0])
                } else {
                    write!(f, "{}: {} problems", file.display(), problems.len())?;
                    for p in problems {
                        write!(f, "\n  {p}")?;
                    }
                    Ok(())
                }
            }
            Error::Dataset {
                file,
                line,
                message,
            } => match line {
                Some(l) => write!(f, "{}:{l}: {message}", file.display()),
                None => write!(f, "{}: {message}", file.display()),
            },
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Model(m) => write!(f, "model: {m}"),
            Error::JobsFailed { failed, total } => {
                write!(f, "{failed} of {total} jobs failed (see their run.log)")
            }
            Error::Incomplete {
                failed,
                running,
                missing,
            } => {
                write!(f, "the experiment is incomplete:")?;
                for (what, list) in [
                    ("failed", failed),
                    ("still running", running),
                    ("missing (never run)", missing),
                ] {
                    if !list.is_empty() {
                        let shown: Vec<&str> = list.iter().take(10).map(String::as_str).collect();
                        let more = list.len().saturating_sub(10);
                        write!(f, " {} {what} ({}", list.len(), shown.join(", "))?;
                        if more > 0 {
                            write!(f, ", and {more} more")?;
                        }
                        write!(f, ");")?;
                    }
                }
                write!(f, " run the missing jobs, then `report` again")
            }
            Error::Internal(m) => write!(f, "internal error: {m}"),
            Error::Regressed(m) => write!(f, "{m}"),
            Error::Several(errors) => {
                for (i, e) in errors.iter().enumerate() {
                    if i > 0 {
                        write!(f, "\nerror: ")?;
                    }
                    write!(f, "{e}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
