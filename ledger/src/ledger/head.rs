//! What this process knows of each user's chain: the head with its events in flight
//! (`HeadState`), the per-user write slot, and loading the head from the stream ([`ChainTip`]).

use super::*;

/// The last event of a chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainTip {
    /// Number of events.
    pub len: u64,
    /// Hash of the last event.
    pub hash: Hash32,
    /// Its stream sequence.
    pub stream_seq: u64,
}

/// What this process knows of a user's chain, including its own events still in flight.
#[derive(Clone, Debug)]
pub(super) struct HeadState {
    /// The chain as this process built it: its last events may not be acknowledged yet.
    pub(super) head: Head,
    /// The stream sequence of `head`'s last event; exact only when nothing is in flight.
    pub(super) stream_seq: u64,
    /// The custody key that must sign the next event.
    pub(super) signer: KeyId,
    /// The generation key this process encrypts this user's memories with; dropped with
    /// the state on any conflict, so it is only used on top of heads this process built.
    pub(super) generation: Option<Generation>,
    /// Events sent on top of this state whose acks have not come back.
    pub(super) in_flight: usize,
    /// The highest stream sequence acknowledged for this state's events.
    pub(super) acked: u64,
    /// The `Nats-Msg-Id` of the last event while it is in flight, when the next one may be
    /// pipelined behind it with `Nats-Expected-Last-Msg-Id` (per-user layout only).
    pub(super) tail_id: Option<String>,
    /// Tells this state from a reloaded one: an ack of an event sent on an older state
    /// never touches a newer one.
    pub(super) epoch: u64,
    /// The format version of the chain's last event (1 for an empty chain): a chain never
    /// goes back to a lower one.
    pub(super) version: u8,
}

impl HeadState {
    pub(super) fn at(head: Head, stream_seq: u64, signer: KeyId, epoch: u64) -> Self {
        Self {
            head,
            stream_seq,
            signer,
            generation: None,
            in_flight: 0,
            acked: stream_seq,
            tail_id: None,
            epoch,
            version: mnemo_core::FORMAT_V1,
        }
    }
}

/// One user's write slot in this process.
#[derive(Default)]
pub(super) struct Slot {
    pub(super) state: tokio::sync::Mutex<Option<HeadState>>,
    /// Appends of this user inside `write` (waiting for the slot or for their ack).
    pub(super) writers: AtomicUsize,
    /// Woken whenever one of this user's events in flight is settled.
    pub(super) settled: tokio::sync::Notify,
    /// The chain's rules state (core's `ChainState`), for checking events whose validity
    /// depends on it before they are written. Built lazily on the first such event, then
    /// caught up from the chain; see `Ledger::rules_at` and docs/decisions/0010.
    pub(super) rules: tokio::sync::Mutex<Option<ChainState>>,
}

/// Leaves a slot's writer count when dropped.
pub(super) struct Writer<'a>(pub(super) &'a Slot);

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        self.0.writers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Drops a user's state if an event in flight is never settled (the appending task was
/// cancelled while waiting for its ack): appends queued behind it would otherwise wait
/// for good.
pub(super) struct Unsettled {
    pub(super) slot: Arc<Slot>,
    pub(super) epoch: u64,
    pub(super) armed: bool,
}

impl Drop for Unsettled {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (slot, epoch) = (self.slot.clone(), self.epoch);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let mut state = slot.state.lock().await;
                if state.as_ref().is_some_and(|s| s.epoch == epoch) {
                    *state = None;
                }
                drop(state);
                slot.settled.notify_waiters();
            });
        }
    }
}

pub(super) fn next_signer(e: &Event) -> KeyId {
    match &e.body {
        EventBody::KeyRotated { new, .. } => new.id(),
        _ => e.signer,
    }
}

impl Ledger {
    pub(super) async fn load_head(&self, user: &UserId) -> Result<Option<HeadState>> {
        self.load_head_from(user, false).await
    }

    /// The chain's last message. A direct get, which on a cluster any replica answers, a
    /// lagging one with an older head or none yet: where that would do harm (a lost ack
    /// taken for a missing event, a new user taken for unknown) it is read from the stream
    /// leader, which holds every acknowledged write (`leader`, or when a replica knows no
    /// head at all).
    pub(super) async fn load_head_from(
        &self,
        user: &UserId,
        leader: bool,
    ) -> Result<Option<HeadState>> {
        let loc = self.locate(user);
        let Some(stream) = self.stream(&loc.stream).await? else {
            return Ok(None);
        };
        let cluster = self.inner.cfg.replicas > 1;
        let direct = if leader && cluster {
            None
        } else {
            match stream
                .direct_get_last_for_subject(loc.subject.clone())
                .await
            {
                Ok(msg) => Some(msg),
                // "Nothing there" from a direct get is asked again of the stream itself
                // before it is believed: a replica may lag, and a stream created a moment
                // ago may not serve direct gets yet. An absent user is the rare answer
                // (a refused token), so the second request costs little; a user who exists
                // is never answered as absent.
                Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => None,
                Err(e) => return Err(LedgerError::nats("direct get head", e)),
            }
        };
        let msg = match direct {
            Some(msg) => msg,
            None => match stream.get_last_raw_message_by_subject(&loc.subject).await {
                Ok(msg) => msg,
                Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
                    return Ok(None);
                }
                Err(e) => return Err(LedgerError::nats("get head", e)),
            },
        };
        let (wire, _) = envelope::decode(&msg.payload)?;
        let (event, hash) = Event::from_wire(&wire)
            .map_err(|e| LedgerError::Tampered(format!("head of {user}: {e}")))?;
        if event.user != *user {
            return Err(LedgerError::Tampered(format!(
                "head of {user} names another user"
            )));
        }
        let mut st = HeadState::at(
            Head {
                user: user.clone(),
                len: event.seq.0,
                hash,
            },
            msg.sequence,
            next_signer(&event),
            self.next_epoch(),
        );
        st.version = event.version;
        Ok(Some(st))
    }

    /// The last event of `user`'s chain, read from the server (a direct get: on a cluster a
    /// lagging replica may answer with an older one).
    pub async fn head(&self, user: &UserId) -> Result<Option<ChainTip>> {
        let tip = self.load_head(user).await?.map(|s| ChainTip {
            len: s.head.len,
            hash: s.head.hash,
            stream_seq: s.stream_seq,
        });
        if tip.is_some() {
            let mut known = self.inner.known.lock().expect("lock");
            if !known.contains(user) {
                known.insert(user.clone());
            }
        }
        Ok(tip)
    }

    /// Whether `user` has a chain: answered from memory once this process has seen it
    /// (chains are never deleted), else from the server.
    pub async fn user_exists(&self, user: &UserId) -> Result<bool> {
        if self.inner.known.lock().expect("lock").contains(user) {
            return Ok(true);
        }
        Ok(self.head(user).await?.is_some())
    }
}
