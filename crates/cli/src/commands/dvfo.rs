//! `edgerun dvfo`: DVFO's controller on a modelled board. `calibrate` measures a model's
//! splits and compressions here; `train` fits the DQN over a bandwidth trace; `eval` runs it
//! beside edge-only, cloud-only, Neurosurgeon, an ondemand governor, the oracle held to one
//! knob at a time and the exhaustive oracle; under `--budget` each of them streams a head that
//! does not fit as Hermes would, and the DQN and the oracle also choose how.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use edgerun_dvfo::dqn::{self, DqnOptions};
use edgerun_dvfo::episode::{self, Summary};
use edgerun_dvfo::policy::{
    CloudOnly, EdgeOnly, Knob, Neurosurgeon, Ondemand, OneKnob, Oracle, Policy,
};
use edgerun_dvfo::{ActionSpace, Board, Budget, Calibration, EnvOptions, Environment, Trace};
use edgerun_runtime::{Session, SessionOptions};
use edgerun_serve::Compression;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Subcommand)]
pub enum DvfoCommand {
    /// Measure a model's stages, and every split and compression, on this machine.
    Calibrate(CalibrateArgs),
    /// Train the DQN controller for a board and model over a bandwidth trace.
    Train(TrainArgs),
    /// The DQN (with --policy) beside the baselines and the oracle, on bandwidth traces.
    Eval(EvalArgs),
}

pub fn run(command: DvfoCommand) -> Result<()> {
    match command {
        DvfoCommand::Calibrate(args) => calibrate(args),
        DvfoCommand::Train(args) => train(args),
        DvfoCommand::Eval(args) => eval(args),
    }
}

#[derive(Args)]
pub struct ModelArgs {
    /// A packed store (edgerun pack) to measure.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Inputs to measure on (default for text models: 128 token ids; required for images).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Boundary compressions to measure, none first.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "none,f16,int8,channels=0.5,channels=0.25"
    )]
    pub compress: Vec<Compression>,
    /// Profiling passes (their median).
    #[arg(long, default_value_t = 3, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1000))]
    pub runs: usize,
}

#[derive(Args)]
pub struct CalibrateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Where to write the calibration (JSON).
    #[arg(long)]
    pub output: PathBuf,
}

#[derive(Args)]
pub struct EnvArgs {
    /// The board (TOML; see boards/).
    #[arg(long)]
    pub board: PathBuf,
    /// A calibration: read if it exists, else measured from --model and written here.
    #[arg(long)]
    pub calibration: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Weight of energy in the cost, 0 to 1 (DVFO's eta).
    #[arg(long, default_value_t = 0.5)]
    pub eta: f64,
    /// Offloads whose outputs' least cosine to a local pass falls below this are not offered.
    #[arg(long, default_value_t = 0.99)]
    pub min_cosine: f64,
    /// The link's round trip, ms.
    #[arg(long, default_value_t = 10.0)]
    pub rtt_ms: f64,
    /// How many times faster than this machine the server computes.
    #[arg(long, default_value_t = 1.0)]
    pub server_speedup: f64,
    /// The board's memory budget for the model's weights and activations (e.g. 128MiB): a
    /// head beyond it streams from the board's [storage] with PipeLoad, and the controller
    /// also picks the loaders and read-ahead depth. Default: the model stays resident.
    #[arg(long, value_parser = super::strategy::parse_size)]
    pub budget: Option<u64>,
    /// The most PipeLoad loaders offered under --budget (depths 1, 2 and unbounded each).
    #[arg(long, default_value_t = 3, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=16))]
    pub max_loaders: usize,
}

#[derive(Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub env: EnvArgs,
    /// The bandwidth trace to train over (constant:R, steps:R1,R2,...@N, walk:SEED, file:PATH).
    #[arg(long, default_value = "walk:1")]
    pub trace: String,
    /// Inferences to train over.
    #[arg(long, default_value_t = 20_000)]
    pub steps: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Discount of the Q-learning target (0: each inference's own cost; the action changes no
    /// later cost, so a discount only adds the target network's error).
    #[arg(long, default_value_t = 0.0)]
    pub gamma: f64,
    /// Width of the network's two hidden layers.
    #[arg(long, default_value_t = 128)]
    pub hidden: usize,
    /// Where to write the policy (safetensors).
    #[arg(long)]
    pub output: PathBuf,
}

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub env: EnvArgs,
    /// A policy from `edgerun dvfo train` (without it, the baselines and the oracle only).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Bandwidth traces, one table each.
    #[arg(long = "trace", default_values = ["constant:8", "steps:20,2,0.5,8@50", "walk:2"])]
    pub traces: Vec<String>,
    /// Length of constant and walk traces, inferences.
    #[arg(long, default_value_t = 200)]
    pub len: usize,
    /// Also write every summary as JSON lines here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn bar(template: &str, len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

fn measure(args: &ModelArgs) -> Result<Calibration> {
    let path = args
        .model
        .as_deref()
        .context("give --model (a packed store) to measure, or an existing --calibration")?;
    let source = std::sync::Arc::new(super::open_model(path)?);
    let inputs = super::profile::profiling_inputs(&source, args.input.as_deref())?;
    let session = Session::from_source(source, SessionOptions::default())?;
    let progress = bar("calibrate [{bar:30}] {pos}/{len} tails, eta {eta}", 0);
    let calibration = Calibration::measure(
        &session,
        &inputs,
        &args.compress,
        args.runs,
        |done, total| {
            progress.set_length(total as u64);
            progress.set_position(done as u64);
        },
    )?;
    progress.finish_and_clear();
    Ok(calibration)
}

fn calibrate(args: CalibrateArgs) -> Result<()> {
    let source = args
        .model
        .model
        .as_deref()
        .map(super::open_model)
        .transpose()?;
    super::check_outputs(
        &[("--output", Some(&args.output))],
        &[("--input", args.model.input.as_deref())],
        source.as_ref(),
    )?;
    let calibration = measure(&args.model)?;
    calibration.save(&args.output)?;
    eprintln!(
        "{}: {} stages, {} splits x {} compressions measured on {}; wrote {}",
        calibration.architecture,
        calibration.stages.len(),
        calibration.stages.len().saturating_sub(1),
        calibration.compressions.len(),
        calibration.host,
        args.output.display()
    );
    Ok(())
}

impl EnvArgs {
    /// Paths this command reads, for the output check.
    fn inputs(&self) -> Vec<(&'static str, Option<&Path>)> {
        vec![
            ("--board", Some(self.board.as_path())),
            ("--calibration", self.calibration.as_deref()),
            ("--input", self.model.input.as_deref()),
        ]
    }

