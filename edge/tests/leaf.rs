//! A device's leaf node captures offline (`mnemo-edge init`, `mnemo-edge forward`), with
//! real nats-server 2.15.1 processes (hub and leaf) and the Python reference device client
//! (nats-py): the leaf captures 300 memories while cut off from the hub (relay killed, then
//! frozen), is rebooted offline, and syncs when the link is back: every capture is in the
//! chain once; a full replay after the duplicate windows adds nothing; a capture the hub
//! refuses is reported on the leaf's rejects stream.

// The hub and the device helpers are the API tests' own (api/tests/support).
#[path = "../../api/tests/support/mod.rs"]
mod support;

use async_nats::ConnectOptions;
use mnemo_core::names::INGEST_STREAM;
use mnemo_core::{EventBody, SigningKey};
use mnemo_edge::OUTBOX_STREAM;
use mnemo_testkit::free_port;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};
use support::devices::*;
use support::{WINDOW, hub};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TCP relay between the leaf and the hub's leafnode port that can be cut (connections
/// dropped, new ones refused) and frozen (connections accepted, nothing forwarded).
struct Relay {
    port: u16,
    state: Arc<AtomicU8>,
}

const OPEN: u8 = 0;
const CUT: u8 = 1;
const FROZEN: u8 = 2;

impl Relay {
    async fn start(to: u16) -> Self {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let state = Arc::new(AtomicU8::new(OPEN));
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut a, _)) = l.accept().await else {
                    return;
                };
                if st.load(Ordering::SeqCst) == CUT {
                    drop(a);
                    continue;
                }
                let st = st.clone();
                tokio::spawn(async move {
                    let Ok(mut b) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await else {
                        return;
                    };
                    let (mut ar, mut aw) = a.split();
                    let (mut br, mut bw) = b.split();
                    let pump =
                        async |r: &mut tokio::net::tcp::ReadHalf<'_>,
                               w: &mut tokio::net::tcp::WriteHalf<'_>| {
                            let mut buf = vec![0u8; 64 * 1024];
                            loop {
                                let n = match r.read(&mut buf).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => n,
                                };
                                // Frozen: hold the bytes until cut (the link is a black hole).
                                while st.load(Ordering::SeqCst) == FROZEN {
                                    tokio::time::sleep(Duration::from_millis(20)).await;
                                }
                                if st.load(Ordering::SeqCst) == CUT
                                    || w.write_all(&buf[..n]).await.is_err()
                                {
                                    return;
                                }
                            }
                        };
                    let cut = async {
                        while st.load(Ordering::SeqCst) != CUT {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    };
                    tokio::select! {
                        _ = pump(&mut ar, &mut bw) => {}
                        _ = pump(&mut br, &mut aw) => {}
                        _ = cut => {}
                    }
                });
            }
        });
        Self { port, state }
    }

    fn set(&self, s: u8) {
        self.state.store(s, Ordering::SeqCst);
    }
}

/// The device box: its leaf node (`mnemo edge init`'s config) and the forwarder.
struct EdgeBox {
    dir: std::path::PathBuf,
    port: u16,
    leaf: Option<std::process::Child>,
    forwarder: Option<std::process::Child>,
}

