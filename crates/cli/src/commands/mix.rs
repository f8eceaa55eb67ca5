//! `edgerun mix SCENARIO.toml`: several models under one memory cap, SwapNet's way -- quotas
//! by importance, within each quota units kept resident and the rest streamed in blocks,
//! round-robin swap-in / execute / swap-out with a reader thread reading ahead.
//! The scenario's format: `edgerun_runtime::mix::scenario`. Store, input and profile paths
//! are relative to the scenario file, or under `--models` where they start with `$MODELS/`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use edgerun_runtime::delay::fit_profiles;
use edgerun_runtime::human_bytes;
use edgerun_runtime::mix::{run_mix, run_mix_mapped, MixEvent, MixModel, MixOptions, Scenario};
use edgerun_runtime::profile::profile;
use edgerun_store::{ModelSource, ReadOptions};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::json;

use super::profile::{load_profile, profiling_inputs};
use clap::ValueEnum;
use edgerun_runtime::Strategy;

use super::strategy::parse_size;

#[derive(Args)]
pub struct MixArgs {
    /// The scenario (TOML: budget, inferences, io, and [[model]] tables).
    pub scenario: PathBuf,
    /// What `$MODELS` stands for in store paths (default: $MODELS, else /tmp/bench-models).
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// Override the scenario's budget, e.g. 900MiB.
    #[arg(long, value_parser = parse_size)]
    pub budget: Option<u64>,
    /// Write the summary as JSON here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write a Chrome/Perfetto trace (a track per model) here.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// `swap` (SwapNet) or `mmap`: every model mapped whole, one inference per turn, the page
    /// cache deciding what stays -- the baseline to run inside a memory cgroup of the same cap.
    #[arg(long, default_value = "swap", value_parser = mix_strategy)]
    pub strategy: Strategy,
    /// Steps the reader thread may read ahead of compute (admitted by the budget governor);
    /// 0 reads each block when its turn comes.
    #[arg(long, default_value_t = 2, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=1_000_000))]
    pub prefetch: usize,
    /// Stream every unit on every pass, as SwapNet does, instead of keeping what the quota
    /// allows resident between inferences.
    #[arg(long)]
    pub no_keep: bool,
    /// Profile every model without a `profile` first (one pass each) and predict with delay
    /// models fitted on it; otherwise blocks are sized to minimise reads.
    #[arg(long)]
    pub profile: bool,
}

