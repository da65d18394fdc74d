//! Every user is a NATS account (decentralized JWT auth, operator mode).
//!
//! - [`OperatorSetup`]: the operator (with a signing key), the system account and the mnemo
//!   service account, their users' credentials, and the server configuration
//!   (`mnemo nats init`). Seeds are written with mode 0600 and never logged.
//! - [`Accounts`]: one account per user, signed by the operator's signing key with explicit
//!   limits and JetStream off, pushed with `$SYS.REQ.CLAIMS.UPDATE` (the reply is checked);
//!   a scoped signing key per account whose template allows only the user's own subjects;
//!   device credentials (`.creds`) with an expiry, and their revocation.
//! - The wiring: the service account exports the service `mnemo.ingest.*` with
//!   `account_token_position: 3`; each user account imports `mnemo.ingest.<its own account
//!   key>` as `mnemo.ingest`. A device publishes on `mnemo.ingest`; the service receives it on
//!   `mnemo.ingest.<account key>`, so the user is named by the server's account wiring and
//!   cannot be spoofed by the payload. `mnemo.read.*` is exported the same way for reading
//!   one's own chain.
//!
//! Claims are plain serde JSON (the claim crates lack imports, exports and scoped keys; see
//! `../shared/notes/nats.md`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use nkeys::KeyPair;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Subject prefix of the ingest service (in the service account).
pub const INGEST_PREFIX: &str = "mnemo.ingest";
/// Subject prefix of the chain-read service.
pub const READ_PREFIX: &str = "mnemo.read";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Encodes and signs a NATS JWT (`alg: ed25519-nkey`).
pub fn encode_jwt(issuer: &KeyPair, mut claims: Value) -> String {
    claims["iat"] = json!(now());
    claims["iss"] = json!(issuer.public_key());
    claims["jti"] = json!(hex::encode_upper(rand::random::<[u8; 16]>()));
    let header = B64.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = B64.encode(serde_json::to_vec(&claims).expect("serialisable"));
    let signing_input = format!("{header}.{body}");
    let sig = issuer.sign(signing_input.as_bytes()).expect("a seed signs");
    format!("{signing_input}.{}", B64.encode(sig))
}

/// A standard `.creds` file: the user JWT and its seed.
pub fn creds(jwt: &str, seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    )
}

fn unlimited_account_limits(jetstream: bool) -> Value {
    let js = if jetstream { -1 } else { 0 };
    json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": true, "conn": -1, "leaf": -1,
        "mem_storage": js, "disk_storage": js, "streams": js, "consumer": js,
        "max_ack_pending": -1, "mem_max_stream_bytes": -1, "disk_max_stream_bytes": -1,
        "max_bytes_required": false
    })
}

/// A user JWT for a user key, issued by an account (signing) key.
fn user_jwt(issuer: &KeyPair, user: &KeyPair, name: &str, issuer_account: Option<&str>) -> String {
    let mut nats = json!({
        "type": "user", "version": 2,
        "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1
    });
    if let Some(a) = issuer_account {
        nats["issuer_account"] = json!(a);
    }
    encode_jwt(
        issuer,
        json!({ "sub": user.public_key(), "name": name, "nats": nats }),
    )
}

/// The operator, system account and service account, with what the server and the mnemo
/// service need.
pub struct OperatorSetup {
    /// The operator's identity key.
    pub operator: KeyPair,
    /// The operator's signing key (signs every account).
    pub signing: KeyPair,
    /// The system account.
    pub system: KeyPair,
    /// A user of the system account (pushes account JWTs).
    pub system_user: KeyPair,
    /// The mnemo service account (JetStream, the ledger, the ingest service).
    pub service: KeyPair,
    /// A user of the service account.
    pub service_user: KeyPair,
}

impl OperatorSetup {
    /// Fresh keys.
    pub fn generate() -> Self {
        Self {
            operator: KeyPair::new_operator(),
            signing: KeyPair::new_operator(),
            system: KeyPair::new_account(),
            system_user: KeyPair::new_user(),
            service: KeyPair::new_account(),
            service_user: KeyPair::new_user(),
        }
    }

