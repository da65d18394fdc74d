//! `mnemo-audit`: verify mnemo custody chains and proofs, online or offline.
//!
//! Exit codes: 0 valid, 1 invalid (tampering or damage found), 2 usage or I/O error.

use anyhow::Context;
use clap::{Parser, Subcommand};
use mnemo_audit::onchain::{self, OnChainCheck};
use mnemo_audit::{Failure, ItemError, Options, Outcome, online};
use mnemo_core::custody::{AuditPolicy, BundleItem};
use mnemo_core::{Address, ProofBundle, PublicKey, TimestampMs, UserId};
use serde::Serialize;
use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mnemo-audit",
    about = "Verifies mnemo custody chains, proofs and anchors without trusting the server",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verifies a custody bundle or a proof bundle (--bundle), or a chain read from NATS.
    Verify(VerifyArgs),
    /// Extracts a self-contained proof for one event of a custody bundle.
    Prove {
        /// The custody bundle (as exported by `GET /v1/export`).
        #[arg(long)]
        bundle: PathBuf,
        /// The event's sequence number.
        #[arg(long)]
        seq: u64,
        /// Where to write the proof (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        pins: Pins,
    },
    /// Checks a custody receipt (what an ingest answers: `custody`, or the whole answer)
    /// alone, offline: the event and its seal, signed by the custody key. Exit 0 when it
    /// holds, 1 when it does not.
    VerifyReceipt {
        /// The receipt (JSON).
        receipt: PathBuf,
        /// A custody public key it may be signed by (hex); repeat it to pin every custody
        /// key that signs (after a rotation, the new one too; FORMAT.md §7.3).
        #[arg(long = "trusted-key", required = true)]
        trusted_key: Vec<String>,
    },
    /// Checks a training-set proof (`GET /v1/models/{id}/training-set/{memory}`): the
    /// memory was, or was not, in the model's training set. With --bundle (the owner's
    /// custody bundle), the model's commitment and the memory's event come from the
    /// verified chain. Exit 0 when the proof holds (either way), 1 when it is refused.
    TrainingProof {
        /// The proof: the endpoint's JSON answer, or the bare §15.4 object.
        proof: PathBuf,
        /// The model the proof is about (32 hex), for a bare proof checked with --bundle.
        #[arg(long)]
        model: Option<String>,
        /// The owner's custody bundle.
        #[arg(long)]
        bundle: Option<PathBuf>,
        #[command(flatten)]
        pins: Pins,
    },
}

