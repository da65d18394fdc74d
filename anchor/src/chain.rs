//! The anchor contract on one EVM chain.

use alloy::primitives::{Address as EvmAddress, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{BlockNumberOrTag, Filter, Log};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolEvent;
use mnemo_core::{Address, AnchorReceipt, Hash32};

use crate::error::{AnchorError, Result};

alloy::sol!(
    #[sol(rpc)]
    #[allow(missing_docs)]
    MnemoAnchor,
    "contracts/MnemoAnchor.json"
);

/// The contract's runtime bytecode as compiled and checked in (what `eth_getCode` must
/// return at a genuine anchor contract).
pub fn runtime_bytecode() -> Bytes {
    MnemoAnchor::DEPLOYED_BYTECODE.clone()
}

fn b256(h: &Hash32) -> B256 {
    B256::from(h.0)
}

fn hash32(b: B256) -> Hash32 {
    Hash32(b.0)
}

/// The anchor contract on a chain, with the account that signs.
#[derive(Clone)]
pub struct Chain {
    provider: DynProvider,
    contract: EvmAddress,
    chain_id: u64,
    confirmations: u64,
}

impl Chain {
    fn signing_provider(url: &str, key: &str) -> Result<DynProvider> {
        let signer: PrivateKeySigner = key.trim().parse().map_err(|_| {
            AnchorError::Config("the signer key must be a 32-byte hex private key".into())
        })?;
        let url = url
            .parse()
            .map_err(|_| AnchorError::Config(format!("bad RPC URL {url:?}")))?;
        // Nonces are asked of the node for every transaction (not cached): after a reorg
        // the account's nonce goes back, and a cached one would leave the resubmitted
        // anchor stuck in the mempool.
        Ok(ProviderBuilder::new()
            .disable_recommended_fillers()
            .with_gas_estimation()
            .with_simple_nonce_management()
            .fetch_chain_id()
            .wallet(signer)
            .connect_http(url)
            .erased())
    }

    /// Deploys a new anchor contract owned by the key's account; returns its address.
    pub async fn deploy(url: &str, key: &str) -> Result<Address> {
        let p = Self::signing_provider(url, key)?;
        let c = MnemoAnchor::deploy(&p).await.map_err(AnchorError::rpc)?;
        Ok(Address(c.address().0.0))
    }

    /// Connects to the contract at `contract`; the chain id is read from the node.
    pub async fn connect(
        url: &str,
        key: &str,
        contract: Address,
        confirmations: u64,
    ) -> Result<Self> {
        let provider = Self::signing_provider(url, key)?;
        let chain_id = provider.get_chain_id().await.map_err(AnchorError::rpc)?;
        Ok(Self {
            provider,
            contract: EvmAddress::from(contract.0),
            chain_id,
            confirmations: confirmations.max(1),
        })
    }

    /// The chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The contract address.
    pub fn contract(&self) -> Address {
        Address(self.contract.0.0)
    }

    /// The underlying provider (for checks).
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// The last anchored epoch and root the contract holds.
    pub async fn last(&self) -> Result<(u64, Hash32)> {
        let c = MnemoAnchor::new(self.contract, &self.provider);
        let epoch = c.lastEpoch().call().await.map_err(AnchorError::rpc)?;
        let root = c.lastRoot().call().await.map_err(AnchorError::rpc)?;
        Ok((epoch, hash32(root)))
    }

    /// Submits an anchor and waits for the configured confirmations.
    pub async fn submit(
        &self,
        epoch: u64,
        root: Hash32,
        leaf_count: u64,
        prev_root: Hash32,
    ) -> Result<AnchorReceipt> {
        let c = MnemoAnchor::new(self.contract, &self.provider);
        let count = u32::try_from(leaf_count)
            .map_err(|_| AnchorError::Config("more than 2^32 leaves in one epoch".into()))?;
        let call = c.anchor(b256(&root), epoch, count, b256(&prev_root));
        // Pre-flight with eth_call: some nodes' gas estimation can report success for a
        // call that reverts (Sapphire estimates as sender 0).
        call.call().await.map_err(AnchorError::rpc)?;
        let pending = call.send().await.map_err(AnchorError::rpc)?;
        let receipt = pending
            .with_required_confirmations(self.confirmations)
            .with_timeout(Some(std::time::Duration::from_secs(120)))
            .get_receipt()
            .await
            .map_err(AnchorError::rpc)?;
        if !receipt.status() {
            return Err(AnchorError::Reverted(format!(
                "tx {} failed",
                receipt.transaction_hash
            )));
        }
        Ok(AnchorReceipt {
            chain_id: self.chain_id,
            contract: self.contract(),
            tx_hash: hash32(receipt.transaction_hash),
            block_number: receipt.block_number.unwrap_or_default(),
            block_hash: hash32(receipt.block_hash.unwrap_or_default()),
            epoch,
            root,
            leaf_count,
            prev_root,
        })
    }

    fn receipt_from_log(&self, log: &Log) -> Option<AnchorReceipt> {
        let ev = MnemoAnchor::Anchored::decode_log(&log.inner).ok()?;
        Some(AnchorReceipt {
            chain_id: self.chain_id,
            contract: self.contract(),
            tx_hash: hash32(log.transaction_hash?),
            block_number: log.block_number?,
            block_hash: hash32(log.block_hash?),
            epoch: ev.epoch,
            root: hash32(ev.root),
            leaf_count: u64::from(ev.leafCount),
            prev_root: hash32(ev.prevRoot),
        })
    }

    /// The `Anchored` logs of `epoch` on the canonical chain (normally one).
    pub async fn find(&self, epoch: u64) -> Result<Vec<AnchorReceipt>> {
        let filter = Filter::new()
            .address(self.contract)
            .event_signature(MnemoAnchor::Anchored::SIGNATURE_HASH)
            .topic2(B256::from(U256::from(epoch)))
            .from_block(BlockNumberOrTag::Earliest)
            .to_block(BlockNumberOrTag::Latest);
        let logs = self
            .provider
            .get_logs(&filter)
            .await
            .map_err(AnchorError::rpc)?;
        Ok(logs
            .iter()
            .filter_map(|l| self.receipt_from_log(l))
            .collect())
    }

    /// Whether the block that holds `r` is still the canonical block at its height.
    pub async fn is_canonical(&self, r: &AnchorReceipt) -> Result<bool> {
        let b = self
            .provider
            .get_block_by_number(BlockNumberOrTag::Number(r.block_number))
            .await
            .map_err(AnchorError::rpc)?;
        Ok(b.is_some_and(|b| hash32(b.header.hash) == r.block_hash))
    }
}

/// A provider that only reads (for auditors): no key, no wallet.
pub fn read_only_provider(url: &str) -> Result<DynProvider> {
    let url = url
        .parse()
        .map_err(|_| AnchorError::Config(format!("bad RPC URL {url:?}")))?;
    Ok(ProviderBuilder::new()
        .disable_recommended_fillers()
        .connect_http(url)
        .erased())
}

/// The chain id of the node at `url`, and whether it holds contract code at `contract`
/// (a dev chain that was reset no longer does).
pub async fn probe_contract(url: &str, contract: Option<Address>) -> Result<(u64, bool)> {
    let p = read_only_provider(url)?;
    let chain_id = p.get_chain_id().await.map_err(AnchorError::rpc)?;
    let has_code = match contract {
        Some(c) => !p
            .get_code_at(EvmAddress::from(c.0))
            .await
            .map_err(AnchorError::rpc)?
            .is_empty(),
        None => false,
    };
    Ok((chain_id, has_code))
}

/// What failed when checking a receipt on the chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OnChainError {
    /// The node was not reachable or answered with an error.
    #[error("rpc: {0}")]
    Rpc(String),
    /// The node is another chain than the receipt's.
    #[error("chain id {found} is not the receipt's {expected}")]
    ChainId {
        /// From the receipt.
        expected: u64,
        /// From the node.
        found: u64,
    },
    /// No such transaction, or it failed.
    #[error("transaction missing or failed")]
    Transaction,
    /// The transaction is in another block than the receipt says (reorged).
    #[error("block hash differs: the anchor was reorganised away")]
    Reorged,
    /// The block is not final yet.
    #[error("block not final")]
    NotFinal,
    /// No `Anchored` log of this contract with this root, epoch, leaf count and previous root.
    #[error("no matching Anchored log at the receipt's contract")]
    NoLog,
    /// The code at the contract is not the anchor contract's.
    #[error("the contract's code is not MnemoAnchor")]
    WrongCode,
}