    fn seeds(&self) -> [(&'static str, &KeyPair); 6] {
        [
            ("operator", &self.operator),
            ("operator-signing", &self.signing),
            ("system-account", &self.system),
            ("system-user", &self.system_user),
            ("service-account", &self.service),
            ("service-user", &self.service_user),
        ]
    }

    /// The operator JWT.
    pub fn operator_jwt(&self) -> String {
        encode_jwt(
            &self.operator,
            json!({
                "sub": self.operator.public_key(),
                "name": "mnemo",
                "nats": {
                    "type": "operator", "version": 2,
                    "signing_keys": [self.signing.public_key()],
                    "system_account": self.system.public_key(),
                }
            }),
        )
    }

    /// The system account's JWT.
    pub fn system_jwt(&self) -> String {
        encode_jwt(
            &self.signing,
            json!({
                "sub": self.system.public_key(),
                "name": "SYS",
                "nats": {
                    "type": "account", "version": 2,
                    "limits": unlimited_account_limits(false),
                    "exports": [
                        {"name": "account-monitoring-services", "subject": "$SYS.REQ.ACCOUNT.*.*",
                         "type": "service", "response_type": "Stream", "account_token_position": 4},
                        {"name": "account-monitoring-streams", "subject": "$SYS.ACCOUNT.*.>",
                         "type": "stream", "account_token_position": 3}
                    ]
                }
            }),
        )
    }

    /// The service account's JWT: JetStream on, the ingest and read services exported
    /// with the importer's account key at token 3.
    pub fn service_jwt(&self) -> String {
        encode_jwt(
            &self.signing,
            json!({
                "sub": self.service.public_key(),
                "name": "MNEMO",
                "nats": {
                    "type": "account", "version": 2,
                    "limits": unlimited_account_limits(true),
                    "exports": [
                        {"name": "ingest", "subject": format!("{INGEST_PREFIX}.*"), "type": "service",
                         "response_type": "Singleton", "account_token_position": 3},
                        {"name": "read", "subject": format!("{READ_PREFIX}.*"), "type": "service",
                         "response_type": "Singleton", "account_token_position": 3}
                    ]
                }
            }),
        )
    }

    /// Credentials of the system user.
    pub fn system_creds(&self) -> String {
        let jwt = user_jwt(&self.system, &self.system_user, "mnemo-sys", None);
        creds(&jwt, &self.system_user.seed().expect("seed"))
    }

    /// Credentials of the service user (the ledger and services connect with them).
    pub fn service_creds(&self) -> String {
        let jwt = user_jwt(&self.service, &self.service_user, "mnemo-service", None);
        creds(&jwt, &self.service_user.seed().expect("seed"))
    }

    /// The operator-mode part of a nats-server configuration (`full` resolver in
    /// `jwt_dir`, the system and service accounts preloaded).
    pub fn server_config(&self, jwt_dir: &Path) -> String {
        format!(
            "operator: \"{op}\"\nsystem_account: {sys}\n\
             resolver: {{\n  type: full\n  dir: \"{dir}\"\n  allow_delete: true\n  interval: \"2m\"\n  limit: 1000000\n}}\n\
             resolver_preload: {{\n  {sys}: \"{sys_jwt}\"\n  {svc}: \"{svc_jwt}\"\n}}\n",
            op = self.operator_jwt(),
            sys = self.system.public_key(),
            dir = jwt_dir.display(),
            sys_jwt = self.system_jwt(),
            svc = self.service.public_key(),
            svc_jwt = self.service_jwt(),
        )
    }

    /// Writes the seeds (mode 0600), the service and system creds (0600) and
    /// `server.conf` into `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir.join("jwt"))?;
        let secret = |name: &str, text: &str| write_private(&dir.join(name), text.as_bytes());
        for (name, kp) in self.seeds() {
            secret(&format!("{name}.nk"), &kp.seed().expect("seed"))?;
        }
        secret("system.creds", &self.system_creds())?;
        secret("service.creds", &self.service_creds())?;
        std::fs::write(
            dir.join("server.conf"),
            format!(
                "# mnemo operator mode (mnemo nats init). Add listen, jetstream {{ store_dir }}.\n{}",
                self.server_config(&dir.join("jwt"))
            ),
        )
    }

