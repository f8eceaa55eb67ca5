//! Logic resources of two design variants of the 4x4 array, to compare the paper's 17.09%
//! saving of a divider-free, exponential-free softmax.
//!
//! Method: count the arithmetic units and registers each variant needs, and price each in
//! LUT-equivalents with the usual FPGA mappings: an n-bit adder or subtractor is n LUTs (one
//! per bit on the carry chain); an n x n array multiplier about n^2 / 2 (partial-product adds
//! in LUT pairs); an n-bit barrel shifter n log2(n) (a 2:1 mux per bit per stage); a register
//! bit is one flip-flop, counted as one; a leading-one detector n LUTs; an n-bit restoring
//! divider n stages of an (n + 8)-bit subtractor; an exponential unit a 256 x 16 table
//! (64 LUT-equivalents as distributed ROM) plus one n x n multiplier and an adder for the
//! linear interpolation. The counts follow the two designs: both have 16 PEs with a 16 x 16
//! multiplier, a 40-bit accumulator adder and a register file; the ARAP softmax adds a barrel
//! shifter per PE and a leading-one detector per group; the conventional one adds an exp unit
//! and a divider per group. Unit costs are estimates, so the result is a ratio, not a synthesis
//! report.

use serde::Serialize;

/// What a variant is built from.
#[derive(Clone, Debug, Serialize)]
pub struct Variant {
    pub name: &'static str,
    pub multipliers: u64,
    pub adders: u64,
    pub register_bits: u64,
    pub shifters: u64,
    pub leading_one_detectors: u64,
    pub dividers: u64,
    pub exp_units: u64,
    /// LUT-equivalents by the costs in the module docs.
    pub luts: u64,
}

const PES: u64 = 16;
const GROUPS: u64 = 4;
const WIDTH: u64 = 16;
const ACC: u64 = 40;
/// Per PE: an 8-entry 16-bit register file, two operand registers, the accumulator.
const REGISTER_BITS_PER_PE: u64 = 8 * WIDTH + 2 * WIDTH + ACC;

fn multiplier() -> u64 {
    WIDTH * WIDTH / 2
}

fn shifter() -> u64 {
    WIDTH * WIDTH.ilog2() as u64
}

fn divider() -> u64 {
    WIDTH * (WIDTH + 8)
}

fn exp_unit() -> u64 {
    64 + multiplier() + WIDTH
}

/// The ARAP design (shift-and-add softmax) and a conventional one (exp unit + divider).
pub fn estimate() -> [Variant; 2] {
    let base_luts = PES * (multiplier() + ACC) + PES * REGISTER_BITS_PER_PE;
    let arap = Variant {
        name: "ARAP: shift-and-add softmax",
        multipliers: PES,
        adders: PES,
        register_bits: PES * REGISTER_BITS_PER_PE,
        shifters: PES,
        leading_one_detectors: GROUPS,
        dividers: 0,
        exp_units: 0,
        luts: base_luts + PES * shifter() + GROUPS * WIDTH,
    };
    let conventional = Variant {
        name: "conventional: exp unit + divider per group",
        multipliers: PES,
        adders: PES,
        register_bits: PES * REGISTER_BITS_PER_PE,
        shifters: 0,
        leading_one_detectors: 0,
        dividers: GROUPS,
        exp_units: GROUPS,
        luts: base_luts + GROUPS * (divider() + exp_unit()),
    };
    [arap, conventional]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_divider_free_design_is_smaller() {
        let [arap, conventional] = estimate();
        assert!(arap.luts < conventional.luts);
        assert_eq!(arap.dividers + arap.exp_units, 0);
    }
}
