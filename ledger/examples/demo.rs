//! A local stack with a demo: starts a nats-server (JetStream, fsync on every write),
//! creates two users, ingests memories (one large enough for the object store), records a
//! grant and a read, erases a memory, verifies both chains, and prints an event and a proof
//! of inclusion. Then keeps the server up until Ctrl-C (or exits with `--exit`).
//!
//! Run: `bash scripts/dev.sh` (installs what is missing, then runs this).

use bytes::Bytes;
use mnemo_core::{
    AccessAction, Capabilities, ErasureTarget, EventBody, GrantConditions, GrantId, MerkleTree,
    Seq, SigningKey, TimestampMs, UserId, merkle::CHAIN_TREE,
};
use mnemo_ledger::{Ledger, LedgerConfig, NewMemory, SecretKey};
use mnemo_testkit::{NatsOptions, NatsServer};

fn memory(kind: &str, tags: &[&str], content: Bytes, content_type: &str) -> NewMemory {
    NewMemory {
        kind: kind.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        captured_at: Some(TimestampMs(1_764_115_200_000)),
        source: Some("demo".into()),
        content_type: content_type.into(),
        content,
        idempotency_key: None,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let exit = std::env::args().any(|a| a == "--exit");
    let server = NatsServer::start_with(NatsOptions {
        sync_always: true,
        ..Default::default()
    });
    println!(
        "nats-server with JetStream (fsync every write) at {}",
        server.url()
    );
    let client = async_nats::connect(server.url()).await?;
    // Demo secrets: random per run, never printed.
    let cfg = LedgerConfig::new(SecretKey::random(), SigningKey::from_bytes(&rand_seed()));
    let ledger = Ledger::connect(client, cfg).await?;

    let alice = UserId::new("alice")?;
    let bob = UserId::new("bob")?;
    ledger.create_user(&alice).await?;
    ledger.create_user(&bob).await?;
    println!("created users alice and bob (genesis events signed by the ledger key)");

    let note = ledger
        .append(
            &alice,
            memory(
                "note",
                &["work"],
                Bytes::from_static(b"Ship the audit CLI by Friday."),
                "text/plain",
            ),
        )
        .await?;
    let chat = ledger
        .append(
            &alice,
            memory(
                "conversation",
                &["family"],
                Bytes::from_static(b"Mum: dinner on Sunday?"),
                "text/plain",
            ),
        )
        .await?;
    let audio = ledger
        .append(
            &alice,
            memory(
                "audio",
                &["work"],
                Bytes::from(vec![0x4f; 300_000]),
                "audio/ogg",
            ),
        )
        .await?;
    for (what, r) in [
        ("note", &note),
        ("conversation", &chat),
        ("audio (object store)", &audio),
    ] {
        println!("ingested {what}: seq {} hash {}", r.seq, r.hash);
    }

    let grant = GrantId([7; 16]);
    ledger
        .append_event(
            &alice,
            EventBody::GrantCreated {
                grant,
                grantee: bob.clone(),
                capabilities: Capabilities {
                    metadata: true,
                    content: true,
                },
                conditions: GrantConditions {
                    tags: vec!["work".into()],
                    ..Default::default()
                },
                expires_at: None,
            },
            None,
        )
        .await?;
    let stored = ledger
        .find_memory(&alice, &note.memory.expect("memory"))
        .await?
        .expect("present");
    let opened = ledger.open_memory(&stored).await?;
    ledger
        .append_event(
            &alice,
            EventBody::AccessRecorded {
                accessor: bob.clone(),
                grant,
                action: AccessAction::ReadContent,
                memories: vec![opened.memory],
            },
            None,
        )
        .await?;
    println!(
        "bob read alice's note under a grant on tag 'work': {:?} (recorded in alice's chain)",
        String::from_utf8_lossy(&opened.content)
    );

    let erased = ledger
        .erase(&alice, ErasureTarget::Memory(chat.memory.expect("memory")))
        .await?;
    let gone = ledger
        .find_memory(&alice, &chat.memory.expect("memory"))
        .await?
        .expect("present");
    println!(
        "erased the conversation (event seq {}); reading it now: {}",
        erased.seq,
        ledger
            .open_memory(&gone)
            .await
            .err()
            .map_or("readable?!".into(), |e| e.to_string())
    );

    for u in [&alice, &bob] {
        let s = ledger.verify_chain(u).await?;
        let cp = s.checkpoint.expect("non-empty");
        println!(
            "verified {u}: {} events, {} signatures, root {}",
            cp.seq, s.signatures, cp.root
        );
    }

    let events = ledger.events(&alice, Seq::FIRST, usize::MAX).await?;
    let tree = MerkleTree::from_leaf_hashes(
        CHAIN_TREE,
        events.iter().map(|e| CHAIN_TREE.leaf(&e.hash.0)).collect(),
    );
    let proof = tree.inclusion_proof(note.seq.0 - 1).expect("in range");
    println!(
        "\nthe note's event:\n{}",
        serde_json::to_string_pretty(&events[(note.seq.0 - 1) as usize].event)?
    );
    println!(
        "its inclusion proof in alice's chain tree (root {}):\n{}",
        tree.root(),
        serde_json::to_string_pretty(&proof)?
    );

    if exit {
        return Ok(());
    }
    println!("\nthe stack stays up at {} — Ctrl-C stops it", server.url());
    tokio::signal::ctrl_c().await?;
    drop(server);
    println!("stopped");
    Ok(())
}

fn rand_seed() -> [u8; 32] {
    let mut s = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut s);
    s
}
