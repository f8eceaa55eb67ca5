//! The run as a Chrome trace (a track per PEG), and a checker that every read of another
//! group's result is ordered after it by a handshake.
//!
//! Happens-before is program order within a PEG plus `signal` -> the `wait` that consumed it.
//! The checker gives every instruction a vector clock (the latest position on each PEG known
//! to precede it) and requires, for each value an instruction read, that the producer ended
//! before the reader started and that the producer precedes the reader in happens-before.

use serde_json::{json, Value};

use super::isa::Peg;
use super::machine::Record;

/// Chrome trace events: one complete span per instruction on its PEG's track (`ts` in
/// cycles, shown as microseconds), handshakes as instants.
pub fn chrome_trace(records: &[Record]) -> Value {
    let mut events: Vec<Value> = Peg::ALL
        .iter()
        .map(|p| json!({"ph": "M", "name": "thread_name", "pid": 1, "tid": p.0, "args": {"name": p.name()}}))
        .collect();
    for r in records {
        let args = json!({"instruction": r.index, "reads_from": r.reads_from, "reconfigure_cycles": r.reconfigure_cycles});
        if r.op == "signal" || r.op == "wait" {
            events.push(json!({"ph": "i", "s": "t", "name": r.op, "pid": 1, "tid": r.peg, "ts": r.start, "args": args}));
        } else {
            events.push(json!({"ph": "X", "name": r.op, "pid": 1, "tid": r.peg, "ts": r.start, "dur": r.end - r.start, "args": args}));
        }
    }
    json!({"traceEvents": events, "displayTimeUnit": "ns", "otherData": {"time_unit": "cycles"}})
}

/// The first read not ordered after its producer, if any, as a sentence.
pub fn check(records: &[Record]) -> Result<(), String> {
    let count = records.iter().map(|r| r.index + 1).max().unwrap_or(0);
    let mut by_index: Vec<Option<&Record>> = vec![None; count];
    for r in records {
        by_index[r.index] = Some(r);
    }
    // Position of each instruction within its PEG's order (program order on one PEG).
    let mut position = vec![0usize; count];
    let mut next = [0usize; 4];
    for r in by_index.iter().flatten() {
        position[r.index] = next[r.peg as usize];
        next[r.peg as usize] += 1;
    }
    // Vector clocks in program order: a wait's signal has a smaller index only if it was
    // issued earlier, so process in start-time order instead (signals before waits at a tie).
    let mut order: Vec<&Record> = records.iter().collect();
    order.sort_by_key(|r| (r.start, r.op == "wait", r.index));
    let mut clock: Vec<Option<[i64; 4]>> = vec![None; count];
    let mut last_on_peg: [Option<usize>; 4] = [None; 4];
    // Program order within a PEG is index order; start order agrees with it on one PEG.
    for r in order {
        let p = r.peg as usize;
        let mut vc = match last_on_peg[p] {
            Some(prev) => clock[prev].ok_or("a PEG's previous instruction has no clock")?,
            None => [-1; 4],
        };
        if let Some(signal) = r.consumed_signal {
            let theirs = clock[signal].ok_or_else(|| {
                format!("wait {} consumed signal {} before it ran", r.index, signal)
            })?;
            for i in 0..4 {
                vc[i] = vc[i].max(theirs[i]);
            }
        }
        vc[p] = position[r.index] as i64;
        clock[r.index] = Some(vc);
        last_on_peg[p] = Some(r.index);
    }
    for r in records {
        let vc = clock[r.index].ok_or("instruction without a clock")?;
        for &source in &r.reads_from {
            let producer = by_index[source].ok_or_else(|| {
                format!(
                    "instruction {} read from unknown instruction {source}",
                    r.index
                )
            })?;
            if producer.end > r.start {
                return Err(format!(
                    "instruction {} ({} on {}) starts at cycle {} but reads the result of instruction {} ({}), ready at {}",
                    r.index, r.op, Peg(r.peg).name(), r.start, source, producer.op, producer.end
                ));
            }
            if vc[producer.peg as usize] < position[source] as i64 {
                return Err(format!(
                    "instruction {} ({} on {}) reads the result of instruction {} ({} on {}) with no handshake ordering them",
                    r.index, r.op, Peg(r.peg).name(), source, producer.op, Peg(producer.peg).name()
                ));
            }
        }
    }
    Ok(())
}
