//! `mnemo-bench ask`: questions to a user's BM25 model through mnemo (`POST
//! /v1/users/{owner}/ask`: the grant decided by core's rule, the model queried, the
//! citations held to the grant against the views, the question sealed and recorded in the
//! owner's chain before the answer) against the model's own query (`Processing::query`,
//! the same model and questions) in the same run, same concurrency. The API runs in
//! process (tower `oneshot`, no sockets) over a real nats-server and PostgreSQL.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use mnemo_api::auth::Auth;
use mnemo_api::http::{Api, ApiConfig, ApiStats};
use mnemo_core::{SigningKey, UserId};
use mnemo_ledger::NewMemory;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;

/// Options of `mnemo-bench ask`.
#[derive(clap::Args)]
pub struct Args {
    /// Memories of the owner (all in the model's training set).
    #[arg(long, default_value_t = 10_000)]
    memories: usize,
    /// Questions per round.
    #[arg(long, default_value_t = 400)]
    questions: usize,
    /// Concurrent askers.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Rounds (median rate printed; latencies pooled).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
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

const VOCABULARY: usize = 2_000;

fn word(i: usize) -> String {
    format!("w{i}")
}

async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    token: &str,
    body: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let r = app
        .clone()
        .oneshot(
            Request::builder()
                .method(method)
                .uri(path)
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&body)?))?,
        )
        .await?;
    let status = r.status();
    let bytes = axum::body::to_bytes(r.into_body(), usize::MAX).await?;
    anyhow::ensure!(
        status.is_success(),
        "{method} {path}: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    Ok(serde_json::from_slice(&bytes)?)
}

