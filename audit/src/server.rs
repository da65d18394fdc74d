//! An operator's audit of a whole server (`mnemo-audit verify --nats --all-users`), as a
//! Certificate Transparency monitor checks a whole log: every chain stream is read once, in
//! stream order, and each message goes to its user's verifier (a user's events are in chain
//! order within its stream). The seal stream is read once up front and a [`SealCache`] is
//! shared by every chain, so each seal's signature is checked once whatever the number of
//! chains it covers. Each chain gets the same checks as `verify --nats --user`: its
//! anchors, every event, the end.

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use mnemo_anchor::AnchorReader;
use mnemo_core::custody::{BundleItem, CustodyVerifier};
use mnemo_core::verify::SealCache;
use mnemo_core::{Event, Hash32, TimestampMs, UserId};
use mnemo_ledger::{SealStore, envelope};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

use crate::{Failure, Options, SourceError, online};

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

fn nats(what: &'static str, e: impl std::fmt::Display) -> SourceError {
    SourceError::Nats {
        what,
        detail: e.to_string(),
    }
}

struct Chain {
    verifier: CustodyVerifier,
    events: u64,
    head: Hash32,
}

/// Verifies every chain on the server behind `js` under `opts.policy` (`opts.seals` and
/// `opts.threads` are not used: signatures are checked on this task, a seal's once).
pub async fn verify_all(
    js: &jetstream::Context,
    opts: &Options,
    now: TimestampMs,
) -> Result<ServerOutcome, SourceError> {
    let cache = SealCache::new();
    let users = online::list_users(js).await?;
    let seals = SealStore::reader(js.clone());
    let seal_records = seals
        .preload()
        .await
        .map_err(|e| nats("reading the seal stream", e))?;
    let anchors = AnchorReader::open(js)
        .await
        .map_err(|e| nats("reading the anchors", e))?;
    let mut chains: BTreeMap<UserId, Chain> = BTreeMap::new();
    let mut streams = BTreeSet::new();
    for (layout, user) in &users {
        let mut v = CustodyVerifier::new(opts.policy.clone()).with_seal_cache(cache.clone());
        let mut items = vec![online::header(user, now)];
        if let Some(reader) = &anchors {
            for (epoch_proof, receipt) in reader
                .anchors_for(user)
                .await
                .map_err(|e| nats("reading the anchors", e))?
            {
                items.push(BundleItem::Anchor {
                    epoch_proof,
                    receipt,
                });
            }
        }
        for item in items {
            // A failure is kept by the verifier and reported when it finishes.
            let _ = v.push(item);
        }
        streams.insert(layout.locate(user).stream);
        chains.insert(
            user.clone(),
            Chain {
                verifier: v,
                events: 0,
                head: Hash32::ZERO,
            },
        );
    }
    for name in streams {
        read_stream(js, &name, &seals, &mut chains).await?;
    }
    let mut out = ServerOutcome {
        users: chains.len(),
        events: 0,
        signatures: 0,
        seal_records,
        seals_verified: 0,
        failures: Vec::new(),
    };
    for (user, mut c) in chains {
        let _ = c.verifier.push(BundleItem::End {
            events: c.events,
            head: c.head,
        });
        out.events += c.events;
        match c.verifier.finish() {
            Ok(summary) => out.signatures += summary.signatures,
            Err(e) => out.failures.push(Failure::from_audit(Some(user), &e)),
        }
    }
    out.seals_verified = cache.len();
    Ok(out)
}

/// Reads stream `name` from its start to its current end and hands each chain message to
/// its user's verifier.
async fn read_stream(
    js: &jetstream::Context,
    name: &str,
    seals: &SealStore,
    chains: &mut BTreeMap<UserId, Chain>,
) -> Result<(), SourceError> {
    let mut stream = js
        .get_stream(name)
        .await
        .map_err(|e| nats("opening a chain stream", e))?;
    let last = stream
        .info()
        .await
        .map_err(|e| nats("chain stream info", e))?
        .state
        .last_sequence;
    if last == 0 {
        return Ok(());
    }
    let c = stream
        .create_consumer(consumer::pull::OrderedConfig::default())
        .await
        .map_err(|e| nats("reading a chain stream", e))?;
    let mut msgs = c
        .messages()
        .await
        .map_err(|e| nats("reading a chain stream", e))?;
    while let Some(m) = msgs.next().await {
        let m = m.map_err(|e| nats("reading a chain stream", e))?;
        let seq = m
            .info()
            .map_err(|e| nats("reading a chain stream", e))?
            .stream_sequence;
        if let Some(user) = mnemo_core::names::chain_subject_user(m.subject.as_str())
            && let Some(chain) = chains.get_mut(&user)
        {
            chain.events += 1;
            let decoded = envelope::decode(&m.payload)
                .ok()
                .and_then(|(wire, _)| Event::from_wire(&wire).ok());
            match decoded {
                Some((event, hash)) => {
                    chain.head = hash;
                    let event = seals
                        .resolve(event)
                        .await
                        .map_err(|e| nats("reading a seal", e))?;
                    let _ = chain.verifier.push_event(&event, hash);
                }
                None => {
                    // The verifier names what does not decode.
                    let wire = envelope::decode(&m.payload)
                        .map(|(w, _)| w.to_vec())
                        .unwrap_or_else(|_| m.payload.to_vec());
                    let _ = chain.verifier.push(BundleItem::Event {
                        wire: mnemo_core::custody::HexBytes(wire),
                    });
                }
            }
        }
        if seq >= last {
            break;
        }
    }
    Ok(())
}
