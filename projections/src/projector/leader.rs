//! Leadership: one projector instance applies at a time. The leader holds an epoch in
//! PostgreSQL that names its consumers and fences its commits; a lost lease ends its term.

use super::*;

pub(super) fn rand_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:08x}", h.finish() as u32)
}

impl Projector {
    /// Waits until this instance leads the view: holds the view's session advisory lock on
    /// a connection of its own, and has bumped the view's epoch. `None` when stopped first.
    pub(super) async fn lead(
        &mut self,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Option<sqlx::PgConnection>> {
        let key = names::projector_lock(&self.cfg.view);
        let holder = format!("{}-{}", std::process::id(), rand_suffix());
        let mut waiting_logged = false;
        loop {
            if *stop.borrow() {
                return Ok(None);
            }
            let attempt: Result<Option<(sqlx::PgConnection, i64)>> = async {
                // A connection of its own, out of the pool: when it goes (this task
                // aborted, the process killed) the session ends and the lock with it.
                let mut conn = self.pool.acquire().await?.detach();
                let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
                    .bind(&key)
                    .fetch_one(&mut conn)
                    .await?;
                if !got {
                    return Ok(None);
                }
                let epoch: i64 = sqlx::query_scalar(
                    "INSERT INTO projector_leaders (view, epoch, holder, since) VALUES ($1, 1, $2, now())
                     ON CONFLICT (view) DO UPDATE SET epoch = projector_leaders.epoch + 1,
                       holder = EXCLUDED.holder, since = now()
                     RETURNING epoch",
                )
                .bind(&self.cfg.view)
                .bind(&holder)
                .fetch_one(&mut conn)
                .await?;
                Ok(Some((conn, epoch)))
            }
            .await;
            match attempt {
                Ok(Some((conn, epoch))) => {
                    tracing::info!(view = %self.cfg.view, epoch, "projector leads the view");
                    self.epoch = epoch;
                    return Ok(Some(conn));
                }
                Ok(None) => {
                    if !waiting_logged {
                        tracing::info!(view = %self.cfg.view, "another projector leads the view; standing by");
                        waiting_logged = true;
                    }
                }
                Err(e) => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "projector: contending for the view");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => {}
            }
        }
    }
}
