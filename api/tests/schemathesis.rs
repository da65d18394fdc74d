//! Schemathesis (PyPI, pinned by scripts/setup.sh) against a running `mnemo dev`: it
//! generates requests from `/openapi.json` (valid ones, and ones that break the schema:
//! wrong types, huge numbers, NUL bytes, missing fields) for every operation, and follows
//! links statefully. Bounded examples; the check is that no request gets a server error.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn schemathesis() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("MNEMO_SCHEMATHESIS") {
        return p.into();
    }
    let home = std::env::var_os("MNEMO_TOOLS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap()).join(".local/share/mnemo")
        });
    home.join("venv/bin/st")
}

#[test]
fn schemathesis_finds_no_server_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut dev = Command::new(env!("CARGO_BIN_EXE_mnemo"))
        .arg("dev")
        .arg("--dir")
        .arg(dir.path().join(".mnemo"))
        .env_remove("DATABASE_URL")
        .env_remove("MNEMO_NATS_DIR")
        .env_remove("MNEMO_RPC_URL")
        .env_remove("MNEMO_NATS_URL")
        .env("MNEMO_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(dev.stdout.take().unwrap());
    let (mut url, mut token) = (None, None);
    let t = Instant::now();
    for line in stdout.lines() {
        let line = line.unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["API", u, ..] => url = Some(u.to_string()),
            ["demo", "token", tk] => token = Some(tk.to_string()),
            _ => {}
        }
        if line.starts_with("curl ") {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "mnemo dev never came up"
        );
    }
    let (url, token) = (url.unwrap(), token.unwrap());
    let out = Command::new(schemathesis())
        .args(["run", &format!("{url}/openapi.json")])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "not_a_server_error"])
        .args(["--max-examples", "15", "--seed", "1", "--no-color"])
        .output()
        .expect("run schemathesis (scripts/setup.sh installs it)");
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    let _ = Command::new("kill")
        .args(["-INT", &dev.id().to_string()])
        .status();
    let _ = dev.wait();
    assert!(
        out.status.success(),
        "schemathesis found server errors:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("generated"), "no test cases ran:\n{report}");
}
