//! `mnemo-bench forward`: the edge forwarder (`mnemo_edge::forward`) moving an
//! outbox of captures taken offline to the hub, through a link with an added round trip
//! (a delay proxy between the leaf node and the hub's leafnode port). One operator-mode hub
//! with the device services, one leaf node per measurement (`mnemo-edge init`'s
//! configuration, the device's creds), and a fresh user each. Printed: captures/s from the
//! forwarder's start to the last capture in the chain, with the round trip and window, and
//! a check that every capture is in the chain once and in order. The baseline is the same
//! outbox on loopback, same run; the forwarder before this round kept one capture in flight
//! (`--window 1`), measured on a smaller outbox.

use mnemo_core::{EventBody, Seq, UserId};
use mnemo_edge::{self as edge, LeafSettings, OutboxConfig};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::device_hub::DeviceHub;

/// Options of `mnemo-bench forward`.
#[derive(clap::Args)]
pub struct Args {
    /// Captures in the outbox.
    #[arg(long, default_value_t = 10_000)]
    captures: usize,
    /// Round trip added by the link, ms.
    #[arg(long, default_value_t = 50)]
    rtt_ms: u64,
    /// The forwarder's window.
    #[arg(long, default_value_t = 128)]
    window: usize,
    /// Captures for the one-in-flight figure (slow: one round trip each).
    #[arg(long, default_value_t = 300)]
    single: usize,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run_async(a))
}

/// The hub, and the port its leaf nodes connect to.
struct Hub {
    hub: DeviceHub,
    leaf_port: u16,
}

async fn run_async(a: &Args) -> anyhow::Result<()> {
    let leaf_port = mnemo_testkit::free_port();
    let hub = Hub {
        hub: DeviceHub::start(
            &format!("leafnodes {{ listen: \"127.0.0.1:{leaf_port}\" }}"),
            Some("hub"),
        )
        .await?,
        leaf_port,
    };
    println!(
        "mnemo-bench forward: {} captures taken offline on a leaf node, then forwarded to the hub",
        a.captures
    );
    let base = one(&hub, "loopback", a.captures, 0, a.window).await?;
    let slow = one(&hub, "slow", a.captures, a.rtt_ms, a.window).await?;
    let single = one(&hub, "single", a.single, a.rtt_ms, 1).await?;
    println!("\n| link | window | captures | captures/s | ratio to loopback |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (what, w, n, r) in [
        ("loopback", a.window, a.captures, base),
        (
            &format!("{} ms added round trip", a.rtt_ms)[..],
            a.window,
            a.captures,
            slow,
        ),
        (
            &format!("{} ms added round trip", a.rtt_ms)[..],
            1,
            a.single,
            single,
        ),
    ] {
        println!("| {what} | {w} | {n} | {r:.0} | {:.3} |", r / base);
    }
    Ok(())
}

