//! Large payloads in the JetStream object store, encrypted as a stream so that an upload
//! never has to be held in memory whole (docs/FORMAT.md §11).
//!
//! An object is `0x02 || nonce prefix (19 bytes) || chunks`: the plaintext cut into 64 KiB
//! pieces, each sealed with XChaCha20-Poly1305 in the STREAM construction (big-endian
//! 32-bit counter and a last-chunk flag in the nonce, RustCrypto's `StreamBE32`), with the
//! object's associated data. Reordered, dropped, repeated or truncated chunks fail to open.
//! Objects written before streaming (payload flag 1) are one XChaCha20-Poly1305 box.

use bytes::Bytes;
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::aead::{KeyInit, Payload};
use futures::{Stream, StreamExt};
use mnemo_core::Hash32;
use mnemo_core::memory::ObjectHasher;
use rand::RngCore;
use std::sync::{Arc, Mutex};

use crate::crypto::SecretKey;

/// Plaintext bytes per chunk.
pub(crate) const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;
const PREFIX: usize = 19;
const OBJECT_V2: u8 = 2;

/// What sealing a stream found out, read once the object store consumed it.
#[derive(Default)]
pub(crate) struct Sealing {
    /// Plaintext bytes seen.
    pub size: u64,
    /// The plaintext's object hash, once the stream ended.
    pub hash: Option<Hash32>,
    /// The content went past the limit (the stream stopped with an error there).
    pub too_large: bool,
}

struct State<S> {
    input: S,
    enc: Option<EncryptorBE32<XChaCha20Poly1305>>,
    aad: Vec<u8>,
    buf: Vec<u8>,
    hasher: ObjectHasher,
    header: Option<Bytes>,
    max: u64,
    done: bool,
    out: Arc<Mutex<Sealing>>,
}

fn crypto_error() -> std::io::Error {
    std::io::Error::other("object encryption failed")
}

/// Seals `input` into object bytes, chunk by chunk, counting and hashing the plaintext
/// into `out`; stops with an error once more than `max` bytes came.
pub(crate) fn seal_stream<S>(
    key: &SecretKey,
    aad: Vec<u8>,
    input: S,
    max: u64,
    out: Arc<Mutex<Sealing>>,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + Unpin + use<S>
where
    S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
{
    let mut prefix = [0u8; PREFIX];
    rand::thread_rng().fill_bytes(&mut prefix);
    let cipher = XChaCha20Poly1305::new(key.expose().into());
    let mut header = Vec::with_capacity(1 + PREFIX);
    header.push(OBJECT_V2);
    header.extend_from_slice(&prefix);
    let state = State {
        input,
        enc: Some(EncryptorBE32::from_aead(cipher, (&prefix).into())),
        aad,
        buf: Vec::with_capacity(2 * CHUNK),
        hasher: ObjectHasher::default(),
        header: Some(Bytes::from(header)),
        max,
        done: false,
        out,
    };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        if let Some(h) = st.header.take() {
            return Some((Ok(h), st));
        }
        if st.done {
            return None;
        }
        loop {
            // A full chunk with more after it is sealed as a middle chunk; the rest waits
            // for the end of the input, which makes it the last chunk.
            if st.buf.len() > CHUNK {
                let rest = st.buf.split_off(CHUNK);
                let chunk = std::mem::replace(&mut st.buf, rest);
                let enc = st.enc.as_mut().expect("open until the last chunk");
                let sealed = enc.encrypt_next(Payload {
                    msg: &chunk,
                    aad: &st.aad,
                });
                return Some((sealed.map(Bytes::from).map_err(|_| crypto_error()), st));
            }
            match st.input.next().await {
                Some(Ok(piece)) => {
                    let mut out = st.out.lock().expect("lock");
                    out.size += piece.len() as u64;
                    if out.size > st.max {
                        out.too_large = true;
                        drop(out);
                        st.done = true;
                        let e = std::io::Error::other("content is larger than allowed");
                        return Some((Err(e), st));
                    }
                    drop(out);
                    st.hasher.update(&piece);
                    st.buf.extend_from_slice(&piece);
                }
                Some(Err(e)) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
                None => {
                    st.done = true;
                    let enc = st.enc.take().expect("open until the last chunk");
                    let sealed = enc.encrypt_last(Payload {
                        msg: &st.buf,
                        aad: &st.aad,
                    });
                    st.out.lock().expect("lock").hash = Some(st.hasher.finalize());
                    return Some((sealed.map(Bytes::from).map_err(|_| crypto_error()), st));
                }
            }
        }
    }))
}

