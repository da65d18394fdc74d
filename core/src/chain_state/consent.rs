//! The consent rules of a chain (docs/FORMAT.md §8, rule 6): grants created and revoked,
//! reads recorded under them, and questions asked under them (§4.3).

use super::*;

impl ChainState {
    /// Applies a `grant_created`, `grant_revoked`, `access_recorded` or `question_asked`
    /// after checking its rules; nothing changes when one fails.
    pub(super) fn apply_consent(&mut self, event: &Event) -> Result<(), ChainError> {
        let seq = event.seq;
        let bad = |reason| ChainError::InvalidTransition { seq, reason };
        match &event.body {
            EventBody::GrantCreated {
                grant,
                grantee,
                capabilities,
                conditions,
                expires_at,
                not_before,
            } => {
                if *grantee == self.user {
                    return Err(bad("grant to the owner"));
                }
                if self.grants.contains_key(grant) || self.processing.grants.contains_key(grant) {
                    return Err(ChainError::BadGrant {
                        seq,
                        grant: *grant,
                        reason: "created twice",
                    });
                }
                self.grants.insert(
                    *grant,
                    Grant {
                        id: *grant,
                        grantee: grantee.clone(),
                        capabilities: *capabilities,
                        conditions: conditions.clone(),
                        expires_at: *expires_at,
                        not_before: *not_before,
                        revoked: false,
                    },
                );
            }
            EventBody::GrantRevoked { grant } => match self
                .grants
                .get_mut(grant)
                .map(|g| &mut g.revoked)
                .or_else(|| {
                    self.processing
                        .grants
                        .get_mut(grant)
                        .map(|g| &mut g.revoked)
                }) {
                Some(revoked) if !*revoked => *revoked = true,
                Some(_) => {
                    return Err(ChainError::BadGrant {
                        seq,
                        grant: *grant,
                        reason: "already revoked",
                    });
                }
                None => {
                    return Err(ChainError::BadGrant {
                        seq,
                        grant: *grant,
                        reason: "does not exist",
                    });
                }
            },
            EventBody::QuestionAsked {
                question,
                asker,
                grant,
                model,
                cited,
            } => {
                self.live_grant(event, grant, asker, AccessAction::Ask)?;
                if !self.processing.models.contains(model) {
                    return Err(bad(
                        "the answering model is not a model_trained of this chain",
                    ));
                }
                if self.memories.contains(question) || self.processing.questions.contains(question)
                {
                    return Err(bad("question id used before (by a memory or a question)"));
                }
                if cited.len() > processing::MAX_INPUTS || !processing::strictly_ascending(cited) {
                    return Err(bad(
                        "cited memories are at most 1024, in ascending id order, once each",
                    ));
                }
                let conditions = &self.grants[grant].conditions;
                for m in cited {
                    if !self.memories.contains(m) {
                        return Err(ChainError::UnknownMemory { seq, memory: *m });
                    }
                    if self.processing.erased.contains(m) {
                        return Err(bad("cites an erased memory"));
                    }
                    // The memory list is known from the chain alone; tags, kinds and times
                    // are checked where the records are (a custody bundle's openings).
                    if !conditions.memories.is_empty() && !conditions.memories.contains(m) {
                        return Err(ChainError::CitationNotCovered { seq, memory: *m });
                    }
                }
                self.processing.questions.insert(*question);
                self.memory_seq.insert(*question, seq);
            }
            EventBody::AccessRecorded {
                accessor,
                grant,
                action,
                memories,
            } => {
                self.live_grant(event, grant, accessor, *action)?;
                if let Some(m) = memories.iter().find(|m| !self.memories.contains(m)) {
                    return Err(ChainError::UnknownMemory { seq, memory: *m });
                }
            }
            // The other kinds have no consent rules.
            _ => {}
        }
        Ok(())
    }

    /// The user grant `grant`, if it is live for `who` doing `action` at the event's time
    /// (docs/FORMAT.md §4.1.1 points 1 to 3); else `bad_grant` with core's reason.
    fn live_grant(
        &self,
        event: &Event,
        grant: &GrantId,
        who: &UserId,
        action: AccessAction,
    ) -> Result<&Grant, ChainError> {
        let refused = |reason| ChainError::BadGrant {
            seq: event.seq,
            grant: *grant,
            reason,
        };
        let g = self.grants.get(grant).ok_or(refused("does not exist"))?;
        g.live_for(who, action, event.timestamp)
            .map_err(|r| refused(r.reason()))?;
        Ok(g)
    }
}
