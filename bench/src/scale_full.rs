//! `mnemo-bench scale --full`: the whole stack as an operator runs it. The release `mnemo
//! dev` (operator-mode nats-server with an account per user, the sharded layout, the
//! projector into PostgreSQL, the anchorer on anvil, the processing workers), driven from
//! outside over REST and NATS like clients. Per user count, each user gets its account
//! (`POST /v1/users`), one memory over REST, one grant, and one signed capture over NATS
//! from a device of its own; then 1% of the users write for a while, an epoch is timed with
//! 1% of the users changed, a user with a long chain is made, and the stack is restarted to
//! time a cold user's first grant. Printed per step: the resident memory of each process,
//! rates, p50/p99 latencies, errors, nats-server's consumers at their peak. The baseline of
//! the grant and capture rates is the first user count of the same run.

use anyhow::{Context, anyhow, bail};
use futures::StreamExt;
use mnemo_core::{Capture, MemoryRecord, SigningKey, UserId};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What `scale --full` is told.
pub struct Args {
    /// User counts, one fresh stack each; the first is the baseline of the ratios.
    pub users: Vec<usize>,
    /// Concurrent requests.
    pub concurrency: usize,
    /// Seconds of steady load from 1% of the users.
    pub steady_secs: u64,
    /// Events in the cold user's chain.
    pub cold_events: usize,
    /// Shared streams of the sharded layout.
    pub shards: u32,
    /// Devices kept connected at once (the rest connect, capture and leave).
    pub connected: usize,
    /// Users that get a device and a signed capture (all when larger than the count):
    /// each device connects to its own account, which nats-server then loads.
    pub capture_users: usize,
}

/// One step's figures.
#[derive(Default, Clone)]
struct Step {
    n: usize,
    secs: f64,
    lat_ms: Vec<f64>,
    errors: usize,
    first_error: Option<String>,
}

impl Step {
    fn rate(&self) -> f64 {
        self.n as f64 / self.secs.max(1e-9)
    }
    fn pct(&self, p: f64) -> f64 {
        let mut v = self.lat_ms.clone();
        if v.is_empty() {
            return 0.0;
        }
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * p).round() as usize]
    }
    fn line(&self, what: &str) -> String {
        format!(
            "{what:<34} {:>8} in {:>7.1} s: {:>9.0}/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}{}",
            self.n,
            self.secs,
            self.rate(),
            self.pct(0.5),
            self.pct(0.99),
            self.errors,
            self.first_error
                .as_ref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        )
    }
}

/// The results of one user count, for the closing table.
struct Run {
    users: usize,
    create: Step,
    grant: Step,
    capture: Step,
    rss_after: HashMap<String, f64>,
    peak_consumers: usize,
    epoch: Option<(u64, f64, u64)>,
    cold_grant_ms: Option<f64>,
    errors: usize,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run_async(a))
}

async fn run_async(a: &Args) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let mnemo = exe.with_file_name("mnemo");
    if !mnemo.exists() {
        bail!(
            "{} is missing: build it with the benchmark (cargo build --release -p mnemo-api -p mnemo-bench)",
            mnemo.display()
        );
    }
    println!(
        "mnemo-bench scale --full: `mnemo dev --layout sharded --shards {}` (operator mode, an account per user, projector, anchorer, workers); concurrency {}",
        a.shards, a.concurrency
    );
    let mut runs = Vec::new();
    for &n in &a.users {
        runs.push(one(a, &mnemo, n).await?);
    }
    let base = &runs[0];
    println!(
        "\n## summary (ratios against {} users, same run)",
        base.users
    );
    println!(
        "| users | create/s | grants/s (ratio, p99 ms) | captures/s (ratio, p99 ms) | nats-server MiB | mnemo MiB | PostgreSQL MiB | peak consumers | epoch: users, s, bytes | cold first grant ms | errors |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in &runs {
        println!(
            "| {} | {:.0} | {:.0} ({:.2}, {:.1}) | {:.0} ({:.2}, {:.1}) | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} |",
            r.users,
            r.create.rate(),
            r.grant.rate(),
            r.grant.rate() / base.grant.rate(),
            r.grant.pct(0.99),
            r.capture.rate(),
            r.capture.rate() / base.capture.rate(),
            r.capture.pct(0.99),
            r.rss_after.get("nats-server").copied().unwrap_or(0.0),
            r.rss_after.get("mnemo").copied().unwrap_or(0.0),
            r.rss_after.get("postgres").copied().unwrap_or(0.0),
            r.peak_consumers,
            r.epoch
                .map(|(u, s, b)| format!("{u}, {s:.3}, {b}"))
                .unwrap_or_else(|| "none".into()),
            r.cold_grant_ms
                .map(|m| format!("{m:.1}"))
                .unwrap_or_else(|| "-".into()),
            r.errors,
        );
    }
    Ok(())
}

