//! Hermes' PipeLoad execution engine: N loading agents read units in parallel into
//! budget-leased buffers, one inference agent computes them strictly in order, and a daemon
//! frees each unit right after use, which wakes loaders paused at the cap.
//!
//! The three talk through one channel-borne [`Event`] enum. Loaders are admitted to the budget
//! in execution order (a turnstile), so a later unit can never hold bytes an earlier one needs:
//! with the minimum budget checked up front, the pipeline cannot deadlock.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Instant;

use edgerun_models::{Model, State, UnitWeights};
use edgerun_store::{ModelSource, ReadOptions};

use crate::admit::admit_stage;
use crate::executor::{lease_streamed_pass, minimum_bytes, reserve_bytes, ExecStats};
use crate::governor::{Governor, Lease};
use crate::pass::{Bound, Delivery, Feed, Runner, Weights};
use crate::trace::{SpanKind, Trace, Track};
use crate::{Executor, Result, RuntimeError};

/// Everything that crosses between agents.
enum Event {
    /// A loader finished unit `index`.
    Loaded {
        index: usize,
        weights: UnitWeights,
        lease: Option<Lease>,
        load_s: f64,
        wait_s: f64,
        bytes: u64,
    },
    /// A loader failed on unit `index`.
    Failed { error: RuntimeError },
    /// The inference agent is done with unit `index`: the daemon frees it.
    Used {
        index: usize,
        weights: UnitWeights,
        lease: Option<Lease>,
    },
}

/// In-order admission to the budget: the loader of position `p` (in the pass's load order)
/// leases only after position `p - 1` has and, with a depth `d`, once `p - d` positions have
/// been released (freed by the daemon, or kept resident). The inference agent always needs
/// position `released` or one before it, which is admissible, so the depth can delay loads
/// but never stall the pipeline.
struct Turnstile {
    gate: Mutex<Gate>,
    turn: Condvar,
    depth: Option<usize>,
}

#[derive(Default)]
struct Gate {
    admitted: usize,
    released: usize,
}

impl Turnstile {
    fn new(depth: Option<usize>) -> Self {
        Self {
            gate: Mutex::new(Gate::default()),
            turn: Condvar::new(),
            depth,
        }
    }

    /// Waits for `position`'s turn; false if the pass was aborted meanwhile.
    fn wait(&self, position: usize, abort: &AtomicBool) -> bool {
        let mut gate = self.gate.lock().expect("turnstile lock");
        let too_far = |g: &Gate| self.depth.is_some_and(|d| position > g.released + d);
        while gate.admitted != position || too_far(&gate) {
            if abort.load(Ordering::SeqCst) {
                return false;
            }
            gate = self.turn.wait(gate).expect("turnstile lock");
        }
        !abort.load(Ordering::SeqCst)
    }

    fn pass(&self) {
        self.gate.lock().expect("turnstile lock").admitted += 1;
        self.turn.notify_all();
    }

    /// One more loaded position is done with: freed, or kept resident.
    fn released(&self) {
        self.gate.lock().expect("turnstile lock").released += 1;
        self.turn.notify_all();
    }

    fn abort(&self, abort: &AtomicBool) {
        abort.store(true, Ordering::SeqCst);
        let _guard = self.gate.lock().expect("turnstile lock");
        self.turn.notify_all();
    }
}

/// A unit in the pin table: kept resident across passes with its lease.
type Pinned = Mutex<HashMap<usize, (UnitWeights, Option<Lease>)>>;

/// A per-unit hook for tests: may sleep, and may return a message to fail the unit's read.
type FaultHook = Box<dyn Fn(usize) -> Option<String> + Send + Sync>;

pub struct PipeLoadExecutor {
    source: Arc<ModelSource>,
    model: Box<dyn Model>,
    read: ReadOptions,
    governor: Arc<Governor>,
    loaders: usize,
    /// Units admitted ahead of the one computing, at most (`None`: as the budget allows).
    depth: Option<usize>,
    stats: Mutex<ExecStats>,
    trace: Option<Arc<Trace>>,
    /// Keep units resident across passes where the budget allows (decoding: every token needs
    /// every unit). Decided on the first pass by `planner::residency`.
    residency: bool,
    pin_plan: OnceLock<Vec<bool>>,
    pinned: Pinned,
    /// Test hook: a delay or failure per unit index, applied by loaders after reading.
    fault: Option<FaultHook>,
}

impl PipeLoadExecutor {
    pub fn new(
        source: Arc<ModelSource>,
        read: ReadOptions,
        governor: Arc<Governor>,
        loaders: usize,
    ) -> Result<Self> {
        if loaders == 0 {
            return Err(RuntimeError::NoLoaders);
        }
        Ok(Self {
            model: source.model()?,
            source,
            read,
            governor,
            loaders,
            depth: None,
            stats: Mutex::new(ExecStats::default()),
            trace: None,
            residency: false,
            pin_plan: OnceLock::new(),
            pinned: Mutex::new(HashMap::new()),
            fault: None,
        })
    }

