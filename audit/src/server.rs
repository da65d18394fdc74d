//! An operator's audit of a whole server (`mnemo-audit verify --nats --all-users`), as a
//! Certificate Transparency monitor checks a whole log: every chain, with the seal stream
//! read once up front and a [`SealCache`] shared by every chain, so each seal's signature is
//! checked once whatever the number of chains it covers.

use async_nats::jetstream;
use mnemo_core::TimestampMs;
use mnemo_core::custody::BundleItem;
use mnemo_core::verify::SealCache;
use mnemo_ledger::SealStore;
use serde::Serialize;

use crate::{Failure, ItemError, Options, SourceError, online, verify_items};

/// What an audit of every chain found.
#[derive(Clone, Debug, Serialize)]
pub struct ServerOutcome {
    /// Chains checked.
    pub users: usize,
    /// Events in them.
    pub events: u64,
    /// Signatures verified (a seal's once, whatever the chains it covers).
    pub signatures: u64,
    /// Seal records read from the seal stream.
    pub seal_records: usize,
    /// Distinct seals whose signature verified.
    pub seals_verified: usize,
    /// Every chain that failed, with its first failure.
    pub failures: Vec<Failure>,
}

impl ServerOutcome {
    /// Whether every chain verified.
    pub fn valid(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Verifies every chain on the server behind `js` (`opts.seals` is replaced by a cache of
/// this audit's own).
pub async fn verify_all(
    js: &jetstream::Context,
    opts: &Options,
    now: TimestampMs,
) -> Result<ServerOutcome, SourceError> {
    let cache = SealCache::new();
    let opts = Options {
        seals: Some(cache.clone()),
        ..opts.clone()
    };
    let users = online::list_users(js).await?;
    let seals = SealStore::reader(js.clone());
    let seal_records = seals.preload().await.map_err(|e| SourceError::Nats {
        what: "reading the seal stream",
        detail: e.to_string(),
    })?;
    let mut out = ServerOutcome {
        users: users.len(),
        events: 0,
        signatures: 0,
        seal_records,
        seals_verified: 0,
        failures: Vec::new(),
    };
    for (layout, user) in users {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<BundleItem, ItemError>>(4096);
        tokio::spawn(online::send_items(
            js.clone(),
            layout,
            user.clone(),
            now,
            seals.clone(),
            tx,
        ));
        let o = opts.clone();
        let outcome = tokio::task::spawn_blocking(move || verify_items(rx.into_iter(), &o))
            .await
            .map_err(|e| SourceError::Nats {
                what: "verifying a chain",
                detail: e.to_string(),
            })?
            .map_err(|e| SourceError::Nats {
                what: "reading a chain",
                detail: format!("{user}: {e}"),
            })?;
        out.events += outcome.summary.events;
        out.signatures += outcome.summary.signatures;
        if let Some(f) = outcome.failure {
            out.failures.push(f);
        }
    }
    out.seals_verified = cache.len();
    Ok(out)
}
