//! Rebuilding the PostgreSQL view from the chains while the live projector keeps running.
//!
//! 1. Fresh tables are made in schema `mnemo_rebuild`, and a second projector (view
//!    `rebuild`, consumers of its own) replays every chain into them from the start.
//! 2. Once it has caught up, the switch-over transaction takes the live view's advisory
//!    lock exclusively (the live projector takes it shared in every batch, so it pauses),
//!    waits until the rebuild has passed the live checkpoints, and replaces the live rows
//!    with the rebuilt ones. The live projector then resumes where it was: anything the
//!    rebuild already holds beyond that point is applied again, which changes nothing
//!    (every write is keyed by user and seq).

use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::collections::HashMap;
use std::str::FromStr;
use std::time::{Duration, Instant};
use tokio::sync::watch;

use crate::error::{ProjectionError, Result};
use crate::projector::{Projector, ProjectorConfig, lag};

const SCHEMA: &str = "mnemo_rebuild";
const SHADOW_VIEW: &str = "rebuild";

/// The tables a rebuild replaces, with the columns copied (generated ones left out).
const TABLES: &[(&str, &str)] = &[
    (
        "users",
        "user_id, last_seq, head_hash, frontier, root, created_at, updated_at",
    ),
    (
        "user_keys",
        "user_id, key_id, public_key, role, added_seq, retired_seq",
    ),
    (
        "events",
        "user_id, seq, hash, prev, kind, ts, signer, stream, stream_seq",
    ),
    (
        "memories",
        "user_id, memory_id, seq, kind, tags, captured_at, source, content_type, size, storage, ingested_at, erased_seq, erased_at, body, derived",
    ),
    (
        "grants",
        "user_id, grant_id, grantee, can_metadata, can_content, can_ask, conditions, expires_at, not_before, created_seq, revoked_seq",
    ),
    (
        "access_log",
        "user_id, seq, accessor, accessor_kind, grant_id, action, memories, ts, question",
    ),
    (
        "quarantine",
        "user_id, seq, check_code, reason, quarantined_at",
    ),
    ("processing_state", "user_id, last_seq, state"),
];

/// Refuses to rebuild when a table has a column the switch-over would not copy (a
/// migration added it and [`TABLES`] was not told): the rebuilt view would lose it.
async fn check_columns(pool: &sqlx::PgPool) -> Result<()> {
    for (t, cols) in TABLES {
        let have: Vec<String> = sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name = $1 AND is_generated = 'NEVER'",
        )
        .bind(*t)
        .fetch_all(pool)
        .await?;
        let copied: Vec<&str> = cols.split(',').map(str::trim).collect();
        let missing: Vec<&String> = have
            .iter()
            .filter(|c| !copied.contains(&c.as_str()))
            .collect();
        if !missing.is_empty() {
            return Err(ProjectionError::Rebuild(format!(
                "table {t} has columns a rebuild would not copy: {missing:?}"
            )));
        }
    }
    Ok(())
}

/// What a rebuild did.
#[derive(Clone, Debug)]
pub struct RebuildReport {
    /// Events replayed.
    pub events: u64,
    /// Seconds it took, switch-over included.
    pub seconds: f64,
}

async fn checkpoints(pool: &sqlx::PgPool, view: &str) -> Result<HashMap<String, i64>> {
    Ok(sqlx::query_as::<_, (String, i64)>(
        "SELECT stream, stream_seq FROM projector_checkpoints WHERE view = $1",
    )
    .bind(view)
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect())
}

