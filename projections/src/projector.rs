//! The projector: consumers on every chain stream, one applier, exactly-once application.

use async_nats::jetstream::{self, AckKind, consumer, kv};
use bytes::Bytes;
use futures::StreamExt;
use mnemo_core::{Event, EventBody, Hash32, Seq, SignatureBatch, SignatureCheck, UserId};
use mnemo_ledger::{KeyCache, Ledger, LedgerError, StoredEvent, envelope};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

use crate::error::{ProjectionError, Result};
use crate::state::{self, Quarantine, UserState};
use mnemo_core::names::{self, HEADS_BUCKET};

/// Projector options.
#[derive(Clone, Debug)]
pub struct ProjectorConfig {
    /// The view's name: names its consumers and checkpoints.
    pub view: String,
    /// Most events applied in one transaction.
    pub batch_max: usize,
    /// How long a batch waits to fill once it has an event.
    pub batch_wait: Duration,
    /// Unacknowledged messages per consumer at most (bounded in flight).
    pub max_ack_pending: i64,
    /// Messages buffered between consumers and the applier (backpressure beyond it).
    pub buffer: usize,
    /// How often new chain streams are looked for.
    pub rescan: Duration,
    /// Also maintain the KV heads view.
    pub kv_heads: bool,
    /// Replicas of the KV view buckets (3 on a cluster).
    pub replicas: usize,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        Self {
            view: "pg".into(),
            batch_max: 2000,
            batch_wait: Duration::from_millis(20),
            max_ack_pending: 20_000,
            buffer: 20_000,
            rescan: Duration::from_secs(2),
            kv_heads: true,
            replicas: 1,
        }
    }
}

/// Counters, for metrics.
#[derive(Debug, Default)]
pub struct ProjectorStats {
    /// Events applied.
    pub applied: AtomicU64,
    /// Events sent to the dead-letter subject.
    pub dead_letters: AtomicU64,
    /// Transactions committed.
    pub batches: AtomicU64,
    /// Failures retried: batches that did not apply, lost or contested leadership.
    pub retries: AtomicU64,
}

/// A user's checkpoint as kept in the KV heads view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Number of events.
    pub seq: u64,
    /// Hash of the last event.
    pub hash: Hash32,
    /// Chain tree root over all events.
    pub root: Hash32,
}

struct Item {
    stream: String,
    msg: jetstream::Message,
}

/// Builds the views. See the crate docs.
pub struct Projector {
    js: jetstream::Context,
    ledger: Ledger,
    pool: sqlx::PgPool,
    cfg: ProjectorConfig,
    stats: Arc<ProjectorStats>,
    states: HashMap<UserId, UserState>,
    checkpoints: HashMap<String, u64>,
    /// Generation keys, kept across batches; a user's are dropped at each erasure event.
    keys: KeyCache,
    /// The leadership epoch this instance holds (names its consumers, fences its commits).
    epoch: i64,
}

/// How a term as leader ended.
enum Term {
    Stopped,
    Lost,
}

pub(crate) struct Accepted {
    pub(crate) event: Event,
    pub(crate) hash: Hash32,
    pub(crate) sealed: Bytes,
    pub(crate) stream: String,
    pub(crate) stream_seq: u64,
}

struct DeadLetter {
    stream: String,
    stream_seq: u64,
    reason: String,
    payload: Bytes,
}

