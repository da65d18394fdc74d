//! One NATS account per user: signed by the operator's signing key with explicit limits
//! and JetStream off, pushed with `$SYS.REQ.CLAIMS.UPDATE` (the reply is checked); a scoped
//! signing key per account whose template allows only the user's own subjects; device
//! credentials (`.creds`) with an expiry, and their revocation. The account seeds are kept
//! sealed (the ledger's master key) in the `mnemo-accounts` bucket: `u.<user>` holds the
//! sealed seeds, `a.<account key>` the user id.

use async_nats::jetstream::{self, kv};
use mnemo_core::UserId;
use mnemo_core::names::{ACCOUNTS_BUCKET, CAPTURE_PREFIX, INGEST_PREFIX, READ_PREFIX};
use nkeys::KeyPair;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::claims::{self, Import, Limits, Permission, ScopedKey, User, UserTemplate};
use crate::error::{NatsAuthError, Result};
use crate::operator::OperatorSetup;
use mnemo_ledger::clock::now_secs;

/// A user's account, as the accounts service keeps it.
pub struct UserAccount {
    /// The account key pair.
    pub account: KeyPair,
    /// The scoped signing key that signs device credentials.
    pub scoped: KeyPair,
    /// Revoked device keys, with when.
    pub revocations: Vec<(String, i64)>,
}

/// Largest message a device may send (the ingest service's limit too).
pub const DEVICE_MAX_PAYLOAD: i64 = 8 * 1024 * 1024;

/// Limits of a user account (explicit; JetStream off: devices reach the chains only through
/// the service account's exports).
pub fn user_account_limits() -> Limits {
    Limits {
        subs: 256,
        data: -1,
        payload: DEVICE_MAX_PAYLOAD,
        imports: 8,
        exports: 0,
        wildcards: true,
        conn: 64,
        leaf: 8,
        mem_storage: 0,
        disk_storage: 0,
        streams: 0,
        consumer: 0,
        max_ack_pending: None,
        mem_max_stream_bytes: None,
        disk_max_stream_bytes: None,
        max_bytes_required: None,
    }
}

/// The JWT of `user`'s account.
pub fn user_account_jwt(
    signing: &KeyPair,
    service_pub: &str,
    user: &str,
    a: &UserAccount,
) -> Result<String> {
    let acct = a.account.public_key();
    let import = |name: &str, prefix: &str| Import {
        name: name.into(),
        subject: format!("{prefix}.{acct}"),
        account: service_pub.into(),
        local_subject: prefix.into(),
        kind: "service",
        token: None,
    };
    claims::encode(
        signing,
        acct.clone(),
        Some(user.into()),
        None,
        claims::Account {
            kind: "account",
            version: 2,
            limits: user_account_limits(),
            exports: vec![],
            imports: vec![
                import("ingest", INGEST_PREFIX),
                import("read", READ_PREFIX),
                import("capture", CAPTURE_PREFIX),
            ],
            signing_keys: vec![ScopedKey {
                kind: "user_scope",
                key: a.scoped.public_key(),
                role: "device",
                template: UserTemplate {
                    publish: Permission {
                        allow: vec![
                            INGEST_PREFIX.into(),
                            READ_PREFIX.into(),
                            CAPTURE_PREFIX.into(),
                        ],
                    },
                    subscribe: Permission {
                        allow: vec!["_INBOX.>".into()],
                    },
                    subs: 64,
                    data: -1,
                    payload: DEVICE_MAX_PAYLOAD,
                    allowed_connection_types: vec!["STANDARD", "WEBSOCKET", "LEAFNODE", "MQTT"],
                },
            }],
            revocations: a.revocations.iter().cloned().collect(),
        },
    )
}

/// Device credentials for `user`'s account: a user JWT signed by the scoped key (so it
/// carries no permissions of its own: the template applies), valid for `ttl_secs`.
pub fn device_creds(a: &UserAccount, device: &str, ttl_secs: i64) -> Result<(String, String)> {
    let key = KeyPair::new_user();
    let jwt = device_jwt(a, &key.public_key(), device, ttl_secs)?;
    Ok((key.public_key(), claims::creds(&jwt, &key.seed()?)))
}

/// A device user JWT for a NATS user key the device holds (a browser's, made in the page):
/// only the JWT leaves the server, the seed never exists outside the device.
pub fn device_jwt(
    a: &UserAccount,
    public_key: &str,
    device: &str,
    ttl_secs: i64,
) -> Result<String> {
    claims::encode(
        &a.scoped,
        public_key.to_owned(),
        Some(device.into()),
        Some(now_secs() as i64 + ttl_secs),
        User::scoped(a.account.public_key()),
    )
}

