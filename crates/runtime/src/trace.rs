//! What each agent did when: spans on tracks (loaders, inference, daemon) and a counter of
//! governed bytes, exported as Chrome/Perfetto trace JSON. Tests check pipeline invariants on
//! it; the CLI also draws it as a timeline.

use std::sync::Mutex;
use std::time::Instant;

use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Track {
    Loader(usize),
    Inference,
    Daemon,
}

impl Track {
    pub fn name(self) -> String {
        match self {
            Track::Loader(i) => format!("loader {i}"),
            Track::Inference => "inference".into(),
            Track::Daemon => "daemon".into(),
        }
    }

    fn tid(self) -> usize {
        match self {
            Track::Inference => 1,
            Track::Daemon => 2,
            Track::Loader(i) => 10 + i,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    /// A loader waiting for its turn, its read-ahead depth and budget.
    WaitAdmission,
    Load,
    /// The inference agent waiting for the next unit to arrive.
    WaitUnit,
    Compute,
    Free,
}

impl SpanKind {
    pub fn name(self) -> &'static str {
        match self {
            SpanKind::WaitAdmission => "wait admission",
            SpanKind::Load => "load",
            SpanKind::WaitUnit => "wait unit",
            SpanKind::Compute => "compute",
            SpanKind::Free => "free",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Span {
    pub track: Track,
    pub kind: SpanKind,
    pub unit: usize,
    pub start_s: f64,
    pub end_s: f64,
}

#[derive(Debug)]
pub struct Trace {
    origin: Instant,
    spans: Mutex<Vec<Span>>,
    /// (time, governed bytes) samples.
    counter: Mutex<Vec<(f64, u64)>>,
}

impl Default for Trace {
    fn default() -> Self {
        Self::new()
    }
}

impl Trace {
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            spans: Mutex::new(Vec::new()),
            counter: Mutex::new(Vec::new()),
        }
    }

    pub fn span(&self, track: Track, kind: SpanKind, unit: usize, start: Instant, end: Instant) {
        let at = |t: Instant| t.saturating_duration_since(self.origin).as_secs_f64();
        self.spans.lock().expect("trace lock").push(Span {
            track,
            kind,
            unit,
            start_s: at(start),
            end_s: at(end),
        });
    }

    pub fn bytes(&self, used: u64) {
        let t = self.origin.elapsed().as_secs_f64();
        self.counter.lock().expect("trace lock").push((t, used));
    }

    pub fn spans(&self) -> Vec<Span> {
        let mut spans = self.spans.lock().expect("trace lock").clone();
        spans.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
        spans
    }

    pub fn counter(&self) -> Vec<(f64, u64)> {
        self.counter.lock().expect("trace lock").clone()
    }

    /// Chrome trace event JSON (chrome://tracing, ui.perfetto.dev); `unit_names[i]` names unit i.
    pub fn to_chrome_json(&self, unit_names: &[String]) -> Value {
        let mut events = Vec::new();
        let spans = self.spans();
        let mut tracks: Vec<Track> = spans.iter().map(|s| s.track).collect();
        tracks.sort();
        tracks.dedup();
        for t in tracks {
            events.push(json!({"ph": "M", "name": "thread_name", "pid": 1, "tid": t.tid(), "args": {"name": t.name()}}));
        }
        for s in spans {
            let unit = unit_names
                .get(s.unit)
                .cloned()
                .unwrap_or_else(|| s.unit.to_string());
            events.push(json!({
                "ph": "X", "pid": 1, "tid": s.track.tid(), "name": format!("{} {unit}", s.kind.name()),
                "cat": s.kind.name(), "ts": s.start_s * 1e6, "dur": (s.end_s - s.start_s) * 1e6,
                "args": {"unit": unit},
            }));
        }
        for (t, bytes) in self.counter() {
            events.push(json!({"ph": "C", "pid": 1, "name": "governed bytes", "ts": t * 1e6, "args": {"bytes": bytes}}));
        }
        json!({"traceEvents": events, "displayTimeUnit": "ms"})
    }
}
