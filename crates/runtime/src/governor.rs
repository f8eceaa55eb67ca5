//! The budget governor: a hard cap on the bytes the runtime holds (weights, activation
//! reserve, KV cache, I/O buffers). Every holder takes a [`Lease`]; an acquisition that would
//! pass the cap blocks until enough leases are dropped, and one that could never fit fails at
//! once instead of waiting forever.

use std::sync::{Arc, Condvar, Mutex};

use crate::{Result, RuntimeError};

#[derive(Debug, Default)]
struct Ledger {
    used: u64,
    peak: u64,
}

#[derive(Debug)]
pub struct Governor {
    cap: u64,
    ledger: Mutex<Ledger>,
    freed: Condvar,
}

/// Bytes held against the cap until dropped.
#[derive(Debug)]
pub struct Lease {
    governor: Arc<Governor>,
    bytes: u64,
}

impl Lease {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut ledger = self.governor.ledger.lock().expect("governor lock");
        ledger.used -= self.bytes;
        drop(ledger);
        self.governor.freed.notify_all();
    }
}

impl Governor {
    /// A governor with `cap` bytes; `u64::MAX` means unbounded (it still tracks the peak).
    pub fn new(cap: u64) -> Arc<Self> {
        Arc::new(Self {
            cap,
            ledger: Mutex::new(Ledger::default()),
            freed: Condvar::new(),
        })
    }

    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// The largest number of bytes held at once so far.
    pub fn peak(&self) -> u64 {
        self.ledger.lock().expect("governor lock").peak
    }

    pub fn used(&self) -> u64 {
        self.ledger.lock().expect("governor lock").used
    }

    /// Takes `bytes`, waiting while the cap would be passed. `what` names the holder in errors.
    pub fn acquire(self: &Arc<Self>, bytes: u64, what: &str) -> Result<Lease> {
        if bytes > self.cap {
            return Err(RuntimeError::Budget(format!(
                "{what} needs {bytes} bytes, more than the whole budget of {} bytes",
                self.cap
            )));
        }
        let mut ledger = self.ledger.lock().expect("governor lock");
        while ledger.used + bytes > self.cap {
            ledger = self.freed.wait(ledger).expect("governor lock");
        }
        ledger.used += bytes;
        ledger.peak = ledger.peak.max(ledger.used);
        Ok(Lease {
            governor: self.clone(),
            bytes,
        })
    }

    /// Takes `bytes` only if they fit now.
    pub fn try_acquire(self: &Arc<Self>, bytes: u64) -> Option<Lease> {
        let mut ledger = self.ledger.lock().expect("governor lock");
        if ledger.used + bytes > self.cap {
            return None;
        }
        ledger.used += bytes;
        ledger.peak = ledger.peak.max(ledger.used);
        Some(Lease {
            governor: self.clone(),
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::{Duration, Instant};

    #[test]
    fn blocks_until_released_and_refuses_the_impossible() {
        let g = Governor::new(100);
        let a = g.acquire(60, "a").unwrap();
        assert!(g.try_acquire(50).is_none());
        assert!(g.acquire(101, "huge").is_err());
        let g2 = g.clone();
        let waiter = std::thread::spawn(move || g2.acquire(50, "b").map(|l| l.bytes()));
        std::thread::sleep(Duration::from_millis(20));
        drop(a);
        assert_eq!(waiter.join().unwrap().unwrap(), 50);
        assert_eq!(g.used(), 0);
        assert_eq!(g.peak(), 60);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Threads acquire and release random sizes (each at most the cap): the ledger never
        /// passes the cap, everything returns to zero, and all finish before a deadline.
        #[test]
        fn never_passes_the_cap_and_never_deadlocks(cap in 1u64..10_000, plans in prop::collection::vec(prop::collection::vec((1u64..10_000, 0u64..300), 1..20), 1..6)) {
            let g = Governor::new(cap);
            let started = Instant::now();
            let handles: Vec<_> = plans.into_iter().map(|plan| {
                let g = g.clone();
                std::thread::spawn(move || {
                    for (bytes, spin_us) in plan {
                        let lease = g.acquire(bytes.min(cap), "test").unwrap();
                        assert!(g.used() <= g.cap());
                        std::thread::sleep(Duration::from_micros(spin_us));
                        drop(lease);
                    }
                })
            }).collect();
            for h in handles {
                h.join().unwrap();
            }
            prop_assert!(started.elapsed() < Duration::from_secs(30), "took too long: deadlock?");
            prop_assert!(g.peak() <= cap);
            prop_assert_eq!(g.used(), 0);
        }
    }
}
