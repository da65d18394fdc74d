//! The grantee-read pre-filter (`Views::shared_candidates`, SQL) against core's access rule
//! (`mnemo_core::Grant::allows`), on random grants and memories in a real PostgreSQL: the
//! pre-filter never drops a memory the rule allows (time capsules, expiry, revocation,
//! capabilities, conditions, erasure). It may keep more: the rule decides.

use mnemo_core::{
    AccessAction, Capabilities, Grant, GrantConditions, GrantId, MemoryId, TimestampMs, UserId,
    grant::first_allowing,
};
use mnemo_projections::{MemoryFilter, Views};
use mnemo_testkit::PgServer;
use proptest::prelude::*;

const TAGS: &[&str] = &["a", "b", "c"];
const KINDS: &[&str] = &["note", "audio", "transcript"];

#[derive(Clone, Debug)]
struct Mem {
    id: MemoryId,
    kind: &'static str,
    tags: Vec<String>,
    captured_at: Option<i64>,
    ingested_at: i64,
    erased: bool,
}

fn time() -> impl Strategy<Value = i64> {
    // ms since the epoch, over a small range so that bounds often fall between memories
    (1_700_000_000_000i64..1_700_000_001_000).prop_map(|t| t)
}

fn subset(all: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
    proptest::sample::subsequence(all.to_vec(), 0..=all.len())
        .prop_map(|v| v.into_iter().map(String::from).collect())
}

fn mem(i: u8) -> impl Strategy<Value = Mem> {
    (
        proptest::sample::select(KINDS.to_vec()),
        subset(TAGS),
        proptest::option::of(time()),
        time(),
        proptest::bool::weighted(0.15),
    )
        .prop_map(move |(kind, tags, captured_at, ingested_at, erased)| Mem {
            id: MemoryId([i; 16]),
            kind,
            tags,
            captured_at,
            ingested_at,
            erased,
        })
}

fn grant(i: u8, memories: Vec<MemoryId>) -> impl Strategy<Value = Grant> {
    (
        subset(TAGS),
        subset(KINDS),
        proptest::option::of(time()),
        proptest::option::of(time()),
        proptest::sample::subsequence(memories.clone(), 0..=memories.len().min(3)),
        (proptest::option::of(time()), proptest::option::of(time())),
        (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            proptest::bool::weighted(0.2),
        ),
        proptest::bool::weighted(0.2),
    )
        .prop_map(
            move |(
                tags,
                kinds,
                from,
                until,
                memories,
                (expires, opens),
                (m, c, a, other),
                revoked,
            )| Grant {
                id: GrantId([i; 16]),
                grantee: UserId::new(if other { "eve" } else { "bob" }).unwrap(),
                capabilities: Capabilities {
                    metadata: m,
                    content: c,
                    ask: a,
                },
                conditions: GrantConditions {
                    tags,
                    kinds,
                    from: from.map(TimestampMs),
                    until: until.map(TimestampMs),
                    memories,
                },
                expires_at: expires.map(TimestampMs),
                not_before: opens.map(TimestampMs),
                revoked,
            },
        )
}

fn case() -> impl Strategy<Value = (Vec<Mem>, Vec<Grant>, i64, bool)> {
    (1u8..=12)
        .prop_flat_map(|n| (0..n).map(mem).collect::<Vec<_>>())
        .prop_flat_map(|mems| {
            let ids: Vec<MemoryId> = mems.iter().map(|m| m.id).collect();
            let grants = (1u8..=4)
                .prop_flat_map(move |k| (0..k).map(|i| grant(i, ids.clone())).collect::<Vec<_>>());
            (Just(mems), grants, time(), any::<bool>())
        })
}