#[derive(clap::Args)]
struct Pins {
    /// Accept only anchors on this contract (0x...).
    #[arg(long)]
    contract: Option<String>,
    /// Accept only anchors on this EVM chain id.
    #[arg(long)]
    chain_id: Option<u64>,
    /// Accept only chains whose genesis key is this custody key (hex; repeatable).
    #[arg(long = "trusted-key")]
    trusted_keys: Vec<String>,
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// A custody bundle (JSON lines) or a single proof bundle (JSON).
    #[arg(long, conflicts_with = "nats", required_unless_present = "nats")]
    bundle: Option<PathBuf>,
    /// Read the chain from this NATS server instead.
    #[arg(long)]
    nats: Option<String>,
    /// With --nats: every chain on the server (an operator's audit, as a Certificate
    /// Transparency monitor checks a whole log). Each seal's signature is checked once,
    /// whatever the number of chains it covers.
    #[arg(long, requires = "nats", conflicts_with = "user")]
    all_users: bool,
    /// NATS credentials file (read-only creds suffice).
    #[arg(long, requires = "nats")]
    creds: Option<PathBuf>,
    /// The user whose chain to read from NATS.
    #[arg(long, requires = "nats")]
    user: Option<String>,
    /// With --nats --user: read the chain through the device protocol's `mnemo.read`, which
    /// a user's own device credentials reach (no JetStream access needed; anchors are not
    /// checked this way).
    #[arg(long, requires = "user")]
    via_read: bool,
    /// Also check every anchor on the EVM chain at this JSON-RPC URL.
    #[arg(long)]
    rpc: Option<String>,
    /// Blocks that make a block final (1 on Sapphire).
    #[arg(long, default_value_t = 1)]
    final_depth: u64,
    #[command(flatten)]
    pins: Pins,
    /// Signature-verifying threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

impl VerifyArgs {
    /// The verification options the flags give.
    fn options(&self) -> anyhow::Result<Options> {
        Ok(Options {
            policy: self.pins.policy()?,
            threads: self
                .threads
                .unwrap_or_else(|| Options::default().threads)
                .max(1),
            seals: None,
        })
    }
}

impl Pins {
    fn policy(&self) -> anyhow::Result<AuditPolicy> {
        let contract = self
            .contract
            .as_deref()
            .map(|c| Address::from_hex(c.trim_start_matches("0x")))
            .transpose()
            .map_err(|_| anyhow::anyhow!("--contract must be a 20-byte hex address"))?;
        let trusted_keys = trusted_keys(&self.trusted_keys)?;
        Ok(AuditPolicy {
            contract,
            chain_id: self.chain_id,
            trusted_keys,
        })
    }
}

/// The report printed (as text or JSON).
#[derive(Serialize)]
struct Report {
    valid: bool,
    /// `custody` (a whole chain) or `proof` (one event).
    kind: &'static str,
    source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    custody: Option<Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proof_level: Option<mnemo_core::ProofLevel>,
    /// What the proof proves: `anchored`, `pinned-key` or `self-asserted`.
    #[serde(skip_serializing_if = "Option::is_none")]
    proof_trust: Option<&'static str>,
    failure: Option<Failure>,
    on_chain: Vec<OnChainCheck>,
    threads: usize,
}

/// `println!` that returns the error (a closed pipe, a full disk) instead of panicking: it
/// becomes exit 2 with a message.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*).context("writing the report to stdout")?
    }};
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            // stderr may be gone too: nothing more to say then.
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "mnemo-audit: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn now() -> TimestampMs {
    mnemo_ledger::clock::now()
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn progress_bar(len: u64) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "verifying [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
    ) {
        bar.set_style(style);
    }
    bar
}

fn open(path: &Path) -> anyhow::Result<(BufReader<std::fs::File>, u64)> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((BufReader::with_capacity(1 << 20, f), len))
}

