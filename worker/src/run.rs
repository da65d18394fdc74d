//! Taking tasks (docs/WORKERS.md §3): the worker subscribes to `mnemo.work.<processor>` in
//! the processor's queue group and answers each task request once: done, failed, or
//! released.
//!
//! - **Backpressure.** At most `concurrency` tasks are worked at once and `queue` more wait
//!   for a slot; a task beyond that is released at once (the `Mnemo-Task-Released` reply),
//!   and mnemo offers it again, to this worker or another, without counting a failure.
//! - **Graceful shutdown.** On SIGTERM or SIGINT (or [`Shutdown::now`]) the worker leaves
//!   the queue group, releases the tasks still waiting, and gives those being worked
//!   `grace` to finish; what has not finished by then is released too. No task is lost:
//!   a released task goes back to mnemo's durable queue, and a task whose result was
//!   already recorded is answered with the original receipt on its next delivery.

use futures::StreamExt;
use mnemo_core::names::WORK_PREFIX;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};

use crate::client::Worker;
use crate::error::WorkerError;
use crate::protocol::*;

/// How tasks are taken.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Tasks worked at once.
    pub concurrency: usize,
    /// Tasks held waiting for a slot beyond those (more are released at once).
    pub queue: usize,
    /// On shutdown, how long tasks in flight have to finish before they are released.
    pub grace: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            concurrency: 4,
            queue: 4,
            grace: Duration::from_secs(20),
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Tasks answered done.
    pub done: u64,
    /// Tasks answered with an error (mnemo retries them, then dead-letters them).
    pub failed: u64,
    /// Tasks handed back (capacity or shutdown).
    pub released: u64,
}

/// A task as a handler gets it: the work item, and the worker to fetch and submit with.
pub struct Job {
    /// The worker.
    pub worker: Worker,
    /// The task.
    pub item: WorkItem,
}

/// When to stop taking tasks. Cheap to clone.
#[derive(Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A shutdown only [`Shutdown::now`] triggers.
    pub fn new() -> Self {
        Self {
            tx: Arc::new(watch::channel(false).0),
        }
    }

    /// A shutdown that SIGTERM or SIGINT triggers.
    pub fn on_signals() -> Self {
        let s = Self::new();
        let me = s.clone();
        tokio::spawn(async move {
            #[cfg(unix)]
            {
                use tokio::signal::unix::{SignalKind, signal};
                let (Ok(mut term), Ok(mut int)) = (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::interrupt()),
                ) else {
                    return;
                };
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            #[cfg(not(unix))]
            let _ = tokio::signal::ctrl_c().await;
            me.now();
        });
        s
    }

    /// Stops now.
    pub fn now(&self) {
        self.tx.send_replace(true);
    }

    /// Whether it was triggered.
    pub fn triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once it is triggered.
    pub async fn wait(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }
}

