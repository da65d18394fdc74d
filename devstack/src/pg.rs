//! A real PostgreSQL server: `initdb` into a directory, `postgres` on a free port.
//!
//! PostgreSQL refuses to run as root; when run as root (as CI does), the server runs as
//! the `postgres` system user that Debian's package creates.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::error::{DevstackError, Result};
use crate::port::Home;

/// A running PostgreSQL. On drop, a server in a temporary directory is killed and its
/// directory removed; one in a kept directory is stopped cleanly ([`stop`](Self::stop)).
pub struct PgServer {
    child: Option<Child>,
    dir: Home,
    port: u16,
    owner: Option<(u32, u32)>,
    durable: bool,
    /// The `postgres` superuser's password, once the cluster requires passwords.
    password: Option<String>,
}

/// `pg_hba.conf` of a secured cluster: a password (SCRAM) for every connection.
const SCRAM_HBA: &str = "# written by mnemo-devstack: every connection needs a password\n\
local all all scram-sha-256\n\
host all all 127.0.0.1/32 scram-sha-256\n\
host all all ::1/128 scram-sha-256\n";

/// The directory holding `initdb` and `postgres`: `$MNEMO_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin`.
pub fn pg_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("MNEMO_PG_BIN") {
        return Ok(PathBuf::from(p));
    }
    let mut dirs: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    dirs.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop().ok_or_else(|| {
        DevstackError::Unsuitable("no PostgreSQL server binaries: run scripts/setup.sh".into())
    })
}

