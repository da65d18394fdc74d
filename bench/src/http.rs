//! `mnemo-bench http`: memories ingested over the REST API (axum, JSON, JWT, one keep-alive
//! connection per client task) against direct ledger appends of the same memories with the
//! same concurrency and users, in one process against one freshly spawned nats-server. The
//! load generator (one keep-alive connection per client; pre-built requests and httparse by
//! default, like wrk, or hyper's client) runs in the same process, so its CPU counts against
//! the HTTP figure on this 2-core machine.

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use mnemo_api::auth::Auth;
use mnemo_api::http::{Api, ApiConfig, ApiStats};
use mnemo_core::{SigningKey, UserId};
use mnemo_ledger::{Layout, Ledger, LedgerConfig, NewMemory, SecretKey};
use mnemo_testkit::{NatsServer, PgServer};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::measure::median;
use crate::measure::{cpu_now, cpu_per_op, human};

/// Options of `mnemo-bench http`.
#[derive(clap::Args)]
pub struct Args {
    /// Memories per measurement.
    #[arg(long, default_value_t = 10_000)]
    events: usize,
    /// Users.
    #[arg(long, default_value_t = 200)]
    users: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Rounds (median printed; latencies pooled).
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Text bytes per memory.
    #[arg(long, default_value_t = 512)]
    payload: usize,
    /// Load generator: `raw` writes pre-built requests and parses answers with httparse
    /// (like wrk); `hyper` uses hyper's client connection.
    #[arg(long, value_enum, default_value_t = Client::Raw)]
    client: Client,
    /// Run one path only (for profiling one of them with perf); no ratio is printed.
    #[arg(long, value_enum)]
    only: Option<Path>,
}

/// One of the two measured paths.
#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum Path {
    Direct,
    Http,
}

