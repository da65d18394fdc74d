//! `mnemo dev`, the real binary: comes up from nothing (its own nats-server, PostgreSQL and
//! anvil), and the curl line it prints works; Ctrl-C stops everything cleanly (PostgreSQL
//! writes its shutdown checkpoint, so the next start does no crash recovery); a second run
//! on the same `.mnemo/` directory finds the same data; its log has no colour codes when it
//! is not a terminal; PostgreSQL requires passwords, and mnemo's role is no superuser; the
//! processing demo: the speech clip's transcript in the chain, the trainer's model answering
//! with it, and a killed worker started again; the global options (`--layout sharded`)
//! hold under it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mnemo_dev_comes_up_and_its_curl_line_works() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join(".mnemo");
    let first_base = run_dev_once(&state, "envuser1").await;
    let pg_log = std::fs::read_to_string(state.join("pg/pg.log")).unwrap();
    assert!(
        pg_log.contains("database system is shut down"),
        "PostgreSQL stopped cleanly:\n{pg_log}"
    );
    let nats_log = std::fs::read_to_string(state.join("nats-server/server.log")).unwrap();
    assert!(nats_log.contains("Server Exiting"), "{nats_log}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(state.join("secrets.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "secrets are private");
    let mode = std::fs::metadata(state.join("env"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the settings file holds keys: private");
    // the same state again: same keys, chains, database and contract; no second demo;
    // the same ports
    let second_base = run_dev_once(&state, "envuser2").await;
    assert_eq!(first_base, second_base, "the API keeps its port");
    let pg_log = std::fs::read_to_string(state.join("pg/pg.log")).unwrap();
    assert!(
        !pg_log.contains("not properly shut down") && !pg_log.contains("automatic recovery"),
        "the second start found a clean shutdown:\n{pg_log}"
    );
    let nats_log = std::fs::read_to_string(state.join("nats-server/server.log")).unwrap();
    assert!(
        !nats_log.contains("will rebuild") && !nats_log.contains("outdated"),
        "JetStream found its state clean:\n{nats_log}"
    );
    let log = std::fs::read_to_string(dir.path().join("dev.log")).unwrap();
    assert!(log.contains("mnemo dev: stopped"), "{log}");
    // The global options hold under `mnemo dev` (run here with `--layout sharded
    // --shards 4`): it says so, and the chains are in the shared streams.
    assert!(
        log.contains("mnemo dev: layout sharded (4 shards)"),
        "{log}"
    );
    let streams: Vec<String> = walkdir(&state.join("nats-server"))
        .into_iter()
        .filter_map(|p| {
            let parent = p.parent()?.file_name()?.to_str()?;
            (parent == "streams").then(|| p.file_name().unwrap().to_string_lossy().into_owned())
        })
        .collect();
    assert!(
        streams.iter().any(|s| s.starts_with("MNEMO-CHAINS-")),
        "{streams:?}"
    );
    assert!(
        !streams.iter().any(|s| s.starts_with("MNEMO-CHAIN-")),
        "a per-user chain stream under --layout sharded: {streams:?}"
    );
    // PostgreSQL wants a password from everyone, and mnemo's role is no superuser
    let secrets: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("secrets.json")).unwrap())
            .unwrap();
    let (superuser_pw, pw) = (
        secrets["pg_superuser_password"].as_str().unwrap(),
        secrets["pg_password"].as_str().unwrap(),
    );
    assert!(
        !log.contains(pw) && !log.contains(superuser_pw),
        "no password in the log"
    );
    let pg =
        mnemo_devstack::PgServer::start_in_secured(&state.join("pg"), true, superuser_pw).unwrap();
    let port = pg.port();
    for url in [
        format!("postgres://postgres@127.0.0.1:{port}/mnemo"),
        format!("postgres://mnemo@127.0.0.1:{port}/mnemo"),
        format!("postgres://mnemo:wrong@127.0.0.1:{port}/mnemo"),
    ] {
        assert!(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(&url)
                .await
                .is_err(),
            "{url} must be refused"
        );
    }
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&pg.url_as("mnemo", "mnemo", pw))
        .await
        .unwrap();
    let (superuser, createdb, createrole): (bool, bool, bool) = sqlx::query_as(
        "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((superuser, createdb, createrole), (false, false, false));
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(events > 0, "the role reads its views");
    pool.close().await;
    assert!(
        !log.contains('\u{1b}'),
        "no ANSI colour codes in a log file:\n{log}"
    );
}

/// `mnemo dev`, stopped with Ctrl-C (then killed) if a failed assertion leaves it running.
struct Dev(std::process::Child);

impl Drop for Dev {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = Command::new("kill")
                .args(["-INT", &self.0.id().to_string()])
                .status();
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(30) {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Every directory under `root`.
fn walkdir(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.push(e.path());
                todo.push(e.path());
            }
        }
    }
    out
}

