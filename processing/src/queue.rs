//! The streams of the work queue: `MNEMO-WORK` (work-queue retention: a task is removed
//! when it is acknowledged), `MNEMO-DEAD-TASKS` (tasks that failed too often, kept for
//! inspection) and `MNEMO-NOTICES` (stale-model notices for processors).

use async_nats::jetstream::{self, stream};
use mnemo_core::names::{
    DEAD_TASK_PREFIX, DEAD_TASK_STREAM, NOTICE_PREFIX, NOTICE_STREAM, TASK_PREFIX, WORK_STREAM,
};
use std::time::Duration;

use crate::error::{ProcessingError, Result};

/// How long a task's message id dedups a re-planned task (the planner's restart window).
pub const TASK_DEDUP_WINDOW: Duration = Duration::from_secs(600);

/// Creates the three streams when missing.
pub async fn ensure_streams(js: &jetstream::Context, replicas: usize) -> Result<()> {
    let configs = [
        stream::Config {
            name: WORK_STREAM.into(),
            subjects: vec![format!("{TASK_PREFIX}.>")],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            num_replicas: replicas,
            duplicate_window: TASK_DEDUP_WINDOW,
            ..Default::default()
        },
        stream::Config {
            name: DEAD_TASK_STREAM.into(),
            subjects: vec![format!("{DEAD_TASK_PREFIX}.>")],
            storage: stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        },
        stream::Config {
            name: NOTICE_STREAM.into(),
            subjects: vec![format!("{NOTICE_PREFIX}.>")],
            storage: stream::StorageType::File,
            num_replicas: replicas,
            max_age: Duration::from_secs(30 * 24 * 3600),
            ..Default::default()
        },
    ];
    for c in configs {
        mnemo_ledger::provision::ensure_stream(js, c).await?;
    }
    Ok(())
}

/// A task that went to the dead-letter stream.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct DeadTask {
    /// The processor.
    pub processor: String,
    /// The task's id (its work-queue sequence).
    pub task: u64,
    /// What it was.
    #[serde(flatten)]
    pub what: crate::protocol::Task,
    /// Deliveries made.
    pub attempts: u64,
    /// The last failure.
    pub reason: String,
    /// When it was set aside (ms).
    pub at: i64,
}

/// The dead letters, oldest first, up to `limit`, of one processor or all.
pub async fn dead_letters(
    js: &jetstream::Context,
    processor: Option<&str>,
    limit: usize,
) -> Result<Vec<DeadTask>> {
    let mut s = js
        .get_stream(DEAD_TASK_STREAM)
        .await
        .map_err(|e| ProcessingError::nats("open the dead-letter stream", e))?;
    let info = s
        .info()
        .await
        .map_err(|e| ProcessingError::nats("dead-letter stream info", e))?;
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let mut out = Vec::new();
    if info.state.messages == 0 {
        return Ok(out);
    }
    for seq in first..=last {
        if out.len() >= limit {
            break;
        }
        let Ok(m) = s.get_raw_message(seq).await else {
            continue;
        };
        if let Ok(d) = serde_json::from_slice::<DeadTask>(&m.payload)
            && processor.is_none_or(|p| p == d.processor)
        {
            out.push(d);
        }
    }
    Ok(out)
}