fn run(cli: Cli) -> anyhow::Result<bool> {
    match cli.command {
        Command::Verify(a) if a.all_users => verify_server(a),
        Command::Verify(a) => verify(a),
        Command::VerifyReceipt {
            receipt,
            trusted_key,
        } => verify_receipt(&receipt, &trusted_key),
        Command::TrainingProof {
            proof,
            model,
            bundle,
            pins,
        } => {
            let text =
                std::fs::read(&proof).with_context(|| format!("reading {}", proof.display()))?;
            let model = model
                .map(|m| {
                    mnemo_core::ModelId::from_hex(&m)
                        .map_err(|_| anyhow::anyhow!("--model must be 32 hex characters"))
                })
                .transpose()?;
            if bundle.is_some()
                && model.is_none()
                && serde_json::from_slice::<mnemo_audit::training::TrainingAnswer>(&text).is_err()
            {
                anyhow::bail!("a bare training-set proof checked with --bundle needs --model <id>");
            }
            let answer = match mnemo_audit::training::read_training_file(&text, model) {
                Ok(a) => a,
                Err(r) => {
                    out!(
                        "{}",
                        serde_json::json!({ "valid": false, "code": r.code, "message": r.message })
                    );
                    return Ok(false);
                }
            };
            let opts = Options {
                policy: pins.policy()?,
                ..Options::default()
            };
            let verdict = match &bundle {
                None => mnemo_audit::training::verify_training::<
                    std::iter::Empty<Result<BundleItem, ItemError>>,
                    std::iter::Empty<Result<BundleItem, ItemError>>,
                >(&answer, None, &opts),
                Some(path) => {
                    let (a, _) = open(path)?;
                    let (b, _) = open(path)?;
                    let items = (
                        mnemo_audit::read_bundle(a, |_| {}),
                        mnemo_audit::read_bundle(b, |_| {}),
                    );
                    mnemo_audit::training::verify_training(&answer, Some(items), &opts)
                }
            };
            match verdict {
                Ok(v) => {
                    out!(
                        "{}",
                        serde_json::json!({ "valid": true, "model": answer.model, "member": answer.proof.member, "included": v.included, "trust": v.trust })
                    );
                    Ok(true)
                }
                Err(r) => {
                    out!(
                        "{}",
                        serde_json::json!({ "valid": false, "code": r.code, "message": r.message })
                    );
                    Ok(false)
                }
            }
        }
        Command::Prove {
            bundle,
            seq,
            out,
            pins,
        } => {
            let policy = pins.policy()?;
            let (mut r, _) = open(&bundle)?;
            if !first_line_has_type(&mut r)? {
                anyhow::bail!(
                    "{} is not a custody bundle (JSON lines, a header first): prove extracts a proof from a custody bundle; to check a proof bundle, use verify --bundle",
                    bundle.display()
                );
            }
            match mnemo_audit::prove(mnemo_audit::read_bundle(r, |_| {}), seq, &policy) {
                Ok(p) => {
                    let json = serde_json::to_string_pretty(&p).expect("serialisable");
                    match out {
                        Some(path) => std::fs::write(&path, json + "\n")
                            .with_context(|| format!("writing {}", path.display()))?,
                        None => out!("{json}"),
                    }
                    Ok(true)
                }
                Err(mnemo_audit::ProveError::Io(e)) => Err(e).context("reading the bundle"),
                Err(e @ mnemo_audit::ProveError::NoSuchEvent(_)) => Err(e.into()),
                Err(e) => {
                    let _ = std::io::Write::write_fmt(
                        &mut std::io::stderr(),
                        format_args!("mnemo-audit: {e}\n"),
                    );
                    Ok(false)
                }
            }
        }
    }
}

