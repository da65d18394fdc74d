//! # mnemo-audit
//!
//! Verifies mnemo custody without trusting the mnemo server: custody bundles (a user's
//! whole chain, exported by `GET /v1/export`) read as a stream, single proof bundles, chains
//! read straight from JetStream, and anchors checked on the EVM chain itself.
//!
//! - [`verify_items`]: the streaming check of a custody bundle, with signatures verified in
//!   batches on all cores while the reading thread decodes, links and hashes.
//! - [`read_bundle`]: custody bundle items from a reader (JSON lines), in bounded memory.
//! - [`prove`]: extracts a self-contained [`ProofBundle`] for one event.
//! - [`online`]: the same items read from JetStream; [`onchain`]: receipts against the chain.
//!
//! The checks themselves are `mnemo_core`'s ([`CustodyVerifier`]); this crate adds reading,
//! threads and reporting.

pub mod onchain;
pub mod online;
pub mod server;
pub mod training;

use mnemo_core::custody::{
    AuditError, AuditPolicy, BundleItem, CustodySummary, CustodyVerifier, HexBytes,
};
use mnemo_core::{ChainError, Event, Hash32, ProofBundle, ProofLevel, SignatureBatch, UserId};
use serde::Serialize;
use std::borrow::Cow;
use std::io::BufRead;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};

/// How to verify.
#[derive(Clone, Debug)]
pub struct Options {
    /// What the auditor pins (contract, chain id, custody keys).
    pub policy: AuditPolicy,
    /// Threads in all: the reading thread, which also verifies signature batches whenever
    /// the others are behind, and `threads - 1` signature-verifying threads.
    pub threads: usize,
    /// Seals (format version 2) verified before, shared by every chain verified with these
    /// options: each batch signature is checked once, whatever the number of chains.
    pub seals: Option<std::sync::Arc<mnemo_core::verify::SealCache>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            policy: AuditPolicy::default(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            seals: None,
        }
    }
}

/// What reading a chain from a server can fail with (`--nats`, `--rpc`): usage or I/O
/// errors (exit code 2), never a verdict.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// NATS failed (listing streams); check the URL and credentials, retry.
    #[error("nats: {what}: {detail}")]
    Nats {
        /// The operation.
        what: &'static str,
        /// The error.
        detail: String,
    },
    /// The server holds no chain of this user in either layout.
    #[error("no chain of user {0} on this server")]
    NoChain(UserId),
    /// The RPC node failed or is unreachable.
    #[error("rpc {rpc}: {detail}")]
    Rpc {
        /// The node's URL.
        rpc: String,
        /// The error.
        detail: String,
    },
    /// The RPC URL is not usable.
    #[error(transparent)]
    Config(#[from] mnemo_anchor::AnchorError),
}

/// A bundle item that could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ItemError {
    /// The input could not be read (exit code 2).
    #[error("reading: {0}")]
    Io(#[from] std::io::Error),
    /// A line is not a bundle item (the bundle is damaged or forged: invalid).
    #[error("line {line}: {message}")]
    Parse {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        message: String,
    },
}

/// The first failure found, for reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// Whose chain.
    pub user: Option<UserId>,
    /// The seq it is at, when it is at one.
    pub seq: Option<u64>,
    /// Stable code of the check that failed (docs/FORMAT.md §9).
    pub code: String,
    /// The bundle line (item) the refusal is at, when one item is (a signature found bad
    /// in parallel names its seq instead).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// What failed.
    pub message: String,
}

impl Failure {
    pub(crate) fn from_audit(user: Option<UserId>, e: &AuditError) -> Self {
        Self {
            user,
            seq: e.seq().map(|s| s.0),
            code: e.code().into(),
            line: None,
            message: e.to_string(),
        }
    }
}

/// The outcome of verifying a custody bundle.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// What was checked (up to the failure, if any).
    pub summary: CustodySummary,
    /// The first failure, by seq.
    pub failure: Option<Failure>,
    /// The typed error behind `failure`.
    #[serde(skip)]
    pub error: Option<AuditError>,
}

impl Outcome {
    /// Whether the bundle is valid.
    pub fn valid(&self) -> bool {
        self.failure.is_none()
    }
}