/// One fresh stack with `n` users.
async fn one(a: &Args, mnemo: &Path, n: usize) -> anyhow::Result<Run> {
    println!("\n## {n} users");
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join(".mnemo");
    let t = Instant::now();
    let mut dev = Dev::start(mnemo, &dir, a.shards)?;
    println!(
        "stack up from nothing in {:.1} s (the demo included)",
        t.elapsed().as_secs_f64()
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency)
        .build()?;
    let api = Api {
        http: http.clone(),
        url: dev.api.clone(),
    };
    let setup = mnemo_accounts::OperatorSetup::load(&dir.join("nats"))?;
    let service = async_nats::ConnectOptions::with_credentials(&setup.service_creds()?)?
        .connect(dev.nats.as_str())
        .await?;
    let peak = mnemo_testkit::ConsumerPeak::start(async_nats::jetstream::new(service.clone()));
    let js = async_nats::jetstream::new(service.clone());
    print_rss("idle", dev.pid());

    // Users with their accounts.
    let ids: Vec<String> = (0..n).map(|i| format!("u{i:07}")).collect();
    let admin = dev.admin.clone();
    let (create, tokens) = run_step(a.concurrency, ids.clone(), |id| {
        let api = api.clone();
        let admin = admin.clone();
        async move {
            let v = api.post("/v1/users", &admin, json!({ "id": id })).await?;
            Ok(v["token"].as_str().context("a token")?.to_owned())
        }
    })
    .await;
    println!("{}", create.line("users with accounts (REST)"));
    let tokens: Vec<String> = tokens.into_iter().map(Option::unwrap_or_default).collect();
    let users: Vec<(usize, String)> = tokens.iter().cloned().enumerate().collect();
    let (memory, _) = run_step(a.concurrency, users.clone(), |(i, token)| {
        let api = api.clone();
        async move {
            api.post(
                "/v1/memories",
                &token,
                json!({ "text": format!("the first memory of user {i}"), "tags": ["bench"] }),
            )
            .await
            .map(drop)
        }
    })
    .await;
    println!("{}", memory.line("one memory each (REST)"));
    let (grant, _) = run_step(a.concurrency, users.clone(), |(i, token)| {
        let api = api.clone();
        let grantee = format!("u{:07}", (i + 1) % n);
        async move {
            api.post(
                "/v1/grants",
                &token,
                json!({ "grantee": grantee, "capabilities": { "metadata": true, "content": false } }),
            )
            .await
            .map(drop)
        }
    })
    .await;
    println!("{}", grant.line("one grant each (REST)"));
    // A device per user: credentials and a signing key over REST, then a signed capture on
    // mnemo.ingest from the user's account. The first `connected` stay connected.
    let t = Instant::now();
    let nats_url = dev.nats.clone();
    let capturing: Vec<String> = ids.iter().take(a.capture_users).cloned().collect();
    let (capture, conns) = run_step(a.concurrency, capturing.clone(), |id| {
        let api = api.clone();
        let admin = admin.clone();
        let nats_url = nats_url.clone();
        async move {
            let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
            let public = mnemo_core::PublicKey(key.verifying_key());
            let issued = api
                .post(
                    &format!("/v1/users/{id}/devices"),
                    &admin,
                    json!({ "name": "phone", "signing_key": hex::encode(public.to_bytes()) }),
                )
                .await?;
            let creds = issued["creds"].as_str().context("creds")?;
            let client = async_nats::ConnectOptions::with_credentials(creds)?
                .connect(nats_url.as_str())
                .await?;
            let body = signed_capture(&key, &id, "a signed capture")?;
            let reply = client
                .request("mnemo.ingest", body.to_string().into())
                .await?;
            let v: Value = serde_json::from_slice(&reply.payload)?;
            if v.get("seq").is_none() {
                bail!("refused: {v}");
            }
            Ok(client)
        }
    })
    .await;
    println!("{}", capture.line("one signed capture each (NATS)"));
    let mut kept: Vec<async_nats::Client> = Vec::new();
    for c in conns.into_iter().flatten() {
        if kept.len() < a.connected {
            kept.push(c);
        }
    }
    println!(
        "devices: {} connected at once ({:.0} connects with a capture per second)",
        kept.len(),
        capturing.len() as f64 / t.elapsed().as_secs_f64()
    );
    print_rss("devices connected", dev.pid());
    drop(kept);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Steady load: 1% of the users write.
    let active: Vec<(usize, String)> = users.iter().take((n / 100).max(10)).cloned().collect();
    let steady = steady(&api, &active, a.concurrency, a.steady_secs).await;
    println!(
        "{}",
        steady.line(&format!("steady: {} users writing", active.len()))
    );

    // An epoch with 1% of the users changed.
    let epoch = epoch(&api, &js, &users, n / 100).await;
    match &epoch {
        Ok((u, s, b)) => println!(
            "epoch with {u} changed users: computed in {s:.3} s, {b} bytes stored (epoch log and epoch object)"
        ),
        Err(e) => println!("epoch: not measured ({e})"),
    }
    let rss_after = print_rss("after the steps", dev.pid());

    // A cold user with a long chain, then a restart.
    let (cold_token, cold_fill) = cold_user(&api, &admin, a.cold_events, a.concurrency).await?;
    println!("{}", cold_fill.line("cold user's chain (REST)"));
    let peak_consumers = peak.peak().await;
    println!(
        "nats-server consumers at their peak (service account, sampled every 5 ms): {peak_consumers}"
    );
    drop(service);
    let t = Instant::now();
    dev.stop()?;
    let stopped = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut dev = Dev::start(mnemo, &dir, a.shards)?;
    println!(
        "restart: stopped in {stopped:.1} s; ready again in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let api = Api {
        http,
        url: dev.api.clone(),
    };
    let t = Instant::now();
    let cold = api
        .post(
            "/v1/grants",
            &cold_token,
            json!({ "grantee": "u0000000", "capabilities": { "metadata": true, "content": false } }),
        )
        .await;
    let cold_grant_ms = t.elapsed().as_secs_f64() * 1e3;
    match &cold {
        Ok(_) => println!(
            "cold user's first grant after the restart ({} events): {cold_grant_ms:.1} ms",
            a.cold_events + 1
        ),
        Err(e) => println!("cold user's first grant failed: {e}"),
    }
    let t = Instant::now();
    let other = api
        .post(
            "/v1/grants",
            &tokens[n / 2],
            json!({ "grantee": "u0000000", "capabilities": { "metadata": true, "content": false } }),
        )
        .await;
    println!(
        "another user's first grant after the restart: {:.1} ms ({})",
        t.elapsed().as_secs_f64() * 1e3,
        if other.is_ok() { "ok" } else { "failed" }
    );
    print_rss("after the restart", dev.pid());
    dev.stop()?;
    let errors = create.errors
        + memory.errors
        + grant.errors
        + capture.errors
        + steady.errors
        + cold_fill.errors
        + usize::from(cold.is_err())
        + usize::from(other.is_err());
    Ok(Run {
        users: n,
        create,
        grant,
        capture,
        rss_after,
        peak_consumers,
        epoch: epoch.ok(),
        cold_grant_ms: cold.is_ok().then_some(cold_grant_ms),
        errors,
    })
}

