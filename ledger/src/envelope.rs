//! The body of a chain message in JetStream (docs/FORMAT.md §11):
//! `u8 0x01 || u32 len(event) || event wire form || sealed payload`. The sealed payload is
//! empty for events without one.

use bytes::Bytes;

use crate::error::{LedgerError, Result};

const ENVELOPE_V1: u8 = 1;

/// Puts an event and its sealed payload into one message body.
pub fn encode(event_wire: &[u8], sealed: &[u8]) -> Bytes {
    let mut b = Vec::with_capacity(5 + event_wire.len() + sealed.len());
    b.push(ENVELOPE_V1);
    b.extend_from_slice(&(event_wire.len() as u32).to_be_bytes());
    b.extend_from_slice(event_wire);
    b.extend_from_slice(sealed);
    Bytes::from(b)
}

/// Splits a message body into `(event wire form, sealed payload)`.
pub fn decode(body: &Bytes) -> Result<(Bytes, Bytes)> {
    let bad = |why: &str| LedgerError::Tampered(format!("chain message: {why}"));
    if body.len() < 5 {
        return Err(bad("too short"));
    }
    if body[0] != ENVELOPE_V1 {
        return Err(bad("unknown envelope version"));
    }
    let n = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    if body.len() - 5 < n {
        return Err(bad("event length past the end"));
    }
    Ok((body.slice(5..5 + n), body.slice(5 + n..)))
}