    /// Installs a hook every loader calls after reading unit `i`: it may sleep (to perturb the
    /// schedule) and may return an error message to inject a read failure.
    pub fn with_fault(
        mut self,
        fault: impl Fn(usize) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.fault = Some(Box::new(fault));
        self
    }

    /// Reads at most `depth` units ahead of the one computing (at least 1), which bounds the
    /// read buffers a pass holds below what the budget would allow.
    pub fn with_depth(mut self, depth: usize) -> Self {
        self.depth = Some(depth.max(1));
        self
    }

    /// Keeps as many units resident across passes as the budget allows (for `generate`).
    pub fn with_residency(mut self) -> Self {
        self.residency = true;
        self
    }

    /// How many units are currently kept resident between passes.
    pub fn pinned_units(&self) -> usize {
        self.pinned.lock().expect("pinned lock").len()
    }

    /// Records every agent's spans and the governed bytes into `trace`.
    pub fn with_trace(mut self, trace: Arc<Trace>) -> Self {
        self.trace = Some(trace);
        self
    }

    fn record(&self, track: Track, kind: SpanKind, unit: usize, start: Instant) {
        if let Some(trace) = &self.trace {
            trace.span(track, kind, unit, start, Instant::now());
        }
    }

    fn record_bytes(&self) {
        if let Some(trace) = &self.trace {
            trace.bytes(self.governor.used());
        }
    }

    pub fn minimum_bytes(&self, state: &State) -> u64 {
        minimum_bytes(&self.source, self.model.as_ref(), self.read, state)
    }

    fn load(
        &self,
        loader: usize,
        position: usize,
        index: usize,
        turnstile: &Turnstile,
        abort: &AtomicBool,
    ) -> Option<Event> {
        let stage = &self.model.stages()[index];
        let waited = Instant::now();
        if !turnstile.wait(position, abort) {
            return None;
        }
        let admitted = admit_stage(&self.governor, &self.source, index, stage, self.read);
        turnstile.pass();
        self.record(
            Track::Loader(loader),
            SpanKind::WaitAdmission,
            index,
            waited,
        );
        self.record_bytes();
        let admitted = match admitted {
            Ok(a) => a,
            Err(error) => return Some(Event::Failed { error }),
        };
        let loading = Instant::now();
        let loaded = admitted.load_stage(&self.source, index, stage, self.read);
        let injected = self.fault.as_ref().and_then(|f| f(index));
        self.record(Track::Loader(loader), SpanKind::Load, index, loading);
        let result = match (loaded, injected) {
            (Ok((weights, lease)), None) => Event::Loaded {
                index,
                weights,
                lease,
                load_s: loading.elapsed().as_secs_f64(),
                wait_s: (loading - waited).as_secs_f64(),
                bytes: self.source.read_bytes(index, stage),
            },
            (Err(error), _) => Event::Failed { error },
            (Ok(_), Some(why)) => Event::Failed {
                error: RuntimeError::InjectedFault {
                    unit: stage.id.clone(),
                    why,
                },
            },
        };
        Some(result)
    }
}

impl Executor for PipeLoadExecutor {
    fn model(&self) -> &dyn Model {
        self.model.as_ref()
    }