fn id(flag: &str) -> Option<u32> {
    let out = Command::new("id").arg(flag).arg("postgres").output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl PgServer {
    /// Initialises a cluster in a temporary directory and starts it with `fsync=off`
    /// (tests: crash safety of the server itself is not what they check).
    pub fn start() -> Result<Self> {
        Self::start_with(false)
    }

    /// Like [`start`](Self::start), with PostgreSQL's default fsync when `durable`
    /// (benchmarks).
    pub fn start_with(durable: bool) -> Result<Self> {
        Self::start_home(Home::temp("mnemo-pg-")?, durable, None)
    }

    /// Starts PostgreSQL on the cluster in `dir` (running `initdb` first when `dir` holds
    /// none), with fsync on when `durable`. The directory stays when the server stops.
    pub fn start_in(dir: &Path, durable: bool) -> Result<Self> {
        Self::start_home(Home::kept(dir)?, durable, None)
    }

    /// Like [`start_in`](Self::start_in), with passwords required: the `postgres`
    /// superuser's is `superuser_password` and every connection authenticates with SCRAM
    /// (`mnemo dev`). A cluster made earlier without passwords is secured on this start.
    pub fn start_in_secured(dir: &Path, durable: bool, superuser_password: &str) -> Result<Self> {
        if superuser_password.is_empty()
            || !superuser_password
                .chars()
                .all(|c| c.is_ascii_alphanumeric())
        {
            return Err(DevstackError::Unsuitable(
                "the PostgreSQL password must be ASCII letters and digits".into(),
            ));
        }
        Self::start_home(
            Home::kept(dir)?,
            durable,
            Some(superuser_password.to_owned()),
        )
    }

    fn start_home(dir: Home, durable: bool, password: Option<String>) -> Result<Self> {
        let owner = if is_root() {
            match (id("-u"), id("-g")) {
                (Some(u), Some(g)) => Some((u, g)),
                _ => {
                    return Err(DevstackError::Unsuitable(
                        "running as root, and there is no 'postgres' user to run PostgreSQL as"
                            .into(),
                    ));
                }
            }
        } else {
            None
        };
        if let Some((u, g)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(u), Some(g))
                .map_err(DevstackError::io(format!("chown {}", dir.path().display())))?;
        }
        let mut s = Self {
            child: None,
            port: dir.port()?,
            dir,
            owner,
            durable,
            password: None,
        };
        if s.data().join("PG_VERSION").exists() {
            let _ = fs::remove_file(s.data().join("postmaster.pid"));
            s.spawn()?;
            if let Some(pw) = password {
                s.secure(pw)?;
            }
            return Ok(s);
        }
        let mut initdb = s.command("initdb")?;
        initdb.args(["-U", "postgres", "-E", "UTF8", "--no-sync"]);
        // The password goes to initdb in a private file, never on a command line.
        let pwfile = s.dir.path().join("initdb.pw");
        match &password {
            Some(pw) => {
                write_private(&pwfile, pw.as_bytes(), s.owner)?;
                initdb
                    .args(["-A", "scram-sha-256"])
                    .arg(format!("--pwfile={}", pwfile.display()));
            }
            None => {
                initdb.args(["-A", "trust"]);
            }
        }
        let out =
            initdb
                .arg("-D")
                .arg(s.data())
                .output()
                .map_err(|source| DevstackError::Spawn {
                    program: "initdb".into(),
                    source,
                })?;
        let _ = fs::remove_file(&pwfile);
        if !out.status.success() {
            return Err(DevstackError::Command {
                what: "initdb",
                detail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        s.password = password;
        s.spawn()?;
        Ok(s)
    }

    /// Sets the superuser's password on a running cluster that trusts every local
    /// connection, then requires passwords (SCRAM) and reloads the configuration.
    fn secure(&mut self, password: String) -> Result<()> {
        let hba = self.data().join("pg_hba.conf");
        let current = fs::read_to_string(&hba).map_err(DevstackError::io("reading pg_hba.conf"))?;
        let trusts = current.lines().any(|l| {
            !l.trim_start().starts_with('#') && l.split_whitespace().any(|w| w == "trust")
        });
        if trusts {
            self.sql(
                "postgres",
                &format!("ALTER ROLE postgres PASSWORD '{password}'"),
            )?;
            write_private(&hba, SCRAM_HBA.as_bytes(), self.owner)?;
            self.sql("postgres", "SELECT pg_reload_conf()")?;
        }
        self.password = Some(password);
        Ok(())
    }

    /// Creates a login role without any administrative right (not a superuser, cannot
    /// create databases or roles), or sets its password, and makes it the owner of
    /// database `db` (created if missing) with everything in it, so it can migrate and
    /// rebuild its own views and touch nothing else.
    pub fn ensure_owner_role(&self, db: &str, role: &str, password: &str) -> Result<()> {
        let ident = |s: &str| s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ident(db) || !ident(role) || !password.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(DevstackError::Unsuitable(
                "role, database and password must be ASCII letters, digits and _".into(),
            ));
        }
        self.sql(
            "postgres",
            &format!(
                "DO $$ BEGIN
                   IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
                     CREATE ROLE {role} LOGIN;
                   END IF;
                 END $$;
                 ALTER ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
                   NOBYPASSRLS PASSWORD '{password}';"
            ),
        )?;
        self.ensure_database(db)?;
        self.sql(
            "postgres",
            &format!(
                "ALTER DATABASE {db} OWNER TO {role}; REVOKE ALL ON DATABASE {db} FROM PUBLIC;"
            ),
        )?;
        // What an earlier run created as the superuser goes to the role.
        self.sql(
            db,
            &format!(
                "ALTER SCHEMA public OWNER TO {role};
                 DO $$ DECLARE r record; BEGIN
                   FOR r IN SELECT c.relname, c.relkind FROM pg_class c
                            JOIN pg_namespace n ON n.oid = c.relnamespace
                            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
                              AND pg_get_userbyid(c.relowner) <> '{role}' LOOP
                     IF r.relkind = 'S' THEN
                       EXECUTE format('ALTER SEQUENCE %I OWNER TO {role}', r.relname);
                     ELSE
                       EXECUTE format('ALTER TABLE %I OWNER TO {role}', r.relname);
                     END IF;
                   END LOOP;
                 END $$;"
            ),
        )?;
        Ok(())
    }

    /// A URL for database `db` as `role` with its password.
    pub fn url_as(&self, db: &str, role: &str, password: &str) -> String {
        format!("postgres://{role}:{password}@127.0.0.1:{}/{db}", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, bin: &str) -> Result<Command> {
        let mut c = Command::new(pg_bin()?.join(bin));
        if let Some((u, g)) = self.owner {
            c.uid(u).gid(g);
        }
        c.stdin(Stdio::null());
        Ok(c)
    }

    fn spawn(&mut self) -> Result<()> {
        let log = self.dir.path().join("pg.log");
        let logf = fs::File::create(&log).map_err(DevstackError::io("creating pg.log"))?;
        if let Some((u, g)) = self.owner {
            let _ = std::os::unix::fs::chown(&log, Some(u), Some(g));
        }
        let child = self
            .command("postgres")?
            .arg("-D")
            .arg(self.data())
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .args([
                "-c",
                if self.durable {
                    "fsync=on"
                } else {
                    "fsync=off"
                },
            ])
            .args(["-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .map_err(|source| DevstackError::Spawn {
                program: "postgres".into(),
                source,
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && fs::read_to_string(&log).is_ok_and(|l| l.contains("ready to accept connections"))
            {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                self.child = None;
                return Err(DevstackError::Exited {
                    what: "postgres",
                    status,
                    log: self.log(),
                });
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(DevstackError::NotReady {
                    what: "postgres",
                    secs: 30,
                    log: self.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server log.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("pg.log")).unwrap_or_default()
    }

    /// A URL for database `db` (create it first, e.g. with [`PgServer::create_database`]).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs SQL as the superuser in `db`; an error carries psql's message.
    fn sql(&self, db: &str, sql: &str) -> Result<String> {
        let out = self.psql_in(db, sql)?;
        if !out.status.success() {
            return Err(DevstackError::Command {
                what: "psql",
                detail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs one SQL command with `psql` against database `postgres`.
    fn psql(&self, sql: &str) -> Result<std::process::Output> {
        self.psql_in("postgres", sql)
    }

    fn psql_in(&self, db: &str, sql: &str) -> Result<std::process::Output> {
        let mut c = self.command("psql")?;
        if let Some(pw) = &self.password {
            c.env("PGPASSWORD", pw);
        }
        c.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
        ])
        .args(["-w", "-d", db, "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .map_err(|source| DevstackError::Spawn {
            program: "psql".into(),
            source,
        })
    }

    /// Creates a database unless it exists.
    pub fn ensure_database(&self, db: &str) -> Result<()> {
        let out = self.psql(&format!("SELECT 1 FROM pg_database WHERE datname = '{db}'"))?;
        if String::from_utf8_lossy(&out.stdout).trim() != "1" {
            self.create_database(db)?;
        }
        Ok(())
    }

    /// Creates a database.
    pub fn create_database(&self, db: &str) -> Result<()> {
        let out = self.psql(&format!("CREATE DATABASE \"{db}\""))?;
        if !out.status.success() {
            return Err(DevstackError::Command {
                what: "create database",
                detail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(())
    }

    /// Stops the server cleanly: SIGINT, PostgreSQL's "fast" shutdown (clients are
    /// disconnected, a shutdown checkpoint is written, so the next start needs no crash
    /// recovery), then waits up to 60 s before SIGKILL. Returns whether it stopped by
    /// itself.
    pub fn stop(&mut self) -> bool {
        let clean = match self.child.take() {
            Some(mut c) => crate::process::stop(&mut c, Signal::SIGINT, Duration::from_secs(60)),
            None => true,
        };
        if !clean {
            let _ = fs::remove_file(self.data().join("postmaster.pid"));
        }
        clean
    }

    /// Kills the server with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // the postmaster's children notice its death and exit; wait until the port is free
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = fs::remove_file(self.data().join("postmaster.pid"));
    }

    /// Starts it again on the same port and data directory (after a kill, crash recovery
    /// runs).
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.dir.is_kept() {
            self.stop();
        } else {
            self.kill();
        }
    }
}

/// Writes `bytes` to `path` readable by its owner only (chowned to the server's user).
fn write_private(path: &Path, bytes: &[u8], owner: Option<(u32, u32)>) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let what = || format!("writing {}", path.display());
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(DevstackError::io(what()))?;
    std::io::Write::write_all(&mut f, bytes).map_err(DevstackError::io(what()))?;
    if let Some((u, g)) = owner {
        std::os::unix::fs::chown(path, Some(u), Some(g)).map_err(DevstackError::io(what()))?;
    }
    Ok(())
}
