//! A real EVM node: `anvil` (npm `@foundry-rs/anvil@1.7.1`), on a free port, with its
//! state dumped to its directory every second so a restart after SIGKILL resumes from disk
//! (losing at most the last second, as a crashed node would); a clean stop dumps it whole.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::error::{DevstackError, Result};
use crate::port::Home;

/// The chain id anvil is started with (Sapphire localnet's).
pub const ANVIL_CHAIN_ID: u64 = 23293;

/// The well-known first dev account of anvil's default mnemonic (funded, test only).
pub const DEV_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

/// A running anvil. On drop, one in a temporary directory is killed and the directory
/// removed; one in a kept directory is stopped cleanly ([`stop`](Self::stop)).
pub struct Anvil {
    child: Option<Child>,
    dir: Home,
    port: u16,
    chain_id: u64,
}

/// The `anvil` binary: `$MNEMO_ANVIL`, else what `scripts/setup.sh` installs, else PATH.
pub fn anvil_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("MNEMO_ANVIL") {
        return PathBuf::from(p);
    }
    if let Some(t) = crate::port::tools_dir() {
        let p = t.join("anvil/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("anvil")
}

impl Anvil {
    /// Starts anvil with chain id 23293 (Sapphire localnet's), automining.
    pub fn start() -> Result<Self> {
        Self::start_home(Home::temp("mnemo-anvil-")?)
    }

    /// Starts anvil with its state in `dir/state.json`, loaded when it exists (the chain
    /// outlives the process, up to the last second's dump).
    pub fn start_in(dir: &std::path::Path) -> Result<Self> {
        Self::start_home(Home::kept(dir)?)
    }

    fn start_home(dir: Home) -> Result<Self> {
        let mut a = Self {
            child: None,
            port: dir.port()?,
            dir,
            chain_id: ANVIL_CHAIN_ID,
        };
        a.spawn()?;
        Ok(a)
    }

    fn spawn(&mut self) -> Result<()> {
        let io = DevstackError::io("creating anvil.log");
        let log = fs::File::create(self.dir.path().join("anvil.log")).map_err(io)?;
        let log2 = log
            .try_clone()
            .map_err(DevstackError::io("opening anvil.log"))?;
        let child = Command::new(anvil_binary())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--chain-id", &self.chain_id.to_string()])
            .arg("--state")
            .arg(self.dir.path().join("state.json"))
            .args(["--state-interval", "1"])
            .stdin(Stdio::null())
            .stdout(log2)
            .stderr(log)
            .spawn()
            .map_err(|source| DevstackError::Spawn {
                program: anvil_binary().display().to_string(),
                source,
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                self.child = None;
                return Err(DevstackError::Exited {
                    what: "anvil",
                    status,
                    log: self.log(),
                });
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(DevstackError::NotReady {
                    what: "anvil",
                    secs: 30,
                    log: self.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("anvil.log")).unwrap_or_default()
    }

    /// Stops the node cleanly: SIGTERM (it dumps its state), then waits up to 10 s before
    /// SIGKILL. Returns whether it stopped by itself.
    pub fn stop(&mut self) -> bool {
        match self.child.take() {
            Some(mut c) => crate::process::stop(&mut c, Signal::SIGTERM, Duration::from_secs(10)),
            None => true,
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            crate::process::kill_now(&mut c);
        }
    }

    /// Starts again on the same port from the last state dump.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        if self.dir.is_kept() {
            self.stop();
        } else {
            self.kill();
        }
    }
}
