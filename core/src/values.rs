//! What values a chain may hold (docs/FORMAT.md §4.5): one rule for the writer, the views
//! and every verifier, so that nothing a chain accepts is something a view cannot store.
//!
//! - **Times** (event timestamps, `captured_at`, `expires_at`, grant `from`/`until`) are
//!   milliseconds since the Unix epoch in `[TimestampMs::MIN_VALID, TimestampMs::MAX_VALID]`:
//!   0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z.
//! - **Text** (kinds, tags, sources, content types, grant condition tags and kinds, and the
//!   content of a memory whose content type is `text/*`) never contains U+0000.
//! - **Kinds** (a memory record's, and those a grant's conditions name) are not empty.

use crate::event::{EventBody, GrantConditions};
use crate::ids::TimestampMs;
use crate::memory::{Content, MemoryRecord};

impl TimestampMs {
    /// The earliest time a chain may hold: 0001-01-01T00:00:00Z.
    pub const MIN_VALID: TimestampMs = TimestampMs(-62_135_596_800_000);
    /// The latest time a chain may hold: 9999-12-31T23:59:59.999Z.
    pub const MAX_VALID: TimestampMs = TimestampMs(253_402_300_799_999);

    /// Whether the time is in the range a chain may hold.
    pub fn is_valid(self) -> bool {
        (Self::MIN_VALID..=Self::MAX_VALID).contains(&self)
    }
}

/// Whether a piece of text is allowed: no U+0000.
pub fn text_ok(s: &str) -> bool {
    !s.contains('\0')
}

fn time(t: Option<TimestampMs>, what: &'static str) -> Result<(), &'static str> {
    match t {
        Some(t) if !t.is_valid() => Err(what),
        _ => Ok(()),
    }
}

impl GrantConditions {
    /// The value rules for conditions.
    pub fn check_values(&self) -> Result<(), &'static str> {
        if !self.tags.iter().chain(&self.kinds).all(|s| text_ok(s)) {
            return Err("a grant condition's tag or kind contains U+0000");
        }
        if self.kinds.iter().any(String::is_empty) {
            return Err("a grant condition names an empty kind");
        }
        time(
            self.from,
            "a grant condition's `from` is outside the time range",
        )?;
        time(
            self.until,
            "a grant condition's `until` is outside the time range",
        )
    }
}

impl EventBody {
    /// The value rules for an event's kind-specific fields.
    pub fn check_values(&self) -> Result<(), &'static str> {
        match self {
            EventBody::GrantCreated {
                conditions,
                expires_at,
                not_before,
                ..
            } => {
                conditions.check_values()?;
                time(*expires_at, "`expires_at` is outside the time range")?;
                time(*not_before, "`not_before` is outside the time range")
            }
            EventBody::ProcessingGranted {
                version,
                conditions,
                expires_at,
                ..
            } => {
                version.as_deref().map_or(Ok(()), check_version)?;
                conditions.check_values()?;
                time(*expires_at, "`expires_at` is outside the time range")
            }
            EventBody::MemoryDerived { version, .. } | EventBody::ModelTrained { version, .. } => {
                check_version(version)
            }
            EventBody::MemoryIngested {
                capture: Some(c), ..
            } => {
                if c.stream.is_empty()
                    || c.stream.len() > crate::event::MAX_CAPTURE_STREAM
                    || !text_ok(&c.stream)
                {
                    return Err("a capture stream is 1 to 64 bytes of text without U+0000");
                }
                Ok(())
            }
            EventBody::LineageErased { reason, .. } => check_reason(reason),
            EventBody::AccessRecorded {
                action: crate::event::AccessAction::Ask,
                ..
            } => Err("an access record's action is list, read metadata or read content"),
            _ => Ok(()),
        }
    }
}

/// A processor version: 1 to 64 bytes of text without U+0000.
pub fn check_version(v: &str) -> Result<(), &'static str> {
    if v.is_empty() || v.len() > crate::processing::MAX_VERSION_LEN || !text_ok(v) {
        return Err("a processor version is 1 to 64 bytes of text without U+0000");
    }
    Ok(())
}

/// An erasure reason: at most 512 bytes of text without U+0000 (empty: none given).
/// Checked where the reason enters, whether or not an event ends up carrying it.
pub fn check_reason(r: &str) -> Result<(), &'static str> {
    if r.len() > crate::processing::MAX_REASON_LEN || !text_ok(r) {
        return Err("an erasure reason is longer than 512 bytes or contains U+0000");
    }
    Ok(())
}

/// A memory kind, as a processor declares it consumes or produces: 1 to 64 bytes of text
/// without U+0000.
pub fn check_kind(k: &str) -> Result<(), &'static str> {
    if k.is_empty() || k.len() > MAX_KIND_LEN || !text_ok(k) {
        return Err("a kind is 1 to 64 bytes of text without U+0000");
    }
    Ok(())
}

/// The longest kind a processor may declare.
pub const MAX_KIND_LEN: usize = 64;

impl MemoryRecord {
    /// The value rules for a memory record.
    pub fn check_values(&self) -> Result<(), &'static str> {
        let texts = [self.kind.as_str(), self.content_type.as_str()]
            .into_iter()
            .chain(self.tags.iter().map(String::as_str))
            .chain(self.source.as_deref());
        if !texts.into_iter().all(text_ok) {
            return Err("kind, tags, source or content type contain U+0000");
        }
        if self.kind.is_empty() {
            return Err("a memory's kind is empty");
        }
        time(self.captured_at, "`captured_at` is outside the time range")?;
        if let Content::Inline { bytes } = &self.content
            && is_text(&self.content_type)
            && bytes.contains(&0)
        {
            return Err("text content contains U+0000");
        }
        Ok(())
    }
}

/// Whether a content type is text (`text/*`, any case, parameters aside).
pub fn is_text(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
        .starts_with("text/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_text() {
        assert!(TimestampMs(0).is_valid());
        assert!(TimestampMs::MAX_VALID.is_valid() && TimestampMs::MIN_VALID.is_valid());
        assert!(!TimestampMs(i64::MAX).is_valid() && !TimestampMs(i64::MIN).is_valid());
        assert!(!TimestampMs(TimestampMs::MAX_VALID.0 + 1).is_valid());
        assert!(text_ok("a b") && !text_ok("a\0b"));
        let mut r = MemoryRecord {
            kind: "note".into(),
            tags: vec![],
            captured_at: Some(TimestampMs(1)),
            source: None,
            content_type: "Text/Plain; charset=utf-8".into(),
            content: Content::Inline {
                bytes: b"a\0b".to_vec(),
            },
        };
        assert!(r.check_values().is_err());
        r.content_type = "application/octet-stream".into();
        assert!(
            r.check_values().is_ok(),
            "binary content may hold NUL bytes"
        );
        r.captured_at = Some(TimestampMs(i64::MAX));
        assert!(r.check_values().is_err());
        r.captured_at = None;
        r.kind = String::new();
        assert!(r.check_values().is_err(), "an empty kind");
        let c = GrantConditions {
            kinds: vec![String::new()],
            ..Default::default()
        };
        assert!(c.check_values().is_err(), "an empty condition kind");
    }
}