/// Reads custody bundle items, one JSON object per line. Event lines, nearly all of a
/// bundle, take a fast path (no JSON tree). Calls `progress` with the bytes read so far.
pub fn read_bundle<R: BufRead>(
    mut r: R,
    mut progress: impl FnMut(u64),
) -> impl Iterator<Item = Result<BundleItem, ItemError>> {
    let mut buf = Vec::with_capacity(1024);
    let mut line = 0u64;
    let mut read = 0u64;
    std::iter::from_fn(move || {
        {
            buf.clear();
            let n = match r.read_until(b'\n', &mut buf) {
                Ok(0) => return None,
                Ok(n) => n,
                Err(e) => return Some(Err(ItemError::Io(e))),
            };
            line += 1;
            read += n as u64;
            if line.is_multiple_of(1024) {
                progress(read);
            }
            // The line grammar (FORMAT.md §13.1): UTF-8 without a byte order mark, one JSON
            // object per line, each ending in LF (the last one may lack it), no blank lines,
            // no CR, no other whitespace around the object.
            let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
            let bad = |message: &str| {
                Some(Err(ItemError::Parse {
                    line,
                    message: message.into(),
                }))
            };
            if line == 1 && text.starts_with(&[0xef, 0xbb, 0xbf]) {
                return bad("a byte order mark: a bundle is UTF-8 without one");
            }
            if text.is_empty() {
                return bad("a blank line");
            }
            if text.contains(&b'\r') {
                return bad("a CR: lines end with LF alone");
            }
            if text.trim_ascii().len() != text.len() {
                return bad("whitespace around the item");
            }
            Some(parse_line(text, line))
        }
    })
}

const EVENT_PREFIX: &[u8] = br#"{"type":"event","wire":""#;