/// The signed capture body (FORMAT.md §4.2, §5.2) a device sends on `mnemo.ingest`.
fn signed_capture(key: &SigningKey, user: &str, text: &str) -> anyhow::Result<Value> {
    let user = UserId::new(user)?;
    let record = MemoryRecord {
        kind: "note".into(),
        tags: vec![],
        captured_at: None,
        source: None,
        content_type: "text/plain; charset=utf-8".into(),
        content: mnemo_core::Content::Inline {
            bytes: text.as_bytes().to_vec(),
        },
    };
    let salt = rand::random::<[u8; 32]>();
    let c = mnemo_core::commitment::commit(&salt, &record.canonical_bytes());
    let capture = Capture {
        stream: "voice".into(),
        counter: 1,
    };
    let sig = mnemo_core::keys::sign_capture(key, &user, &capture, &c);
    let public = mnemo_core::PublicKey(key.verifying_key());
    Ok(json!({
        "text": text, "stream": "voice", "counter": 1,
        "device_key": hex::encode(public.id().0), "salt": hex::encode(salt),
        "signature": hex::encode(sig.to_bytes()),
    }))
}

/// Runs `f` on every item, `concurrency` at a time; the step's figures and each result.
async fn run_step<I, T, F, Fut>(concurrency: usize, items: Vec<I>, f: F) -> (Step, Vec<Option<T>>)
where
    F: Fn(I) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let n = items.len();
    let t = Instant::now();
    let results: Vec<(f64, anyhow::Result<T>)> =
        futures::stream::iter(items.into_iter().map(|i| {
            let fut = f(i);
            async move {
                let t = Instant::now();
                let r = fut.await;
                (t.elapsed().as_secs_f64() * 1e3, r)
            }
        }))
        .buffered(concurrency)
        .collect()
        .await;
    let secs = t.elapsed().as_secs_f64();
    let mut step = Step {
        n,
        secs,
        ..Step::default()
    };
    let mut out = Vec::with_capacity(n);
    for (ms, r) in results {
        step.lat_ms.push(ms);
        match r {
            Ok(v) => out.push(Some(v)),
            Err(e) => {
                step.errors += 1;
                step.first_error.get_or_insert_with(|| format!("{e:#}"));
                out.push(None);
            }
        }
    }
    (step, out)
}

