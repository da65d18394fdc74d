//! `mnemo-bench verify`: `mnemo-audit`'s streaming verification of a custody bundle file
//! against raw ed25519-dalek batch verification on the same threads, in the same run.

use ed25519_dalek::{Signer, SigningKey};
use mnemo_audit::{Options, read_bundle, verify_items};
use mnemo_core::custody::{BUNDLE_FORMAT, BUNDLE_VERSION, BundleItem, HexBytes};
use mnemo_core::{
    Address, AnchorReceipt, Checkpoint, Content, EpochTree, EventBody, Hash32, Head, KeyRole,
    MemoryId, MemoryRecord, PublicKey, Seq, TimestampMs, UserId, commitment, keys,
    merkle::{Accumulator, CHAIN_TREE},
};
use std::io::{BufWriter, Write};
use std::time::Instant;

use crate::measure::{Row, human, median_rate, print_table};

/// Options of `mnemo-bench verify`.
#[derive(clap::Args)]
pub struct Args {
    /// Events in the bundle.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Verifying threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Rounds per figure (the median is printed).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Also keep the bundle here (for the console's in-browser timing,
    /// console/bench/verify.mjs, on the same bytes).
    #[arg(long)]
    keep: Option<std::path::PathBuf>,
}

fn line(w: &mut impl Write, item: &BundleItem) -> std::io::Result<()> {
    serde_json::to_writer(&mut *w, item)?;
    w.write_all(b"\n")
}

/// Writes a bundle of `n` events: a genesis key, then memories, each with its payload
/// opening (as an export holds them), one anchor of the final checkpoint. Returns the
/// signing messages of the first events, for the baseline.
fn write_bundle(path: &std::path::Path, n: u64) -> anyhow::Result<Vec<[u8; 64]>> {
    let user = UserId::new("bench-user")?;
    let key = SigningKey::from_bytes(&[7; 32]);
    let mut head = Head::empty(user.clone());
    let mut acc = Accumulator::new();
    let tmp = path.with_extension("events");
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
    let mut msgs = Vec::new();
    for i in 0..n {
        let (body, payload, record) = if i == 0 {
            (
                EventBody::KeyAdded {
                    key: PublicKey(key.verifying_key()),
                    role: KeyRole::Custody,
                },
                None,
                None,
            )
        } else {
            let mut m = [0u8; 16];
            m[..8].copy_from_slice(&i.to_be_bytes());
            let record = MemoryRecord {
                kind: "note".into(),
                tags: vec!["bench".into()],
                captured_at: Some(TimestampMs(i as i64)),
                source: None,
                content_type: "text/plain".into(),
                content: Content::Inline {
                    bytes: format!("memory number {i} of the verify benchmark").into_bytes(),
                },
            };
            let salt = [i as u8; 32];
            let c = commitment::commit(&salt, &record.canonical_bytes());
            (
                EventBody::MemoryIngested {
                    memory: MemoryId(m),
                    capture: None,
                },
                Some(c),
                Some((salt, record)),
            )
        };
        let (e, h) = head.next_event(&key, TimestampMs(i as i64), body, payload, None);
        head.advance(&e, h);
        acc.push(CHAIN_TREE, CHAIN_TREE.leaf(&h.0));
        if msgs.len() < 8192 {
            msgs.push(keys::event_signing_message(&h));
        }
        line(
            &mut w,
            &BundleItem::Event {
                wire: HexBytes(e.to_wire()),
            },
        )?;
        if let Some((salt, record)) = record {
            line(
                &mut w,
                &BundleItem::Payload {
                    seq: e.seq,
                    salt: Hash32(salt),
                    record,
                },
            )?;
        }
    }
    line(
        &mut w,
        &BundleItem::End {
            events: n,
            head: head.hash,
        },
    )?;
    w.flush()?;
    drop(w);
    // header and anchor first, then the events
    let cp = Checkpoint {
        user: user.clone(),
        seq: Seq(n),
        head: head.hash,
        root: acc.root(CHAIN_TREE),
    };
    let tree = EpochTree::build(1, vec![cp.clone()]).expect("one user");
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    line(
        &mut out,
        &BundleItem::Header {
            format: BUNDLE_FORMAT.into(),
            version: BUNDLE_VERSION,
            user: user.clone(),
            exported_at: TimestampMs(0),
            ledger_key: Some(PublicKey(key.verifying_key())),
        },
    )?;
    line(
        &mut out,
        &BundleItem::Anchor {
            epoch_proof: tree.proof(&user).expect("in the tree"),
            receipt: AnchorReceipt {
                chain_id: 23293,
                contract: Address([1; 20]),
                tx_hash: Hash32([2; 32]),
                block_number: 1,
                block_hash: Hash32([3; 32]),
                epoch: 1,
                root: tree.root(),
                leaf_count: 1,
                prev_root: Hash32::ZERO,
            },
        },
    )?;
    std::io::copy(&mut std::fs::File::open(&tmp)?, &mut out)?;
    out.flush()?;
    std::fs::remove_file(&tmp)?;
    Ok(msgs)
}

