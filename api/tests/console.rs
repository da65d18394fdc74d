//! The privacy console (`/console`, console/ built with Vite) end to end in Debian's
//! headless Chromium driven by playwright-core, against a real stack (operator-mode NATS,
//! PostgreSQL views, the REST API on a port): sign in with the link `mnemo dev` prints,
//! capture a note with the keyboard only, record audio from a fake microphone, grant and
//! see the grantee's read in the access log, revoke, issue and revoke a device, verify the
//! chain in the page, see a tampered bundle refused at its seq and check, erase one
//! memory and then everything. The screenshots go to docs/console/. Also: the session
//! cookie's flags, the CSP, and that no token is readable by page scripts or storage.

mod support;

use axum::http::StatusCode;
use serde_json::Value;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_end_to_end_in_chromium() {
    let dist = std::env::var("MNEMO_CONSOLE_DIST")
        .expect("MNEMO_CONSOLE_DIST (scripts/setup.sh builds console/)");
    let tools = std::env::var("MNEMO_JS_TOOLS").expect("MNEMO_JS_TOOLS (scripts/setup.sh)");
    let h = support::hub().await;
    let rest = support::Rest::with(
        &h,
        mnemo_api::http::ApiConfig {
            console_dir: Some(dist.into()),
            ..Default::default()
        },
    )
    .await;
    for u in ["ana", "ben"] {
        let u = mnemo_core::UserId::new(u).unwrap();
        h.ledger.create_user(&u).await.unwrap();
        h.accounts.create(&u).await.unwrap();
    }
    let ana = rest.auth.issue("ana", false, 3600);
    let ben = rest.auth.issue("ben", false, 3600);
    // A write with the session cookie but without the CSRF token is refused.
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/v1/session", rest.url))
        .json(&serde_json::json!({ "token": ana }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_owned();
    let csrf = r.json::<Value>().await.unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_owned();
    let note = serde_json::json!({ "text": "via the cookie" });
    let r = http
        .post(format!("{}/v1/memories", rest.url))
        .header("cookie", &cookie)
        .json(&note)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "no CSRF token");
    let r = http
        .post(format!("{}/v1/memories", rest.url))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&note)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "with the CSRF token");
    let shots = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/console");
    std::fs::create_dir_all(shots).unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(240),
        tokio::process::Command::new("node")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/console/e2e.mjs"
            ))
            .arg(format!("{tools}/node_modules/playwright-core"))
            .arg(&rest.url)
            .arg(&ana)
            .arg(&ben)
            .arg(shots)
            .output(),
    )
    .await
    .expect("the browser run finished")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    println!("{r:#}");
    assert_eq!(r["error"], Value::Null, "{r:#}");
    assert_eq!(r["pageErrors"], Value::Null, "{r:#}");
    assert_eq!(r["csp"], mnemo_api::http::console::CSP);
    assert!(
        !r["url_after_signin"].as_str().unwrap().contains("token"),
        "{r}"
    );
    assert_eq!(r["cookie"]["httpOnly"], true);
    assert_eq!(r["cookie"]["sameSite"], "Strict");
    assert_eq!(
        r["readable"],
        serde_json::json!({ "cookie": "", "local": 0, "session": 0 })
    );
    assert!(r["note"].as_str().unwrap().starts_with("Captured"), "{r}");
    assert!(
        r["recording"].as_str().unwrap().starts_with("Captured"),
        "{r}"
    );
    assert_eq!(r["note_shown"], 1);
    assert!(r["audio"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(r["grantee_read"], 200);
    assert_eq!(r["access_log"], true);
    assert!(r["revoked"].as_str().unwrap().contains("revoked"), "{r}");
    assert!(
        r["device"].as_str().unwrap().contains("Credentials issued"),
        "{r}"
    );
    assert!(
        r["device_revoked"].as_str().unwrap().contains("revoked"),
        "{r}"
    );
    assert!(r["verdict"].as_str().unwrap().starts_with("VALID"), "{r}");
    let tampered = r["tampered_verdict"].as_str().unwrap();
    let seq = r["tampered_seq"].as_u64().unwrap();
    assert!(
        tampered.starts_with(&format!("INVALID at seq {seq}: bad_signature")),
        "{tampered}"
    );
    assert!(r["erased_one"].as_str().unwrap().contains("erased"), "{r}");
    assert_eq!(
        r["erase_all_disabled"], true,
        "erase-all waits for its confirmation"
    );
    assert!(
        r["erased_all"]
            .as_str()
            .unwrap()
            .contains("Everything is erased"),
        "{r}"
    );
    for s in [
        "memories",
        "capture",
        "consent",
        "devices",
        "verify",
        "verify-tampered",
        "erasure",
    ] {
        assert!(
            std::path::Path::new(&format!("{shots}/{s}.png")).exists(),
            "{s}.png"
        );
    }
}

/// The browser's verifier (console/src/verify, bundled with esbuild, run by Node.js) holds
/// the spec's known answers (testdata/vectors.json: event bytes and hashes, the sample
/// chain, every invalid chain's code and seq, memory records, commitments, key ids) and
/// gives mnemo-audit's verdict, code and seq, on every bundle of testdata/bundles, valid
/// and tampered.
#[test]
fn the_browser_verifier_agrees_with_mnemo_audit_on_every_bundle() {
    let console = concat!(env!("CARGO_MANIFEST_DIR"), "/../console");
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("verifier.mjs");
    let built = std::process::Command::new(format!("{console}/node_modules/.bin/esbuild"))
        .arg(format!("{console}/src/verify/index.ts"))
        .args([
            "--bundle",
            "--format=esm",
            "--platform=neutral",
            "--log-level=warning",
        ])
        .arg(format!("--outfile={}", bundle.display()))
        .output()
        .expect("console/node_modules (scripts/setup.sh)");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let out = std::process::Command::new("node")
        .arg(format!("{console}/test/verifier.test.mjs"))
        .arg(&bundle)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    for (what, at_least) in [("vectors", 40), ("bundles", 31)] {
        let all = r[what].as_array().unwrap();
        let wrong: Vec<&Value> = all.iter().filter(|x| x["ok"] != true).collect();
        println!("{what}: {} checked, {} differ", all.len(), wrong.len());
        assert!(all.len() >= at_least, "{what}: {all:?}");
        assert!(wrong.is_empty(), "{what}: {wrong:#?}");
    }
}