fn verify(a: VerifyArgs) -> anyhow::Result<bool> {
    let opts = a.options()?;
    let mut report = if let Some(path) = &a.bundle {
        let (mut r, len) = open(path)?;
        // Which kind of file (FORMAT.md §13.1): a custody bundle when its first line is a
        // JSON object with a `type` member, else a proof bundle when the whole file is one
        // JSON object; anything else is not a bundle, and that is a verdict (invalid,
        // `structure`), not a usage error.
        if first_line_has_type(&mut r)? {
            let bar = progress_bar(len);
            let items = mnemo_audit::read_bundle(r, |n| bar.set_position(n));
            let outcome = mnemo_audit::verify_items(items, &opts).context("reading the bundle")?;
            bar.finish_and_clear();
            custody_report(path.display().to_string(), outcome, opts.threads)
        } else {
            'file: {
                let mut text = String::new();
                r.read_to_string(&mut text).context("reading the bundle")?;
                let is_object =
                    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text)
                        .is_ok();
                let proof: ProofBundle = match mnemo_audit::read_proof(text.as_bytes()) {
                    Ok(p) => p,
                    Err(e) => {
                        let message = if is_object {
                            format!("not a proof bundle: {e}")
                        } else if text.is_empty() {
                            "an empty file: neither a custody bundle nor a proof bundle".into()
                        } else {
                            format!(
                                "neither a custody bundle (line 1 is no JSON object with a type) nor a proof bundle (one JSON object): {e}"
                            )
                        };
                        break 'file structure_report(path.display().to_string(), message);
                    }
                };
                let (level, failure) = match mnemo_audit::verify_proof(&proof, &opts.policy) {
                    Ok(l) => (Some(l), None),
                    Err(f) => (None, Some(f)),
                };
                let anchors = proof
                    .anchor
                    .iter()
                    .map(|r| mnemo_core::custody::AnchorSeen {
                        epoch: r.epoch,
                        seq: proof.checkpoint.seq,
                        receipt: r.clone(),
                    })
                    .collect::<Vec<_>>();
                let mut rep = Report {
                    valid: failure.is_none(),
                    kind: "proof",
                    source: path.display().to_string(),
                    custody: None,
                    proof_level: level,
                    proof_trust: level.map(|l| mnemo_audit::proof_trust(l, &opts.policy)),
                    failure,
                    on_chain: Vec::new(),
                    threads: 1,
                };
                if let (Some(rpc), true) = (&a.rpc, rep.valid) {
                    rep.on_chain =
                        runtime()?.block_on(onchain::check(rpc, &anchors, a.final_depth))?;
                }
                rep
            }
        }
    } else {
        let url = a.nats.clone().expect("clap requires --nats or --bundle");
        let Some(user) = a.user.clone() else {
            anyhow::bail!("--nats needs --user ID or --all-users");
        };
        let user = UserId::new(user).map_err(|e| anyhow::anyhow!("--user: {e}"))?;
        let rt = runtime()?;
        let js = rt.block_on(connect(&url, a.creds.as_deref()))?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<BundleItem, ItemError>>(4096);
        if a.via_read {
            rt.spawn(online::send_items_via_read(
                js.client(),
                user.clone(),
                now(),
                tx,
            ));
        } else {
            let layout = rt.block_on(online::detect_layout(&js, &user))?;
            let seals = mnemo_ledger::SealStore::reader(js.clone());
            rt.spawn(online::send_items(
                js,
                layout,
                user.clone(),
                now(),
                seals,
                tx,
            ));
        }
        let outcome = mnemo_audit::verify_items(rx.into_iter(), &opts)
            .with_context(|| format!("reading {user}'s chain from {url}"))?;
        custody_report(format!("{url} user {user}"), outcome, opts.threads)
    };
    if report.kind == "custody"
        && report.valid
        && let Some(rpc) = &a.rpc
    {
        let anchors = &report.custody.as_ref().expect("custody").summary.anchors;
        report.on_chain = runtime()?.block_on(onchain::check(rpc, anchors, a.final_depth))?;
    }
    if let Some(bad) = report.on_chain.iter().find(|c| c.error.is_some()) {
        report.valid = false;
        report.failure = Some(Failure {
            user: report.custody.as_ref().and_then(|c| c.summary.user.clone()),
            seq: Some(bad.seq),
            code: "anchor_on_chain".into(),
            line: None,
            message: format!(
                "anchor of epoch {}: {}",
                bad.epoch,
                bad.error.clone().unwrap_or_default()
            ),
        });
    }
    if a.json {
        out!(
            "{}",
            serde_json::to_string_pretty(&report).expect("serialisable")
        );
    } else {
        print_human(&report)?;
    }
    Ok(report.valid)
}

async fn connect(
    url: &str,
    creds: Option<&Path>,
) -> anyhow::Result<async_nats::jetstream::Context> {
    let mut o = async_nats::ConnectOptions::new();
    if let Some(c) = creds {
        o = o
            .credentials_file(c)
            .await
            .with_context(|| format!("reading credentials {}", c.display()))?;
    }
    let client = o
        .connect(url)
        .await
        .with_context(|| format!("connecting to NATS at {url}"))?;
    Ok(async_nats::jetstream::new(client))
}

/// What `verify --nats --all-users` reports.
#[derive(Serialize)]
struct ServerReport {
    valid: bool,
    kind: &'static str,
    source: String,
    #[serde(flatten)]
    outcome: mnemo_audit::server::ServerOutcome,
    threads: usize,
}

