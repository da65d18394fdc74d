//! A client's memory as the ledger takes it: [`MemoryMeta`] is what every door reads from
//! its request (REST's JSON body or upload query string, NATS's ingest request or an
//! upload's first chunk), and its two conversions are the only places a [`NewMemory`] is
//! built from a request.

use bytes::Bytes;
use mnemo_core::TimestampMs;
use mnemo_ledger::NewMemory;

/// The content type of a text memory.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// The kind of a text memory that names none.
pub const DEFAULT_TEXT_KIND: &str = "note";

/// What a client says about a memory, besides its content.
#[derive(Clone, Debug, Default)]
pub struct MemoryMeta {
    /// `conversation`, `transcript`, `note`, `web`, `audio`, ...; the door's default if
    /// absent.
    pub kind: Option<String>,
    /// Its tags.
    pub tags: Vec<String>,
    /// When it was captured (ms since the Unix epoch).
    pub captured_at: Option<i64>,
    /// Where it came from.
    pub source: Option<String>,
}

impl MemoryMeta {
    /// A text memory: its content is `text` as UTF-8, its kind [`DEFAULT_TEXT_KIND`]
    /// unless named. No idempotency key, capture or signature: the caller adds what its
    /// request carries.
    pub fn text(self, text: String) -> NewMemory {
        self.into_new(
            DEFAULT_TEXT_KIND,
            TEXT_CONTENT_TYPE.into(),
            Bytes::from(text),
        )
    }

    /// An upload of `content_type`, its content streamed after (`Ledger::append_stream`),
    /// its kind `default_kind` unless named.
    pub fn upload(self, default_kind: &str, content_type: String) -> NewMemory {
        self.into_new(default_kind, content_type, Bytes::new())
    }

    fn into_new(self, default_kind: &str, content_type: String, content: Bytes) -> NewMemory {
        NewMemory {
            kind: self.kind.unwrap_or_else(|| default_kind.to_owned()),
            tags: self.tags,
            captured_at: self.captured_at.map(TimestampMs),
            source: self.source,
            content_type,
            content,
            idempotency_key: None,
            capture: None,
            signed: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_memory_without_a_kind_is_a_note_in_utf8() {
        let m = MemoryMeta::default().text("hello".into());
        assert_eq!(m.kind, "note");
        assert_eq!(m.content_type, TEXT_CONTENT_TYPE);
        assert_eq!(&m.content[..], b"hello");
        assert!(m.capture.is_none() && m.idempotency_key.is_none() && m.signed.is_none());
    }

    #[test]
    fn an_upload_keeps_what_the_client_named_and_streams_its_content() {
        let meta = MemoryMeta {
            kind: Some("voice".into()),
            tags: vec!["a".into()],
            captured_at: Some(7),
            source: Some("phone".into()),
        };
        let m = meta.upload("audio", "audio/ogg".into());
        assert_eq!(
            (m.kind.as_str(), m.content_type.as_str()),
            ("voice", "audio/ogg")
        );
        assert_eq!(m.captured_at, Some(TimestampMs(7)));
        assert_eq!(m.tags, vec!["a".to_owned()]);
        assert!(m.content.is_empty());
        assert_eq!(
            MemoryMeta::default().upload("file", "x/y".into()).kind,
            "file"
        );
    }
}
