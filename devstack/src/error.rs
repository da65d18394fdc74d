//! The supervisor's error type.

/// What starting or stopping a server can fail with. None of them leaves a server running
/// that the caller does not hold.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevstackError {
    /// A program could not be run (not installed, not executable). Run `scripts/setup.sh`.
    #[error("cannot run {program}: {source}; run scripts/setup.sh")]
    Spawn {
        /// The program.
        program: String,
        /// The error.
        source: std::io::Error,
    },
    /// The installed program is not one mnemo can use (too old).
    #[error("{0}")]
    Unsuitable(String),
    /// The server exited before it was ready; its log says why.
    #[error("{what} exited ({status}) before it was ready:\n{log}")]
    Exited {
        /// Which server.
        what: &'static str,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its log.
        log: String,
    },
    /// The server did not get ready in time.
    #[error("{what} not ready in {secs} s:\n{log}")]
    NotReady {
        /// Which server.
        what: &'static str,
        /// How long it was given.
        secs: u64,
        /// Its log.
        log: String,
    },
    /// A setup command (initdb, psql) failed.
    #[error("{what} failed: {detail}")]
    Command {
        /// Which command.
        what: &'static str,
        /// Its error output.
        detail: String,
    },
    /// A file or directory could not be written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

impl DevstackError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}

/// Shorthand.
pub type Result<T, E = DevstackError> = std::result::Result<T, E>;
