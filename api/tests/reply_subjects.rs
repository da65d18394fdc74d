//! mnemo answers a NATS request only inside its requester's own inbox space
//! (`mnemo_core::replies`), on every service it serves: the device services (ingest, read,
//! capture) and the processors' (fetch, submit, model, stale). A request whose reply
//! subject points at a chain, a bucket or a task queue is refused before any work: nothing
//! is published there, the chain and the registry stay as they were. Behind that rule, the
//! connection that answers cannot publish on mnemo's subjects at all (nats-server's own
//! permission check, `User::responder`).

mod support;

use async_nats::ConnectOptions;
use futures::StreamExt;
use mnemo_core::names::{Layout, PROCESSORS_BUCKET};
use mnemo_core::{ProcessorId, UserId};
use std::sync::Arc;
use std::time::Duration;
use support::hub;

/// Watches every forged reply subject (with an unrestricted service connection), sends
/// every request, then asserts that nothing arrived on any of them.
async fn unanswered(
    spy: &async_nats::Client,
    forged: &[String],
    requests: Vec<(
        async_nats::Client,
        String,
        async_nats::HeaderMap,
        &'static [u8],
    )>,
) {
    let mut watches = Vec::new();
    for reply in forged {
        watches.push(spy.subscribe(reply.clone()).await.unwrap());
    }
    spy.flush().await.unwrap();
    let mut sent = 0;
    for (from, subject, headers, body) in requests {
        for reply in forged {
            from.publish_with_reply_and_headers(
                subject.clone(),
                reply.clone(),
                headers.clone(),
                body.into(),
            )
            .await
            .unwrap();
            sent += 1;
        }
        from.flush().await.unwrap();
    }
    assert!(sent > 0);
    let mut all = futures::stream::select_all(watches);
    let got = tokio::time::timeout(Duration::from_secs(3), all.next()).await;
    assert!(
        got.is_err(),
        "answered on a forged reply: {:?}",
        got.ok().flatten().map(|m| (m.subject, m.payload))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_service_answers_outside_the_requesters_inbox() {
    let h = hub().await;
    let js = async_nats::jetstream::new(h.service.clone());
    let victim = UserId::new("victim1").unwrap();
    h.ledger.create_user(&victim).await.unwrap();
    let account = h.accounts.create(&victim).await.unwrap();
    let chain = Layout::PerUser.locate(&victim).subject;

    // The processors' endpoints, answered on the responder's connection as `mnemo serve`
    // does in operator mode.
    let processing = mnemo_processing::Processing::open(h.ledger.clone(), js.clone())
        .await
        .unwrap();
    let asr = ProcessorId::new("asr").unwrap();
    processing
        .registry
        .register(
            asr.clone(),
            "1".into(),
            vec!["audio".into()],
            vec!["transcript".into()],
        )
        .await
        .unwrap();
    let responder = ConnectOptions::with_credentials(&h.setup.responder_creds().unwrap())
        .unwrap()
        .connect(h.server.url())
        .await
        .unwrap();
    let check: mnemo_processing::responder::TokenCheck =
        Arc::new(|t: &str| (t == "asr-token").then(|| ProcessorId::new("asr").unwrap()));
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let (r, p) = (responder.clone(), processing.clone());
    tokio::spawn(async move { mnemo_processing::responder::serve(r, p, check, rx).await });
    let accounts = h
        .accounts
        .clone()
        .with_service_key(nkeys::KeyPair::from_seed(&h.setup.service.seed().unwrap()).unwrap());
    mnemo_api::sync_processor_accounts(&accounts, &processing.registry)
        .await
        .unwrap();
    let creds = accounts.processor_creds("asr", 3600).unwrap().unwrap();
    let proc_conn = ConnectOptions::with_credentials(&creds)
        .unwrap()
        .custom_inbox_prefix(mnemo_core::replies::processor_inbox("asr"))
        .connect(h.server.url())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let head = h.ledger.head(&victim).await.unwrap().unwrap();
    let registry = js.get_key_value(PROCESSORS_BUCKET).await.unwrap();
    let reg_before = registry.entry("asr").await.unwrap().unwrap().revision;
    let forged = [
        chain.clone(),
        "$KV.mnemo-processors.asr".to_owned(),
        format!("mnemo.task.asr.{victim}"),
        "_INBOX_trainer.x".to_owned(),
    ];

    // A positive control: in its own inbox, the processor is answered.
    let mut auth = async_nats::HeaderMap::new();
    auth.insert("Authorization", "Bearer asr-token");
    let ok = proc_conn
        .request_with_headers("mnemo.proc.asr.stale", auth.clone(), "".into())
        .await
        .unwrap();
    assert!(
        ok.headers
            .as_ref()
            .and_then(|h| h.get("Nats-Service-Error"))
            .is_none(),
        "{:?}",
        ok.payload
    );

    // The processor's four operations, with a token and without one, and the device
    // services as a bug elsewhere in the service account would send them, each with every
    // forged reply: never answered there. The processor's requests cross its account's
    // import, which rewrites every reply into the service account's response space, so an
    // answer can only return to the processor's own account; the forged device requests
    // are refused before any work (the forged ingest does not reach the chain).
    let mut requests = Vec::new();
    for op in ["fetch", "submit", "model", "stale"] {
        for headers in [auth.clone(), async_nats::HeaderMap::new()] {
            requests.push((
                proc_conn.clone(),
                format!("mnemo.proc.asr.{op}"),
                headers,
                &b"{}"[..],
            ));
        }
    }
    for service in ["mnemo.ingest", "mnemo.read", "mnemo.capture"] {
        let mut hd = async_nats::HeaderMap::new();
        hd.insert("Nats-Msg-Id", "forged-1");
        requests.push((
            h.service.clone(),
            format!("{service}.{account}"),
            hd,
            &br#"{"text": "forged"}"#[..],
        ));
    }
    unanswered(&h.service, &forged, requests).await;

    // The chain and the registry are unchanged.
    let after = h.ledger.head(&victim).await.unwrap().unwrap();
    assert_eq!((after.len, after.hash), (head.len, head.hash));
    assert_eq!(
        registry.entry("asr").await.unwrap().unwrap().revision,
        reg_before
    );
    let summary = h.ledger.verify_chain(&victim).await.unwrap();
    assert_eq!(summary.checkpoint.unwrap().seq.0, head.len);

    // Behind the rule: the responder's own credentials cannot publish on mnemo's subjects.
    let (resp, mut errors) =
        support::device(&h.server.url(), &h.setup.responder_creds().unwrap()).await;
    for subject in [
        chain.as_str(),
        "$KV.mnemo-processors.asr",
        "mnemo.task.asr.victim1",
        "$JS.API.STREAM.LIST",
    ] {
        resp.publish(subject.to_owned(), "x".into()).await.unwrap();
        resp.flush().await.unwrap();
        support::denied(&mut errors, subject).await;
    }
    let after = h.ledger.head(&victim).await.unwrap().unwrap();
    assert_eq!(after.len, head.len);
}
