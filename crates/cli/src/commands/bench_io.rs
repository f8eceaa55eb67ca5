//! `edgerun bench-io`: cold sequential read throughput of the disk under a file.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use edgerun_store::throughput::measure;

use super::strategy::parse_size;

#[derive(Args)]
pub struct BenchIoArgs {
    /// A large file on the disk to measure (a packed store's weights.bin, say).
    pub file: PathBuf,
    /// Bytes per read (a multiple of 4096).
    #[arg(long, default_value = "4MiB", value_parser = parse_size)]
    pub block: u64,
    /// Runs per mode; the median is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1000))]
    pub runs: usize,
}

pub fn run(args: BenchIoArgs) -> Result<()> {
    if !args.block.is_multiple_of(4096) || args.block > 1 << 30 {
        bail!(
            "--block must be a multiple of 4096 bytes and at most 1 GiB, got {}",
            args.block
        );
    }
    let mut lines = vec![format!("mode      GB/s (median of {})  runs", args.runs)];
    for (name, direct) in [("buffered", false), ("o_direct", true)] {
        let mut rates = Vec::new();
        let mut fell_back = false;
        for _ in 0..args.runs {
            let t = measure(&args.file, direct, args.block as usize)?;
            fell_back |= direct && !t.direct;
            rates.push(t.gb_per_s());
        }
        let runs: Vec<String> = rates.iter().map(|r| format!("{r:.2}")).collect();
        rates.sort_by(f64::total_cmp);
        let note = if fell_back {
            "  (O_DIRECT refused by this filesystem: buffered)"
        } else {
            ""
        };
        lines.push(format!(
            "{name:<9} {:>6.2}              {}{note}",
            rates[rates.len() / 2],
            runs.join(" ")
        ));
    }
    // Printed once measured, so that a refused file leaves only the error.
    println!("{}", lines.join("\n"));
    Ok(())
}
