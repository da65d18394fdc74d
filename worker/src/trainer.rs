//! The trainer: a worker that keeps, for each user, a BM25 search model over the texts and
//! transcripts it was given (`mnemo_core::search_index`), and records each version of it
//! as `model_trained` with its training-set commitment. mnemo keeps the model's bytes and
//! answers the owner's queries from it (`GET /v1/models/{id}/query`).
//!
//! What it learned is kept in a state directory, one file per user (term counts and the
//! training-set leaves, never the texts), so a restart retrains nothing it already had.
//! A task is answered only once a model including its memory is recorded: a crash before
//! that redelivers the task. Several tasks of one user arriving together make one model.
//!
//! When an erasure reaches a model's training set mnemo marks it stale and publishes a
//! notice; the trainer then asks for its stale models (also at start and every
//! `recheck`, so a notice missed while it was down is not lost), forgets the erased
//! memories and records a model without them.

use futures::StreamExt;
use mnemo_core::processing::SetMember;
use mnemo_core::search_index::{BM25_FORMAT, SearchIndex, term_counts};
use mnemo_core::{GrantId, MemoryId, UserId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

use crate::client::{ModelArtifact, Worker};
use crate::error::WorkerError;
use crate::protocol::{Done, Fetched};
pub use crate::resident::DEFAULT_BUDGET;
use crate::resident::Resident;
use crate::run::Job;

/// One user's corpus as the trainer keeps it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Corpus {
    /// The grant the memories were fetched under (a model names one).
    grant: Option<GrantId>,
    /// Each memory: its training-set leaf and term counts.
    docs: BTreeMap<MemoryId, Doc>,
    /// Bumped by every change; `trained` is the generation the last model holds.
    #[serde(default)]
    generation: u64,
    #[serde(default)]
    trained: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Doc {
    member: SetMember,
    terms: BTreeMap<String, u32>,
}

/// The trainer. Cheap to clone.
#[derive(Clone)]
pub struct Trainer {
    worker: Worker,
    dir: PathBuf,
    /// The corpora in memory, within a budget of users (each is saved on every change, so
    /// one dropped is loaded again from its file).
    users: Arc<Resident<UserId, Mutex<Corpus>>>,
    /// How long a training waits for more memories of the same user.
    pub gather: Duration,
    /// How often the stale models are asked for without a notice.
    pub recheck: Duration,
}

impl Trainer {
    /// A trainer keeping its state in `dir`, at most `budget` users' corpora in memory
    /// while unused ([`DEFAULT_BUDGET`] for none).
    pub fn new(worker: Worker, dir: PathBuf, budget: Option<usize>) -> Result<Self, WorkerError> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| WorkerError::Config(format!("state dir {}: {e}", dir.display())))?;
        Ok(Self {
            worker,
            dir,
            users: Arc::new(Resident::new(budget.unwrap_or(DEFAULT_BUDGET.get()))),
            gather: Duration::from_millis(200),
            recheck: Duration::from_secs(30),
        })
    }

    fn path(&self, user: &UserId) -> PathBuf {
        self.dir.join(format!("{user}.json"))
    }

    fn corpus(&self, user: &UserId) -> Result<Arc<Mutex<Corpus>>, WorkerError> {
        self.users.get_or_load(user, || {
            let c = match std::fs::read(self.path(user)) {
                Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                    WorkerError::Config(format!("state of {user} is unreadable: {e}"))
                })?,
                Err(_) => Corpus::default(),
            };
            Ok(Mutex::new(c))
        })
    }

    fn save(&self, user: &UserId, c: &Corpus) -> Result<(), String> {
        let tmp = self.dir.join(format!(".{user}.json.tmp"));
        std::fs::write(&tmp, serde_json::to_vec(c).expect("serialisable"))
            .and_then(|_| std::fs::rename(&tmp, self.path(user)))
            .map_err(|e| format!("saving the state of {user}: {e}"))
    }

    /// Works one task: fetch, learn its words, and answer once a model holds it.
    pub async fn handle(&self, job: Job) -> Result<Done, String> {
        let task = job.item.what;
        let input = match self.worker.fetch(&task).await {
            Ok(i) => i,
            Err(e) if e.is_final() => {
                // Erased (or no longer granted) since it was learned: forget it.
                self.forget(&task.user, &[task.memory])
                    .await
                    .map_err(|e| e.to_string())?;
                return Ok(Done { results: vec![] });
            }
            Err(e) => return Err(e.to_string()),
        };
        let Some(text) = text_of(&input) else {
            return Ok(Done { results: vec![] });
        };
        let corpus = self.corpus(&task.user).map_err(|e| e.to_string())?;
        let mine = {
            let mut c = corpus.lock().await;
            if c.grant != Some(task.grant) {
                // Another grant (the last one revoked, a new one given): start over; the
                // planner queues what the new grant covers.
                *c = Corpus {
                    grant: Some(task.grant),
                    ..Corpus::default()
                };
            }
            let doc = Doc {
                member: SetMember {
                    seq: mnemo_core::Seq(input.seq),
                    event_hash: input.event_hash,
                },
                terms: term_counts(&text),
            };
            c.docs.insert(input.memory, doc);
            c.generation += 1;
            self.save(&task.user, &c)?;
            c.generation
        };
        tokio::time::sleep(self.gather).await;
        self.train(&task.user, &corpus, mine).await?;
        Ok(Done { results: vec![] })
    }

    /// Records a model of `user` holding generation `at_least`, unless one already does.
    async fn train(
        &self,
        user: &UserId,
        corpus: &Mutex<Corpus>,
        at_least: u64,
    ) -> Result<(), String> {
        let mut c = corpus.lock().await;
        if c.trained >= at_least {
            return Ok(());
        }
        let Some(grant) = c.grant else {
            return Ok(());
        };
        if c.docs.is_empty() {
            c.trained = c.generation;
            return self.save(user, &c);
        }
        let index = SearchIndex::build(c.docs.iter().map(|(m, d)| (*m, d.member, &d.terms)));
        let members = c.docs.iter().map(|(m, d)| (*m, d.member)).collect();
        let artifact = ModelArtifact {
            version: self.worker.version.clone(),
            bytes: serde_json::to_vec(&index).expect("serialisable"),
            format: BM25_FORMAT.into(),
            keep: true,
            members,
        };
        match self.worker.record_model(user, &grant, artifact).await {
            Ok(r) => {
                tracing::info!(
                    %user,
                    model = %r.model,
                    memories = r.set_count,
                    resident_users = self.users.len(),
                    "model recorded"
                );
                c.trained = c.generation;
                self.save(user, &c)
            }
            Err(WorkerError::Refused {
                status: 410,
                detail,
            }) => {
                // A memory was erased after it was learned (mnemo names it): forget it;
                // the task's redelivery trains again without it.
                if let Some(m) = erased_in(&detail) {
                    c.docs.remove(&m);
                    c.generation += 1;
                    self.save(user, &c)?;
                }
                Err(format!(
                    "the model of {user} held an erased memory: {detail}"
                ))
            }
            Err(e) => Err(format!("recording the model of {user}: {e}")),
        }
    }

    /// Forgets `memories` of `user` (and records a model without them if one held them).
    async fn forget(&self, user: &UserId, memories: &[MemoryId]) -> Result<(), WorkerError> {
        let corpus = self.corpus(user)?;
        let at = {
            let mut c = corpus.lock().await;
            let before = c.docs.len();
            for m in memories {
                c.docs.remove(m);
            }
            if c.docs.len() == before {
                return Ok(());
            }
            c.generation += 1;
            self.save(user, &c).map_err(WorkerError::Config)?;
            c.generation
        };
        self.train(user, &corpus, at)
            .await
            .map_err(WorkerError::Config)
    }

    /// Asks mnemo for stale models and retrains each without its erased memories.
    pub async fn retrain_stale(&self) -> Result<usize, WorkerError> {
        let stale = self.worker.stale_models().await?;
        let mut n = 0;
        for s in stale.stale {
            let corpus = self.corpus(&s.user)?;
            let at = {
                let mut c = corpus.lock().await;
                if c.grant != Some(s.grant) {
                    continue;
                }
                let before = c.docs.len();
                for m in &s.erased {
                    c.docs.remove(m);
                }
                if c.docs.len() == before && c.trained == c.generation {
                    // Nothing of it left here: a model without it is recorded already,
                    // or the corpus is empty.
                    continue;
                }
                c.generation += 1;
                self.save(&s.user, &c).map_err(WorkerError::Config)?;
                c.generation
            };
            self.train(&s.user, &corpus, at)
                .await
                .map_err(WorkerError::Config)?;
            n += 1;
        }
        Ok(n)
    }

    /// Retrains stale models at start, on every notice and every `recheck`, until `stop`.
    pub async fn watch_stale(self, stop: crate::Shutdown) {
        let subject = format!(
            "{}.{}",
            mnemo_core::names::NOTICE_PREFIX,
            self.worker.processor
        );
        let mut notices = match self.worker.nats().subscribe(subject).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "no notice subscription; polling only");
                None
            }
        };
        let mut tick = tokio::time::interval(self.recheck);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                Some(_) = async { match notices.as_mut() { Some(n) => n.next().await, None => None } } => {}
                _ = stop.wait() => return,
            }
            match self.retrain_stale().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(models = n, "retrained stale models"),
                Err(e) => tracing::warn!(error = %e, "retraining stale models failed; retried"),
            }
        }
    }
}

/// The memory a 410 refusal names (`memory <hex> was erased`).
fn erased_in(detail: &str) -> Option<MemoryId> {
    detail
        .split_whitespace()
        .find_map(|w| MemoryId::from_hex(w).ok())
}

/// The text of a fetched memory, if it is text.
fn text_of(f: &Fetched) -> Option<String> {
    use base64::Engine;
    if !f.content_type.starts_with("text/") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&f.content)
        .ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}
