//! What the projector knows of each user's chain: enough to check the next event's link and
//! signer, and to extend the chain tree's root, without replaying the chain.

use mnemo_core::keys::{KeyHistory, KeyRecord};
use mnemo_core::{Accumulator, Hash32, KeyRole, PublicKey, Seq, UserId, merkle::CHAIN_TREE};
use sqlx::Row;
use std::collections::HashMap;

#[derive(Clone, Debug)]
pub(crate) struct UserState {
    pub last_seq: u64,
    pub head: Hash32,
    pub acc: Accumulator,
    pub keys: KeyHistory,
    pub exists_in_db: bool,
}

impl UserState {
    pub fn empty() -> Self {
        Self {
            last_seq: 0,
            head: Hash32::ZERO,
            acc: Accumulator::new(),
            keys: KeyHistory::default(),
            exists_in_db: false,
        }
    }

    pub fn next_seq(&self) -> Seq {
        Seq(self.last_seq + 1)
    }

    pub fn root(&self) -> Hash32 {
        self.acc.root(CHAIN_TREE)
    }
}

fn hash(b: &[u8]) -> Hash32 {
    let mut h = [0u8; 32];
    h.copy_from_slice(&b[..32]);
    Hash32(h)
}

/// Loads the states of `users` from PostgreSQL (users not there get an empty state).
pub(crate) async fn load(
    conn: &mut sqlx::PgConnection,
    users: &[UserId],
) -> sqlx::Result<HashMap<UserId, UserState>> {
    let names: Vec<&str> = users.iter().map(UserId::as_str).collect();
    let mut out: HashMap<UserId, UserState> = users
        .iter()
        .map(|u| (u.clone(), UserState::empty()))
        .collect();
    let rows = sqlx::query(
        "SELECT user_id, last_seq, head_hash, frontier FROM users WHERE user_id = ANY($1)",
    )
    .bind(&names)
    .fetch_all(&mut *conn)
    .await?;
    for r in rows {
        let u = UserId::new(r.get::<String, _>(0)).expect("stored user ids are valid");
        let frontier: Vec<u8> = r.get(3);
        let last_seq = r.get::<i64, _>(1) as u64;
        let st = out.get_mut(&u).expect("asked for");
        st.last_seq = last_seq;
        st.head = hash(&r.get::<Vec<u8>, _>(2));
        st.acc = Accumulator::from_peaks(last_seq, frontier.chunks_exact(32).map(hash).collect())
            .expect("stored frontier matches its size");
        st.exists_in_db = true;
    }
    let rows = sqlx::query(
        "SELECT user_id, public_key, role, added_seq, retired_seq FROM user_keys WHERE user_id = ANY($1)",
    )
    .bind(&names)
    .fetch_all(&mut *conn)
    .await?;
    for r in rows {
        let u = UserId::new(r.get::<String, _>(0)).expect("stored user ids are valid");
        let pk: Vec<u8> = r.get(1);
        let key = PublicKey::from_bytes(&pk[..32].try_into().expect("32 bytes"))
            .expect("stored keys are valid");
        let role = if r.get::<String, _>(2) == "device" {
            KeyRole::Device
        } else {
            KeyRole::Custody
        };
        out.get_mut(&u).expect("asked for").keys.insert(KeyRecord {
            key,
            role,
            added: Seq(r.get::<i64, _>(3) as u64),
            retired: r.get::<Option<i64>, _>(4).map(|s| Seq(s as u64)),
        });
    }
    Ok(out)
}