async fn load(views: &Views, mems: &[Mem], grants: &[Grant]) {
    let pool = views.pool();
    sqlx::query("DELETE FROM memories")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM grants")
        .execute(pool)
        .await
        .unwrap();
    for (seq, m) in mems.iter().enumerate() {
        sqlx::query(
            "INSERT INTO memories (user_id, memory_id, seq, kind, tags, captured_at, source, content_type, size, storage, ingested_at, erased_seq)
             VALUES ('alice', $1, $2, $3, $4, to_timestamp($5 / 1000.0), NULL, 'text/plain', 1, 'inline', to_timestamp($6 / 1000.0), $7)",
        )
        .bind(m.id.0.to_vec())
        .bind(seq as i64 + 2)
        .bind(m.kind)
        .bind(&m.tags)
        .bind(m.captured_at)
        .bind(m.ingested_at)
        .bind(m.erased.then_some(1000i64))
        .execute(pool)
        .await
        .unwrap();
    }
    for (seq, g) in grants.iter().enumerate() {
        sqlx::query(
            "INSERT INTO grants (user_id, grant_id, grantee, can_metadata, can_content, can_ask, conditions, expires_at, not_before, created_seq, revoked_seq)
             VALUES ('alice', $1, $2, $3, $4, $5, $6::jsonb, to_timestamp($7 / 1000.0), to_timestamp($8 / 1000.0), $9, $10)",
        )
        .bind(g.id.0.to_vec())
        .bind(g.grantee.as_str())
        .bind(g.capabilities.metadata)
        .bind(g.capabilities.content)
        .bind(g.capabilities.ask)
        .bind(serde_json::to_string(&g.conditions).unwrap())
        .bind(g.expires_at.map(|t| t.0))
        .bind(g.not_before.map(|t| t.0))
        .bind(seq as i64 + 100)
        .bind(g.revoked.then_some(seq as i64 + 200))
        .execute(pool)
        .await
        .unwrap();
    }
}

#[test]
fn the_sql_pre_filter_never_drops_what_the_access_rule_allows() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pg = PgServer::start();
    pg.create_database("mnemo");
    let views = rt.block_on(async {
        let v = Views::connect(&pg.url("mnemo")).await.unwrap();
        v.migrate().await.unwrap();
        v
    });
    let alice = UserId::new("alice").unwrap();
    let bob = UserId::new("bob").unwrap();
    let allowed_total = std::cell::Cell::new(0usize);
    let looser = std::cell::Cell::new(0usize);
    let not_open = std::cell::Cell::new(0usize);
    let config = ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |((mems, grants, at, content) in case())| {
        let action = if content { AccessAction::ReadContent } else { AccessAction::List };
        let c = rt.block_on(async {
            load(&views, &mems, &grants).await;
            views
                .shared_candidates(&alice, &bob, &MemoryFilter::default(), None, content, at, 500)
                .await
                .unwrap()
        });
        let candidates: Vec<MemoryId> = c.items.iter().map(|m| m.id).collect();
        for m in &mems {
            let facts = mnemo_core::MemoryFacts {
                id: m.id,
                kind: m.kind,
                tags: &m.tags,
                captured_at: m.captured_at.map(TimestampMs),
                ingested_at: TimestampMs(m.ingested_at),
                erased: m.erased,
            };
            let rule = first_allowing(&grants, &bob, action, &facts, TimestampMs(at));
            if rule.is_some() {
                allowed_total.set(allowed_total.get() + 1);
                prop_assert!(
                    candidates.contains(&m.id),
                    "the pre-filter dropped {:?}, which grant {:?} allows at {at}",
                    m, rule
                );
            }
        }
        // what the views hand the rule: the same unrevoked grants, read back intact
        let unrevoked: Vec<&Grant> = grants.iter().filter(|g| !g.revoked && g.grantee == bob).collect();
        prop_assert_eq!(c.grants.len(), unrevoked.len());
        for g in unrevoked {
            prop_assert!(c.grants.contains(g), "grant {:?} read back as {:?}", g, c.grants);
            if g.in_force(TimestampMs(at)) == Err(mnemo_core::grant::Refusal::NotYetOpen) {
                not_open.set(not_open.get() + 1);
            }
        }
        for row in &c.items {
            let allowed = first_allowing(&c.grants, &bob, action, &row.facts(), TimestampMs(at));
            if allowed.is_none() {
                looser.set(looser.get() + 1);
            }
        }
    });
    // The property must have been exercised, not passed vacuously.
    let (allowed_total, looser) = (allowed_total.get(), looser.get());
    assert!(
        allowed_total > 50,
        "only {allowed_total} allowed memories in all cases"
    );
    // Time capsules not yet open at the read's time were among the grants.
    assert!(
        not_open.get() > 20,
        "only {} grants not yet open in all cases",
        not_open.get()
    );
    eprintln!(
        "access rule: {allowed_total} allowed memories checked; {looser} candidates the rule refused"
    );
}
