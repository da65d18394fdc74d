//! A real `nats-server` with JetStream.

use nix::sys::signal::Signal;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::error::{DevstackError, Result};
use crate::port::Home;

/// How to start a server.
#[derive(Clone, Debug, Default)]
pub struct NatsOptions {
    /// fsync every write (`jetstream { sync_interval: always }`) instead of the default
    /// 2-minute interval.
    pub sync_always: bool,
    /// Extra lines for the server config (e.g. operator-mode settings).
    pub extra_config: String,
    /// The JetStream domain (a leaf node and its hub each need their own).
    pub jetstream_domain: Option<String>,
}

/// A running `nats-server`. On drop, a server in a temporary directory is killed and its
/// directory removed; one in a kept directory is stopped cleanly ([`stop`](Self::stop)).
pub struct NatsServer {
    child: Option<Child>,
    dir: Home,
    port: u16,
    opts: NatsOptions,
}

/// The `nats-server` binary: `$MNEMO_NATS_SERVER`, else the pinned one `scripts/setup.sh`
/// installs, else the first on `PATH`.
pub fn nats_server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("MNEMO_NATS_SERVER") {
        return PathBuf::from(p);
    }
    if let Some(t) = crate::port::tools_dir() {
        let p = t.join("venv/bin/nats-server");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("nats-server")
}

/// The binary, checked once to be 2.10 or newer.
fn checked_binary() -> Result<&'static PathBuf> {
    static BIN: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    let checked = BIN.get_or_init(|| {
        let bin = nats_server_binary();
        let out = Command::new(&bin)
            .arg("--version")
            .output()
            .map_err(|e| format!("cannot run {}: {e}; run scripts/setup.sh", bin.display()))?;
        let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let minor = v
            .trim_start_matches("nats-server: v")
            .split('.')
            .take(2)
            .map(|x| x.parse::<u32>().unwrap_or(0))
            .collect::<Vec<_>>();
        if minor.len() != 2 || (minor[0], minor[1]) < (2, 10) {
            return Err(format!(
                "{} is {v}; mnemo needs nats-server >= 2.10 (scripts/setup.sh installs 2.15.1)",
                bin.display()
            ));
        }
        eprintln!("mnemo-devstack: using {} ({v})", bin.display());
        Ok(bin)
    });
    checked
        .as_ref()
        .map_err(|e| DevstackError::Unsuitable(e.clone()))
}

impl NatsServer {
    /// Starts a JetStream server with default options in a temporary directory.
    pub fn start() -> Result<Self> {
        Self::start_with(NatsOptions::default())
    }

    /// Starts a JetStream server in a temporary directory.
    pub fn start_with(opts: NatsOptions) -> Result<Self> {
        Self::start_home(Home::temp("mnemo-nats-")?, opts)
    }

    /// Starts a JetStream server whose config, log and store live in `dir`, which stays
    /// when the server stops (a later start in the same `dir` finds its streams).
    pub fn start_in(dir: &Path, opts: NatsOptions) -> Result<Self> {
        Self::start_home(Home::kept(dir)?, opts)
    }

    fn start_home(dir: Home, opts: NatsOptions) -> Result<Self> {
        let mut s = Self {
            child: None,
            port: dir.port()?,
            dir,
            opts,
        };
        s.spawn()?;
        Ok(s)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's directory (config, log, JetStream store).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn spawn(&mut self) -> Result<()> {
        let conf = self.dir.path().join("server.conf");
        let store = self.dir.path().join("jetstream");
        let mut sync = if self.opts.sync_always {
            "\n  sync_interval: always".to_owned()
        } else {
            String::new()
        };
        if let Some(d) = &self.opts.jetstream_domain {
            sync.push_str(&format!("\n  domain: {d}"));
        }
        let text = format!(
            "listen: 127.0.0.1:{port}\nserver_name: mnemo_{port}\nmax_payload: 8MB\n\
             jetstream {{\n  store_dir: \"{store}\"{sync}\n}}\n{extra}\n",
            port = self.port,
            store = store.display(),
            extra = self.opts.extra_config,
        );
        fs::write(&conf, text).map_err(DevstackError::io("writing server.conf"))?;
        let log = self.dir.path().join("server.log");
        // Start from an empty log so readiness is read from this run only.
        let _ = fs::remove_file(&log);
        let bin = checked_binary()?;
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| DevstackError::Spawn {
                program: bin.display().to_string(),
                source,
            })?;
        self.child = Some(child);
        self.wait_ready(&log)
    }

    fn wait_ready(&mut self, log: &Path) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if fs::read_to_string(log).is_ok_and(|l| l.contains("Server is ready")) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                self.child = None;
                return Err(DevstackError::Exited {
                    what: "nats-server",
                    status,
                    log: format!("{err}\n{}", self.log()),
                });
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(DevstackError::NotReady {
                    what: "nats-server",
                    secs: 30,
                    log: self.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server cleanly: SIGTERM (JetStream flushes and closes its stores), then
    /// waits up to 30 s before SIGKILL. Returns whether it stopped by itself.
    pub fn stop(&mut self) -> bool {
        match self.child.take() {
            Some(mut c) => crate::process::stop(&mut c, Signal::SIGTERM, Duration::from_secs(30)),
            None => true,
        }
    }

    /// Kills the server with SIGKILL (no clean shutdown) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            crate::process::kill_now(&mut c);
        }
    }

    /// Starts the server again on the same port and store directory (after a kill, a
    /// crash recovery).
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if self.dir.is_kept() {
            self.stop();
        } else {
            self.kill();
        }
    }
}