fn parse_line(text: &[u8], line: u64) -> Result<BundleItem, ItemError> {
    let bad = |message: String| ItemError::Parse { line, message };
    // The fast path takes only the exact form the exporter writes; anything else that is
    // valid JSON (escapes, other member order or spacing) goes through the full parser.
    if let Some(rest) = text.strip_prefix(EVENT_PREFIX)
        && let Some(hex) = rest.strip_suffix(br#""}"#)
        && hex.len().is_multiple_of(2)
    {
        // Hex checked and decoded with SIMD, then no upper-case digit (a loop without early
        // exit, which the compiler vectorises); anything else is looked at below, byte by
        // byte, to name what is wrong.
        let mut wire = vec![0u8; hex.len() / 2];
        let upper = hex
            .iter()
            .fold(false, |u, b| u | (b.wrapping_sub(b'A') < 6));
        if !upper && faster_hex::hex_decode(hex, &mut wire).is_ok() {
            return Ok(BundleItem::Event {
                wire: HexBytes(wire),
            });
        }
    }
    if let Some(rest) = text.strip_prefix(EVENT_PREFIX)
        && let Some(hex) = rest.strip_suffix(br#""}"#)
        && hex.iter().all(|b| b.is_ascii_alphanumeric())
    {
        if hex.iter().any(u8::is_ascii_uppercase) {
            return Err(bad("event wire: hex must be lowercase".into()));
        }
        if !hex.len().is_multiple_of(2) {
            return Err(bad("event wire: odd number of hex digits".into()));
        }
        let mut wire = vec![0u8; hex.len() / 2];
        return faster_hex::hex_decode(hex, &mut wire)
            .map(|_| BundleItem::Event {
                wire: HexBytes(wire),
            })
            .map_err(|e| bad(format!("event wire: {e}")));
    }
    if text.starts_with(PAYLOAD_PREFIX) {
        // Straight into borrowed fields, hex decoded with SIMD: serde's internally tagged
        // enums buffer the whole object first, and byte-at-a-time hex costs more than the
        // rest of a payload's checks.
        let p: PayloadLine = serde_json::from_slice(text).map_err(|e| bad(e.to_string()))?;
        return p.into_item().map_err(|e| bad(format!("payload: {e}")));
    }
    serde_json::from_slice(text).map_err(|e| bad(e.to_string()))
}

const PAYLOAD_PREFIX: &[u8] = br#"{"type":"payload","#;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PayloadLine<'a> {
    #[serde(rename = "type", borrow)]
    _type: Cow<'a, str>,
    seq: mnemo_core::Seq,
    #[serde(borrow)]
    salt: Cow<'a, str>,
    #[serde(borrow)]
    record: RecordLine<'a>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordLine<'a> {
    kind: String,
    tags: Vec<String>,
    captured_at: Option<mnemo_core::TimestampMs>,
    source: Option<String>,
    content_type: String,
    #[serde(borrow)]
    content: ContentLine<'a>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ContentLine<'a> {
    #[serde(borrow)]
    storage: Cow<'a, str>,
    #[serde(borrow, default)]
    bytes: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    hash: Option<Cow<'a, str>>,
    #[serde(default)]
    size: Option<u64>,
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    mnemo_core::ids::lower_hex(s)?;
    if !s.len().is_multiple_of(2) {
        return Err("odd number of hex digits".into());
    }
    let mut out = vec![0u8; s.len() / 2];
    faster_hex::hex_decode(s.as_bytes(), &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

fn unhex32(s: &str) -> Result<Hash32, String> {
    unhex(s)?
        .try_into()
        .map(Hash32)
        .map_err(|_| "expected 32 bytes".into())
}

impl PayloadLine<'_> {
    fn into_item(self) -> Result<BundleItem, String> {
        let r = self.record;
        let content = match (
            r.content.storage.as_ref(),
            r.content.bytes.as_deref(),
            r.content.hash.as_deref(),
            r.content.size,
        ) {
            ("inline", Some(b), None, None) => mnemo_core::Content::Inline { bytes: unhex(b)? },
            ("object", None, Some(h), Some(size)) => mnemo_core::Content::Object {
                hash: unhex32(h)?,
                size,
            },
            _ => return Err("content is neither inline bytes nor an object".into()),
        };
        Ok(BundleItem::Payload {
            seq: self.seq,
            salt: unhex32(&self.salt)?,
            record: mnemo_core::MemoryRecord {
                kind: r.kind,
                tags: r.tags,
                captured_at: r.captured_at,
                source: r.source,
                content_type: r.content_type,
                content,
            },
        })
    }
}

/// Verifies a custody bundle's items: the reading thread decodes, links, hashes and checks
/// every rule; full signature batches go to `opts.threads - 1` threads, or are verified on
/// the reading thread when those are busy. Stops at the first
/// failure (the one with the lowest seq, signatures included). Only an unreadable input is
/// an `Err`; a damaged or forged bundle is an [`Outcome`] with a failure.
pub fn verify_items<I>(items: I, opts: &Options) -> Result<Outcome, std::io::Error>
where
    I: Iterator<Item = Result<BundleItem, ItemError>>,
{
    let workers = opts.threads.max(1) - 1;
    let (tx, rx) = mpsc::sync_channel::<SignatureBatch>(workers * 4);
    let rx = Mutex::new(rx);
    let sig_failure: Mutex<Option<ChainError>> = Mutex::new(None);
    let sig_failed = AtomicBool::new(false);
    let mut v = CustodyVerifier::new(opts.policy.clone()).with_deferred_signatures();
    if let Some(c) = &opts.seals {
        v = v.with_seal_cache(c.clone());
    }
    let mut structural: Option<AuditError> = None;
    let mut io_error = None;
    let mut user = None;
    let mut summary = CustodySummary::default();
    let mut line = 0u64;
    let mut failed_line = None;
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let batch = rx.lock().expect("not poisoned").recv();
                    let Ok(batch) = batch else { break };
                    check_batch(&batch, &sig_failure, &sig_failed);
                }
            });
        }
        let send = |b: SignatureBatch| {
            // When the workers are behind, this thread verifies the batch itself rather
            // than wait: no core idles.
            if workers == 0 {
                check_batch(&b, &sig_failure, &sig_failed);
            } else if let Err(mpsc::TrySendError::Full(b)) = tx.try_send(b) {
                check_batch(&b, &sig_failure, &sig_failed);
            }
        };
        for item in items {
            line += 1;
            match item {
                Err(ItemError::Io(e)) => {
                    io_error = Some(e);
                    break;
                }
                Err(e @ ItemError::Parse { .. }) => {
                    if let ItemError::Parse { line: l, .. } = &e {
                        failed_line = Some(*l);
                    }
                    structural = Some(AuditError::Structure(e.to_string()));
                    break;
                }
                Ok(item) => {
                    if let Err(e) = v.push(item) {
                        structural = Some(e);
                        failed_line = Some(line);
                        break;
                    }
                }
            }
            while let Some(b) = v.take_batch(false) {
                send(b);
            }
            // A failed batch is earlier than anything still pending here.
            if sig_failed.load(Ordering::Relaxed) {
                break;
            }
        }
        user = v.summary().user.clone();
        if io_error.is_none() {
            // After a failure too: a signature pending here may fail at an earlier seq.
            while let Some(b) = v.take_batch(true) {
                send(b);
            }
        }
        if io_error.is_none() && structural.is_none() && !sig_failed.load(Ordering::Relaxed) {
            let v = std::mem::replace(&mut v, CustodyVerifier::new(AuditPolicy::default()));
            match v.finish() {
                Ok(sum) => summary = sum,
                Err(e) => {
                    structural = Some(e);
                    failed_line = Some(line);
                }
            }
        } else {
            summary = v.summary().clone();
        }
        drop(tx);
    });
    if let Some(e) = io_error {
        return Err(e);
    }
    let sig = sig_failure.into_inner().expect("not poisoned");
    let (error, line) = match (structural, sig) {
        (Some(a), Some(b)) => {
            let sig_first = match (a.seq(), b.seq()) {
                (Some(sa), Some(sb)) => sb <= sa,
                (None, _) => true,
                (Some(_), None) => false,
            };
            if sig_first {
                (Some(AuditError::Chain(b)), None)
            } else {
                (Some(a), failed_line)
            }
        }
        (Some(a), None) => (Some(a), failed_line),
        (None, Some(b)) => (Some(AuditError::Chain(b)), None),
        (None, None) => (None, None),
    };
    Ok(Outcome {
        failure: error.as_ref().map(|e| Failure {
            line,
            ..Failure::from_audit(user, e)
        }),
        summary,
        error,
    })
}

