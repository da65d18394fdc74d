//! Every user is a NATS account: real nats-server processes in operator mode (full
//! resolver), the isolation matrix with device credentials, revocation and expiry, 1,000
//! accounts pushed, and a leaf node that forwards a device's ingest to the hub.
//! Every denial is asserted from the server's own error, never from a timeout.

mod support;

use async_nats::{ConnectOptions, Event};
use mnemo_accounts::{UserAccount, device_creds, push_account, user_account_jwt};
use mnemo_core::{ChainVerifier, Seq, SigningKey, UserId};
use mnemo_testkit::{NatsOptions, NatsServer};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{denied, device, hub};
use tokio::sync::mpsc;

async fn ingest(c: &async_nats::Client, body: Value) -> Value {
    let r = c
        .request("mnemo.ingest", serde_json::to_vec(&body).unwrap().into())
        .await
        .unwrap();
    serde_json::from_slice(&r.payload).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_matrix_revocation_expiry_and_a_leaf_node() {
    let h = hub().await;
    let (alice, bob) = (UserId::new("alice").unwrap(), UserId::new("bob").unwrap());
    for u in [&alice, &bob] {
        h.ledger.create_user(u).await.unwrap();
        h.accounts.create(u).await.unwrap();
    }
    let url = h.server.url();
    let (_, a_creds) = h
        .accounts
        .issue_device(&alice, "alice-phone", 3600)
        .await
        .unwrap();
    let (_, b_creds) = h
        .accounts
        .issue_device(&bob, "bob-laptop", 3600)
        .await
        .unwrap();
    let (a, mut a_err) = device(&url, &a_creds).await;
    let (b, _b_err) = device(&url, &b_creds).await;

    // A ingests into A's chain; a forged user id in the payload changes nothing.
    let r = ingest(
        &a,
        json!({ "text": "from alice's phone", "tags": ["phone"] }),
    )
    .await;
    assert_eq!(
        (r["user"].as_str(), r["seq"].as_u64()),
        (Some("alice"), Some(2)),
        "{r}"
    );
    // The reply carries the custody receipt: it verifies alone under the custody key.
    let receipt: mnemo_core::CustodyReceipt =
        serde_json::from_value(r["custody"].clone()).expect("a custody receipt");
    let custody = mnemo_core::PublicKey(SigningKey::from_bytes(&[6; 32]).verifying_key());
    let (event, hash) = receipt.verify(&custody).unwrap();
    assert_eq!((event.user.as_str(), event.seq.0), ("alice", 2));
    assert_eq!(r["event_hash"], hash.to_string());
    let r = ingest(&a, json!({ "text": "pretending to be bob", "user": "bob" })).await;
    assert_eq!(r["user"], "alice", "{r}");
    let r = ingest(&b, json!({ "text": "bob's own" })).await;
    assert_eq!(r["user"], "bob");
    assert_eq!(h.ledger.head(&alice).await.unwrap().unwrap().len, 3);
    assert_eq!(h.ledger.head(&bob).await.unwrap().unwrap().len, 2);
    // `Nats-Msg-Id` is the idempotency key, scoped to the user: a retry appends nothing and
    // answers the original receipt; the same id with other content is a typed refusal;
    // another user's message with the same id lands.
    let with_id = async |c: &async_nats::Client, id: &str, text: &str| {
        let mut hd = async_nats::HeaderMap::new();
        hd.insert("Nats-Msg-Id", id);
        let body = serde_json::to_vec(&json!({ "text": text })).unwrap();
        c.request_with_headers("mnemo.ingest", hd, body.into())
            .await
            .unwrap()
    };
    let first: Value = serde_json::from_slice(&with_id(&a, "cap-1", "once").await.payload).unwrap();
    let again: Value = serde_json::from_slice(&with_id(&a, "cap-1", "once").await.payload).unwrap();
    assert_eq!(
        (first["duplicate"].as_bool(), again["duplicate"].as_bool()),
        (Some(false), Some(true)),
        "{first} {again}"
    );
    assert_eq!(first["seq"], again["seq"]);
    let reused = with_id(&a, "cap-1", "other content").await;
    let code = reused
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Service-Error-Code"))
        .map(|v| v.as_str().to_owned());
    assert_eq!(
        code.as_deref(),
        Some("422"),
        "{:?}",
        String::from_utf8_lossy(&reused.payload)
    );
    let bobs: Value =
        serde_json::from_slice(&with_id(&b, "cap-1", "bob's capture").await.payload).unwrap();
    assert_eq!(
        (bobs["user"].as_str(), bobs["duplicate"].as_bool()),
        (Some("bob"), Some(false))
    );
    assert_eq!(h.ledger.head(&alice).await.unwrap().unwrap().len, 4);
    assert_eq!(h.ledger.head(&bob).await.unwrap().unwrap().len, 3);
    // (alice's chain: 4 events from here on, bob's 3.)
    // A refusal has the NATS services error shape and the REST problem body; nothing is
    // written.
    let r = a
        .request(
            "mnemo.ingest",
            br#"{"txt": "no text field"}"#.to_vec().into(),
        )
        .await
        .unwrap();
    let headers = r.headers.as_ref().expect("error headers");
    assert_eq!(
        headers.get("Nats-Service-Error-Code").map(|v| v.as_str()),
        Some("400")
    );
    let detail = headers
        .get("Nats-Service-Error")
        .unwrap()
        .as_str()
        .to_owned();
    let problem: Value = serde_json::from_slice(&r.payload).unwrap();
    assert_eq!(problem["type"], "https://mnemo.dev/problems/bad-request");
    assert_eq!(problem["status"], 400);
    assert_eq!(problem["detail"].as_str(), Some(detail.as_str()));
    assert!(detail.contains("missing field `text`"), "{detail}");
    assert_eq!(h.ledger.head(&alice).await.unwrap().unwrap().len, 4);
    // A read past the end answers at once, or after `wait_ms` for a long poll.
    for (body, within) in [
        (r#"{"from": 1000}"#, Duration::from_secs(3)),
        (r#"{"from": 1000, "wait_ms": 300}"#, Duration::from_secs(3)),
    ] {
        let t = Instant::now();
        let r = tokio::time::timeout(
            within,
            a.request("mnemo.read", body.as_bytes().to_vec().into()),
        )
        .await
        .expect("a read past the end is answered")
        .unwrap();
        let page: Value = serde_json::from_slice(&r.payload).unwrap();
        assert_eq!(page["events"], json!([]), "{page}");
        assert!(t.elapsed() < within);
    }
    // A reads A's chain over NATS, and it verifies.
    let r = a
        .request("mnemo.read", br#"{"from": 1}"#.to_vec().into())
        .await
        .unwrap();
    let page: Value = serde_json::from_slice(&r.payload).unwrap();
    assert_eq!(page["user"], "alice");
    let mut v = ChainVerifier::new(alice.clone());
    for e in page["events"].as_array().unwrap() {
        v.push_wire(&hex::decode(e["wire"].as_str().unwrap()).unwrap())
            .unwrap();
    }
    assert_eq!(v.finish().unwrap().checkpoint.unwrap().seq, Seq(4));
    // Following: a long poll at the next seq returns the event once it is appended.
    let follow = {
        let a = a.clone();
        tokio::spawn(async move {
            let r = a
                .request(
                    "mnemo.read",
                    br#"{"from": 5, "wait_ms": 10000}"#.to_vec().into(),
                )
                .await
                .unwrap();
            serde_json::from_slice::<Value>(&r.payload).unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = ingest(&b, json!({ "text": "bob writes meanwhile" })).await;
    assert_eq!(r["user"], "bob");
    let r = ingest(&a, json!({ "text": "followed" })).await;
    assert_eq!(r["seq"], 5);
    let page = follow.await.unwrap();
    assert_eq!(page["events"][0]["seq"], 5, "{page}");

    // What A may not do, each refused by the server itself.
    let b_acct = {
        // bob's account key, as an attacker might learn it
        let sys_view = h.accounts.clone();
        let _ = sys_view;
        let creds_jwt = b_creds.lines().nth(1).unwrap().to_owned();
        let claims: Value = serde_json::from_slice(
            &base64::Engine::decode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                creds_jwt.split('.').nth(1).unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        claims["nats"]["issuer_account"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let b_ingest = format!("mnemo.ingest.{b_acct}");
    a.publish(b_ingest.clone(), "x".into()).await.unwrap();
    denied(&mut a_err, &format!("publish to \"{b_ingest}\"")).await;
    for subject in [
        "mnemo.chain.>",
        "mnemo.chain.u.bob",
        "$JS.API.>",
        "mnemo.ingest.*",
    ] {
        let _sub = a.subscribe(subject).await.unwrap();
        denied(&mut a_err, &format!("subscription to \"{subject}\"")).await;
    }
    for subject in [
        "$JS.API.STREAM.CREATE.STEAL",
        "$JS.API.STREAM.MSG.GET.MNEMO-CHAIN-bob",
        "$JS.API.DIRECT.GET.MNEMO-CHAIN-bob",
        "$KV.mnemo-keys.g.bob.1",
    ] {
        a.publish(subject, "{}".into()).await.unwrap();
        denied(&mut a_err, &format!("publish to \"{subject}\"")).await;
    }
    assert_eq!(
        h.ledger.head(&bob).await.unwrap().unwrap().len,
        4,
        "nothing reached bob"
    );

    // Revoked and expired credentials are refused at connect.
    let (dev2, creds2) = h
        .accounts
        .issue_device(&alice, "alice-old-tablet", 3600)
        .await
        .unwrap();
    let (c2, _) = device(&url, &creds2).await;
    drop(c2);
    h.accounts.revoke_device(&alice, &dev2).await.unwrap();
    let refused = ConnectOptions::with_credentials(&creds2)
        .unwrap()
        .connect(url.clone())
        .await;
    assert!(
        matches!(&refused, Err(e) if e.kind() == async_nats::ConnectErrorKind::AuthorizationViolation),
        "revoked: {refused:?}"
    );
    let acct = UserAccount {
        account: nkeys::KeyPair::new_account(),
        scoped: nkeys::KeyPair::new_account(),
        revocations: vec![],
    };
    let (_, expired) = device_creds(&acct, "never-valid", -60).unwrap();
    push_account(
        &ConnectOptions::with_credentials(&h.setup.system_creds().unwrap())
            .unwrap()
            .connect(url.clone())
            .await
            .unwrap(),
        &user_account_jwt(
            &h.setup.signing,
            &h.setup.service.public_key(),
            "carol",
            &acct,
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let refused = ConnectOptions::with_credentials(&expired)
        .unwrap()
        .connect(url.clone())
        .await;
    assert!(
        matches!(&refused, Err(e) if e.kind() == async_nats::ConnectErrorKind::AuthorizationViolation),
        "expired: {refused:?}"
    );
    // A's still-valid device keeps working after another device's revocation.
    let r = ingest(&a, json!({ "text": "still here" })).await;
    assert_eq!(r["seq"], 6);

    // A leaf node connected with A's device creds forwards A's ingest to the hub.
    let creds_file = h.server.dir().join("alice-leaf.creds");
    std::fs::write(&creds_file, &a_creds).unwrap();
    let leaf = NatsServer::start_with(NatsOptions {
        extra_config: format!(
            "leafnodes {{ remotes: [{{ url: \"nats-leaf://127.0.0.1:{}\", credentials: \"{}\" }}] }}\n",
            h.leaf_port,
            creds_file.display()
        ),
        jetstream_domain: Some("edge".into()),
        ..Default::default()
    });
    let edge = async_nats::connect(leaf.url()).await.unwrap();
    let t = Instant::now();
    let r = loop {
        // the leaf connection comes up asynchronously
        match edge
            .request(
                "mnemo.ingest",
                br#"{"text": "from the edge box", "user": "bob"}"#.to_vec().into(),
            )
            .await
        {
            Ok(m) => break serde_json::from_slice::<Value>(&m.payload).unwrap(),
            Err(e) => {
                assert!(
                    t.elapsed() < Duration::from_secs(20),
                    "leaf never forwarded: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(
        (r["user"].as_str(), r["seq"].as_u64()),
        (Some("alice"), Some(7)),
        "{r}"
    );
    assert_eq!(h.ledger.head(&bob).await.unwrap().unwrap().len, 4);
    h.ledger.verify_chain(&alice).await.unwrap();
    h.ledger.verify_chain(&bob).await.unwrap();
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_accounts_created_and_pushed() {
    let h = hub().await;
    let n = 1000;
    let t = Instant::now();
    for i in 0..n {
        h.accounts
            .create(&UserId::new(format!("user{i}")).unwrap())
            .await
            .unwrap();
    }
    let per = t.elapsed().as_secs_f64() * 1000.0 / n as f64;
    println!("{n} accounts created, sealed and pushed: {per:.2} ms per account");
    // the last one works: a device of it connects and is wired to the ingest service
    let u = UserId::new(format!("user{}", n - 1)).unwrap();
    h.ledger.create_user(&u).await.unwrap();
    let (_, creds) = h.accounts.issue_device(&u, "d", 600).await.unwrap();
    let (c, _) = device(&h.server.url(), &creds).await;
    let r = ingest(&c, json!({ "text": "hello" })).await;
    assert_eq!(r["user"], u.as_str());
    let files = std::fs::read_dir(h.jwt_dir.path()).unwrap().count();
    assert!(
        files >= n,
        "the full resolver stored every account ({files} files)"
    );
}

/// Devices through the REST API: `POST /v1/users` creates the account, `POST
/// /v1/users/{id}/devices` issues creds that any NATS client uses, a memory sent over NATS
/// shows in `GET /v1/memories` (one append path), `DELETE` revokes the device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_over_the_rest_api() {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;
    let h = hub().await;
    let views = mnemo_testkit::PgViews::start().await;
    let service = ConnectOptions::with_credentials(&h.setup.service_creds().unwrap())
        .unwrap()
        .connect(h.server.url())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(service);
    let _projector = views.project(&js, &h.ledger);
    let auth = mnemo_api::auth::Auth::new(&SigningKey::from_bytes(&[7; 32]), "mnemo", "mnemo-api");
    let router = mnemo_api::http::router(std::sync::Arc::new(mnemo_api::http::Api {
        ledger: h.ledger.clone(),
        views: mnemo_projections::Views::from_pool(views.pool.clone()),
        js: js.clone(),
        auth: auth.clone(),
        cfg: Default::default(),
        stats: Default::default(),
        accounts: Some(h.accounts.clone()),
        processing: mnemo_processing::Processing::open(h.ledger.clone(), js)
            .await
            .unwrap(),
        sessions: Default::default(),
    }));
    let call = |method: &str, path: &str, token: &str, body: Option<Value>| {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.map(|b| b.to_string()).unwrap_or_default()))
            .unwrap();
        let router = router.clone();
        async move {
            let r = router.oneshot(req).await.unwrap();
            let status = r.status();
            let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
                .await
                .unwrap();
            (
                status,
                serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
            )
        }
    };
    let admin = auth.issue("admin", true, 600);
    let (st, v) = call("POST", "/v1/users", &admin, Some(json!({ "id": "dana" }))).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert!(v["nats_account"].as_str().unwrap().starts_with('A'));
    let dana = v["token"].as_str().unwrap().to_owned();
    let (st, _) = call("POST", "/v1/users", &admin, Some(json!({ "id": "eve" }))).await;
    assert_eq!(st, StatusCode::CREATED);
    let eve = auth.issue("eve", false, 600);
    // eve may not get creds for dana's account
    let (st, _) = call(
        "POST",
        "/v1/users/dana/devices",
        &eve,
        Some(json!({ "name": "x" })),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, v) = call(
        "POST",
        "/v1/users/dana/devices",
        &dana,
        Some(json!({ "name": "dana-watch", "ttl_secs": 3600 })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let device = v["device"].as_str().unwrap().to_owned();
    let creds = v["creds"].as_str().unwrap().to_owned();
    let (c, _) = self::device(&h.server.url(), &creds).await;
    let r = ingest(
        &c,
        json!({ "text": "heard on the watch", "tags": ["watch"] }),
    )
    .await;
    assert_eq!(r["user"], "dana");
    let t = Instant::now();
    loop {
        let (st, v) = call("GET", "/v1/memories?tag=watch", &dana, None).await;
        assert_eq!(st, StatusCode::OK);
        if v["items"].as_array().unwrap().len() == 1 {
            assert_eq!(v["items"][0]["id"], r["id"]);
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (st, _) = call(
        "DELETE",
        &format!("/v1/users/dana/devices/{device}"),
        &dana,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    drop(c);
    let refused = ConnectOptions::with_credentials(&creds)
        .unwrap()
        .connect(h.server.url())
        .await;
    assert!(
        matches!(&refused, Err(e) if e.kind() == async_nats::ConnectErrorKind::AuthorizationViolation),
        "revoked: {refused:?}"
    );
    let (st, _) = call("DELETE", "/v1/users/dana/devices/not-a-key", &dana, None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

/// A processor's NATS credentials (operator mode) are a user of the processor's own
/// account: it takes tasks on `mnemo.work.<name>` as a queue group and answers them, and
/// calls `mnemo.proc.<name>.*`, both through imports; every reply subject it names reaches
/// mnemo rewritten into the import's response space; it is refused another processor's
/// subjects and the chains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processor_credentials_reach_only_the_processors_subjects() {
    use futures::StreamExt;
    use mnemo_accounts::processors::ProcessorState;
    let h = hub().await;
    let accounts = h
        .accounts
        .clone()
        .with_service_key(nkeys::KeyPair::from_seed(&h.setup.service.seed().unwrap()).unwrap());
    let live = |name| ProcessorState {
        name,
        revoked: false,
    };
    accounts
        .sync_processor_states(&[live("asr"), live("trainer")])
        .await
        .unwrap();
    let creds = accounts
        .processor_creds("asr", 3600)
        .unwrap()
        .expect("creds");
    let (tx, mut errors) = mpsc::unbounded_channel();
    let worker = ConnectOptions::with_credentials(&creds)
        .unwrap()
        .custom_inbox_prefix(mnemo_accounts::claims::processor_inbox("asr"))
        .event_callback(move |e| {
            let tx = tx.clone();
            async move {
                if let Event::ServerError(err) = e {
                    let _ = tx.send(err.to_string());
                }
            }
        })
        .connect(h.server.url())
        .await
        .unwrap();
    let service = ConnectOptions::with_credentials(&h.setup.service_creds().unwrap())
        .unwrap()
        .connect(h.server.url())
        .await
        .unwrap();
    // The worker takes a task and answers it.
    let mut tasks = worker
        .queue_subscribe("mnemo.work.asr", "asr".into())
        .await
        .unwrap();
    let w = worker.clone();
    tokio::spawn(async move {
        while let Some(m) = tasks.next().await {
            if let Some(r) = m.reply {
                w.publish(r, "done".into()).await.unwrap();
            }
        }
    });
    // mnemo answers the worker's requests on its own subjects.
    let mut calls = service.subscribe("mnemo.proc.*.fetch").await.unwrap();
    let (seen_tx, mut seen_replies) = mpsc::unbounded_channel();
    let s = service.clone();
    tokio::spawn(async move {
        while let Some(m) = calls.next().await {
            if let Some(r) = m.reply {
                let _ = seen_tx.send(r.to_string());
                s.publish(r, m.subject.as_str().to_owned().into())
                    .await
                    .unwrap();
            }
        }
    });
    // Its notices, and only its own, reach it through its account's stream import.
    let mut notices = worker.subscribe("mnemo.notice.asr").await.unwrap();
    worker.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    service
        .publish("mnemo.notice.trainer", "not yours".into())
        .await
        .unwrap();
    service
        .publish("mnemo.notice.asr", "stale".into())
        .await
        .unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), notices.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&n.payload[..], b"stale");
    let answer = service
        .request("mnemo.work.asr", "task".into())
        .await
        .unwrap();
    assert_eq!(&answer.payload[..], b"done");
    let r = worker
        .request("mnemo.proc.asr.fetch", "{}".into())
        .await
        .unwrap();
    assert_eq!(&r.payload[..], b"mnemo.proc.asr.fetch");
    assert!(seen_replies.recv().await.unwrap().starts_with("_R_."));
    // A reply subject the worker chooses never reaches mnemo as such: the import rewrites
    // it into the service account's response space, whatever it names.
    let mut victim = service.subscribe("mnemo.chain.u.victim1").await.unwrap();
    for forged in [
        "mnemo.chain.u.victim1",
        "$KV.mnemo-processors.trainer",
        "mnemo.task.asr.demo",
    ] {
        worker
            .publish_with_reply("mnemo.proc.asr.fetch", forged, "{}".into())
            .await
            .unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), seen_replies.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(reply.starts_with("_R_."), "{forged} arrived as {reply}");
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(500), victim.next())
            .await
            .is_err(),
        "an answer reached a chain subject"
    );
    // Another processor's subjects and the chains are out of reach.
    let denied = tokio::time::timeout(
        Duration::from_secs(2),
        worker.request("mnemo.proc.summarizer.fetch", "{}".into()),
    )
    .await;
    assert!(
        !matches!(denied, Ok(Ok(_))),
        "another processor's subject answered"
    );
    let _sneak = worker.subscribe("mnemo.work.summarizer").await.unwrap();
    let _chains = worker.subscribe("mnemo.chain.>").await.unwrap();
    worker.flush().await.unwrap();
    let t = Instant::now();
    let mut seen = Vec::new();
    while seen.len() < 2 && t.elapsed() < Duration::from_secs(5) {
        if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(500), errors.recv()).await {
            seen.push(e);
        }
    }
    let all = seen.join(" | ").to_lowercase();
    assert!(all.contains("permissions violation"), "{all}");
    assert!(
        all.contains("mnemo.proc.summarizer.fetch") || all.contains("mnemo.work.summarizer"),
        "{all}"
    );

    // Revoked: the processor's connection is closed at once, and its credentials (issued
    // before the revocation) are refused on a real reconnect.
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let watched = ConnectOptions::with_credentials(&creds)
        .unwrap()
        .custom_inbox_prefix(mnemo_accounts::claims::processor_inbox("asr"))
        .event_callback(move |e| {
            let tx = events_tx.clone();
            async move {
                let _ = tx.send(e.to_string());
            }
        })
        .connect(h.server.url())
        .await
        .unwrap();
    watched.flush().await.unwrap();
    let other = accounts.processor_creds("trainer", 3600).unwrap().unwrap();
    accounts
        .sync_processor_states(&[
            ProcessorState {
                name: "asr",
                revoked: true,
            },
            live("trainer"),
        ])
        .await
        .unwrap();
    let t = Instant::now();
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|e: &String| e.to_lowercase().contains("disconnected"))
        && t.elapsed() < Duration::from_secs(10)
    {
        if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(500), events.recv()).await {
            seen.push(e);
        }
    }
    assert!(
        seen.iter()
            .any(|e| e.to_lowercase().contains("disconnected")),
        "the revoked processor stayed connected: {seen:?}"
    );
    let again = ConnectOptions::with_credentials(&creds)
        .unwrap()
        .connect(h.server.url())
        .await;
    assert!(again.is_err(), "the revoked credentials connected again");
    // Another processor is untouched.
    ConnectOptions::with_credentials(&other)
        .unwrap()
        .connect(h.server.url())
        .await
        .expect("another processor's credentials still work");
    drop(watched);
}

/// `docs/asyncapi.yaml` against the server: the subjects it serves, and real replies (a
/// receipt, a retry's, a long poll's page, refusals with their headers) and requests
/// validated against the document's message schemas by `scripts/check-asyncapi.py`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_asyncapi_document_matches_what_the_server_answers() {
    let h = hub().await;
    let carol = UserId::new("carol").unwrap();
    h.ledger.create_user(&carol).await.unwrap();
    h.accounts.create(&carol).await.unwrap();
    let (_, creds) = h
        .accounts
        .issue_device(&carol, "carol-phone", 3600)
        .await
        .unwrap();
    let (c, _errors) = device(&h.server.url(), &creds).await;
    let headers_of = |m: &async_nats::Message| -> Value {
        let mut out = serde_json::Map::new();
        if let Some(hd) = &m.headers {
            for (k, v) in hd.iter() {
                let v = v.first().map(|v| v.as_str().to_owned()).unwrap_or_default();
                out.insert(k.to_string(), Value::String(v));
            }
        }
        Value::Object(out)
    };
    let mut messages = Vec::new();
    let mut sample = |channel: &str, message: &str, m: &async_nats::Message| {
        messages.push(json!({
            "channel": channel, "message": message, "headers": headers_of(m),
            "payload": serde_json::from_slice::<Value>(&m.payload).unwrap(),
        }));
    };
    let request = json!({ "text": "a capture", "tags": ["voice"], "captured_at": 1_764_115_200_000i64, "source": "phone" });
    let mut hd = async_nats::HeaderMap::new();
    hd.insert("Nats-Msg-Id", "capture-1");
    let body = serde_json::to_vec(&request).unwrap();
    let first = c
        .request_with_headers("mnemo.ingest", hd.clone(), body.clone().into())
        .await
        .unwrap();
    sample("mnemo.ingest", "ingestReply", &first);
    let again = c
        .request_with_headers("mnemo.ingest", hd.clone(), body.into())
        .await
        .unwrap();
    sample("mnemo.ingest", "ingestReply", &again);
    let other = serde_json::to_vec(&json!({ "text": "other content" })).unwrap();
    let reused = c
        .request_with_headers("mnemo.ingest", hd.clone(), other.into())
        .await
        .unwrap();
    sample("mnemo.ingest", "error", &reused);
    let bad = c
        .request("mnemo.ingest", br#"{"txt": 1}"#.to_vec().into())
        .await
        .unwrap();
    sample("mnemo.ingest", "error", &bad);
    let page = c
        .request("mnemo.read", br#"{"from": 1, "limit": 10}"#.to_vec().into())
        .await
        .unwrap();
    sample("mnemo.read", "readReply", &page);
    let bad_read = c
        .request("mnemo.read", br#"{"from": "one"}"#.to_vec().into())
        .await
        .unwrap();
    sample("mnemo.read", "error", &bad_read);
    // Durable capture: the stream's PubAck, and a JetStream API error for a capture
    // without an id.
    let mut hd = async_nats::HeaderMap::new();
    hd.insert("Nats-Msg-Id", "capture-2");
    let ack = c
        .request_with_headers(
            "mnemo.capture",
            hd,
            br#"{"text": "durable"}"#.to_vec().into(),
        )
        .await
        .unwrap();
    sample("mnemo.capture", "pubAck", &ack);
    let no_id = c
        .request("mnemo.capture", br#"{"text": "no id"}"#.to_vec().into())
        .await
        .unwrap();
    sample("mnemo.capture", "jsError", &no_id);
    // A chunked upload: a chunk's answer, then the receipt.
    let chunk = |n: &str, last: bool, body: &'static [u8]| {
        let mut hd = async_nats::HeaderMap::new();
        hd.insert("Mnemo-Upload", "rec-1");
        hd.insert("Mnemo-Chunk", n);
        if n == "0" {
            hd.insert("Mnemo-Content-Type", "audio/wav");
        }
        if last {
            let hash = blake3::hash(b"0123456789abcdef");
            hd.insert("Mnemo-Last", "true");
            hd.insert(
                "Mnemo-Content-Hash",
                format!("blake3:{}", hash.to_hex()).as_str(),
            );
        }
        c.request_with_headers("mnemo.ingest", hd, body.to_vec().into())
    };
    sample(
        "mnemo.ingest",
        "uploadReply",
        &chunk("0", false, b"01234567").await.unwrap(),
    );
    let done = chunk("1", true, b"89abcdef").await.unwrap();
    sample("mnemo.ingest", "ingestReply", &done);
    let out_of_order = chunk("5", false, b"x").await.unwrap();
    sample("mnemo.ingest", "error", &out_of_order);
    // A publish without a reply is refused and kept: the rejects reply.
    c.publish("mnemo.ingest", br#"{"text": "no reply"}"#.to_vec().into())
        .await
        .unwrap();
    c.flush().await.unwrap();
    let t = Instant::now();
    let rejects = loop {
        let r = c
            .request("mnemo.read", br#"{"rejects": true}"#.to_vec().into())
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&r.payload).unwrap();
        if v["rejects"].as_array().is_some_and(|a| !a.is_empty())
            || t.elapsed() > Duration::from_secs(10)
        {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    sample("mnemo.read", "rejectsReply", &rejects);
    // The requests as sent, against the request schemas (the signed form too).
    messages.push(
        json!({ "channel": "mnemo.ingest", "message": "ingestRequest",
                          "headers": { "Nats-Msg-Id": "capture-1" }, "payload": request }),
    );
    let signed = json!({ "text": "signed", "stream": "voice", "counter": 7,
        "device_key": "11".repeat(32), "salt": "22".repeat(32), "signature": "33".repeat(64) });
    messages.push(
        json!({ "channel": "mnemo.capture", "message": "ingestRequest",
                          "headers": { "Nats-Msg-Id": "voice-7" }, "payload": signed }),
    );
    messages.push(json!({ "channel": "mnemo.read", "message": "readRequest",
                          "headers": {}, "payload": { "from": 1, "limit": 10 } }));
    messages.push(json!({ "channel": "mnemo.ingest", "message": "uploadChunk",
                          "headers": { "Mnemo-Upload": "rec-1", "Mnemo-Chunk": "0", "Mnemo-Content-Type": "audio/wav" }, "payload": "<binary>" }));
    let dir = tempfile::tempdir().unwrap();
    let samples = dir.path().join("samples.json");
    // What a user's account can reach: the local subjects of its imports, as the account
    // JWT the resolver holds says.
    let mut served: Vec<String> = Vec::new();
    for f in std::fs::read_dir(h.jwt_dir.path()).unwrap() {
        let jwt = std::fs::read_to_string(f.unwrap().path()).unwrap_or_default();
        let Some(claims) = jwt.split('.').nth(1) else {
            continue;
        };
        let Ok(raw) =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims)
        else {
            continue;
        };
        let v: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        if v["name"] == "carol" {
            for i in v["nats"]["imports"].as_array().unwrap() {
                served.push(i["local_subject"].as_str().unwrap().to_owned());
            }
        }
    }
    assert!(!served.is_empty(), "carol's account JWT in the resolver");
    std::fs::write(
        &samples,
        serde_json::to_vec_pretty(&json!({ "subjects": served, "messages": messages })).unwrap(),
    )
    .unwrap();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let python = std::env::var("MNEMO_PYTHON").expect("MNEMO_PYTHON (scripts/setup.sh)");
    let out = std::process::Command::new(python)
        .arg(format!("{root}/scripts/check-asyncapi.py"))
        .arg(format!("{root}/docs/asyncapi.yaml"))
        .arg(&samples)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("16 real messages on 3 channels"), "{text}");

    // A user's own device credentials are enough for an audit of their chain: through
    // `mnemo.read` (`mnemo-audit verify --nats --user --via-read`), to a verdict.
    let audit = async |user: &str| {
        let (tx, rx) = std::sync::mpsc::sync_channel(1024);
        tokio::spawn(mnemo_audit::online::send_items_via_read(
            c.clone(),
            UserId::new(user).unwrap(),
            mnemo_core::TimestampMs(0),
            tx,
        ));
        tokio::task::spawn_blocking(move || {
            mnemo_audit::verify_items(rx.into_iter(), &mnemo_audit::Options::default())
        })
        .await
        .unwrap()
    };
    let outcome = audit("carol").await.unwrap();
    assert!(outcome.valid(), "{:?}", outcome.failure);
    let len = h.ledger.head(&carol).await.unwrap().unwrap().len;
    assert_eq!(outcome.summary.events, len);
    // Asking for someone else's chain with carol's credentials is an error, not a verdict.
    let err = audit("dave")
        .await
        .expect_err("carol's credentials read carol's chain");
    assert!(err.to_string().contains("another user"), "{err}");
}
