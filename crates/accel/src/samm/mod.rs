//! The ViTALiTy SAMM accelerator (survey 1.4): three systolic arrays, a column accumulator and
//! a divider stage computing first-order Taylor attention in 16-bit fixed point, and the
//! controller that sequences a whole ViT on it ([`controller`]).
//!
//! Per head (`fixed::taylor` defines the arithmetic, which this datapath reproduces bit for
//! bit): the column accumulator mean-centres K and sums K^ and V; the 16x32 array computes
//! `G' = K^^T V` while the 17x1 array computes `Q k_sum'`; then the 17x32 array computes
//! `Q G'`; the divider stage forms `Z`. The arrays are simulated cycle by cycle.

pub mod controller;

use std::sync::Mutex;

use edgerun_tensor::fixed::taylor::{column_accumulate, divide, narrow_key_value};
use edgerun_tensor::fixed::{transpose, FixedPoint, HeadOperands, TaylorEngine};
use edgerun_tensor::kernels::Centre;
use edgerun_tensor::TensorError;
use serde::Serialize;

use crate::systolic::{simulate, GemmStats, Operands};
use crate::{ArrayShape, Dataflow, GemmDims};

pub use controller::{SammReport, StageCycles, VitWorkload};

/// Everything that defines one SAMM instance.
#[derive(Clone, Debug)]
pub struct SammConfig {
    /// Computes `Q G'` (and, in the controller, every projection and MLP GEMM).
    pub qg_array: ArrayShape,
    /// Computes `G' = K^^T V`.
    pub kv_array: ArrayShape,
    /// Computes `Q k_sum'`.
    pub qk_array: ArrayShape,
    pub dataflow: Dataflow,
    pub fixed_point: FixedPoint,
    /// Lanes of the column accumulator and of the vector unit (norms, GELU, residuals).
    pub vector_lanes: usize,
    /// Pipelined dividers of the divider stage, one result each per cycle.
    pub dividers: usize,
    /// On-chip buffer size, for the SRAM energy per access.
    pub sram_bytes: u64,
}

impl Default for SammConfig {
    /// The paper's arrays (17x32, 16x32, 17x1), output stationary, Q8.8 with 40-bit
    /// accumulators, 32 lanes and 32 dividers (one per array column), a 64 KiB buffer.
    fn default() -> Self {
        Self {
            qg_array: ArrayShape { rows: 17, cols: 32 },
            kv_array: ArrayShape { rows: 16, cols: 32 },
            qk_array: ArrayShape { rows: 17, cols: 1 },
            dataflow: Dataflow::OutputStationary,
            fixed_point: FixedPoint::q8_8(),
            vector_lanes: 32,
            dividers: 32,
            sram_bytes: 64 << 10,
        }
    }
}

/// One head's cycles by unit, and on the critical path.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct HeadCycles {
    pub column_accumulator: u64,
    pub kv_array: u64,
    pub qk_array: u64,
    pub qg_array: u64,
    pub divider: u64,
    /// accumulator + max(kv, qk) + qg + divider: the stages that depend on each other.
    pub critical_path: u64,
}

/// What the datapath did over all heads.
#[derive(Clone, Debug, Default)]
pub struct SammLedger {
    /// In completion order; the heads of one layer finish before the next layer's begin.
    pub heads: Vec<HeadCycles>,
    pub qg: GemmStats,
    pub kv: GemmStats,
    pub qk: GemmStats,
    pub accumulator_adds: u64,
    pub divisions: u64,
}

/// The SAMM as a [`TaylorEngine`]: attention heads run on the simulated datapath.
#[derive(Debug)]
pub struct SammEngine {
    pub config: SammConfig,
    ledger: Mutex<SammLedger>,
}

impl SammEngine {
    pub fn new(config: SammConfig) -> Self {
        Self {
            config,
            ledger: Mutex::new(SammLedger::default()),
        }
    }

    pub fn ledger(&self) -> SammLedger {
        self.ledger.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn gemm(
        &self,
        shape: ArrayShape,
        fp: &FixedPoint,
        a: &[i16],
        b: &[i16],
        dims: GemmDims,
    ) -> Result<(Vec<i64>, GemmStats), TensorError> {
        let run = simulate(shape, self.config.dataflow, fp, &Operands { a, b, dims })
            .map_err(|e| TensorError::Unsupported(format!("SAMM array {shape}: {e}")))?;
        Ok((run.output, run.stats))
    }
}

impl TaylorEngine for SammEngine {
    fn taylor_head(
        &self,
        fp: &FixedPoint,
        head: &HeadOperands,
        centre: Centre,
        c: f32,
    ) -> Result<Vec<i16>, TensorError> {
        let (nq, n, d) = (head.queries, head.keys, head.dim);
        let cfg = &self.config;
        let lanes = cfg.vector_lanes.max(1) as u64;
        let dividers = cfg.dividers.max(1) as u64;
        let (n64, d64, nq64) = (n as u64, d as u64, nq as u64);

        let sums = column_accumulate(fp, head, centre);
        // Token centring: K and V rows stream through the lanes to sum, the d column means go
        // through the dividers, K rows stream again to subtract and sum K^. Feature centring:
        // each row is summed, divided, subtracted and the columns summed.
        let (accumulator_cycles, accumulator_adds, accumulator_divisions) = match centre {
            Centre::Tokens => (
                n64 * (2 * d64).div_ceil(lanes)
                    + d64.div_ceil(dividers)
                    + n64 * d64.div_ceil(lanes),
                4 * n64 * d64,
                d64,
            ),
            Centre::Features => (
                n64 * (3 * d64).div_ceil(lanes)
                    + n64.div_ceil(dividers)
                    + n64 * d64.div_ceil(lanes),
                4 * n64 * d64,
                n64,
            ),
        };

        let k_hat_t = transpose(&sums.k_hat, n, d);
        let (g_acc, kv) = self.gemm(
            cfg.kv_array,
            fp,
            &k_hat_t,
            head.v,
            GemmDims { m: d, k: n, n: d },
        )?;
        let g = narrow_key_value(fp, &sums, &g_acc);
        let (qk_acc, qk) = self.gemm(
            cfg.qk_array,
            fp,
            head.q,
            &sums.k_sum,
            GemmDims { m: nq, k: d, n: 1 },
        )?;
        let (qg_acc, qg) =
            self.gemm(cfg.qg_array, fp, head.q, &g, GemmDims { m: nq, k: d, n: d })?;
        let z = divide(fp, &sums, [&qg_acc, &qk_acc], n, c);

        let divider = (nq64 * d64).div_ceil(dividers);
        let cycles = HeadCycles {
            column_accumulator: accumulator_cycles,
            kv_array: kv.busy_cycles,
            qk_array: qk.busy_cycles,
            qg_array: qg.busy_cycles,
            divider,
            critical_path: accumulator_cycles
                + kv.busy_cycles.max(qk.busy_cycles)
                + qg.busy_cycles
                + divider,
        };
        let mut ledger = self.ledger.lock().map_err(|_| {
            TensorError::Unsupported("SAMM ledger poisoned by a failed head".into())
        })?;
        ledger.heads.push(cycles);
        ledger.kv.add(&kv);
        ledger.qk.add(&qk);
        ledger.qg.add(&qg);
        // Numerator and denominator adds of the divider stage count with the accumulator's.
        ledger.accumulator_adds += accumulator_adds + nq64 * d64 + nq64;
        ledger.divisions += accumulator_divisions + nq64 * d64;
        Ok(z)
    }
}