/// Rebuilds the view `view` (the live projector's) of the database at `database_url`.
/// `progress(done, total)` is called as events are replayed.
pub async fn rebuild(
    js: &async_nats::jetstream::Context,
    ledger: &mnemo_ledger::LedgerReader,
    database_url: &str,
    view: &str,
    progress: impl Fn(u64, u64),
) -> Result<RebuildReport> {
    // The view name goes into SQL text below: only plain names are accepted.
    if view.is_empty()
        || !view
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ProjectionError::Rebuild(format!(
            "invalid view name {view:?}"
        )));
    }
    let started = Instant::now();
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(database_url)
        .await?;
    check_columns(&pool).await?;
    let mut setup = format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA};");
    for (t, _) in TABLES
        .iter()
        .chain([&("projector_checkpoints", ""), &("projector_leaders", "")])
    {
        setup.push_str(&format!(
            "CREATE TABLE {SCHEMA}.{t} (LIKE public.{t} INCLUDING ALL);"
        ));
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(setup))
        .execute(&pool)
        .await?;
    let opts = PgConnectOptions::from_str(database_url)
        .map_err(ProjectionError::Db)?
        .options([("search_path", SCHEMA)])
        .disable_statement_logging();
    let shadow = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(opts)
        .await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let projector = Projector::new(
        js.clone(),
        ledger.clone(),
        shadow.clone(),
        ProjectorConfig {
            view: SHADOW_VIEW.into(),
            kv_heads: false,
            rescan: Duration::from_millis(200),
            ..Default::default()
        },
    );
    let stats = projector.stats();
    let task = tokio::spawn(projector.run(stop_rx));
    // Replay until caught up.
    loop {
        let behind = lag(js, &shadow, SHADOW_VIEW).await?;
        let done = stats.applied.load(std::sync::atomic::Ordering::Relaxed)
            + stats
                .dead_letters
                .load(std::sync::atomic::Ordering::Relaxed);
        progress(done, done + behind);
        if behind == 0 && (done > 0 || started.elapsed() > Duration::from_secs(2)) {
            break;
        }
        if task.is_finished() {
            return Err(ProjectionError::Rebuild(
                "the rebuild projector stopped".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Switch over.
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(view)
        .execute(&mut *tx)
        .await?;
    let live: HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT stream, stream_seq FROM projector_checkpoints WHERE view = $1",
    )
    .bind(view)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let mine = checkpoints(&shadow, SHADOW_VIEW).await?;
        if live
            .iter()
            .all(|(s, seq)| mine.get(s).is_some_and(|m| m >= seq))
        {
            break;
        }
        if Instant::now() > deadline {
            return Err(ProjectionError::Rebuild(
                "the rebuild could not reach the live view".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(true);
    task.await
        .map_err(|e| ProjectionError::Rebuild(format!("rebuild projector: {e}")))??;
    let mut swap = String::new();
    for (t, cols) in TABLES {
        swap.push_str(&format!(
            "DELETE FROM public.{t}; INSERT INTO public.{t} ({cols}) SELECT {cols} FROM {SCHEMA}.{t};"
        ));
    }
    swap.push_str(&format!(
        "DELETE FROM public.projector_checkpoints WHERE view = '{v}';
         INSERT INTO public.projector_checkpoints (view, stream, stream_seq, updated_at)
           SELECT '{v}', stream, stream_seq, now() FROM {SCHEMA}.projector_checkpoints WHERE view = '{SHADOW_VIEW}';
         DROP SCHEMA {SCHEMA} CASCADE;",
        v = view,
    ));
    sqlx::raw_sql(sqlx::AssertSqlSafe(swap))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    // The shadow consumers are not needed any more.
    let mut names = js.stream_names();
    while let Some(Ok(n)) = futures::StreamExt::next(&mut names).await {
        if mnemo_core::names::is_chain_stream(&n)
            && let Ok(s) = js.get_stream(&n).await
        {
            let prefix = mnemo_core::names::projector_consumer_prefix(SHADOW_VIEW);
            let mut names = s.consumer_names();
            let mut shadow = Vec::new();
            while let Some(Ok(c)) = futures::StreamExt::next(&mut names).await {
                if c.starts_with(&prefix) {
                    shadow.push(c);
                }
            }
            for c in shadow {
                let _ = s.delete_consumer(&c).await;
            }
        }
    }
    Ok(RebuildReport {
        events: stats.applied.load(std::sync::atomic::Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
    })
}
