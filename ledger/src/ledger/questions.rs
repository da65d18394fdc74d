//! Questions asked under grants (docs/FORMAT.md §4.3): a `question_asked` event whose
//! payload is the question's text, sealed under the question id's own key like a memory's
//! content (so the owner reads it, and erases it like a memory).

use super::*;
use mnemo_core::{Content, GrantId, MemoryRecord, ModelId, commitment};

/// The longest question, in bytes of UTF-8.
pub const MAX_QUESTION_BYTES: usize = 4096;

/// The kind of a question's payload record.
pub const QUESTION_KIND: &str = "question";

/// A question to record in the owner's chain.
#[derive(Clone, Debug)]
pub struct NewQuestion {
    /// Who asks: the grant's grantee.
    pub asker: UserId,
    /// The grant with the ask capability it is asked under.
    pub grant: GrantId,
    /// The model that answered.
    pub model: ModelId,
    /// The memories the answer cites (any order; recorded in ascending id order).
    pub cited: Vec<MemoryId>,
    /// The question.
    pub text: String,
    /// The asker's idempotency key: a retry within the duplicate window gives the first
    /// record's receipt (`duplicate: true`), and nothing is recorded twice.
    pub idempotency_key: Option<String>,
}

impl Ledger {
    /// Records a question in `owner`'s chain. The chain rules decide (the grant live for
    /// the asker with `ask`, the model, the citations): refused with nothing written.
    pub async fn append_question(&self, owner: &UserId, q: NewQuestion) -> Result<Receipt> {
        if q.text.is_empty() || q.text.len() > MAX_QUESTION_BYTES {
            return Err(LedgerError::InvalidInput(format!(
                "a question is 1 to {MAX_QUESTION_BYTES} bytes"
            )));
        }
        let record = MemoryRecord {
            kind: QUESTION_KIND.into(),
            tags: Vec::new(),
            captured_at: None,
            source: None,
            content_type: "text/plain; charset=utf-8".into(),
            content: Content::Inline {
                bytes: q.text.into_bytes(),
            },
        };
        record
            .check_values()
            .map_err(|r| LedgerError::InvalidInput(r.into()))?;
        let record_bytes = record.canonical_bytes();
        let mut salt = [0u8; commitment::SALT_LEN];
        rand::thread_rng().fill_bytes(&mut salt);
        let mut id = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut id);
        let question = MemoryId(id);
        let mut plain = zeroize::Zeroizing::new(Vec::with_capacity(40 + record_bytes.len()));
        plain.push(PLAIN_INLINE);
        plain.extend_from_slice(&salt);
        plain.extend_from_slice(&record_bytes);
        let prepared = PreparedMemory {
            memory: question,
            request: None,
            commitment: commitment::commit(&salt, &record_bytes),
            origin: None,
            plain,
        };
        let mut cited = q.cited;
        cited.sort();
        cited.dedup();
        let body = EventBody::QuestionAsked {
            question,
            asker: q.asker.clone(),
            grant: q.grant,
            model: q.model,
            cited,
        };
        // Scoped to the asker: one asker's key never suppresses another's question.
        let msg_id = q.idempotency_key.map(|k| {
            let h = blake3::Hasher::new()
                .update(b"mnemo question idempotency\0")
                .update(q.asker.as_str().as_bytes())
                .update(b"\0")
                .update(k.as_bytes())
                .finalize();
            format!("ask-{}", &h.to_hex()[..32])
        });
        Box::pin(self.write(owner, body, Some(&prepared), msg_id.as_deref(), false, None)).await
    }
}
