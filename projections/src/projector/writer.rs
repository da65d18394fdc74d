//! Applying a prepared batch to PostgreSQL in one transaction with the checkpoints; a
//! user whose rows PostgreSQL cannot store is isolated (savepoint) and quarantined alone.

use super::*;

/// Stage two: writes prepared batches.
pub(super) struct Writer {
    pub(super) js: jetstream::Context,
    pub(super) pool: sqlx::PgPool,
    pub(super) view: String,
    pub(super) kv: Option<KvViews>,
    pub(super) stats: Arc<ProjectorStats>,
    /// The leadership epoch its batches are fenced with.
    pub(super) epoch: i64,
}

impl Writer {
    /// One transaction with the rows and the checkpoints, KV views before its commit,
    /// dead letters after it, then the acknowledgements.
    ///
    /// With `isolate` (after the batch failed on data the database cannot store), each
    /// user's rows go in a savepoint of their own; a user whose rows fail that way is
    /// quarantined (check `view_write`) and the other users' rows commit.
    pub(super) async fn commit(&self, p: &Prepared, isolate: bool) -> Result<Vec<UserId>> {
        let mut tx = self.pool.begin().await?;
        // A rebuild's switch-over takes this lock exclusively to pause the view's writer.
        sqlx::query("SELECT pg_advisory_xact_lock_shared(hashtext($1))")
            .bind(&self.view)
            .execute(&mut *tx)
            .await?;
        // The fencing token: only the current leader's batches commit.
        let epoch: Option<i64> =
            sqlx::query_scalar("SELECT epoch FROM projector_leaders WHERE view = $1 FOR SHARE")
                .bind(&self.view)
                .fetch_optional(&mut *tx)
                .await?;
        if epoch != Some(self.epoch) {
            return Err(ProjectionError::Fenced(self.view.clone()));
        }
        // The KV heads view is written before the commit: heads only move forward by
        // compare-and-set, so a crash between it and the commit only repeats the writes.
        // They go out while PostgreSQL works on the rows.
        let mut quarantined = p.quarantined.clone();
        let mut cut_off = Vec::new();
        if isolate {
            for u in &p.users {
                let mine: Vec<&Accepted> =
                    p.accepted.iter().filter(|a| a.event.user == *u).collect();
                let Some(first) = mine.first() else { continue };
                let first = first.event.seq.0;
                let mut sp = sqlx::Connection::begin(&mut *tx).await?;
                match crate::pg::write::write_rows(
                    &mut sp,
                    &mine,
                    &p.opened,
                    &p.states,
                    std::slice::from_ref(u),
                )
                .await
                {
                    Ok(()) => sp.commit().await?,
                    Err(ProjectionError::Db(e)) if cannot_store(&e) => {
                        sp.rollback().await?;
                        tracing::error!(user = %u, seq = first, error = %e, "projector: the view cannot store this user's events; quarantined");
                        cut_off.push(u.clone());
                        quarantined.push((
                            u.clone(),
                            Quarantine {
                                seq: first,
                                check: "view_write".into(),
                                reason: format!(
                                    "the view could not store events from seq {first} on: {e}"
                                ),
                            },
                        ));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let users: Vec<UserId> = p
            .users
            .iter()
            .filter(|u| !cut_off.contains(u))
            .cloned()
            .collect();
        let rows = async {
            if !isolate {
                let all: Vec<&Accepted> = p.accepted.iter().collect();
                crate::pg::write::write_rows(&mut tx, &all, &p.opened, &p.states, &p.users).await?;
            }
            for (user, q) in &quarantined {
                sqlx::query(
                    "INSERT INTO quarantine (user_id, seq, check_code, reason, quarantined_at)
                     VALUES ($1, $2, $3, $4, now()) ON CONFLICT (user_id) DO NOTHING",
                )
                .bind(user.as_str())
                .bind(q.seq as i64)
                .bind(&q.check)
                .bind(&q.reason)
                .execute(&mut *tx)
                .await?;
            }
            for (stream, (seq, _)) in &p.last_per_stream {
                sqlx::query(
                    "INSERT INTO projector_checkpoints (view, stream, stream_seq, updated_at) VALUES ($1, $2, $3, now())
                     ON CONFLICT (view, stream) DO UPDATE SET stream_seq = GREATEST(projector_checkpoints.stream_seq, EXCLUDED.stream_seq), updated_at = now()",
                )
                .bind(&self.view)
                .bind(stream)
                .bind(*seq as i64)
                .execute(&mut *tx)
                .await?;
            }
            Ok::<_, ProjectionError>(())
        };
        let kv = async {
            match &self.kv {
                Some(kv) => kv.apply(&p.states, &users).await,
                None => Ok(()),
            }
        };
        tokio::try_join!(rows, kv)?;
        tx.commit().await?;
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats
            .applied
            .fetch_add(p.accepted.len() as u64, Ordering::Relaxed);
        // Dead letters (at least once: a crash before the ack sends them again).
        for d in &p.dead {
            self.stats.dead_letters.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(stream = %d.stream, stream_seq = d.stream_seq, reason = %d.reason, "dead letter");
            let mut h = async_nats::HeaderMap::new();
            h.insert("Mnemo-Reason", d.reason.as_str());
            h.insert("Mnemo-Stream", d.stream.as_str());
            h.insert("Mnemo-Stream-Seq", d.stream_seq.to_string().as_str());
            self.js
                .client()
                .publish_with_headers(names::dead_letter_subject(&self.view), h, d.payload.clone())
                .await
                .map_err(|e| ProjectionError::Nats(e.to_string()))?;
        }
        for (_, i) in p.last_per_stream.values() {
            p.items[*i]
                .msg
                .ack_with(AckKind::Ack)
                .await
                .map_err(|e| ProjectionError::Nats(e.to_string()))?;
        }
        Ok(cut_off)
    }
}

/// Whether PostgreSQL refused data as such (SQLSTATE class 22, data exception, e.g. a
/// time out of range or U+0000 in text; class 54, a program limit such as an index row
/// too large), rather than failing: retrying cannot help.
pub(super) fn cannot_store(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c.starts_with("22") || c.starts_with("54"))
}
