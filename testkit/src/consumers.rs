//! The server's consumer count sampled while something runs: what the tests that promise
//! "no consumer per user" or "per epoch" assert on.

use async_nats::jetstream;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Samples the account's JetStream consumer count every 5 ms until [`peak`](Self::peak).
pub struct ConsumerPeak {
    stop: watch::Sender<bool>,
    sampler: JoinHandle<usize>,
}

impl ConsumerPeak {
    /// Starts sampling on `js`.
    pub fn start(js: jetstream::Context) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let sampler = tokio::spawn(async move {
            let mut peak = 0;
            loop {
                if let Ok(a) = js.query_account().await {
                    peak = peak.max(a.consumers);
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                    _ = stopped.changed() => return peak,
                }
            }
        });
        Self { stop, sampler }
    }

    /// Stops sampling; the highest count seen.
    pub async fn peak(self) -> usize {
        let _ = self.stop.send(true);
        self.sampler.await.expect("the sampler does not panic")
    }
}
