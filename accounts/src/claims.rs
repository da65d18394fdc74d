//! NATS JWT claims (decentralized auth, operator mode) as typed structs, and their signing
//! (`alg: ed25519-nkey`). The claim crates on crates.io do not cover imports, exports and
//! scoped signing keys together (docs/nats.md), so the shapes the server reads are here,
//! field for field as nats-server's `jwt/v2` package names them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use nkeys::KeyPair;
use serde::Serialize;
use std::collections::BTreeMap;

use crate::error::NatsAuthError;
use mnemo_ledger::clock::now_secs;

/// The registered claims every NATS JWT carries, around the NATS-specific part `N`.
#[derive(Serialize)]
pub struct Claims<N> {
    /// The subject: the public key the JWT is about.
    pub sub: String,
    /// A name for humans.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Expiry (seconds since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Issued at (set by [`encode`]).
    pub iat: i64,
    /// The issuer's public key (set by [`encode`]).
    pub iss: String,
    /// A unique id (set by [`encode`]).
    pub jti: String,
    /// The NATS part.
    pub nats: N,
}

/// An operator's claims.
#[derive(Serialize)]
pub struct Operator {
    /// `operator`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// 2.
    pub version: u8,
    /// Keys that may sign accounts.
    pub signing_keys: Vec<String>,
    /// The system account.
    pub system_account: String,
}

/// Account limits (`-1`: unlimited).
#[derive(Serialize, Clone)]
pub struct Limits {
    /// Subscriptions.
    pub subs: i64,
    /// Bytes.
    pub data: i64,
    /// Largest message.
    pub payload: i64,
    /// Imports.
    pub imports: i64,
    /// Exports.
    pub exports: i64,
    /// Wildcard subscriptions allowed.
    pub wildcards: bool,
    /// Connections.
    pub conn: i64,
    /// Leaf node connections.
    pub leaf: i64,
    /// JetStream memory storage (0: JetStream off).
    pub mem_storage: i64,
    /// JetStream disk storage.
    pub disk_storage: i64,
    /// Streams.
    pub streams: i64,
    /// Consumers.
    pub consumer: i64,
    /// Unacknowledged messages per consumer (service accounts: unlimited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ack_pending: Option<i64>,
    /// Largest memory stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_max_stream_bytes: Option<i64>,
    /// Largest file stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_max_stream_bytes: Option<i64>,
    /// Whether streams must declare a size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes_required: Option<bool>,
}

impl Limits {
    /// Unlimited, with JetStream on or off.
    pub fn unlimited(jetstream: bool) -> Self {
        let js = if jetstream { -1 } else { 0 };
        Self {
            subs: -1,
            data: -1,
            payload: -1,
            imports: -1,
            exports: -1,
            wildcards: true,
            conn: -1,
            leaf: -1,
            mem_storage: js,
            disk_storage: js,
            streams: js,
            consumer: js,
            max_ack_pending: Some(-1),
            mem_max_stream_bytes: Some(-1),
            disk_max_stream_bytes: Some(-1),
            max_bytes_required: Some(false),
        }
    }
}

/// A service or stream an account exports.
#[derive(Serialize)]
pub struct Export {
    /// Its name.
    pub name: String,
    /// The subject (with `*` where the importer's account key goes).
    pub subject: String,
    /// `service` or `stream`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `Singleton` or `Stream` (services).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_type: Option<&'static str>,
    /// Which token of the subject must be the importer's account key (0: none).
    #[serde(skip_serializing_if = "is_zero")]
    pub account_token_position: u8,
    /// A private export: an importer needs an activation token the exporter signed for
    /// it ([`Activation`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub token_req: bool,
}

fn is_zero(v: &u8) -> bool {
    *v == 0
}

/// An activation: the exporting account lets one importing account (the claims' `sub`)
/// import `subject` of a private export.
#[derive(Serialize)]
pub struct Activation {
    /// `activation`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// 2.
    pub version: u8,
    /// The subject the importer may import (within the export's).
    pub subject: String,
    /// `service` or `stream`.
    #[serde(rename = "kind")]
    pub import_type: &'static str,
}

impl Activation {
    /// Lets the claims' subject import `subject`, a service (`service`) or a stream.
    pub fn new(subject: String, import_type: &'static str) -> Self {
        Self {
            kind: "activation",
            version: 2,
            subject,
            import_type,
        }
    }
}

