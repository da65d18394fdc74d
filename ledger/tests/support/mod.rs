//! What the ledger's test files share: a ledger per layout on a real nats-server, users,
//! notes, and a check that receipts are in a verifying chain.
#![allow(dead_code)]

use bytes::Bytes;
use mnemo_core::{Seq, SigningKey, UserId};
use mnemo_ledger::{Layout, Ledger, LedgerConfig, NewMemory, Receipt, SecretKey};
use mnemo_testkit::NatsServer;
use std::collections::HashSet;

pub fn cfg(layout: Layout, key_seed: u8) -> LedgerConfig {
    let mut c = LedgerConfig::new(
        SecretKey::from_bytes([9; 32]),
        SigningKey::from_bytes(&[key_seed; 32]),
    );
    c.layout = layout;
    c
}

pub async fn connect(server: &NatsServer, c: LedgerConfig) -> Ledger {
    let client = async_nats::connect(server.url()).await.expect("connect");
    Ledger::connect(client, c).await.expect("ledger")
}

/// A server and a ledger that keeps content over 1 KiB in the object store.
pub async fn objects_over_1k(layout: Layout) -> (NatsServer, Ledger) {
    let server = NatsServer::start();
    let mut c = cfg(layout, 1);
    c.max_inline = 1024;
    let l = connect(&server, c).await;
    (server, l)
}

pub fn user(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

pub fn note(text: &str) -> NewMemory {
    NewMemory {
        kind: "note".into(),
        tags: vec!["t".into()],
        content_type: "text/plain".into(),
        content: Bytes::copy_from_slice(text.as_bytes()),
        ..Default::default()
    }
}

pub async fn assert_chain(l: &Ledger, u: &UserId, receipts: &[Receipt]) {
    let sum = l.verify_chain(u).await.expect("chain verifies");
    let events = l.events(u, Seq::FIRST, usize::MAX).await.unwrap();
    let in_chain: HashSet<_> = events.iter().map(|e| (e.event.seq, e.hash)).collect();
    assert_eq!(in_chain.len(), events.len());
    for r in receipts {
        assert!(
            in_chain.contains(&(r.seq, r.hash)),
            "receipt {r:?} missing from the chain"
        );
    }
    assert_eq!(sum.checkpoint.unwrap().seq.0, events.len() as u64);
}

/// A stream of what arrives on `rx`.
pub fn tokio_stream_from(
    rx: tokio::sync::mpsc::UnboundedReceiver<std::io::Result<Bytes>>,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + Unpin {
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}
