//! # mnemo-api
//!
//! The `mnemo` server's library: the REST API ([`app`]), its authentication ([`auth`]) and
//! errors ([`problem`]), custody exports ([`export`]), the OpenAPI document ([`openapi`]),
//! health and metrics endpoints ([`health`]), NATS accounts and device credentials
//! ([`natsauth`]). The binary (`src/main.rs`) wires it to the
//! command line.

pub mod app;
pub mod auth;
pub mod export;
pub mod health;
pub mod natsauth;
pub mod openapi;
pub mod problem;