/// One outbox of `n` captures through a link with `rtt_ms` added; captures/s.
async fn one(hub: &Hub, name: &str, n: usize, rtt_ms: u64, window: usize) -> anyhow::Result<f64> {
    let user = UserId::new(format!("edge-{name}"))?;
    hub.hub.ledger.create_user(&user).await?;
    hub.hub.accounts.create(&user).await?;
    let (_, creds) = hub.hub.accounts.issue_device(&user, name, 3600).await?;
    let dir = tempfile::tempdir()?;
    let creds_path = dir.path().join("device.creds");
    std::fs::write(&creds_path, creds)?;
    let proxy = delay_proxy(hub.leaf_port, Duration::from_millis(rtt_ms / 2)).await?;
    let port = mnemo_testkit::free_port();
    std::fs::create_dir_all(dir.path().join("store"))?;
    std::fs::write(
        dir.path().join("leaf.conf"),
        edge::leaf_config(&LeafSettings {
            port,
            hub: &format!("nats-leaf://127.0.0.1:{proxy}"),
            creds: &creds_path,
            store: &dir.path().join("store"),
            domain: "leaf",
        }),
    )?;
    let mut leaf = std::process::Command::new(mnemo_testkit::nats_server_binary())
        .arg("-c")
        .arg(dir.path().join("leaf.conf"))
        .stderr(std::fs::File::create(dir.path().join("leaf.log"))?)
        .spawn()?;
    let url = format!("nats://127.0.0.1:{port}");
    let local = edge::connect_when_up(&url, Duration::from_secs(20))
        .await
        .map_err(|e| anyhow::anyhow!("the leaf did not start: {e}"))?;
    let js = async_nats::jetstream::new(local.clone());
    edge::open_outbox(&js, OutboxConfig::default()).await?;
    // Offline capture: the outbox fills before the forwarder runs, in counter order (each
    // publish sent before the next; the PubAcks awaited after).
    // (In slices: the JetStream context holds back publishes past its limit of acks in
    // flight until earlier ones are awaited.)
    for slice in (0..n).collect::<Vec<_>>().chunks(256) {
        let mut acks = Vec::with_capacity(slice.len());
        for &i in slice {
            let mut h = async_nats::HeaderMap::new();
            h.insert("Nats-Msg-Id", format!("c{i}").as_str());
            let body = serde_json::json!({ "text": format!("capture {i}"), "counter": i + 1 });
            acks.push(
                js.publish_with_headers("mnemo.outbox.voice", h, body.to_string().into())
                    .await?,
            );
        }
        for ack in acks {
            ack.await?;
        }
    }
    // Wait for the leaf's link to the hub.
    let t = Instant::now();
    while local.request("mnemo.read", "{}".into()).await.is_err() {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(30),
            "the leaf never reached the hub"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (stop, rx) = tokio::sync::watch::channel(false);
    let t = Instant::now();
    let fwd = tokio::spawn(edge::forward(
        local.clone(),
        OutboxConfig {
            window,
            ..Default::default()
        },
        rx,
    ));
    let want = n as u64 + 1;
    let mut said = Instant::now();
    loop {
        let len = hub.hub.ledger.head(&user).await?.map_or(0, |h| h.len);
        if len >= want {
            break;
        }
        if said.elapsed() > Duration::from_secs(10) {
            said = Instant::now();
            let left = js
                .get_stream(edge::OUTBOX_STREAM)
                .await?
                .info()
                .await?
                .state
                .messages;
            eprintln!("{name}: {len} of {want} events in the chain, {left} captures in the outbox");
        }
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(1200),
            "{len} of {want} events after 20 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    let _ = stop.send(true);
    let _ = fwd.await;
    // Every capture once, in order.
    let mut counters = Vec::with_capacity(n);
    let mut from = 2;
    loop {
        let page = hub.hub.ledger.events(&user, Seq(from), 1000).await?;
        if page.is_empty() {
            break;
        }
        from += page.len() as u64;
        for e in page {
            if let EventBody::MemoryIngested {
                capture: Some(c), ..
            } = &e.event.body
            {
                counters.push(c.counter);
            }
        }
    }
    let in_order = counters == (1..=n as u64).collect::<Vec<_>>();
    let rate = n as f64 / secs;
    println!(
        "{name}: {n} captures, {rtt_ms} ms added round trip, window {window}: {secs:.2} s, {rate:.0} captures/s; once each and in order: {in_order}"
    );
    if !in_order {
        let at = counters
            .iter()
            .enumerate()
            .position(|(i, c)| *c != i as u64 + 1)
            .unwrap_or(counters.len());
        anyhow::bail!(
            "the chain's capture counters are not 1..={n}: {} of them, from position {at}: {:?}",
            counters.len(),
            &counters[at.saturating_sub(2)..(at + 20).min(counters.len())]
        );
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &leaf.id().to_string()])
        .status();
    let _ = leaf.wait();
    Ok(rate)
}

/// A TCP proxy to `to` that holds each chunk `delay` in each direction (a round trip of
/// twice `delay`), in order; its port.
async fn delay_proxy(to: u16, delay: Duration) -> anyhow::Result<u16> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = l.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((a, _)) = l.accept().await {
            tokio::spawn(async move {
                let Ok(b) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await else {
                    return;
                };
                let _ = a.set_nodelay(true);
                let _ = b.set_nodelay(true);
                let (ar, aw) = a.into_split();
                let (br, bw) = b.into_split();
                tokio::join!(pipe(ar, bw, delay), pipe(br, aw, delay));
            });
        }
    });
    Ok(port)
}

async fn pipe(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((at, bytes)) = rx.recv().await {
            tokio::time::sleep_until(at.into()).await;
            if w.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}