fn check_batch(b: &SignatureBatch, failure: &Mutex<Option<ChainError>>, failed: &AtomicBool) {
    if let Err(e) = b.verify() {
        let mut f = failure.lock().expect("not poisoned");
        if f.as_ref().is_none_or(|old| e.seq() < old.seq()) {
            *f = Some(e);
        }
        failed.store(true, Ordering::Relaxed);
    }
}

/// Why no proof could be extracted.
#[derive(Debug, thiserror::Error)]
pub enum ProveError {
    /// The input could not be read.
    #[error("reading: {0}")]
    Io(#[from] std::io::Error),
    /// The bundle is invalid: nothing is extracted from it.
    #[error("the bundle is invalid: {0}")]
    Invalid(String),
    /// There is no event with that seq.
    #[error("the chain has no event {0}")]
    NoSuchEvent(u64),
}

/// Extracts a self-contained proof for the event at `seq` from a custody bundle: the event,
/// its signing keys, its inclusion in the earliest anchored checkpoint that covers it (or,
/// when none does, in the chain's final checkpoint), the epoch proof and the receipt. The
/// whole bundle is verified on the way; keeps 32 bytes per event.
pub fn prove<I>(items: I, seq: u64, policy: &AuditPolicy) -> Result<ProofBundle, ProveError>
where
    I: Iterator<Item = Result<BundleItem, ItemError>>,
{
    let mut v = CustodyVerifier::new(policy.clone());
    let mut hashes: Vec<Hash32> = Vec::new();
    let mut anchors = Vec::new();
    let mut target: Option<Event> = None;
    let mut keys = None;
    let invalid = |e: AuditError| ProveError::Invalid(e.to_string());
    for item in items {
        let item = match item {
            Ok(i) => i,
            Err(ItemError::Io(e)) => return Err(e.into()),
            Err(e) => return Err(ProveError::Invalid(e.to_string())),
        };
        if let BundleItem::Anchor {
            epoch_proof,
            receipt,
        } = &item
        {
            anchors.push((epoch_proof.clone(), receipt.clone()));
        }
        if let Some((event, hash)) = v.push(item).map_err(invalid)? {
            hashes.push(hash);
            if event.seq.0 == seq {
                target = Some(event);
                keys = v.keys().cloned();
            }
        }
    }
    v.finish().map_err(invalid)?;
    let event = target.ok_or(ProveError::NoSuchEvent(seq))?;
    let keys = keys.ok_or(ProveError::NoSuchEvent(seq))?;
    let key_of = |id| keys.get(id).map(|r| r.key);
    let signer_key = key_of(&event.signer).ok_or(ProveError::Invalid("unknown signer".into()))?;
    let origin_key = event.origin.as_ref().and_then(|o| key_of(&o.key));
    let (bundle, _) = ProofBundle::assemble(event, signer_key, origin_key, &hashes, anchors)
        .map_err(|e| ProveError::Invalid(e.to_string()))?;
    Ok(bundle)
}

/// Reads a proof bundle (docs/FORMAT.md §7.3: one JSON object, the body of the API's
/// `GET /v1/memories/{id}/proof`).
pub fn read_proof(text: &[u8]) -> Result<ProofBundle, serde_json::Error> {
    use serde::de::Error;
    // The event's members are checked as a closed grammar first (FORMAT.md §13.1).
    let v: serde_json::Value = serde_json::from_slice(text)?;
    if let Some(e) = v.get("event") {
        check_event_json(e).map_err(serde_json::Error::custom)?;
    }
    serde_json::from_value(v)
}

/// Verifies a single proof bundle: signatures, inclusion, epoch, receipt, and the pins of
/// `policy` (contract, chain id, custody keys).
pub fn verify_proof(b: &ProofBundle, policy: &AuditPolicy) -> Result<ProofLevel, Failure> {
    let fail = |code: &str, message: String| Failure {
        user: Some(b.event.user.clone()),
        seq: Some(b.event.seq.0),
        code: code.into(),
        line: None,
        message,
    };
    let level = b.verify().map_err(|e| fail(e.code(), e.to_string()))?;
    if !policy.trusted_keys.is_empty() && !policy.trusted_keys.contains(&b.signer_key) {
        return Err(fail(
            "untrusted_key",
            format!(
                "signed by {}, which is not a pinned custody key (--trusted-key)",
                b.signer_key.id()
            ),
        ));
    }
    if let Some(r) = &b.anchor {
        if let Some(c) = policy.contract
            && r.contract != c
        {
            return Err(fail(
                "anchor",
                format!(
                    "anchored on contract {} instead of the pinned {c}",
                    r.contract
                ),
            ));
        }
        if let Some(id) = policy.chain_id
            && r.chain_id != id
        {
            return Err(fail(
                "anchor",
                format!(
                    "anchored on chain {} instead of the pinned {id}",
                    r.chain_id
                ),
            ));
        }
    }
    Ok(level)
}

/// What a verified proof bundle proves, in words (docs/FORMAT.md §7.3): `anchored` (the
/// checkpoint's epoch root is committed on a chain: check it with `--rpc`), `pinned-key`
/// (signed by a custody key the auditor pinned, not anchored), or `self-asserted` (signed
/// by the key the bundle itself names: anyone can make such a proof for any event).
pub fn proof_trust(level: ProofLevel, policy: &AuditPolicy) -> &'static str {
    match level {
        ProofLevel::Anchored => "anchored",
        _ if !policy.trusted_keys.is_empty() => "pinned-key",
        _ => "self-asserted",
    }
}

