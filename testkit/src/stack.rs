//! The custody stack most tests need, set up in one place: a `nats-server`, the ledger on
//! it, PostgreSQL with the migrations run and the projector feeding it, and, when asked for,
//! anvil with the anchor contract deployed.
//!
//! ```no_run
//! # async fn t() {
//! let s = mnemo_testkit::Stack::builder().anvil().start().await;
//! let alice = mnemo_core::UserId::new("alice").unwrap();
//! s.ledger.create_user(&alice).await.unwrap();
//! s.ledger.append(&alice, mnemo_testkit::note(1)).await.unwrap();
//! s.caught_up(&[alice]).await;
//! # }
//! ```

use crate::{Anvil, DEV_KEY, NatsOptions, NatsServer, PgServer};
use async_nats::jetstream;
use bytes::Bytes;
use mnemo_anchor::{Anchorer, AnchorerConfig, Chain};
use mnemo_core::{Address, Event, EventBody, Hash32, Head, Seq, SigningKey, TimestampMs, UserId};
use mnemo_ledger::{Layout, Ledger, LedgerConfig, NewMemory, SecretKey};
use mnemo_projections::{Projector, ProjectorConfig, ProjectorStats, kv_head, lag};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a test waits for a view to catch up before it fails.
pub const CATCH_UP: Duration = Duration::from_secs(60);

/// What a [`Stack`] is made of; [`Stack::builder`] gives the defaults.
pub struct StackBuilder {
    layout: Layout,
    custody_seed: [u8; 32],
    master_key: [u8; 32],
    anvil: bool,
    projector: bool,
    rescan: Duration,
    batch_wait: Option<Duration>,
    duplicate_window: Option<Duration>,
    nats: NatsOptions,
}

impl StackBuilder {
    /// The ledger's stream layout (default: a stream per user).
    pub fn layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    /// The seed of the custody signing key (default: `[2; 32]`).
    pub fn custody_seed(mut self, seed: [u8; 32]) -> Self {
        self.custody_seed = seed;
        self
    }

    /// Also start anvil and deploy the anchor contract on it.
    pub fn anvil(mut self) -> Self {
        self.anvil = true;
        self
    }

    /// Start without the projector; [`Stack::spawn_projector`] starts one later.
    pub fn without_projector(mut self) -> Self {
        self.projector = false;
        self
    }

    /// How often the projector looks for new chain streams (default 100 ms).
    pub fn rescan(mut self, every: Duration) -> Self {
        self.rescan = every;
        self
    }

    /// How long the projector's batches wait to fill (default: the projector's).
    pub fn batch_wait(mut self, wait: Duration) -> Self {
        self.batch_wait = Some(wait);
        self
    }

    /// The ledger's duplicate window (default: the ledger's).
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = Some(window);
        self
    }

    /// Options of the `nats-server`.
    pub fn nats(mut self, opts: NatsOptions) -> Self {
        self.nats = opts;
        self
    }

    /// Starts the servers, connects the ledger, migrates and starts the projector.
    pub async fn start(self) -> Stack {
        let nats = NatsServer::start_with(self.nats);
        let client = async_nats::connect(nats.url())
            .await
            .unwrap_or_else(|e| panic!("connect to nats-server: {e}"));
        let js = jetstream::new(client.clone());
        let mut cfg = LedgerConfig::new(
            SecretKey::from_bytes(self.master_key),
            SigningKey::from_bytes(&self.custody_seed),
        );
        cfg.layout = self.layout;
        if let Some(w) = self.duplicate_window {
            cfg.duplicate_window = w;
        }
        let ledger = Ledger::connect(client.clone(), cfg)
            .await
            .unwrap_or_else(|e| panic!("ledger: {e}"));
        let views = PgViews::start().await;
        let (anvil, contract) = if self.anvil {
            let anvil = Anvil::start();
            let contract = Chain::deploy(&anvil.url(), DEV_KEY)
                .await
                .unwrap_or_else(|e| panic!("deploy the anchor contract: {e}"));
            (Some(anvil), Some(contract))
        } else {
            (None, None)
        };
        let mut s = Stack {
            nats,
            client,
            js,
            ledger,
            pg: views.pg,
            pool: views.pool,
            anvil,
            contract,
            rescan: self.rescan,
            batch_wait: self.batch_wait,
            projector: None,
            custody_key: SigningKey::from_bytes(&self.custody_seed),
        };
        if self.projector {
            s.spawn_projector();
        }
        s
    }
}

