//! The one retry policy: exponential backoff between a floor and a ceiling. Pure: it says
//! how long to wait, the caller sleeps (core has no clock).
//!
//! ```
//! use mnemo_core::Backoff;
//! use std::time::Duration;
//! let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
//! assert_eq!(b.next_wait(), Duration::from_millis(100));
//! assert_eq!(b.next_wait(), Duration::from_millis(200));
//! b.reset();
//! assert_eq!(b.next_wait(), Duration::from_millis(100));
//! ```

use std::time::Duration;

/// Waits that double after each failure, from `floor` up to `ceiling`; a success resets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    floor: Duration,
    ceiling: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `floor`, never waits longer than `ceiling` (at least `floor`).
    pub fn new(floor: Duration, ceiling: Duration) -> Self {
        Self {
            floor,
            ceiling: ceiling.max(floor),
            next: floor,
        }
    }

    /// How long to wait after this failure; the one after waits twice as long.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.ceiling);
        wait
    }

    /// After a success: the next failure waits `floor` again.
    pub fn reset(&mut self) {
        self.next = self.floor;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_ceiling_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(200), ms(1000));
        let waits: Vec<_> = (0..5).map(|_| b.next_wait()).collect();
        assert_eq!(waits, [ms(200), ms(400), ms(800), ms(1000), ms(1000)]);
        b.reset();
        assert_eq!(b.next_wait(), ms(200));
        assert_eq!(Backoff::new(ms(5), ms(1)).next_wait(), ms(5));
    }
}
