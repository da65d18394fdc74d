//! Preparing a batch: decode, put each user's events in chain order (reading gaps from the
//! chain), check them with core's chain rules and their signatures, open payloads for the
//! search text, and set aside what is refused (quarantine, dead letters).

use super::*;

/// What the views keep of an opened memory: its record and content size (`None` in the map:
/// erased or unreadable).
pub(crate) type Opened = (mnemo_core::MemoryRecord, u64);

/// A verified, decrypted batch, ready to be written.
pub(super) struct Prepared {
    pub(super) items: Vec<Item>,
    pub(super) accepted: Vec<Accepted>,
    pub(super) opened: HashMap<mnemo_core::MemoryId, Option<Opened>>,
    pub(super) states: HashMap<UserId, UserState>,
    pub(super) users: Vec<UserId>,
    pub(super) last_per_stream: HashMap<String, (u64, usize)>,
    pub(super) dead: Vec<DeadLetter>,
    /// Users whose chain had an event refused in this batch.
    pub(super) quarantined: Vec<(UserId, Quarantine)>,
}

/// Checks signatures all at once, split over the machine's cores. A seal's signature
/// (format version 2) is checked once, however many of the batch's events it covers.
pub(super) async fn signatures_ok(items: Vec<SignatureCheck>) -> bool {
    let mut seen = HashSet::new();
    let mut items: Vec<SignatureCheck> = items
        .into_iter()
        // The same key, message and signature verify the same way: checked once.
        .filter(|c| seen.insert((c.key.to_bytes(), c.msg.clone(), c.sig.to_bytes())))
        .collect();
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
pub(super) struct Refused {
    pub(super) user: UserId,
    pub(super) quarantine: Quarantine,
    pub(super) dead: DeadLetter,
}

/// Checks each event with core's chain rules against its user's state and applies it.
/// Signatures are returned for one batch check; with `each`, every signature is verified
/// on the spot instead (the slow path after a failed batch), so the first bad one is
/// refused. The events of a quarantined user are held back (not applied, acknowledged:
/// the chain keeps them, and a rebuild replays them).
pub(super) fn verify(
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
            EventBody::MemoryIngested { memory, .. } | EventBody::MemoryDerived { memory, .. } => {
                match opened.get(memory) {
                    Some(Some((record, _))) => record.check_values().err(),
                    _ => None,
                }
            }
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

impl Projector {
    /// Stage one: positions, decoding, verification, decryption. Touches no view.
    pub(super) async fn prepare(&mut self, batch: &[Item]) -> Result<Prepared> {
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
        // A stored seal (format version 2) is read from its record, once per batch of events.
        for a in &mut decoded {
            if matches!(
                a.event.custody,
                mnemo_core::Custody::Seal(mnemo_core::SealLink::Stored { .. })
            ) {
                a.event = self
                    .ledger
                    .seals()
                    .resolve(a.event.clone())
                    .await
                    .map_err(|e| ProjectionError::Nats(e.to_string()))?;
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
            .filter(|a| a.event.body.new_memory().is_some())
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
            .filter(|a| {
                matches!(
                    a.event.body,
                    EventBody::MemoryErased { .. } | EventBody::LineageErased { .. }
                )
            })
            .map(|a| &a.event.user)
            .collect();
        for st in &stored {
            let Some(memory) = st.event.body.new_memory() else {
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

    /// Puts each user's events in chain order, drops the ones the view already holds
    /// (redeliveries), and reads from the chain itself any events missing in front of or
    /// between them. A consumer may deliver a message after later ones (a redelivery after
    /// a lost delivery, e.g. while a NATS node restarts); without this, the later events
    /// would look like a gap and the earlier one like something already taken.
    pub(super) async fn fill_gaps(&self, decoded: Vec<Accepted>) -> Result<Vec<Accepted>> {
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
