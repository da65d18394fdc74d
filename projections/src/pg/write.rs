//! The projector's writes: one batch of accepted events as multi-row inserts and
//! updates of the views' tables, inside the caller's transaction.

use mnemo_core::{Content, ErasureTarget, EventBody, KeyRole, UserId};
use std::collections::HashMap;

use crate::error::{ProjectionError, Result};
use crate::projector::{Accepted, Opened};
use crate::state::UserState;

fn role_name(r: KeyRole) -> &'static str {
    match r {
        KeyRole::Custody => "custody",
        KeyRole::Device => "device",
    }
}

/// Columns of the memories rows of a batch, for one multi-row insert.
#[derive(Default)]
struct MemoryColumns(
    Vec<String>,
    Vec<Vec<u8>>,
    Vec<i64>,
    Vec<Option<String>>,
    Vec<Option<String>>,
    Vec<Option<i64>>,
    Vec<Option<String>>,
    Vec<Option<String>>,
    Vec<Option<i64>>,
    Vec<Option<String>>,
    Vec<i64>,
    Vec<Option<String>>,
    Vec<bool>,
);

/// Columns of the users rows of a batch.
#[derive(Default)]
struct UserColumns(
    Vec<String>,
    Vec<i64>,
    Vec<Vec<u8>>,
    Vec<Vec<u8>>,
    Vec<Vec<u8>>,
);