/// `concurrency` writers, round-robin over `users`, for `secs` seconds.
async fn steady(api: &Api, users: &[(usize, String)], concurrency: usize, secs: u64) -> Step {
    let until = Instant::now() + Duration::from_secs(secs);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let api = api.clone();
        let mine: Vec<String> = users
            .iter()
            .skip(w)
            .step_by(concurrency)
            .map(|(_, t)| t.clone())
            .collect();
        if mine.is_empty() {
            continue;
        }
        tasks.push(tokio::spawn(async move {
            let mut s = Step::default();
            let mut k = 0;
            while Instant::now() < until {
                let token = &mine[k % mine.len()];
                k += 1;
                let t = Instant::now();
                let r = api
                    .post(
                        "/v1/memories",
                        token,
                        json!({ "text": format!("steady {k}") }),
                    )
                    .await;
                s.lat_ms.push(t.elapsed().as_secs_f64() * 1e3);
                s.n += 1;
                if let Err(e) = r {
                    s.errors += 1;
                    s.first_error.get_or_insert_with(|| format!("{e:#}"));
                }
            }
            s
        }));
    }
    let mut all = Step::default();
    for t in tasks {
        if let Ok(s) = t.await {
            all.n += s.n;
            all.errors += s.errors;
            all.lat_ms.extend(s.lat_ms);
            if all.first_error.is_none() {
                all.first_error = s.first_error;
            }
        }
    }
    all.secs = t.elapsed().as_secs_f64();
    all
}

/// Waits for the anchorer to settle, changes `changed` users (one memory each), and reads
/// the next epoch's figures: (users appended, compute seconds, bytes the epoch stores).
async fn epoch(
    api: &Api,
    js: &async_nats::jetstream::Context,
    users: &[(usize, String)],
    changed: usize,
) -> anyhow::Result<(u64, f64, u64)> {
    // Settle: an epoch after everything so far.
    let e0 = api.metric("mnemo_anchor_epochs_total").await?;
    wait_metric(api, "mnemo_anchor_epochs_total", e0 + 1.0, 120).await?;
    let e1 = api.metric("mnemo_anchor_epochs_total").await?;
    let b0 = epoch_bytes(js).await?;
    let far = users.len() / 2;
    let pick: Vec<(usize, String)> = users
        .iter()
        .skip(far)
        .take(changed.max(1))
        .cloned()
        .collect();
    let (s, _) = run_step(64, pick, |(i, token)| {
        let api = api.clone();
        async move {
            api.post(
                "/v1/memories",
                &token,
                json!({ "text": format!("change {i}") }),
            )
            .await
            .map(drop)
        }
    })
    .await;
    if s.errors > 0 {
        bail!("{} writes failed", s.errors);
    }
    // The changes may straddle an epoch boundary: sum until they are all in.
    let mut users_in = 0;
    let mut secs = 0.0;
    let mut seen = e1;
    let deadline = Instant::now() + Duration::from_secs(120);
    while users_in < changed.max(1) as u64 && Instant::now() < deadline {
        wait_metric(api, "mnemo_anchor_epochs_total", seen + 1.0, 120).await?;
        seen = api.metric("mnemo_anchor_epochs_total").await?;
        users_in += api.metric("mnemo_anchor_last_epoch_changed_users").await? as u64;
        secs += api
            .metric("mnemo_anchor_last_epoch_compute_seconds")
            .await?;
    }
    let b1 = epoch_bytes(js).await?;
    Ok((users_in, secs, b1.saturating_sub(b0)))
}

/// Bytes in the streams that keep epochs: the epoch log's bucket and the epoch objects.
async fn epoch_bytes(js: &async_nats::jetstream::Context) -> anyhow::Result<u64> {
    let mut total = 0;
    for name in ["KV_mnemo-epoch-log", "OBJ_mnemo-epochs"] {
        if let Ok(mut s) = js.get_stream(name).await {
            total += s.info().await?.state.bytes;
        }
    }
    Ok(total)
}

