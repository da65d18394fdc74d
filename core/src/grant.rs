//! What a grant covers: the access rule (docs/FORMAT.md §4.1), as one pure function that
//! every place deciding access calls. The API answers a grantee's read only with what
//! [`Grant::allows`] allows (SQL may pre-filter candidates, never decide), and the chain
//! verifier holds access records to the same terms.
//!
//! The rule, for an `action` by `accessor` on a memory at time `at` under a grant:
//! - the grant was given to `accessor`, is not revoked, has opened (`at >= not_before`:
//!   a time capsule serves nothing before) and has not lapsed (`at >= expires_at` means
//!   lapsed);
//! - the action fits the capabilities: `read_content` needs `content`, `list` and
//!   `read_metadata` need `metadata`, `ask` needs `ask`;
//! - the memory is not erased;
//! - every non-empty condition holds: one of the memory's tags is in `tags`, its kind is
//!   in `kinds`, its id is in `memories`, and its time is in `[from, until)`. The time is
//!   `captured_at` when the memory has one, else the timestamp of the event that ingested
//!   it.

use crate::event::{AccessAction, Capabilities, GrantConditions};
use crate::ids::{GrantId, MemoryId, TimestampMs, UserId};

/// What the access rule needs to know of a memory.
#[derive(Clone, Copy, Debug)]
pub struct MemoryFacts<'a> {
    /// Its id.
    pub id: MemoryId,
    /// Its kind.
    pub kind: &'a str,
    /// Its tags.
    pub tags: &'a [String],
    /// When it was captured, if the record says.
    pub captured_at: Option<TimestampMs>,
    /// The timestamp of its `memory_ingested` event.
    pub ingested_at: TimestampMs,
    /// Whether an erasure has reached it.
    pub erased: bool,
}

impl MemoryFacts<'_> {
    /// The time the time conditions apply to: capture time, else ingestion time.
    pub fn time(&self) -> TimestampMs {
        self.captured_at.unwrap_or(self.ingested_at)
    }
}

impl GrantConditions {
    /// Whether the conditions hold for `m` (erasure and capabilities aside: see
    /// [`Grant::allows`]).
    pub fn covers(&self, m: &MemoryFacts<'_>) -> bool {
        let t = m.time();
        (self.tags.is_empty() || m.tags.iter().any(|t| self.tags.contains(t)))
            && (self.kinds.is_empty() || self.kinds.iter().any(|k| k == m.kind))
            && (self.memories.is_empty() || self.memories.contains(&m.id))
            && self.from.is_none_or(|from| t >= from)
            && self.until.is_none_or(|until| t < until)
    }
}

impl Capabilities {
    /// Whether these capabilities allow `action`.
    pub fn allow(self, action: AccessAction) -> bool {
        match action {
            AccessAction::ReadContent => self.content,
            AccessAction::List | AccessAction::ReadMetadata => self.metadata,
            AccessAction::Ask => self.ask,
        }
    }
}

/// A grant as its owner's chain defines it: created by `grant_created`, ended by
/// `grant_revoked` or by its expiry.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Grant {
    /// Its id.
    pub id: GrantId,
    /// Who may read.
    pub grantee: UserId,
    /// What it allows.
    pub capabilities: Capabilities,
    /// Which memories it covers.
    pub conditions: GrantConditions,
    /// When it lapses by itself.
    pub expires_at: Option<TimestampMs>,
    /// When it opens (a time capsule), if not at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<TimestampMs>,
    /// Whether a `grant_revoked` has ended it.
    pub revoked: bool,
}

/// Why a grant does not allow an access (a stable reason, named in errors and audits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The grant was revoked.
    Revoked,
    /// `at >= expires_at`.
    Expired,
    /// `at < not_before`: a time capsule not open yet.
    NotYetOpen,
    /// Given to someone else.
    OtherGrantee,
    /// The capabilities do not include the action.
    Capability,
    /// The memory was erased.
    Erased,
    /// A condition (tags, kinds, memories, time) excludes the memory.
    Conditions,
}

impl Refusal {
    /// The reason in words.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Revoked => "was revoked before this access",
            Self::Expired => "had expired before this access",
            Self::NotYetOpen => "was not open yet at this access (a time capsule)",
            Self::OtherGrantee => "was not given to this accessor",
            Self::Capability => "does not allow this action",
            Self::Erased => "does not cover an erased memory",
            Self::Conditions => "does not cover this memory",
        }
    }
}

impl Grant {
    /// Whether the grant is in force at `at`: not revoked, open (`not_before <= at`) and
    /// not lapsed (`at < expires_at`; docs/FORMAT.md §4.1.1, rule 1). What
    /// `GET /v1/grants` calls live.
    pub fn in_force(&self, at: TimestampMs) -> Result<(), Refusal> {
        if self.revoked {
            return Err(Refusal::Revoked);
        }
        if self.expires_at.is_some_and(|x| at >= x) {
            return Err(Refusal::Expired);
        }
        if self.not_before.is_some_and(|t| at < t) {
            return Err(Refusal::NotYetOpen);
        }
        Ok(())
    }