/// The members an event's JSON (docs/FORMAT.md §10) may have, beside exactly one of
/// `signature` (version 1) and `seal` (version 2).
const EVENT_MEMBERS: &[&str] = &[
    "user",
    "seq",
    "prev",
    "timestamp",
    "kind",
    "body",
    "payload",
    "origin",
    "signer",
    "version",
];

/// The closed grammar of an event's JSON (§13.1 applied to §10): no member but those of
/// §10, and the custody member of its version (`signature` for 1, `seal` for 2), never
/// both. What `serde` does not check, because the event's parts are flattened.
pub fn check_event_json(v: &serde_json::Value) -> Result<(), String> {
    let obj = v.as_object().ok_or("an event is a JSON object")?;
    if let Some(k) = obj
        .keys()
        .find(|k| !EVENT_MEMBERS.contains(&k.as_str()) && *k != "signature" && *k != "seal")
    {
        return Err(format!("an event has no member {k:?}"));
    }
    let version = obj.get("version").and_then(|v| v.as_u64()).unwrap_or(1);
    let custody = if version >= 2 { "seal" } else { "signature" };
    let other = if version >= 2 { "signature" } else { "seal" };
    if obj.contains_key(other) {
        return Err(format!(
            "a version {version} event carries {custody}, not {other}"
        ));
    }
    if !obj.contains_key(custody) {
        return Err(format!("a version {version} event lacks its {custody}"));
    }
    Ok(())
}
