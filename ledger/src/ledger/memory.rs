//! What a client hands the ledger to append ([`NewMemory`]) and the checks that word its
//! refusals before core's value rules decide.

use super::*;

/// Longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;

/// Whether `k` is a valid idempotency key (also a `Nats-Msg-Id` and an upload id): 1 to
/// [`MAX_IDEMPOTENCY_KEY`] printable ASCII characters.
pub fn is_idempotency_key(k: &str) -> bool {
    !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY && k.bytes().all(|b| b.is_ascii_graphic())
}

pub(super) const MAX_TAGS: usize = 64;

pub(super) const MAX_SHORT: usize = 256;

/// A memory to append.
#[derive(Clone, Debug, Default)]
pub struct NewMemory {
    /// `conversation`, `transcript`, `note`, `web`, `audio`, ...
    pub kind: String,
    /// Tags (at most 64, each at most 256 bytes).
    pub tags: Vec<String>,
    /// When it was captured.
    pub captured_at: Option<TimestampMs>,
    /// Where it came from.
    pub source: Option<String>,
    /// MIME type.
    pub content_type: String,
    /// The content.
    pub content: Bytes,
    /// Client-chosen idempotency key: the same key within the duplicate window gives the
    /// same receipt and no second event.
    pub idempotency_key: Option<String>,
    /// The device's capture id (stream and counter): kept in the chain for good, so the
    /// same capture is appended once whatever the time between retries (a repeat with the
    /// same content gives the first receipt; with other content it is refused).
    pub capture: Option<Capture>,
    /// The signed form of a capture: the device picked the commitment's salt and signed
    /// the capture (docs/FORMAT.md §5.2) with a device key of the chain.
    pub signed: Option<DeviceSignature>,
}

/// A device's signature over its capture, with the salt of the commitment it signed.
#[derive(Clone, Copy, Debug)]
pub struct DeviceSignature {
    /// The device key's id (added to the chain with role device).
    pub key: KeyId,
    /// The commitment salt the device drew.
    pub salt: [u8; 32],
    /// `SIG_CAPTURE` message signature (FORMAT.md §5.2).
    pub signature: Sig,
}

pub(super) fn check_short(what: &str, s: &str) -> Result<()> {
    if s.len() > MAX_SHORT || s.chars().any(char::is_control) {
        return Err(LedgerError::InvalidInput(format!(
            "{what} must be at most {MAX_SHORT} bytes without control characters"
        )));
    }
    Ok(())
}

impl NewMemory {
    pub(super) fn validate(&self, max_content: usize) -> Result<()> {
        if self.content.len() > max_content {
            return Err(LedgerError::PayloadTooLarge {
                size: self.content.len(),
                max: max_content,
            });
        }
        if self.kind.is_empty() {
            return Err(LedgerError::InvalidInput("kind must not be empty".into()));
        }
        check_short("kind", &self.kind)?;
        if self.content_type.is_empty() {
            return Err(LedgerError::InvalidInput(
                "content_type must not be empty".into(),
            ));
        }
        check_short("content_type", &self.content_type)?;
        if let Some(s) = &self.source {
            check_short("source", s)?;
        }
        if self.tags.len() > MAX_TAGS {
            return Err(LedgerError::InvalidInput(format!(
                "at most {MAX_TAGS} tags"
            )));
        }
        for t in &self.tags {
            if t.is_empty() {
                return Err(LedgerError::InvalidInput("tags must not be empty".into()));
            }
            check_short("tag", t)?;
        }
        if self.captured_at.is_some_and(|t| !t.is_valid()) {
            return Err(LedgerError::InvalidInput(format!(
                "captured_at must be a time from {} to {} (ms since the epoch)",
                TimestampMs::MIN_VALID.0,
                TimestampMs::MAX_VALID.0
            )));
        }
        if mnemo_core::values::is_text(&self.content_type) && self.content.contains(&0) {
            return Err(LedgerError::InvalidInput(
                "text content must not contain U+0000".into(),
            ));
        }
        if self.signed.is_some() && self.capture.is_none() {
            return Err(LedgerError::InvalidInput(
                "a device signature needs a capture id (stream and counter)".into(),
            ));
        }
        if let Some(c) = &self.capture
            && (c.stream.is_empty()
                || c.stream.len() > mnemo_core::event::MAX_CAPTURE_STREAM
                || c.stream.chars().any(char::is_control))
        {
            return Err(LedgerError::InvalidInput(format!(
                "a capture stream is 1 to {} bytes without control characters",
                mnemo_core::event::MAX_CAPTURE_STREAM
            )));
        }
        if let Some(k) = &self.idempotency_key
            && !is_idempotency_key(k)
        {
            return Err(LedgerError::InvalidInput(format!(
                "idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"
            )));
        }
        Ok(())
    }
}
