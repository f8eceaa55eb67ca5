//! The order of a mix's steps (round robin) and its predicted timing.
//!
//! The order does not depend on timing: while several models have work, each takes one step
//! per round. That is what lets one reader thread fetch ahead in the same order the compute
//! thread will consume, with no negotiation between them.
//!
//! The prediction replays that order on two resources, the reader and the compute thread, with
//! each step's fitted delays: a read starts when the reader is free and the compute thread has
//! taken the step `depth` places earlier (the prefetch window), and only once the same model's
//! previous step is done if the two would not fit its quota together; a step computes when its
//! read is done and the previous step has run.

use super::residency::ModelPlan;

/// One step of the schedule: model `model`'s step `step` of its pass number `inference`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Turn {
    pub model: usize,
    pub inference: usize,
    pub step: usize,
}

/// Every step of every inference, models taking turns one step at a time.
pub fn round_robin(steps: &[usize], inferences: &[usize]) -> Vec<Turn> {
    let mut turns = Vec::new();
    let mut next = vec![(0usize, 0usize); steps.len()];
    loop {
        let mut any = false;
        for (model, (inference, step)) in next.iter_mut().enumerate() {
            if *inference >= inferences[model] || steps[model] == 0 {
                continue;
            }
            any = true;
            turns.push(Turn {
                model,
                inference: *inference,
                step: *step,
            });
            *step += 1;
            if *step == steps[model] {
                (*inference, *step) = (*inference + 1, 0);
            }
        }
        if !any {
            return turns;
        }
    }
}

/// Whether `turn` reads from disk: every streamed step, and kept steps on the first pass.
pub fn reads(plan: &ModelPlan, turn: &Turn) -> bool {
    !plan.steps[turn.step].kept || turn.inference == 0
}

/// Predicted timing of a schedule.
#[derive(Clone, Debug)]
pub struct Prediction {
    /// Per model, the mean latency of its inferences (first read or compute to last compute).
    pub latency_s: Vec<f64>,
    pub wall_s: f64,
}

/// Replays `turns` on a reader and a compute thread. `depth` 0 reads inline (the compute
/// thread waits for every read); `depth` d lets the reader run up to d steps ahead.
pub fn predict(turns: &[Turn], plans: &[&ModelPlan], depth: usize) -> Prediction {
    let n = turns.len();
    let mut read_start = vec![0.0; n];
    let mut compute_start = vec![0.0; n];
    let mut compute_end = vec![0.0; n];
    let mut reader_free = 0.0f64;
    let mut last_streamed: Vec<Option<usize>> = vec![None; plans.len()];
    for (t, turn) in turns.iter().enumerate() {
        let plan = plans[turn.model];
        let step = &plan.steps[turn.step];
        let previous_end = if t > 0 { compute_end[t - 1] } else { 0.0 };
        let reading = reads(plan, turn);
        let mut start = if depth == 0 {
            previous_end
        } else {
            let window = t.checked_sub(depth).map_or(0.0, |w| compute_start[w]);
            reader_free.max(window)
        };
        if let Some(p) = last_streamed[turn.model].filter(|_| reading && !step.kept) {
            if plan.steps[turns[p].step].resident_bytes + step.resident_bytes > plan.room_bytes {
                start = start.max(compute_end[p]);
            }
        }
        let t_in = if reading { step.t_in_s } else { 0.0 };
        read_start[t] = start;
        reader_free = start + t_in;
        compute_start[t] = previous_end.max(reader_free);
        let t_out = if step.kept { 0.0 } else { step.t_out_s };
        compute_end[t] = compute_start[t] + step.t_ex_s + t_out;
        if !step.kept {
            last_streamed[turn.model] = Some(t);
        }
    }
    let mut total = vec![0.0; plans.len()];
    let mut count = vec![0usize; plans.len()];
    let mut began = vec![0.0; plans.len()];
    for (t, turn) in turns.iter().enumerate() {
        let plan = plans[turn.model];
        if turn.step == 0 {
            began[turn.model] = if reads(plan, turn) {
                read_start[t]
            } else {
                compute_start[t]
            };
        }
        if turn.step + 1 == plan.steps.len() {
            total[turn.model] += compute_end[t] - began[turn.model];
            count[turn.model] += 1;
        }
    }
    Prediction {
        latency_s: total
            .iter()
            .zip(&count)
            .map(|(t, &c)| t / c.max(1) as f64)
            .collect(),
        wall_s: compute_end.last().copied().unwrap_or(0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mix::residency::Step;

    /// Steps `(kept, bytes, t_in, t_ex)`; streamed steps may hold `room` bytes at once.
    fn plan(steps: &[(bool, u64, f64, f64)], room: u64) -> ModelPlan {
        let steps: Vec<Step> = steps
            .iter()
            .enumerate()
            .map(|(i, &(kept, bytes, t_in_s, t_ex_s))| Step {
                units: i..i + 1,
                kept,
                resident_bytes: bytes,
                t_in_s,
                t_ex_s,
                t_out_s: 0.0,
            })
            .collect();
        ModelPlan {
            kept_bytes: steps
                .iter()
                .filter(|s| s.kept)
                .map(|s| s.resident_bytes)
                .sum(),
            window_bytes: 0,
            room_bytes: room,
            predicted_steady_s: 0.0,
            steps,
        }
    }

    #[test]
    fn round_robin_interleaves_until_each_is_done() {
        let turns = round_robin(&[2, 1], &[1, 2]);
        let got: Vec<(usize, usize, usize)> = turns
            .iter()
            .map(|t| (t.model, t.inference, t.step))
            .collect();
        assert_eq!(got, vec![(0, 0, 0), (1, 0, 0), (0, 0, 1), (1, 1, 0)]);
    }

    #[test]
    fn prefetch_hides_reads_behind_the_other_models_compute() {
        // Two models, one streamed step each: read 1 s, compute 1 s.
        let (a, b) = (
            plan(&[(false, 10, 1.0, 1.0)], 10),
            plan(&[(false, 10, 1.0, 1.0)], 10),
        );
        let turns = round_robin(&[1, 1], &[2, 2]);
        let inline = predict(&turns, &[&a, &b], 0);
        assert!((inline.wall_s - 8.0).abs() < 1e-12);
        let ahead = predict(&turns, &[&a, &b], 1);
        // Reads overlap compute: 1 s for the first read, then 4 computes back to back.
        assert!((ahead.wall_s - 5.0).abs() < 1e-12, "{}", ahead.wall_s);
        assert!(ahead.latency_s.iter().all(|&l| (l - 2.0).abs() < 1e-12));
    }

    #[test]
    fn kept_steps_read_once_and_a_tight_quota_serialises_one_model() {
        let steps = [
            (true, 5, 1.0, 1.0),
            (false, 10, 1.0, 1.0),
            (false, 10, 1.0, 1.0),
        ];
        let turns = round_robin(&[3], &[2]);
        // Room for one streamed step: the second cannot be read during the first.
        let tight = predict(&turns, &[&plan(&steps, 10)], 2);
        let roomy = predict(&turns, &[&plan(&steps, 20)], 2);
        // Pass 1: 3 reads + 3 computes, partly overlapped; pass 2 reads the two streamed steps.
        assert!(tight.wall_s > roomy.wall_s);
        assert!((roomy.wall_s - 7.0).abs() < 1e-12, "{}", roomy.wall_s);
    }
}
