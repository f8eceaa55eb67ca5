//! The budget governor: a hard cap on the bytes the runtime holds (weights, activation
//! reserve, KV cache, I/O buffers). Every holder takes a [`Lease`]; an acquisition that would
//! pass the cap blocks until enough leases are dropped, and one that could never fit fails at
//! once instead of waiting forever.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use edgerun_tensor::{AlignedBuf, ByteBuffer, FillBuffer};

use crate::{Result, RuntimeError};

/// Idle read buffers kept at most, whatever room the cap leaves.
const MAX_IDLE: usize = 16;

#[derive(Debug, Default)]
struct Ledger {
    /// Bytes leased plus bytes of idle buffers: both are held by the process.
    used: u64,
    peak: u64,
    /// Read buffers given back, oldest first, kept for reuse while the cap allows.
    idle: VecDeque<AlignedBuf>,
    idle_bytes: u64,
}

impl Ledger {
    fn take(&mut self, bytes: u64) {
        self.used += bytes;
        self.peak = self.peak.max(self.used);
    }

    /// Whether evicting idle buffers would make room for `bytes` under `cap`. When it would
    /// not, evicting is pointless: the caller must wait for buffers in use or leases anyway,
    /// and the idle ones may still be taken meanwhile.
    fn eviction_helps(&self, bytes: u64, cap: u64) -> bool {
        !self.idle.is_empty() && self.used - self.idle_bytes + bytes <= cap
    }

    /// Removes the oldest idle buffer from the books; the caller drops it outside the lock,
    /// since unmapping takes time.
    fn evict(&mut self) -> Option<AlignedBuf> {
        let buf = self.idle.pop_front()?;
        self.used -= buf.len() as u64;
        self.idle_bytes -= buf.len() as u64;
        Some(buf)
    }

    fn park(&mut self, buf: AlignedBuf) {
        self.idle_bytes += buf.len() as u64;
        self.idle.push_back(buf);
    }

    /// The idle buffer of exactly `len` bytes given back last, if any.
    fn reuse(&mut self, len: usize) -> Option<AlignedBuf> {
        let i = self.idle.iter().rposition(|b| b.len() == len)?;
        let buf = self.idle.remove(i)?;
        self.idle_bytes -= len as u64;
        Some(buf)
    }
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

/// A read buffer held against the cap. Dropped (when the last tensor borrowing it goes), it
/// returns to the governor's idle list, still counted, for the next read of the same length:
/// a buffer already faulted in costs a loader a tenth of the CPU of a fresh one. Idle buffers
/// never block anyone: an acquisition that does not fit evicts them before it waits.
pub struct GovernedBuf {
    buf: Option<AlignedBuf>,
    governor: Arc<Governor>,
}

impl ByteBuffer for GovernedBuf {
    fn bytes(&self) -> &[u8] {
        self.buf.as_ref().map_or(&[], |b| b.bytes())
    }
}

impl FillBuffer for GovernedBuf {
    fn as_mut_slice(&mut self) -> &mut [u8] {
        self.buf.as_mut().map_or(&mut [], |b| b.as_mut_slice())
    }
}

impl Drop for GovernedBuf {
    fn drop(&mut self) {
        let Some(buf) = self.buf.take() else { return };
        let mut ledger = self.governor.ledger.lock().expect("governor lock");
        ledger.park(buf);
        // Without a cap nothing would ever evict them, and the peak would stop meaning
        // what a pass needs: an unbounded governor keeps no idle buffers.
        let surplus = (ledger.idle.len() > MAX_IDLE || self.governor.cap == u64::MAX)
            .then(|| ledger.evict())
            .flatten();
        drop(ledger);
        drop(surplus);
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

    /// Bytes held now: leases and idle read buffers.
    pub fn used(&self) -> u64 {
        self.ledger.lock().expect("governor lock").used
    }

    /// Bytes held by leases and buffers in use: [`Governor::used`] without the idle buffers.
    /// Zero once every holder is gone.
    pub fn leased(&self) -> u64 {
        let ledger = self.ledger.lock().expect("governor lock");
        ledger.used - ledger.idle_bytes
    }

    /// Bytes of idle read buffers kept for reuse.
    pub fn idle_bytes(&self) -> u64 {
        self.ledger.lock().expect("governor lock").idle_bytes
    }

    /// Fails at once when `bytes` could never fit, however much is given back.
    pub(crate) fn refuse_beyond_cap(&self, bytes: u64, what: &str) -> Result<()> {
        if bytes > self.cap {
            return Err(RuntimeError::BeyondCap {
                what: what.to_string(),
                bytes,
                budget: self.cap,
            });
        }
        Ok(())
    }

    /// Waits until `bytes` more fit, evicting idle buffers where that makes room, and books
    /// them. An idle buffer never blocks an acquisition: only leases and buffers in use do.
    fn book(&self, bytes: u64) {
        let mut ledger = self.ledger.lock().expect("governor lock");
        while ledger.used + bytes > self.cap {
            ledger = self.make_room(ledger, bytes);
        }
        ledger.take(bytes);
    }

    /// One step towards `bytes` fitting: evict the oldest idle buffer if evicting makes room
    /// (unmapped outside the lock), else wait for a holder to give bytes back.
    fn make_room<'a>(
        &'a self,
        mut ledger: MutexGuard<'a, Ledger>,
        bytes: u64,
    ) -> MutexGuard<'a, Ledger> {
        if !ledger.eviction_helps(bytes, self.cap) {
            return self.freed.wait(ledger).expect("governor lock");
        }
        let evicted = ledger.evict();
        drop(ledger);
        drop(evicted);
        self.ledger.lock().expect("governor lock")
    }