async fn run_async(a: &Args) -> anyhow::Result<()> {
    let stack = mnemo_testkit::Stack::builder().start().await;
    let auth = Auth::new(&SigningKey::from_bytes(&[5; 32]), "mnemo", "mnemo-api");
    let api = Arc::new(Api {
        ledger: stack.ledger.clone(),
        views: mnemo_projections::Views::from_pool(stack.pool.clone()),
        js: stack.js.clone(),
        auth: auth.clone(),
        // The model over 10,000 memories is posted over REST here (the trainer sends it
        // over NATS): room for its index.
        cfg: ApiConfig {
            max_json: 256 << 20,
            ..ApiConfig::default()
        },
        stats: Arc::new(ApiStats::default()),
        accounts: None,
        processing: mnemo_processing::Processing::open(stack.ledger.clone(), stack.js.clone())
            .await?,
        sessions: Default::default(),
    });
    let app = mnemo_api::http::router(api.clone());
    let owner = UserId::new("owner").expect("valid");
    for u in ["owner", "asker"] {
        stack
            .ledger
            .create_user(&UserId::new(u).expect("valid"))
            .await?;
    }
    // The owner's memories: 20 words each from a Zipf-ish vocabulary.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let started = Instant::now();
    let mut texts = Vec::with_capacity(a.memories);
    for _ in 0..a.memories {
        let text: Vec<String> = (0..20)
            .map(|_| {
                word((rng.gen_range(1.0f64..VOCABULARY as f64).powf(1.3) as usize) % VOCABULARY)
            })
            .collect();
        texts.push(text.join(" "));
    }
    // In order (buffered, not unordered): each receipt goes with its text.
    let receipts: Vec<_> = futures::stream::iter(texts.iter().map(|t| {
        stack.ledger.append(
            &owner,
            NewMemory {
                kind: "note".into(),
                tags: vec![],
                captured_at: None,
                source: None,
                content_type: "text/plain; charset=utf-8".into(),
                content: t.clone().into(),
                idempotency_key: None,
                capture: None,
                signed: None,
            },
        )
    }))
    .buffered(256)
    .collect()
    .await;
    let ids: Vec<(String, String)> = receipts
        .into_iter()
        .zip(&texts)
        .map(|(r, t)| Ok((r?.memory.expect("a memory").to_string(), t.clone())))
        .collect::<anyhow::Result<_>>()?;
    eprintln!(
        "ask: {} memories ingested in {:.1} s",
        ids.len(),
        started.elapsed().as_secs_f64()
    );
    // A processor fetches them all and records a search model over them.
    let admin = auth.issue("admin", true, 3600);
    let owner_token = auth.issue("owner", false, 3600);
    let asker_token = auth.issue("asker", false, 3600);
    let reg = call(
        &app,
        "POST",
        "/v1/processors",
        &admin,
        serde_json::json!({ "name": "trainer", "version": "1" }),
    )
    .await?;
    let ptoken = reg["token"].as_str().unwrap_or_default().to_owned();
    let mut seed = [0u8; 32];
    hex::decode_to_slice(reg["signing_seed"].as_str().unwrap_or_default(), &mut seed)?;
    let key = SigningKey::from_bytes(&seed);
    let grant = call(
        &app,
        "POST",
        "/v1/grants",
        &owner_token,
        serde_json::json!({ "processor": "trainer" }),
    )
    .await?["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut docs = Vec::with_capacity(ids.len());
    let fetched: Vec<_> = futures::stream::iter(ids.iter().map(|(id, _)| {
        call(
            &app,
            "POST",
            "/v1/processing/fetch",
            &ptoken,
            serde_json::json!({ "user": "owner", "grant": grant, "memory": id }),
        )
    }))
    .buffered(64)
    .collect()
    .await;
    for (f, (id, text)) in fetched.into_iter().zip(&ids) {
        let f = f?;
        let member = mnemo_core::processing::SetMember {
            seq: mnemo_core::Seq(f["seq"].as_u64().unwrap_or_default()),
            event_hash: mnemo_core::Hash32::from_hex(f["event_hash"].as_str().unwrap_or_default())?,
        };
        docs.push((
            mnemo_core::MemoryId::from_hex(id)?,
            member,
            mnemo_core::search_index::term_counts(text),
        ));
    }
    docs.sort_by_key(|d| d.1.seq);
    let index =
        mnemo_core::search_index::SearchIndex::build(docs.iter().map(|(m, s, w)| (*m, *s, w)));
    let object = serde_json::to_vec(&index)?;
    let artifact = mnemo_core::Hash32(*blake3::hash(&object).as_bytes());
    let set = mnemo_core::TrainingSet::new(docs.iter().map(|d| d.1).collect())
        .ok_or_else(|| anyhow::anyhow!("an empty training set"))?;
    let sig = mnemo_core::processing::sign(
        &key,
        &mnemo_core::processing::model_signing_message(&mnemo_core::processing::ModelClaim {
            user: &owner,
            grant: &mnemo_core::GrantId::from_hex(&grant)?,
            processor: &mnemo_core::ProcessorId::new("trainer")?,
            version: "1",
            artifact: &artifact,
            set_root: &set.root(),
            set_count: docs.len() as u64,
        }),
    );
    let inputs: Vec<String> = docs.iter().map(|d| d.0.to_string()).collect();
    use base64::Engine;
    call(
        &app,
        "POST",
        "/v1/processing/models",
        &ptoken,
        serde_json::json!({
            "user": "owner", "grant": grant, "version": "1", "artifact": artifact, "inputs": inputs,
            "signature": sig, "format": "mnemo-bm25-v1",
            "object": base64::engine::general_purpose::STANDARD.encode(&object),
        }),
    )
    .await?;
    call(
        &app,
        "POST",
        "/v1/grants",
        &owner_token,
        serde_json::json!({
            "grantee": "asker", "capabilities": { "metadata": true, "content": false, "ask": true },
        }),
    )
    .await?;
    eprintln!(
        "ask: model over {} memories ({} KiB index) ready at {:.1} s",
        docs.len(),
        object.len() / 1024,
        started.elapsed().as_secs_f64()
    );
    let questions: Vec<String> = (0..a.questions)
        .map(|_| {
            format!(
                "{} {} {}",
                word(rng.gen_range(0..200)),
                word(rng.gen_range(0..VOCABULARY)),
                word(rng.gen_range(0..VOCABULARY))
            )
        })
        .collect();
    // The views hold the owner's chain (the ask path reads grants and memory rows there).
    stack
        .caught_up(&[owner.clone(), UserId::new("asker").expect("valid")])
        .await;
    eprintln!(
        "ask: views caught up at {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Warm both paths once.
    api.processing
        .query(&owner, None, &questions[0], 20)
        .await?;
    call(
        &app,
        "POST",
        "/v1/users/owner/ask",
        &asker_token,
        serde_json::json!({ "q": questions[0], "k": 5 }),
    )
    .await?;
    let (mut bare_rates, mut ask_rates) = (Vec::new(), Vec::new());
    let (mut bare_lat, mut ask_lat) = (Vec::new(), Vec::new());
    for _ in 0..a.rounds {
        for ask in [false, true] {
            let t = Instant::now();
            let mut lat = Vec::with_capacity(questions.len());
            let mut next = 0usize;
            let mut running = FuturesUnordered::new();
            loop {
                while running.len() < a.concurrency && next < questions.len() {
                    let q = questions[next].clone();
                    next += 1;
                    let (api, app, token, owner) =
                        (api.clone(), app.clone(), asker_token.clone(), owner.clone());
                    running.push(async move {
                        let t = Instant::now();
                        if ask {
                            let r = app
                                .oneshot(
                                    Request::builder()
                                        .method("POST")
                                        .uri("/v1/users/owner/ask")
                                        .header("authorization", format!("Bearer {token}"))
                                        .header("content-type", "application/json")
                                        .body(Body::from(serde_json::to_vec(
                                            &serde_json::json!({ "q": q, "k": 5 }),
                                        )?))?,
                                )
                                .await?;
                            let status = r.status();
                            let body = axum::body::to_bytes(r.into_body(), usize::MAX).await?;
                            anyhow::ensure!(
                                status == StatusCode::OK,
                                "ask: {status} {}",
                                String::from_utf8_lossy(&body)
                            );
                        } else {
                            // The model's own query, as the ask path puts it (4k candidates).
                            api.processing.query(&owner, None, &q, 20).await?;
                        }
                        Ok::<_, anyhow::Error>(t.elapsed())
                    });
                }
                match running.next().await {
                    Some(r) => lat.push(r?),
                    None => break,
                }
            }
            let rate = questions.len() as f64 / t.elapsed().as_secs_f64();
            if ask {
                ask_rates.push(rate);
                ask_lat.extend(lat);
            } else {
                bare_rates.push(rate);
                bare_lat.extend(lat);
            }
        }
    }
    bare_lat.sort();
    ask_lat.sort();
    let (bare, asked) = (
        crate::measure::median(bare_rates),
        crate::measure::median(ask_rates),
    );
    println!(
        "ask: {} memories, {} questions x {} rounds, {} concurrent",
        a.memories, a.questions, a.rounds, a.concurrency
    );
    println!(
        "  model query (baseline): {bare:>8.0} q/s  p50 {:.2} ms  p99 {:.2} ms",
        pct(&bare_lat, 0.5),
        pct(&bare_lat, 0.99)
    );
    println!(
        "  ask through mnemo:      {asked:>8.0} q/s  p50 {:.2} ms  p99 {:.2} ms",
        pct(&ask_lat, 0.5),
        pct(&ask_lat, 0.99)
    );
    println!(
        "  ratio (ask / bare query rate): {:.2}  (target >= 0.5; p99 target <= 50 ms)",
        asked / bare
    );
    Ok(())
}
