//! The one clock: milliseconds (or seconds) since the Unix epoch. Core takes timestamps as
//! arguments and never reads a clock; every crate that needs "now" (the ledger, the API,
//! processing, the anchorer, mnemo-audit) asks this.

use mnemo_core::TimestampMs;
use std::time::{SystemTime, UNIX_EPOCH};

/// Now, as a chain timestamp.
pub fn now() -> TimestampMs {
    TimestampMs(now_ms())
}

/// Milliseconds since the Unix epoch (0 if the system clock is before it).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