/// The load generator's HTTP client.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Client {
    /// Pre-built request bytes, answers parsed with httparse.
    Raw,
    /// hyper's HTTP/1.1 client connection.
    Hyper,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run_async(a))
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn run_async(a: &Args) -> anyhow::Result<()> {
    let nats = NatsServer::start();
    let pg = PgServer::start();
    pg.create_database("mnemo");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .connect(&pg.url("mnemo"))
        .await?;
    mnemo_projections::migrate(&pool).await?;
    let client = async_nats::connect(nats.url()).await?;
    let mut cfg = LedgerConfig::new(SecretKey::random(), SigningKey::from_bytes(&[3; 32]));
    cfg.layout = Layout::PerUser;
    let ledger = Ledger::connect(client.clone(), cfg).await?;
    let users: Vec<UserId> = (0..a.users)
        .map(|i| UserId::new(format!("u{i}")).expect("valid"))
        .collect();
    for u in &users {
        ledger.create_user(u).await?;
    }
    let auth = Auth::new(&SigningKey::from_bytes(&[5; 32]), "mnemo", "mnemo-api");
    let tokens: Arc<Vec<hyper::header::HeaderValue>> = Arc::new(
        users
            .iter()
            .map(|u| {
                format!("Bearer {}", auth.issue(u.as_str(), false, 3600))
                    .parse()
                    .expect("header value")
            })
            .collect(),
    );
    let api = Arc::new(Api {
        ledger: ledger.clone(),
        views: mnemo_projections::Views::from_pool(pool),
        js: async_nats::jetstream::new(client.clone()),
        auth,
        cfg: ApiConfig::default(),
        stats: Arc::new(ApiStats::default()),
        accounts: None,
        processing: mnemo_processing::Processing::open(
            ledger.clone(),
            async_nats::jetstream::new(client),
        )
        .await?,
        sessions: Default::default(),
    });
    let listener = mnemo_api::http::bind("127.0.0.1:0".parse()?)?;
    let addr = listener.local_addr()?;
    let url = "/v1/memories".to_owned();
    let app = mnemo_api::http::app(api, axum::Router::new());
    // The server loop `mnemo serve` runs.
    tokio::spawn(mnemo_api::http::serve(
        listener,
        app,
        std::future::pending(),
    ));
    let text = "m".repeat(a.payload);
    let body = Bytes::from(serde_json::to_vec(
        &serde_json::json!({ "kind": "note", "text": text, "tags": ["bench"] }),
    )?);
    // Every user's request, whole, for the raw client.
    let requests: Arc<Vec<Bytes>> = Arc::new(
        tokens
            .iter()
            .map(|token| {
                let mut r = format!(
                    "POST {url} HTTP/1.1\r\nhost: {addr}\r\nauthorization: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    token.to_str().expect("ascii"),
                    body.len()
                )
                .into_bytes();
                r.extend_from_slice(&body);
                Bytes::from(r)
            })
            .collect(),
    );
    println!(
        "mnemo-bench http: {} memories x {} rounds, {} users, {} concurrent clients, {} B text, {} client, nats-server {}",
        a.events,
        a.rounds,
        a.users,
        a.concurrency,
        a.payload,
        match a.client {
            Client::Raw => "raw (pre-built requests, httparse)",
            Client::Hyper => "hyper",
        },
        mnemo_testkit::nats_server_binary().display()
    );
    let (mut direct_rates, mut http_rates) = (Vec::new(), Vec::new());
    let (mut direct_lat, mut http_lat) = (Vec::new(), Vec::new());
    let server_pid = nats.pid().expect("running");
    for _ in 0..a.rounds {
        let c0 = cpu_now(server_pid);
        // direct ledger appends
        let t = Instant::now();
        let mut tasks = FuturesUnordered::new();
        for c in 0..a.concurrency {
            if a.only == Some(Path::Http) {
                break;
            }
            let (ledger, users, text) = (ledger.clone(), users.clone(), text.clone());
            let n = a.events / a.concurrency + usize::from(c < a.events % a.concurrency);
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(n);
                for i in 0..n {
                    let u = &users[(c + i * STRIDE) % users.len()];
                    let s = Instant::now();
                    ledger
                        .append(
                            u,
                            NewMemory {
                                kind: "note".into(),
                                tags: vec!["bench".into()],
                                content_type: "text/plain; charset=utf-8".into(),
                                content: Bytes::from(text.clone()),
                                ..Default::default()
                            },
                        )
                        .await
                        .expect("append");
                    lat.push(s.elapsed());
                }
                lat
            }));
        }
        while let Some(l) = tasks.next().await {
            direct_lat.extend(l?);
        }
        direct_rates.push(a.events as f64 / t.elapsed().as_secs_f64());

        let c1 = cpu_now(server_pid);
        // the same over HTTP
        let t = Instant::now();
        let mut tasks = FuturesUnordered::new();
        for c in 0..a.concurrency {
            if a.only == Some(Path::Direct) {
                break;
            }
            let (requests, tokens, url, body) =
                (requests.clone(), tokens.clone(), url.clone(), body.clone());
            let n = a.events / a.concurrency + usize::from(c < a.events % a.concurrency);
            let client = a.client;
            tasks.push(tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
                stream.set_nodelay(true).expect("nodelay");
                match client {
                    Client::Raw => raw_client(stream, &requests, c, n).await,
                    Client::Hyper => hyper_client(stream, addr, &tokens, &url, &body, c, n).await,
                }
            }));
        }
        while let Some(l) = tasks.next().await {
            http_lat.extend(l?);
        }
        http_rates.push(a.events as f64 / t.elapsed().as_secs_f64());
        let c2 = cpu_now(server_pid);
        let ([d0, d1], [h0, h1]) = (cpu_per_op(c0, c1, a.events), cpu_per_op(c1, c2, a.events));
        eprintln!(
            "    cpu µs/memory: direct: this process {d0:.1}, nats-server {d1:.1} | http: this process (server + load generator) {h0:.1}, nats-server {h1:.1}"
        );
    }
    if let Some(only) = a.only {
        let (rates, mut lat) = match only {
            Path::Direct => (direct_rates, direct_lat),
            Path::Http => (http_rates, http_lat),
        };
        lat.sort();
        println!(
            "{} only: {} memories/s, p50 {:.2} ms, p99 {:.2} ms (no ratio: one path)",
            match only {
                Path::Direct => "direct",
                Path::Http => "http",
            },
            human(median(rates)),
            pct(&lat, 0.5),
            pct(&lat, 0.99)
        );
        return Ok(());
    }
    direct_lat.sort();
    http_lat.sort();
    // Each round measures both back to back: the median of the per-round ratios is robust
    // to the machine drifting between rounds.
    let ratio = median(
        direct_rates
            .iter()
            .zip(&http_rates)
            .map(|(d, h)| h / d)
            .collect(),
    );
    let (d, h) = (median(direct_rates), median(http_rates));
    println!("\n## Ingest over HTTP vs direct ledger appends\n");
    println!("| path | median rate | p50 | p99 | ratio |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    println!(
        "| direct `Ledger::append` (baseline) | {} memories/s | {:.2} ms | {:.2} ms | |",
        human(d),
        pct(&direct_lat, 0.5),
        pct(&direct_lat, 0.99)
    );
    println!(
        "| `POST /v1/memories` (JSON, JWT, keep-alive) | {} memories/s | {:.2} ms | {:.2} ms | {:.3} |",
        human(h),
        pct(&http_lat, 0.5),
        pct(&http_lat, 0.99),
        ratio
    );
    println!("\nratio {ratio:.3} (median of per-round ratios; target 0.7)");
    crate::measure::headline(
        "ingest over HTTP (POST /v1/memories)",
        format!(
            "{} memories/s, p99 {:.1} ms",
            human(h),
            pct(&http_lat, 0.99)
        ),
        format!("direct ledger appends: {}/s", human(d)),
        ratio,
        ">= 0.7",
    );
    Ok(())
}

