//! A budget for per-user state a worker keeps in memory ([`Resident`]): at most `budget`
//! users' state stays loaded, the least recently used first to go. A state in use (held
//! by a task) is never dropped, so two copies of one user's state never exist; the budget
//! is then exceeded by at most the number of tasks in flight. Whatever is dropped must be
//! saved already: the owner reloads it with the loader it passes in.

use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;

/// Users' states, at most `budget` of them resident while unused.
pub struct Resident<K: Hash + Eq, V> {
    budget: usize,
    states: Mutex<LruCache<K, Arc<V>>>,
}

impl<K: Hash + Eq + Clone, V> Resident<K, V> {
    /// At most `budget` (at least 1) resident states.
    pub fn new(budget: usize) -> Self {
        Self {
            budget: budget.max(1),
            states: Mutex::new(LruCache::unbounded()),
        }
    }

    /// The state of `key`, loaded with `load` when it is not resident.
    pub fn get_or_load<E>(
        &self,
        key: &K,
        load: impl FnOnce() -> Result<V, E>,
    ) -> Result<Arc<V>, E> {
        let mut states = self.states.lock().expect("not poisoned");
        if let Some(v) = states.get(key) {
            return Ok(v.clone());
        }
        let v = Arc::new(load()?);
        states.put(key.clone(), v.clone());
        // Drop the least recently used states nobody holds, until the budget is met.
        while states.len() > self.budget {
            let unused = states
                .iter()
                .rev()
                .find(|(_, v)| Arc::strong_count(v) == 1)
                .map(|(k, _)| k.clone());
            match unused {
                Some(k) => {
                    states.pop(&k);
                }
                None => break,
            }
        }
        Ok(v)
    }

    /// How many states are resident.
    pub fn len(&self) -> usize {
        self.states.lock().expect("not poisoned").len()
    }
}

/// The budget when none is configured.
pub const DEFAULT_BUDGET: NonZeroUsize = NonZeroUsize::new(10_000).expect("not zero");

#[cfg(test)]
mod tests {
    use super::*;

    fn load(n: &mut u32, v: u32) -> Result<u32, ()> {
        *n += 1;
        Ok(v)
    }

    #[test]
    fn unused_states_past_the_budget_go_least_recent_first() {
        let r = Resident::new(2);
        let mut loads = 0;
        r.get_or_load(&"a", || load(&mut loads, 1)).unwrap();
        r.get_or_load(&"b", || load(&mut loads, 2)).unwrap();
        r.get_or_load(&"a", || load(&mut loads, 1)).unwrap();
        r.get_or_load(&"c", || load(&mut loads, 3)).unwrap();
        assert_eq!((r.len(), loads), (2, 3));
        // b went (least recent); a stayed.
        r.get_or_load(&"a", || load(&mut loads, 1)).unwrap();
        assert_eq!(loads, 3);
        r.get_or_load(&"b", || load(&mut loads, 2)).unwrap();
        assert_eq!(loads, 4);
    }

    #[test]
    fn a_state_in_use_is_never_dropped_nor_loaded_twice() {
        let r = Resident::new(1);
        let mut loads = 0;
        let held = r.get_or_load(&"a", || load(&mut loads, 1)).unwrap();
        let b = r.get_or_load(&"b", || load(&mut loads, 2)).unwrap();
        assert_eq!(r.len(), 2, "a is held, b is held: over budget, both kept");
        drop(b);
        let again = r.get_or_load(&"a", || load(&mut loads, 9)).unwrap();
        assert!(
            Arc::ptr_eq(&held, &again),
            "the same state, not a second copy"
        );
        r.get_or_load(&"c", || load(&mut loads, 3)).unwrap();
        assert_eq!(r.len(), 2, "b, unused, went; a, held, stayed");
        assert_eq!(loads, 3);
    }

    #[test]
    fn a_failed_load_keeps_nothing() {
        let r: Resident<&str, u32> = Resident::new(1);
        assert!(r.get_or_load(&"a", || Err::<u32, _>("unreadable")).is_err());
        assert_eq!(r.len(), 0);
    }
}