/// Opens a streamed object (`0x02 || prefix || chunks`); `None` when anything about it is
/// wrong (format, a chunk's tag, order, truncation).
pub(crate) fn open_stream(key: &SecretKey, aad: &[u8], object: &[u8]) -> Option<Vec<u8>> {
    if object.len() < 1 + PREFIX + TAG || object[0] != OBJECT_V2 {
        return None;
    }
    let prefix: [u8; PREFIX] = object[1..1 + PREFIX].try_into().ok()?;
    let cipher = XChaCha20Poly1305::new(key.expose().into());
    let mut dec = DecryptorBE32::from_aead(cipher, (&prefix).into());
    let chunks: Vec<&[u8]> = object[1 + PREFIX..].chunks(CHUNK + TAG).collect();
    let (last, middle) = chunks.split_last()?;
    let mut plain = Vec::with_capacity(object.len());
    for c in middle {
        plain.extend_from_slice(&dec.decrypt_next(Payload { msg: c, aad }).ok()?);
    }
    plain.extend_from_slice(&dec.decrypt_last(Payload { msg: last, aad }).ok()?);
    Some(plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mnemo_core::memory::object_hash;

    async fn seal(content: &[u8], piece: usize, max: u64) -> (Vec<u8>, Sealing) {
        let key = SecretKey::from_bytes([7; 32]);
        let pieces: Vec<std::io::Result<Bytes>> = content
            .chunks(piece.max(1))
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let out = Arc::new(Mutex::new(Sealing::default()));
        let mut s = seal_stream(
            &key,
            b"aad".to_vec(),
            futures::stream::iter(pieces),
            max,
            out.clone(),
        );
        let mut object = Vec::new();
        let mut failed = false;
        while let Some(b) = s.next().await {
            match b {
                Ok(b) => object.extend_from_slice(&b),
                Err(_) => failed = true,
            }
        }
        let st = std::mem::take(&mut *out.lock().unwrap());
        assert_eq!(failed, st.too_large);
        (object, st)
    }

    #[tokio::test]
    async fn round_trips_at_chunk_boundaries_and_in_odd_pieces() {
        let key = SecretKey::from_bytes([7; 32]);
        for len in [1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17] {
            let content: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            for piece in [1000, CHUNK, 7 * CHUNK] {
                let (object, st) = seal(&content, piece, u64::MAX).await;
                assert_eq!(st.size, len as u64);
                assert_eq!(st.hash, Some(object_hash(&content)));
                assert_eq!(
                    open_stream(&key, b"aad", &object).as_deref(),
                    Some(&content[..])
                );
            }
        }
    }

    #[tokio::test]
    async fn tampering_fails_to_open() {
        let key = SecretKey::from_bytes([7; 32]);
        let content = vec![5u8; 2 * CHUNK + 100];
        let (object, _) = seal(&content, 4096, u64::MAX).await;
        let body = 1 + PREFIX;
        let c = CHUNK + TAG;
        // a flipped bit, a dropped middle chunk, swapped chunks, a cut tail, other aad
        let mut flipped = object.clone();
        flipped[body + 10] ^= 1;
        let dropped = [&object[..body + c], &object[body + 2 * c..]].concat();
        let swapped = [
            &object[..body],
            &object[body + c..body + 2 * c],
            &object[body..body + c],
            &object[body + 2 * c..],
        ]
        .concat();
        let cut = object[..body + 2 * c].to_vec();
        for bad in [&flipped, &dropped, &swapped, &cut] {
            assert!(open_stream(&key, b"aad", bad).is_none());
        }
        assert!(open_stream(&key, b"other", &object).is_none());
        assert!(open_stream(&SecretKey::from_bytes([8; 32]), b"aad", &object).is_none());
    }

    #[tokio::test]
    async fn stops_past_the_limit() {
        let content = vec![1u8; 10_000];
        let (_, st) = seal(&content, 1000, 5_000).await;
        assert!(st.too_large);
        assert_eq!(st.hash, None);
    }
}