fn rand_suffix() -> String {
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
    /// A projector writing into the database behind `pool`.
    pub fn new(
        js: jetstream::Context,
        ledger: Ledger,
        pool: sqlx::PgPool,
        cfg: ProjectorConfig,
    ) -> Self {
        Self {
            js,
            ledger,
            pool,
            cfg,
            stats: Arc::new(ProjectorStats::default()),
            states: HashMap::new(),
            checkpoints: HashMap::new(),
            keys: KeyCache::default(),
            epoch: 0,
        }
    }

    /// Waits until this instance leads the view: holds the view's session advisory lock on
    /// a connection of its own, and has bumped the view's epoch. `None` when stopped first.
    async fn lead(
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

    /// The counters.
    pub fn stats(&self) -> Arc<ProjectorStats> {
        self.stats.clone()
    }

    async fn chain_streams(&self) -> Result<Vec<String>> {
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

    async fn checkpoint(&self, stream: &str) -> Result<u64> {
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
    async fn start_source(
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
            loop {
                let mut msgs = match c
                    .stream()
                    .max_messages_per_batch(1000)
                    .heartbeat(Duration::from_secs(5))
                    .messages()
                    .await
                {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(%stream, error = %e, "projector source: retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
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

    /// Runs until `stop` turns true.
    ///
    /// Two stages overlap: this task verifies and decrypts the next batch while a writer
    /// task puts the previous one into PostgreSQL and KV. Batches reach the writer in
    /// order; one that fails (database down) is retried until it applies, its messages
    /// unacknowledged meanwhile, so nothing is lost and the bounded channel between the
    /// stages holds everything else back.
    ///
    /// Several instances may run it for one view: one leads (session advisory lock,
    /// fenced commits), the others stand by and take over when it dies or loses its
    /// database session.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<()> {
        loop {
            let Some(lock) = self.lead(&mut stop).await? else {
                return Ok(());
            };
            self.states.clear();
            self.checkpoints.clear();
            self.keys = KeyCache::default();
            match self.run_term(lock, stop.clone()).await? {
                Term::Stopped => return Ok(()),
                Term::Lost => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(view = %self.cfg.view, "projector lost the lead; contending again");
                }
            }
        }
    }

    async fn run_term(
        &mut self,
        mut lock: sqlx::PgConnection,
        mut stop: watch::Receiver<bool>,
    ) -> Result<Term> {
        let kv = if self.cfg.kv_heads {
            Some(KvViews::open(&self.js, self.cfg.replicas).await?)
        } else {
            None
        };
        let writer = Writer {
            js: self.js.clone(),
            pool: self.pool.clone(),
            view: self.cfg.view.clone(),
            kv,
            stats: self.stats.clone(),
            epoch: self.epoch,
        };
        let (ptx, mut prx) = mpsc::channel::<Prepared>(1);
        let mut wstop = stop.clone();
        let writer_task = tokio::spawn(async move {
            while let Some(p) = prx.recv().await {
                let tw = std::time::Instant::now();
                let mut isolate = false;
                loop {
                    match writer.commit(&p, isolate).await {
                        Ok(cut_off) if cut_off.is_empty() => {
                            tracing::debug!(events = p.accepted.len(), took = ?tw.elapsed(), "batch written");
                            break;
                        }
                        // Users were quarantined here, after the preparing stage moved their
                        // states on: the term ends, and the next one loads the states (with
                        // the quarantine) from the view.
                        Ok(_) => return,
                        Err(ProjectionError::Db(e)) if !isolate && cannot_store(&e) => {
                            tracing::warn!(error = %e, "projector: a batch holds data the view cannot store; writing it user by user");
                            isolate = true;
                        }
                        Err(ProjectionError::Fenced(v)) => {
                            tracing::warn!(view = %v, "projector: fenced off, another instance leads");
                            return;
                        }
                        Err(e) => {
                            writer.stats.retries.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(error = %e, "projector: batch failed, retrying");
                            tokio::select! {
                                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                                _ = wstop.changed() => if *wstop.borrow() { return; },
                            }
                        }
                    }
                }
            }
        });
        let (tx, mut rx) = mpsc::channel::<Item>(self.cfg.buffer);
        let mut sources: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
        let mut rescan = tokio::time::interval(self.cfg.rescan);
        let result = loop {
            tokio::select! {
                _ = stop.changed() => {
                    if *stop.borrow() { break Ok(Term::Stopped); }
                }
                _ = rescan.tick() => {
                    // Still leading? The lock lives as long as its session.
                    if sqlx::query("SELECT 1").execute(&mut lock).await.is_err() {
                        break Ok(Term::Lost);
                    }
                    if writer_task.is_finished() {
                        break Ok(Term::Lost);
                    }
                    match self.chain_streams().await {
                        Ok(streams) => {
                            for s in streams {
                                if let std::collections::hash_map::Entry::Vacant(v) = sources.entry(s.clone()) {
                                    match self.start_source(s, tx.clone()).await {
                                        Ok(h) => { v.insert(h); }
                                        Err(e) => tracing::warn!(error = %e, "projector: source not started"),
                                    }
                                }
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "projector: listing streams"),
                    }
                }
                first = rx.recv() => {
                    let Some(first) = first else { break Ok(Term::Stopped) };
                    let mut batch = vec![first];
                    let deadline = tokio::time::Instant::now() + self.cfg.batch_wait;
                    while batch.len() < self.cfg.batch_max {
                        match tokio::time::timeout_at(deadline, rx.recv()).await {
                            Ok(Some(i)) => batch.push(i),
                            _ => break,
                        }
                    }
                    let tprep = std::time::Instant::now();
                    // A batch that cannot be prepared (the database is down while user
                    // states load) ends the term: the state in memory may be ahead of the
                    // database while the writer still holds an uncommitted batch, so
                    // reloading it here could misplace events. A new term starts over from
                    // the checkpoints, with fresh consumers; nothing is lost or doubled.
                    let mut prepared = match self.prepare(&batch).await {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::warn!(error = %e, "projector: preparing a batch failed; starting over from the checkpoints");
                            tokio::select! {
                                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                                _ = stop.changed() => {}
                            }
                            break Ok(Term::Lost);
                        }
                    };
                    let tp = tprep.elapsed();
                    prepared.items = batch;
                    let tsend = std::time::Instant::now();
                    if ptx.send(prepared).await.is_err() {
                        // the writer was fenced off
                        break Ok(Term::Lost);
                    }
                    tracing::debug!(prepare = ?tp, waited_for_writer = ?tsend.elapsed(), "batch prepared");
                }
            }
        };
        for (_, h) in sources {
            h.abort();
        }
        drop(ptx);
        if matches!(result, Ok(Term::Lost)) {
            writer_task.abort();
        }
        let _ = writer_task.await;
        // Closing the lock's session releases the lock.
        let _ = sqlx::Connection::close(lock).await;
        result
    }

    /// Stage one: positions, decoding, verification, decryption. Touches no view.
    async fn prepare(&mut self, batch: &[Item]) -> Result<Prepared> {
        // Positions; skip what this projector already took (redeliveries while a batch
        // waits for the database) or what a checkpoint covers (after a restart).
        let mut fresh = Vec::with_capacity(batch.len());
        let mut last_per_stream: HashMap<String, (u64, usize)> = HashMap::new();
        let mut seen_now: HashMap<String, u64> = HashMap::new();
        for (i, item) in batch.iter().enumerate() {
            let seq = item
                .msg
                .info()
                .map_err(|e| ProjectionError::Nats(e.to_string()))?
                .stream_sequence;
            if !self.checkpoints.contains_key(&item.stream) {
                let c = self.checkpoint(&item.stream).await?;
                self.checkpoints.insert(item.stream.clone(), c);
            }
            let e = last_per_stream
                .entry(item.stream.clone())
                .or_insert((seq, i));
            if seq >= e.0 {
                *e = (seq, i);
            }
            let seen = seen_now
                .get(&item.stream)
                .copied()
                .unwrap_or(self.checkpoints[&item.stream]);
            if seq > seen {
                seen_now.insert(item.stream.clone(), seq);
                fresh.push((item, seq));
            }
        }
        // Decode and group by user.
        let mut dead = Vec::new();
        let mut decoded = Vec::with_capacity(fresh.len());
        for (item, seq) in &fresh {
            let payload = item.msg.payload.clone();
            let res = envelope::decode(&payload)
                .map_err(|e| e.to_string())
                .and_then(|(wire, sealed)| {
                    Event::from_wire(&wire)
                        .map(|(e, h)| (e, h, sealed))
                        .map_err(|e| format!("undecodable event: {e}"))
                })
                .and_then(
                    |(e, h, sealed)| match names::chain_subject_user(&item.msg.subject) {
                        Some(u) if u == e.user => Ok((e, h, sealed)),
                        _ => Err("event names another user than its subject".into()),
                    },
                );
            match res {
                Ok((event, hash, sealed)) => decoded.push(Accepted {
                    event,
                    hash,
                    sealed,
                    stream: item.stream.clone(),
                    stream_seq: *seq,
                }),
                Err(reason) => dead.push(DeadLetter {
                    stream: item.stream.clone(),
                    stream_seq: *seq,
                    reason,
                    payload,
                }),
            }
        }
        let users: Vec<UserId> = decoded
            .iter()
            .map(|a| a.event.user.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let missing: Vec<UserId> = users
            .iter()
            .filter(|u| !self.states.contains_key(*u))
            .cloned()
            .collect();
        if !missing.is_empty() {
            let mut conn = self.pool.acquire().await?;
            self.states.extend(state::load(&mut conn, &missing).await?);
        }
        let decoded = self.fill_gaps(decoded).await?;
        // Open the memories (metadata and text for search): their records are held to the
        // format's value rules with the chain's.
        if self.keys.len() > 100_000 {
            self.keys.clear();
        }
        let cache = &mut self.keys;
        let stored: Vec<StoredEvent> = decoded
            .iter()
            .filter(|a| matches!(a.event.body, EventBody::MemoryIngested { .. }))
            .map(|a| StoredEvent {
                event: a.event.clone(),
                hash: a.hash,
                stream_seq: a.stream_seq,
                sealed: a.sealed.clone(),
            })
            .collect();
        let refs: Vec<&StoredEvent> = stored.iter().collect();
        self.ledger
            .warm_keys(&refs, cache)
            .await
            .map_err(|e| ProjectionError::Nats(e.to_string()))?;
        let mut opened = HashMap::new();
        let erasing: HashSet<&UserId> = decoded
            .iter()
            .filter(|a| matches!(a.event.body, EventBody::MemoryErased { .. }))
            .map(|a| &a.event.user)
            .collect();
        for st in &stored {
            let EventBody::MemoryIngested { memory } = st.event.body else {
                continue;
            };
            // The record and the size; an object's content is not read (its stream is
            // dropped unpolled).
            match self.ledger.open_memory_stream_cached(st, cache).await {
                Ok(o) => {
                    opened.insert(memory, Some((o.record, o.size)));
                }
                Err(LedgerError::Erased(_)) => {
                    opened.insert(memory, None);
                }
                Err(LedgerError::Nats { what, detail }) => {
                    return Err(ProjectionError::Nats(format!("{what}: {detail}")));
                }
                Err(e) => {
                    tracing::error!(user = %st.event.user, seq = %st.event.seq, error = %e, "memory payload unreadable");
                    opened.insert(memory, None);
                }
            }
        }
        for u in erasing {
            self.keys.evict_user(u);
        }
        // Verify: core's chain rules now, signatures in one batch; if the batch fails, do
        // it again from the saved states checking each signature on its own.
        let fresh_states = |all: &HashMap<UserId, UserState>| -> HashMap<UserId, UserState> {
            users.iter().map(|u| (u.clone(), all[u].clone())).collect()
        };
        let mut states = fresh_states(&self.states);
        let (mut accepted, sigs, mut refused) = verify(&mut states, decoded, &opened, false);
        if !signatures_ok(sigs).await {
            let mut again: Vec<Accepted> = std::mem::take(&mut accepted);
            states = fresh_states(&self.states);
            again.sort_by_key(|a| (a.stream.clone(), a.stream_seq));
            let (a, _, r) = verify(&mut states, again, &opened, true);
            accepted = a;
            refused = r;
        }
        // A refused event may be a retried batch's: the refusal is taken back into
        // account here, so the whole batch of that user is dropped only from the refusal on.
        let quarantined: Vec<(UserId, Quarantine)> = refused
            .iter()
            .map(|r| (r.user.clone(), r.quarantine.clone()))
            .collect();
        dead.extend(refused.into_iter().map(|r| r.dead));
        // Commit to the new states in this stage; the writer applies batches in order.
        for (u, st) in &states {
            self.states.insert(u.clone(), st.clone());
        }
        for (stream, seq) in seen_now {
            let c = self.checkpoints.entry(stream).or_default();
            *c = (*c).max(seq);
        }
        Ok(Prepared {
            items: Vec::new(),
            accepted,
            opened,
            states,
            users,
            last_per_stream,
            dead,
            quarantined,
        })
    }
}

impl Projector {
    /// Puts each user's events in chain order, drops the ones the view already holds
    /// (redeliveries), and reads from the chain itself any events missing in front of or
    /// between them. A consumer may deliver a message after later ones (a redelivery after
    /// a lost delivery, e.g. while a NATS node restarts); without this, the later events
    /// would look like a gap and the earlier one like something already taken.
    async fn fill_gaps(&self, decoded: Vec<Accepted>) -> Result<Vec<Accepted>> {
        let mut by_user: HashMap<UserId, Vec<Accepted>> = HashMap::new();
        for a in decoded {
            by_user.entry(a.event.user.clone()).or_default().push(a);
        }
        let mut out = Vec::new();
        for (user, mut events) in by_user {
            events.sort_by_key(|a| a.event.seq);
            events.dedup_by_key(|a| a.event.seq);
            let mut next = self.states[&user].next_seq().0;
            for a in events {
                let seq = a.event.seq.0;
                if seq < next {
                    continue;
                }
                if seq > next {
                    let missing = self
                        .ledger
                        .events(&user, Seq(next), (seq - next) as usize)
                        .await
                        .map_err(|e| ProjectionError::Nats(format!("reading a gap: {e}")))?;
                    tracing::info!(%user, from = next, to = seq - 1, found = missing.len(), "projector: filled a gap from the chain");
                    let stream = self.ledger.locate(&user).stream;
                    for m in missing.into_iter().filter(|m| m.event.seq.0 < seq) {
                        out.push(Accepted {
                            event: m.event,
                            hash: m.hash,
                            sealed: m.sealed,
                            stream: stream.clone(),
                            stream_seq: m.stream_seq,
                        });
                    }
                }
                next = seq + 1;
                out.push(a);
            }
        }
        Ok(out)
    }
}

/// What the views keep of an opened memory: its record and content size (`None` in the map:
/// erased or unreadable).
pub(crate) type Opened = (mnemo_core::MemoryRecord, u64);

/// A verified, decrypted batch, ready to be written.
struct Prepared {
    items: Vec<Item>,
    accepted: Vec<Accepted>,
    opened: HashMap<mnemo_core::MemoryId, Option<Opened>>,
    states: HashMap<UserId, UserState>,
    users: Vec<UserId>,
    last_per_stream: HashMap<String, (u64, usize)>,
    dead: Vec<DeadLetter>,
    /// Users whose chain had an event refused in this batch.
    quarantined: Vec<(UserId, Quarantine)>,
}

/// Stage two: writes prepared batches.
struct Writer {
    js: jetstream::Context,
    pool: sqlx::PgPool,
    view: String,
    kv: Option<KvViews>,
    stats: Arc<ProjectorStats>,
    /// The leadership epoch its batches are fenced with.
    epoch: i64,
}

impl Writer {
    /// One transaction with the rows and the checkpoints, KV views before its commit,
    /// dead letters after it, then the acknowledgements.
    ///
    /// With `isolate` (after the batch failed on data the database cannot store), each
    /// user's rows go in a savepoint of their own; a user whose rows fail that way is
    /// quarantined (check `view_write`) and the other users' rows commit.
    async fn commit(&self, p: &Prepared, isolate: bool) -> Result<Vec<UserId>> {
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
fn cannot_store(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c.starts_with("22") || c.starts_with("54"))
}

/// Checks signatures all at once, split over the machine's cores.
async fn signatures_ok(mut items: Vec<SignatureCheck>) -> bool {
    let parts = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .max(1);
    let chunk = items.len().div_ceil(parts).max(1);
    let mut tasks = Vec::new();
    while !items.is_empty() {
        let rest = items.split_off(chunk.min(items.len()));
        let mine = std::mem::replace(&mut items, rest);
        tasks.push(tokio::task::spawn_blocking(move || {
            SignatureBatch::new(mine).verify().is_ok()
        }));
    }
    let mut ok = true;
    for t in tasks {
        ok &= t.await.unwrap_or(false);
    }
    ok
}

/// A refused event: the user's view stops before it.
struct Refused {
    user: UserId,
    quarantine: Quarantine,
    dead: DeadLetter,
}

/// Checks each event with core's chain rules against its user's state and applies it.
/// Signatures are returned for one batch check; with `each`, every signature is verified
/// on the spot instead (the slow path after a failed batch), so the first bad one is
/// refused. The events of a quarantined user are held back (not applied, acknowledged:
/// the chain keeps them, and a rebuild replays them).
fn verify(
    states: &mut HashMap<UserId, UserState>,
    events: Vec<Accepted>,
    opened: &HashMap<mnemo_core::MemoryId, Option<Opened>>,
    each: bool,
) -> (Vec<Accepted>, Vec<SignatureCheck>, Vec<Refused>) {
    let mut ok = Vec::with_capacity(events.len());
    let mut sigs = Vec::with_capacity(if each { 0 } else { events.len() });
    let mut refused = Vec::new();
    for a in events {
        let Some(st) = states.get_mut(&a.event.user) else {
            continue;
        };
        if st.quarantine.is_some() {
            continue;
        }
        // The payload's record under the format's value rules (what mnemo-audit checks
        // when the bundle opens the payload: check `payload`, after the event's own checks).
        let payload_refused = match &a.event.body {
            EventBody::MemoryIngested { memory } => match opened.get(memory) {
                Some(Some((record, _))) => record.check_values().err(),
                _ => None,
            },
            _ => None,
        };
        let checked: Result<(), (&'static str, String)> = if let Some(reason) = payload_refused {
            // The state does not move: the user's view stops before this event.
            match st.chain.clone().check(&a.event, a.hash) {
                Err(e) => Err((e.code(), e.to_string())),
                Ok(_) => Err(("payload", format!("seq {}: payload: {reason}", a.event.seq))),
            }
        } else if each {
            let before = st.chain.clone();
            st.chain
                .check(&a.event, a.hash)
                .and_then(|s| {
                    for c in s {
                        if SignatureBatch::new(vec![c.clone()]).verify().is_err() {
                            st.chain = before.clone();
                            return Err(c.error());
                        }
                    }
                    Ok(())
                })
                .map_err(|e| (e.code(), e.to_string()))
        } else {
            st.chain
                .check(&a.event, a.hash)
                .map(|s| sigs.extend(s))
                .map_err(|e| (e.code(), e.to_string()))
        };
        match checked {
            Ok(()) => ok.push(a),
            Err((code, e)) => {
                let q = Quarantine {
                    seq: a.event.seq.0,
                    check: code.to_owned(),
                    reason: e.clone(),
                };
                st.quarantine = Some(q.clone());
                refused.push(Refused {
                    user: a.event.user.clone(),
                    quarantine: q,
                    dead: DeadLetter {
                        stream: a.stream.clone(),
                        stream_seq: a.stream_seq,
                        reason: format!("{} seq {}: {code}: {e}", a.event.user, a.event.seq),
                        payload: Bytes::new(),
                    },
                });
            }
        }
    }
    (ok, sigs, refused)
}

pub(crate) async fn heads_bucket(js: &jetstream::Context, replicas: usize) -> Result<kv::Store> {
    Ok(mnemo_ledger::provision::ensure_kv(
        js,
        kv::Config {
            bucket: HEADS_BUCKET.into(),
            description: "mnemo: each user's checkpoint (seq, head hash, chain tree root)".into(),
            history: 1,
            num_replicas: replicas.max(1),
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        },
    )
    .await?)
}

/// The KV heads view.
struct KvViews {
    heads: kv::Store,
    revisions: std::sync::Mutex<HashMap<UserId, u64>>,
}

impl KvViews {
    async fn open(js: &jetstream::Context, replicas: usize) -> Result<Self> {
        Ok(Self {
            heads: heads_bucket(js, replicas).await?,
            revisions: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Moves the heads of a batch's users forward, concurrently (one key each).
    async fn apply(&self, states: &HashMap<UserId, UserState>, users: &[UserId]) -> Result<()> {
        let heads = users.iter().filter_map(|u| {
            let st = &states[u];
            (st.last_seq() > 0).then(|| {
                let head = Head {
                    seq: st.last_seq(),
                    hash: st.head(),
                    root: st.root(),
                };
                async move { put_head(&self.heads, &self.revisions, u, &head).await }
            })
        });
        futures::future::try_join_all(heads).await?;
        Ok(())
    }
}

/// Moves a user's head forward with compare-and-set on the entry's revision; never back.
async fn put_head(
    kv: &kv::Store,
    revisions: &std::sync::Mutex<HashMap<UserId, u64>>,
    user: &UserId,
    head: &Head,
) -> Result<()> {
    let value: Bytes = serde_json::to_vec(head).expect("serialisable").into();
    // First try on the revision this process wrote last (it is normally the only writer
    // of a view): one request. On a mismatch, read the entry and decide.
    let known = revisions.lock().expect("lock").get(user).copied();
    if let Some(rev) = known
        && let Ok(new) = kv.update(user.as_str(), value.clone(), rev).await
    {
        revisions.lock().expect("lock").insert(user.clone(), new);
        return Ok(());
    }
    for _ in 0..16 {
        let entry = kv
            .entry(user.as_str())
            .await
            .map_err(|e| ProjectionError::Nats(e.to_string()))?;
        let res = match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                let cur: Option<Head> = serde_json::from_slice(&e.value).ok();
                if cur.is_some_and(|c| c.seq >= head.seq) {
                    revisions
                        .lock()
                        .expect("lock")
                        .insert(user.clone(), e.revision);
                    return Ok(());
                }
                kv.update(user.as_str(), value.clone(), e.revision)
                    .await
                    .map_err(|e| e.to_string())
            }
            _ => kv
                .create(user.as_str(), value.clone())
                .await
                .map_err(|e| e.to_string()),
        };
        if let Ok(rev) = res {
            revisions.lock().expect("lock").insert(user.clone(), rev);
            return Ok(());
        }
    }
    Err(ProjectionError::Nats(format!(
        "head of {user}: too many CAS conflicts"
    )))
}

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

/// Reads a user's head from the KV view.
pub async fn kv_head(js: &jetstream::Context, user: &UserId) -> Result<Option<Head>> {
    let kv = heads_bucket(js, 1).await?;
    Ok(kv
        .get(user.as_str())
        .await
        .map_err(|e| ProjectionError::Nats(e.to_string()))?
        .and_then(|v| serde_json::from_slice(&v).ok()))
}
