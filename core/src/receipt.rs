//! Custody receipts (format version 2, docs/FORMAT.md §5.5): what a client holds the moment
//! its append is acknowledged. The event's canonical bytes and its seal: verifiable alone,
//! offline, against the custody key, with no access to the ledger.

use serde::{Deserialize, Serialize};

use crate::custody::HexBytes;
use crate::encoding::Reader;
use crate::error::DecodeError;
use crate::event::{FORMAT_V2, UnsignedEvent};
use crate::hash;
use crate::ids::Hash32;
use crate::keys::PublicKey;
use crate::seal::{Seal, SealError};

/// An acknowledged event and its seal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustodyReceipt {
    /// The event's canonical bytes (§3), hex in JSON.
    pub event: HexBytes,
    /// Its seal (§5.4).
    pub seal: Seal,
}

/// Why a receipt does not hold.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    /// The event bytes do not decode as a version 2 event.
    #[error("the receipt's event does not decode: {0}")]
    Decode(#[from] DecodeError),
    /// The event is not of version 2 (a version 1 event has no seal).
    #[error("the receipt's event is of format version {0}, not 2")]
    Version(u8),
    /// The event names another signer than the key the receipt is checked against.
    #[error("the event is signed by key {signer}, not by the given custody key {key}")]
    Signer {
        /// The event's signer key id.
        signer: crate::ids::KeyId,
        /// The given key's id.
        key: crate::ids::KeyId,
    },
    /// The seal does not hold.
    #[error("{0}")]
    Seal(#[from] SealError),
}

impl CustodyReceipt {
    /// The receipt of `event` (version 2) with its full `seal`.
    pub fn new(event: &UnsignedEvent, seal: Seal) -> Self {
        Self {
            event: HexBytes(event.canonical_bytes()),
            seal,
        }
    }

    /// Verifies the receipt under the custody key `key`: the event decodes, is of
    /// version 2 and signed by `key`, and the seal covers its hash and is signed by `key`.
    /// Returns the event and its hash.
    pub fn verify(&self, key: &PublicKey) -> Result<(UnsignedEvent, Hash32), ReceiptError> {
        let mut r = Reader::new(&self.event.0);
        let event = UnsignedEvent::decode(&mut r)?;
        r.finish()?;
        if event.version != FORMAT_V2 {
            return Err(ReceiptError::Version(event.version));
        }
        if event.signer != key.id() {
            return Err(ReceiptError::Signer {
                signer: event.signer,
                key: key.id(),
            });
        }
        let h = hash::event_hash(&self.event.0);
        self.seal.verify(key.0.as_bytes(), &h)?;
        Ok((event, h))
    }
}
