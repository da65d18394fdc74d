//! A real `nats-server` with JetStream, for tests.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::port::free_port;

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

/// A running `nats-server`. Killed and its directory removed on drop.
pub struct NatsServer {
    child: Option<Child>,
    dir: crate::port::Home,
    port: u16,
    opts: NatsOptions,
}

/// The `nats-server` binary tests use (see the crate docs for the search order).
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

fn checked_binary() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let bin = nats_server_binary();
        let out = Command::new(&bin)
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; run scripts/setup.sh", bin.display()));
        let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let minor = v
            .trim_start_matches("nats-server: v")
            .split('.')
            .take(2)
            .map(|x| x.parse::<u32>().unwrap_or(0))
            .collect::<Vec<_>>();
        assert!(
            minor.len() == 2 && (minor[0], minor[1]) >= (2, 10),
            "{} is {v}; mnemo needs nats-server >= 2.10 (scripts/setup.sh installs 2.15.1)",
            bin.display()
        );
        eprintln!("mnemo-testkit: using {} ({v})", bin.display());
        bin
    })
}

impl NatsServer {
    /// Starts a JetStream server with default options.
    pub fn start() -> Self {
        Self::start_with(NatsOptions::default())
    }

    /// Starts a JetStream server.
    pub fn start_with(opts: NatsOptions) -> Self {
        Self::start_home(crate::port::Home::temp("mnemo-nats-"), opts)
    }

    /// Starts a JetStream server whose config, log and store live in `dir`, which stays
    /// when the server stops (a later start in the same `dir` finds its streams).
    pub fn start_in(dir: &Path, opts: NatsOptions) -> Self {
        Self::start_home(crate::port::Home::kept(dir), opts)
    }

    fn start_home(dir: crate::port::Home, opts: NatsOptions) -> Self {
        let mut s = Self {
            child: None,
            dir,
            port: free_port(),
            opts,
        };
        s.spawn();
        s
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

    fn spawn(&mut self) {
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
            "listen: 127.0.0.1:{port}\nserver_name: mnemo_test_{port}\nmax_payload: 8MB\n\
             jetstream {{\n  store_dir: \"{store}\"{sync}\n}}\n{extra}\n",
            port = self.port,
            store = store.display(),
            extra = self.opts.extra_config,
        );
        fs::write(&conf, text).expect("write server.conf");
        let log = self.dir.path().join("server.log");
        // Start from an empty log so readiness is read from this run only.
        let _ = fs::remove_file(&log);
        let child = Command::new(checked_binary())
            .arg("-c")
            .arg(&conf)
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        self.wait_ready(&log);
    }

    fn wait_ready(&mut self, log: &Path) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if fs::read_to_string(log).is_ok_and(|l| l.contains("Server is ready")) {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!(
                    "nats-server exited ({status}) before ready: {err}\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "nats-server not ready in 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server with SIGKILL (no clean shutdown) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and store directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGKILL, then start again on the same port and store.
    pub fn kill_and_restart(&mut self) {
        self.restart();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
