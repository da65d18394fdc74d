//! A real PostgreSQL server for tests: `initdb` into a temp dir, `postgres` on a free port.
//!
//! PostgreSQL refuses to run as root; when the tests run as root (as CI does), the server
//! runs as the `postgres` system user that Debian's package creates.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::port::free_port;

/// A running PostgreSQL. Killed and its directory removed on drop.
pub struct PgServer {
    child: Option<Child>,
    dir: crate::port::Home,
    port: u16,
    owner: Option<(u32, u32)>,
    durable: bool,
}

/// The directory holding `initdb` and `postgres`: `$MNEMO_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin`.
pub fn pg_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MNEMO_PG_BIN") {
        return PathBuf::from(p);
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
    dirs.pop()
        .expect("no PostgreSQL server binaries: run scripts/setup.sh")
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
    /// Initialises a cluster and starts it with `fsync=off` (tests: crash safety of the
    /// server itself is not what they check).
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Like [`start`](Self::start), with PostgreSQL's default fsync when `durable`
    /// (benchmarks).
    pub fn start_with(durable: bool) -> Self {
        Self::start_home(crate::port::Home::temp("mnemo-pg-"), durable)
    }

    /// Starts PostgreSQL on the cluster in `dir` (running `initdb` first when `dir` holds
    /// none), with fsync on when `durable`. The directory stays when the server stops.
    pub fn start_in(dir: &Path, durable: bool) -> Self {
        Self::start_home(crate::port::Home::kept(dir), durable)
    }

    fn start_home(dir: crate::port::Home, durable: bool) -> Self {
        let owner = if is_root() {
            Some((
                id("-u").expect("a 'postgres' user to run PostgreSQL as (not root)"),
                id("-g").expect("postgres group"),
            ))
        } else {
            None
        };
        if let Some((u, g)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(u), Some(g)).expect("chown temp dir");
        }
        let mut s = Self {
            child: None,
            dir,
            port: free_port(),
            owner,
            durable,
        };
        if s.data().join("PG_VERSION").exists() {
            let _ = fs::remove_file(s.data().join("postmaster.pid"));
            s.spawn();
            return s;
        }
        let out = s
            .command("initdb")
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(s.data())
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        s.spawn();
        s
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, bin: &str) -> Command {
        let mut c = Command::new(pg_bin().join(bin));
        if let Some((u, g)) = self.owner {
            c.uid(u).gid(g);
        }
        c.stdin(Stdio::null());
        c
    }

    fn spawn(&mut self) {
        let log = self.dir.path().join("pg.log");
        let logf = fs::File::create(&log).expect("log file");
        if let Some((u, g)) = self.owner {
            let _ = std::os::unix::fs::chown(&log, Some(u), Some(g));
        }
        let child = self
            .command("postgres")
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
            .expect("spawn postgres");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && fs::read_to_string(&log).is_ok_and(|l| l.contains("ready to accept connections"))
            {
                return;
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("postgres exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "postgres not ready: {}",
                self.log()
            );
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

    /// Runs one SQL command with `psql` against database `postgres`.
    fn psql(&self, sql: &str) -> std::process::Output {
        self.command("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", "postgres", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("run psql")
    }

    /// Creates a database unless it exists.
    pub fn ensure_database(&self, db: &str) {
        let out = self.psql(&format!("SELECT 1 FROM pg_database WHERE datname = '{db}'"));
        if String::from_utf8_lossy(&out.stdout).trim() != "1" {
            self.create_database(db);
        }
    }

    /// Creates a database.
    pub fn create_database(&self, db: &str) {
        let out = self.psql(&format!("CREATE DATABASE \"{db}\""));
        assert!(
            out.status.success(),
            "create database: {}",
            String::from_utf8_lossy(&out.stderr)
        );
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

    /// Starts it again on the same port and data directory (crash recovery runs).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.kill();
    }
}