impl EdgeBox {
    fn boot(&mut self) {
        let log = std::fs::File::create(self.dir.join("leaf.log")).unwrap();
        self.leaf = Some(
            std::process::Command::new(mnemo_testkit::nats_server_binary())
                .arg("-c")
                .arg(self.dir.join("leaf.conf"))
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "the leaf did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::File::create(self.dir.join("forwarder.log")).unwrap();
        self.forwarder = Some(
            std::process::Command::new(env!("CARGO_BIN_EXE_mnemo-edge"))
                .args(["forward", "--nats"])
                .arg(format!("nats://127.0.0.1:{}", self.port))
                .args(["--duplicate-window-ms", "1000"])
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    /// Power off: both processes killed at once.
    fn crash(&mut self) {
        for c in [self.forwarder.take(), self.leaf.take()]
            .into_iter()
            .flatten()
        {
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for EdgeBox {
    fn drop(&mut self) {
        self.crash();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_captures_offline_survives_a_reboot_and_syncs_every_capture_once() {
    let h = hub().await;
    let seed = [31u8; 32];
    let (carol, creds) = user_with_device(&h, "carol", seed).await;
    let relay = Relay::start(h.leaf_port).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let init = std::process::Command::new(env!("CARGO_BIN_EXE_mnemo-edge"))
        .args(["init", "--dir"])
        .arg(dir.path())
        .arg("--hub")
        .arg(format!("nats-leaf://127.0.0.1:{}", relay.port))
        .arg("--creds")
        .arg(&creds)
        .args(["--port", &port.to_string()])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    // The leaf connects to the hub URL given and no other, and its outbox exists before
    // the forwarder ever ran (a capture app can publish from the first boot).
    let conf = std::fs::read_to_string(dir.path().join("leaf.conf")).unwrap();
    assert!(conf.contains("ignore_discovered_servers: true"), "{conf}");
    let outbox_made = std::fs::read_dir(dir.path().join("store/jetstream"))
        .unwrap()
        .flatten()
        .any(|account| account.path().join("streams/MNEMO-OUTBOX").is_dir());
    assert!(outbox_made, "edge init did not create the outbox");
    let mut edge = EdgeBox {
        dir: dir.path().canonicalize().unwrap(),
        port,
        leaf: None,
        forwarder: None,
    };
    edge.boot();
    let local = format!("nats://127.0.0.1:{port}");
    let s = hex::encode(seed);
    let outbox = |n: u64, first: u64| {
        device(&[
            "outbox",
            &local,
            "-",
            "carol",
            &s,
            &n.to_string(),
            &first.to_string(),
        ])
    };
    // Online: 20 captures through the leaf.
    assert_eq!(outbox(20, 1)["acked"], 20);
    chain_len(&h, &carol, 22, Duration::from_secs(60)).await;
    // Cut off (the relay killed, then frozen), 300 captures offline, then a reboot.
    relay.set(CUT);
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.set(FROZEN);
    assert_eq!(outbox(150, 21)["acked"], 150);
    edge.crash();
    edge.boot();
    assert_eq!(outbox(150, 171)["acked"], 150);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        h.ledger.head(&carol).await.unwrap().unwrap().len,
        22,
        "nothing reached the hub while cut off"
    );
    // The link comes back: every capture lands once, in order.
    relay.set(CUT);
    tokio::time::sleep(Duration::from_millis(200)).await;
    relay.set(OPEN);
    chain_len(&h, &carol, 322, Duration::from_secs(120)).await;
    let ids = captures(&h, &carol).await;
    let counters: Vec<u64> = ids.iter().map(|(_, c)| *c).collect();
    assert_eq!(counters, (1..=320).collect::<Vec<_>>());
    // The device reads its receipts back through its own leaf: each capture of stream voice
    // with its event and seal, verifiable on the device.
    let local_client = ConnectOptions::new().connect(local.as_str()).await.unwrap();
    let m = local_client
        .request(
            "mnemo.read",
            json!({ "stream": "voice", "limit": 1000 })
                .to_string()
                .into(),
        )
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&m.payload).unwrap();
    let read_back: Vec<u64> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["capture"]["counter"].as_u64().unwrap())
        .collect();
    assert_eq!(
        read_back,
        (1..=320).collect::<Vec<_>>(),
        "read back through the leaf"
    );
    // Past both duplicate windows, a full replay of every capture adds nothing.
    tokio::time::sleep(WINDOW * 2).await;
    assert_eq!(outbox(320, 1)["acked"], 320);
    let leaf_client = ConnectOptions::new().connect(local.as_str()).await.unwrap();
    let within = Duration::from_secs(120);
    drained(
        &leaf_client,
        OUTBOX_STREAM,
        within,
        "the replay was not forwarded",
    )
    .await;
    // The hub's queue is drained too.
    drained(
        &h.service,
        INGEST_STREAM,
        within,
        "the hub did not drain the replay",
    )
    .await;
    assert_eq!(h.ledger.head(&carol).await.unwrap().unwrap().len, 322);
    assert_eq!(captures(&h, &carol).await.len(), 320);

    // Refusals reach the device on its leaf (MNEMO-REJECTED), with the capture's id and
    // the problem: one the leaf refuses (not a JSON object), one the hub refuses (a text
    // that is not a string). Neither stays in the outbox, and the chain is unchanged.
    let leaf_js = async_nats::jetstream::new(leaf_client.clone());
    for (id, body) in [("bad-leaf", "not json"), ("bad-hub", r#"{"text": 5}"#)] {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id);
        leaf_js
            .publish_with_headers(
                "mnemo.outbox.voice",
                headers,
                body.as_bytes().to_vec().into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    drained(
        &leaf_client,
        OUTBOX_STREAM,
        within,
        "the refused captures stayed in the outbox",
    )
    .await;
    let mut rejected = leaf_js
        .get_stream(mnemo_edge::REJECTED_STREAM)
        .await
        .unwrap();
    let n = rejected.info().await.unwrap().state.messages;
    assert_eq!(n, 2, "both refusals are reported on the leaf");
    let mut reported = Vec::new();
    for seq in 1..=n {
        let m = rejected.get_raw_message(seq).await.unwrap();
        assert_eq!(m.subject.as_str(), "mnemo.rejected.voice");
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        assert!(v["problem"].is_object(), "{v}");
        reported.push(v["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(reported, ["bad-leaf", "bad-hub"]);
    assert_eq!(h.ledger.head(&carol).await.unwrap().unwrap().len, 322);

    // The device's own creds audit the chain through mnemo.read: valid. The same bundle
    // with capture voice/320 planted a second time (a new memory id, properly sealed) is
    // refused by mnemo-audit's verifier as duplicate_capture.
    let device_client = ConnectOptions::with_credentials_file(&creds)
        .await
        .unwrap()
        .connect(h.server.url())
        .await
        .unwrap();
    let (tx, rx) = std::sync::mpsc::sync_channel(100_000);
    mnemo_audit::online::send_items_via_read(
        device_client,
        carol.clone(),
        mnemo_core::TimestampMs(0),
        tx,
    )
    .await;
    let items: Vec<_> = rx.into_iter().map(Result::unwrap).collect();
    let audit = |items: Vec<mnemo_core::custody::BundleItem>| {
        mnemo_audit::verify_items(items.into_iter().map(Ok), &mnemo_audit::Options::default())
            .unwrap()
    };
    let outcome = audit(items.clone());
    assert!(outcome.valid(), "{:?}", outcome.failure);
    assert_eq!(outcome.summary.events, 322);
    use mnemo_core::custody::BundleItem;
    let events: Vec<mnemo_core::Event> = items
        .iter()
        .filter_map(|i| match i {
            BundleItem::Event { wire } => Some(mnemo_core::Event::from_wire(&wire.0).unwrap().0),
            _ => None,
        })
        .collect();
    let last = events.last().unwrap();
    let mut planted = items
        .iter()
        .filter(|i| !matches!(i, BundleItem::End { .. }))
        .cloned()
        .collect::<Vec<_>>();
    let head = mnemo_core::Head {
        user: carol.clone(),
        len: last.seq.0,
        hash: last.hash(),
    };
    let EventBody::MemoryIngested { capture, .. } = &last.body else {
        panic!("the last event is a capture")
    };
    let (u, hash) = head.next_unsigned(
        mnemo_core::FORMAT_V2,
        last.signer,
        last.timestamp,
        EventBody::MemoryIngested {
            memory: mnemo_core::MemoryId([0xdd; 16]),
            capture: capture.clone(),
        },
        last.payload,
        last.origin,
    );
    let doubled = u.sign(&SigningKey::from_bytes(&[6; 32]));
    planted.push(BundleItem::Event {
        wire: mnemo_core::custody::HexBytes(doubled.to_wire()),
    });
    planted.push(BundleItem::End {
        events: 323,
        head: hash,
    });
    let outcome = audit(planted);
    let f = outcome.failure.expect("a doubled capture is refused");
    assert_eq!(
        (f.code.as_str(), f.seq),
        ("duplicate_capture", Some(323)),
        "{f:?}"
    );
}
