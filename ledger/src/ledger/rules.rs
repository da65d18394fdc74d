//! The chain's rules on the write path: before the ledger appends an event whose validity
//! depends on the chain's state (grants, access records, revocations, erasures, keys), it
//! checks it with `mnemo-core`'s `ChainState`, the rule set `mnemo-audit` and the projector
//! apply, so the ledger never writes an event its own auditor rejects. The state is built
//! from the chain itself, never from a view: lazily per user on the first such event, then
//! caught up by reading only the events appended since (docs/decisions/0010).

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
            let state = rules.get_or_insert_with(|| ChainState::new(user.clone()));
            let caught_up = self.replay_into(user, state, head.len).await?;
            if caught_up.is_ok() && state.len() == head.len && state.head() == head.hash {
                return Ok(());
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
