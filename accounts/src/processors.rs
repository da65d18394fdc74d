//! One NATS account per processor (operator mode), as devices have one per user.
//!
//! A processor's workers connect with users of **their processor's own account**, never
//! with users of the service account. The account and the service account reach each other
//! only through imports of private exports, each with an activation token the exporter
//! signed for that one importer:
//!
//! - the processor account imports the service `mnemo.proc.<name>.*` (fetch, submit,
//!   model, stale) and the stream `mnemo.notice.<name>` from the service account;
//! - the service account imports the service `mnemo.work.<name>` (the tasks) from each
//!   live processor's account.
//!
//! So every request a worker sends reaches mnemo through an import, and nats-server
//! rewrites its reply subject into the service account's response space (`_R_.`): a
//! worker cannot name a reply subject that makes mnemo publish in the service account. A
//! worker sees no subject of another processor, of a user or of the chains, whatever its
//! permissions say.
//!
//! The processor account's key is derived from the service account's seed and the name
//! (nothing to store); so is its user key, which revocation names. A revoked processor's
//! account revokes its user (credentials issued before are refused, its connections closed)
//! and the service account stops importing its tasks.

use nkeys::KeyPair;
use std::collections::BTreeMap;

use crate::accounts::{Accounts, push_account};
use crate::claims::{self, Activation, Export, Import, Limits, User};
use crate::error::Result;
use crate::operator::service_account_jwt;
use mnemo_core::names::{NOTICE_PREFIX, PROC_PREFIX, WORK_PREFIX};
use mnemo_ledger::clock::now_secs;

/// A key derived from the service account's seed, a purpose and a processor's name.
fn derived(
    service: &KeyPair,
    purpose: &str,
    name: &str,
    kind: nkeys::KeyPairType,
) -> Result<KeyPair> {
    let seed = service.seed()?;
    let raw = blake3::derive_key(purpose, format!("{seed}\0{name}").as_bytes());
    Ok(KeyPair::new_from_raw(kind, raw)?)
}

/// The processor's account key.
pub fn processor_account_key(service: &KeyPair, name: &str) -> Result<KeyPair> {
    derived(
        service,
        "mnemo 2026-12-07 processor NATS account v1",
        name,
        nkeys::KeyPairType::Account,
    )
}

/// The processor's NATS user key: every credential issued to one processor names one
/// user, which revocation names.
pub fn processor_user_key(service: &KeyPair, name: &str) -> Result<KeyPair> {
    derived(
        service,
        "mnemo 2026-12-07 processor NATS user v1",
        name,
        nkeys::KeyPairType::User,
    )
}

