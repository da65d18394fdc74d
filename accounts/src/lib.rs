//! # mnemo-accounts
//!
//! Every user is a NATS account (decentralized JWT auth, operator mode), and so is every
//! processor. This crate administers them; it serves no request of its own.
//!
//! - [`claims`]: the JWT claims (operator, account, user) as typed structs, and signing.
//! - [`operator`]: [`OperatorSetup`], the operator (with a signing key), the system account
//!   and the mnemo service account, their credentials and the server configuration
//!   (`mnemo nats init`).
//! - [`accounts`]: [`Accounts`], one account per user with a scoped signing key, device
//!   credentials and their revocation.
//! - [`processors`]: one account per processor, with imports both ways and its
//!   credentials and revocation.
//! - [`error`]: the error enum, [`NatsAuthError`], and how it is answered as a problem.
//!
//! The claim facts this relies on are in `docs/nats.md`.

pub mod accounts;
pub mod claims;
pub mod error;
pub mod operator;
pub mod processors;

pub use accounts::{Accounts, UserAccount, device_creds, push_account, user_account_jwt};
pub use error::NatsAuthError;
pub use operator::{OperatorSetup, write_private};
