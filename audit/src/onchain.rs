//! Anchor receipts checked on the EVM chain itself (`--rpc`): receipt status, contract
//! address and runtime code, the `Anchored` log's topics and data (root, epoch, leaf count,
//! previous root), and the block being canonical and final.

use mnemo_anchor::{read_only_provider, verify_on_chain};
use mnemo_core::custody::AnchorSeen;
use serde::Serialize;

use crate::SourceError;

/// One receipt's on-chain check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OnChainCheck {
    /// Epoch.
    pub epoch: u64,
    /// The anchored checkpoint's seq.
    pub seq: u64,
    /// `None` when everything checked out, else what failed.
    pub error: Option<String>,
}

/// Checks every anchor on the chain at `rpc`; `final_depth` blocks make a block final (1 on
/// Sapphire, which has instant finality).
pub async fn check(
    rpc: &str,
    anchors: &[AnchorSeen],
    final_depth: u64,
) -> Result<Vec<OnChainCheck>, SourceError> {
    let provider = read_only_provider(rpc)?;
    let mut out = Vec::with_capacity(anchors.len());
    for a in anchors {
        let r = verify_on_chain(&provider, &a.receipt, final_depth).await;
        if let Err(mnemo_anchor::OnChainError::Rpc(e)) = &r {
            return Err(SourceError::Rpc {
                rpc: rpc.into(),
                detail: e.to_string(),
            });
        }
        out.push(OnChainCheck {
            epoch: a.epoch,
            seq: a.seq.0,
            error: r.err().map(|e| e.to_string()),
        });
    }
    Ok(out)
}
