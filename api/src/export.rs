//! Custody exports: a user's whole chain as a custody bundle (`mnemo_core::custody`), one
//! JSON object per line, written as it is read so a chain of any length streams out in
//! bounded memory. `mnemo-audit verify --bundle` checks it without trusting this server.

use mnemo_anchor::AnchorReader;
use mnemo_core::custody::{BUNDLE_FORMAT, BUNDLE_VERSION, BundleItem, HexBytes};
use mnemo_core::{EventBody, Hash32, Seq, TimestampMs, UserId};
use mnemo_ledger::{KeyCache, Ledger, LedgerError};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// What an export wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Events written.
    pub events: u64,
    /// Payload openings written (memories whose key still exists).
    pub payloads: u64,
    /// Anchors written.
    pub anchors: u64,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the chain or a payload failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Reading the anchors failed.
    #[error(transparent)]
    Anchor(#[from] mnemo_anchor::AnchorError),
    /// Writing failed (the reader went away).
    #[error("writing the bundle: {0}")]
    Io(#[from] std::io::Error),
}

async fn line<W: AsyncWrite + Unpin>(w: &mut W, item: &BundleItem) -> std::io::Result<()> {
    let mut b = serde_json::to_vec(item).expect("bundle items serialise");
    b.push(b'\n');
    w.write_all(&b).await
}

/// Writes `user`'s custody bundle to `w`: header, every anchor of the user's checkpoints,
/// every event with the opening of each memory's commitment while its key exists, end.
pub async fn write_bundle<W: AsyncWrite + Unpin>(
    ledger: &Ledger,
    anchors: Option<&AnchorReader>,
    user: &UserId,
    now: TimestampMs,
    w: &mut W,
) -> Result<ExportStats, ExportError> {
    // Fails with UnknownUser (or TooManyReads) before anything is written.
    let reader = ledger.read(user, Seq::FIRST).await?;
    write_bundle_from(ledger, reader, anchors, user, now, w).await
}

/// [`write_bundle`] from a reader of `user`'s chain opened at its first event (so that a
/// caller can refuse before it answers, when no reader can be opened).
pub async fn write_bundle_from<W: AsyncWrite + Unpin>(
    ledger: &Ledger,
    mut reader: mnemo_ledger::ChainReader,
    anchors: Option<&AnchorReader>,
    user: &UserId,
    now: TimestampMs,
    w: &mut W,
) -> Result<ExportStats, ExportError> {
    let mut stats = ExportStats::default();
    line(
        w,
        &BundleItem::Header {
            format: BUNDLE_FORMAT.into(),
            version: BUNDLE_VERSION,
            user: user.clone(),
            exported_at: now,
            ledger_key: Some(ledger.public_key()),
        },
    )
    .await?;
    if let Some(a) = anchors {
        for (epoch_proof, receipt) in a.anchors_for(user).await? {
            line(
                w,
                &BundleItem::Anchor {
                    epoch_proof,
                    receipt,
                },
            )
            .await?;
            stats.anchors += 1;
        }
    }
    let mut head = Hash32::ZERO;
    let mut cache = KeyCache::default();
    while let Some(e) = reader.next().await? {
        line(
            w,
            &BundleItem::Event {
                wire: HexBytes(e.event.to_wire()),
            },
        )
        .await?;
        stats.events += 1;
        head = e.hash;
        if e.event.body.payload_id().is_some() {
            // The salt and record open the commitment; an object's content is not read.
            match ledger.open_memory_stream_cached(&e, &mut cache).await {
                Ok(m) => {
                    line(
                        w,
                        &BundleItem::Payload {
                            seq: e.event.seq,
                            salt: Hash32(m.salt),
                            record: m.record,
                        },
                    )
                    .await?;
                    stats.payloads += 1;
                }
                Err(LedgerError::Erased(_)) => {}
                Err(other) => return Err(other.into()),
            }
        }
        if matches!(
            e.event.body,
            EventBody::MemoryErased { .. } | EventBody::LineageErased { .. }
        ) {
            cache.evict_user(user);
        }
    }
    line(
        w,
        &BundleItem::End {
            events: stats.events,
            head,
        },
    )
    .await?;
    w.flush().await?;
    Ok(stats)
}
