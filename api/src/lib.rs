//! # mnemo-api
//!
//! The `mnemo` server's library: custody exports ([`export`]) and the health endpoints.
//! The binary (`src/main.rs`) wires it to the command line.

pub mod export;
pub mod health;