/// One keep-alive connection sending `n` pre-built requests one after the other (the way
/// wrk does it: the generator shares the 2 cores with the server, so it must be lean), each
/// answer read whole (`Content-Length`) and checked to be `201 Created`.
async fn raw_client(
    mut stream: tokio::net::TcpStream,
    requests: &[Bytes],
    c: usize,
    n: usize,
) -> Vec<Duration> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut lat = Vec::with_capacity(n);
    let mut buf = Vec::with_capacity(4096);
    for i in 0..n {
        let req = &requests[(c + i * STRIDE) % requests.len()];
        let s = Instant::now();
        stream.write_all(req).await.expect("send");
        buf.clear();
        loop {
            if buf.len() == buf.capacity() {
                buf.reserve(4096);
            }
            let got = stream.read_buf(&mut buf).await.expect("receive");
            assert!(got > 0, "the server closed the connection");
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut answer = httparse::Response::new(&mut headers);
            let httparse::Status::Complete(head) = answer.parse(&buf).expect("an HTTP answer")
            else {
                continue;
            };
            assert_eq!(answer.code, Some(201), "{}", String::from_utf8_lossy(&buf));
            let length: usize = answer
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                .expect("content-length");
            if buf.len() >= head + length {
                assert_eq!(buf.len(), head + length, "one answer per request");
                break;
            }
        }
        lat.push(s.elapsed());
    }
    lat
}

/// One keep-alive connection through hyper's client, `n` requests one after the other.
async fn hyper_client(
    stream: tokio::net::TcpStream,
    addr: std::net::SocketAddr,
    tokens: &[hyper::header::HeaderValue],
    url: &str,
    body: &Bytes,
    c: usize,
    n: usize,
) -> Vec<Duration> {
    let host: hyper::header::HeaderValue = addr.to_string().parse().expect("header value");
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let token = &tokens[(c + i * STRIDE) % tokens.len()];
        let req = hyper::Request::post(url)
            .header("host", host.clone())
            .header("authorization", token.clone())
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(body.clone()))
            .expect("request");
        let s = Instant::now();
        send.ready().await.expect("connection ready");
        let r = send.send_request(req).await.expect("response");
        assert_eq!(r.status(), 201);
        http_body_util::BodyExt::collect(r.into_body())
            .await
            .expect("body");
        lat.push(s.elapsed());
    }
    lat
}

/// Stride between a client's successive users, so that concurrent clients rarely share one.
const STRIDE: usize = 7;
