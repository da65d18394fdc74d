//! The dispatcher: hands each processor's tasks to its workers and keeps the queue honest.
//!
//! One durable pull consumer per processor (`tasks-<processor>`) reads its tasks from the
//! work queue; at most `max_in_flight` are out at once (the consumer's `max_ack_pending`).
//! Each goes to the workers as a request on `mnemo.work.<processor>`, where they subscribe
//! as one queue group, so any number of instances share the load. A task is acknowledged
//! (and leaves the queue) only when a worker answers that it is done; a refusal or no
//! answer within `task_timeout` is a failure: the task is redelivered after a backoff, and
//! after `max_failures` deliveries it goes to the dead-letter stream (`mnemo.dead.*`,
//! listed over the API, counted in metrics). No worker at all is not a failure: the task
//! waits, its ack deadline kept alive, until one subscribes; nor is a worker handing the
//! task back (`Mnemo-Task-Released`: at capacity, or shutting down): it is offered again
//! after a short pause (50 ms, doubling to 2 s), to whichever worker takes it. A crash of mnemo leaves the
//! tasks in the queue, redelivered after the ack wait.

use async_nats::jetstream::{self, AckKind, consumer};
use futures::StreamExt;
use mnemo_core::names::{DEAD_TASK_PREFIX, TASK_PREFIX, WORK_PREFIX, WORK_STREAM, task_consumer};
use mnemo_core::{Backoff, ProcessorId};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::{ProcessingError, Result};
use crate::protocol::{ERROR_HEADER, RELEASE_HEADER, Task, WorkItem};
use crate::queue::DeadTask;
use crate::registry::Registry;

/// How tasks are handed out.
#[derive(Clone, Debug)]
pub struct DispatchConfig {
    /// How long a worker has for one task.
    pub task_timeout: Duration,
    /// Tasks out at once per processor.
    pub max_in_flight: usize,
    /// Deliveries before a task goes to the dead letters.
    pub max_failures: u64,
    /// First redelivery delay (doubles per delivery, up to 60 s).
    pub retry_after: Duration,
    /// How often the registry is read for new or revoked processors.
    pub reconcile_every: Duration,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            task_timeout: Duration::from_secs(60),
            max_in_flight: 64,
            max_failures: 5,
            retry_after: Duration::from_secs(1),
            reconcile_every: Duration::from_secs(2),
        }
    }
}

/// Counters per processor.
#[derive(Debug, Default)]
pub struct TaskCounters {
    /// Tasks a worker finished.
    pub done: AtomicU64,
    /// Failed deliveries (refused or timed out).
    pub failed: AtomicU64,
    /// Tasks set aside as dead letters.
    pub dead: AtomicU64,
    /// Tasks skipped because their result was already recorded.
    pub skipped: AtomicU64,
    /// Offers a worker handed back (at capacity, shutting down): offered again, not failures.
    pub released: AtomicU64,
}

/// The dispatcher's counters, by processor.
pub type DispatchStats = Arc<std::sync::Mutex<HashMap<ProcessorId, Arc<TaskCounters>>>>;

/// The dispatcher.
pub struct Dispatcher {
    client: async_nats::Client,
    js: jetstream::Context,
    registry: Registry,
    ledger: mnemo_ledger::Ledger,
    cfg: DispatchConfig,
    /// Its counters.
    pub stats: DispatchStats,
}

impl Dispatcher {
    /// A dispatcher.
    pub fn new(
        client: async_nats::Client,
        ledger: mnemo_ledger::Ledger,
        registry: Registry,
        cfg: DispatchConfig,
    ) -> Self {
        Self {
            js: jetstream::new(client.clone()),
            client,
            registry,
            ledger,
            cfg,
            stats: Default::default(),
        }
    }

