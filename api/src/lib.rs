//! # mnemo-api
//!
//! The `mnemo` server's library: the REST API ([`http`], one module per resource), its
//! authentication ([`auth`]), custody exports ([`export`]), the OpenAPI document
//! ([`openapi`]), health and metrics endpoints ([`health`]). The binary (`src/main.rs`)
//! wires it, with NATS account administration (mnemo-accounts) and the device gateway
//! (mnemo-gateway), to the command line. The shapes both doors answer, the problem and the
//! ingest receipt, are mnemo-wire's ([`problem`], [`receipt`]).

pub mod auth;
pub use mnemo_ledger::clock;
pub mod export;
pub mod health;
pub mod http;
pub mod openapi;

pub use mnemo_wire::{problem, receipt};

/// Brings the processors' NATS accounts in line with the registry (an account and its
/// imports for each live processor, none for a revoked one).
pub async fn sync_processor_accounts(
    accounts: &mnemo_accounts::Accounts,
    registry: &mnemo_processing::Registry,
) -> Result<(), mnemo_accounts::NatsAuthError> {
    let all = registry
        .list()
        .await
        .map_err(|e| mnemo_accounts::NatsAuthError::nats("list the processors", e))?;
    let states: Vec<mnemo_accounts::processors::ProcessorState<'_>> = all
        .iter()
        .map(|p| mnemo_accounts::processors::ProcessorState {
            name: p.name.as_str(),
            revoked: p.revoked,
        })
        .collect();
    accounts.sync_processor_states(&states).await
}
