//! A read-only view of the chains, for processes that only read and decrypt: the
//! projector, view rebuilds. It cannot append or sign: [`LedgerReader`] is not a
//! [`Ledger`] and has no method that writes a chain, so code holding one cannot write
//! custody, and a view process needs no custody signing key in its environment.
//!
//! Connected on its own ([`LedgerReader::connect`]), the ledger it wraps is given a fresh
//! random signing key that no chain names (anything signed with it would be refused by
//! every verifier), and no method reaches it. Made from a process's writing ledger
//! (`From<Ledger>`), it shares that ledger's connection and caches.

use mnemo_core::{SigningKey, UserId};

use crate::ledger::{Ledger, OpenedStream, StoredEvent};
use crate::{KeyCache, LedgerConfig, Result, SealStore};
use mnemo_core::Seq;
use mnemo_core::names::ChainLocation;

/// Reads and decrypts chains; never appends, never signs.
///
/// It reads:
///
/// ```no_run
/// # async fn f(r: mnemo_ledger::LedgerReader, u: mnemo_core::UserId) {
/// let events = r.events(&u, mnemo_core::Seq(1), 10).await;
/// # }
/// ```
///
/// It cannot append (this does not compile):
///
/// ```compile_fail
/// # async fn f(r: mnemo_ledger::LedgerReader, u: mnemo_core::UserId) {
/// let receipt = r.create_user(&u).await;
/// # }
/// ```
///
/// nor sign, nor reach a writing ledger:
///
/// ```compile_fail
/// # fn f(r: mnemo_ledger::LedgerReader) {
/// let ledger: mnemo_ledger::Ledger = r.into();
/// # }
/// ```
#[derive(Clone)]
pub struct LedgerReader {
    ledger: Ledger,
}

impl From<Ledger> for LedgerReader {
    fn from(ledger: Ledger) -> Self {
        Self { ledger }
    }
}

impl LedgerReader {
    /// Connects with `cfg`, whose signing key is replaced by a fresh random one: the
    /// custody key is neither needed nor held.
    pub async fn connect(client: async_nats::Client, mut cfg: LedgerConfig) -> Result<Self> {
        cfg.keys = crate::Keyring {
            current: SigningKey::from_bytes(&rand::random()),
            previous: Vec::new(),
        };
        Ok(Self {
            ledger: Ledger::connect(client, cfg).await?,
        })
    }

    /// Where `user`'s chain lives.
    pub fn locate(&self, user: &UserId) -> ChainLocation {
        self.ledger.locate(user)
    }

    /// Up to `limit` events of `user` from `from` on (see [`Ledger::events`]).
    pub async fn events(&self, user: &UserId, from: Seq, limit: usize) -> Result<Vec<StoredEvent>> {
        self.ledger.events(user, from, limit).await
    }

    /// The seal stream, to resolve stored seals.
    pub fn seals(&self) -> &SealStore {
        self.ledger.seals()
    }

    /// Fetches the keys opening `events` will need into `cache`.
    pub async fn warm_keys(&self, events: &[&StoredEvent], cache: &mut KeyCache) -> Result<()> {
        self.ledger.warm_keys(events, cache).await
    }

    /// Opens a memory event's payload and content (see [`Ledger::open_memory_stream`]).
    pub async fn open_memory_stream_cached(
        &self,
        stored: &StoredEvent,
        cache: &mut KeyCache,
    ) -> Result<OpenedStream> {
        self.ledger.open_memory_stream_cached(stored, cache).await
    }
}
