//! `edgerun sim gemm`: one GEMM of random fixed-point operands on a systolic array, checked
//! against the fixed-point kernel and SCALE-Sim's closed form.

use std::time::Instant;

use anyhow::{ensure, Result};
use clap::Args;
use edgerun_accel::systolic::{closed_form_cycles, simulate, Operands};
use edgerun_accel::{ArrayShape, Dataflow, GemmDims};
use edgerun_tensor::fixed::{matmul_acc, QFormat};
use serde_json::json;

use super::attention::FixedPointArgs;

#[derive(Args)]
pub struct SimGemmArgs {
    /// Array as ROWSxCOLS.
    #[arg(long, default_value = "17x32")]
    pub array: ArrayShape,
    /// os (output stationary), ws (weight stationary) or is (input stationary).
    #[arg(long, default_value = "os")]
    pub dataflow: Dataflow,
    /// Rows of A and of the output.
    #[arg(long)]
    pub m: usize,
    /// Columns of B and of the output.
    #[arg(long)]
    pub n: usize,
    /// The shared dimension.
    #[arg(long)]
    pub k: usize,
    /// Seed of the random operands.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    pub fixed: FixedPointArgs,
    /// Print JSON: cycles, utilization, sram, and the checks.
    #[arg(long)]
    pub json: bool,
}

/// Reproducible operands spread over the format's range.
pub fn random_operands(len: usize, seed: u64) -> Vec<i16> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 48) as i16
        })
        .collect()
}

pub fn run(args: SimGemmArgs) -> Result<()> {
    let dims = GemmDims {
        m: args.m,
        k: args.k,
        n: args.n,
    };
    dims.check_simulation(args.array, args.dataflow)?;
    let fp = args
        .fixed
        .parse(Some(QFormat::new(8, 8)?))?
        .expect("a default format");
    let predicted = closed_form_cycles(args.array, args.dataflow, dims) + 1;
    let pe_cycles = predicted as f64 * args.array.pes() as f64;
    if pe_cycles > 2e9 && !args.json {
        eprintln!(
            "simulating {pe_cycles:.2e} PE-cycles; at ~2.5e8 per second this takes about {:.0} s",
            pe_cycles / 2.5e8
        );
    }
    let a = random_operands(dims.m * dims.k, args.seed);
    let b = random_operands(dims.k * dims.n, args.seed.wrapping_add(1));
    let started = Instant::now();
    let run = simulate(
        args.array,
        args.dataflow,
        &fp,
        &Operands { a: &a, b: &b, dims },
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let expected = matmul_acc(&fp, &a, &b, [dims.m, dims.k, dims.n])?;
    let s = &run.stats;
    let closed = closed_form_cycles(args.array, args.dataflow, dims);
    let report = json!({
        "array": args.array.to_string(),
        "dataflow": args.dataflow.short_name(),
        "m": dims.m, "n": dims.n, "k": dims.k,
        "cycles": s.scale_sim_cycles(),
        "closed_form_cycles": closed,
        "folds": s.folds,
        "utilization": s.utilization(),
        "mac_pe_cycles": s.mac_pe_cycles,
        "idle_pe_cycles": s.idle_pe_cycles,
        "sram": {
            "ifmap_reads": s.sram.ifmap_reads,
            "filter_reads": s.sram.filter_reads,
            "ofmap_reads": s.sram.ofmap_reads,
            "ofmap_writes": s.sram.ofmap_writes,
        },
        "fixed_point": fp.to_string(),
        "matches_kernel": run.output == expected,
        "simulated_seconds": seconds,
        "pe_cycles_per_second": s.pe_cycles() as f64 / seconds.max(1e-9),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} array, {} dataflow, {dims}, {fp}",
            args.array, args.dataflow
        );
        println!(
            "cycles (SCALE-Sim Total Cycles)  {}  (closed form {closed})",
            s.scale_sim_cycles()
        );
        println!(
            "folds {}, utilization {:.1}%",
            s.folds,
            100.0 * s.utilization()
        );
        println!(
            "SRAM reads: ifmap {}, filter {}, ofmap {}; ofmap writes {}",
            s.sram.ifmap_reads, s.sram.filter_reads, s.sram.ofmap_reads, s.sram.ofmap_writes
        );
        println!(
            "output equals the fixed-point kernel: {}",
            run.output == expected
        );
        println!(
            "simulated {:.3e} PE-cycles in {seconds:.3} s ({:.3e} per second, one core)",
            s.pe_cycles() as f64,
            s.pe_cycles() as f64 / seconds.max(1e-9)
        );
    }
    ensure!(
        run.output == expected,
        "the simulated array disagrees with the fixed-point kernel"
    );
    ensure!(
        s.scale_sim_cycles() == closed,
        "simulated cycles differ from the closed form"
    );
    Ok(())
}
