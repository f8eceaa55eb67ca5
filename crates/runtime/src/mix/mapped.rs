//! The baseline a user gets without SwapNet: every model mapped whole (`mmap`, the page cache
//! decides what stays), taking turns one inference at a time. Under a memory cgroup of the
//! same cap the kernel evicts and re-reads pages instead of the runtime swapping blocks.
//! Latency per inference is its own pass; quotas, blocks and predictions do not apply.

use std::time::Instant;

use edgerun_models::RunOptions;
use edgerun_store::ReadOptions;

use super::{MixEvent, MixModel, MixReport, ModelReport};
use crate::{Governor, Outputs, Result};

pub fn run_mix_mapped(
    models: &[MixModel],
    on_event: &mut dyn FnMut(&MixEvent),
) -> Result<MixReport> {
    super::check_models(models)?;
    let read = ReadOptions {
        io: edgerun_store::packed::IoMode::Mmap,
        verify: false,
    };
    let executors = models
        .iter()
        .map(|m| crate::FullExecutor::load_with(m.source, read, Governor::new(u64::MAX)))
        .collect::<Result<Vec<_>>>()?;
    let started = Instant::now();
    let mut latencies = vec![Vec::new(); models.len()];
    let mut outputs: Vec<Outputs> = (0..models.len()).map(|_| Outputs::default()).collect();
    let rounds = models.iter().map(|m| m.inferences).max().unwrap_or(0);
    for round in 0..rounds {
        for (index, (executor, m)) in executors.iter().zip(models).enumerate() {
            if round >= m.inferences {
                continue;
            }
            let began = Instant::now();
            outputs[index] =
                crate::Executor::forward(executor, m.inputs.clone(), RunOptions::default())?;
            let latency_s = began.elapsed().as_secs_f64();
            latencies[index].push(latency_s);
            on_event(&MixEvent::Done {
                model: index,
                inference: round,
                latency_s,
            });
        }
    }
    let reports = models
        .iter()
        .enumerate()
        .map(|(i, m)| ModelReport {
            name: m.name.clone(),
            quota_bytes: 0,
            reserve_bytes: 0,
            blocks: 1,
            kept_bytes: 0,
            streamed_bytes: 0,
            read_bytes: 0,
            latencies_s: latencies[i].clone(),
            service_s: latencies[i].clone(),
            predicted_latency_s: f64::NAN,
            predicted_alone_s: f64::NAN,
            copied_bytes: 0,
        })
        .collect();
    Ok(MixReport {
        models: reports,
        cap_bytes: u64::MAX,
        scratch_bytes: 0,
        peak_bytes: 0,
        wall_s: started.elapsed().as_secs_f64(),
        predicted_wall_s: f64::NAN,
        outputs,
    })
}
