//! What the device tests share: the Python reference device, a user with device creds and
//! a device key in its chain, and waits on chains and streams.

use async_nats::ConnectOptions;
use mnemo_core::{ChainVerifier, EventBody, KeyRole, PublicKey, Seq, SigningKey, UserId};
use serde_json::Value;
use std::time::{Duration, Instant};

use super::Hub;

/// Runs the device script; its one line of JSON.
pub fn device(args: &[&str]) -> Value {
    let python = std::env::var("MNEMO_PYTHON").expect("MNEMO_PYTHON (scripts/setup.sh)");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../api/tests/edge/device.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "device {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    })
}

/// A user with NATS device creds (written to a file) and a device signing key in the chain.
pub async fn user_with_device(h: &Hub, name: &str, seed: [u8; 32]) -> (UserId, std::path::PathBuf) {
    let u = UserId::new(name).unwrap();
    h.ledger.create_user(&u).await.unwrap();
    h.accounts.create(&u).await.unwrap();
    let key = SigningKey::from_bytes(&seed);
    h.ledger
        .append_event(
            &u,
            EventBody::KeyAdded {
                key: PublicKey(key.verifying_key()),
                role: KeyRole::Device,
            },
            None,
        )
        .await
        .unwrap();
    let (_, creds) = h.accounts.issue_device(&u, name, 3600).await.unwrap();
    let f = h.server.dir().join(format!("{name}.creds"));
    std::fs::write(&f, creds).unwrap();
    (u, f)
}

/// Waits until `user`'s chain has `len` events.
pub async fn chain_len(h: &Hub, user: &UserId, len: u64, within: Duration) {
    let t = Instant::now();
    loop {
        let have = h.ledger.head(user).await.unwrap().map_or(0, |t| t.len);
        if have == len {
            return;
        }
        assert!(
            have < len,
            "{user}'s chain has {have} events, more than {len}"
        );
        assert!(
            t.elapsed() < within,
            "{user}'s chain has {have} events, not {len}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The capture ids of a chain, in chain order, and the chain verified.
pub async fn captures(h: &Hub, user: &UserId) -> Vec<(String, u64)> {
    let events = h.ledger.events(user, Seq::FIRST, 100_000).await.unwrap();
    let mut v = ChainVerifier::new(user.clone());
    let mut out = Vec::new();
    for e in &events {
        v.push(&e.event, e.hash).unwrap();
        if let Some(c) = e.event.body.capture() {
            out.push((c.stream.clone(), c.counter));
        }
    }
    v.finish().unwrap();
    out
}

/// Waits until the work-queue stream `name` holds nothing.
pub async fn drained(client: &async_nats::Client, name: &str, within: Duration, what: &str) {
    let js = async_nats::jetstream::new(client.clone());
    let t = Instant::now();
    loop {
        let mut s = js.get_stream(name).await.unwrap();
        if s.info().await.unwrap().state.messages == 0 {
            return;
        }
        assert!(t.elapsed() < within, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn rejects(url: &str, creds: &std::path::Path) -> Vec<Value> {
    let c = ConnectOptions::with_credentials_file(creds)
        .await
        .unwrap()
        .connect(url)
        .await
        .unwrap();
    let r = c
        .request("mnemo.read", br#"{"rejects": true}"#.to_vec().into())
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&r.payload).unwrap();
    v["rejects"].as_array().cloned().unwrap_or_default()
}
