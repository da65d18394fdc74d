//! Large media over NATS: a device sends a recording chunk by chunk on `mnemo.ingest`, as
//! binary message bodies, and the last chunk makes it one memory (docs/EDGE.md). A live
//! audio stream is captured the same way: each chunk as it is recorded, the last when the
//! recording ends.
//!
//! Every chunk is a request with the headers `Mnemo-Upload` (the device's id for the
//! upload) and `Mnemo-Chunk` (0, 1, 2, ... in order). The first also names
//! `Mnemo-Content-Type`, and optionally `Mnemo-Kind`, `Mnemo-Stream` and `Nats-Msg-Id`
//! (the capture id, kept for good); the last carries `Mnemo-Last: true` and
//! `Mnemo-Content-Hash: blake3:<hex>` of the whole content. The answer to a chunk says how
//! much has arrived; the answer to the last is the receipt.
//!
//! The chunks stream into the ledger as they come (encrypted into the object store, as a
//! REST upload is), so an upload is never held whole in memory, and the device's next
//! chunk waits for the answer to this one (flow control). A chunk out of order, a wrong
//! hash, content over the limit or an upload left idle for [`IDLE`] ends the upload with a
//! typed error: the ledger's stream ends in an error, so no event is written (the chunks
//! already stored are unreadable and swept), and the device starts again.

use bytes::Bytes;
use futures::StreamExt;
use mnemo_core::UserId;
use mnemo_ledger::{Ledger, NewMemory, Receipt};
use mnemo_wire::problem::StatusCode;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use crate::requests::DEFAULT_CAPTURE_STREAM;
use mnemo_wire::Problem;
use mnemo_wire::{IngestReceipt, MemoryMeta};

/// Uploads one user may have open at once.
pub const MAX_OPEN_PER_USER: usize = 4;

/// An upload with no chunk for this long is dropped.
pub const IDLE: Duration = Duration::from_secs(600);

/// The header naming an upload.
pub const UPLOAD_HEADER: &str = "Mnemo-Upload";

/// What the ledger's content stream is fed.
enum Piece {
    Data(Bytes),
    /// The last chunk arrived and its hash held: the content is complete.
    End,
}

struct Open {
    next: u64,
    size: usize,
    hasher: blake3::Hasher,
    tx: mpsc::Sender<Piece>,
    append: tokio::task::JoinHandle<mnemo_ledger::Result<Receipt>>,
    touched: Instant,
}

/// Uploads in progress, by user and upload id.
#[derive(Clone)]
pub struct Uploads {
    open: Arc<Mutex<HashMap<(UserId, String), Open>>>,
    max: usize,
}