async fn wait_metric(api: &Api, name: &str, at_least: f64, secs: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if api.metric(name).await.unwrap_or(0.0) >= at_least {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("{name} did not reach {at_least} in {secs} s")
}

/// A user with `events` memories.
async fn cold_user(
    api: &Api,
    admin: &str,
    events: usize,
    concurrency: usize,
) -> anyhow::Result<(String, Step)> {
    let v = api
        .post("/v1/users", admin, json!({ "id": "cold" }))
        .await?;
    let token = v["token"].as_str().context("token")?.to_owned();
    let (s, _) = run_step(concurrency, (0..events).collect(), |i| {
        let api = api.clone();
        let token = token.clone();
        async move {
            api.post(
                "/v1/memories",
                &token,
                json!({ "text": format!("cold {i}") }),
            )
            .await
            .map(drop)
        }
    })
    .await;
    Ok((token, s))
}

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    url: String,
}

impl Api {
    async fn post(&self, path: &str, token: &str, body: Value) -> anyhow::Result<Value> {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(anyhow!(
                "{status}: {}",
                v["detail"].as_str().unwrap_or_default()
            ));
        }
        Ok(v)
    }

    async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let text = self
            .http
            .get(format!("{}/metrics", self.url))
            .send()
            .await?
            .text()
            .await?;
        text.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == name).then(|| v.trim().parse().ok())?
            })
            .ok_or_else(|| anyhow!("no metric {name}"))
    }
}

/// `mnemo dev`, running.
struct Dev {
    child: Child,
    api: String,
    nats: String,
    admin: String,
}

impl Dev {
    fn start(mnemo: &Path, dir: &Path, shards: u32) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.parent().unwrap_or(dir).join("dev.log"))?;
        let mut child = Command::new(mnemo)
            .arg("dev")
            .args(["--layout", "sharded", "--shards", &shards.to_string()])
            .arg("--dir")
            .arg(dir)
            .env_remove("DATABASE_URL")
            .env_remove("MNEMO_NATS_DIR")
            .env_remove("MNEMO_RPC_URL")
            .env_remove("MNEMO_NATS_URL")
            .env("MNEMO_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()?;
        let out = child.stdout.take().context("stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Keep draining so that mnemo dev never blocks on a full pipe.
                    continue;
                }
            }
        });
        let (mut api, mut nats) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            else {
                // Kept: the stack's directory goes with the benchmark's error.
                let log = dir.parent().unwrap_or(dir).join("dev.log");
                let kept = std::env::temp_dir().join("mnemo-bench-dev.log");
                let _ = std::fs::copy(&log, &kept);
                bail!("mnemo dev did not come up (its log: {})", kept.display());
            };
            let mut w = line.split_whitespace();
            match (w.next(), w.next()) {
                (Some("API"), Some(u)) => api = Some(u.to_owned()),
                (Some("NATS"), Some(u)) => nats = Some(u.to_owned()),
                (Some("admin"), Some("token")) => {
                    return Ok(Self {
                        child,
                        api: api.context("no API line")?,
                        nats: nats.context("no NATS line")?,
                        admin: w.next().context("no admin token")?.to_owned(),
                    });
                }
                _ => {}
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Ctrl-C, and the wait for everything to stop.
    fn stop(&mut self) -> anyhow::Result<()> {
        Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.stop();
        }
    }
}

/// Resident memory (MiB) of `root` and its descendants, by program; printed.
fn print_rss(when: &str, root: u32) -> HashMap<String, f64> {
    let by = rss_by_program(root);
    let mut names: Vec<_> = by.iter().collect();
    names.sort_by(|a, b| a.0.cmp(b.0));
    let parts: Vec<String> = names
        .iter()
        .map(|(k, v)| format!("{k} {v:.0} MiB"))
        .collect();
    println!("RSS {when}: {}", parts.join(", "));
    by
}

fn rss_by_program(root: u32) -> HashMap<String, f64> {
    let mut parent = HashMap::new();
    let mut comm = HashMap::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_owned();
        let ppid = stat[close + 2..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0);
        parent.insert(pid, ppid);
        comm.insert(pid, name);
    }
    let mut out: HashMap<String, f64> = HashMap::new();
    for (&pid, name) in &comm {
        let mut p = pid;
        let mut inside = false;
        for _ in 0..64 {
            if p == root {
                inside = true;
                break;
            }
            match parent.get(&p) {
                Some(&pp) if pp != 0 => p = pp,
                _ => break,
            }
        }
        if inside {
            let group = if name.starts_with("postgres") {
                "postgres".to_owned()
            } else {
                name.clone()
            };
            *out.entry(group).or_default() += crate::measure::status_mib(Some(pid), "VmRSS:");
        }
    }
    out
}
