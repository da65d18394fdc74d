//! Every user is a NATS account (decentralized JWT auth, operator mode).
//!
//! - [`claims`]: the JWT claims (operator, account, user) as typed structs, and signing.
//! - [`operator`]: [`OperatorSetup`], the operator (with a signing key), the system account
//!   and the mnemo service account, their credentials and the server configuration
//!   (`mnemo nats init`).
//! - [`accounts`]: [`Accounts`], one account per user with a scoped signing key, device
//!   credentials and their revocation.
//! - [`gateway`]: the device subjects `mnemo.ingest` and `mnemo.read` (request/reply, with
//!   the NATS services error shape).
//! - [`error`]: the error enum, [`NatsAuthError`].
//!
//! The claim facts this relies on are in `docs/nats.md`.

pub mod accounts;
pub mod claims;
pub mod error;
pub mod gateway;
pub mod operator;

pub use accounts::{Accounts, UserAccount, device_creds, push_account, user_account_jwt};
pub use error::NatsAuthError;
pub use gateway::serve_devices;
pub use operator::{OperatorSetup, write_private};