fn refused(status: StatusCode, kind: &'static str, detail: String) -> Problem {
    Problem::new(status, kind, detail)
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
        if !mnemo_ledger::is_idempotency_key(&id) {
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
        // The upload is taken out of the table while its chunk is handled (chunks of one
        // upload come one at a time); dropped uploads end in an error (see `Drop`).
        let taken = {
            let mut open = self.open.lock().expect("not poisoned");
            open.retain(|_, o| o.touched.elapsed() < IDLE);
            let taken = open.remove(&key);
            if n == 0 && taken.is_none() {
                let mine = open.keys().filter(|(u, _)| u == user).count();
                if mine >= MAX_OPEN_PER_USER {
                    return Err(refused(
                        StatusCode::TOO_MANY_REQUESTS,
                        "too-many-uploads",
                        format!(
                            "at most {MAX_OPEN_PER_USER} uploads open at once; finish one first"
                        ),
                    ));
                }
            }
            taken
        };
        let mut o = match (n, taken) {
            (0, None) => self.start(ledger, user, &header)?,
            (0, Some(_)) => {
                return Err(refused(
                    StatusCode::CONFLICT,
                    "chunk-out-of-order",
                    format!("upload {id} got chunk 0 again; the upload is dropped, start again"),
                ));
            }
            (_, None) => {
                return Err(refused(
                    StatusCode::CONFLICT,
                    "chunk-out-of-order",
                    format!(
                        "upload {id} has no chunk 0 (or was dropped): start again from chunk 0"
                    ),
                ));
            }
            (_, Some(o)) => o,
        };
        if n != o.next {
            return Err(refused(
                StatusCode::CONFLICT,
                "chunk-out-of-order",
                format!(
                    "upload {id}: chunk {n} came where chunk {} was due; the upload is dropped, start again from chunk 0",
                    o.next
                ),
            ));
        }
        if o.size + body.len() > self.max {
            return Err(refused(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                format!(
                    "upload {id} is over {} bytes; the upload is dropped",
                    self.max
                ),
            ));
        }
        o.hasher.update(body);
        o.size += body.len();
        o.next += 1;
        o.touched = Instant::now();
        if !body.is_empty() && o.tx.send(Piece::Data(body.clone())).await.is_err() {
            // The ledger stopped reading: its error is the answer.
            return Err(finish_error(o.append.await));
        }
        if !last {
            let answer = json!({ "upload": id, "chunks": o.next, "bytes": o.size });
            self.open.lock().expect("not poisoned").insert(key, o);
            return Ok(answer);
        }
        let want = header("Mnemo-Content-Hash").unwrap_or_default();
        let got = format!("blake3:{}", o.hasher.finalize().to_hex());
        if want != got {
            // Dropping `o` ends the content stream in an error: nothing is written.
            return Err(Problem::bad_request(format!(
                "upload {id}: Mnemo-Content-Hash is {want:?} but the chunks hash to {got}; nothing was written"
            )));
        }
        let _ = o.tx.send(Piece::End).await;
        let size = o.size;
        let receipt = match (&mut o.append).await {
            Ok(Ok(r)) => r,
            other => return Err(finish_error(other)),
        };
        let receipt = IngestReceipt {
            bytes: Some(size as u64),
            content_hash: Some(got),
            ..IngestReceipt::over_nats(receipt)
        };
        Ok(serde_json::to_value(receipt).expect("serialisable"))
    }

    /// Chunk 0: the memory's metadata, and the ledger's append reading the chunks.
    fn start(
        &self,
        ledger: &Ledger,
        user: &UserId,
        header: &impl Fn(&str) -> Option<String>,
    ) -> Result<Open, Problem> {
        let content_type = header("Mnemo-Content-Type")
            .ok_or_else(|| Problem::bad_request("chunk 0 names Mnemo-Content-Type"))?;
        // The upload's id names the capture when no Nats-Msg-Id does: a retried upload
        // never appends twice, whatever the delay.
        let key = header("Nats-Msg-Id").or_else(|| header(UPLOAD_HEADER));
        let capture = key.as_ref().map(|k| {
            let stream = header("Mnemo-Stream").unwrap_or_else(|| DEFAULT_CAPTURE_STREAM.into());
            ledger.capture_for_key(user, stream, k)
        });
        let captured_at = header("Mnemo-Captured-At")
            .map(|t| {
                t.parse::<i64>().map_err(|_| {
                    Problem::bad_request(
                        "Mnemo-Captured-At must be milliseconds since the Unix epoch",
                    )
                })
            })
            .transpose()?;
        let meta = MemoryMeta {
            kind: header("Mnemo-Kind"),
            tags: Vec::new(),
            captured_at,
            source: Some("nats".into()),
        };
        let m = NewMemory {
            idempotency_key: key,
            capture,
            ..meta.upload("audio", content_type)
        };
        let (tx, rx) = mpsc::channel::<Piece>(4);
        // The content ends well only at `End`; a sender dropped before it (the upload was
        // refused, or abandoned) ends the stream in an error, so the append writes nothing.
        let content = futures::stream::unfold((rx, false), |(mut rx, done)| async move {
            if done {
                return None;
            }
            match rx.recv().await {
                Some(Piece::Data(b)) => Some((Ok(b), (rx, false))),
                Some(Piece::End) => None,
                None => Some((
                    Err(std::io::Error::other("the upload was abandoned")),
                    (rx, true),
                )),
            }
        })
        .boxed();
        let (ledger, user, max) = (ledger.clone(), user.clone(), self.max);
        let append =
            tokio::spawn(async move { ledger.append_stream(&user, m, content, max).await });
        Ok(Open {
            next: 0,
            size: 0,
            hasher: blake3::Hasher::new(),
            tx,
            append,
            touched: Instant::now(),
        })
    }
}

fn finish_error(r: Result<mnemo_ledger::Result<Receipt>, tokio::task::JoinError>) -> Problem {
    match r {
        Ok(Err(e)) => e.into(),
        Ok(Ok(_)) => Problem::internal("the upload ended before its last chunk"),
        Err(e) => Problem::internal(format!("the upload's append stopped: {e}")),
    }
}
