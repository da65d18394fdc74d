//! Why a worker call failed.

/// Why a worker call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// mnemo refused (status and detail of its problem reply).
    #[error("refused ({status}): {detail}")]
    Refused {
        /// The HTTP-like status.
        status: u16,
        /// What mnemo said.
        detail: String,
    },
    /// NATS failed.
    #[error("nats: {0}")]
    Nats(String),
    /// mnemo's answer was not what the protocol says.
    #[error("bad answer: {0}")]
    BadAnswer(String),
    /// The worker's configuration is missing or wrong.
    #[error("configuration: {0}")]
    Config(String),
}

impl WorkerError {
    /// Whether mnemo refused for good (403, 404, 410): the task has nothing to do.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            WorkerError::Refused {
                status: 403 | 404 | 410,
                ..
            }
        )
    }
}
