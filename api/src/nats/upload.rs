//! Large media over NATS: a device sends a recording chunk by chunk on `mnemo.ingest`, as
//! binary message bodies, and the last chunk makes it one memory (docs/EDGE.md §5). A live
//! audio stream is captured the same way: each chunk as it is recorded, the last when the
//! recording ends.
//!
//! Every chunk is a request with the headers `Mnemo-Upload` (the device's id for the
//! upload) and `Mnemo-Chunk` (0, 1, 2, ... in order). The last also carries `Mnemo-Last:
//! true`, `Mnemo-Content-Hash: blake3:<hex>` of the whole content, `Mnemo-Content-Type`,
//! and optionally `Mnemo-Kind`, `Mnemo-Stream` and `Nats-Msg-Id` (the capture id, kept for
//! good). The answer to a chunk says how much has arrived; the answer to the last is the
//! receipt. A chunk out of order, a wrong hash or content over the limit is refused with a
//! typed error and the upload is dropped: nothing is written, and the device starts again.
//!
//! Chunks wait in this process's memory (at most [`MAX_OPEN_PER_USER`] uploads per user,
//! each dropped after [`IDLE`] without a chunk): an upload is not accepted before its last
//! chunk, so a restart loses nothing accepted; it must go to one instance (the device
//! sends one chunk at a time and waits for the answer).

use axum::http::StatusCode;
use bytes::{Bytes, BytesMut};
use mnemo_core::UserId;
use mnemo_ledger::Ledger;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::gateway::{self, IngestRequest};
use crate::problem::Problem;

/// Uploads one user may have open at once.
pub const MAX_OPEN_PER_USER: usize = 4;

/// An upload with no chunk for this long is dropped.
pub const IDLE: Duration = Duration::from_secs(600);

/// The header naming an upload.
pub const UPLOAD_HEADER: &str = "Mnemo-Upload";

struct Open {
    next: u64,
    bytes: BytesMut,
    hasher: blake3::Hasher,
    touched: Instant,
}

/// Uploads in progress, by user and upload id.
#[derive(Clone)]
pub struct Uploads {
    open: Arc<Mutex<HashMap<(UserId, String), Open>>>,
    max: usize,
}

impl Uploads {
    /// Uploads of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            open: Default::default(),
            max,
        }
    }

    /// Handles one chunk of `user`'s.
    pub async fn chunk(
        &self,
        ledger: &Ledger,
        user: &UserId,
        headers: &async_nats::HeaderMap,
        body: &Bytes,
    ) -> Result<Value, Problem> {
        let header = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
        let id = header(UPLOAD_HEADER).unwrap_or_default();
        if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Problem::bad_request(
                "Mnemo-Upload must be 1 to 128 printable ASCII characters",
            ));
        }
        let n: u64 = header("Mnemo-Chunk")
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| {
                Problem::bad_request("Mnemo-Chunk must be the chunk's number (0, 1, ...)")
            })?;
        let last = header("Mnemo-Last").is_some_and(|v| v == "true");
        let key = (user.clone(), id.clone());
        let done = {
            let mut open = self.open.lock().expect("not poisoned");
            open.retain(|_, o| o.touched.elapsed() < IDLE);
            if n == 0 {
                let mine = open.keys().filter(|(u, _)| u == user).count();
                if !open.contains_key(&key) && mine >= MAX_OPEN_PER_USER {
                    return Err(Problem::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "too-many-uploads",
                        format!(
                            "at most {MAX_OPEN_PER_USER} uploads open at once; finish one first"
                        ),
                    ));
                }
                open.insert(
                    key.clone(),
                    Open {
                        next: 0,
                        bytes: BytesMut::new(),
                        hasher: blake3::Hasher::new(),
                        touched: Instant::now(),
                    },
                );
            }
            let Some(o) = open.get_mut(&key) else {
                return Err(Problem::new(
                    StatusCode::CONFLICT,
                    "chunk-out-of-order",
                    format!(
                        "upload {id} has no chunk 0 (or was dropped): start again from chunk 0"
                    ),
                ));
            };
            if n != o.next {
                let expected = o.next;
                open.remove(&key);
                return Err(Problem::new(
                    StatusCode::CONFLICT,
                    "chunk-out-of-order",
                    format!(
                        "upload {id}: chunk {n} came where chunk {expected} was due; the upload is dropped, start again from chunk 0"
                    ),
                ));
            }
            if o.bytes.len() + body.len() > self.max {
                open.remove(&key);
                return Err(Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too-large",
                    format!(
                        "upload {id} is over {} bytes; the upload is dropped",
                        self.max
                    ),
                ));
            }
            o.bytes.extend_from_slice(body);
            o.hasher.update(body);
            o.next += 1;
            o.touched = Instant::now();
            if !last {
                return Ok(json!({ "upload": id, "chunks": o.next, "bytes": o.bytes.len() }));
            }
            open.remove(&key).expect("present")
        };
        let want = header("Mnemo-Content-Hash").unwrap_or_default();
        let got = format!("blake3:{}", done.hasher.finalize().to_hex());
        if want != got {
            return Err(Problem::bad_request(format!(
                "upload {id}: Mnemo-Content-Hash is {want:?} but the chunks hash to {got}; nothing was written"
            )));
        }
        let content_type = header("Mnemo-Content-Type")
            .ok_or_else(|| Problem::bad_request("the last chunk names Mnemo-Content-Type"))?;
        let r = IngestRequest {
            kind: Some(header("Mnemo-Kind").unwrap_or_else(|| "audio".into())),
            text: String::new(),
            tags: Vec::new(),
            captured_at: None,
            source: None,
            idempotency_key: None,
            stream: header("Mnemo-Stream"),
            counter: None,
            device_key: None,
            salt: None,
            signature: None,
        };
        let size = done.bytes.len();
        let mut v = gateway::ingest_content(
            ledger,
            user,
            r,
            Some(headers),
            content_type,
            done.bytes.freeze(),
        )
        .await?;
        v["bytes"] = json!(size);
        v["content_hash"] = json!(got);
        Ok(v)
    }
}
