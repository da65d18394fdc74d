//! The `mnemo` binary's commands, one file each; [`Config`] is what they share.

pub(crate) mod anchor;
pub(crate) mod config;
pub(crate) mod dev;
pub(crate) mod dev_workers;
pub(crate) mod nats;
pub(crate) mod processors;
pub(crate) mod projections;
pub(crate) mod serve;
pub(crate) mod tokens;
pub(crate) mod users;

pub(crate) use config::{Config, server_addrs, views};
pub(crate) use serve::JwtArgs;
