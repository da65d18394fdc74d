//! The operator (with a signing key), the system account and the mnemo service account,
//! their users' credentials, and the server configuration (`mnemo nats init`). Seeds are
//! written with mode 0600 and never logged.

use nkeys::KeyPair;
use std::path::Path;

use crate::claims::{self, Export, Limits, User};
use crate::error::{NatsAuthError, Result};
use mnemo_core::names::{CAPTURE_PREFIX, INGEST_PREFIX, NOTICE_PREFIX, PROC_PREFIX, READ_PREFIX};

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

/// A key pair's seed (every key pair here is made from or with one).
fn seed(kp: &KeyPair) -> Result<String> {
    kp.seed().map_err(NatsAuthError::Key)
}

/// The hub's listeners for devices (docs/EDGE.md), written as `edge.conf` beside
/// `server.conf`: leaf nodes and browsers, and the hub's own JetStream domain (a leaf has
/// another; merge `domain` into the server's one `jetstream` block).
pub const EDGE_LISTENERS: &str =
    "# Devices (docs/EDGE.md): their leaf nodes, and browsers over WebSocket.
# Use TLS outside loopback (docs/deploy): leafnodes { tls { cert_file, key_file } },
# websocket { tls { cert_file, key_file } } instead of no_tls.
leafnodes { listen: \"0.0.0.0:7422\" }
websocket { listen: \"127.0.0.1:8443\", no_tls: true }
# In the server's jetstream block: domain: \"hub\"
";

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
    pub fn operator_jwt(&self) -> Result<String> {
        claims::encode(
            &self.operator,
            self.operator.public_key(),
            Some("mnemo".into()),
            None,
            claims::Operator {
                kind: "operator",
                version: 2,
                signing_keys: vec![self.signing.public_key()],
                system_account: self.system.public_key(),
            },
        )
    }

    /// The system account's JWT.
    pub fn system_jwt(&self) -> Result<String> {
        let export = |name: &str, subject: &str, kind, response_type, pos| Export {
            name: name.into(),
            subject: subject.into(),
            kind,
            response_type,
            account_token_position: pos,
            token_req: false,
        };
        claims::encode(
            &self.signing,
            self.system.public_key(),
            Some("SYS".into()),
            None,
            claims::Account {
                kind: "account",
                version: 2,
                limits: Limits::unlimited(false),
                exports: vec![
                    export(
                        "account-monitoring-services",
                        "$SYS.REQ.ACCOUNT.*.*",
                        "service",
                        Some("Stream"),
                        4,
                    ),
                    export(
                        "account-monitoring-streams",
                        "$SYS.ACCOUNT.*.>",
                        "stream",
                        None,
                        3,
                    ),
                ],
                imports: vec![],
                signing_keys: vec![],
                revocations: Default::default(),
            },
        )
    }

    /// The service account's JWT: JetStream on, the ingest and read services exported
    /// with the importer's account key at token 3.
    pub fn service_jwt(&self) -> Result<String> {
        service_account_jwt(
            &self.signing,
            &self.service.public_key(),
            Vec::new(),
            Default::default(),
        )
    }

    /// Credentials of the system user.
    pub fn system_creds(&self) -> Result<String> {
        let jwt = claims::encode(
            &self.system,
            self.system_user.public_key(),
            Some("mnemo-sys".into()),
            None,
            User::unrestricted(None),
        )?;
        Ok(claims::creds(&jwt, &seed(&self.system_user)?))
    }

    /// Credentials of the service user (the ledger and services connect with them).
    pub fn service_creds(&self) -> Result<String> {
        let jwt = claims::encode(
            &self.service,
            self.service_user.public_key(),
            Some("mnemo-service".into()),
            None,
            User::unrestricted(None),
        )?;
        Ok(claims::creds(&jwt, &seed(&self.service_user)?))
    }

    /// Credentials of the service account's responder (see `User::responder`): a fresh
    /// user key each time, signed by the service account.
    pub fn responder_creds(&self) -> Result<String> {
        let key = KeyPair::new_user();
        let jwt = claims::encode(
            &self.service,
            key.public_key(),
            Some("mnemo-responder".into()),
            None,
            User::responder(),
        )?;
        Ok(claims::creds(&jwt, &seed(&key)?))
    }

    /// The operator-mode part of a nats-server configuration (`full` resolver in
    /// `jwt_dir`, the system and service accounts preloaded).
    pub fn server_config(&self, jwt_dir: &Path) -> Result<String> {
        Ok(format!(
            "operator: \"{op}\"\nsystem_account: {sys}\n\
             resolver: {{\n  type: full\n  dir: \"{dir}\"\n  allow_delete: true\n  interval: \"2m\"\n  limit: 1000000\n}}\n\
             resolver_preload: {{\n  {sys}: \"{sys_jwt}\"\n  {svc}: \"{svc_jwt}\"\n}}\n",
            op = self.operator_jwt()?,
            sys = self.system.public_key(),
            dir = jwt_dir.display(),
            sys_jwt = self.system_jwt()?,
            svc = self.service.public_key(),
            svc_jwt = self.service_jwt()?,
        ))
    }

    /// Writes the seeds (mode 0600), the service and system creds (0600) and
    /// `server.conf` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let io = |what: &str| {
            let what = format!("{what} in {}", dir.display());
            move |source| NatsAuthError::Io { what, source }
        };
        std::fs::create_dir_all(dir.join("jwt")).map_err(io("creating jwt/"))?;
        let secret = |name: &str, text: &str| {
            write_private(&dir.join(name), text.as_bytes()).map_err(io(name))
        };
        for (name, kp) in self.seeds() {
            secret(&format!("{name}.nk"), &seed(kp)?)?;
        }
        // The operator's public key, so that a server of mnemo runs without the root
        // key's seed (keep `operator.nk` offline; mnemo signs with `operator-signing.nk`).
        std::fs::write(dir.join("operator.pub"), self.operator.public_key())
            .map_err(io("operator.pub"))?;
        secret("system.creds", &self.system_creds()?)?;
        secret("service.creds", &self.service_creds()?)?;
        std::fs::write(
            dir.join("server.conf"),
            format!(
                "# mnemo operator mode (mnemo nats init). Add listen, jetstream {{ store_dir }}.\n\
                 # For devices' leaf nodes and browsers, merge in edge.conf (docs/EDGE.md).\n{}",
                self.server_config(&dir.join("jwt"))?
            ),
        )
        .map_err(io("server.conf"))?;
        std::fs::write(dir.join("edge.conf"), EDGE_LISTENERS).map_err(io("edge.conf"))
    }

    /// Reads what [`write`](Self::write) wrote. The operator's root key may be absent
    /// (kept offline, as NATS advises): then only its public key (`operator.pub`) is read,
    /// and everything a running mnemo signs is signed with the operator's signing key. Only
    /// `mnemo nats init` and `mnemo dev`, which write the operator's own JWT, need the root.
    pub fn load(dir: &Path) -> Result<Self> {
        let read = |name: &str| -> Result<KeyPair> {
            let seed = std::fs::read_to_string(dir.join(format!("{name}.nk"))).map_err(|e| {
                NatsAuthError::Io {
                    what: format!("reading {name}.nk in {}", dir.display()),
                    source: e,
                }
            })?;
            Ok(KeyPair::from_seed(seed.trim())?)
        };
        let operator = if dir.join("operator.nk").exists() {
            read("operator")?
        } else {
            let public = std::fs::read_to_string(dir.join("operator.pub")).map_err(|e| {
                NatsAuthError::Io {
                    what: format!("reading operator.pub (or operator.nk) in {}", dir.display()),
                    source: e,
                }
            })?;
            KeyPair::from_public_key(public.trim())?
        };
        Ok(Self {
            operator,
            signing: read("operator-signing")?,
            system: read("system-account")?,
            system_user: read("system-user")?,
            service: read("service-account")?,
            service_user: read("service-user")?,
        })
    }
}

