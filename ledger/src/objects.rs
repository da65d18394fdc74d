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

/// An `InvalidData` error: content that does not match what the chain commits to.
pub(crate) fn tampered(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

struct Opening<R> {
    reader: R,
    dec: Option<DecryptorBE32<XChaCha20Poly1305>>,
    key: SecretKey,
    aad: Vec<u8>,
    buf: Vec<u8>,
    hasher: ObjectHasher,
    seen: u64,
    hash: Hash32,
    size: u64,
    eof: bool,
    done: bool,
}

/// Opens a streamed object (`0x02 || prefix || chunks`) as it is read: each chunk's
/// plaintext is handed on once its tag checks (STREAM authenticates order and the last
/// chunk too). The last chunk is handed on only after the whole plaintext matched `hash` and
/// `size`, so a reader never gets a complete body that fails them; any failure ends the
/// stream with an `InvalidData` error.
pub(crate) fn open_stream_reader<R>(
    key: &SecretKey,
    aad: Vec<u8>,
    reader: R,
    hash: Hash32,
    size: u64,
) -> futures::stream::BoxStream<'static, std::io::Result<Bytes>>
where
    R: tokio::io::AsyncRead + Send + Unpin + 'static,
{
    use tokio::io::AsyncReadExt;
    let st = Opening {
        reader,
        dec: None,
        key: key.clone(),
        aad,
        buf: Vec::with_capacity(2 * (CHUNK + TAG)),
        hasher: ObjectHasher::default(),
        seen: 0,
        hash,
        size,
        eof: false,
        done: false,
    };
    Box::pin(futures::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            if st.dec.is_none() && st.buf.len() > PREFIX {
                if st.buf[0] != OBJECT_V2 {
                    st.done = true;
                    return Some((Err(tampered("object: unknown format")), st));
                }
                let prefix: [u8; PREFIX] = st.buf[1..1 + PREFIX].try_into().expect("sized");
                let cipher = XChaCha20Poly1305::new(st.key.expose().into());
                st.dec = Some(DecryptorBE32::from_aead(cipher, (&prefix).into()));
                st.buf.drain(..1 + PREFIX);
            }
            // A full sealed chunk with more after it is a middle chunk.
            if let Some(dec) = st.dec.as_mut()
                && st.buf.len() > CHUNK + TAG
            {
                let rest = st.buf.split_off(CHUNK + TAG);
                let sealed = std::mem::replace(&mut st.buf, rest);
                let piece = match dec.decrypt_next(Payload {
                    msg: &sealed,
                    aad: &st.aad,
                }) {
                    Ok(p) => p,
                    Err(_) => {
                        st.done = true;
                        return Some((Err(tampered("object: a chunk does not decrypt")), st));
                    }
                };
                st.seen += piece.len() as u64;
                if st.seen > st.size {
                    st.done = true;
                    return Some((Err(tampered("object: longer than its record says")), st));
                }
                st.hasher.update(&piece);
                return Some((Ok(Bytes::from(piece)), st));
            }
            if st.eof {
                st.done = true;
                let Some(dec) = st.dec.take() else {
                    return Some((Err(tampered("object: truncated header")), st));
                };
                let Ok(piece) = dec.decrypt_last(Payload {
                    msg: &st.buf,
                    aad: &st.aad,
                }) else {
                    return Some((Err(tampered("object: the last chunk does not decrypt")), st));
                };
                st.seen += piece.len() as u64;
                st.hasher.update(&piece);
                if st.seen != st.size || st.hasher.finalize() != st.hash {
                    return Some((Err(tampered("object does not match its hash")), st));
                }
                return Some((Ok(Bytes::from(piece)), st));
            }
            if st.buf.capacity() - st.buf.len() < CHUNK {
                st.buf.reserve(CHUNK);
            }
            match st.reader.read_buf(&mut st.buf).await {
                Ok(0) => st.eof = true,
                Ok(_) => {}
                Err(e) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
            }
        }
    }))
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

    /// Hands out at most `step` bytes per read.
    struct Trickle {
        data: Vec<u8>,
        pos: usize,
        step: usize,
    }

    impl tokio::io::AsyncRead for Trickle {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let n = self
                .step
                .min(self.data.len() - self.pos)
                .min(buf.remaining());
            let pos = self.pos;
            buf.put_slice(&self.data[pos..pos + n]);
            self.pos += n;
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// What a reader of the opened stream gets: the bytes before any error, and the error.
    async fn open(
        key: &SecretKey,
        aad: &[u8],
        object: &[u8],
        step: usize,
        hash: Hash32,
        size: u64,
    ) -> (Vec<u8>, Option<std::io::Error>) {
        let reader = Trickle {
            data: object.to_vec(),
            pos: 0,
            step,
        };
        let mut s = open_stream_reader(key, aad.to_vec(), reader, hash, size);
        let mut got = Vec::new();
        while let Some(piece) = s.next().await {
            match piece {
                Ok(p) => got.extend_from_slice(&p),
                Err(e) => {
                    assert!(s.next().await.is_none(), "nothing after an error");
                    return (got, Some(e));
                }
            }
        }
        (got, None)
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
                for step in [1000, CHUNK + TAG, 7 * CHUNK] {
                    let (got, err) = open(
                        &key,
                        b"aad",
                        &object,
                        step,
                        object_hash(&content),
                        len as u64,
                    )
                    .await;
                    assert!(err.is_none(), "{err:?}");
                    assert!(got == content, "len {len} piece {piece} step {step}");
                }
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
        let mut last_flipped = object.clone();
        *last_flipped.last_mut().unwrap() ^= 1;
        let (hash, size) = (object_hash(&content), content.len() as u64);
        let other = SecretKey::from_bytes([8; 32]);
        type Case<'a> = (&'a SecretKey, &'a [u8], &'a [u8], Hash32, u64);
        let cases: [Case; 10] = [
            (&key, b"aad", &flipped, hash, size),
            (&key, b"aad", &dropped, hash, size),
            (&key, b"aad", &swapped, hash, size),
            (&key, b"aad", &cut, hash, size),
            (&key, b"aad", &last_flipped, hash, size),
            (&key, b"aad", &object[..10], hash, size),
            (&key, b"other", &object, hash, size),
            (&other, b"aad", &object, hash, size),
            // all chunks open but the record says otherwise
            (&key, b"aad", &object, object_hash(b"something else"), size),
            (&key, b"aad", &object, hash, size - 1),
        ];
        for (i, (k, aad, bad, hash, size)) in cases.into_iter().enumerate() {
            let (got, err) = open(k, aad, bad, 4096, hash, size).await;
            let err = err.unwrap_or_else(|| panic!("case {i} opened"));
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "case {i}");
            // never the whole content: the last chunk waits for the checks
            assert!(got.len() < content.len(), "case {i}");
            assert!(content.starts_with(&got), "case {i}");
        }
        // the good object opens
        let (got, err) = open(&key, b"aad", &object, 4096, hash, size).await;
        assert!(err.is_none() && got == content);
    }

    #[tokio::test]
    async fn stops_past_the_limit() {
        let content = vec![1u8; 10_000];
        let (_, st) = seal(&content, 1000, 5_000).await;
        assert!(st.too_large);
        assert_eq!(st.hash, None);
    }
}
