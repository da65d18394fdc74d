//! The memory record: what a `memory_ingested` event's payload commitment covers
//! (docs/FORMAT.md §6.1). It is stored only encrypted; the chain holds the commitment.

use serde::{Deserialize, Serialize};

use crate::encoding::{Reader, Writer};
use crate::error::DecodeError;
use crate::hash::{self, CTX_OBJECT};
use crate::ids::{Hash32, TimestampMs};

/// Where a memory's content is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "storage", deny_unknown_fields)]
pub enum Content {
    /// The bytes themselves (small memories: text, notes).
    Inline {
        /// The content.
        #[serde(with = "hex_bytes")]
        bytes: Vec<u8>,
    },
    /// A large object kept apart (audio, files), committed to by its hash.
    Object {
        /// [`object_hash`] of the plaintext content.
        hash: Hash32,
        /// Its size in bytes.
        size: u64,
    },
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        crate::ids::lower_hex(&s).map_err(serde::de::Error::custom)?;
        hex::decode(s.as_ref()).map_err(serde::de::Error::custom)
    }
}

/// The hash that commits to a large object's plaintext content.
pub fn object_hash(content: &[u8]) -> Hash32 {
    hash::hash_parts(CTX_OBJECT, &[content])
}

/// [`object_hash`] over content that arrives in pieces (streamed uploads).
pub struct ObjectHasher(blake3::Hasher);

impl Default for ObjectHasher {
    fn default() -> Self {
        Self(hash::derive_key_hasher(CTX_OBJECT))
    }
}

impl ObjectHasher {
    /// Adds the next piece of content.
    pub fn update(&mut self, piece: &[u8]) {
        self.0.update(piece);
    }

    /// The hash of everything added, equal to [`object_hash`] of its concatenation.
    pub fn finalize(&self) -> Hash32 {
        Hash32(*self.0.finalize().as_bytes())
    }
}

/// A memory as the user gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryRecord {
    /// What sort of memory (`conversation`, `transcript`, `note`, `web`, `audio`, ...).
    pub kind: String,
    /// Free tags; grants can be limited to tags.
    pub tags: Vec<String>,
    /// When it was captured, if known.
    pub captured_at: Option<TimestampMs>,
    /// Where it came from (an app, a device name), if known.
    pub source: Option<String>,
    /// MIME type of the content.
    pub content_type: String,
    /// The content.
    pub content: Content,
}

impl MemoryRecord {
    /// Canonical bytes: `u8 0x01 || str kind || list<str> tags || opt<i64> captured_at ||
    /// opt<str> source || str content_type || content`, where content is
    /// `u8 1 || u32 len || bytes` (inline) or `u8 2 || [32] hash || u64 size` (object).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let inline = match &self.content {
            Content::Inline { bytes } => bytes.len(),
            Content::Object { .. } => 40,
        };
        let mut w = Writer::with_capacity(64 + inline);
        w.u8(crate::event::FORMAT_V1);
        w.str(&self.kind);
        w.len(self.tags.len());
        for t in &self.tags {
            w.str(t);
        }
        w.bool(self.captured_at.is_some());
        if let Some(t) = self.captured_at {
            w.i64(t.0);
        }
        w.bool(self.source.is_some());
        if let Some(s) = &self.source {
            w.str(s);
        }
        w.str(&self.content_type);
        match &self.content {
            Content::Inline { bytes } => {
                w.u8(1);
                w.len(bytes.len());
                w.fixed(bytes);
            }
            Content::Object { hash, size } => {
                w.u8(2);
                w.fixed(&hash.0);
                w.u64(*size);
            }
        }
        w.buf
    }

    /// Strict decoding of [`canonical_bytes`](Self::canonical_bytes).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let v = r.u8("version")?;
        if v != crate::event::FORMAT_V1 {
            return Err(DecodeError::UnknownVersion(v));
        }
        let kind = r.str("kind")?.to_owned();
        let n = r.count(4, "tags")?;
        let tags = (0..n)
            .map(|_| r.str("tag").map(str::to_owned))
            .collect::<Result<_, _>>()?;
        let captured_at = if r.bool("captured_at flag")? {
            Some(TimestampMs(r.i64("captured_at")?))
        } else {
            None
        };
        let source = if r.bool("source flag")? {
            Some(r.str("source")?.to_owned())
        } else {
            None
        };
        let content_type = r.str("content_type")?.to_owned();
        let at = r.pos();
        let content = match r.u8("content tag")? {
            1 => {
                let n = r.count(1, "content")?;
                Content::Inline {
                    bytes: r.take(n, "content")?.to_vec(),
                }
            }
            2 => Content::Object {
                hash: Hash32(r.array("object hash")?),
                size: r.u64("object size")?,
            },
            _ => {
                return Err(DecodeError::Invalid {
                    offset: at,
                    what: "content tag",
                });
            }
        };
        r.finish()?;
        Ok(Self {
            kind,
            tags,
            captured_at,
            source,
            content_type,
            content,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_strictness() {
        let m = MemoryRecord {
            kind: "note".into(),
            tags: vec!["work".into(), "x".into()],
            captured_at: Some(TimestampMs(5)),
            source: None,
            content_type: "text/plain".into(),
            content: Content::Inline {
                bytes: b"hello".to_vec(),
            },
        };
        let b = m.canonical_bytes();
        assert_eq!(MemoryRecord::decode(&b).unwrap(), m);
        let mut longer = b.clone();
        longer.push(0);
        assert!(MemoryRecord::decode(&longer).is_err());
        assert!(MemoryRecord::decode(&b[..b.len() - 1]).is_err());
    }
}