/// A service an account imports.
#[derive(Serialize)]
pub struct Import {
    /// Its name.
    pub name: String,
    /// The exporter's subject.
    pub subject: String,
    /// The exporting account.
    pub account: String,
    /// The subject it is known by here.
    pub local_subject: String,
    /// `service` or `stream`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The activation token of a private export.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Publish or subscribe permissions.
#[derive(Serialize)]
pub struct Permission {
    /// Allowed subjects.
    pub allow: Vec<String>,
}

/// What a user signed by a scoped key may do (the key's template).
#[derive(Serialize)]
pub struct UserTemplate {
    /// Publish permissions.
    #[serde(rename = "pub")]
    pub publish: Permission,
    /// Subscribe permissions.
    #[serde(rename = "sub")]
    pub subscribe: Permission,
    /// Subscriptions.
    pub subs: i64,
    /// Bytes.
    pub data: i64,
    /// Largest message.
    pub payload: i64,
    /// Connection types allowed.
    pub allowed_connection_types: Vec<&'static str>,
}

/// A scoped signing key: users it signs get the template's permissions, never their own.
#[derive(Serialize)]
pub struct ScopedKey {
    /// `user_scope`.
    pub kind: &'static str,
    /// The key.
    pub key: String,
    /// A role name.
    pub role: &'static str,
    /// The permissions.
    pub template: UserTemplate,
}

/// An account's claims.
#[derive(Serialize)]
pub struct Account {
    /// `account`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// 2.
    pub version: u8,
    /// Limits.
    pub limits: Limits,
    /// Exports.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exports: Vec<Export>,
    /// Imports.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<Import>,
    /// Scoped signing keys.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signing_keys: Vec<ScopedKey>,
    /// Revoked user keys, with the time they were revoked (credentials issued before it
    /// are refused).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub revocations: BTreeMap<String, i64>,
}

/// Publish or subscribe permissions: `{}` (no restriction), `{"allow": [...]}` and/or
/// `{"deny": [...]}`.
#[derive(Serialize, Default)]
pub struct Unrestricted {
    /// Only these subjects (empty: no restriction).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Never these subjects (checked after `allow`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

/// Reply permission: publishing to the reply subjects of messages received.
#[derive(Serialize)]
pub struct Responses {
    /// Replies per request.
    pub max: i64,
    /// How long (ns; 0: the server's default of 2 minutes).
    pub ttl: i64,
}

/// A user's claims.
#[derive(Serialize)]
pub struct User {
    /// `user`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// 2.
    pub version: u8,
    /// The account a scoped key signs for (then the user carries no permissions or
    /// limits of its own: the key's template applies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer_account: Option<String>,
    /// Publish permissions (service users: unrestricted).
    #[serde(rename = "pub", skip_serializing_if = "Option::is_none")]
    pub publish: Option<Unrestricted>,
    /// Subscribe permissions.
    #[serde(rename = "sub", skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<Unrestricted>,
    /// Replies to received requests (`resp`), for users that may publish only there.
    #[serde(rename = "resp", skip_serializing_if = "Option::is_none")]
    pub responses: Option<Responses>,
    /// Subscriptions (`-1`: unlimited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subs: Option<i64>,
    /// Bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<i64>,
    /// Largest message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<i64>,
}

impl User {
    /// An unrestricted user of an account (the system and service users).
    pub fn unrestricted(issuer_account: Option<String>) -> Self {
        Self {
            kind: "user",
            version: 2,
            issuer_account,
            publish: Some(Unrestricted::default()),
            subscribe: Some(Unrestricted::default()),
            responses: None,
            subs: Some(-1),
            data: Some(-1),
            payload: Some(-1),
        }
    }

    /// The service account's responder: the connection mnemo's NATS services receive
    /// requests on and answer with. It may publish anywhere but on mnemo's own subjects
    /// (the chains, the seals, the buckets, object stores, the task queues, the JetStream
    /// API, the system subjects and mnemo's own inboxes), so no reply subject a requester
    /// chooses can make it write what only the ledger writes (`core::replies` refuses
    /// such replies before any work; this is the server's check behind it).
    pub fn responder() -> Self {
        Self {
            publish: Some(Unrestricted {
                allow: vec![],
                deny: RESPONDER_DENIED.iter().map(|s| s.to_string()).collect(),
            }),
            ..Self::unrestricted(None)
        }
    }

    /// A processor's user in the service account: it publishes only its own requests
    /// (`mnemo.proc.<name>.>`) and replies to the tasks it receives, and subscribes only
    /// to its work subject, its notices (`mnemo.notice.<name>`) and its own inbox prefix
    /// (`_INBOX_<name>.>`).
    pub fn processor(name: &str) -> Self {
        Self {
            kind: "user",
            version: 2,
            issuer_account: None,
            publish: Some(Unrestricted {
                allow: vec![format!("{}.{name}.>", mnemo_core::names::PROC_PREFIX)],
                deny: vec![],
            }),
            subscribe: Some(Unrestricted {
                allow: vec![
                    format!("{}.{name}", mnemo_core::names::WORK_PREFIX),
                    format!("{}.{name}", mnemo_core::names::NOTICE_PREFIX),
                    format!("{}.>", processor_inbox(name)),
                ],
                deny: vec![],
            }),
            responses: Some(Responses { max: 1, ttl: 0 }),
            subs: Some(-1),
            data: Some(-1),
            payload: Some(-1),
        }
    }

    /// A user signed by a scoped key of `account`: nothing of its own.
    pub fn scoped(account: String) -> Self {
        Self {
            kind: "user",
            version: 2,
            issuer_account: Some(account),
            publish: None,
            subscribe: None,
            responses: None,
            subs: None,
            data: None,
            payload: None,
        }
    }
}

/// What the responder may never publish on: every subject mnemo's state lives on.
pub const RESPONDER_DENIED: &[&str] = &[
    "mnemo.>", "$KV.>", "$O.>", "$JS.>", "$JSC.>", "$NRG.>", "$SYS.>", "_INBOX.>",
];

/// Signs `nats` about `sub` as `issuer`: sets `iat`, `iss` and a fresh `jti`.
pub fn encode<N: Serialize>(
    issuer: &KeyPair,
    sub: String,
    name: Option<String>,
    exp: Option<i64>,
    nats: N,
) -> Result<String, NatsAuthError> {
    let claims = Claims {
        sub,
        name,
        exp,
        iat: now_secs() as i64,
        iss: issuer.public_key(),
        jti: hex::encode_upper(rand::random::<[u8; 16]>()),
        nats,
    };
    let header = B64.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = B64.encode(serde_json::to_vec(&claims).map_err(NatsAuthError::encode)?);
    let signing_input = format!("{header}.{body}");
    let sig = issuer
        .sign(signing_input.as_bytes())
        .map_err(NatsAuthError::Key)?;
    Ok(format!("{signing_input}.{}", B64.encode(sig)))
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

pub use mnemo_core::replies::processor_inbox;