    /// Dispatches until `stop`: one loop per registered, unrevoked processor.
    pub async fn run(self, stop: tokio::sync::watch::Receiver<bool>) -> Result<()> {
        let me = Arc::new(self);
        let mut running: HashMap<ProcessorId, tokio::task::JoinHandle<()>> = HashMap::new();
        let mut tick = tokio::time::interval(me.cfg.reconcile_every);
        let mut stop_rx = stop.clone();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = crate::stopped(&mut stop_rx) => break,
            }
            let processors = match me.registry.list().await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the processor registry failed");
                    continue;
                }
            };
            for p in processors {
                let alive = running.get(&p.name).is_some_and(|h| !h.is_finished());
                if p.revoked {
                    if let Some(h) = running.remove(&p.name) {
                        h.abort();
                    }
                } else if !alive {
                    let (me2, stop2, name) = (me.clone(), stop.clone(), p.name.clone());
                    running.insert(
                        p.name.clone(),
                        tokio::spawn(async move {
                            if let Err(e) = me2.serve(&name, stop2).await {
                                tracing::warn!(processor = %name, error = %e, "dispatch loop ended; restarted");
                            }
                        }),
                    );
                }
            }
        }
        for (_, h) in running {
            h.abort();
        }
        Ok(())
    }

    fn counters(&self, p: &ProcessorId) -> Arc<TaskCounters> {
        self.stats
            .lock()
            .expect("not poisoned")
            .entry(p.clone())
            .or_default()
            .clone()
    }

    async fn serve(
        self: &Arc<Self>,
        processor: &ProcessorId,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<()> {
        let stream = self
            .js
            .get_stream(WORK_STREAM)
            .await
            .map_err(|e| ProcessingError::nats("open the work queue", e))?;
        let name = task_consumer(processor.as_str());
        let consumer = stream
            .get_or_create_consumer(
                &name,
                consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: format!("{TASK_PREFIX}.{processor}.*"),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: self.cfg.task_timeout + Duration::from_secs(30),
                    max_ack_pending: self.cfg.max_in_flight as i64,
                    max_deliver: -1,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| ProcessingError::nats("create a task consumer", e))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| ProcessingError::nats("read tasks", e))?;
        let slots = Arc::new(tokio::sync::Semaphore::new(self.cfg.max_in_flight));
        let counters = self.counters(processor);
        loop {
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => p.expect("never closed"),
                _ = crate::stopped(&mut stop) => return Ok(()),
            };
            let msg = tokio::select! {
                m = messages.next() => m,
                _ = crate::stopped(&mut stop) => return Ok(()),
            };
            let Some(msg) = msg else { return Ok(()) };
            let msg = msg.map_err(|e| ProcessingError::nats("read tasks", e))?;
            let (me, p, c, stop) = (
                self.clone(),
                processor.clone(),
                counters.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                if let Err(e) = me.handle(&p, msg, &c, stop).await {
                    tracing::warn!(processor = %p, error = %e, "a task was left in the queue (redelivered later)");
                }
                drop(permit);
            });
        }
    }

    async fn handle(
        &self,
        processor: &ProcessorId,
        msg: jetstream::Message,
        counters: &TaskCounters,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<()> {
        let info = msg
            .info()
            .map_err(|e| ProcessingError::nats("task info", e))?;
        let (task_id, delivered) = (info.stream_sequence, info.delivered.max(1) as u64);
        let ack_err = |e| ProcessingError::nats("acknowledge a task", e);
        let task: Task = match serde_json::from_slice(&msg.payload) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(processor = %processor, task = task_id, "an undecodable task goes to the dead letters");
                let dead = DeadTask {
                    processor: processor.to_string(),
                    task: task_id,
                    what: Task {
                        user: mnemo_core::UserId::new("unknown").expect("valid"),
                        memory: mnemo_core::MemoryId([0; 16]),
                        grant: mnemo_core::GrantId([0; 16]),
                    },
                    attempts: delivered,
                    reason: format!("undecodable task: {e}"),
                    at: crate::now_ms().0,
                };
                self.bury(&dead, counters).await?;
                return msg.ack().await.map_err(ack_err);
            }
        };
        let p = self.registry.get(processor).await?;
        let Some(p) = p.filter(|p| !p.revoked) else {
            let dead = DeadTask {
                processor: processor.to_string(),
                task: task_id,
                what: task,
                attempts: delivered,
                reason: "the processor is revoked".into(),
                at: crate::now_ms().0,
            };
            self.bury(&dead, counters).await?;
            return msg.ack().await.map_err(ack_err);
        };
        // A result already recorded (a redelivery after the worker's reply or the ack was
        // lost): done. A first delivery has none (the planner skips memories with a result).
        let key = mnemo_core::processing::derivation_key(processor, &p.version, &[task.memory]);
        if delivered > 1
            && self
                .ledger
                .with_rules(&task.user, |s| s.derivation(&key).is_some())
                .await
                .unwrap_or(false)
        {
            counters.skipped.fetch_add(1, Ordering::Relaxed);
            return msg.ack().await.map_err(ack_err);
        }
        let item = WorkItem {
            task: task_id,
            attempt: delivered,
            what: task.clone(),
        };
        let body: bytes::Bytes = serde_json::to_vec(&item).expect("serialisable").into();
        let subject = format!("{WORK_PREFIX}.{processor}");
        let mut pause = Duration::from_millis(50);
        loop {
            let r = self
                .client
                .send_request(
                    subject.clone(),
                    async_nats::Request::new()
                        .payload(body.clone())
                        .timeout(Some(self.cfg.task_timeout)),
                )
                .await;
            let failure = match r {
                Ok(reply)
                    if reply
                        .headers
                        .as_ref()
                        .is_some_and(|h| h.get(RELEASE_HEADER).is_some()) =>
                {
                    // Handed back: offer it again soon, keeping it ours meanwhile.
                    counters.released.fetch_add(1, Ordering::Relaxed);
                    let _ = msg.ack_with(AckKind::Progress).await;
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = crate::stopped(&mut stop) => return Ok(()),
                    }
                    pause = (pause * 2).min(Duration::from_secs(2));
                    continue;
                }
                Ok(reply) => match reply.headers.as_ref().and_then(|h| h.get(ERROR_HEADER)) {
                    None => {
                        counters.done.fetch_add(1, Ordering::Relaxed);
                        // A lost ack redelivers the task, and the derivation check above
                        // then acknowledges it without a worker.
                        return msg.ack().await.map_err(ack_err);
                    }
                    Some(e) => format!("the worker refused: {e}"),
                },
                Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                    // No worker: wait for one, keeping the task ours.
                    let _ = msg.ack_with(AckKind::Progress).await;
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(250)) => continue,
                        _ = crate::stopped(&mut stop) => return Ok(()),
                    }
                }
                Err(e) if e.kind() == async_nats::RequestErrorKind::TimedOut => {
                    format!("no answer within {:?}", self.cfg.task_timeout)
                }
                Err(e) => format!("the request failed: {e}"),
            };
            counters.failed.fetch_add(1, Ordering::Relaxed);
            if delivered >= self.cfg.max_failures {
                let dead = DeadTask {
                    processor: processor.to_string(),
                    task: task_id,
                    what: task,
                    attempts: delivered,
                    reason: failure,
                    at: crate::now_ms().0,
                };
                self.bury(&dead, counters).await?;
                return msg.ack().await.map_err(ack_err);
            }
            let mut backoff = Backoff::new(self.cfg.retry_after, Duration::from_secs(60));
            let mut wait = backoff.next_wait();
            for _ in 1..delivered {
                wait = backoff.next_wait();
            }
            tracing::debug!(processor = %processor, task = task_id, %failure, "task failed; redelivered later");
            return msg
                .ack_with(AckKind::Nak(Some(wait)))
                .await
                .map_err(ack_err);
        }
    }

    async fn bury(&self, dead: &DeadTask, counters: &TaskCounters) -> Result<()> {
        self.js
            .publish(
                format!("{DEAD_TASK_PREFIX}.{}.{}", dead.processor, dead.what.user),
                serde_json::to_vec(dead).expect("serialisable").into(),
            )
            .await
            .map_err(|e| ProcessingError::nats("set a task aside", e))?
            .await
            .map_err(|e| ProcessingError::nats("set a task aside", e))?;
        counters.dead.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(processor = %dead.processor, task = dead.task, reason = %dead.reason, "a task went to the dead letters");
        Ok(())
    }
}
