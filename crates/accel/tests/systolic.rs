//! The cycle-level array against its two oracles: SCALE-Sim's closed forms (cycles and SRAM
//! counts) and `edgerun_tensor::fixed::matmul_acc` (every accumulator, bit for bit).

use edgerun_accel::systolic::{
    closed_form_cycles, closed_form_sram, closed_form_stats, simulate, Operands,
};
use edgerun_accel::{ArrayShape, Dataflow, GemmDims};
use edgerun_tensor::fixed::{matmul_acc, AccumulatorBits, FixedPoint};
use proptest::prelude::*;

fn operands(dims: GemmDims, seed: u64) -> (Vec<i16>, Vec<i16>) {
    // A small LCG is enough to fill operands reproducibly, including extremes.
    let mut state = seed | 1;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 48) as i16
    };
    let a = (0..dims.m * dims.k).map(|_| next()).collect();
    let b = (0..dims.k * dims.n).map(|_| next()).collect();
    (a, b)
}

fn check(shape: ArrayShape, dataflow: Dataflow, dims: GemmDims, fp: &FixedPoint, seed: u64) {
    let (a, b) = operands(dims, seed);
    let run = simulate(shape, dataflow, fp, &Operands { a: &a, b: &b, dims }).unwrap();
    let label = format!("{shape} {dataflow} {dims}");
    assert_eq!(
        run.stats.scale_sim_cycles(),
        closed_form_cycles(shape, dataflow, dims),
        "{label}"
    );
    assert_eq!(
        run.stats.sram,
        closed_form_sram(shape, dataflow, dims),
        "{label}"
    );
    assert_eq!(run.stats.mac_pe_cycles, dims.macs(), "{label}");
    assert_eq!(
        run.stats,
        closed_form_stats(shape, dataflow, dims),
        "{label}"
    );
    assert_eq!(
        run.output,
        matmul_acc(fp, &a, &b, [dims.m, dims.k, dims.n]).unwrap(),
        "{label}"
    );
}

#[test]
fn published_small_example_on_the_samm_array() {
    let shape = ArrayShape::new(17, 32).unwrap();
    let dims = GemmDims {
        m: 17,
        n: 32,
        k: 32,
    };
    let fp = FixedPoint::q8_8();
    for (dataflow, cycles) in [
        (Dataflow::OutputStationary, 78),
        (Dataflow::WeightStationary, 161),
        (Dataflow::InputStationary, 191),
    ] {
        check(shape, dataflow, dims, &fp, 7);
        let (a, b) = operands(dims, 7);
        let run = simulate(shape, dataflow, &fp, &Operands { a: &a, b: &b, dims }).unwrap();
        assert_eq!(run.stats.scale_sim_cycles(), cycles);
    }
}

#[test]
fn published_vit_base_example_in_output_stationary() {
    // 197x768x768 on 17x32 is 1.3e8 PE-cycles: one dataflow keeps the test quick.
    let shape = ArrayShape::new(17, 32).unwrap();
    let dims = GemmDims {
        m: 197,
        n: 768,
        k: 768,
    };
    check(
        shape,
        Dataflow::OutputStationary,
        dims,
        &FixedPoint::q8_8(),
        3,
    );
}

#[test]
fn mismatched_operands_are_an_error() {
    let shape = ArrayShape::new(2, 2).unwrap();
    let dims = GemmDims { m: 2, n: 2, k: 2 };
    let fp = FixedPoint::q8_8();
    let ops = Operands {
        a: &[0; 3],
        b: &[0; 4],
        dims,
    };
    assert!(simulate(shape, Dataflow::OutputStationary, &fp, &ops).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Any array, any dataflow, any GEMM (edges that do not fill a fold included), both
    /// accumulator widths (32 bits saturates often with these operands).
    #[test]
    fn simulator_equals_closed_form_and_kernel(
        rows in 1usize..9, cols in 1usize..9,
        m in 1usize..24, k in 1usize..24, n in 1usize..24,
        dataflow in 0usize..3, wide in any::<bool>(), seed in any::<u64>(),
    ) {
        let mut fp = FixedPoint::q8_8();
        fp.accumulator = if wide { AccumulatorBits::B40 } else { AccumulatorBits::B32 };
        let shape = ArrayShape::new(rows, cols).unwrap();
        check(shape, Dataflow::ALL[dataflow], GemmDims { m, k, n }, &fp, seed);
    }
}