/// Pushes an account JWT with `$SYS.REQ.CLAIMS.UPDATE` (as a system-account user) and checks
/// the server's answer.
pub async fn push_account(sys: &async_nats::Client, jwt: &str) -> Result<()> {
    let reply = sys
        .request("$SYS.REQ.CLAIMS.UPDATE", jwt.to_owned().into())
        .await
        .map_err(|e| NatsAuthError::nats("claims update", e))?;
    let v: Value = serde_json::from_slice(&reply.payload)
        .map_err(|e| NatsAuthError::ClaimsRefused(format!("unreadable reply: {e}")))?;
    let code = v["data"]["code"].as_i64().or(v["error"]["code"].as_i64());
    if code != Some(200) {
        return Err(NatsAuthError::ClaimsRefused(v.to_string()));
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct StoredAccount {
    account: String,
    scoped: String,
    #[serde(default)]
    revocations: Vec<(String, i64)>,
}

/// One NATS account per user: creation, device credentials, revocation, lookup.
#[derive(Clone)]
pub struct Accounts {
    kv: kv::Store,
    sys: async_nats::Client,
    signing: Arc<KeyPair>,
    service_pub: String,
    master: Arc<mnemo_ledger::SecretKey>,
    by_account: Arc<Mutex<HashMap<String, UserId>>>,
    /// The service account's key (operator setups): signs processors' credentials.
    service: Option<Arc<KeyPair>>,
}

fn bucket(e: impl std::fmt::Display) -> NatsAuthError {
    NatsAuthError::nats("accounts bucket", e)
}

impl Accounts {
    /// Opens (or creates, with `replicas` replicas) the accounts bucket. `sys` is a
    /// system-account connection, `signing` the operator's signing key, `master` seals the
    /// account seeds at rest.
    pub async fn open(
        js: &jetstream::Context,
        sys: async_nats::Client,
        signing: KeyPair,
        service_pub: String,
        master: mnemo_ledger::SecretKey,
        replicas: usize,
    ) -> Result<Self> {
        let kv = mnemo_ledger::provision::ensure_kv(
            js,
            kv::Config {
                bucket: ACCOUNTS_BUCKET.into(),
                description: "mnemo: users' NATS accounts (sealed seeds)".into(),
                history: 1,
                num_replicas: replicas.max(1),
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            },
        )
        .await?;
        Ok(Self {
            kv,
            sys,
            signing: Arc::new(signing),
            service_pub,
            master: Arc::new(master),
            by_account: Default::default(),
            service: None,
        })
    }

    /// Also issue processors' credentials, signed by the service account's key.
    pub fn with_service_key(mut self, key: KeyPair) -> Self {
        self.service = Some(Arc::new(key));
        self
    }

    pub(crate) fn service_key(&self) -> Option<&KeyPair> {
        self.service.as_deref()
    }

    pub(crate) fn signing(&self) -> &KeyPair {
        &self.signing
    }

    pub(crate) fn sys(&self) -> &async_nats::Client {
        &self.sys
    }

    /// Opens the accounts service of an operator setup: connects to `servers` as the
    /// setup's system user and signs with its operator signing key.
    pub async fn for_setup(
        setup: &OperatorSetup,
        servers: Vec<async_nats::ServerAddr>,
        js: &jetstream::Context,
        master: mnemo_ledger::SecretKey,
        replicas: usize,
    ) -> Result<Self> {
        let sys = async_nats::ConnectOptions::with_credentials(&setup.system_creds()?)
            .map_err(|e| NatsAuthError::nats("system credentials", e))?
            .name("mnemo-sys")
            .connect(servers)
            .await
            .map_err(|e| NatsAuthError::nats("connecting as the system user", e))?;
        Ok(Self::open(
            js,
            sys,
            KeyPair::from_seed(&setup.signing.seed()?)?,
            setup.service.public_key(),
            master,
            replicas,
        )
        .await?
        .with_service_key(KeyPair::from_seed(&setup.service.seed()?)?))
    }

    fn aad(user: &UserId) -> Vec<u8> {
        format!("mnemo nats account v1 {user}").into_bytes()
    }

    async fn load(&self, user: &UserId) -> Result<UserAccount> {
        let sealed = self
            .kv
            .get(format!("u.{user}"))
            .await
            .map_err(bucket)?
            .ok_or_else(|| NatsAuthError::NoAccount(user.clone()))?;
        let plain = self.master.open(&Self::aad(user), &sealed).map_err(|_| {
            NatsAuthError::Corrupt(format!("the record of {user} does not decrypt"))
        })?;
        let s: StoredAccount = serde_json::from_slice(&plain)
            .map_err(|e| NatsAuthError::Corrupt(format!("the record of {user}: {e}")))?;
        Ok(UserAccount {
            account: KeyPair::from_seed(&s.account)?,
            scoped: KeyPair::from_seed(&s.scoped)?,
            revocations: s.revocations,
        })
    }

    async fn store(&self, user: &UserId, a: &UserAccount, create: bool) -> Result<()> {
        let s = StoredAccount {
            account: a.account.seed()?,
            scoped: a.scoped.seed()?,
            revocations: a.revocations.clone(),
        };
        let plain = serde_json::to_vec(&s).map_err(NatsAuthError::encode)?;
        let sealed = self.master.seal(&Self::aad(user), &plain);
        let key = format!("u.{user}");
        if create {
            self.kv
                .create(&key, sealed.into())
                .await
                .map_err(|e| match e.kind() {
                    kv::CreateErrorKind::AlreadyExists => NatsAuthError::Exists(user.clone()),
                    _ => bucket(e),
                })?;
        } else {
            self.kv.put(&key, sealed.into()).await.map_err(bucket)?;
        }
        Ok(())
    }

    async fn push(&self, user: &UserId, a: &UserAccount) -> Result<()> {
        let jwt = user_account_jwt(&self.signing, &self.service_pub, user.as_str(), a)?;
        push_account(&self.sys, &jwt).await
    }

    /// Creates `user`'s account and pushes it; returns the account's public key.
    pub async fn create(&self, user: &UserId) -> Result<String> {
        let a = UserAccount {
            account: KeyPair::new_account(),
            scoped: KeyPair::new_account(),
            revocations: Vec::new(),
        };
        let pubkey = a.account.public_key();
        // The user is claimed first (a create, refused if taken); then the reverse index
        // and the claims update go out together rather than one after the other.
        self.store(user, &a, true).await?;
        let index = async {
            self.kv
                .put(format!("a.{pubkey}"), user.as_str().to_owned().into())
                .await
                .map_err(bucket)
        };
        tokio::try_join!(index, self.push(user, &a))?;
        Ok(pubkey)
    }

    /// Pushes every user's account again, as this version writes it (its imports and the
    /// device permissions of today): for accounts made by an earlier version. Returns how
    /// many were pushed.
    pub async fn refresh_all(&self) -> Result<usize> {
        use futures::StreamExt;
        let mut keys = self.kv.keys().await.map_err(bucket)?;
        let mut users = Vec::new();
        while let Some(k) = keys.next().await {
            let k = k.map_err(bucket)?;
            if let Some(u) = k.strip_prefix("u.")
                && let Ok(u) = UserId::new(u)
            {
                users.push(u);
            }
        }
        // Pipelined: 64 claims updates in flight.
        futures::stream::iter(&users)
            .map(|u| async move {
                let a = self.load(u).await?;
                self.push(u, &a).await
            })
            .buffer_unordered(64)
            .collect::<Vec<Result<()>>>()
            .await
            .into_iter()
            .collect::<Result<Vec<()>>>()?;
        Ok(users.len())
    }

    /// Whether `user` has an account.
    pub async fn exists(&self, user: &UserId) -> Result<bool> {
        Ok(self
            .kv
            .get(format!("u.{user}"))
            .await
            .map_err(bucket)?
            .is_some())
    }

    /// Issues device credentials valid for `ttl_secs`: `(device key, .creds text)`.
    pub async fn issue_device(
        &self,
        user: &UserId,
        device: &str,
        ttl_secs: i64,
    ) -> Result<(String, String)> {
        let a = self.load(user).await?;
        device_creds(&a, device, ttl_secs)
    }

    /// A device JWT for a key the device made itself (see [`device_jwt`]).
    pub async fn issue_device_jwt(
        &self,
        user: &UserId,
        public_key: &str,
        device: &str,
        ttl_secs: i64,
    ) -> Result<String> {
        KeyPair::from_public_key(public_key)?;
        let a = self.load(user).await?;
        device_jwt(&a, public_key, device, ttl_secs)
    }

    /// Revokes a device (a NATS user public key, checked by the caller): its credentials
    /// are refused from now on.
    pub async fn revoke_device(&self, user: &UserId, device_key: &str) -> Result<()> {
        let mut a = self.load(user).await?;
        KeyPair::from_public_key(device_key)?;
        a.revocations
            .push((device_key.to_owned(), now_secs() as i64));
        self.store(user, &a, false).await?;
        self.push(user, &a).await
    }

    /// The user behind an account key (the ingest service's subject names the account).
    pub async fn user_of(&self, account: &str) -> Result<Option<UserId>> {
        if let Some(u) = self.by_account.lock().expect("not poisoned").get(account) {
            return Ok(Some(u.clone()));
        }
        let Some(v) = self.kv.get(format!("a.{account}")).await.map_err(bucket)? else {
            return Ok(None);
        };
        let user = UserId::new(String::from_utf8_lossy(&v).as_ref())
            .map_err(|e| NatsAuthError::Corrupt(format!("stored user id: {e}")))?;
        self.by_account
            .lock()
            .expect("not poisoned")
            .insert(account.to_owned(), user.clone());
        Ok(Some(user))
    }
}
