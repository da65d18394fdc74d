//! Devices at the edge, with real nats-server 2.15.1 processes (hub and leaf), the Python
//! reference device client (nats-py) and the `mnemo edge` commands:
//! - JetStream publishers on `mnemo.capture` get the ingest stream's PubAck; three capture
//!   streams of one user keep their own order; a retry appends nothing; two users' same
//!   `Nats-Msg-Id` both land; each bad input is refused in words and writes nothing;
//! - a leaf with device creds captures 300 memories while cut off from the hub (relay
//!   killed, then frozen), is rebooted offline, and syncs when the link is back: every
//!   capture is in the chain once; a full replay after the duplicate windows adds nothing.

mod support;

use async_nats::ConnectOptions;
use mnemo_api::nats::edge::OUTBOX_STREAM;
use mnemo_core::names::INGEST_STREAM;
use mnemo_core::{ChainVerifier, EventBody, KeyRole, PublicKey, Seq, SigningKey, UserId};
use mnemo_testkit::free_port;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};
use support::{Hub, Rest, WINDOW, hub};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Runs the device script; its one line of JSON.
fn device(args: &[&str]) -> Value {
    let python = std::env::var("MNEMO_PYTHON").expect("MNEMO_PYTHON (scripts/setup.sh)");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/edge/device.py");
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
async fn user_with_device(h: &Hub, name: &str, seed: [u8; 32]) -> (UserId, std::path::PathBuf) {
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
async fn chain_len(h: &Hub, user: &UserId, len: u64, within: Duration) {
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
async fn captures(h: &Hub, user: &UserId) -> Vec<(String, u64)> {
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
async fn drained(client: &async_nats::Client, name: &str, within: Duration, what: &str) {
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

async fn rejects(url: &str, creds: &std::path::Path) -> Vec<Value> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_captures_get_a_pubak_keep_their_streams_and_land_once() {
    let h = hub().await;
    let url = h.server.url();
    let seed = [21u8; 32];
    let (alice, a_creds) = user_with_device(&h, "alice", seed).await;
    let (bob, b_creds) = user_with_device(&h, "bob", [22; 32]).await;
    let custody = hex::encode(SigningKey::from_bytes(&[6; 32]).verifying_key().as_bytes());
    let r = device(&[
        "online",
        &url,
        a_creds.to_str().unwrap(),
        "alice",
        &hex::encode(seed),
        &custody,
    ]);
    println!("{r}");
    let acks = r["acks"].as_array().unwrap();
    assert_eq!(acks.len(), 15);
    assert!(
        acks.iter().all(|a| a[0] == "MNEMO-INGEST" && a[2] == false),
        "{r}"
    );
    assert_eq!(r["retry"], json!(["MNEMO-INGEST", true]), "{r}");
    assert_eq!(r["oversize"], 413, "{r}");
    assert_eq!(r["no_id"], 400, "{r}");
    assert_eq!(r["receipt_checked"], true, "{r}");
    // Each stream followed on its own over mnemo.read, in its own order (the drainer may
    // still be appending: what is there is a prefix).
    for s in ["voice", "web", "messages"] {
        let got: Vec<u64> = serde_json::from_value(r["follow"][s].clone()).unwrap();
        assert!([1, 2, 3, 4, 5].starts_with(&got), "{s}: {got:?}");
    }
    // Bob's capture with alice's message id lands in bob's chain.
    let b = device(&[
        "other",
        &url,
        b_creds.to_str().unwrap(),
        "bob",
        &hex::encode([22u8; 32]),
    ]);
    assert_eq!(b["ack"][1], false, "{b}");
    // Genesis, device key, 15 captures and the signed request: the retry, the reused id
    // and the forged signature wrote nothing.
    chain_len(&h, &alice, 18, Duration::from_secs(30)).await;
    chain_len(&h, &bob, 3, Duration::from_secs(30)).await;
    // Each stream followed on its own, once all is in: exactly its captures, in order.
    let follower = ConnectOptions::with_credentials_file(&a_creds)
        .await
        .unwrap()
        .connect(url.as_str())
        .await
        .unwrap();
    for s in ["voice", "web", "messages"] {
        let m = follower
            .request("mnemo.read", json!({ "stream": s }).to_string().into())
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        let got: Vec<u64> = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["capture"]["counter"].as_u64().unwrap())
            .collect();
        assert_eq!(got, [1, 2, 3, 4, 5], "following {s}: {v}");
        assert_eq!(v["next"], 19, "{v}");
    }
    let ids = captures(&h, &alice).await;
    assert!(ids.contains(&("notes".into(), 1)), "{ids:?}");
    for s in ["voice", "web", "messages"] {
        let counters: Vec<u64> = ids
            .iter()
            .filter(|(st, _)| st == s)
            .map(|(_, c)| *c)
            .collect();
        assert_eq!(counters, [1, 2, 3, 4, 5], "stream {s} in its own order");
    }
    // The refusals are kept, in words, where the device reads them.
    let t = Instant::now();
    let kept = loop {
        let kept = rejects(&url, &a_creds).await;
        if kept.len() >= 3 || t.elapsed() > Duration::from_secs(20) {
            break kept;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("{}", Value::Array(kept.clone()));
    let types: Vec<&str> = kept
        .iter()
        .map(|k| k["problem"]["type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert!(
        types.iter().any(|t| t.ends_with("/capture-id-reused")),
        "{types:?}"
    );
    assert!(
        kept.iter().any(|k| k["problem"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("capture signature does not verify"))),
        "{kept:?}"
    );
    assert!(
        kept.iter().any(|k| k["problem"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("without a reply subject"))),
        "{kept:?}"
    );
    assert_eq!(h.ledger.head(&alice).await.unwrap().unwrap().len, 18);
    assert!(rejects(&url, &b_creds).await.is_empty());
    // An unsigned capture named only by its Nats-Msg-Id is deduplicated for good too: past
    // the stream's duplicate window the retry is stored again, and appends nothing.
    tokio::time::sleep(WINDOW * 2).await;
    let again = device(&[
        "other",
        &url,
        b_creds.to_str().unwrap(),
        "bob",
        &hex::encode([22u8; 32]),
    ]);
    assert_eq!(
        again["ack"][1], false,
        "stored again after the window: {again}"
    );
    drained(
        &h.service,
        INGEST_STREAM,
        Duration::from_secs(30),
        "not drained",
    )
    .await;
    assert_eq!(h.ledger.head(&bob).await.unwrap().unwrap().len, 3);
    // A device that pipelines (8 in flight, on mnemo.capture and on mnemo.ingest) finds
    // each stream's captures in the chain in counter order.
    let p = device(&[
        "pipelined",
        &url,
        b_creds.to_str().unwrap(),
        "bob",
        &hex::encode([22u8; 32]),
    ]);
    for s in ["p1", "p2"] {
        let got: Vec<u64> = serde_json::from_value(p["order"][s].clone()).unwrap();
        let inversions = got.windows(2).filter(|w| w[0] > w[1]).count();
        assert_eq!((got.len(), inversions), (200, 0), "stream {s}: {got:?}");
    }
}

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
            std::process::Command::new(env!("CARGO_BIN_EXE_mnemo"))
                .args(["edge", "forward", "--nats"])
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
    let init = std::process::Command::new(env!("CARGO_BIN_EXE_mnemo"))
        .args(["edge", "init", "--dir"])
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
        .get_stream(mnemo_api::nats::edge::REJECTED_STREAM)
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

/// Runs a Node.js script; its last line of JSON.
fn node(args: &[&str]) -> Value {
    let out = std::process::Command::new("node")
        .arg("--experimental-websocket")
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "node {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_and_a_browser_capture_over_websocket_with_creds_from_an_api_token() {
    let h = hub().await;
    let tools = std::env::var("MNEMO_JS_TOOLS").expect("MNEMO_JS_TOOLS (scripts/setup.sh)");
    let here = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/edge");
    let tmp = tempfile::tempdir().unwrap();
    // The reference client, bundled for the browser and Node.js (esbuild).
    let bundle = tmp.path().join("capture.bundle.mjs");
    let built = std::process::Command::new(format!("{tools}/node_modules/.bin/esbuild"))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../clients/js/capture.mjs"
        ))
        .args([
            "--bundle",
            "--format=esm",
            "--platform=browser",
            "--log-level=warning",
        ])
        .arg(format!("--outfile={}", bundle.display()))
        .env("NODE_PATH", format!("{tools}/node_modules"))
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    // The REST API on a real port, with CORS for the page's origin.
    let page_port = free_port();
    let rest = Rest::start(&h, vec![format!("http://127.0.0.1:{page_port}")]).await;
    let (api, auth) = (rest.url.clone(), rest.auth.clone());
    let dana = UserId::new("dana").unwrap();
    h.ledger.create_user(&dana).await.unwrap();
    h.accounts.create(&dana).await.unwrap();
    let token = auth.issue("dana", false, 600);
    let ws = format!("ws://127.0.0.1:{}", h.ws_port);
    let check = |r: &Value, who: &str| {
        assert_eq!(r["ack"]["stream"], "MNEMO-INGEST", "{who}: {r}");
        assert_eq!(r["ack"]["duplicate"], false, "{who}: {r}");
        assert_eq!(r["retry"]["duplicate"], true, "{who}: {r}");
        assert_eq!(r["receipt"]["user"], "dana", "{who}: {r}");
        assert_eq!(r["receipt"]["custody"], true, "{who}: {r}");
        assert_eq!(r["expiresIn"], 900, "{who}: {r}");
    };
    let b = bundle.to_str().unwrap();
    let r = node(&[
        &format!("{here}/ws_node.mjs"),
        b,
        &api,
        &token,
        "dana",
        &ws,
        "node-1",
    ]);
    println!("node: {r}");
    check(&r, "node");
    let r = node(&[
        &format!("{here}/browser.mjs"),
        &format!("{tools}/node_modules/playwright-core"),
        b,
        &page_port.to_string(),
        &api,
        &token,
        "dana",
        &ws,
        "page-1",
    ]);
    println!("chromium: {r}");
    check(&r, "chromium");
    // Genesis, then from each client a capture on stream web (its retry appended nothing)
    // and a plain request.
    chain_len(&h, &dana, 5, Duration::from_secs(30)).await;
    let ids = captures(&h, &dana).await;
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.iter().all(|(s, _)| s == "web"), "{ids:?}");
    let _ = &h.setup;
}

/// A WAV file of `bytes` bytes: 16 kHz mono 16-bit PCM (a tone with noise).
fn wav(bytes: usize) -> Vec<u8> {
    let data = bytes - 44;
    let mut w = Vec::with_capacity(bytes);
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&((36 + data) as u32).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&16_000u32.to_le_bytes());
    w.extend_from_slice(&32_000u32.to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(data as u32).to_le_bytes());
    let mut x = 0x2545_f491_u32;
    for i in 0..data / 2 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let tone = ((i as f32 * 0.05).sin() * 8000.0) as i16;
        let s = tone.wrapping_add((x % 512) as i16 - 256);
        w.extend_from_slice(&s.to_le_bytes());
    }
    w.resize(bytes, 0);
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twenty_megabyte_recording_over_nats_arrives_whole_and_bad_uploads_write_nothing() {
    let h = hub().await;
    let rest = Rest::start(&h, vec![]).await;
    let seed = [41u8; 32];
    let (erin, creds) = user_with_device(&h, "erin", seed).await;
    let token = rest.auth.issue("erin", false, 600);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("recording.wav");
    std::fs::write(&file, wav(20_000_000)).unwrap();
    let r = device(&[
        "upload",
        &h.server.url(),
        creds.to_str().unwrap(),
        "erin",
        &hex::encode(seed),
        file.to_str().unwrap(),
        &rest.url,
        &token,
    ]);
    let answer = &r["nats"]["answer"];
    let hash = format!(
        "blake3:{}",
        blake3::hash(&std::fs::read(&file).unwrap()).to_hex()
    );
    assert_eq!(answer["content_hash"], hash.as_str(), "{r}");
    assert_eq!(answer["user"], "erin", "{r}");
    assert_eq!(r["downloaded_same"], true, "{r}");
    assert_eq!(
        r["out_of_order"],
        json!([409, "https://mnemo.dev/problems/chunk-out-of-order"]),
        "{r}"
    );
    assert_eq!(r["wrong_hash"][0], 400, "{r}");
    assert_eq!(
        r["oversize"],
        json!([413, "https://mnemo.dev/problems/too-large"]),
        "{r}"
    );
    // Genesis, device key, the recording over NATS (a capture on stream voice), the same
    // bytes over REST; the bad uploads wrote nothing.
    chain_len(&h, &erin, 4, Duration::from_secs(30)).await;
    let ids = captures(&h, &erin).await;
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(ids[0].0, "voice");
    let mb = r["bytes"].as_f64().unwrap() / 1e6;
    let (nats, rest_s) = (
        r["nats"]["seconds"].as_f64().unwrap(),
        r["rest"]["seconds"].as_f64().unwrap(),
    );
    // Printed for docs/BENCHMARKS.md, not asserted (the benchmark is `mnemo-bench`'s job).
    println!(
        "20 MB recording: NATS {:.1} MB/s, REST {:.1} MB/s, NATS/REST {:.2}",
        mb / nats,
        mb / rest_s,
        rest_s / nats
    );
}