/// Runs `mnemo dev` in `state` until its demo is up, checks it (and that `mnemo users
/// create new_user` works with nothing but `state/env` for settings), stops it; its API's
/// base URL.
async fn run_dev_once(state: &std::path::Path, new_user: &str) -> String {
    let mut child = Dev(Command::new(env!("CARGO_BIN_EXE_mnemo"))
        .arg("dev")
        .args(["--layout", "sharded", "--shards", "4"])
        .arg("--dir")
        .arg(state)
        .env_remove("DATABASE_URL")
        .env_remove("MNEMO_NATS_DIR")
        .env_remove("MNEMO_RPC_URL")
        .env_remove("MNEMO_NATS_URL")
        .env("MNEMO_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(state.parent().unwrap().join("dev.log"))
                .unwrap(),
        )
        .spawn()
        .unwrap());
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            println!("mnemo dev | {line}");
            let _ = tx.send(line);
        }
    });
    let t = Instant::now();
    let mut printed = Vec::new();
    let curl = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(180).saturating_sub(t.elapsed()))
            .expect("mnemo dev printed its curl line within 3 minutes");
        if line.starts_with("curl ") {
            break line;
        }
        printed.push(line);
    };
    // The processing demo: the speech clip's transcript, derived from it, and a model
    // that answers a query with it.
    let find = |prefix: &str| {
        printed
            .iter()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| {
                let logs: Vec<String> = ["asr", "trainer"]
                    .iter()
                    .map(|w| {
                        let p = state.join(format!("workers/{w}.log"));
                        format!("{w}: {}", std::fs::read_to_string(p).unwrap_or_default())
                    })
                    .collect();
                panic!(
                    "no {prefix} line in {printed:#?}; worker logs:\n{}",
                    logs.join("\n")
                )
            })
            .clone()
    };
    let lineage = find("lineage");
    assert!(
        lineage.contains("-> transcript") && lineage.contains("young man"),
        "{lineage}"
    );
    let transcript = lineage.split("-> transcript ").nth(1).unwrap()[..32].to_owned();
    assert!(
        find("query").contains(&format!("memory {transcript}")),
        "{printed:#?}"
    );
    // A worker killed under mnemo dev is started again.
    let pid_file = state.join("workers/asr.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let t = Instant::now();
    loop {
        let now: i32 = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(pid);
        if now != pid && std::path::Path::new(&format!("/proc/{now}")).exists() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the killed ASR worker was not restarted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // curl -s -H 'Authorization: Bearer <token>' '<url>'
    let parts: Vec<&str> = curl.split('\'').collect();
    let auth = parts[1];
    let url = parts[3];
    let client = reqwest::Client::new();
    let r = client
        .get(url)
        .header("Authorization", auth.trim_start_matches("Authorization: "))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let items = body["items"].as_array().unwrap();
    assert_eq!(
        items.len(),
        2,
        "the two travel memories of the demo (once, however many runs): {body}"
    );
    assert!(items.iter().all(|m| m["tags"][0] == "travel"));
    // the API refuses the same request without the token, as a problem
    let base = url.split("/v1/").next().unwrap();
    let r = client
        .get(format!("{base}/v1/memories"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    // A header hyper cannot parse (DEL in Authorization) gets the router's problem, not
    // hyper's empty 400: the line is dropped, the request is unauthenticated.
    {
        use std::io::{Read, Write};
        let host = base.trim_start_matches("http://");
        let mut tcp = std::net::TcpStream::connect(host).unwrap();
        tcp.write_all(
            format!("GET /v1/memories HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer a\x7fb\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("content-type: application/problem+json"),
            "{answer}"
        );
    }
    // The console's sign-in link: the page, under its CSP, and the link's token signs in.
    let link = printed
        .iter()
        .find_map(|l| l.strip_prefix("console (sign in as demo): "))
        .expect("mnemo dev prints the console's sign-in link");
    assert!(
        link.starts_with(&format!("{base}/console/#/signin?token=")),
        "{link}"
    );
    let page = client.get(format!("{base}/console/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.headers()["content-security-policy"],
        mnemo_api::http::console::CSP
    );
    let token = link.split("token=").nth(1).unwrap();
    let r = client
        .post(format!("{base}/v1/session"))
        .json(&serde_json::json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("mnemo_http_requests_total")
    );
    // Another shell's mnemo commands take every setting from `.mnemo/env`.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mnemo"));
    for var in [
        "DATABASE_URL",
        "MNEMO_NATS_DIR",
        "MNEMO_NATS_URL",
        "MNEMO_MASTER_KEY",
        "MNEMO_SIGNING_KEY",
        "MNEMO_JWT_KEY",
        "MNEMO_RPC_URL",
    ] {
        cmd.env_remove(var);
    }
    let settings = std::fs::read_to_string(state.join("env")).unwrap();
    for line in settings
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (k, v) = line.split_once('=').unwrap();
        cmd.env(k, v);
    }
    let out = cmd.args(["users", "create", new_user]).output().unwrap();
    assert!(
        out.status.success(),
        "mnemo users create with .mnemo/env: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Ctrl-C stops everything it started
    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let t = Instant::now();
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            assert!(status.success(), "mnemo dev exited with {status}");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "mnemo dev did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    base.to_owned()
}