pub fn run(args: MixArgs) -> Result<()> {
    let text = edgerun_store::read_metadata(&args.scenario, "scenario")
        .with_context(|| format!("cannot read {}", args.scenario.display()))?;
    let scenario = Scenario::parse(&text)
        .with_context(|| format!("{} is not a valid scenario", args.scenario.display()))?;
    let base = args
        .scenario
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let models_dir = args
        .models
        .clone()
        .or_else(|| std::env::var_os("MODELS").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/tmp/bench-models"));
    let resolve = |p: &str| match p.strip_prefix("$MODELS/") {
        Some(rest) => models_dir.join(rest),
        None => base.join(p),
    };
    let cap = args.budget.unwrap_or(scenario.budget);
    let io = scenario.io;
    let sources: Vec<ModelSource> = scenario
        .models
        .iter()
        .map(|m| super::open_model(&resolve(&m.store)))
        .collect::<Result<_>>()?;
    let outputs = [
        ("--report", args.report.as_deref()),
        ("--trace", args.trace.as_deref()),
    ];
    let read: Vec<(String, Option<PathBuf>)> = scenario
        .models
        .iter()
        .flat_map(|m| {
            [
                (
                    format!("{}'s input", m.name),
                    m.input.as_deref().map(resolve),
                ),
                (
                    format!("{}'s profile", m.name),
                    m.profile.as_deref().map(resolve),
                ),
            ]
        })
        .chain([("the scenario".to_string(), Some(args.scenario.clone()))])
        .collect();
    let read: Vec<(&str, Option<&Path>)> = read
        .iter()
        .map(|(flag, path)| (flag.as_str(), path.as_deref()))
        .collect();
    for source in &sources {
        super::check_outputs(&outputs, &read, Some(source))?;
    }
    let mut models = Vec::new();
    for (m, source) in scenario.models.iter().zip(&sources) {
        let inputs = profiling_inputs(source, m.input.as_deref().map(resolve).as_deref())
            .with_context(|| format!("model {}", m.name))?;
        let beside = PathBuf::from(format!("{}.profile.json", resolve(&m.store).display()));
        let profile = match &m.profile {
            Some(p) => Some(load_profile(&resolve(p), Some(source.model()?.as_ref()))?),
            None if beside.exists() => Some(load_profile(&beside, Some(source.model()?.as_ref()))?),
            None if args.profile => {
                eprintln!("profiling {}", m.name);
                Some(profile(source, inputs.clone(), 1)?)
            }
            None => None,
        };
        let delays = match profile {
            Some(profile) => {
                let flops = profile.units.iter().map(|u| u.flops).collect();
                Some((fit_profiles(std::slice::from_ref(&profile))?, flops))
            }
            None => None,
        };
        models.push(MixModel {
            name: m.name.clone(),
            source,
            inputs,
            importance: m.importance,
            inferences: m.inferences,
            delays,
        });
    }
    let weights: u64 = sources.iter().map(ModelSource::weight_bytes).sum();
    eprintln!(
        "{} model{}, {} of weights under a cap of {} (overcommit {:.2}x)",
        models.len(),
        if models.len() == 1 { "" } else { "s" },
        human_bytes(weights),
        human_bytes(cap),
        weights as f64 / cap as f64
    );

    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:>16} {bar:30} {pos}/{len} blocks {msg}")
        .expect("a valid template");
    let progress: Vec<ProgressBar> = models
        .iter()
        .map(|m| {
            let bar = bars.add(
                ProgressBar::new(0)
                    .with_style(style.clone())
                    .with_prefix(m.name.clone()),
            );
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        })
        .collect();
    let mut trace_events = Vec::new();
    let read = ReadOptions { io, verify: true };
    let mapped = args.strategy == Strategy::Mmap;
    let reader_track = models.len();
    let mut on_event = |event: &MixEvent| match event {
        MixEvent::Step {
            model,
            inference,
            block,
            blocks,
            kept,
            read,
            start_s,
            wait_s,
            execute_s,
            swap_out_s,
        } => {
            let bar = &progress[*model];
            bar.set_length((*blocks * models[*model].inferences) as u64);
            bar.set_position((*inference * blocks + block + 1) as u64);
            let args = json!({"block": block, "inference": inference, "kept": kept});
            let span = |tid: usize, name: &str, start: f64, dur: f64, args: &serde_json::Value| {
                json!({"ph": "X", "pid": 1, "tid": tid, "name": name, "ts": start * 1e6,
                    "dur": dur * 1e6, "args": args})
            };
            if let Some(read) = read {
                let mut read_args = args.clone();
                read_args["bytes"] = json!(read.bytes);
                let name = format!("read {}", models[*model].name);
                trace_events.push(span(
                    reader_track,
                    &name,
                    read.start_s,
                    read.seconds,
                    &read_args,
                ));
            }
            if *wait_s > 0.0 {
                trace_events.push(span(*model, "wait", start_s - wait_s, *wait_s, &args));
            }
            trace_events.push(span(*model, "execute", *start_s, *execute_s, &args));
            trace_events.push(span(
                *model,
                "swap-out",
                start_s + execute_s,
                *swap_out_s,
                &args,
            ));
        }
        MixEvent::Done {
            model,
            inference,
            latency_s,
        } => {
            if mapped {
                progress[*model].set_length(models[*model].inferences as u64);
                progress[*model].set_position(*inference as u64 + 1);
            }
            progress[*model].set_message(format!(
                "inference {} in {:.3} s",
                inference + 1,
                latency_s
            ));
        }
    };
    let report = if mapped {
        run_mix_mapped(&models, &mut on_event)?
    } else {
        let options = MixOptions {
            read,
            prefetch: args.prefetch,
            keep: !args.no_keep,
        };
        run_mix(&models, cap, options, &mut on_event)?
    };
    for bar in &progress {
        bar.finish();
    }

    let mut out = std::io::stdout().lock();
    if mapped {
        let memory = edgerun_runtime::MemorySample::now();
        writeln!(
            out,
            "mmap, no cap inside the process (use a memory cgroup); VmHWM {}, wall {:.3} s",
            human_bytes(memory.vm_hwm_bytes),
            report.wall_s
        )?;
    } else {
        writeln!(
            out,
            "cap {}, peak {}, wall {:.3} s (predicted {:.3} s)",
            human_bytes(report.cap_bytes),
            human_bytes(report.peak_bytes),
            report.wall_s,
            report.predicted_wall_s
        )?;
    }
    if mapped {
        writeln!(out, "{:<16} {:>6} {:>12}", "model", "runs", "latency s")?;
    } else {
        writeln!(
            out,
            "{:<16} {:>10} {:>10} {:>10} {:>6} {:>6} {:>10} {:>10} {:>10}",
            "model",
            "quota",
            "kept",
            "streamed",
            "steps",
            "runs",
            "latency s",
            "predicted",
            "alone"
        )?;
    }
    for m in &report.models {
        let mean = m.latencies_s.iter().sum::<f64>() / m.latencies_s.len().max(1) as f64;
        if mapped {
            writeln!(
                out,
                "{:<16} {:>6} {:>12.3}",
                m.name,
                m.latencies_s.len(),
                mean
            )?;
            continue;
        }
        writeln!(
            out,
            "{:<16} {:>10} {:>10} {:>10} {:>6} {:>6} {:>10.3} {:>10.3} {:>10.3}",
            m.name,
            human_bytes(m.quota_bytes),
            human_bytes(m.kept_bytes),
            human_bytes(m.streamed_bytes),
            m.blocks,
            m.latencies_s.len(),
            mean,
            m.predicted_latency_s,
            m.predicted_alone_s
        )?;
    }
    if let Some(path) = &args.trace {
        let names: Vec<_> = models
            .iter()
            .enumerate()
            .map(|(i, m)| json!({"ph": "M", "name": "thread_name", "pid": 1, "tid": i, "args": {"name": m.name}}))
            .chain(std::iter::once(json!({"ph": "M", "name": "thread_name", "pid": 1, "tid": models.len(), "args": {"name": "reader"}})))
            .collect();
        let all: Vec<_> = names.into_iter().chain(trace_events).collect();
        edgerun_store::write_file(path, serde_json::to_vec(&json!({"traceEvents": all}))?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.report {
        let value = json!({
            "strategy": args.strategy.name(),
            "vm_hwm_bytes": edgerun_runtime::MemorySample::now().vm_hwm_bytes,
            "cap_bytes": report.cap_bytes,
            "scratch_bytes": report.scratch_bytes,
            "peak_bytes": report.peak_bytes,
            "weight_bytes": weights,
            "overcommit": weights as f64 / cap as f64,
            "wall_s": report.wall_s,
            "predicted_wall_s": report.predicted_wall_s,
            "prefetch": args.prefetch,
            "keep": !args.no_keep,
            "models": report.models,
        });
        edgerun_store::write_file(path, serde_json::to_string_pretty(&value)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// The strategies a mix runs: SwapNet's, or every model mapped whole.
fn mix_strategy(text: &str) -> Result<Strategy, String> {
    match Strategy::from_str(text, true)? {
        strategy @ (Strategy::Swap | Strategy::Mmap) => Ok(strategy),
        other => Err(format!("a mix runs swap or mmap, not {}", other.name())),
    }
}
