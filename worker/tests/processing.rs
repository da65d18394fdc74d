//! Processing under consent against a real nats-server and PostgreSQL, with real worker
//! processes (`mnemo-noop-worker`): the work queue without workers, two workers and a
//! SIGKILL, consent and revocation, bad results, three-level lineage and erasure, models
//! and training-set proofs, restarts with tasks pending, dead letters, and what the
//! auditor says about a planted result.

mod support;

use mnemo_core::processing::{self, ModelClaim, Verdict};
use mnemo_core::{EventBody, GrantId, Hash32, MemoryId, ProcessorId, Seq, SigningKey};
use mnemo_processing::protocol::{FetchRequest, ModelRequest, Task};
use std::time::Duration;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_memories_wait_for_workers_and_each_is_processed_once_through_a_sigkill() {
    let mut h = harness().await;
    let alice = user("alice");
    h.stack.ledger.create_user(&alice).await.unwrap();
    let key = h.register("noop", &["note"]).await;
    h.grant(&alice, "noop", &["note"]).await;
    h.start(fast()).await;
    // No worker runs while 1,000 memories are ingested.
    let mut inputs = std::collections::HashSet::new();
    for chunk in (0..1000).collect::<Vec<_>>().chunks(100) {
        let appends = chunk
            .iter()
            .map(|i| h.stack.ledger.append(&alice, mnemo_testkit::note(*i)));
        for r in futures::future::join_all(appends).await {
            inputs.insert(r.unwrap().memory.unwrap());
        }
    }
    wait_for("1,000 tasks queued", Duration::from_secs(60), || async {
        h.queued().await == 1000
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        h.derived(&alice).await.is_empty(),
        "nothing runs without a worker"
    );
    assert_eq!(h.queued().await, 1000, "the tasks wait");
    // Two workers share the queue; one is SIGKILLed in the middle.
    let first = h.spawn_worker("noop", &key, &[("MNEMO_NOOP_DELAY_MS", "5")]);
    h.spawn_worker("noop", &key, &[("MNEMO_NOOP_DELAY_MS", "5")]);
    wait_for("some results", Duration::from_secs(60), || async {
        h.derived(&alice).await.len() >= 150
    })
    .await;
    let pid = nix::unistd::Pid::from_raw(h.workers[first].id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let _ = h.workers[first].wait();
    let done_at = h.derived(&alice).await.len();
    assert!(
        done_at < 1000,
        "the kill came in the middle ({done_at} done)"
    );
    wait_for(
        "1,000 derived memories",
        Duration::from_secs(180),
        || async { h.derived(&alice).await.len() >= 1000 },
    )
    .await;
    wait_for("an empty queue", Duration::from_secs(30), || async {
        h.queued().await == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let derived = h.derived(&alice).await;
    assert_eq!(derived.len(), 1000, "exactly once in effect: no duplicates");
    let covered: std::collections::HashSet<MemoryId> = derived
        .iter()
        .map(|(_, i)| {
            assert_eq!(i.len(), 1);
            i[0]
        })
        .collect();
    assert_eq!(covered, inputs, "one result per memory");
    let stats =
        h.stats.as_ref().unwrap().lock().unwrap()[&ProcessorId::new("noop").unwrap()].clone();
    eprintln!(
        "done {} failed {} skipped {} dead {}",
        stats.done.load(std::sync::atomic::Ordering::Relaxed),
        stats.failed.load(std::sync::atomic::Ordering::Relaxed),
        stats.skipped.load(std::sync::atomic::Ordering::Relaxed),
        stats.dead.load(std::sync::atomic::Ordering::Relaxed),
    );
    assert_eq!(stats.dead.load(std::sync::atomic::Ordering::Relaxed), 0);
    // Every fetch is in the chain (fetches that arrive together in one event), before its
    // result: the auditor refuses a result whose input no earlier fetch names.
    let events = h
        .stack
        .ledger
        .events(&alice, mnemo_core::Seq::FIRST, usize::MAX)
        .await
        .unwrap();
    let mut fetched = std::collections::HashSet::new();
    let mut fetch_events = 0;
    for e in &events {
        if let mnemo_core::EventBody::InputsFetched { memories, .. } = &e.event.body {
            fetch_events += 1;
            fetched.extend(memories.iter().copied());
        }
    }
    assert!(
        inputs.is_subset(&fetched),
        "every input's fetch is recorded"
    );
    eprintln!("1,000 inputs fetched, recorded in {fetch_events} inputs_fetched events");
    let outcome = h.audit(&alice).await;
    assert!(outcome.valid(), "{:?}", outcome.failure);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_decides_tasks_and_fetches_and_bad_results_write_nothing() {
    let mut h = harness().await;
    let (alice, bob) = (user("alice"), user("bob"));
    for u in [&alice, &bob] {
        h.stack.ledger.create_user(u).await.unwrap();
    }
    let key = h.register("noop", &[]).await;
    h.start(fast()).await;
    let w = h.worker("noop", &key).await;
    let a1 = h
        .stack
        .ledger
        .append(&alice, text("alice one"))
        .await
        .unwrap();
    let b1 = h.stack.ledger.append(&bob, text("bob one")).await.unwrap();
    // Without a processing grant: no task and no fetch.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(h.queued().await, 0, "no grant, no task");
    let stray = Task {
        user: alice.clone(),
        memory: a1.memory.unwrap(),
        grant: GrantId([7; 16]),
    };
    let e = w.fetch(&stray).await.unwrap_err().to_string();
    assert!(e.contains("403"), "{e}");
    // With one: a task, and the fetch is recorded before the data comes back.
    let grant = h.grant(&alice, "noop", &[]).await;
    wait_for("the backfill task", Duration::from_secs(10), || async {
        h.queued().await == 1
    })
    .await;
    let task = Task {
        user: alice.clone(),
        memory: a1.memory.unwrap(),
        grant,
    };
    let got = w.fetch(&task).await.unwrap();
    assert_eq!(got.seq, a1.seq.0);
    assert_eq!(h.kinds(&alice).await.last(), Some(&"inputs_fetched"));
    // A repeated result for the same task returns the original receipt.
    let first = w
        .submit(&task, vec![task.memory], record("noop", "one"))
        .await
        .unwrap();
    let again = w
        .submit(&task, vec![task.memory], record("noop", "different bytes"))
        .await
        .unwrap();
    assert!(!first.duplicate && again.duplicate);
    assert_eq!(first.memory, again.memory);
    // Bad results: refused with a typed error, nothing written.
    let len = h.kinds(&alice).await.len();
    let a2 = h
        .stack
        .ledger
        .append(&alice, text("alice two"))
        .await
        .unwrap();
    let len = len + 1;
    let refused = |e: mnemo_worker::WorkerError| match e {
        mnemo_worker::WorkerError::Refused { status, detail } => (status, detail),
        other => panic!("{other}"),
    };
    // inputs from another user
    let other = Task {
        memory: b1.memory.unwrap(),
        ..task.clone()
    };
    let (s, d) = refused(
        w.submit(&other, vec![other.memory], record("noop", "x"))
            .await
            .unwrap_err(),
    );
    assert_eq!(s, 422, "{d}");
    assert!(d.contains("unknown_memory"), "{d}");
    // an input the grant's fetches do not cover (a task never given)
    let never = Task {
        memory: a2.memory.unwrap(),
        ..task.clone()
    };
    let (s, d) = refused(
        w.submit(&never, vec![never.memory], record("noop", "x"))
            .await
            .unwrap_err(),
    );
    assert_eq!(s, 422, "{d}");
    assert!(d.contains("input_not_covered"), "{d}");
    // a forged signature (another key)
    let forger = h.worker("noop", &SigningKey::from_bytes(&[3; 32])).await;
    let (s, d) = refused(
        forger
            .submit(&task, vec![task.memory], record("noop-forged", "x"))
            .await
            .unwrap_err(),
    );
    assert!(s == 422 && d.contains("bad_processor_signature"), "{s} {d}");
    // an unknown processor
    let ghost = h.worker("ghost", &key).await;
    let (s, _) = refused(ghost.fetch(&task).await.unwrap_err());
    assert_eq!(s, 403);
    // an oversize result
    let big = "x".repeat(h.stack.ledger.config().max_inline + 1);
    let (s, d) = refused(
        w.submit(
            &task,
            vec![task.memory, a2.memory.unwrap()],
            record("noop", &big),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(s, 413, "{d}");
    assert_eq!(h.kinds(&alice).await.len(), len, "nothing was written");
    // After a revocation, work not yet fetched is refused, and no access record follows it.
    h.stack
        .ledger
        .append_event(&alice, EventBody::GrantRevoked { grant }, None)
        .await
        .unwrap();
    let (s, d) = refused(w.fetch(&never).await.unwrap_err());
    assert_eq!(s, 403, "{d}");
    let kinds = h.kinds(&alice).await;
    assert_eq!(
        kinds.last(),
        Some(&"grant_revoked"),
        "nothing recorded after it"
    );
    let outcome = h.audit(&alice).await;
    assert!(outcome.valid(), "{:?}", outcome.failure);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_follows_a_three_level_lineage_and_models_go_stale_with_proofs_that_verify() {
    let mut h = harness().await;
    let alice = user("alice");
    h.stack.ledger.create_user(&alice).await.unwrap();
    let asr_key = h.register("asr", &["audio"]).await;
    let sum_key = h.register("summarizer", &["transcript"]).await;
    h.start(fast()).await;
    let asr_grant = h.grant(&alice, "asr", &["audio"]).await;
    let sum_grant = h.grant(&alice, "summarizer", &["transcript"]).await;
    let mut audio = text("(audio bytes)");
    audio.kind = "audio".into();
    let audio = h
        .stack
        .ledger
        .append(&alice, audio)
        .await
        .unwrap()
        .memory
        .unwrap();
    let other = h.stack.ledger.append(&alice, text("kept")).await.unwrap();
    let (asr, sum) = (
        h.worker("asr", &asr_key).await,
        h.worker("summarizer", &sum_key).await,
    );
    let t1 = Task {
        user: alice.clone(),
        memory: audio,
        grant: asr_grant,
    };
    asr.fetch(&t1).await.unwrap();
    let transcript = asr
        .submit(&t1, vec![audio], record("transcript", "hello world"))
        .await
        .unwrap()
        .memory;
    let t2 = Task {
        user: alice.clone(),
        memory: transcript,
        grant: sum_grant,
    };
    let fetched = sum.fetch(&t2).await.unwrap();
    let summary = sum
        .submit(&t2, vec![transcript], record("summary", "greeting"))
        .await
        .unwrap()
        .memory;
    // A model trained on the transcript.
    let set = mnemo_core::TrainingSet::new(vec![processing::SetMember {
        seq: Seq(fetched.seq),
        event_hash: fetched.event_hash,
    }])
    .unwrap();
    let (root, artifact) = (set.root(), Hash32([0xab; 32]));
    let summarizer = ProcessorId::new("summarizer").unwrap();
    let sig = processing::sign(
        &sum_key,
        &processing::model_signing_message(&ModelClaim {
            user: &alice,
            grant: &sum_grant,
            processor: &summarizer,
            version: "m1",
            artifact: &artifact,
            set_root: &root,
            set_count: 1,
        }),
    );
    let model = h
        .processing
        .record_model(
            &summarizer,
            ModelRequest {
                user: alice.clone(),
                grant: sum_grant,
                version: "m1".into(),
                artifact,
                inputs: vec![transcript],
                signature: sig,
                object: None,
                format: None,
            },
        )
        .await
        .unwrap();
    assert_eq!((model.set_root, model.set_count), (root, 1));
    // The chain publishes the set (tag 0x41): the member's seq, which the auditor below
    // checks against the root (FORMAT.md §15.4).
    let recorded = h
        .stack
        .ledger
        .events(&alice, mnemo_core::Seq(model.seq), 1)
        .await
        .unwrap();
    match &recorded[0].event.body {
        mnemo_core::EventBody::ModelTrained { set: Some(set), .. } => {
            assert_eq!(set.as_slice(), &[inc_seq(&h, &alice, &transcript).await]);
        }
        other => panic!("not a model with its set published: {other:?}"),
    }
    // Training-set proofs: inclusion and exclusion verify offline; a forgery does not.
    let inc = h
        .processing
        .training_proof(&alice, &model.model, &transcript)
        .await
        .unwrap();
    assert_eq!(inc.verify(&root, 1), Ok(true));
    let exc = h
        .processing
        .training_proof(&alice, &model.model, &other.memory.unwrap())
        .await
        .unwrap();
    assert_eq!(exc.verify(&root, 1), Ok(false));
    let json = serde_json::to_string(&exc).unwrap();
    let back: mnemo_core::TrainingSetProof = serde_json::from_str(&json).unwrap();
    assert_eq!(
        back.verify(&root, 1),
        Ok(false),
        "the JSON form verifies too"
    );
    let mut forged = inc.clone();
    let Verdict::Excluded { left, right } = exc.verdict.clone() else {
        panic!()
    };
    forged.verdict = Verdict::Excluded { left, right };
    assert!(
        forged.verify(&root, 1).is_err(),
        "a forged exclusion is refused"
    );
    // Lineage both ways.
    let l = h.processing.lineage(&alice, &audio).await.unwrap();
    assert_eq!(l.outputs, vec![transcript]);
    let mut closure = vec![transcript, summary];
    closure.sort();
    assert_eq!(l.closure, closure);
    let l = h.processing.lineage(&alice, &summary).await.unwrap();
    assert_eq!(l.inputs, vec![transcript]);
    assert_eq!(l.derived_by.unwrap().0.as_str(), "summarizer");
    // Erasing the audio erases the whole closure; the model goes stale; processors hear.
    let erased = h
        .processing
        .erase(&alice, &audio, "owner request")
        .await
        .unwrap();
    assert_eq!(erased.closure, closure);
    assert_eq!(erased.stale_models, vec![model.model]);
    for m in [audio, transcript, summary] {
        let e = h
            .stack
            .ledger
            .open_for_processing(&alice, &m, None)
            .await
            .unwrap_err();
        assert!(
            matches!(e, mnemo_ledger::LedgerError::Erased(_)),
            "{m}: {e}"
        );
    }
    let kept = h
        .stack
        .ledger
        .open_for_processing(&alice, &other.memory.unwrap(), None)
        .await
        .unwrap();
    assert_eq!(&kept.opened.content[..], b"kept");
    let m = h.processing.models.of_user(&alice).await.unwrap();
    assert!(m[0].stale.as_deref().unwrap().contains("owner request"));
    let mut notices = h
        .stack
        .js
        .get_stream(mnemo_core::names::NOTICE_STREAM)
        .await
        .unwrap();
    assert_eq!(notices.info().await.unwrap().state.messages, 1);
    assert_eq!(h.kinds(&alice).await.last(), Some(&"lineage_erased"));
    // After erasure nothing in the closure can be fetched, and the chain still verifies.
    let e = sum.fetch(&t2).await.unwrap_err().to_string();
    assert!(e.contains("410"), "{e}");
    let outcome = h.audit(&alice).await;
    assert!(outcome.valid(), "{:?}", outcome.failure);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_survives_restarts_and_failing_tasks_end_as_dead_letters() {
    let mut h = harness().await;
    let alice = user("alice");
    h.stack.ledger.create_user(&alice).await.unwrap();
    let key = h.register("noop", &["note"]).await;
    h.grant(&alice, "noop", &["note"]).await;
    h.start(fast()).await;
    for i in 0..20 {
        h.stack
            .ledger
            .append(&alice, mnemo_testkit::note(i))
            .await
            .unwrap();
    }
    wait_for("20 tasks", Duration::from_secs(20), || async {
        h.queued().await == 20
    })
    .await;
    // mnemo and nats-server restart with the tasks pending.
    h.stop().await;
    h.stack.nats.restart();
    wait_for(
        "the queue after the restart",
        Duration::from_secs(20),
        || async {
            h.stack
                .js
                .get_stream(mnemo_core::names::WORK_STREAM)
                .await
                .is_ok()
        },
    )
    .await;
    assert_eq!(h.queued().await, 20, "the tasks survived");
    h.start(fast()).await;
    // A worker that fails every task: after 3 deliveries each is a dead letter.
    h.spawn_worker("noop", &key, &[("MNEMO_NOOP_FAIL_KIND", "note")]);
    wait_for("20 dead letters", Duration::from_secs(60), || async {
        mnemo_processing::queue::dead_letters(&h.stack.js, Some("noop"), 100)
            .await
            .unwrap()
            .len()
            == 20
    })
    .await;
    let dead = mnemo_processing::queue::dead_letters(&h.stack.js, Some("noop"), 100)
        .await
        .unwrap();
    assert!(
        dead.iter()
            .all(|d| d.attempts == 3 && d.reason.contains("refusing kind note"))
    );
    let stats =
        h.stats.as_ref().unwrap().lock().unwrap()[&ProcessorId::new("noop").unwrap()].clone();
    assert_eq!(stats.dead.load(std::sync::atomic::Ordering::Relaxed), 20);
    assert_eq!(h.queued().await, 0);
    assert!(h.derived(&alice).await.is_empty());
    // Revoking the processor stops its fetches and submissions at once.
    let w = h.worker("noop", &key).await;
    let task = Task {
        user: alice.clone(),
        memory: dead[0].what.memory,
        grant: dead[0].what.grant,
    };
    w.fetch(&task).await.unwrap();
    h.processing
        .registry
        .revoke(&ProcessorId::new("noop").unwrap())
        .await
        .unwrap();
    let len = h.kinds(&alice).await.len();
    let e = w.fetch(&task).await.unwrap_err().to_string();
    assert!(e.contains("403") && e.contains("revoked"), "{e}");
    let e = w
        .submit(&task, vec![task.memory], record("noop", "late"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("403"), "{e}");
    assert_eq!(h.kinds(&alice).await.len(), len);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_result_naming_an_input_its_grant_does_not_cover_is_refused_by_the_auditor() {
    let h = harness().await;
    let alice = user("alice");
    h.stack.ledger.create_user(&alice).await.unwrap();
    let key = h.register("noop", &[]).await;
    let grant = h.grant(&alice, "noop", &[]).await;
    let m = h
        .stack
        .ledger
        .append(&alice, text("never fetched"))
        .await
        .unwrap();
    // Signed with the custody key and by the processor's own key, but the input was never
    // fetched under the grant.
    let commitment = Hash32([5; 32]);
    let inputs = vec![m.memory.unwrap()];
    let noop = ProcessorId::new("noop").unwrap();
    let sig = processing::sign(
        &key,
        &processing::derived_signing_message(&alice, &grant, &noop, "1", &inputs, &commitment),
    );
    h.stack
        .plant_with(
            &alice,
            EventBody::MemoryDerived {
                memory: MemoryId([9; 16]),
                grant,
                version: "1".into(),
                inputs,
                signature: sig,
            },
            Some(commitment),
            now(),
        )
        .await;
    let outcome = h.audit(&alice).await;
    let f = outcome.failure.expect("refused");
    assert_eq!(f.code, "input_not_covered", "{}", f.message);
    assert_eq!(f.seq, Some(m.seq.0 + 1));
    // A forged processor signature is named too.
    let h2 = harness().await;
    h2.stack.ledger.create_user(&alice).await.unwrap();
    h2.register("noop", &[]).await;
    let grant = h2.grant(&alice, "noop", &[]).await;
    let m = h2
        .stack
        .ledger
        .append(&alice, text("fetched"))
        .await
        .unwrap();
    h2.processing
        .fetch(
            &noop,
            &FetchRequest {
                user: alice.clone(),
                grant,
                memory: m.memory.unwrap(),
            },
        )
        .await
        .unwrap();
    h2.stack
        .plant_with(
            &alice,
            EventBody::MemoryDerived {
                memory: MemoryId([9; 16]),
                grant,
                version: "1".into(),
                inputs: vec![m.memory.unwrap()],
                signature: processing::sign(&SigningKey::from_bytes(&[1; 32]), b"other"),
            },
            Some(commitment),
            now(),
        )
        .await;
    let f = h2.audit(&alice).await.failure.expect("refused");
    assert_eq!(f.code, "bad_processor_signature", "{}", f.message);
}

/// The seq of the event that added `memory`.
async fn inc_seq(
    h: &Harness,
    user: &mnemo_core::UserId,
    memory: &mnemo_core::MemoryId,
) -> mnemo_core::Seq {
    h.stack
        .ledger
        .with_rules(user, |s| s.seq_of(memory))
        .await
        .unwrap()
        .expect("a memory of the chain")
}