    /// Takes `bytes`, waiting while the cap would be passed. `what` names the holder in errors.
    pub fn acquire(self: &Arc<Self>, bytes: u64, what: &str) -> Result<Lease> {
        self.refuse_beyond_cap(bytes, what)?;
        self.book(bytes);
        Ok(Lease {
            governor: self.clone(),
            bytes,
        })
    }

    /// Takes `bytes` only if they fit now (idle buffers are evicted to make room).
    pub fn try_acquire(self: &Arc<Self>, bytes: u64) -> Option<Lease> {
        let mut ledger = self.ledger.lock().expect("governor lock");
        if ledger.used - ledger.idle_bytes + bytes > self.cap {
            return None;
        }
        let mut evicted = Vec::new();
        while ledger.used + bytes > self.cap {
            evicted.extend(ledger.evict());
        }
        ledger.take(bytes);
        drop(ledger);
        drop(evicted);
        Some(Lease {
            governor: self.clone(),
            bytes,
        })
    }

    /// A read buffer of exactly `len` bytes: an idle one of that length if there is one
    /// (already counted), else a fresh one once `len` more bytes fit under the cap. While it
    /// waits, a buffer of its length given back is taken rather than evicted.
    pub fn buffer(self: &Arc<Self>, len: usize, what: &str) -> Result<GovernedBuf> {
        self.refuse_beyond_cap(len as u64, what)?;
        let mut ledger = self.ledger.lock().expect("governor lock");
        let buf = loop {
            if let Some(buf) = ledger.reuse(len) {
                break buf;
            }
            if ledger.used + len as u64 <= self.cap {
                ledger.take(len as u64);
                drop(ledger);
                match AlignedBuf::zeroed_huge(len) {
                    Ok(buf) => break buf,
                    Err(e) => {
                        self.ledger.lock().expect("governor lock").used -= len as u64;
                        self.freed.notify_all();
                        return Err(RuntimeError::Allocation {
                            what: what.to_string(),
                            source: e,
                        });
                    }
                }
            }
            ledger = self.make_room(ledger, len as u64);
        };
        Ok(GovernedBuf {
            buf: Some(buf),
            governor: self.clone(),
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

    fn address(buf: &GovernedBuf) -> usize {
        buf.bytes().as_ptr() as usize
    }

    #[test]
    fn a_buffer_given_back_is_reused_for_its_length_and_still_counted() {
        let g = Governor::new(1 << 20);
        let mut first = g.buffer(8192, "a").unwrap();
        first.as_mut_slice()[0] = 7;
        let at = address(&first);
        drop(first);
        assert_eq!((g.used(), g.leased(), g.idle_bytes()), (8192, 0, 8192));
        let other = g.buffer(4096, "b").unwrap();
        assert_ne!(
            address(&other),
            at,
            "a different length gets a fresh buffer"
        );
        let again = g.buffer(8192, "c").unwrap();
        assert_eq!(address(&again), at);
        assert_eq!(again.bytes().len(), 8192);
        assert_eq!((g.used(), g.leased(), g.peak()), (12288, 12288, 12288));
    }

    #[test]
    fn idle_buffers_are_evicted_rather_than_waited_for() {
        let g = Governor::new(10_000);
        drop(g.buffer(8192, "idle").unwrap());
        // Neither of these could fit beside the idle buffer; waiting would never end.
        let lease = g.acquire(5000, "lease").unwrap();
        assert_eq!((g.used(), g.idle_bytes()), (5000, 0));
        drop(lease);
        drop(g.buffer(8192, "idle").unwrap());
        assert!(g.try_acquire(5000).is_some());
        drop(g.buffer(8192, "idle").unwrap());
        let other = g.buffer(4096, "other").unwrap();
        assert_eq!((g.used(), g.idle_bytes()), (4096, 0));
        drop(other);
    }

    #[test]
    fn idle_buffers_stay_while_evicting_them_would_not_make_room() {
        let g = Governor::new(10_000);
        let lease = g.acquire(5000, "held").unwrap();
        drop(g.buffer(4096, "idle").unwrap());
        assert!(g.try_acquire(6000).is_none());
        assert_eq!(g.idle_bytes(), 4096, "a failed try evicts nothing");
        let g2 = g.clone();
        let waiter = std::thread::spawn(move || g2.buffer(8192, "big").map(|b| b.bytes().len()));
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(g.idle_bytes(), 4096, "evicted for nothing");
        drop(lease);
        assert_eq!(waiter.join().unwrap().unwrap(), 8192);
        assert_eq!(g.idle_bytes(), 8192);
    }

    #[test]
    fn a_waiting_reader_takes_a_buffer_of_its_length_given_back() {
        let g = Governor::new(10_000);
        let held = g.buffer(8192, "held").unwrap();
        let at = address(&held);
        let g2 = g.clone();
        let waiter = std::thread::spawn(move || address(&g2.buffer(8192, "next").unwrap()));
        std::thread::sleep(Duration::from_millis(20));
        drop(held);
        assert_eq!(waiter.join().unwrap(), at);
        assert_eq!(g.peak(), 8192);
    }

    #[test]
    fn an_unbounded_governor_keeps_no_idle_buffers() {
        let g = Governor::new(u64::MAX);
        drop(g.buffer(8192, "a").unwrap());
        assert_eq!((g.used(), g.idle_bytes()), (0, 0));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Threads take leases and read buffers of random sizes (each at most the cap) and give
        /// them back: the ledger never passes the cap, nothing stays leased, the idle buffers
        /// are all that is left counted, and all finish before a deadline.
        #[test]
        fn never_passes_the_cap_and_never_deadlocks(cap in 1u64..40_000, plans in prop::collection::vec(prop::collection::vec((1u64..40_000, any::<bool>(), 0u64..300), 1..20), 1..6)) {
            let g = Governor::new(cap);
            let started = Instant::now();
            let handles: Vec<_> = plans.into_iter().map(|plan| {
                let g = g.clone();
                std::thread::spawn(move || {
                    for (bytes, as_buffer, spin_us) in plan {
                        // Page multiples, so a few lengths recur and buffers get reused.
                        let bytes = (bytes.min(cap) / 4096 * 4096).max(1).min(cap);
                        let held: Box<dyn std::any::Any> = if as_buffer {
                            Box::new(g.buffer(bytes as usize, "buffer").unwrap())
                        } else {
                            Box::new(g.acquire(bytes, "lease").unwrap())
                        };
                        assert!(g.used() <= g.cap());
                        std::thread::sleep(Duration::from_micros(spin_us));
                        drop(held);
                    }
                })
            }).collect();
            for h in handles {
                h.join().unwrap();
            }
            prop_assert!(started.elapsed() < Duration::from_secs(30), "took too long: deadlock?");
            prop_assert!(g.peak() <= cap);
            prop_assert_eq!(g.leased(), 0);
            prop_assert_eq!(g.used(), g.idle_bytes());
        }
    }
}