    /// Whether the grant is live for `accessor` at `at`, for `action` (memory aside).
    pub fn live_for(
        &self,
        accessor: &UserId,
        action: AccessAction,
        at: TimestampMs,
    ) -> Result<(), Refusal> {
        self.in_force(at)?;
        if self.grantee != *accessor {
            return Err(Refusal::OtherGrantee);
        }
        if !self.capabilities.allow(action) {
            return Err(Refusal::Capability);
        }
        Ok(())
    }

    /// Whether a server may serve `accessor` doing `action` under this grant now: open at
    /// `now`, and live for the action until `until` (`now` plus the margin the server needs
    /// to record the access before the grant lapses).
    pub fn serves(
        &self,
        accessor: &UserId,
        action: AccessAction,
        now: TimestampMs,
        until: TimestampMs,
    ) -> bool {
        self.live_for(accessor, action, until).is_ok() && self.in_force(now).is_ok()
    }

    /// The access rule: whether `accessor` may do `action` on `m` at `at` under this grant.
    pub fn allows(
        &self,
        accessor: &UserId,
        action: AccessAction,
        m: &MemoryFacts<'_>,
        at: TimestampMs,
    ) -> Result<(), Refusal> {
        self.live_for(accessor, action, at)?;
        if m.erased {
            return Err(Refusal::Erased);
        }
        if !self.conditions.covers(m) {
            return Err(Refusal::Conditions);
        }
        Ok(())
    }
}

/// The first grant (by id) among `grants` that allows the access, if any.
pub fn first_allowing<'g>(
    grants: impl IntoIterator<Item = &'g Grant>,
    accessor: &UserId,
    action: AccessAction,
    m: &MemoryFacts<'_>,
    at: TimestampMs,
) -> Option<&'g Grant> {
    grants
        .into_iter()
        .filter(|g| g.allows(accessor, action, m, at).is_ok())
        .min_by_key(|g| g.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            id: GrantId([1; 16]),
            grantee: UserId::new("bob").unwrap(),
            capabilities: Capabilities {
                metadata: true,
                content: false,
                ask: false,
            },
            conditions: GrantConditions::default(),
            expires_at: Some(TimestampMs(1000)),
            not_before: None,
            revoked: false,
        }
    }

    fn facts(tags: &[String]) -> MemoryFacts<'_> {
        MemoryFacts {
            id: MemoryId([2; 16]),
            kind: "note",
            tags,
            captured_at: None,
            ingested_at: TimestampMs(500),
            erased: false,
        }
    }

    #[test]
    fn the_rule_decides_each_point() {
        let bob = UserId::new("bob").unwrap();
        let eve = UserId::new("eve").unwrap();
        let g = grant();
        let tags = vec!["work".to_string()];
        let m = facts(&tags);
        let at = TimestampMs(999);
        assert_eq!(g.allows(&bob, AccessAction::List, &m, at), Ok(()));
        assert_eq!(
            g.allows(&bob, AccessAction::ReadContent, &m, at),
            Err(Refusal::Capability)
        );
        assert_eq!(
            g.allows(&eve, AccessAction::List, &m, at),
            Err(Refusal::OtherGrantee)
        );
        // at == expires_at: lapsed
        assert_eq!(
            g.allows(&bob, AccessAction::List, &m, TimestampMs(1000)),
            Err(Refusal::Expired)
        );
        let erased = MemoryFacts { erased: true, ..m };
        assert_eq!(
            g.allows(&bob, AccessAction::List, &erased, at),
            Err(Refusal::Erased)
        );
        let mut only = g.clone();
        only.conditions.memories = vec![MemoryId([3; 16])];
        assert_eq!(
            only.allows(&bob, AccessAction::List, &m, at),
            Err(Refusal::Conditions)
        );
        // captured_at wins over the ingestion time; `until` is exclusive
        let mut window = g.clone();
        window.conditions.from = Some(TimestampMs(100));
        window.conditions.until = Some(TimestampMs(200));
        let captured = MemoryFacts {
            captured_at: Some(TimestampMs(150)),
            ..m
        };
        assert_eq!(
            window.allows(&bob, AccessAction::List, &captured, at),
            Ok(())
        );
        assert_eq!(
            window.allows(&bob, AccessAction::List, &m, at),
            Err(Refusal::Conditions)
        );
        let edge = MemoryFacts {
            captured_at: Some(TimestampMs(200)),
            ..m
        };
        assert_eq!(
            window.allows(&bob, AccessAction::List, &edge, at),
            Err(Refusal::Conditions)
        );
        let mut revoked = g;
        revoked.revoked = true;
        assert_eq!(
            revoked.allows(&bob, AccessAction::List, &m, at),
            Err(Refusal::Revoked)
        );
    }
}
