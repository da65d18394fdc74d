//! Per-account lanes: the messages of one account are handled one after another, in the
//! order they arrived, while different accounts proceed in parallel. A device that
//! pipelines its captures (several in flight) thus finds them in its chain in the order
//! it sent them (docs/EDGE.md, "Order").
//!
//! A lane exists only while it has work: the map holds accounts with messages in flight,
//! never every account seen.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The lanes. Cheap to clone.
#[derive(Clone, Default)]
pub struct Lanes {
    open: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Job>>>>,
}

impl Lanes {
    /// Runs `job` after every earlier job of `key` has finished.
    pub fn run(&self, key: &str, job: impl Future<Output = ()> + Send + 'static) {
        let mut open = self.open.lock().expect("not poisoned");
        let job: Job = Box::pin(job);
        let job = match open.get(key) {
            Some(tx) => match tx.send(job) {
                Ok(()) => return,
                Err(mpsc::error::SendError(job)) => job,
            },
            None => job,
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        tx.send(job).expect("the receiver is here");
        open.insert(key.to_owned(), tx);
        let (lanes, key) = (self.open.clone(), key.to_owned());
        tokio::spawn(async move {
            loop {
                while let Ok(job) = rx.try_recv() {
                    job.await;
                }
                // Idle: the lane closes, unless a job came in meanwhile (sends happen
                // under the same lock, so none is lost).
                let mut open = lanes.lock().expect("not poisoned");
                match rx.try_recv() {
                    Ok(job) => {
                        drop(open);
                        job.await;
                    }
                    Err(_) => {
                        open.remove(&key);
                        return;
                    }
                }
            }
        });
    }

    /// Lanes open now (accounts with work in flight).
    pub fn open(&self) -> usize {
        self.open.lock().expect("not poisoned").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_key_in_order_keys_in_parallel_and_lanes_close() {
        let lanes = Lanes::default();
        let (tx, mut rx) = mpsc::unbounded_channel();
        for i in 0..50u64 {
            let tx = tx.clone();
            // Later jobs are quicker: without the lane they would finish first.
            lanes.run("a", async move {
                tokio::time::sleep(Duration::from_millis(50 - i)).await;
                tx.send(("a", i)).unwrap();
            });
        }
        let t = tx.clone();
        lanes.run("b", async move { t.send(("b", 0)).unwrap() });
        drop(tx);
        let mut a = Vec::new();
        let mut b_at = None;
        while let Some((k, i)) = rx.recv().await {
            if k == "a" {
                a.push(i);
            } else {
                b_at = Some(a.len());
            }
        }
        assert_eq!(a, (0..50).collect::<Vec<_>>());
        assert_eq!(b_at, Some(0), "another key waited for the first");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(lanes.open(), 0, "idle lanes stay open");
    }
}