/// Checks a receipt against the chain as an auditor does: chain id, transaction status,
/// the log (address, topics, data), the block being canonical and final (`final_depth`
/// blocks deep; 1 on Sapphire), and the runtime code at the contract.
pub async fn verify_on_chain(
    provider: &DynProvider,
    r: &AnchorReceipt,
    final_depth: u64,
) -> Result<(), OnChainError> {
    let rpc = |e: alloy::transports::TransportError| OnChainError::Rpc(e.to_string());
    let id = provider.get_chain_id().await.map_err(rpc)?;
    if id != r.chain_id {
        return Err(OnChainError::ChainId {
            expected: r.chain_id,
            found: id,
        });
    }
    let tx = provider
        .get_transaction_receipt(b256(&r.tx_hash))
        .await
        .map_err(rpc)?
        .ok_or(OnChainError::Transaction)?;
    if !tx.status() {
        return Err(OnChainError::Transaction);
    }
    if tx.block_hash.map(hash32) != Some(r.block_hash) || tx.block_number != Some(r.block_number) {
        return Err(OnChainError::Reorged);
    }
    let canonical = provider
        .get_block_by_number(BlockNumberOrTag::Number(r.block_number))
        .await
        .map_err(rpc)?;
    if canonical.is_none_or(|b| hash32(b.header.hash) != r.block_hash) {
        return Err(OnChainError::Reorged);
    }
    let head = provider.get_block_number().await.map_err(rpc)?;
    if head + 1 < r.block_number + final_depth.max(1) {
        return Err(OnChainError::NotFinal);
    }
    let contract = EvmAddress::from(r.contract.0);
    let found = tx.inner.logs().iter().any(|l| {
        l.address() == contract
            && MnemoAnchor::Anchored::decode_log(&l.inner).is_ok_and(|ev| {
                ev.root == b256(&r.root)
                    && ev.epoch == r.epoch
                    && u64::from(ev.leafCount) == r.leaf_count
                    && ev.prevRoot == b256(&r.prev_root)
            })
    });
    if !found {
        return Err(OnChainError::NoLog);
    }
    let code = provider.get_code_at(contract).await.map_err(rpc)?;
    if code != runtime_bytecode() {
        return Err(OnChainError::WrongCode);
    }
    Ok(())
}
