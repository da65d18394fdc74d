//! A server process and how it stops: a signal that asks for a clean shutdown, a bounded
//! wait, SIGKILL only if the grace runs out.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::process::Child;
use std::time::{Duration, Instant};

/// Sends `signal` to `child`, waits up to `grace` for it to exit, then kills it. Returns
/// whether it exited by itself.
pub(crate) fn stop(child: &mut Child, signal: Signal, grace: Duration) -> bool {
    if let Ok(Some(_)) = child.try_wait() {
        return true;
    }
    let Ok(pid) = i32::try_from(child.id()) else {
        let _ = child.kill();
        let _ = child.wait();
        return false;
    };
    if kill(Pid::from_raw(pid), signal).is_err() {
        let _ = child.kill();
        let _ = child.wait();
        return false;
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// SIGKILL and wait (crash tests; temporary servers).
pub(crate) fn kill_now(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}