enum Answer {
    Done(Done),
    Failed(String),
    Released(&'static str),
}

/// Takes tasks until `shutdown`, working each with `handler`; returns once every task it
/// took is answered.
pub async fn run<H, Fut>(
    worker: &Worker,
    opts: &RunOptions,
    shutdown: &Shutdown,
    handler: H,
) -> Result<RunReport, WorkerError>
where
    H: Fn(Job) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Done, String>> + Send + 'static,
{
    let subject = format!("{WORK_PREFIX}.{}", worker.processor);
    let mut sub = worker
        .client
        .queue_subscribe(subject, worker.processor.to_string())
        .await
        .map_err(|e| WorkerError::Nats(e.to_string()))?;
    let handler = Arc::new(handler);
    let slots = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let held = Arc::new(AtomicUsize::new(0));
    let limit = opts.concurrency.max(1) + opts.queue;
    let hard = Shutdown::new();
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let mut tasks = tokio::task::JoinSet::new();
    let mut leaving = false;
    loop {
        let msg = tokio::select! {
            m = sub.next() => m,
            _ = shutdown.wait(), if !leaving => {
                // Leave the queue group; what the server already sent still comes out of
                // the subscription, and is released.
                leaving = true;
                let _ = sub.unsubscribe().await;
                continue;
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let Some(msg) = msg else { break };
        let Some(reply) = msg.reply.clone() else {
            tracing::warn!(subject = %msg.subject, "a task without a reply subject: ignored");
            continue;
        };
        let item: WorkItem = match serde_json::from_slice(&msg.payload) {
            Ok(i) => i,
            Err(e) => {
                answer(
                    worker,
                    reply,
                    Answer::Failed(format!("undecodable task: {e}")),
                    &counts,
                )
                .await;
                continue;
            }
        };
        if leaving || held.load(Ordering::Acquire) >= limit {
            let why = if leaving {
                "shutting down"
            } else {
                "at capacity"
            };
            answer(worker, reply, Answer::Released(why), &counts).await;
            continue;
        }
        held.fetch_add(1, Ordering::AcqRel);
        let (w, h, slots, held, counts) = (
            worker.clone(),
            handler.clone(),
            slots.clone(),
            held.clone(),
            counts.clone(),
        );
        let (soft, hard) = (shutdown.clone(), hard.clone());
        tasks.spawn(async move {
            let outcome = tokio::select! {
                permit = slots.acquire_owned() => {
                    let _permit = permit.expect("never closed");
                    let job = Job { worker: w.clone(), item };
                    tokio::select! {
                        r = h(job) => match r {
                            Ok(done) => Answer::Done(done),
                            Err(e) => Answer::Failed(e),
                        },
                        _ = hard.wait() => Answer::Released("shut down before it finished"),
                    }
                }
                _ = soft.wait() => Answer::Released("shutting down"),
            };
            answer(&w, reply, outcome, &counts).await;
            held.fetch_sub(1, Ordering::AcqRel);
        });
    }
    // Shutting down: give the tasks in flight their grace, then release the rest.
    if tokio::time::timeout(opts.grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        hard.now();
        while tasks.join_next().await.is_some() {}
    }
    let _ = worker.client.flush().await;
    let report = RunReport {
        done: counts[0].load(Ordering::Relaxed),
        failed: counts[1].load(Ordering::Relaxed),
        released: counts[2].load(Ordering::Relaxed),
    };
    tracing::info!(
        processor = %worker.processor,
        done = report.done,
        failed = report.failed,
        released = report.released,
        "stopped taking tasks"
    );
    Ok(report)
}

async fn answer(worker: &Worker, reply: async_nats::Subject, a: Answer, counts: &[AtomicU64; 3]) {
    let mut h = async_nats::HeaderMap::new();
    let body = match a {
        Answer::Done(d) => {
            counts[0].fetch_add(1, Ordering::Relaxed);
            serde_json::to_vec(&d).expect("serialisable")
        }
        Answer::Failed(e) => {
            counts[1].fetch_add(1, Ordering::Relaxed);
            h.insert(ERROR_HEADER, e.replace(['\r', '\n'], " ").as_str());
            h.insert(ERROR_CODE_HEADER, "500");
            Vec::new()
        }
        Answer::Released(why) => {
            counts[2].fetch_add(1, Ordering::Relaxed);
            h.insert(RELEASE_HEADER, why);
            Vec::new()
        }
    };
    if let Err(e) = worker
        .client
        .publish_with_headers(reply, h, body.into())
        .await
    {
        tracing::warn!(error = %e, "a task answer was not sent (mnemo redelivers the task)");
    }
}

/// A handler for the common case: fetch the task's input, make at most one derived record
/// of it with `make`, and submit it (derived from that one input). A final refusal of the
/// fetch (revoked, no grant, erased) is done with no result; `make` returning `Err` fails
/// the task (retried, then dead-lettered).
pub fn derive_each<F, Fut>(
    make: F,
) -> impl Fn(Job) -> std::pin::Pin<Box<dyn Future<Output = Result<Done, String>> + Send>>
+ Send
+ Sync
+ 'static
where
    F: Fn(Fetched) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<DerivedRecord>, String>> + Send + 'static,
{
    let make = Arc::new(make);
    move |job: Job| {
        let make = make.clone();
        Box::pin(async move {
            let task = job.item.what;
            let input = match job.worker.fetch(&task).await {
                Ok(i) => i,
                Err(e) if e.is_final() => return Ok(Done { results: vec![] }),
                Err(e) => return Err(e.to_string()),
            };
            let Some(record) = make(input).await? else {
                return Ok(Done { results: vec![] });
            };
            let r = job
                .worker
                .submit(&task, vec![task.memory], record)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Done {
                results: vec![r.memory],
            })
        })
    }
}