    fn run_stages(&self, state: &mut State, stages: Range<usize>) -> Result<()> {
        let _reserve = lease_streamed_pass(
            &self.source,
            self.model.as_ref(),
            self.read,
            &self.governor,
            state,
            &stages,
        )?;
        let units = self.model.stages().len();
        let pin_plan = self.pin_plan.get_or_init(|| {
            let sizes: Vec<u64> = self
                .model
                .stages()
                .iter()
                .enumerate()
                .map(|(i, s)| self.source.resident_bytes(i, s, self.read))
                .collect();
            let reserve = reserve_bytes(self.model.as_ref(), state);
            if self.residency {
                crate::planner::residency(&sizes, reserve, self.governor.cap())
            } else {
                vec![false; units]
            }
        });
        // Units already resident from an earlier pass are not read again.
        let to_load: Vec<usize> = {
            let pinned = self.pinned.lock().expect("pinned lock");
            stages.clone().filter(|i| !pinned.contains_key(i)).collect()
        };
        let next = AtomicUsize::new(0);
        let abort = AtomicBool::new(false);
        let turnstile = Turnstile::new(self.depth);
        let (to_inference, events) = mpsc::channel::<Event>();
        let (to_daemon, used) = mpsc::channel::<Event>();

        let outcome = std::thread::scope(|scope| -> Result<ExecStats> {
            for loader in 0..self.loaders.min(to_load.len().max(1)) {
                let tx = to_inference.clone();
                let (next, abort, turnstile, to_load) = (&next, &abort, &turnstile, &to_load);
                scope.spawn(move || loop {
                    let position = next.fetch_add(1, Ordering::SeqCst);
                    if position >= to_load.len() || abort.load(Ordering::SeqCst) {
                        break;
                    }
                    match self.load(loader, position, to_load[position], turnstile, abort) {
                        Some(event) => {
                            if tx.send(event).is_err() {
                                break;
                            }
                        }
                        None => break,
                    }
                });
            }
            drop(to_inference);
            let gate = &turnstile;
            scope.spawn(move || {
                for event in used {
                    // Dropping the weights and the lease frees the unit and wakes paused loaders.
                    if let Event::Used {
                        index,
                        weights,
                        lease,
                    } = event
                    {
                        let freeing = Instant::now();
                        drop(weights);
                        drop(lease);
                        gate.released();
                        self.record(Track::Daemon, SpanKind::Free, index, freeing);
                        self.record_bytes();
                    }
                }
            });

            let mut feed = Arrivals {
                events,
                ready: BTreeMap::new(),
                pinned: &self.pinned,
                pin_plan,
                to_daemon,
                turnstile: &turnstile,
            };
            let runner = Runner::new(self.model.as_ref()).traced(self.trace.as_deref());
            let result = runner.run(state, stages, &mut feed);
            if result.is_err() {
                turnstile.abort(&abort);
                feed.drain();
            }
            drop(feed);
            result.map(|record| record.stats)
        });
        let stats = outcome?;
        self.stats.lock().expect("stats lock").add(&stats);
        Ok(())
    }

    fn stats(&self) -> ExecStats {
        *self.stats.lock().expect("stats lock")
    }

    fn governor(&self) -> &Arc<Governor> {
        &self.governor
    }
}

/// The inference agent's feed: units as the loaders deliver them (in any order, handed over
/// in execution order), or from the pin table when an earlier pass kept them. A used unit
/// goes to the daemon to be freed, or into the pin table if the plan keeps it.
struct Arrivals<'p> {
    events: mpsc::Receiver<Event>,
    ready: BTreeMap<usize, (UnitWeights, Option<Lease>, Delivery)>,
    pinned: &'p Pinned,
    pin_plan: &'p [bool],
    to_daemon: mpsc::Sender<Event>,
    turnstile: &'p Turnstile,
}

impl Arrivals<'_> {
    /// After a failed pass: frees what arrived early and waits out the loaders, so none stays
    /// blocked at the cap.
    fn drain(&mut self) {
        self.ready.clear();
        for _ in self.events.iter() {}
    }
}

impl<'w> Feed<'w> for Arrivals<'_> {
    fn take(&mut self, index: usize) -> Result<Bound<'w>> {
        // A resident unit's lease stays in the pin table; the pass gets a second handle.
        if let Some((weights, _)) = self.pinned.lock().expect("pinned lock").get(&index) {
            return Ok(Bound::owned(weights.clone(), None, Delivery::default()));
        }
        while !self.ready.contains_key(&index) {
            match self.events.recv() {
                Ok(Event::Loaded {
                    index: i,
                    weights,
                    lease,
                    load_s,
                    wait_s,
                    bytes,
                }) => {
                    let cost = Delivery {
                        load_s,
                        wait_s,
                        bytes_read: bytes,
                        copied_bytes: 0,
                    };
                    self.ready.insert(i, (weights, lease, cost));
                }
                Ok(Event::Failed { error }) => return Err(error),
                Ok(Event::Used { .. }) | Err(_) => {
                    return Err(RuntimeError::LoaderStopped { unit: index })
                }
            }
        }
        let (weights, lease, cost) = self
            .ready
            .remove(&index)
            .ok_or(RuntimeError::LoaderStopped { unit: index })?;
        Ok(Bound::owned(weights, lease, cost))
    }

    fn give_back(&mut self, index: usize, unit: Bound<'w>) {
        let mut pinned = self.pinned.lock().expect("pinned lock");
        if pinned.contains_key(&index) {
            return;
        }
        let Bound { weights, lease, .. } = unit;
        let Weights::Owned(weights) = weights else {
            return;
        };
        if self.pin_plan.get(index).copied().unwrap_or(false) {
            pinned.insert(index, (weights, lease));
            drop(pinned);
            self.turnstile.released();
            return;
        }
        drop(pinned);
        let _ = self.to_daemon.send(Event::Used {
            index,
            weights,
            lease,
        });
    }
}
