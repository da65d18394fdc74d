//! Which captures of one capture stream a chain holds ([`CaptureMarks`]), kept compact.
//!
//! A device numbers its captures in each stream, so the counters a chain holds are mostly
//! contiguous. The marks keep runs of counters (`lo..=hi`, each run with the seqs its events
//! lie between) plus the latest captures with their exact seqs. An out-of-order capture is
//! one more run until the gap below it fills, so the state grows with the gaps in a stream,
//! not with its length. Counters without order (the keyed hashes mnemo gives a capture named
//! only by an idempotency key) never form runs and cost what a set of them costs.
//!
//! The rule is the format's (docs/FORMAT.md §4.2): a counter is recorded once per stream;
//! the compaction only forgets where a capture older than the latest [`RECENT`] was
//! recorded, to the range of seqs its run spans ([`Recorded::Within`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::Seq;

/// How many of a stream's captures keep their exact seq: the latest ones, which a device
/// that lost an acknowledgement retries.
pub const RECENT: usize = 32;

/// Where a capture already recorded was recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// At this seq.
    At(Seq),
    /// Somewhere in this range of seqs (inclusive): the capture is older than the latest
    /// [`RECENT`] of its stream and lies in a run of counters.
    Within(Seq, Seq),
}

impl std::fmt::Display for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::At(s) => write!(f, "at seq {s}"),
            Self::Within(a, b) => write!(f, "between seq {a} and {b}"),
        }
    }
}

/// A run of recorded counters `lo..=hi` (the key of [`CaptureMarks::runs`] is `lo`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Run {
    hi: u64,
    /// The lowest and highest seq of the run's events.
    first: Seq,
    last: Seq,
}

/// The counters of one capture stream (with one origin key, or none) a chain holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureMarks {
    /// Runs of counters, by their lowest counter; runs never touch or overlap.
    runs: BTreeMap<u64, Run>,
    /// Counters outside the runs, with the seq of their event: the latest captures.
    recent: BTreeMap<u64, Seq>,
}

impl CaptureMarks {
    /// Where `counter` was recorded, if it was.
    pub fn find(&self, counter: u64) -> Option<Recorded> {
        if let Some(seq) = self.recent.get(&counter) {
            return Some(Recorded::At(*seq));
        }
        let (_, run) = self.runs.range(..=counter).next_back()?;
        (counter <= run.hi).then_some(Recorded::Within(run.first, run.last))
    }

    /// Records `counter` at `seq`; where it was recorded before, if it was (and then
    /// nothing changes).
    pub fn insert(&mut self, counter: u64, seq: Seq) -> Result<(), Recorded> {
        if let Some(before) = self.find(counter) {
            return Err(before);
        }
        self.recent.insert(counter, seq);
        if self.recent.len() > 2 * RECENT {
            self.compact();
        }
        Ok(())
    }

    /// Counters recorded (for tests and sizing): in runs and recent.
    pub fn len(&self) -> u64 {
        let in_runs: u64 = self.runs.iter().map(|(lo, r)| r.hi - lo + 1).sum();
        in_runs + self.recent.len() as u64
    }

    /// Whether no counter is recorded.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty() && self.recent.is_empty()
    }

    /// Entries held (runs and recent counters): what the marks cost, as opposed to
    /// [`Self::len`].
    pub fn entries(&self) -> usize {
        self.runs.len() + self.recent.len()
    }

    /// Moves all but the latest [`RECENT`] recent counters into runs.
    fn compact(&mut self) {
        let mut by_seq: Vec<(Seq, u64)> = self.recent.iter().map(|(c, s)| (*s, *c)).collect();
        by_seq.sort_unstable();
        let older = by_seq.len() - RECENT;
        for (seq, counter) in by_seq.into_iter().take(older) {
            self.recent.remove(&counter);
            self.add_to_runs(counter, seq);
        }
    }

    fn add_to_runs(&mut self, counter: u64, seq: Seq) {
        let mut run = Run {
            hi: counter,
            first: seq,
            last: seq,
        };
        let mut lo = counter;
        // Joins the run that ends just below,
        let below = counter.checked_sub(1).and_then(|below| {
            let (&blo, b) = self.runs.range(..=below).next_back()?;
            (b.hi == below).then_some((blo, *b))
        });
        if let Some((blo, b)) = below {
            lo = blo;
            run.first = run.first.min(b.first);
            run.last = run.last.max(b.last);
            self.runs.remove(&blo);
        }
        // and the one that starts just above.
        if let Some(a) = counter
            .checked_add(1)
            .and_then(|above| self.runs.remove(&above))
        {
            run.hi = a.hi;
            run.first = run.first.min(a.first);
            run.last = run.last.max(a.last);
        }
        self.runs.insert(lo, run);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_stream_in_order_is_one_run_and_the_latest_captures() {
        let mut m = CaptureMarks::default();
        for c in 1..=10_000u64 {
            m.insert(c, Seq(c + 5)).unwrap();
        }
        assert_eq!(m.len(), 10_000);
        assert!(m.entries() <= 2 * RECENT + 1, "{} entries", m.entries());
        assert_eq!(m.insert(10_000, Seq(1)), Err(Recorded::At(Seq(10_005))));
        match m.insert(17, Seq(1)) {
            Err(Recorded::Within(a, b)) => assert!(a <= Seq(22) && Seq(22) <= b),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_gap_costs_one_run_until_it_fills() {
        let mut m = CaptureMarks::default();
        for c in (1..=500u64).filter(|c| *c != 100) {
            m.insert(c, Seq(c)).unwrap();
        }
        assert!(m.entries() <= 2 * RECENT + 2);
        assert_eq!(m.find(100), None);
        m.insert(100, Seq(900)).unwrap();
        for c in 501..=600u64 {
            m.insert(c, Seq(c + 1000)).unwrap();
        }
        assert!(m.entries() <= 2 * RECENT + 1);
        assert!(matches!(m.find(100), Some(Recorded::Within(..))));
    }

    #[test]
    fn the_ends_of_the_counter_space_are_counters_like_any_other() {
        let mut m = CaptureMarks::default();
        for (i, c) in (0..100u64).chain(u64::MAX - 100..=u64::MAX).enumerate() {
            m.insert(c, Seq(i as u64 + 1)).unwrap();
        }
        assert!(m.insert(0, Seq(999)).is_err());
        assert!(m.insert(u64::MAX, Seq(999)).is_err());
        assert_eq!(m.len(), 201);
    }

    proptest! {
        /// The marks take and refuse exactly what a set of every counter would, and name
        /// a range holding the first seq of every capture they refuse.
        #[test]
        fn the_marks_decide_as_a_full_set(counters in prop::collection::vec(0u64..300, 1..800)) {
            let mut marks = CaptureMarks::default();
            let mut full: HashMap<u64, Seq> = HashMap::new();
            for (i, c) in counters.into_iter().enumerate() {
                let seq = Seq(i as u64 + 1);
                let got = marks.insert(c, seq);
                match full.get(&c) {
                    None => {
                        prop_assert_eq!(got, Ok(()));
                        full.insert(c, seq);
                    }
                    Some(first) => match got {
                        Err(Recorded::At(s)) => prop_assert_eq!(s, *first),
                        Err(Recorded::Within(a, b)) => prop_assert!(a <= *first && *first <= b),
                        Ok(()) => prop_assert!(false, "counter {} taken twice", c),
                    },
                }
            }
            prop_assert_eq!(marks.len(), full.len() as u64);
        }
    }
}