    fn environment(&self) -> Result<Environment> {
        let board = Board::load(&self.board)?;
        let calibration = match &self.calibration {
            Some(path) if path.exists() => {
                let c = Calibration::load(path)?;
                if let Some(model) = &self.model.model {
                    let arch = super::open_model(model)?
                        .model()?
                        .architecture()
                        .to_string();
                    if arch != c.architecture {
                        bail!(
                            "{} is a calibration of {}, --model is a {arch}",
                            path.display(),
                            c.architecture
                        );
                    }
                }
                c
            }
            Some(path) => {
                let c = measure(&self.model)?;
                c.save(path)?;
                eprintln!("calibration written to {}", path.display());
                c
            }
            None => measure(&self.model)?,
        };
        if !(self.rtt_ms.is_finite() && self.rtt_ms >= 0.0) {
            bail!("--rtt-ms must be a time in ms, not {}", self.rtt_ms);
        }
        let budget = self
            .budget
            .map(|bytes| Budget::new(bytes, self.max_loaders));
        let space = ActionSpace::with_budget(&board, &calibration, self.min_cosine, budget)?;
        let options = EnvOptions {
            eta: self.eta,
            round_trip_s: self.rtt_ms / 1e3,
            server_speedup: self.server_speedup,
        };
        Ok(Environment::new(board, calibration, space, options)?)
    }
}

fn describe(env: &Environment) {
    if let Some(budget) = &env.space.budget {
        let streamed = env
            .space
            .offloads
            .iter()
            .filter(|o| o.plan.is_some())
            .count();
        let edge = env.local(edgerun_dvfo::Action {
            cpu: env.board.top_cpu(),
            memory: env.board.top_memory(),
            offload: env.edge_only(),
        });
        eprintln!(
            "budget {} bytes: {streamed} offloads stream their head ({} PipeLoad shapes each) from {}; \
             edge only at the top levels, {}: {:.1} ms (predicted by Hermes' planner)",
            budget.bytes,
            budget.plans.len(),
            env.board.storage.as_ref().map_or("storage", |s| s.kind.as_str()),
            env.space
                .plan(env.edge_only())
                .map_or("resident".to_string(), |p| format!("streamed with {p}")),
            edge.local_s * 1e3
        );
    }
    eprintln!(
        "board {} (power modelled from its file), {} on {} stages: {} actions ({} CPU x {} memory levels x {} offloads); \
         board stage times predicted from this machine's ({}) at {:.1} GFLOP/s; server = this machine / {}",
        env.board.name,
        env.calibration.architecture,
        env.space.stages,
        env.space.len(),
        env.space.cpu_levels,
        env.space.memory_levels,
        env.space.offloads.len(),
        env.calibration.host,
        env.calibration.host_flops_per_s() / 1e9,
        env.options.server_speedup
    );
}

fn train(args: TrainArgs) -> Result<()> {
    let mut inputs = args.env.inputs();
    inputs.push(("--model", args.env.model.model.as_deref()));
    super::check_outputs(&[("--output", Some(&args.output))], &inputs, None)?;
    let options = DqnOptions {
        steps: args.steps,
        hidden: args.hidden,
        seed: args.seed,
        gamma: args.gamma,
        ..DqnOptions::default()
    };
    options.check()?;
    let trace = Trace::parse(&args.trace, args.steps)?;
    let env = args.env.environment()?;
    describe(&env);
    let progress = bar(
        "train [{bar:30}] {pos}/{len} inferences, {msg}, eta {eta}",
        args.steps as u64,
    );
    let (policy, report) = dqn::train(&env, &trace, &options, |step, cost| {
        progress.set_position(step as u64);
        progress.set_message(format!("mean cost {cost:.3}"));
    })?;
    progress.finish_and_clear();
    dqn::file::save(&policy, &env, &args.output)?;
    eprintln!(
        "trained {} inferences on {} in {:.1} s (mean cost of the last tenth, exploring: {:.3}); wrote {}",
        report.steps,
        trace.name,
        report.seconds,
        report.final_cost,
        args.output.display()
    );
    Ok(())
}

fn eval(args: EvalArgs) -> Result<()> {
    let mut inputs = args.env.inputs();
    inputs.push(("--policy", args.policy.as_deref()));
    super::check_outputs(&[("--json", args.json.as_deref())], &inputs, None)?;
    let traces = args
        .traces
        .iter()
        .map(|spec| Trace::parse(spec, args.len))
        .collect::<edgerun_dvfo::Result<Vec<_>>>()?;
    let env = args.env.environment()?;
    describe(&env);
    let mut learned = args
        .policy
        .as_deref()
        .map(|p| dqn::file::load(p, &env))
        .transpose()?;
    let mut lines = Vec::new();
    for trace in &traces {
        let mut policies: Vec<Box<dyn Policy>> = vec![
            Box::new(EdgeOnly),
            Box::new(CloudOnly),
            Box::new(Neurosurgeon),
            Box::new(Ondemand),
            Box::new(OneKnob::new(Knob::Levels)),
            Box::new(OneKnob::new(Knob::Offload)),
        ];
        if env.space.budget.is_some() {
            policies.push(Box::new(OneKnob::new(Knob::Shape)));
        }
        let mut summaries: Vec<Summary> = policies
            .iter_mut()
            .map(|p| episode::run(&env, p.as_mut(), trace).1)
            .collect();
        if let Some(policy) = learned.as_mut() {
            summaries.push(episode::run(&env, policy, trace).1);
        }
        summaries.push(episode::run(&env, &mut Oracle::new(&env), trace).1);
        print_table(trace, &summaries);
        for s in &summaries {
            lines.push(serde_json::to_string(&serde_json::json!({
                "board": env.board.name,
                "model": env.calibration.architecture,
                "host": env.calibration.host,
                "eta": env.options.eta,
                "budget_bytes": env.space.budget.as_ref().map(|b| b.bytes),
                "summary": s,
            }))?);
        }
    }
    if let Some(path) = &args.json {
        edgerun_store::write_file(path, lines.join("\n") + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn print_table(trace: &Trace, rows: &[Summary]) {
    let (lo, hi) = trace
        .mbit_per_s
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    println!(
        "\n{} ({} inferences, {lo:.2} to {hi:.2} Mbit/s)",
        trace.name,
        trace.len()
    );
    println!(
        "{:<13} {:>10} {:>9} {:>10} {:>7} {:>8} {:>9} {:>9} {:>9} {:>9}  most chosen",
        "controller",
        "latency ms",
        "p95 ms",
        "energy mJ",
        "cost",
        "regret",
        "vs edge E",
        "vs edge T",
        "cosine",
        "offloaded",
    );
    let oracle = rows
        .iter()
        .find(|r| r.policy == "oracle")
        .map_or(1.0, |r| r.cost);
    let edge = rows.iter().find(|r| r.policy == "edge-only");
    for r in rows {
        let change = |ours: f64, theirs: Option<f64>| match theirs {
            Some(t) if t > 0.0 => format!("{:+.1}%", 100.0 * (ours / t - 1.0)),
            _ => "-".into(),
        };
        println!(
            "{:<13} {:>10.1} {:>9.1} {:>10.1} {:>7.3} {:>7.1}% {:>9} {:>9} {:>9.5} {:>8.0}%  {}",
            r.policy,
            r.latency_ms,
            r.p95_latency_ms,
            r.energy_mj,
            r.cost,
            100.0 * (r.cost / oracle - 1.0),
            change(r.energy_mj, edge.map(|e| e.energy_mj)),
            change(r.latency_ms, edge.map(|e| e.latency_ms)),
            r.cosine,
            100.0 * r.offloaded,
            r.most_chosen
        );
    }
}
