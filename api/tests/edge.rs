//! Devices at the hub, with real nats-server 2.15.1 and the Python reference device client
//! (nats-py), the JavaScript NATS client in Node.js and in Chromium:
//! - JetStream publishers on `mnemo.capture` get the ingest stream's PubAck; three capture
//!   streams of one user keep their own order; a retry appends nothing; two users' same
//!   `Nats-Msg-Id` both land; each bad input is refused in words and writes nothing;
//! - browsers and Node.js capture over WebSocket; a 20 MB recording arrives whole.
//!
//! The leaf node that captures offline, with `mnemo-edge`, is tested in `edge/tests/leaf.rs`.

mod support;

use async_nats::ConnectOptions;
use mnemo_core::names::INGEST_STREAM;
use mnemo_core::{SigningKey, UserId};
use mnemo_testkit::free_port;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::devices::*;
use support::{Rest, WINDOW, hub};

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
    // Each answered device request is timed, by what was asked and its outcome: the
    // accepted upload's chunks and the refused ones are both there.
    let mut reg = prometheus_client::registry::Registry::with_prefix("mnemo");
    reg.register(
        "nats_request_duration_seconds",
        "device requests",
        mnemo_gateway::metrics::durations().clone(),
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    for series in [
        r#"mnemo_nats_request_duration_seconds_count{request="upload",outcome="ok"}"#,
        r#"mnemo_nats_request_duration_seconds_count{request="upload",outcome="4xx"}"#,
    ] {
        let count: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix(series))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .trim()
            .parse()
            .unwrap();
        assert!(count > 0, "{series} {count}");
    }
}
