//! The planner: turns memories a processor may see into tasks on the durable work queue.
//!
//! It follows the chains of users who gave a processing grant: the enrolled chains, one
//! key each in the KV bucket `mnemo-planner` (enrolled by the API before it appends the
//! grant, and by the planner when it sees one). Each append to an enrolled chain wakes it
//! (the chain subjects; other users' appends cost a decode and a set look-up), a sweep
//! every `sweep` covers wake-ups lost while it was away, and it reads each chain from where
//! it stopped. For every memory (ingested or derived) and every live
//! processing grant of the chain whose processor takes its kind, it publishes a task
//! `mnemo.task.<processor>.<user>` with a message id per (processor, user, memory), so a
//! re-planned task within the dedup window is one task. A new processing grant queues the
//! memories already in the chain (the backfill). Where it stopped is kept per chain in the
//! KV bucket `mnemo-planner` after the tasks are acknowledged by JetStream: a crash in
//! between re-plans, it never skips. The fetch checks again: a task is a hint, not a grant.

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use mnemo_core::grant::MemoryFacts;
use mnemo_core::names::{CHAIN_SUBJECT_PREFIX, PLANNER_BUCKET, task_subject};
use mnemo_core::{EventBody, GrantId, Hash32, ProcessingGrant, Seq, UserId};
use mnemo_ledger::Ledger;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::error::{ProcessingError, Result};
use crate::protocol::Task;
use crate::registry::{Processor, Registry};

/// Opens (creating when missing) the bucket of enrolled chains and their cursors.
pub async fn open_cursors(js: &jetstream::Context, replicas: usize) -> Result<kv::Store> {
    Ok(mnemo_ledger::provision::ensure_kv(
        js,
        kv::Config {
            bucket: PLANNER_BUCKET.into(),
            description: "mnemo planner progress per chain".into(),
            num_replicas: replicas,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        },
    )
    .await?)
}

/// Where the planner stopped in one chain.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Cursor {
    /// Last seq planned.
    seq: u64,
    /// The grants planned up to `seq` (a grant not here gets a backfill).
    grants: Vec<GrantId>,
}

/// Counters of a planner.
#[derive(Debug, Default)]
pub struct PlannerStats {
    /// Tasks published (repeats deduplicated by the queue included).
    pub planned: std::sync::atomic::AtomicU64,
}

/// The planner.
#[derive(Clone)]
pub struct Planner {
    ledger: Ledger,
    js: jetstream::Context,
    registry: Registry,
    cursors: kv::Store,
    sweep: Duration,
    /// Its counters.
    pub stats: std::sync::Arc<PlannerStats>,
}

impl Planner {
    /// A planner over `ledger`'s chains.
    pub async fn new(
        ledger: Ledger,
        js: jetstream::Context,
        registry: Registry,
        sweep: Duration,
    ) -> Result<Self> {
        let cursors = open_cursors(&js, ledger.config().replicas).await?;
        Ok(Self {
            ledger,
            js,
            registry,
            cursors,
            sweep,
            stats: Default::default(),
        })
    }

