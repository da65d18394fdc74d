//! Identifiers and fixed-size byte values: user ids, sequence numbers, hashes, memory and
//! grant ids, key ids. Byte values serialise to JSON as lowercase hex.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

use crate::error::IdError;

/// Longest accepted user id, in bytes.
pub const USER_ID_MAX_LEN: usize = 64;

/// A user id: 1 to 64 ASCII letters, digits, `-` or `_`.
///
/// The restriction is what keeps a user id safe to use as one NATS subject token: `.`, `*`,
/// `>` and whitespace are rejected here, so no id can reach into another user's subjects.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    /// Validates and wraps a user id.
    pub fn new(id: impl Into<String>) -> Result<Self, IdError> {
        let id = id.into();
        if id.is_empty() || id.len() > USER_ID_MAX_LEN {
            return Err(IdError::UserIdLength(id.len()));
        }
        if let Some(c) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(IdError::UserIdChar(c));
        }
        Ok(Self(id))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for UserId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for UserId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

/// A processor's name: the same characters as a user id (it is a NATS subject token too),
/// in a namespace of its own.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ProcessorId(String);

impl ProcessorId {
    /// Validates and wraps a processor name (the rules of [`UserId::new`]).
    pub fn new(id: impl Into<String>) -> Result<Self, IdError> {
        UserId::new(id).map(|u| Self(u.0))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProcessorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ProcessorId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for ProcessorId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

/// A 1-based position in one user's chain. Sequence numbers are gap-free per user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Seq(pub u64);

impl Seq {
    /// The first sequence number of every chain.
    pub const FIRST: Seq = Seq(1);

    /// The sequence number that follows this one.
    pub fn next(self) -> Seq {
        Seq(self.0 + 1)
    }

    /// The sequence number as an integer.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Milliseconds since the Unix epoch, UTC. Always supplied by the caller: `mnemo-core` has
/// no clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TimestampMs(pub i64);

macro_rules! hex_bytes {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Parses lowercase or uppercase hex of exactly the right length.
            pub fn from_hex(s: &str) -> Result<Self, IdError> {
                let mut out = [0u8; $len];
                hex::decode_to_slice(s, &mut out).map_err(|_| IdError::Hex {
                    what: stringify!($name),
                    expected_len: $len * 2,
                })?;
                Ok(Self(out))
            }

            /// Lowercase hex.
            pub fn to_hex(&self) -> String {
                self.with_hex(str::to_owned)
            }

            /// Calls `f` with the lowercase hex, written on the stack (no allocation: ids
            /// and hashes are serialized in every API answer and every listing).
            fn with_hex<R>(&self, f: impl FnOnce(&str) -> R) -> R {
                let mut buf = [0u8; $len * 2];
                hex::encode_to_slice(self.0, &mut buf).expect("the buffer fits exactly");
                f(std::str::from_utf8(&buf).expect("hex is ASCII"))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.with_hex(|h| write!(f, "{}({h})", stringify!($name)))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.with_hex(|h| f.write_str(h))
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::from_hex(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.with_hex(|h| s.serialize_str(h))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $crate::ids::lower_hex(&s).map_err(serde::de::Error::custom)?;
                Self::from_hex(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_bytes!(
    /// A 32-byte blake3 output: event hashes, payload commitments, Merkle roots.
    Hash32,
    32
);
hex_bytes!(
    /// A memory id: 16 bytes chosen by the ledger, unique within a user's chain.
    MemoryId,
    16
);
hex_bytes!(
    /// A grant id: 16 bytes chosen by the ledger, unique within a user's chain.
    GrantId,
    16
);
hex_bytes!(
    /// A model id: 16 bytes chosen by the ledger, unique within a user's chain.
    ModelId,
    16
);
hex_bytes!(
    /// A key id: the keyed hash of an ed25519 public key (see [`crate::hash::key_id`]).
    KeyId,
    32
);
hex_bytes!(
    /// An EVM address (20 bytes), e.g. the anchor contract.
    Address,
    20
);

impl Hash32 {
    /// All zero bytes: the `prev` of the first event of every chain.
    pub const ZERO: Hash32 = Hash32([0; 32]);
}

/// JSON carries hex in lowercase only (FORMAT.md §13.1): the check every hex field's
/// deserialiser makes before decoding.
pub fn lower_hex(s: &str) -> Result<(), &'static str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("hex must be lowercase");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_that_could_reach_other_subjects_are_rejected() {
        for bad in ["", "a.b", "a*", ">", "a b", "a\tb", "ä", &"x".repeat(65)] {
            assert!(UserId::new(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["alice", "A-1_b", &"x".repeat(64)] {
            assert!(UserId::new(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn hex_round_trip_and_length_check() {
        let h = Hash32([7; 32]);
        assert_eq!(Hash32::from_hex(&h.to_hex()).unwrap(), h);
        assert!(Hash32::from_hex("07").is_err());
        assert!(MemoryId::from_hex(&"zz".repeat(16)).is_err());
    }

    #[test]
    fn hex_forms_agree() {
        let m = MemoryId([
            0, 1, 0xab, 0xff, 9, 10, 11, 12, 13, 14, 15, 16, 0x7f, 0x80, 0xc0, 0xfe,
        ]);
        let hex = "0001abff090a0b0c0d0e0f107f80c0fe";
        assert_eq!(m.to_hex(), hex);
        assert_eq!(m.to_string(), hex);
        assert_eq!(format!("{m:?}"), format!("MemoryId({hex})"));
        assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{hex}\""));
        assert_eq!(
            serde_json::from_str::<MemoryId>(&format!("\"{hex}\"")).unwrap(),
            m
        );
    }
}
