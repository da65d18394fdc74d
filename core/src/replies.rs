//! Where mnemo may answer a request: the one rule every NATS service of mnemo applies
//! before it does any work (docs/SECURITY.md, "Reply subjects").
//!
//! A NATS request names its own reply subject, and nats-server checks a publisher's
//! permission on the subject only, never on the reply. A service that answers with a
//! connection allowed to publish more than its requester could would therefore publish,
//! on the requester's behalf, wherever the requester wished: on a chain subject, into a
//! KV bucket, on a task queue. So mnemo answers a request only to a reply subject inside
//! the requester's own inbox space:
//!
//! - a **device** reaches mnemo through its account's service import; nats-server rewrites
//!   every such reply into the exporting account's response space, `_R_.<token>...`, so a
//!   device request whose reply is anything else did not come through an import and is
//!   not answered;
//! - a **processor** reaches mnemo, in operator mode, through its own account's service
//!   import, which rewrites its replies into `_R_.` as for devices; without accounts (one
//!   shared account, a development set-up) it connects with the inbox prefix
//!   `_INBOX_<name>`, so its replies must lie under `_INBOX_<name>.`.
//!
//! A request whose reply subject is outside that space is refused before any work is done:
//! nothing is written, and nothing is published.

/// The prefix nats-server gives the reply subjects of requests that crossed a service
/// import (the exporting account's response space).
pub const IMPORT_REPLY_PREFIX: &str = "_R_.";

/// Who sent a request, as far as its reply subject is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requester<'a> {
    /// A device of a user account, through the account's service import.
    Device,
    /// The processor of this name, with its own NATS credentials.
    Processor(&'a str),
}

/// The inbox prefix a processor's NATS connection uses (`_INBOX_<name>`); its credentials
/// may subscribe to nothing else but its work and notice subjects.
pub fn processor_inbox(name: &str) -> String {
    format!("_INBOX_{name}")
}

/// Why a reply subject is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyRefused {
    /// Not a literal subject (empty token, wildcard, white space or control character).
    #[error("the reply subject is not a literal subject")]
    NotLiteral,
    /// Outside the requester's inbox space.
    #[error("the reply subject is outside the requester's inbox space ({expected}...)")]
    OutsideInbox {
        /// The prefix a reply must start with.
        expected: String,
    },
}

/// Whether mnemo may answer `requester` on `reply`.
pub fn check_reply(requester: Requester<'_>, reply: &str) -> Result<(), ReplyRefused> {
    let literal = !reply.is_empty()
        && reply.split('.').all(|t| {
            !t.is_empty()
                && t != "*"
                && t != ">"
                && !t.chars().any(|c| c.is_whitespace() || c.is_control())
        });
    if !literal {
        return Err(ReplyRefused::NotLiteral);
    }
    // At least one token after the prefix.
    let under = |prefix: &str| matches!(reply.strip_prefix(prefix), Some(rest) if !rest.is_empty());
    match requester {
        Requester::Device if under(IMPORT_REPLY_PREFIX) => Ok(()),
        Requester::Device => Err(ReplyRefused::OutsideInbox {
            expected: IMPORT_REPLY_PREFIX.to_owned(),
        }),
        Requester::Processor(name) => {
            let inbox = format!("{}.", processor_inbox(name));
            if under(IMPORT_REPLY_PREFIX) || under(&inbox) {
                Ok(())
            } else {
                Err(ReplyRefused::OutsideInbox {
                    expected: format!("{IMPORT_REPLY_PREFIX} or {inbox}"),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_answered_only_in_the_import_response_space() {
        assert!(check_reply(Requester::Device, "_R_.abc.def").is_ok());
        for bad in [
            "mnemo.chain.u.victim1",
            "$KV.mnemo-processors.trainer",
            "mnemo.task.asr.demo",
            "_INBOX.x",
            "_R_.",
            "_R_",
            "_R_.a.*",
            "_R_.a.>",
            "_R_..a",
            "",
            "_R_.a b",
        ] {
            assert!(check_reply(Requester::Device, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn processors_are_answered_only_in_their_own_inbox() {
        let asr = Requester::Processor("asr");
        assert!(check_reply(asr, "_INBOX_asr.x.y").is_ok());
        // Through the processor account's import.
        assert!(check_reply(asr, "_R_.y").is_ok());
        for bad in [
            "_INBOX_asr",
            "_INBOX_asr.",
            "_INBOX_asrx.y",
            "_INBOX_trainer.y",
            "_INBOX.y",
            "_R_.",
            "_R_",
            "mnemo.chain.u.victim1",
            "$KV.mnemo-processors.trainer",
            "mnemo.task.asr.demo",
            "_INBOX_asr.>",
        ] {
            assert!(check_reply(asr, bad).is_err(), "{bad}");
        }
    }
}
