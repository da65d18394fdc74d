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
    // A memory with a result derived from it by a processor (the lineage the timeline
    // shows): a processor registered, granted, fetching, and handing in a transcript.
    let admin = rest.auth.issue("admin", true, 600);
    let post = async |path: &str, token: &str, body: Value| -> Value {
        let r = http
            .post(format!("{}{path}", rest.url))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    };
    let reg = post(
        "/v1/processors",
        &admin,
        serde_json::json!({ "name": "asr", "version": "1" }),
    )
    .await;
    let processor = reg["token"].as_str().unwrap().to_owned();
    let mut seed = [0u8; 32];
    hex::decode_to_slice(reg["signing_seed"].as_str().unwrap(), &mut seed).unwrap();
    let key = mnemo_core::SigningKey::from_bytes(&seed);
    let memory = post(
        "/v1/memories",
        &ana,
        serde_json::json!({ "kind": "voice-note", "text": "a recorded thought" }),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let grant = post(
        "/v1/grants",
        &ana,
        serde_json::json!({ "processor": "asr" }),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let fetched = post(
        "/v1/processing/fetch",
        &processor,
        serde_json::json!({ "user": "ana", "grant": grant, "memory": memory }),
    )
    .await;
    let record = mnemo_core::MemoryRecord {
        kind: "transcript".into(),
        tags: vec![],
        captured_at: None,
        source: None,
        content_type: "text/plain".into(),
        content: mnemo_core::Content::Inline {
            bytes: b"A RECORDED THOUGHT".to_vec(),
        },
    };
    let salt = [7u8; 32];
    let c = mnemo_core::commitment::commit(&salt, &record.canonical_bytes());
    let msg = mnemo_core::processing::derived_signing_message(
        &mnemo_core::UserId::new("ana").unwrap(),
        &mnemo_core::GrantId::from_hex(&grant).unwrap(),
        &mnemo_core::ProcessorId::new("asr").unwrap(),
        "1",
        &[mnemo_core::MemoryId::from_hex(&memory).unwrap()],
        &c,
    );
    post(
        "/v1/processing/results",
        &processor,
        serde_json::json!({
            "user": "ana", "grant": grant, "version": "1", "inputs": [memory],
            "record": { "kind": "transcript", "content_type": "text/plain",
                        "content": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "A RECORDED THOUGHT") },
            "salt": hex::encode(salt), "signature": mnemo_core::processing::sign(&key, &msg),
        }),
    )
    .await;
    // A search model over that memory, so that a grantee can ask ana's model.
    let member = mnemo_core::processing::SetMember {
        seq: mnemo_core::Seq(fetched["seq"].as_u64().unwrap()),
        event_hash: mnemo_core::Hash32::from_hex(fetched["event_hash"].as_str().unwrap()).unwrap(),
    };
    let words = mnemo_core::search_index::term_counts("a recorded thought");
    let input = mnemo_core::MemoryId::from_hex(&memory).unwrap();
    let index = mnemo_core::search_index::SearchIndex::build([(input, member, &words)]);
    let object = serde_json::to_vec(&index).unwrap();
    let artifact = mnemo_core::Hash32(*blake3::hash(&object).as_bytes());
    let set = mnemo_core::TrainingSet::new(vec![member]).unwrap();
    let sig = mnemo_core::processing::sign(
        &key,
        &mnemo_core::processing::model_signing_message(&mnemo_core::processing::ModelClaim {
            user: &mnemo_core::UserId::new("ana").unwrap(),
            grant: &mnemo_core::GrantId::from_hex(&grant).unwrap(),
            processor: &mnemo_core::ProcessorId::new("asr").unwrap(),
            version: "1",
            artifact: &artifact,
            set_root: &set.root(),
            set_count: 1,
        }),
    );
    post(
        "/v1/processing/models",
        &processor,
        serde_json::json!({
            "user": "ana", "grant": grant, "version": "1", "artifact": artifact,
            "inputs": [memory], "signature": sig, "format": "mnemo-bm25-v1",
            "object": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &object),
        }),
    )
    .await;
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
    assert_eq!(
        r["lineage_shown"], true,
        "the transcript derived from the voice note: {r}"
    );
    assert!(r["audio"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(r["grantee_read"], 200);
    assert_eq!(r["access_log"], true);
    assert!(
        r["processor_reads"].as_u64() >= Some(1),
        "the access log shows the ASR worker's fetch: {r}"
    );
    assert!(r["revoked"].as_str().unwrap().contains("revoked"), "{r}");
    // The time capsule: created from the form with ask, shown as not open yet with its
    // date, and the grantee's read before it opens is refused.
    assert!(r["capsule"].as_str().unwrap().contains("Granted"), "{r}");
    assert!(
        r["capsule_shown"]
            .as_str()
            .unwrap()
            .starts_with("a time capsule: opens on"),
        "{r}"
    );
    assert_eq!(r["capsule_asks"], true, "{r}");
    assert_eq!(r["capsule_read"], 403, "{r}");
    // The erasure list names each memory: its kind, a date and the start of its text.
    let named = r["erasure_named"].as_str().unwrap();
    assert!(
        named.starts_with("note") && named.contains("“a note typed with the keyboard"),
        "{r}"
    );
    // The grantee's side: "Shared with me" lists the capsule as not open yet, opens ana's
    // memories and asks her model; the answer quotes the memory it cites.
    assert!(
        r["shared_capsule"]
            .as_str()
            .unwrap()
            .contains("a time capsule: opens on"),
        "{r}"
    );
    assert!(
        r["answer"]
            .as_str()
            .unwrap()
            .contains("Answered from 1 memory"),
        "{r}"
    );
    assert!(
        r["answer"].as_str().unwrap().contains("a recorded thought"),
        "{r}"
    );
    // The owner's access log tells it in plain words: who asked what, and what it cited.
    let asked = r["question_logged"].as_str().unwrap();
    assert!(
        asked.contains("ben asked your model “recorded thought”")
            && asked.contains("cited 1 memory"),
        "{r}"
    );
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
    assert_eq!(r["switch_prompt"], true, "{r}");
    assert_eq!(
        r["user_after_link"], r["user_before_link"],
        "a sign-in link switched accounts silently: {r}"
    );
    assert_eq!(r["prompt_gone"], true);
    assert_eq!(r["cookie_is_session"], true);
    assert_eq!(r["before_signout"], 200);
    assert_eq!(
        r["old_as_bearer"], 401,
        "the signed-out session still works: {r}"
    );
    assert_eq!(
        r["old_as_cookie"], 401,
        "the signed-out cookie still works: {r}"
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
    for (what, at_least) in [("vectors", 40), ("bundles", 32)] {
        let all = r[what].as_array().unwrap();
        let wrong: Vec<&Value> = all.iter().filter(|x| x["ok"] != true).collect();
        println!("{what}: {} checked, {} differ", all.len(), wrong.len());
        assert!(all.len() >= at_least, "{what}: {all:?}");
        assert!(wrong.is_empty(), "{what}: {wrong:#?}");
    }
}
