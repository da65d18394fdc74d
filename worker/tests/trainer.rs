//! The trainer (`mnemo-trainer`) with the Python ASR worker: a per-user search model over
//! notes and transcripts, recorded with its training-set commitment, answering queries
//! with memories the owner can prove; an erasure of an audio memory erases its
//! transcript, makes the model stale (its artifact deleted), and the trainer retrains
//! without them, its corpus read back from its file after another user's pushed it out
//! of memory.

mod support;

use mnemo_core::{MemoryId, ModelId, UserId};
use mnemo_processing::ProcessingError;
use std::process::Command;
use std::time::Duration;
use support::*;

async fn latest(h: &Harness, u: &UserId) -> Option<mnemo_processing::models::Model> {
    h.processing
        .models
        .of_user(u)
        .await
        .unwrap()
        .into_iter()
        .rev()
        .find(|m| m.processor.as_str() == "trainer")
}

async fn hits(h: &Harness, u: &UserId, q: &str) -> Vec<MemoryId> {
    let (_, hits) = h.processing.query(u, None, q, 10).await.unwrap();
    hits.into_iter().map(|h| h.memory).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trainer_models_notes_and_transcripts_and_retrains_without_an_erased_memory() {
    let mut h = harness().await;
    h.start(patient(60)).await;
    let alice = user("alice");
    h.stack.ledger.create_user(&alice).await.unwrap();
    let asr = h.register("asr", &["audio"]).await;
    let trainer = h.register("trainer", &["note", "transcript"]).await;
    h.grant(&alice, "asr", &["audio"]).await;
    h.grant(&alice, "trainer", &["note", "transcript"]).await;
    let milk = h
        .stack
        .ledger
        .append(&alice, text("buy oat milk and coffee beans"))
        .await
        .unwrap()
        .memory
        .unwrap();
    let dentist = h
        .stack
        .ledger
        .append(&alice, text("the dentist moved my appointment to friday"))
        .await
        .unwrap()
        .memory
        .unwrap();
    let raw = std::fs::read(speech_dir().join("goforward.raw")).unwrap();
    let speech = h
        .stack
        .ledger
        .append(&alice, audio("audio/l16; rate=16000", raw, "walk"))
        .await
        .unwrap()
        .memory
        .unwrap();
    h.spawn_asr("asr", &asr, &[]);
    let state = tempfile::tempdir().unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_mnemo-trainer"));
    h.worker_env(&mut c, "trainer", &trainer);
    c.env("MNEMO_TRAINER_STATE", state.path());
    // One user's corpus in memory at a time: Bob's model below pushes Alice's out, and her
    // retraining reads it back from its file.
    c.env("MNEMO_TRAINER_MAX_USERS", "1");
    h.spawn(c);
    wait_for("a model of 3 memories", Duration::from_secs(90), || async {
        latest(&h, &alice).await.is_some_and(|m| m.set_count == 3)
    })
    .await;
    let bob = user("bob");
    h.stack.ledger.create_user(&bob).await.unwrap();
    h.grant(&bob, "trainer", &["note"]).await;
    h.stack
        .ledger
        .append(&bob, text("the bike needs a new chain"))
        .await
        .unwrap();
    wait_for("Bob's model", Duration::from_secs(60), || async {
        latest(&h, &bob).await.is_some_and(|m| m.set_count == 1)
    })
    .await;
    assert!(
        hits(&h, &bob, "coffee").await.is_empty(),
        "each user's own model"
    );
    let first = latest(&h, &alice).await.unwrap();
    let transcript = h.processing.lineage(&alice, &speech).await.unwrap().outputs[0];
    // The transcript answers "forward", the note "dentist": each a member the owner can prove.
    assert_eq!(hits(&h, &alice, "forward meters").await, vec![transcript]);
    assert_eq!(hits(&h, &alice, "Dentist?").await, vec![dentist]);
    assert_eq!(hits(&h, &alice, "coffee").await, vec![milk]);
    assert!(hits(&h, &alice, "zebra").await.is_empty());
    let proof = h
        .processing
        .training_proof(&alice, &first.id, &transcript)
        .await
        .unwrap();
    assert_eq!(proof.verify(&first.set_root, first.set_count), Ok(true));

    // Erasing the audio erases its transcript; the model goes stale and its artifact with
    // it; the trainer records a model without them.
    let erased = h
        .processing
        .erase(&alice, &speech, "owner request")
        .await
        .unwrap();
    assert_eq!(erased.closure, vec![transcript]);
    assert!(erased.stale_models.contains(&first.id));
    // No model of an erased memory is recorded, whatever its signature.
    let refused = h
        .processing
        .record_model(
            &mnemo_core::ProcessorId::new("trainer").unwrap(),
            mnemo_processing::protocol::ModelRequest {
                user: alice.clone(),
                grant: first.grant,
                version: "1".into(),
                artifact: first.artifact,
                inputs: vec![transcript, milk],
                signature: mnemo_core::processing::sign(&trainer, b"any"),
                object: None,
                format: None,
            },
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(ProcessingError::Ledger(mnemo_ledger::LedgerError::Erased(m))) if m == transcript
        ),
        "{refused:?}"
    );
    match h
        .processing
        .query(&alice, Some(&first.id), "forward", 10)
        .await
    {
        Err(ProcessingError::Stale(_)) => {}
        other => panic!("a stale model answers no query: {other:?}"),
    }
    wait_for("a retrained model", Duration::from_secs(60), || async {
        latest(&h, &alice)
            .await
            .is_some_and(|m| m.id != first.id && m.stale.is_none())
    })
    .await;
    let second = latest(&h, &alice).await.unwrap();
    assert_eq!(second.set_count, 2, "the notes, without the transcript");
    assert!(!second.has(&transcript) && second.has(&milk) && second.has(&dentist));
    assert!(
        hits(&h, &alice, "forward meters").await.is_empty(),
        "the query no longer returns it"
    );
    assert_eq!(hits(&h, &alice, "dentist").await, vec![dentist]);
    let stale: Vec<ModelId> = h
        .processing
        .stale(&mnemo_core::ProcessorId::new("trainer").unwrap())
        .await
        .unwrap()
        .stale
        .into_iter()
        .map(|s| s.model)
        .collect();
    assert!(stale.is_empty(), "nothing left to retrain: {stale:?}");
    let exclusion = h
        .processing
        .training_proof(&alice, &second.id, &transcript)
        .await
        .unwrap();
    assert_eq!(
        exclusion.verify(&second.set_root, 2),
        Ok(false),
        "provably left out"
    );
    assert!(
        h.audit(&alice).await.valid(),
        "mnemo-audit verifies the chain"
    );
    h.stop().await;
}
