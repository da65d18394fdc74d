//! The chain's rules on the write path: before the ledger appends an event whose validity
//! depends on the chain's state (grants, access records, revocations, erasures, keys), it
//! checks it with `mnemo-core`'s `ChainState`, the rule set `mnemo-audit` and the projector
//! apply, so the ledger never writes an event its own auditor rejects. The state is built
//! from the chain itself, never from a view: lazily per user on the first such event, then
//! caught up by reading only the events appended since (docs/decisions/0010). A cold
//! user starts from its stored snapshot when one holds (`crate::snapshots`).

use super::*;

/// Events read per page while catching up.
const PAGE: usize = 1024;

impl Ledger {
    /// Brings `rules` to the chain ending in `head` (which this process just loaded or
    /// built, with nothing in flight). A state that is not a prefix of the chain (an
    /// event it checked did not land: a conflict or a lost publish) is rebuilt from the
    /// first event. A chain that breaks the rules itself is reported as tampered.
    pub(super) async fn rules_at(
        &self,
        user: &UserId,
        rules: &mut Option<ChainState>,
        head: &Head,
    ) -> Result<()> {
        for fresh in [false, true] {
            if fresh || rules.as_ref().is_some_and(|r| r.len() > head.len) {
                *rules = None;
            }
            // A cold user: from its snapshot when one holds, else from genesis.
            let mut from_snapshot = false;
            if rules.is_none() && !fresh {
                *rules = self.load_snapshot(user, head).await;
                from_snapshot = rules.is_some();
            }
            let state = rules.get_or_insert_with(|| ChainState::new(user.clone()));
            let start = state.len();
            let caught_up = self.replay_into(user, state, head.len).await?;
            if caught_up.is_ok() && state.len() == head.len && state.head() == head.hash {
                if state.len() - start >= self.inner.cfg.snapshot_every.max(1) {
                    // The replay was paid for once: the next cold load starts here.
                    let (store, user, state) =
                        (self.inner.snapshots.clone(), user.clone(), state.clone());
                    tokio::spawn(async move {
                        if let Err(e) = store.store(&user, &state).await {
                            tracing::warn!(%user, error = %e, "storing a rules snapshot");
                        }
                    });
                }
                return Ok(());
            }
            if from_snapshot {
                tracing::warn!(%user, "a rules snapshot did not continue into the chain: dropped, rebuilding from genesis");
                self.inner.snapshot_drops.fetch_add(1, Ordering::Relaxed);
                let _ = self.inner.snapshots.drop_snapshot(user).await;
            }
            if fresh {
                *rules = None;
                let why = caught_up.err().map_or_else(
                    || "the chain read back does not end in the head loaded".to_owned(),
                    |e| e.to_string(),
                );
                return Err(LedgerError::Tampered(format!(
                    "the chain of {user} breaks core's rules: {why}"
                )));
            }
        }
        unreachable!("the second pass returns")
    }

    /// Takes `user`'s rules snapshot in the background: the rules state caught up with the
    /// chain (from the resident state or the last snapshot, so about one interval of
    /// events is read) and stored. Skipped when two are running already: the next
    /// interval takes it.
    pub(super) fn snapshot_soon(&self, user: &UserId) {
        let Ok(permit) = self.inner.snapshot_jobs.clone().try_acquire_owned() else {
            return;
        };
        let (ledger, user) = (self.clone(), user.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let state = match ledger.with_rules(&user, ChainState::clone).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%user, error = %e, "no snapshot taken");
                    return;
                }
            };
            if let Err(e) = ledger.inner.snapshots.store(&user, &state).await {
                tracing::warn!(%user, error = %e, "storing a rules snapshot");
            }
        });
    }

    /// `user`'s stored rules snapshot, if it is this ledger's, for this user, and its
    /// head is the chain's event at its seq (then the hash chain fixes everything before
    /// it). Anything else is dropped and `None` returned: the state is rebuilt. A store
    /// that does not answer is a cache miss, not a failed write.
    async fn load_snapshot(&self, user: &UserId, head: &Head) -> Option<ChainState> {
        let drop_it = async |why: &str| {
            tracing::warn!(%user, "rules snapshot dropped: {why}");
            self.inner.snapshot_drops.fetch_add(1, Ordering::Relaxed);
            let _ = self.inner.snapshots.drop_snapshot(user).await;
            None
        };
        let s = match self.inner.snapshots.load(user).await {
            Ok(Ok(Some(s))) => s,
            Ok(Ok(None)) => return None,
            Ok(Err(crate::snapshots::Unusable::Forged)) => {
                return drop_it("not this ledger's for this user").await;
            }
            Err(e) => {
                tracing::warn!(%user, error = %e, "reading a rules snapshot");
                return None;
            }
        };
        if s.is_empty() || s.len() > head.len {
            return drop_it("beyond the chain's head").await;
        }
        let at = match self.events(user, Seq(s.len()), 1).await {
            Ok(mut e) if e.len() == 1 => e.remove(0),
            _ => return None,
        };
        if at.hash != s.head() {
            return drop_it("its head is not the chain's event at its seq").await;
        }
        self.inner.snapshot_loads.fetch_add(1, Ordering::Relaxed);
        Some(s)
    }

    /// Checks and applies the chain's events after `state` up to seq `len`. The inner
    /// result is the first rule the chain breaks (or the state does not continue).
    async fn replay_into(
        &self,
        user: &UserId,
        state: &mut ChainState,
        len: u64,
    ) -> Result<std::result::Result<(), ChainError>> {
        while state.len() < len {
            let want = ((len - state.len()) as usize).min(PAGE);
            let events = self.events(user, state.next_seq(), want).await?;
            if events.is_empty() {
                return Ok(Err(ChainError::SeqGap {
                    expected: state.next_seq(),
                    found: state.next_seq(),
                }));
            }
            for e in &events {
                if let Err(err) = state.check(&e.event, e.hash) {
                    return Ok(Err(err));
                }
            }
        }
        Ok(Ok(()))
    }
}
