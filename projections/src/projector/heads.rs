//! The KV heads view (`mnemo-heads`): each user's checkpoint, read by the anchorer, updated
//! by compare-and-set ([`Head`], [`kv_head`]).

use super::*;

/// A user's checkpoint as kept in the KV heads view (core's one definition).
pub use mnemo_core::HeadRecord as Head;

pub(crate) async fn heads_bucket(js: &jetstream::Context, replicas: usize) -> Result<kv::Store> {
    Ok(mnemo_ledger::provision::ensure_kv(
        js,
        kv::Config {
            bucket: HEADS_BUCKET.into(),
            description: "mnemo: each user's checkpoint (seq, head hash, chain tree root)".into(),
            history: 1,
            num_replicas: replicas.max(1),
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        },
    )
    .await?)
}

/// Users whose last written head revision is remembered (an optimisation: one request
/// per head instead of two), at most.
const MAX_CACHED_REVISIONS: usize = 100_000;

/// The KV heads view.
pub(super) struct KvViews {
    pub(super) heads: kv::Store,
    pub(super) revisions: std::sync::Mutex<HashMap<UserId, u64>>,
}

impl KvViews {
    pub(super) async fn open(js: &jetstream::Context, replicas: usize) -> Result<Self> {
        Ok(Self {
            heads: heads_bucket(js, replicas).await?,
            revisions: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Moves the heads of a batch's users forward, concurrently (one key each).
    pub(super) async fn apply(
        &self,
        states: &HashMap<UserId, UserState>,
        users: &[UserId],
    ) -> Result<()> {
        let heads = users.iter().filter_map(|u| {
            let st = &states[u];
            (st.last_seq() > 0).then(|| {
                let head = Head {
                    seq: st.last_seq(),
                    hash: st.head(),
                    root: st.root(),
                };
                async move { put_head(&self.heads, &self.revisions, u, &head).await }
            })
        });
        futures::future::try_join_all(heads).await?;
        Ok(())
    }
}

/// Moves a user's head forward with compare-and-set on the entry's revision; never back.
pub(super) async fn put_head(
    kv: &kv::Store,
    revisions: &std::sync::Mutex<HashMap<UserId, u64>>,
    user: &UserId,
    head: &Head,
) -> Result<()> {
    let value: Bytes = serde_json::to_vec(head).expect("serialisable").into();
    // First try on the revision this process wrote last (it is normally the only writer
    // of a view): one request. On a mismatch, read the entry and decide.
    let known = {
        let mut r = revisions.lock().expect("lock");
        // A cache with a budget: past it, start over (a miss costs one read of the entry).
        if r.len() >= MAX_CACHED_REVISIONS {
            r.clear();
        }
        r.get(user).copied()
    };
    if let Some(rev) = known
        && let Ok(new) = kv.update(user.as_str(), value.clone(), rev).await
    {
        revisions.lock().expect("lock").insert(user.clone(), new);
        return Ok(());
    }
    for _ in 0..16 {
        let entry = kv
            .entry(user.as_str())
            .await
            .map_err(|e| ProjectionError::Nats(e.to_string()))?;
        let res = match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                let cur: Option<Head> = serde_json::from_slice(&e.value).ok();
                if cur.is_some_and(|c| c.seq >= head.seq) {
                    revisions
                        .lock()
                        .expect("lock")
                        .insert(user.clone(), e.revision);
                    return Ok(());
                }
                kv.update(user.as_str(), value.clone(), e.revision)
                    .await
                    .map_err(|e| e.to_string())
            }
            _ => kv
                .create(user.as_str(), value.clone())
                .await
                .map_err(|e| e.to_string()),
        };
        if let Ok(rev) = res {
            revisions.lock().expect("lock").insert(user.clone(), rev);
            return Ok(());
        }
    }
    Err(ProjectionError::Nats(format!(
        "head of {user}: too many CAS conflicts"
    )))
}

/// Reads a user's head from the KV view.
pub async fn kv_head(js: &jetstream::Context, user: &UserId) -> Result<Option<Head>> {
    let kv = heads_bucket(js, 1).await?;
    Ok(kv
        .get(user.as_str())
        .await
        .map_err(|e| ProjectionError::Nats(e.to_string()))?
        .and_then(|v| serde_json::from_slice(&v).ok()))
}