/// The service account's JWT, signed by the operator's signing key.
///
/// It exports the device services (ingest, read, capture) with the importer's account key
/// at token 3, and, privately (an activation per processor account, see
/// `nats::processors`), the processor services `mnemo.proc.>` and the notices
/// `mnemo.notice.>`. It carries `imports` (each live processor's task service) and
/// `revocations` (user public key -> time: credentials of that user issued before it are
/// refused).
pub fn service_account_jwt(
    signing: &KeyPair,
    service: &str,
    imports: Vec<claims::Import>,
    revocations: std::collections::BTreeMap<String, i64>,
) -> Result<String> {
    let export = |name: &str, prefix: &str| Export {
        name: name.into(),
        subject: format!("{prefix}.*"),
        kind: "service",
        response_type: Some("Singleton"),
        account_token_position: 3,
        token_req: false,
    };
    let private = |name: &str, prefix: &str, kind, response_type| Export {
        name: name.into(),
        subject: format!("{prefix}.>"),
        kind,
        response_type,
        account_token_position: 0,
        token_req: true,
    };
    claims::encode(
        signing,
        service.to_owned(),
        Some("MNEMO".into()),
        None,
        claims::Account {
            kind: "account",
            version: 2,
            limits: Limits::unlimited(true),
            exports: vec![
                export("ingest", INGEST_PREFIX),
                export("read", READ_PREFIX),
                export("capture", CAPTURE_PREFIX),
                private("processors", PROC_PREFIX, "service", Some("Singleton")),
                private("notices", NOTICE_PREFIX, "stream", None),
            ],
            imports,
            signing_keys: vec![],
            revocations,
        },
    )
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
