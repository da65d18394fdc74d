//! # mnemo-anchor
//!
//! Custody is only as good as what a third party can check without trusting mnemo. Every
//! epoch, the anchorer takes each user's latest checkpoint (the `mnemo-heads` KV view),
//! builds the epoch tree of `mnemo-core` over them, and commits its root with one
//! transaction to the `MnemoAnchor` contract (`anchor/contracts/`) on an EVM chain spoken
//! to over Ethereum JSON-RPC: Oasis Sapphire (mainnet 23294, testnet 23295, localnet 23293),
//! Emerald, or any EVM chain.
//!
//! - [`Chain`]: the contract on one chain: deploy, read, submit, find an epoch's log,
//!   check canonical blocks.
//! - [`Anchorer`]: the epoch loop with crash-safe state (a pending epoch is stored before
//!   it is submitted, and the chain is asked before a resubmission), reorg detection and
//!   re-anchoring, and a KV lease so that one instance anchors at a time.
//! - [`verify_on_chain`]: what an auditor checks of a receipt against the chain.
//!
//! Records: each anchored epoch's receipt goes to the `MNEMO-ANCHORS` stream
//! (`mnemo.anchors.<epoch>`), and its leaves (the checkpoints) to the `mnemo-epochs` object
//! store, from which any user's epoch proof can be made later.

mod anchorer;
mod chain;
mod error;
mod log;
mod log_records;
mod reader;

pub use anchorer::{AnchorStats, Anchorer, AnchorerConfig, EpochRecord, read_checkpoints};
pub use chain::{
    Chain, MnemoAnchor, OnChainError, probe_contract, read_only_provider, runtime_bytecode,
    verify_on_chain,
};
pub use error::{AnchorError, Result};
pub use reader::AnchorReader;