    /// Reads what [`write`](Self::write) wrote.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let read = |name: &str| -> anyhow::Result<KeyPair> {
            let seed = std::fs::read_to_string(dir.join(format!("{name}.nk")))
                .map_err(|e| anyhow::anyhow!("reading {name}.nk in {}: {e}", dir.display()))?;
            KeyPair::from_seed(seed.trim()).map_err(|e| anyhow::anyhow!("{name}.nk: {e}"))
        };
        Ok(Self {
            operator: read("operator")?,
            signing: read("operator-signing")?,
            system: read("system-account")?,
            system_user: read("system-user")?,
            service: read("service-account")?,
            service_user: read("service-user")?,
        })
    }
}

/// A user's account, as the accounts service keeps it.
pub struct UserAccount {
    /// The account key pair.
    pub account: KeyPair,
    /// The scoped signing key that signs device credentials.
    pub scoped: KeyPair,
    /// Revoked device keys, with when.
    pub revocations: Vec<(String, i64)>,
}

/// Limits of a user account (explicit; JetStream off: devices reach the chains only through
/// the service account's exports).
pub fn user_account_limits() -> Value {
    json!({
        "subs": 256, "data": -1, "payload": 8 * 1024 * 1024, "imports": 8, "exports": 0,
        "wildcards": true, "conn": 64, "leaf": 8,
        "mem_storage": 0, "disk_storage": 0, "streams": 0, "consumer": 0
    })
}

/// The JWT of `user`'s account.
pub fn user_account_jwt(
    setup_signing: &KeyPair,
    service_pub: &str,
    user: &str,
    a: &UserAccount,
) -> String {
    let acct = a.account.public_key();
    let revocations: serde_json::Map<String, Value> = a
        .revocations
        .iter()
        .map(|(k, t)| (k.clone(), json!(t)))
        .collect();
    encode_jwt(
        setup_signing,
        json!({
            "sub": acct,
            "name": user,
            "nats": {
                "type": "account", "version": 2,
                "limits": user_account_limits(),
                "imports": [
                    {"name": "ingest", "subject": format!("{INGEST_PREFIX}.{acct}"), "account": service_pub,
                     "local_subject": INGEST_PREFIX, "type": "service"},
                    {"name": "read", "subject": format!("{READ_PREFIX}.{acct}"), "account": service_pub,
                     "local_subject": READ_PREFIX, "type": "service"}
                ],
                "signing_keys": [{
                    "kind": "user_scope",
                    "key": a.scoped.public_key(),
                    "role": "device",
                    "template": {
                        "pub": {"allow": [INGEST_PREFIX, READ_PREFIX]},
                        "sub": {"allow": ["_INBOX.>"]},
                        "subs": 64, "data": -1, "payload": 8 * 1024 * 1024,
                        "allowed_connection_types": ["STANDARD", "WEBSOCKET", "LEAFNODE", "MQTT"]
                    }
                }],
                "revocations": revocations,
            }
        }),
    )
}

/// Device credentials for `user`'s account: a user JWT signed by the scoped key (so it
/// carries no permissions of its own: the template applies), valid for `ttl_secs`.
pub fn device_creds(a: &UserAccount, device: &str, ttl_secs: i64) -> (String, String) {
    let key = KeyPair::new_user();
    let jwt = encode_jwt(
        &a.scoped,
        json!({
            "sub": key.public_key(),
            "name": device,
            "exp": now() + ttl_secs,
            "nats": { "type": "user", "version": 2, "issuer_account": a.account.public_key() }
        }),
    );
    (key.public_key(), creds(&jwt, &key.seed().expect("seed")))
}

/// Pushes an account JWT with `$SYS.REQ.CLAIMS.UPDATE` (as a system-account user) and checks
/// the server's answer.
pub async fn push_account(sys: &async_nats::Client, jwt: &str) -> anyhow::Result<()> {
    let reply = sys
        .request("$SYS.REQ.CLAIMS.UPDATE", jwt.to_owned().into())
        .await
        .map_err(|e| anyhow::anyhow!("claims update: {e}"))?;
    let v: Value = serde_json::from_slice(&reply.payload)
        .map_err(|e| anyhow::anyhow!("claims update reply: {e}"))?;
    let code = v["data"]["code"].as_i64().or(v["error"]["code"].as_i64());
    anyhow::ensure!(code == Some(200), "claims update refused: {v}");
    Ok(())
}

/// KV bucket (service account) of user accounts: `u.<user>` holds the sealed seeds,
/// `a.<account key>` the user id.
pub const ACCOUNTS_BUCKET: &str = "mnemo-accounts";

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredAccount {
    account: String,
    scoped: String,
    #[serde(default)]
    revocations: Vec<(String, i64)>,
}