/// PostgreSQL with the `mnemo` database migrated: the views' side of a stack, also for
/// tests whose ledger runs elsewhere (a NATS hub in operator mode).
pub struct PgViews {
    /// The server.
    pub pg: PgServer,
    /// A pool on the `mnemo` database.
    pub pool: sqlx::PgPool,
}

impl PgViews {
    /// Starts PostgreSQL, creates the `mnemo` database and runs the migrations.
    pub async fn start() -> Self {
        let pg = PgServer::start();
        pg.create_database("mnemo");
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&pg.url("mnemo"))
            .await
            .unwrap_or_else(|e| panic!("connect to PostgreSQL: {e}"));
        mnemo_projections::migrate(&pool)
            .await
            .unwrap_or_else(|e| panic!("migrate: {e}"));
        Self { pg, pool }
    }

    /// Starts a projector from `ledger`'s chains into these views.
    pub fn project(&self, js: &jetstream::Context, ledger: &Ledger) -> RunningProjector {
        RunningProjector::spawn(
            js,
            ledger,
            &self.pool,
            ProjectorConfig {
                rescan: Duration::from_millis(100),
                ..Default::default()
            },
        )
    }
}

/// A projector task; it stops when this is dropped.
pub struct RunningProjector {
    stop: watch::Sender<bool>,
    task: JoinHandle<mnemo_projections::Result<()>>,
    /// Its counters.
    pub stats: Arc<ProjectorStats>,
}

impl RunningProjector {
    /// Spawns a projector with `cfg`.
    pub fn spawn(
        js: &jetstream::Context,
        ledger: &Ledger,
        pool: &sqlx::PgPool,
        cfg: ProjectorConfig,
    ) -> Self {
        let (stop, rx) = watch::channel(false);
        let p = Projector::new(js.clone(), ledger.clone(), pool.clone(), cfg);
        let stats = p.stats();
        Self {
            stop,
            task: tokio::spawn(p.run(rx)),
            stats,
        }
    }

    /// Asks it to stop and waits; panics if it had failed.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.finish().await
    }

    /// Kills the task where it is (mid-batch, say), without a clean stop.
    pub async fn abort(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    async fn finish(self) {
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("projector failed: {e}"),
            Err(e) if e.is_cancelled() => {}
            Err(e) => panic!("projector panicked: {e}"),
        }
    }
}

/// The whole custody stack of one test.
pub struct Stack {
    /// The server holding the chains.
    pub nats: NatsServer,
    /// A client of it (the ledger's connection).
    pub client: async_nats::Client,
    /// JetStream on `client`.
    pub js: jetstream::Context,
    /// The ledger.
    pub ledger: Ledger,
    /// The views' PostgreSQL.
    pub pg: PgServer,
    /// A pool on the migrated `mnemo` database.
    pub pool: sqlx::PgPool,
    /// anvil, when asked for.
    pub anvil: Option<Anvil>,
    /// The anchor contract on `anvil`.
    pub contract: Option<Address>,
    rescan: Duration,
    batch_wait: Option<Duration>,
    projector: Option<RunningProjector>,
    custody_key: SigningKey,
}

impl Stack {
    /// The defaults: a stream per user, custody seed `[2; 32]`, no anvil, a projector.
    pub fn builder() -> StackBuilder {
        StackBuilder {
            layout: Layout::PerUser,
            custody_seed: [2; 32],
            master_key: [1; 32],
            anvil: false,
            projector: true,
            rescan: Duration::from_millis(100),
            batch_wait: None,
            duplicate_window: None,
            nats: NatsOptions::default(),
        }
    }

    /// [`builder`](Self::builder) with everything at its default.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// The projector's configuration in this stack.
    pub fn projector_config(&self) -> ProjectorConfig {
        let mut cfg = ProjectorConfig {
            rescan: self.rescan,
            ..Default::default()
        };
        if let Some(w) = self.batch_wait {
            cfg.batch_wait = w;
        }
        cfg
    }

