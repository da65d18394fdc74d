//! The source: durable consumers on every chain stream, resuming after each stream's
//! checkpoint, bounded in flight; and [`lag`], how far the views are behind the streams.

use super::*;

/// Events behind the chains for `view`: the sum over chain streams of the stream's last
/// sequence minus the view's checkpoint in it.
pub async fn lag(js: &jetstream::Context, pool: &sqlx::PgPool, view: &str) -> Result<u64> {
    let cps: HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT stream, stream_seq FROM projector_checkpoints WHERE view = $1",
    )
    .bind(view)
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    let mut names = js.stream_names();
    let mut total = 0u64;
    while let Some(n) = names.next().await {
        let n = n.map_err(|e| ProjectionError::Nats(e.to_string()))?;
        if !names::is_chain_stream(&n) {
            continue;
        }
        let mut s = js
            .get_stream(&n)
            .await
            .map_err(|e| ProjectionError::Nats(e.to_string()))?;
        let last = s
            .info()
            .await
            .map_err(|e| ProjectionError::Nats(e.to_string()))?
            .state
            .last_sequence;
        total += last.saturating_sub(cps.get(&n).copied().unwrap_or(0) as u64);
    }
    Ok(total)
}

impl Projector {
    pub(super) async fn chain_streams(&self) -> Result<Vec<String>> {
        let mut names = self.js.stream_names();
        let mut out = Vec::new();
        while let Some(n) = names.next().await {
            let n = n.map_err(|e| ProjectionError::Nats(e.to_string()))?;
            if names::is_chain_stream(&n) {
                out.push(n);
            }
        }
        Ok(out)
    }

    pub(super) async fn checkpoint(&self, stream: &str) -> Result<u64> {
        let v: Option<i64> = sqlx::query_scalar(
            "SELECT stream_seq FROM projector_checkpoints WHERE view = $1 AND stream = $2",
        )
        .bind(&self.cfg.view)
        .bind(stream)
        .fetch_optional(&self.pool)
        .await?;
        Ok(v.unwrap_or(0) as u64)
    }

    /// Starts a consumer on `stream` right after the view's checkpoint and forwards its
    /// messages (the channel's bound is the backpressure).
    pub(super) async fn start_source(
        &self,
        stream: String,
        tx: mpsc::Sender<Item>,
    ) -> Result<tokio::task::JoinHandle<()>> {
        let from = self.checkpoint(&stream).await?;
        let s = self
            .js
            .get_stream(&stream)
            .await
            .map_err(|e| ProjectionError::Nats(e.to_string()))?;
        // One consumer per leadership epoch: a stale leader's pulls go to a consumer that no
        // longer exists and can never take messages from this one. Older ones go away.
        let prefix = names::projector_consumer_prefix(&self.cfg.view);
        let name = format!("{prefix}{}", self.epoch);
        let mut names = s.consumer_names();
        let mut old = Vec::new();
        while let Some(Ok(n)) = names.next().await {
            if n.starts_with(&prefix) || n == format!("mnemo-proj-{}", self.cfg.view) {
                old.push(n);
            }
        }
        for n in old {
            let _ = s.delete_consumer(&n).await;
        }
        // The checkpoint in PostgreSQL is the truth: the consumer starts after it.
        let c = s
            .create_consumer(consumer::pull::Config {
                durable_name: Some(name),
                ack_policy: consumer::AckPolicy::All,
                ack_wait: Duration::from_secs(30),
                max_ack_pending: self.cfg.max_ack_pending,
                deliver_policy: if from == 0 {
                    consumer::DeliverPolicy::All
                } else {
                    consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: from + 1,
                    }
                },
                ..Default::default()
            })
            .await
            .map_err(|e| ProjectionError::Nats(e.to_string()))?;
        Ok(tokio::spawn(async move {
            let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
            loop {
                let mut msgs = match c
                    .stream()
                    .max_messages_per_batch(1000)
                    .heartbeat(Duration::from_secs(5))
                    .messages()
                    .await
                {
                    Ok(m) => {
                        backoff.reset();
                        m
                    }
                    Err(e) => {
                        tracing::warn!(%stream, error = %e, "projector source: retrying");
                        tokio::time::sleep(backoff.next_wait()).await;
                        continue;
                    }
                };
                while let Some(m) = msgs.next().await {
                    match m {
                        Ok(msg) => {
                            if tx
                                .send(Item {
                                    stream: stream.clone(),
                                    msg,
                                })
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(%stream, error = %e, "projector source error");
                            break;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }))
    }
}