/// Limits of a processor account: JetStream off (a worker reaches the queues and chains
/// only through mnemo's services), imports and exports for its own subjects only.
pub fn processor_account_limits() -> Limits {
    Limits {
        subs: 1024,
        data: -1,
        payload: -1,
        imports: 2,
        exports: 1,
        wildcards: true,
        conn: 256,
        leaf: 0,
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

/// An activation token: `exporter` lets `importer` import `subject`.
fn activation(
    exporter: &KeyPair,
    importer: &str,
    subject: &str,
    kind: &'static str,
) -> Result<String> {
    claims::encode(
        exporter,
        importer.to_owned(),
        None,
        None,
        Activation::new(subject.to_owned(), kind),
    )
}

/// The processor's services at mnemo: `mnemo.proc.<name>.*`.
fn proc_subject(name: &str) -> String {
    format!("{PROC_PREFIX}.{name}.*")
}

/// The JWT of processor `name`'s account, signed by the operator's signing key `signing`;
/// `revoked_at`: when the processor was revoked (its user's credentials issued before are
/// refused).
pub fn processor_account_jwt(
    signing: &KeyPair,
    service: &KeyPair,
    name: &str,
    revoked_at: Option<i64>,
) -> Result<String> {
    let acct = processor_account_key(service, name)?.public_key();
    let service_pub = service.public_key();
    let notice = format!("{NOTICE_PREFIX}.{name}");
    let mut revocations = BTreeMap::new();
    if let Some(t) = revoked_at {
        revocations.insert(processor_user_key(service, name)?.public_key(), t);
    }
    claims::encode(
        signing,
        acct.clone(),
        Some(format!("processor {name}")),
        None,
        claims::Account {
            kind: "account",
            version: 2,
            limits: processor_account_limits(),
            exports: vec![Export {
                name: "tasks".into(),
                subject: format!("{WORK_PREFIX}.{name}"),
                kind: "service",
                response_type: Some("Singleton"),
                account_token_position: 0,
                token_req: true,
            }],
            imports: vec![
                Import {
                    name: "processing".into(),
                    subject: proc_subject(name),
                    account: service_pub.clone(),
                    local_subject: proc_subject(name),
                    kind: "service",
                    token: Some(activation(service, &acct, &proc_subject(name), "service")?),
                },
                Import {
                    name: "notices".into(),
                    subject: notice.clone(),
                    account: service_pub,
                    local_subject: notice.clone(),
                    kind: "stream",
                    token: Some(activation(service, &acct, &notice, "stream")?),
                },
            ],
            signing_keys: vec![],
            revocations,
        },
    )
}

/// The service account's import of live processor `name`'s tasks.
fn task_import(service: &KeyPair, name: &str) -> Result<Import> {
    let account = processor_account_key(service, name)?;
    let subject = format!("{WORK_PREFIX}.{name}");
    Ok(Import {
        name: format!("tasks {name}"),
        token: Some(activation(
            &account,
            &service.public_key(),
            &subject,
            "service",
        )?),
        subject: subject.clone(),
        account: account.public_key(),
        local_subject: subject,
        kind: "service",
    })
}

/// A processor as NATS must know it.
pub struct ProcessorState<'a> {
    /// Its name.
    pub name: &'a str,
    /// Whether it is revoked.
    pub revoked: bool,
}

impl Accounts {
    /// A processor's NATS credentials: a user of the processor's own account, allowed to
    /// publish only its requests (`mnemo.proc.<name>.>`) and replies to its tasks, and to
    /// subscribe only to its tasks, its notices and its inbox `_INBOX_<name>.>` (see
    /// `User::processor`), valid for `ttl_secs`. The account must have been pushed
    /// (`mnemo_api::sync_processor_accounts`). `None` without the service key.
    pub fn processor_creds(&self, name: &str, ttl_secs: i64) -> Result<Option<String>> {
        let Some(service) = self.service_key() else {
            return Ok(None);
        };
        let account = processor_account_key(service, name)?;
        let key = processor_user_key(service, name)?;
        let jwt = claims::encode(
            &account,
            key.public_key(),
            Some(format!("processor {name}")),
            Some(now_secs() as i64 + ttl_secs),
            User::processor(name),
        )?;
        Ok(Some(claims::creds(&jwt, &key.seed()?)))
    }

    /// Pushes every processor's account (a revoked one with its user revoked as of now,
    /// which closes its connections) and the service account's JWT (importing the tasks
    /// of the live ones). The full list is given each time: the registry is the record,
    /// so a push after a restart restores it all. Costs one claims update per processor.
    pub async fn sync_processor_states(&self, processors: &[ProcessorState<'_>]) -> Result<()> {
        let Some(service) = self.service_key() else {
            return Ok(());
        };
        let now = now_secs() as i64;
        let mut imports = Vec::new();
        // Processors' users of the service account, from before processors had accounts
        // of their own: their credentials are refused.
        let mut legacy = BTreeMap::new();
        for p in processors {
            let jwt =
                processor_account_jwt(self.signing(), service, p.name, p.revoked.then_some(now))?;
            push_account(self.sys(), &jwt).await?;
            legacy.insert(processor_user_key(service, p.name)?.public_key(), now);
            if !p.revoked {
                imports.push(task_import(service, p.name)?);
            }
        }
        let jwt = service_account_jwt(self.signing(), &service.public_key(), imports, legacy)?;
        push_account(self.sys(), &jwt).await
    }
}
