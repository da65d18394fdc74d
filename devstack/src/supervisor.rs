//! Worker processes kept running: a [`Supervised`] process is restarted whenever it exits
//! while it should run (a crash, a kill), after a backoff that grows with quick repeated
//! failures, and stopped with SIGTERM and a grace period. Its output goes to a log file
//! and its pid to a pid file, so an operator (or a test) can see and signal it.

use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{DevstackError, Result};

/// A process kept running until [`Supervised::stop`].
pub struct Supervised {
    name: String,
    stop: Arc<AtomicBool>,
    restarts: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
    pid_file: PathBuf,
}

impl Supervised {
    /// Starts `make()`'s command with its output appended to `<dir>/<name>.log` and its pid
    /// in `<dir>/<name>.pid`; restarts it (a fresh `make()`) whenever it exits.
    pub fn start(
        name: &str,
        dir: &Path,
        make: impl Fn() -> Command + Send + 'static,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| DevstackError::io(format!("{}", dir.display()))(e))?;
        let log = dir.join(format!("{name}.log"));
        let pid_file = dir.join(format!("{name}.pid"));
        let stop = Arc::new(AtomicBool::new(false));
        let restarts = Arc::new(AtomicU64::new(0));
        let spawn = {
            let (log, pid_file) = (log.clone(), pid_file.clone());
            move || -> Result<Child> {
                let out = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .map_err(|e| DevstackError::io(format!("{}", log.display()))(e))?;
                let err = out
                    .try_clone()
                    .map_err(|e| DevstackError::io(format!("{}", log.display()))(e))?;
                let child = make()
                    .stdin(Stdio::null())
                    .stdout(out)
                    .stderr(err)
                    .spawn()
                    .map_err(|e| DevstackError::io(format!("{}", log.display()))(e))?;
                std::fs::write(&pid_file, child.id().to_string())
                    .map_err(|e| DevstackError::io(format!("{}", pid_file.display()))(e))?;
                Ok(child)
            }
        };
        let mut child = spawn()?;
        let (who, stop2, restarts2) = (name.to_owned(), stop.clone(), restarts.clone());
        let thread = std::thread::spawn(move || {
            let mut backoff = Duration::from_millis(500);
            let mut started = Instant::now();
            loop {
                if stop2.load(Ordering::Acquire) {
                    crate::process::stop(&mut child, Signal::SIGTERM, Duration::from_secs(25));
                    return;
                }
                match child.try_wait() {
                    Ok(None) => {
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                    Ok(Some(status)) => {
                        eprintln!("mnemo dev: worker {who} exited ({status}); restarting it");
                    }
                    Err(e) => eprintln!("mnemo dev: worker {who}: {e}; restarting it"),
                }
                // Quick repeated failures back off (up to 30 s); a worker that ran a
                // minute starts over at the shortest wait.
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = Duration::from_millis(500);
                }
                let until = Instant::now() + backoff;
                while Instant::now() < until {
                    if stop2.load(Ordering::Acquire) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                match spawn() {
                    Ok(c) => {
                        child = c;
                        started = Instant::now();
                        restarts2.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => eprintln!("mnemo dev: worker {who} did not start: {e}"),
                }
            }
        });
        Ok(Self {
            name: name.to_owned(),
            stop,
            restarts,
            thread: Some(thread),
            pid_file,
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How often it was restarted.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Where its pid is written.
    pub fn pid_file(&self) -> &Path {
        &self.pid_file
    }

    /// Stops it (SIGTERM, 25 s grace, then SIGKILL) and stops restarting it.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop();
    }
}