/// All rows of a batch, as multi-row statements (UNNEST of arrays).
pub(crate) async fn write_rows(
    tx: &mut sqlx::PgConnection,
    accepted: &[&Accepted],
    opened: &HashMap<mnemo_core::MemoryId, Option<Opened>>,
    states: &HashMap<UserId, UserState>,
    users: &[UserId],
) -> Result<()> {
    // events
    let mut ev = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for a in accepted {
        let e = &a.event;
        ev.0.push(e.user.as_str().to_owned());
        ev.1.push(e.seq.0 as i64);
        ev.2.push(a.hash.0.to_vec());
        ev.3.push(e.prev.0.to_vec());
        ev.4.push(e.body.kind_name().to_owned());
        ev.5.push(e.timestamp.0);
        ev.6.push(e.signer.0.to_vec());
        ev.7.push(a.stream.clone());
        ev.8.push(a.stream_seq as i64);
    }
    if !ev.0.is_empty() {
        sqlx::query(
            "INSERT INTO events (user_id, seq, hash, prev, kind, ts, signer, stream, stream_seq)
             SELECT u, s, h, p, k, to_timestamp(t / 1000.0), g, st, ss
             FROM UNNEST($1::text[], $2::bigint[], $3::bytea[], $4::bytea[], $5::text[], $6::bigint[], $7::bytea[], $8::text[], $9::bigint[])
               AS x(u, s, h, p, k, t, g, st, ss)
             ON CONFLICT (user_id, seq) DO NOTHING",
        )
        .bind(&ev.0).bind(&ev.1).bind(&ev.2).bind(&ev.3).bind(&ev.4).bind(&ev.5).bind(&ev.6).bind(&ev.7).bind(&ev.8)
        .execute(&mut *tx)
        .await?;
    }
    // memories
    let mut m = MemoryColumns::default();
    for a in accepted {
        let Some(memory) = a.event.body.new_memory() else {
            continue;
        };
        let e = &a.event;
        let o = opened.get(&memory).and_then(Option::as_ref);
        m.0.push(e.user.as_str().to_owned());
        m.1.push(memory.0.to_vec());
        m.2.push(e.seq.0 as i64);
        match o {
            Some((r, size)) => {
                m.3.push(Some(r.kind.clone()));
                m.4.push(Some(
                    serde_json::to_string(&r.tags).expect("strings serialise"),
                ));
                m.5.push(r.captured_at.map(|t| t.0));
                m.6.push(r.source.clone());
                m.7.push(Some(r.content_type.clone()));
                m.8.push(Some(*size as i64));
                let inline = match &r.content {
                    Content::Inline { bytes } => Some(bytes),
                    Content::Object { .. } => None,
                };
                m.9.push(Some(
                    if inline.is_some() { "inline" } else { "object" }.into(),
                ));
                let text = inline.filter(|_| r.content_type.starts_with("text/"));
                m.11.push(text.map(|b| String::from_utf8_lossy(b).into_owned()));
            }
            None => {
                // Erased before this projection saw it: nothing of its record can be known
                // (the erasure event that follows marks it erased).
                m.3.push(None);
                m.4.push(None);
                m.5.push(None);
                m.6.push(None);
                m.7.push(None);
                m.8.push(None);
                m.9.push(None);
                m.11.push(None);
            }
        }
        m.10.push(e.timestamp.0);
        // What the chain shows: a processor's result, not the owner's own memory.
        m.12.push(matches!(e.body, EventBody::MemoryDerived { .. }));
    }
    if !m.0.is_empty() {
        sqlx::query(
            "INSERT INTO memories (user_id, memory_id, seq, kind, tags, captured_at, source, content_type, size, storage, ingested_at, body, derived)
             SELECT u, mid, s, k, CASE WHEN tg IS NULL THEN NULL ELSE ARRAY(SELECT jsonb_array_elements_text(tg::jsonb)) END,
                    to_timestamp(c / 1000.0), src, ct, sz, st, to_timestamp(t / 1000.0), b, d
             FROM UNNEST($1::text[], $2::bytea[], $3::bigint[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::text[], $9::bigint[], $10::text[], $11::bigint[], $12::text[], $13::boolean[])
               AS x(u, mid, s, k, tg, c, src, ct, sz, st, t, b, d)
             ON CONFLICT (user_id, memory_id) DO NOTHING",
        )
        .bind(&m.0).bind(&m.1).bind(&m.2).bind(&m.3).bind(&m.4).bind(&m.5).bind(&m.6).bind(&m.7).bind(&m.8).bind(&m.9).bind(&m.10).bind(&m.11).bind(&m.12)
        .execute(&mut *tx)
        .await?;
    }
    // everything else, in chain order
    for a in accepted {
        let e = &a.event;
        let u = e.user.as_str();
        let seq = e.seq.0 as i64;
        match &e.body {
            EventBody::KeyAdded { key, role } => {
                sqlx::query("INSERT INTO user_keys (user_id, key_id, public_key, role, added_seq) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING")
                    .bind(u).bind(key.id().0.to_vec()).bind(key.to_bytes().to_vec()).bind(role_name(*role)).bind(seq)
                    .execute(&mut *tx).await?;
            }
            EventBody::KeyRotated { old, new } => {
                sqlx::query("UPDATE user_keys SET retired_seq = $3 WHERE user_id = $1 AND key_id = $2 AND retired_seq IS NULL")
                    .bind(u).bind(old.0.to_vec()).bind(seq).execute(&mut *tx).await?;
                sqlx::query("INSERT INTO user_keys (user_id, key_id, public_key, role, added_seq) VALUES ($1, $2, $3, 'custody', $4) ON CONFLICT DO NOTHING")
                    .bind(u).bind(new.id().0.to_vec()).bind(new.to_bytes().to_vec()).bind(seq)
                    .execute(&mut *tx).await?;
            }
            EventBody::KeyRevoked { key } => {
                sqlx::query("UPDATE user_keys SET retired_seq = $3 WHERE user_id = $1 AND key_id = $2 AND retired_seq IS NULL")
                    .bind(u).bind(key.0.to_vec()).bind(seq).execute(&mut *tx).await?;
            }
            // An erasure takes the record's metadata with its content (migration 0006):
            // an erased memory keeps only what the chain shows.
            EventBody::MemoryErased { target } => {
                let q = match target {
                    ErasureTarget::Memory(mid) => sqlx::query(
                        "UPDATE memories SET body = NULL, kind = NULL, tags = NULL, captured_at = NULL, source = NULL, content_type = NULL, size = NULL, storage = NULL, erased_seq = $3, erased_at = to_timestamp($4 / 1000.0)
                         WHERE user_id = $1 AND memory_id = $2 AND erased_seq IS NULL",
                    )
                    .bind(u).bind(mid.0.to_vec()).bind(seq).bind(e.timestamp.0),
                    ErasureTarget::All => sqlx::query(
                        "UPDATE memories SET body = NULL, kind = NULL, tags = NULL, captured_at = NULL, source = NULL, content_type = NULL, size = NULL, storage = NULL, erased_seq = $3, erased_at = to_timestamp($4 / 1000.0)
                         WHERE user_id = $1 AND seq < $3 AND erased_seq IS NULL AND $2::bytea IS NULL",
                    )
                    .bind(u).bind(None::<Vec<u8>>).bind(seq).bind(e.timestamp.0),
                };
                q.execute(&mut *tx).await?;
            }
            EventBody::LineageErased {
                memory, closure, ..
            } => {
                let ids: Vec<Vec<u8>> = std::iter::once(memory)
                    .chain(closure)
                    .map(|m| m.0.to_vec())
                    .collect();
                sqlx::query(
                    "UPDATE memories SET body = NULL, kind = NULL, tags = NULL, captured_at = NULL, source = NULL, content_type = NULL, size = NULL, storage = NULL, erased_seq = $3, erased_at = to_timestamp($4 / 1000.0)
                     WHERE user_id = $1 AND memory_id = ANY($2) AND erased_seq IS NULL",
                )
                .bind(u).bind(&ids).bind(seq).bind(e.timestamp.0)
                .execute(&mut *tx).await?;
            }
            EventBody::GrantCreated {
                grant,
                grantee,
                capabilities,
                conditions,
                expires_at,
                not_before,
            } => {
                sqlx::query(
                    "INSERT INTO grants (user_id, grant_id, grantee, can_metadata, can_content, can_ask, conditions, expires_at, not_before, created_seq)
                     VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, to_timestamp($8 / 1000.0), to_timestamp($9 / 1000.0), $10) ON CONFLICT DO NOTHING",
                )
                .bind(u).bind(grant.0.to_vec()).bind(grantee.as_str()).bind(capabilities.metadata).bind(capabilities.content).bind(capabilities.ask)
                .bind(serde_json::to_string(conditions).expect("serialisable")).bind(expires_at.map(|t| t.0)).bind(not_before.map(|t| t.0)).bind(seq)
                .execute(&mut *tx).await?;
            }
            EventBody::GrantRevoked { grant } => {
                sqlx::query("UPDATE grants SET revoked_seq = $3 WHERE user_id = $1 AND grant_id = $2 AND revoked_seq IS NULL")
                    .bind(u).bind(grant.0.to_vec()).bind(seq).execute(&mut *tx).await?;
            }
            EventBody::AccessRecorded {
                accessor,
                grant,
                action,
                memories,
            } => {
                let mids: Vec<Vec<u8>> = memories.iter().map(|m| m.0.to_vec()).collect();
                sqlx::query(
                    "INSERT INTO access_log (user_id, seq, accessor, grant_id, action, memories, ts)
                     VALUES ($1, $2, $3, $4, $5, $6, to_timestamp($7 / 1000.0)) ON CONFLICT DO NOTHING",
                )
                .bind(u).bind(seq).bind(accessor.as_str()).bind(grant.0.to_vec())
                .bind(serde_json::to_value(action).expect("serialisable").as_str().unwrap_or("").to_owned())
                .bind(&mids).bind(e.timestamp.0)
                .execute(&mut *tx).await?;
            }
            // A question is in the owner's access log: the asker, the grant, what the answer
            // cited, and the question's id (its text stays sealed in the chain).
            EventBody::QuestionAsked {
                question,
                asker,
                grant,
                cited,
                ..
            } => {
                let mids: Vec<Vec<u8>> = cited.iter().map(|m| m.0.to_vec()).collect();
                sqlx::query(
                    "INSERT INTO access_log (user_id, seq, accessor, grant_id, action, memories, ts, question)
                     VALUES ($1, $2, $3, $4, 'ask', $5, to_timestamp($6 / 1000.0), $7) ON CONFLICT DO NOTHING",
                )
                .bind(u).bind(seq).bind(asker.as_str()).bind(grant.0.to_vec())
                .bind(&mids).bind(e.timestamp.0).bind(question.0.to_vec())
                .execute(&mut *tx).await?;
            }
            // A processor's fetch is in the owner's access log too, under the processor's
            // name (the rules accepted it, so its processing grant is in the state).
            EventBody::InputsFetched { grant, memories } => {
                let processor = states
                    .get(&e.user)
                    .and_then(|s| s.chain.processing_grant(grant))
                    .map(|g| g.processor.to_string())
                    .ok_or_else(|| {
                        ProjectionError::Corrupt(format!(
                            "{u} seq {seq}: a fetch under processing grant {grant}, which the rules do not hold"
                        ))
                    })?;
                let mids: Vec<Vec<u8>> = memories.iter().map(|m| m.0.to_vec()).collect();
                sqlx::query(
                    "INSERT INTO access_log (user_id, seq, accessor, accessor_kind, grant_id, action, memories, ts)
                     VALUES ($1, $2, $3, 'processor', $4, 'fetch', $5, to_timestamp($6 / 1000.0)) ON CONFLICT DO NOTHING",
                )
                .bind(u).bind(seq).bind(processor).bind(grant.0.to_vec())
                .bind(&mids).bind(e.timestamp.0)
                .execute(&mut *tx).await?;
            }
            _ => {}
        }
    }
    // user tips
    let mut us = UserColumns::default();
    for u in users {
        let st = &states[u];
        if st.last_seq() == 0 {
            continue;
        }
        us.0.push(u.as_str().to_owned());
        us.1.push(st.last_seq() as i64);
        us.2.push(st.head().0.to_vec());
        us.3.push(st.chain.tree().peaks().iter().flat_map(|p| p.0).collect());
        us.4.push(st.root().0.to_vec());
    }
    // processing state (core's rules), for users whose chain has any
    for u in users {
        let st = &states[u];
        if st.last_seq() == 0 || st.chain.processing().is_empty() {
            continue;
        }
        let state = serde_json::to_value(st.chain.processing())
            .map_err(|e| crate::ProjectionError::Corrupt(format!("processing state: {e}")))?;
        sqlx::query(
            "INSERT INTO processing_state (user_id, last_seq, state) VALUES ($1, $2, $3)
             ON CONFLICT (user_id) DO UPDATE SET last_seq = EXCLUDED.last_seq, state = EXCLUDED.state
             WHERE processing_state.last_seq < EXCLUDED.last_seq",
        )
        .bind(u.as_str())
        .bind(st.last_seq() as i64)
        .bind(state)
        .execute(&mut *tx)
        .await?;
    }
    if !us.0.is_empty() {
        sqlx::query(
            "INSERT INTO users (user_id, last_seq, head_hash, frontier, root, created_at, updated_at)
             SELECT u, s, h, f, r, now(), now() FROM UNNEST($1::text[], $2::bigint[], $3::bytea[], $4::bytea[], $5::bytea[]) AS x(u, s, h, f, r)
             ON CONFLICT (user_id) DO UPDATE SET last_seq = EXCLUDED.last_seq, head_hash = EXCLUDED.head_hash,
               frontier = EXCLUDED.frontier, root = EXCLUDED.root, updated_at = now()
             WHERE users.last_seq < EXCLUDED.last_seq",
        )
        .bind(&us.0).bind(&us.1).bind(&us.2).bind(&us.3).bind(&us.4)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}
