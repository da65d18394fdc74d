//! `mnemo-bench upload`: one large recording sent as a chunked upload over NATS (a device's
//! creds, `mnemo.ingest` with `Mnemo-Upload`, one chunk per request) against the same bytes
//! as one REST upload (`POST /v1/memories`, streamed), alternating, in one process against
//! one operator-mode nats-server. Both end in one memory in the object store.

use mnemo_api::auth::Auth;
use mnemo_api::http::{Api, ApiConfig, ApiStats};
use mnemo_core::{SigningKey, UserId};
use mnemo_testkit::PgServer;
use std::sync::Arc;
use std::time::Instant;

use crate::measure::{headline, median};

/// Options of `mnemo-bench upload`.
#[derive(clap::Args)]
pub struct Args {
    /// Bytes of the recording.
    #[arg(long, default_value_t = 20_000_000)]
    bytes: usize,
    /// Chunk size over NATS, bytes.
    #[arg(long, default_value_t = 1 << 20)]
    chunk: usize,
    /// Rounds of each (median printed).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run_async(a))
}

async fn run_async(a: &Args) -> anyhow::Result<()> {
    let hub = crate::device_hub::DeviceHub::start("", None).await?;
    let (ledger, accounts, js) = (hub.ledger.clone(), hub.accounts.clone(), hub.js.clone());
    let pg = PgServer::start();
    pg.create_database("mnemo");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .connect(&pg.url("mnemo"))
        .await?;
    mnemo_projections::migrate(&pool).await?;
    let auth = Auth::new(&SigningKey::from_bytes(&[5; 32]), "mnemo", "mnemo-api");
    let api = Arc::new(Api {
        ledger: ledger.clone(),
        views: mnemo_projections::Views::from_pool(pool),
        js: js.clone(),
        auth: auth.clone(),
        cfg: ApiConfig::default(),
        stats: Arc::new(ApiStats::default()),
        accounts: Some(accounts.clone()),
        processing: mnemo_processing::Processing::open(ledger.clone(), js).await?,
        sessions: Default::default(),
    });
    let listener = mnemo_api::http::bind("127.0.0.1:0".parse()?)?;
    let url = format!("http://{}/v1/memories?kind=audio", listener.local_addr()?);
    let app = mnemo_api::http::app(api, axum::Router::new());
    tokio::spawn(mnemo_api::http::serve(
        listener,
        app,
        std::future::pending(),
    ));
    let user = UserId::new("rec").expect("valid");
    ledger.create_user(&user).await?;
    accounts.create(&user).await?;
    let (_, creds) = accounts.issue_device(&user, "recorder", 3600).await?;
    let device = hub.connect(&creds).await?;
    let token = format!("Bearer {}", auth.issue("rec", false, 3600));
    let data = bytes::Bytes::from(
        (0..a.bytes)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0])
            .collect::<Vec<u8>>(),
    );
    let hash = format!("blake3:{}", blake3::hash(&data).to_hex());
    let http = reqwest::Client::new();
    println!(
        "mnemo-bench upload: {} MB recording, {} KiB chunks over NATS vs one streamed REST upload, {} rounds, nats-server {}",
        a.bytes as f64 / 1e6,
        a.chunk / 1024,
        a.rounds,
        mnemo_testkit::nats_server_binary().display()
    );
    let (mut over_nats, mut over_rest) = (Vec::new(), Vec::new());
    for round in 0..a.rounds {
        let t = Instant::now();
        let n = data.len().div_ceil(a.chunk);
        for i in 0..n {
            let mut h = async_nats::HeaderMap::new();
            h.insert("Mnemo-Upload", format!("round-{round}").as_str());
            h.insert("Mnemo-Chunk", i.to_string().as_str());
            if i == 0 {
                h.insert("Mnemo-Content-Type", "audio/wav");
            }
            if i == n - 1 {
                h.insert("Mnemo-Last", "true");
                h.insert("Mnemo-Content-Hash", hash.as_str());
            }
            let body = data.slice(i * a.chunk..((i + 1) * a.chunk).min(data.len()));
            let r = device.request_with_headers("mnemo.ingest", h, body).await?;
            if let Some(code) = r
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Service-Error-Code"))
            {
                anyhow::bail!(
                    "chunk {i} refused ({code}): {}",
                    String::from_utf8_lossy(&r.payload)
                );
            }
        }
        over_nats.push(a.bytes as f64 / 1e6 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let r = http
            .post(&url)
            .header("authorization", &token)
            .header("content-type", "audio/wav")
            .body(data.clone())
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "REST upload: {}", r.status());
        over_rest.push(a.bytes as f64 / 1e6 / t.elapsed().as_secs_f64());
    }
    let (nats_mb, rest_mb) = (median(over_nats), median(over_rest));
    println!("over NATS: {nats_mb:.1} MB/s (median), over REST: {rest_mb:.1} MB/s (median)");
    println!("NATS/REST ratio: {:.2}", nats_mb / rest_mb);
    headline(
        "20 MB recording over NATS (chunked) vs REST (upload)",
        format!("{nats_mb:.1} MB/s"),
        format!("{rest_mb:.1} MB/s"),
        nats_mb / rest_mb,
        "reported",
    );
    Ok(())
}