/// One NATS account per user: creation, device credentials, revocation, lookup.
#[derive(Clone)]
pub struct Accounts {
    kv: async_nats::jetstream::kv::Store,
    sys: async_nats::Client,
    signing: std::sync::Arc<KeyPair>,
    service_pub: String,
    master: std::sync::Arc<mnemo_ledger::SecretKey>,
    by_account:
        std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, mnemo_core::UserId>>>,
}

impl Accounts {
    /// Opens (or creates) the accounts bucket. `sys` is a system-account connection,
    /// `signing` the operator's signing key, `master` seals the account seeds at rest.
    pub async fn open(
        js: &async_nats::jetstream::Context,
        sys: async_nats::Client,
        signing: KeyPair,
        service_pub: String,
        master: mnemo_ledger::SecretKey,
    ) -> anyhow::Result<Self> {
        let kv = match js.get_key_value(ACCOUNTS_BUCKET).await {
            Ok(kv) => kv,
            Err(_) => js
                .create_key_value(async_nats::jetstream::kv::Config {
                    bucket: ACCOUNTS_BUCKET.into(),
                    history: 1,
                    storage: async_nats::jetstream::stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| anyhow::anyhow!("accounts bucket: {e}"))?,
        };
        Ok(Self {
            kv,
            sys,
            signing: std::sync::Arc::new(signing),
            service_pub,
            master: std::sync::Arc::new(master),
            by_account: Default::default(),
        })
    }

    /// Opens the accounts service of an operator setup: connects to `servers` as the
    /// setup's system user and signs with its operator signing key.
    pub async fn for_setup(
        setup: &OperatorSetup,
        servers: Vec<async_nats::ServerAddr>,
        js: &async_nats::jetstream::Context,
        master: mnemo_ledger::SecretKey,
    ) -> anyhow::Result<Self> {
        let sys = async_nats::ConnectOptions::with_credentials(&setup.system_creds())?
            .name("mnemo-sys")
            .connect(servers)
            .await
            .map_err(|e| anyhow::anyhow!("connecting to NATS as the system user: {e}"))?;
        Self::open(
            js,
            sys,
            KeyPair::from_seed(&setup.signing.seed()?)?,
            setup.service.public_key(),
            master,
        )
        .await
    }

    fn aad(user: &mnemo_core::UserId) -> Vec<u8> {
        format!("mnemo nats account v1 {user}").into_bytes()
    }

    async fn load(&self, user: &mnemo_core::UserId) -> anyhow::Result<UserAccount> {
        let sealed = self
            .kv
            .get(format!("u.{user}"))
            .await
            .map_err(|e| anyhow::anyhow!("accounts bucket: {e}"))?
            .ok_or_else(|| anyhow::anyhow!("user {user} has no NATS account"))?;
        let plain = self
            .master
            .open(&Self::aad(user), &sealed)
            .map_err(|_| anyhow::anyhow!("account record of {user} does not decrypt"))?;
        let s: StoredAccount = serde_json::from_slice(&plain)?;
        Ok(UserAccount {
            account: KeyPair::from_seed(&s.account)?,
            scoped: KeyPair::from_seed(&s.scoped)?,
            revocations: s.revocations,
        })
    }

    async fn store(
        &self,
        user: &mnemo_core::UserId,
        a: &UserAccount,
        create: bool,
    ) -> anyhow::Result<()> {
        let s = StoredAccount {
            account: a.account.seed()?,
            scoped: a.scoped.seed()?,
            revocations: a.revocations.clone(),
        };
        let sealed = self.master.seal(&Self::aad(user), &serde_json::to_vec(&s)?);
        let key = format!("u.{user}");
        if create {
            self.kv
                .create(&key, sealed.into())
                .await
                .map_err(|e| anyhow::anyhow!("user {user} already has a NATS account ({e})"))?;
        } else {
            self.kv
                .put(&key, sealed.into())
                .await
                .map_err(|e| anyhow::anyhow!("accounts bucket: {e}"))?;
        }
        Ok(())
    }

    async fn push(&self, user: &mnemo_core::UserId, a: &UserAccount) -> anyhow::Result<()> {
        let jwt = user_account_jwt(&self.signing, &self.service_pub, user.as_str(), a);
        push_account(&self.sys, &jwt).await
    }

    /// Creates `user`'s account and pushes it; returns the account's public key.
    pub async fn create(&self, user: &mnemo_core::UserId) -> anyhow::Result<String> {
        let a = UserAccount {
            account: KeyPair::new_account(),
            scoped: KeyPair::new_account(),
            revocations: Vec::new(),
        };
        let pubkey = a.account.public_key();
        self.store(user, &a, true).await?;
        self.kv
            .put(format!("a.{pubkey}"), user.as_str().to_owned().into())
            .await
            .map_err(|e| anyhow::anyhow!("accounts bucket: {e}"))?;
        self.push(user, &a).await?;
        Ok(pubkey)
    }

    /// Whether `user` has an account.
    pub async fn exists(&self, user: &mnemo_core::UserId) -> anyhow::Result<bool> {
        Ok(self
            .kv
            .get(format!("u.{user}"))
            .await
            .map_err(|e| anyhow::anyhow!("accounts bucket: {e}"))?
            .is_some())
    }

    /// Issues device credentials valid for `ttl_secs`: `(device key, .creds text)`.
    pub async fn issue_device(
        &self,
        user: &mnemo_core::UserId,
        device: &str,
        ttl_secs: i64,
    ) -> anyhow::Result<(String, String)> {
        let a = self.load(user).await?;
        Ok(device_creds(&a, device, ttl_secs))
    }

    /// Revokes a device: its credentials are refused from now on.
    pub async fn revoke_device(
        &self,
        user: &mnemo_core::UserId,
        device_key: &str,
    ) -> anyhow::Result<()> {
        let mut a = self.load(user).await?;
        KeyPair::from_public_key(device_key).map_err(|_| anyhow::anyhow!("not a user key"))?;
        a.revocations.push((device_key.to_owned(), now()));
        self.store(user, &a, false).await?;
        self.push(user, &a).await
    }

    /// Deletes `user`'s account from the resolver (`$SYS.REQ.CLAIMS.DELETE`, a request
    /// signed by the operator's signing key): every device of it is cut off, and the
    /// service no longer answers for it. The chain stays (erase it to shred its content).
    pub async fn delete(&self, user: &mnemo_core::UserId) -> anyhow::Result<()> {
        let a = self.load(user).await?;
        let acct = a.account.public_key();
        let req = encode_jwt(
            &self.signing,
            json!({ "sub": self.signing.public_key(), "nats": { "accounts": [acct] } }),
        );
        let reply = self
            .sys
            .request("$SYS.REQ.CLAIMS.DELETE", req.into())
            .await
            .map_err(|e| anyhow::anyhow!("claims delete: {e}"))?;
        let v: Value = serde_json::from_slice(&reply.payload)
            .map_err(|e| anyhow::anyhow!("claims delete reply: {e}"))?;
        anyhow::ensure!(
            v["data"]["code"].as_i64() == Some(200),
            "claims delete refused: {v}"
        );
        self.by_account.lock().expect("not poisoned").remove(&acct);
        self.kv
            .purge(format!("a.{acct}"))
            .await
            .map_err(|e| anyhow::anyhow!("accounts bucket: {e}"))?;
        self.kv
            .purge(format!("u.{user}"))
            .await
            .map_err(|e| anyhow::anyhow!("accounts bucket: {e}"))?;
        Ok(())
    }

    /// The user behind an account key (the ingest service's subject names the account).
    pub async fn user_of(&self, account: &str) -> anyhow::Result<Option<mnemo_core::UserId>> {
        if let Some(u) = self.by_account.lock().expect("not poisoned").get(account) {
            return Ok(Some(u.clone()));
        }
        let Some(v) = self
            .kv
            .get(format!("a.{account}"))
            .await
            .map_err(|e| anyhow::anyhow!("accounts bucket: {e}"))?
        else {
            return Ok(None);
        };
        let user = mnemo_core::UserId::new(String::from_utf8_lossy(&v).as_ref())
            .map_err(|e| anyhow::anyhow!("stored user id: {e}"))?;
        self.by_account
            .lock()
            .expect("not poisoned")
            .insert(account.to_owned(), user.clone());
        Ok(Some(user))
    }
}

/// What a device sends on `mnemo.ingest` (a `user` field, if any, is ignored: the user is
/// the account the message came from).
#[derive(serde::Deserialize)]
pub struct IngestRequest {
    /// Kind (default `note`).
    #[serde(default)]
    pub kind: Option<String>,
    /// The text.
    pub text: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Capture time (ms).
    #[serde(default)]
    pub captured_at: Option<i64>,
    /// Source.
    #[serde(default)]
    pub source: Option<String>,
    /// Idempotency key.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// Serves `mnemo.ingest.*` and `mnemo.read.*` in the service account (queue group
/// `mnemo`, so several instances share the load) until `stop`.
pub async fn serve_devices(
    client: async_nats::Client,
    ledger: mnemo_ledger::Ledger,
    accounts: Accounts,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    use futures::StreamExt;
    let mut ingest = client
        .queue_subscribe(format!("{INGEST_PREFIX}.*"), "mnemo".into())
        .await?;
    let mut read = client
        .queue_subscribe(format!("{READ_PREFIX}.*"), "mnemo".into())
        .await?;
    loop {
        let (msg, is_read) = tokio::select! {
            Some(m) = ingest.next() => (m, false),
            Some(m) = read.next() => (m, true),
            _ = stop.wait_for(|s| *s) => return Ok(()),
        };
        let (client, ledger, accounts) = (client.clone(), ledger.clone(), accounts.clone());
        tokio::spawn(async move {
            let Some(reply) = msg.reply.clone() else {
                return;
            };
            let answer = handle(&ledger, &accounts, &msg, is_read).await;
            let body = match answer {
                Ok(v) => v,
                Err(e) => json!({ "error": e.to_string() }),
            };
            let _ = client
                .publish(
                    reply,
                    serde_json::to_vec(&body).expect("serialisable").into(),
                )
                .await;
        });
    }
}

async fn handle(
    ledger: &mnemo_ledger::Ledger,
    accounts: &Accounts,
    msg: &async_nats::Message,
    is_read: bool,
) -> anyhow::Result<Value> {
    let account = msg
        .subject
        .rsplit('.')
        .next()
        .ok_or_else(|| anyhow::anyhow!("no account in the subject"))?;
    let user = accounts
        .user_of(account)
        .await?
        .ok_or_else(|| anyhow::anyhow!("unknown account"))?;
    if is_read {
        #[derive(serde::Deserialize)]
        struct Read {
            #[serde(default)]
            from: Option<u64>,
            #[serde(default)]
            limit: Option<usize>,
            /// Long poll: when nothing is at `from` yet, wait up to this long for it.
            #[serde(default)]
            wait_ms: Option<u64>,
        }
        let r: Read = serde_json::from_slice(&msg.payload)
            .map_err(|e| anyhow::anyhow!("bad request: {e}"))?;
        let from = mnemo_core::Seq(r.from.unwrap_or(1).max(1));
        let mut events = ledger
            .events(&user, from, r.limit.unwrap_or(100).clamp(1, 1000))
            .await?;
        if events.is_empty()
            && let Some(wait) = r.wait_ms.filter(|w| *w > 0)
        {
            let mut follow = ledger.follow(&user, from).await?;
            let wait = std::time::Duration::from_millis(wait.min(30_000));
            if let Ok(next) = tokio::time::timeout(wait, follow.next()).await {
                events.extend(next?);
            }
        }
        let items: Vec<Value> = events
            .iter()
            .map(|e| json!({ "seq": e.event.seq.0, "hash": e.hash, "wire": hex::encode(e.event.to_wire()) }))
            .collect();
        return Ok(json!({ "user": user, "events": items }));
    }
    let r: IngestRequest =
        serde_json::from_slice(&msg.payload).map_err(|e| anyhow::anyhow!("bad request: {e}"))?;
    let receipt = ledger
        .append(
            &user,
            mnemo_ledger::NewMemory {
                kind: r.kind.unwrap_or_else(|| "note".into()),
                tags: r.tags,
                captured_at: r.captured_at.map(mnemo_core::TimestampMs),
                source: r.source,
                content_type: "text/plain; charset=utf-8".into(),
                content: r.text.into_bytes().into(),
                idempotency_key: r.idempotency_key,
            },
        )
        .await?;
    Ok(json!({
        "user": user,
        "id": receipt.memory,
        "seq": receipt.seq.0,
        "event_hash": receipt.hash,
        "duplicate": receipt.duplicate,
    }))
}

/// Writes a file only its owner can read (mode 0600): seeds, creds, keys.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes)
}