/// `verify --nats URL --all-users`: every chain on the server, seals shared between them.
fn verify_server(a: VerifyArgs) -> anyhow::Result<bool> {
    let url = a.nats.clone().expect("clap requires --nats");
    let opts = a.options()?;
    let rt = runtime()?;
    let js = rt.block_on(connect(&url, a.creds.as_deref()))?;
    let outcome = rt
        .block_on(mnemo_audit::server::verify_all(&js, &opts, now()))
        .with_context(|| format!("auditing every chain on {url}"))?;
    let report = ServerReport {
        valid: outcome.valid(),
        kind: "server",
        source: url,
        outcome,
        threads: opts.threads,
    };
    if a.json {
        out!(
            "{}",
            serde_json::to_string_pretty(&report).expect("serialisable")
        );
    } else {
        let o = &report.outcome;
        let verdict = if report.valid { "VALID" } else { "INVALID" };
        out!("mnemo-audit: server {}: {verdict}", report.source);
        out!("  chains        {} checked", o.users);
        out!("  events        {} checked", o.events);
        out!(
            "  signatures    {} verified (batched on {} threads); {} seals, {} seal records, each checked once",
            o.signatures,
            report.threads,
            o.seals_verified,
            o.seal_records
        );
        for f in &o.failures {
            out!(
                "  FAILURE       user {} seq {} check {}: {}",
                f.user.as_ref().map_or("-".into(), |u| u.to_string()),
                f.seq.map_or("-".into(), |s| s.to_string()),
                f.code,
                f.message
            );
        }
    }
    Ok(report.valid)
}

/// `verify-receipt`: a custody receipt alone, offline.
/// The custody keys of `--trusted-key` options (hex, `0x` allowed).
fn trusted_keys(keys: &[String]) -> anyhow::Result<Vec<PublicKey>> {
    keys.iter()
        .map(|k| {
            let mut b = [0u8; 32];
            hex::decode_to_slice(k.trim_start_matches("0x"), &mut b)
                .ok()
                .and_then(|()| PublicKey::from_bytes(&b))
                .ok_or_else(|| anyhow::anyhow!("--trusted-key must be a 32-byte hex key"))
        })
        .collect()
}

fn verify_receipt(path: &Path, keys: &[String]) -> anyhow::Result<bool> {
    let keys = trusted_keys(keys)?;
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let value: serde_json::Value = match serde_json::from_slice(&text) {
        Ok(v) => v,
        Err(e) => {
            out!(
                "{}",
                serde_json::json!({ "valid": false, "code": "structure", "message": format!("not JSON: {e}") })
            );
            return Ok(false);
        }
    };
    // The receipt itself, or an ingest answer that carries it as `custody`.
    let inner = value.get("custody").cloned().unwrap_or(value);
    let receipt: mnemo_core::CustodyReceipt = match serde_json::from_value(inner) {
        Ok(r) => r,
        Err(e) => {
            out!(
                "{}",
                serde_json::json!({ "valid": false, "code": "structure", "message": format!("not a custody receipt: {e}") })
            );
            return Ok(false);
        }
    };
    // It holds under any pinned key; a refusal names the check that failed under the key
    // it was signed with, when that one is pinned (else: signed by an unpinned key).
    let mut result = receipt.verify(&keys[0]);
    for k in &keys[1..] {
        if result.is_ok() {
            break;
        }
        let r = receipt.verify(k);
        if r.is_ok()
            || matches!(
                result,
                Err(mnemo_core::receipt::ReceiptError::Signer { .. })
            )
        {
            result = r;
        }
    }
    match result {
        Ok((event, hash)) => {
            out!(
                "{}",
                serde_json::json!({ "valid": true, "user": event.user, "seq": event.seq.0, "event_hash": hash, "kind": event.body.kind_name(), "batch_size": receipt.seal.size })
            );
            Ok(true)
        }
        Err(e) => {
            let code = match &e {
                mnemo_core::receipt::ReceiptError::Decode(_) => "decode",
                mnemo_core::receipt::ReceiptError::Version(_) => "decode",
                mnemo_core::receipt::ReceiptError::Signer { .. } => "untrusted_key",
                mnemo_core::receipt::ReceiptError::Seal(mnemo_core::seal::SealError::Check(c)) => {
                    c.code()
                }
                mnemo_core::receipt::ReceiptError::Seal(_) => "bad_signature",
            };
            out!(
                "{}",
                serde_json::json!({ "valid": false, "code": code, "message": e.to_string() })
            );
            Ok(false)
        }
    }
}