    /// Enrolls `user`'s chain (idempotent): from now on the planner follows it.
    pub async fn enroll(cursors: &kv::Store, user: &UserId) -> Result<()> {
        let empty = serde_json::to_vec(&Cursor::default()).expect("serialisable");
        match cursors.create(user.as_str(), empty.into()).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(ProcessingError::nats("enroll a chain for planning", e)),
        }
    }

    /// The bucket of enrolled chains.
    pub fn cursors(&self) -> &kv::Store {
        &self.cursors
    }

    /// Plans until `stop`.
    pub async fn run(
        &self,
        client: async_nats::Client,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<()> {
        let mut appends = client
            .subscribe(format!("{CHAIN_SUBJECT_PREFIX}.>"))
            .await
            .map_err(|e| ProcessingError::nats("subscribe to the chains", e))?;
        let mut sweep = tokio::time::interval(self.sweep);
        let mut dirty: HashSet<UserId> = HashSet::new();
        let mut enrolled: HashSet<UserId> = self.known_chains().await?.into_iter().collect();
        loop {
            tokio::select! {
                m = appends.next() => {
                    let Some(m) = m else { return Ok(()) };
                    self.woken(&m, &mut enrolled, &mut dirty).await?;
                    // Gather the wake-ups already there, then plan each chain once.
                    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(20), appends.next()).await {
                        self.woken(&m, &mut enrolled, &mut dirty).await?;
                        if dirty.len() >= 256 { break; }
                    }
                }
                _ = sweep.tick() => {
                    enrolled = self.known_chains().await?.into_iter().collect();
                    dirty.extend(enrolled.iter().cloned());
                }
                _ = crate::stopped(&mut stop) => return Ok(()),
            }
            for u in std::mem::take(&mut dirty) {
                if let Err(e) = self.plan(&u).await {
                    tracing::warn!(user = %u, error = %e, "planning failed; retried on the next wake-up or sweep");
                }
            }
        }
    }

    /// An append woke the planner: an enrolled chain is marked; a processing grant
    /// enrolls its chain.
    async fn woken(
        &self,
        m: &async_nats::Message,
        enrolled: &mut HashSet<UserId>,
        dirty: &mut HashSet<UserId>,
    ) -> Result<()> {
        let Some(u) = m
            .subject
            .rsplit('.')
            .next()
            .and_then(|u| UserId::new(u).ok())
        else {
            return Ok(());
        };
        if enrolled.contains(&u) {
            dirty.insert(u);
            return Ok(());
        }
        let granted = mnemo_ledger::envelope::decode(&m.payload)
            .ok()
            .and_then(|(wire, _)| mnemo_core::Event::from_wire(&wire).ok())
            .is_some_and(|(e, _)| matches!(e.body, EventBody::ProcessingGranted { .. }));
        if granted {
            Self::enroll(&self.cursors, &u).await?;
            enrolled.insert(u.clone());
            dirty.insert(u);
        }
        Ok(())
    }

    async fn known_chains(&self) -> Result<Vec<UserId>> {
        let mut keys = self
            .cursors
            .keys()
            .await
            .map_err(|e| ProcessingError::nats("list planner cursors", e))?;
        let mut out = Vec::new();
        while let Some(k) = keys.next().await {
            if let Ok(u) = k.map(UserId::new) {
                out.extend(u.ok());
            }
        }
        Ok(out)
    }

    /// Plans one chain: publishes the tasks of every memory not planned yet for each live
    /// processing grant. Returns how many tasks were published.
    pub async fn plan(&self, user: &UserId) -> Result<usize> {
        let (grants, len) = self
            .ledger
            .with_rules(user, |s| {
                let live: Vec<ProcessingGrant> = s
                    .processing_grants()
                    .filter(|g| g.live(crate::now_ms()).is_ok())
                    .cloned()
                    .collect();
                (live, s.len())
            })
            .await?;
        if grants.is_empty() {
            return Ok(0);
        }
        let cursor: Cursor = match self
            .cursors
            .get(user.as_str())
            .await
            .map_err(|e| ProcessingError::nats("read a planner cursor", e))?
        {
            Some(b) => serde_json::from_slice(&b).unwrap_or_default(),
            None => Cursor::default(),
        };
        let mut processors: HashMap<GrantId, Processor> = HashMap::new();
        for g in &grants {
            if let Some(p) = self.registry.get(&g.processor).await?
                && !p.revoked
            {
                processors.insert(g.id, p);
            }
        }
        let fresh: HashSet<GrantId> = grants
            .iter()
            .filter(|g| !cursor.grants.contains(&g.id))
            .map(|g| g.id)
            .collect();
        let from = if fresh.is_empty() { cursor.seq + 1 } else { 1 };
        if from > len {
            return Ok(0);
        }
        let mut published = 0;
        let mut acks = Vec::new();
        let mut candidates = Vec::new();
        let mut reader = self.ledger.read(user, Seq(from)).await?;
        while let Some(e) = reader.next().await? {
            if e.event.seq.0 > len {
                break;
            }
            let Some(memory) = e.event.body.new_memory() else {
                continue;
            };
            let made_by = match &e.event.body {
                EventBody::MemoryDerived { grant, .. } => grants
                    .iter()
                    .find(|g| g.id == *grant)
                    .map(|g| g.processor.clone()),
                _ => None,
            };
            let wanted: Vec<&ProcessingGrant> = grants
                .iter()
                .filter(|g| e.event.seq.0 > cursor.seq || fresh.contains(&g.id))
                .filter(|g| processors.contains_key(&g.id))
                .filter(|g| made_by.as_ref() != Some(&g.processor))
                .collect();
            if wanted.is_empty() {
                continue;
            }
            let opened = match self.ledger.open_memory(&e).await {
                Ok(o) => o,
                // Erased (or its key gone): nothing to process.
                Err(mnemo_ledger::LedgerError::Erased(_)) => continue,
                Err(other) => return Err(other.into()),
            };
            let r = &opened.record;
            let facts = MemoryFacts {
                id: memory,
                kind: &r.kind,
                tags: &r.tags,
                captured_at: r.captured_at,
                ingested_at: e.event.timestamp,
                erased: false,
            };
            for g in wanted {
                let p = &processors[&g.id];
                if !p.consumes_kind(&r.kind) || g.allows(&facts, crate::now_ms()).is_err() {
                    continue;
                }
                let key = mnemo_core::processing::derivation_key(&p.name, &p.version, &[memory]);
                candidates.push((
                    task_subject(p.name.as_str(), user.as_str()),
                    format!("{}.{user}.{memory}.{}", p.name, g.id),
                    Task {
                        user: user.clone(),
                        memory,
                        grant: g.id,
                    },
                    key,
                ));
            }
        }
        // Memories this version already processed get no task.
        let done: HashSet<Hash32> = self
            .ledger
            .with_rules(user, |s| {
                candidates
                    .iter()
                    .filter(|c| s.derivation(&c.3).is_some())
                    .map(|c| c.3)
                    .collect()
            })
            .await?;
        for (subject, id, task, key) in candidates {
            if done.contains(&key) {
                continue;
            }
            let msg = async_nats::jetstream::message::PublishMessage::build()
                .payload(serde_json::to_vec(&task).expect("serialisable").into())
                .message_id(id);
            let ack = self
                .js
                .send_publish(subject, msg)
                .await
                .map_err(|e| ProcessingError::nats("queue a task", e))?;
            acks.push(ack);
            published += 1;
            if acks.len() >= 256 {
                for a in acks.drain(..) {
                    a.await
                        .map_err(|e| ProcessingError::nats("queue a task", e))?;
                }
            }
        }
        for a in acks {
            a.await
                .map_err(|e| ProcessingError::nats("queue a task", e))?;
        }
        let next = Cursor {
            seq: len,
            grants: grants.iter().map(|g| g.id).collect(),
        };
        self.cursors
            .put(
                user.as_str(),
                serde_json::to_vec(&next).expect("serialisable").into(),
            )
            .await
            .map_err(|e| ProcessingError::nats("store a planner cursor", e))?;
        self.stats
            .planned
            .fetch_add(published as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(published)
    }
}
