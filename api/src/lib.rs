//! # mnemo-api
//!
//! The `mnemo` server's library: the REST API ([`http`], one module per resource), its authentication ([`auth`]) and
//! errors ([`problem`]), the ingest receipt REST and NATS share ([`receipt`]), custody exports ([`export`]), the OpenAPI document ([`openapi`]),
//! health and metrics endpoints ([`health`]), the one clock ([`clock`]), NATS accounts, device credentials and the device
//! gateway ([`nats`]). The binary (`src/main.rs`) wires it to the
//! command line.

pub mod auth;
pub use mnemo_ledger::clock;
pub mod export;
pub mod health;
pub mod http;
pub mod nats;
pub mod openapi;
pub mod problem;
pub mod receipt;