/// Whether the first line is a JSON object with a `type` member: a custody bundle
/// (FORMAT.md §13.1).
fn first_line_has_type(r: &mut impl BufRead) -> anyhow::Result<bool> {
    let buf = r.fill_buf().context("reading the bundle")?;
    let end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    Ok(
        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&buf[..end])
            .is_ok_and(|m| m.contains_key("type")),
    )
}

/// The verdict on a file that is not a bundle at all: invalid, check `structure`.
fn structure_report(source: String, message: String) -> Report {
    Report {
        valid: false,
        kind: "custody",
        source,
        proof_level: None,
        proof_trust: None,
        failure: Some(Failure {
            user: None,
            seq: None,
            code: "structure".into(),
            line: Some(1),
            message,
        }),
        custody: None,
        on_chain: Vec::new(),
        threads: 1,
    }
}

fn custody_report(source: String, outcome: Outcome, threads: usize) -> Report {
    Report {
        valid: outcome.valid(),
        kind: "custody",
        source,
        proof_level: None,
        proof_trust: None,
        failure: outcome.failure.clone(),
        custody: Some(outcome),
        on_chain: Vec::new(),
        threads,
    }
}

fn print_human(r: &Report) -> anyhow::Result<()> {
    let verdict = if r.valid { "VALID" } else { "INVALID" };
    out!("mnemo-audit: {} {}: {verdict}", r.kind, r.source);
    if let Some(c) = &r.custody {
        let s = &c.summary;
        if let Some(u) = &s.user {
            out!("  user          {u}");
        }
        out!(
            "  events        {} checked: gap-free seq, prev links, key history, kind rules",
            s.events
        );
        out!(
            "  signatures    {} verified (batched on {} threads)",
            s.signatures,
            r.threads
        );
        out!(
            "  memories      {} ingested, {} erasure events, {} payloads opened against their commitments",
            s.memories,
            s.erasures,
            s.payloads_opened
        );
        out!(
            "  grants        {} created, {} revoked, {} reads recorded",
            s.grants,
            s.revocations,
            s.accesses
        );
        if let Some(h) = &s.head {
            out!(
                "  checkpoint    seq {} head {} root {}",
                h.seq,
                h.head,
                h.root
            );
        }
        let epochs: Vec<String> = s.anchors.iter().map(|a| a.epoch.to_string()).collect();
        out!(
            "  anchors       {} checked offline (epochs {})",
            s.anchors.len(),
            if epochs.is_empty() {
                "none".into()
            } else {
                epochs.join(", ")
            }
        );
    }
    if let Some(l) = r.proof_level {
        out!("  proof level   {l:?}");
    }
    if let Some(t) = r.proof_trust {
        out!("  proves        {t}");
    }
    if !r.on_chain.is_empty() {
        let ok = r.on_chain.iter().filter(|c| c.error.is_none()).count();
        out!(
            "  on chain      {ok} of {} anchors confirmed (status, contract code, log, canonical and final block)",
            r.on_chain.len()
        );
    }
    if let Some(f) = &r.failure {
        out!(
            "  FIRST FAILURE {}user {} seq {} check {}: {}",
            f.line.map_or(String::new(), |l| format!("line {l} ")),
            f.user.as_ref().map_or("-".into(), |u| u.to_string()),
            f.seq.map_or("-".into(), |s| s.to_string()),
            f.code,
            f.message
        );
    }
    Ok(())
}