    /// Starts the projector (after [`StackBuilder::without_projector`], or after
    /// [`take_projector`](Self::take_projector)).
    pub fn spawn_projector(&mut self) -> Arc<ProjectorStats> {
        let p =
            RunningProjector::spawn(&self.js, &self.ledger, &self.pool, self.projector_config());
        let stats = p.stats.clone();
        self.projector = Some(p);
        stats
    }

    /// Hands the running projector to the test (to stop or abort it).
    pub fn take_projector(&mut self) -> RunningProjector {
        self.projector.take().expect("no projector is running")
    }

    /// anvil's URL; panics without [`StackBuilder::anvil`].
    pub fn anvil_url(&self) -> String {
        self.anvil.as_ref().expect("started without anvil").url()
    }

    /// A connection to the anchor contract, sending from the dev account.
    pub async fn chain(&self) -> Chain {
        let contract = self.contract.expect("started without anvil");
        Chain::connect(&self.anvil_url(), DEV_KEY, contract, 1)
            .await
            .unwrap_or_else(|e| panic!("connect to the anchor contract: {e}"))
    }

    /// An anchorer on this stack's chains and contract.
    pub async fn anchorer(&self, cfg: AnchorerConfig) -> Anchorer {
        Anchorer::new(self.js.clone(), self.chain().await, cfg)
            .await
            .unwrap_or_else(|e| panic!("anchorer: {e}"))
    }

    /// Plants `body` as the next event of `user`'s chain, signed with the custody key but
    /// published straight to the stream, past the ledger's checks: what an insider or an
    /// older version could write. Returns the event and its hash.
    pub async fn plant(&self, user: &UserId, body: EventBody, at: TimestampMs) -> (Event, Hash32) {
        self.plant_with(user, body, None, at).await
    }

    /// [`plant`](Self::plant) with a payload commitment (a planted memory event).
    pub async fn plant_with(
        &self,
        user: &UserId,
        body: EventBody,
        payload: Option<Hash32>,
        at: TimestampMs,
    ) -> (Event, Hash32) {
        let tip = self
            .ledger
            .head(user)
            .await
            .unwrap()
            .expect("user has a chain");
        let last = self
            .ledger
            .events(user, Seq(tip.len), 1)
            .await
            .unwrap()
            .remove(0);
        let head = Head {
            user: user.clone(),
            len: tip.len,
            hash: last.hash,
        };
        // In the chain's format (version 2 from its last event on), sealed alone.
        let signer = mnemo_core::PublicKey(self.custody_key.verifying_key()).id();
        let version = last.event.version.max(self.ledger.config().format);
        let (unsigned, hash) = head.next_unsigned(version, signer, at, body, payload, None);
        let event = unsigned.sign(&self.custody_key);
        let msg = mnemo_ledger::envelope::encode(&event.to_wire(), &[]);
        self.js
            .publish(self.ledger.locate(user).subject, msg)
            .await
            .unwrap()
            .await
            .unwrap_or_else(|e| panic!("plant an event: {e}"));
        (event, hash)
    }

    /// Waits until the heads view shows each user's ledger head (hash and length).
    pub async fn caught_up(&self, users: &[UserId]) {
        let t = Instant::now();
        for u in users {
            loop {
                let tip = self
                    .ledger
                    .head(u)
                    .await
                    .unwrap()
                    .expect("user has a chain");
                let head = kv_head(&self.js, u).await.unwrap();
                if head.is_some_and(|h| h.seq == tip.len && h.hash == tip.hash) {
                    break;
                }
                assert!(
                    t.elapsed() < CATCH_UP,
                    "the heads view did not catch up on {u}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Waits until the PostgreSQL view has applied every stored chain message.
    pub async fn no_lag(&self, within: Duration) {
        let t = Instant::now();
        while lag(&self.js, &self.pool, "pg").await.ok() != Some(0) {
            assert!(t.elapsed() < within, "the projection did not catch up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A text note: kind `note`, tag `diary`, content "memory number {i}".
pub fn note(i: usize) -> NewMemory {
    NewMemory {
        kind: "note".into(),
        tags: vec!["diary".into()],
        content_type: "text/plain".into(),
        content: Bytes::from(format!("memory number {i}")),
        ..Default::default()
    }
}