/// Resident set size and its peak, in MiB (Linux).
fn rss() -> (f64, f64) {
    (
        crate::measure::status_mib(None, "VmRSS:"),
        crate::measure::status_mib(None, "VmHWM:"),
    )
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let n = a.events;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bundle.jsonl");
    let t = Instant::now();
    let msgs = write_bundle(&path, n)?;
    let size = std::fs::metadata(&path)?.len();
    if let Some(keep) = &a.keep {
        std::fs::copy(&path, keep)?;
    }
    println!(
        "mnemo-bench verify: {n} events ({} MiB bundle, written in {:.1} s), {threads} threads, {} rounds, medians",
        size / (1 << 20),
        t.elapsed().as_secs_f64(),
        a.rounds
    );

    // Baseline: raw batch verification of signatures of the same kind (64-byte signing
    // messages of chain events), batches of the verifier's size, on `threads` threads.
    let key = SigningKey::from_bytes(&[7; 32]);
    let vk = key.verifying_key();
    let sigs: Vec<ed25519_dalek::Signature> = msgs.iter().map(|m| key.sign(m)).collect();
    let batch = mnemo_core::verify::DEFAULT_BATCH;
    let chunks: Vec<(Vec<&[u8]>, &[ed25519_dalek::Signature])> = msgs
        .chunks(batch)
        .zip(sigs.chunks(batch))
        .map(|(m, s)| (m.iter().map(|x| x.as_slice()).collect(), s))
        .collect();
    let keys = vec![vk; batch];
    let per_thread = n.div_ceil(threads as u64);
    let raw = median_rate(a.rounds, per_thread * threads as u64, || {
        std::thread::scope(|s| {
            for t in 0..threads {
                let (chunks, keys) = (&chunks, &keys);
                s.spawn(move || {
                    let mut done = 0u64;
                    let mut i = t;
                    while done < per_thread {
                        let (m, sg) = &chunks[i % chunks.len()];
                        assert!(ed25519_dalek::verify_batch(m, sg, &keys[..m.len()]).is_ok());
                        done += m.len() as u64;
                        i += threads;
                    }
                });
            }
        });
    });

    // mnemo-audit: read, parse, decode, link, hash, check rules and payload openings on
    // this thread; signatures in batches on `threads` threads.
    let opts = Options {
        threads,
        ..Default::default()
    };
    std::fs::write("/proc/self/clear_refs", "5").ok(); // reset the peak RSS
    let (rss_before, _) = rss();
    let mut summary = None;
    let audit = median_rate(a.rounds, n, || {
        let f =
            std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&path).expect("bundle"));
        let o = verify_items(read_bundle(f, |_| {}), &opts).expect("readable");
        assert!(o.valid(), "{:?}", o.failure);
        summary = Some(o.summary);
    });
    let (_, peak) = rss();
    // The reading thread's share alone: everything but the signatures (batches dropped).
    let reader = median_rate(a.rounds, n, || {
        let f =
            std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&path).expect("bundle"));
        let mut v = mnemo_core::custody::CustodyVerifier::new(Default::default())
            .with_deferred_signatures();
        for item in read_bundle(f, |_| {}) {
            v.push(item.expect("readable")).expect("valid");
            while v.take_batch(false).is_some() {}
        }
        while v.take_batch(true).is_some() {}
        v.finish().expect("valid");
    });
    let s = summary.expect("ran");
    assert_eq!((s.events, s.payloads_opened), (n, n - 1));

    print_table(
        "Custody bundle verification (mnemo-audit verify)",
        &[
            Row {
                what: format!("raw ed25519-dalek batch verify, {threads} threads"),
                rate: raw,
                unit: "sig/s",
                baseline: None,
            },
            Row {
                what: "reading thread alone (parse, decode, hash, link, rules, payloads)".into(),
                rate: reader,
                unit: "events/s",
                baseline: None,
            },
            Row {
                what: format!(
                    "mnemo-audit verify, {threads} threads (reader + {} signature threads) ({} MiB file)",
                    threads - 1,
                    size / (1 << 20)
                ),
                rate: audit,
                unit: "events/s",
                baseline: Some(("raw batch verify".into(), raw)),
            },
        ],
    );
    println!(
        "\nmemory: RSS {rss_before:.0} MiB before verifying, peak {peak:.0} MiB while verifying \
         a {} MiB bundle {} times (bounded: the verifier keeps memory and grant ids, not events)",
        size / (1 << 20),
        a.rounds
    );
    crate::measure::headline(
        &format!("custody bundle verification (mnemo-audit, {n} events, {threads} threads)"),
        format!("{} events/s", human(audit)),
        format!("raw batch verify, same threads: {} sig/s", human(raw)),
        audit / raw,
        ">= 0.8",
    );
    println!(
        "ratio {:.3} (target 0.8); {} events/s",
        audit / raw,
        human(audit)
    );
    Ok(())
}
