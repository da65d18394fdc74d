//! SIGTERM to a Rust worker (`mnemo-noop-worker`, the worker library's run loop) while it
//! holds tasks: it leaves the queue group, hands back what waits, finishes what it works
//! on within its grace period (or hands that back too when the grace runs out), and exits
//! cleanly. No task is lost, none fails, none is done twice.

mod support;

use mnemo_core::{MemoryId, ProcessorId};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::*;

fn term(h: &mut Harness, i: usize) -> (std::process::ExitStatus, Duration) {
    let pid = nix::unistd::Pid::from_raw(h.workers[i].id() as i32);
    let t = Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = h.workers[i].wait().unwrap();
    (status, t.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_or_releases_the_tasks_in_flight_and_none_is_lost() {
    let mut h = harness().await;
    h.start(fast()).await;
    let alice = user("alice");
    h.stack.ledger.create_user(&alice).await.unwrap();
    let key = h.register("noop", &["note"]).await;
    h.grant(&alice, "noop", &["note"]).await;
    let mut all = HashSet::new();
    for i in 0..40 {
        let r = h
            .stack
            .ledger
            .append(&alice, text(&format!("note {i}")))
            .await
            .unwrap();
        all.insert(r.memory.unwrap());
    }
    let opts = |delay: &'static str, grace: &'static str| {
        [
            ("MNEMO_NOOP_DELAY_MS", delay),
            ("MNEMO_WORKER_CONCURRENCY", "4"),
            ("MNEMO_WORKER_QUEUE", "4"),
            ("MNEMO_WORKER_GRACE_MS", grace),
        ]
    };
    // 1. Within the grace: the four tasks being worked finish, the waiting ones go back.
    let w = h.spawn_worker("noop", &key, &opts("400", "20000"));
    wait_for("4 results", Duration::from_secs(30), || async {
        h.derived(&alice).await.len() >= 4
    })
    .await;
    let (status, took) = term(&mut h, w);
    let after_first = h.derived(&alice).await.len();
    eprintln!("first worker: {status} after {took:?}, {after_first} of 40 done");
    assert!(status.success(), "a clean exit: {status}");
    assert!(after_first < 40, "stopped in the middle");
    // 2. Past the grace: tasks that take 5 s are handed back after 300 ms.
    let w = h.spawn_worker("noop", &key, &opts("5000", "300"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, took) = term(&mut h, w);
    eprintln!("second worker: {status} after {took:?}");
    assert!(status.success(), "a clean exit: {status}");
    assert!(
        took < Duration::from_secs(4),
        "the grace bounds the exit: {took:?}"
    );
    // 3. A new worker does the rest.
    h.spawn_worker("noop", &key, &opts("10", "20000"));
    wait_for("40 results", Duration::from_secs(60), || async {
        h.derived(&alice).await.len() >= 40
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let derived = h.derived(&alice).await;
    assert_eq!(derived.len(), 40, "none done twice");
    let covered: HashSet<MemoryId> = derived.iter().map(|(_, i)| i[0]).collect();
    assert_eq!(covered, all, "none lost");
    let c = h.stats.as_ref().unwrap().lock().unwrap()[&ProcessorId::new("noop").unwrap()].clone();
    let (failed, released) = (
        c.failed.load(Ordering::Relaxed),
        c.released.load(Ordering::Relaxed),
    );
    eprintln!("dispatcher: {failed} failed, {released} released");
    assert_eq!(failed, 0, "a graceful stop is not a failure");
    assert!(released > 0, "tasks were handed back");
    let dead = mnemo_processing::queue::dead_letters(&h.stack.js, Some("noop"), 100)
        .await
        .unwrap();
    assert!(dead.is_empty());
    h.stop().await;
}
