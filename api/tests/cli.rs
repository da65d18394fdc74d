//! The `mnemo` binary end to end, against real nats-server and PostgreSQL.

use mnemo_core::{SigningKey, UserId};
use mnemo_ledger::{Ledger, LedgerConfig, NewMemory, SecretKey};
use mnemo_testkit::{NatsServer, PgServer};
use std::process::Command;

const MASTER: &str = "0303030303030303030303030303030303030303030303030303030303030303";
const SEED: &str = "0404040404040404040404040404040404040404040404040404040404040404";

fn mnemo(nats: &NatsServer, db: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mnemo"));
    c.args(args)
        .env("MNEMO_NATS_URL", nats.url())
        .env("MNEMO_MASTER_KEY", MASTER)
        .env("MNEMO_SIGNING_KEY", SEED)
        .env_remove("DATABASE_URL");
    if let Some(db) = db {
        c.env("DATABASE_URL", db);
    }
    c.output().expect("run mnemo")
}

/// Creates `users` with the ledger keys the binary is given, each with `per_user` notes.
async fn ingest_notes(nats: &NatsServer, users: &[UserId], per_user: usize) {
    let mut seed = [0u8; 32];
    hex::decode_to_slice(SEED, &mut seed).unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let cfg = LedgerConfig::new(
        SecretKey::from_hex(MASTER).unwrap(),
        SigningKey::from_bytes(&seed),
    );
    let ledger = Ledger::connect(client, cfg).await.unwrap();
    for u in users {
        ledger.create_user(u).await.unwrap();
        for k in 0..per_user {
            let note = NewMemory {
                kind: "note".into(),
                content_type: "text/plain".into(),
                content: bytes::Bytes::from(format!("note {k}")),
                ..Default::default()
            };
            ledger.append(u, note).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_then_rebuild_a_view_from_the_chains() {
    let nats = NatsServer::start();
    let pg = PgServer::start();
    pg.create_database("mnemo");
    let db = pg.url("mnemo");

    // a clear error and exit code 2 without a database
    let out = mnemo(&nats, None, &["migrate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("DATABASE_URL"));
    // a malformed secret is refused without echoing it
    let out = Command::new(env!("CARGO_BIN_EXE_mnemo"))
        .args(["projections", "rebuild"])
        .env("MNEMO_NATS_URL", nats.url())
        .env("DATABASE_URL", &db)
        .env("MNEMO_MASTER_KEY", "not-hex-secret-value")
        .env("MNEMO_SIGNING_KEY", SEED)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("MNEMO_MASTER_KEY") && !err.contains("not-hex-secret-value"),
        "{err}"
    );

    let out = mnemo(&nats, Some(&db), &["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = mnemo(&nats, Some(&db), &["migrate"]);
    assert!(out.status.success(), "migrations are idempotent");

    let users: Vec<UserId> = (0..5)
        .map(|i| UserId::new(format!("cli{i}")).unwrap())
        .collect();
    ingest_notes(&nats, &users, 10).await;
    let out = mnemo(&nats, Some(&db), &["projections", "lag"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "55",
        "nothing projected yet"
    );
    let out = mnemo(&nats, Some(&db), &["projections", "rebuild"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("rebuilt view pg: 55 events"));
    let out = mnemo(&nats, Some(&db), &["projections", "lag"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `mnemo projections run`, without the custody signing key in its environment, projects
/// the chains and serves its lag in `/readyz` and `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projections_run_serves_lag_in_readyz_and_metrics() {
    let nats = NatsServer::start();
    let pg = PgServer::start();
    pg.create_database("mnemo");
    let db = pg.url("mnemo");
    let port = mnemo_testkit::free_port();
    let _child = Child(
        Command::new(env!("CARGO_BIN_EXE_mnemo"))
            .args([
                "projections",
                "run",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .env("MNEMO_NATS_URL", nats.url())
            .env("DATABASE_URL", &db)
            .env("MNEMO_MASTER_KEY", MASTER)
            // The view process reads and decrypts: it runs without the custody key.
            .env_remove("MNEMO_SIGNING_KEY")
            .env("MNEMO_READY_MAX_LAG", "0")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    ingest_notes(&nats, &[UserId::new("metrics").unwrap()], 20).await;
    let t = std::time::Instant::now();
    loop {
        if let Some((200, body)) = http_get(port, "/readyz") {
            assert!(body.contains("\"pg\":0"), "{body}");
            break;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(30),
            "never ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (code, metrics) = http_get(port, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("mnemo_projection_applied_total{view=\"pg\"} 21"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mnemo_projection_lag_events{view=\"pg\"} 0"),
        "{metrics}"
    );
    assert_eq!(http_get(port, "/healthz").unwrap().0, 200);
}

#[test]
fn anchor_deploy_prints_the_contract_address() {
    let anvil = mnemo_testkit::Anvil::start();
    let out = Command::new(env!("CARGO_BIN_EXE_mnemo"))
        .args(["anchor", "deploy", "--rpc-url", &anvil.url()])
        .env("MNEMO_ANCHOR_KEY", mnemo_testkit::DEV_KEY)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let addr = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(addr.starts_with("0x") && addr.len() == 42, "{addr}");
    // a bad key: exit 2, a clear message, the key not echoed
    let out = Command::new(env!("CARGO_BIN_EXE_mnemo"))
        .args(["anchor", "deploy", "--rpc-url", &anvil.url()])
        .env("MNEMO_ANCHOR_KEY", "secret-but-not-a-key")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("private key") && !err.contains("secret-but-not-a-key"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anchor_run_anchors_the_heads_and_counts_it_in_metrics() {
    let nats = NatsServer::start();
    let anvil = mnemo_testkit::Anvil::start();
    let out = Command::new(env!("CARGO_BIN_EXE_mnemo"))
        .args(["anchor", "deploy", "--rpc-url", &anvil.url()])
        .env("MNEMO_ANCHOR_KEY", mnemo_testkit::DEV_KEY)
        .output()
        .unwrap();
    let contract = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // a user's checkpoint in the heads view, as the projector writes it
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let heads = js
        .create_key_value(async_nats::jetstream::kv::Config {
            bucket: "mnemo-heads".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let head = format!(
        r#"{{"seq":1,"hash":"{}","root":"{}"}}"#,
        "11".repeat(32),
        "22".repeat(32)
    );
    heads.put("someone", head.into()).await.unwrap();
    let port = mnemo_testkit::free_port();
    let _child = Child(
        Command::new(env!("CARGO_BIN_EXE_mnemo"))
            .args([
                "anchor",
                "run",
                "--rpc-url",
                &anvil.url(),
                "--contract",
                &contract,
            ])
            .args(["--interval", "1", "--listen", &format!("127.0.0.1:{port}")])
            .env("MNEMO_NATS_URL", nats.url())
            .env("MNEMO_ANCHOR_KEY", mnemo_testkit::DEV_KEY)
            .env_remove("DATABASE_URL")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let t = std::time::Instant::now();
    loop {
        if let Some((200, m)) = http_get(port, "/metrics")
            && m.contains("mnemo_anchor_epochs_total 1")
        {
            break;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(30),
            "no epoch anchored"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let contract = mnemo_core::Address::from_hex(contract.trim_start_matches("0x")).unwrap();
    let chain = mnemo_anchor::Chain::connect(&anvil.url(), mnemo_testkit::DEV_KEY, contract, 1)
        .await
        .unwrap();
    assert_eq!(chain.last().await.unwrap().0, 1);
}

/// `mnemo nats init` writes seeds and creds readable by the owner only and a server config
/// in operator mode that nats-server starts from; `mnemo users create` then creates the
/// user's chain and NATS account through it; a second init without `--force` is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_init_then_a_server_in_operator_mode_and_a_user() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("nats");
    let init = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_mnemo"))
            .args(["nats", "init", "--dir", d.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = init(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for f in [
        "operator.nk",
        "operator-signing.nk",
        "system-account.nk",
        "system-user.nk",
        "service-account.nk",
        "service-user.nk",
    ] {
        let seed = std::fs::read_to_string(d.join(f)).unwrap();
        assert!(!stdout.contains(seed.trim()), "{f} printed");
    }
    for f in [
        "operator.nk",
        "operator-signing.nk",
        "system-user.nk",
        "service-account.nk",
        "service.creds",
        "system.creds",
    ] {
        let mode = std::fs::metadata(d.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let again = init(&[]);
    assert_eq!(again.status.code(), Some(2), "refused without --force");
    let conf = std::fs::read_to_string(d.join("server.conf")).unwrap();
    let edge = std::fs::read_to_string(d.join("edge.conf")).unwrap();
    assert!(
        edge.contains("leafnodes") && edge.contains("websocket"),
        "{edge}"
    );
    let nats = NatsServer::start_with(mnemo_testkit::NatsOptions {
        extra_config: conf,
        ..Default::default()
    });
    // The operator's root key goes offline: everything below runs with its public key
    // (`operator.pub`) and the operator's signing key.
    std::fs::rename(
        d.join("operator.nk"),
        dir.path().join("offline-operator.nk"),
    )
    .unwrap();
    assert!(d.join("operator.pub").exists());
    // `mnemo users ...` against this server in operator mode.
    let users = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_mnemo"))
            .arg("users")
            .args(args)
            .env("MNEMO_NATS_URL", nats.url())
            .env("MNEMO_NATS_DIR", &d)
            .env("MNEMO_MASTER_KEY", "11".repeat(32))
            .env("MNEMO_SIGNING_KEY", "22".repeat(32))
            .env("MNEMO_JWT_KEY", "33".repeat(32))
            .output()
            .unwrap()
    };
    let out = users(&["create", "frank"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("NATS account A"));
    // Every account pushed again as this version writes it.
    let out = users(&["refresh-nats"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1 accounts pushed"
    );
    // A processor: registration with its NATS credentials, listing, revocation.
    let processors = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_mnemo"))
            .arg("processors")
            .args(args)
            .env("MNEMO_NATS_URL", nats.url())
            .env("MNEMO_NATS_DIR", &d)
            .env("MNEMO_MASTER_KEY", "11".repeat(32))
            .env("MNEMO_SIGNING_KEY", "22".repeat(32))
            .env("MNEMO_JWT_KEY", "33".repeat(32))
            .output()
            .unwrap()
    };
    let out = processors(&["register", "asr", "--version", "1", "--consumes", "audio"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reg: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reg["processor"]["consumes"], serde_json::json!(["audio"]));
    assert!(
        reg["nats_creds"]
            .as_str()
            .unwrap()
            .contains("BEGIN NATS USER JWT")
    );
    assert_eq!(reg["signing_seed"].as_str().unwrap().len(), 64);
    let again = processors(&["register", "asr", "--version", "2"]);
    assert!(!again.status.success(), "a name is registered once");
    // Fresh NATS credentials for a registered processor (after an upgrade, or an expiry):
    // a user of the processor's own account, which connects.
    let out = processors(&["creds", "asr"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh = String::from_utf8(out.stdout).unwrap();
    assert!(fresh.contains("BEGIN NATS USER JWT"), "{fresh}");
    async_nats::ConnectOptions::with_credentials(&fresh)
        .unwrap()
        .custom_inbox_prefix("_INBOX_asr")
        .connect(nats.url())
        .await
        .expect("the fresh credentials connect");
    assert!(!processors(&["creds", "nobody"]).status.success());
    assert!(processors(&["revoke", "asr"]).status.success());
    let list = processors(&["list"]);
    let p: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(p["revoked"], true);
    // without the service creds, the server refuses
    let anon = async_nats::connect(nats.url()).await;
    assert!(anon.is_err(), "operator mode refuses anonymous clients");
}

/// No secret the environment holds is printed by any command's `--help` (clap shows an
/// argument's environment value unless told not to): every subcommand is walked from the
/// top-level help, with every URL and key variable set to a value holding a marker.
#[test]
fn no_help_text_prints_a_secret_from_the_environment() {
    const MARK: &str = "SECRET-4f1d";
    let secrets = [
        (
            "DATABASE_URL",
            format!("postgres://mnemo:{MARK}-pg@db/mnemo"),
        ),
        ("MNEMO_NATS_URL", format!("nats://svc:{MARK}-nats@hub:4222")),
        (
            "MNEMO_RPC_URL",
            format!("https://rpc.example/v1/{MARK}-rpc"),
        ),
        ("MNEMO_MASTER_KEY", format!("{MARK}-master")),
        ("MNEMO_SIGNING_KEY", format!("{MARK}-signing")),
        ("MNEMO_ANCHOR_KEY", format!("{MARK}-anchor")),
        ("MNEMO_JWT_KEY", format!("{MARK}-jwt")),
    ];
    let help = |path: &[String]| -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_mnemo"))
            .args(path)
            .arg("--help")
            .envs(secrets.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run mnemo");
        assert!(out.status.success(), "mnemo {path:?} --help");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut todo = vec![Vec::<String>::new()];
    let mut walked = 0;
    while let Some(path) = todo.pop() {
        let text = help(&path);
        walked += 1;
        assert!(
            !text.contains(MARK),
            "mnemo {path:?} --help prints a secret:\n{text}"
        );
        // Subcommands: the lines under "Commands:", up to the next blank line.
        let mut lines = text.lines().skip_while(|l| !l.starts_with("Commands:"));
        lines.next();
        for l in lines.take_while(|l| !l.trim().is_empty()) {
            if let Some(name) = l.split_whitespace().next()
                && name != "help"
            {
                let mut sub = path.clone();
                sub.push(name.to_owned());
                todo.push(sub);
            }
        }
    }
    assert!(
        walked > 10,
        "only {walked} help texts: the walk found no subcommands"
    );
}

/// A running `mnemo serve` (the real binary) on its own NATS and PostgreSQL.
struct Serve {
    _child: Child,
    _nats: NatsServer,
    _pg: PgServer,
    env: Vec<(&'static str, String)>,
    url: String,
    http: reqwest::Client,
    auth: mnemo_api::auth::Auth,
}

impl Serve {
    async fn start(args: &[&str]) -> Self {
        Self::start_with(args, &[], None).await
    }

    /// With `extra` in its environment (after the defaults), its stderr in `log`.
    async fn start_with(
        args: &[&str],
        extra: &[(&'static str, &str)],
        log: Option<&std::path::Path>,
    ) -> Self {
        let nats = NatsServer::start();
        let pg = PgServer::start();
        pg.create_database("mnemo");
        let jwt = [0x43u8; 32];
        let port = mnemo_testkit::free_port();
        let env = vec![
            ("MNEMO_NATS_URL", nats.url()),
            ("DATABASE_URL", pg.url("mnemo")),
            ("MNEMO_MASTER_KEY", MASTER.to_owned()),
            ("MNEMO_SIGNING_KEY", SEED.to_owned()),
            ("MNEMO_JWT_KEY", hex::encode(jwt)),
            ("MNEMO_LOG", "warn".to_owned()),
            ("MNEMO_READY_MAX_LAG", "0".to_owned()),
        ];
        let env: Vec<(&'static str, String)> = env
            .into_iter()
            .chain(extra.iter().map(|(k, v)| (*k, v.to_string())))
            .collect();
        let stderr = match log {
            Some(p) => std::process::Stdio::from(std::fs::File::create(p).unwrap()),
            None => std::process::Stdio::null(),
        };
        let child = Child(
            Command::new(env!("CARGO_BIN_EXE_mnemo"))
                .arg("serve")
                .args(args)
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .stdout(std::process::Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap(),
        );
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let t = std::time::Instant::now();
        while http.get(format!("{url}/healthz")).send().await.is_err() {
            assert!(t.elapsed() < std::time::Duration::from_secs(60), "never up");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let auth = mnemo_api::auth::Auth::new(&SigningKey::from_bytes(&jwt), "mnemo", "mnemo-api");
        Self {
            _child: child,
            _nats: nats,
            _pg: pg,
            env,
            url,
            http,
            auth,
        }
    }

    /// Creates user `id` (as an admin) and returns the user's token.
    async fn create_user(&self, id: &str) -> String {
        let admin = self.auth.issue("admin", true, 3600);
        let r = self
            .http
            .post(format!("{}/v1/users", self.url))
            .bearer_auth(&admin)
            .json(&serde_json::json!({ "id": id }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        self.auth.issue(id, false, 3600)
    }
}

/// Readiness per instance: with the views held back (`mnemo serve --no-projector`, no
/// other projector running), an API instance stays ready and ingests; `/readyz` reports
/// the views' lag apart (`roles.reads: false`), and a read answers 503 with a retry hint.
/// Once a view process catches up, the read answers 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_views_held_back_ingest_stays_ready_and_reads_ask_to_retry() {
    let s = Serve::start(&["--no-projector"]).await;
    let (url, http, env) = (&s.url, &s.http, &s.env);
    let alice = s.create_user("alice").await;
    for i in 0..3 {
        let r = http
            .post(format!("{url}/v1/memories"))
            .bearer_auth(&alice)
            .json(&serde_json::json!({ "kind": "note", "text": format!("note {i}") }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{:?}", r.text().await);
    }
    let r = http.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(
        r.status(),
        200,
        "the API instance went unready with its views"
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["roles"]["ingest"], true, "{body}");
    assert_eq!(body["roles"]["reads"], false, "{body}");
    assert!(body["lag"]["pg"].as_u64().unwrap() >= 4, "{body}");
    let r = http
        .get(format!("{url}/v1/memories"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"), "{:?}", r.headers());

    // A view process catches up: reads answer.
    let vport = mnemo_testkit::free_port();
    let _views = Child(
        Command::new(env!("CARGO_BIN_EXE_mnemo"))
            .args([
                "projections",
                "run",
                "--listen",
                &format!("127.0.0.1:{vport}"),
            ])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env_remove("MNEMO_SIGNING_KEY")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let t = std::time::Instant::now();
    loop {
        let r = http
            .get(format!("{url}/v1/memories"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(60),
            "reads never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let body: serde_json::Value = http
        .get(format!("{url}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["roles"]["reads"], true, "{body}");
}

/// RED metrics: after a few requests, `/metrics` holds request durations by route
/// template, method and status class, and `mnemo_build_info`; every metric the alert rules
/// and the dashboard name (but the anchorer's, not running here) is served; `promtool`
/// accepts the rules and their unit tests pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_time_requests_by_route_and_status_and_the_rules_check() {
    let s = Serve::start(&[]).await;
    let bob = s.create_user("bob").await;
    let r = s
        .http
        .post(format!("{}/v1/memories", s.url))
        .bearer_auth(&bob)
        .json(&serde_json::json!({ "kind": "note", "text": "timed" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = s
        .http
        .get(format!("{}/v1/memories/{}", s.url, "0".repeat(32)))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
    let metrics = s
        .http
        .get(format!("{}/metrics", s.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = |needles: &[&str]| {
        metrics.lines().any(|l| {
            l.starts_with("mnemo_http_request_duration_seconds")
                && needles.iter().all(|n| l.contains(n))
        })
    };
    assert!(
        series(&[
            "_bucket{",
            "method=\"POST\"",
            "route=\"/v1/memories\"",
            "status=\"2xx\"",
            "le=\"0.005\""
        ]),
        "{metrics}"
    );
    assert!(
        series(&[
            "_count{",
            "method=\"POST\"",
            "route=\"/v1/users\"",
            "status=\"2xx\""
        ]),
        "{metrics}"
    );
    assert!(
        series(&[
            "_count{",
            "method=\"GET\"",
            "route=\"/v1/memories/{id}\"",
            "status=\"4xx\""
        ]),
        "{metrics}"
    );
    // The route template, never the path: no series names an id.
    assert!(!metrics.contains(&"0".repeat(32)), "{metrics}");
    assert!(
        metrics.contains(&format!(
            "mnemo_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{metrics}"
    );
    // What the rules and the dashboard read exists.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let mut used = std::collections::BTreeSet::new();
    for f in ["deploy/prometheus/alerts.yaml", "deploy/grafana/mnemo.json"] {
        let text = std::fs::read_to_string(root.join(f)).unwrap();
        for part in text.split("mnemo_").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            used.insert(format!("mnemo_{name}"));
        }
    }
    for name in used.iter().filter(|n| !n.starts_with("mnemo_anchor_")) {
        assert!(
            metrics.contains(name.as_str()),
            "{name} is not served:\n{metrics}"
        );
    }
    assert!(used.len() >= 6, "{used:?}");
    // promtool: the rules are valid and their unit tests pass.
    let promtool =
        std::env::var("MNEMO_PROMTOOL").expect("MNEMO_PROMTOOL: run via scripts/test.sh");
    let dir = root.join("deploy/prometheus");
    for args in [
        ["check", "rules", "alerts.yaml"],
        ["test", "rules", "alerts.test.yaml"],
    ] {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Request ids: a request's W3C trace id (the caller's `traceparent`, or a fresh one) is
/// in its answer (`traceparent`, `x-request-id`) and in every JSON log line it causes: the
/// request's own line and the ledger's line of the append it caused are joined by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_and_the_ledger_append_it_caused_log_the_same_trace_id() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let s = Serve::start_with(
        &[],
        &[
            ("MNEMO_LOG_FORMAT", "json"),
            ("MNEMO_LOG", "warn,mnemo_api=debug,mnemo_ledger=debug"),
        ],
        Some(&log),
    )
    .await;
    let carol = s.create_user("carol").await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = s
        .http
        .post(format!("{}/v1/memories", s.url))
        .bearer_auth(&carol)
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(&serde_json::json!({ "kind": "note", "text": "followed" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-request-id"], trace);
    let tp = r.headers()["traceparent"].to_str().unwrap().to_owned();
    assert!(
        tp.starts_with(&format!("00-{trace}-")) && tp.len() == 55,
        "{tp}"
    );
    // Without one, a fresh id.
    let r = s
        .http
        .get(format!("{}/v1/memories", s.url))
        .bearer_auth(&carol)
        .send()
        .await
        .unwrap();
    let fresh = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(fresh.len() == 32 && fresh != trace, "{fresh}");
    // The log lines of that request.
    let t = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|v: &serde_json::Value| v["span"]["trace.id"] == trace)
            .collect();
        let said = |msg: &str| lines.iter().any(|v| v["fields"]["message"] == msg);
        if said("request answered") && said("ledger: event appended") {
            let append = lines
                .iter()
                .find(|v| v["fields"]["message"] == "ledger: event appended")
                .unwrap();
            assert_eq!(append["fields"]["kind"], "memory_ingested", "{append}");
            assert_eq!(
                append["target"].as_str().unwrap().split("::").next(),
                Some("mnemo_ledger")
            );
            break;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "no request and append lines joined by {trace}:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
