//! A JetStream cluster of `nats-server` processes on loopback, routed to each other.

use crate::error::Result;
use crate::nats::{NatsOptions, NatsServer};
use crate::port::free_port;

/// A running cluster; each node can be killed and restarted on its own.
pub struct NatsCluster {
    /// The nodes, in start order.
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `n` nodes (3 for R3 streams) in cluster `mnemo`, each with its own store dir.
    pub fn start(n: usize) -> Result<Self> {
        Self::start_with(n, NatsOptions::default())
    }

    /// Starts `n` nodes with `opts` (e.g. fsync per write) on every node.
    pub fn start_with(n: usize, opts: NatsOptions) -> Result<Self> {
        let route_ports = (0..n).map(|_| free_port()).collect::<Result<Vec<u16>>>()?;
        let routes = route_ports
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(", ");
        let nodes = route_ports
            .iter()
            .map(|p| {
                NatsServer::start_with(NatsOptions {
                    extra_config: format!(
                        "{}\ncluster {{\n  name: mnemo\n  listen: 127.0.0.1:{p}\n  routes: [{routes}]\n}}\n",
                        opts.extra_config
                    ),
                    ..opts.clone()
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { nodes })
    }

    /// Every node's client URL.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url()).collect()
    }
}
