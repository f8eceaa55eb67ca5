//! Energy = per-action cost x event count, in one place (as Accelergy does it).
//!
//! Costs are given at 45 nm and 0.9 V and scaled to other nodes by E ~ C V^2 with C ~ feature
//! size. Each default says where it comes from; the ones no paper gives us are marked as
//! assumptions and are fields a user can change.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::{AccelError, Result};

/// A CMOS process node with its nominal supply and the clock the design meets there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Node {
    Nm45,
    Nm65,
    Nm90,
    Nm180,
}

impl Node {
    pub fn feature_nm(self) -> f64 {
        match self {
            Self::Nm45 => 45.0,
            Self::Nm65 => 65.0,
            Self::Nm90 => 90.0,
            Self::Nm180 => 180.0,
        }
    }

    /// Nominal core supply: 0.9 V at 45 nm is Horowitz's (ISSCC 2014); 1.0, 1.2 and 1.8 V are
    /// the usual core voltages of the 65, 90 and 180 nm generations.
    pub fn vdd(self) -> f64 {
        match self {
            Self::Nm45 => 0.9,
            Self::Nm65 => 1.0,
            Self::Nm90 => 1.2,
            Self::Nm180 => 1.8,
        }
    }

    /// 100 MHz at 180 nm and 250 MHz at 90 nm are the paper's (survey 1.5); 65 and 45 nm
    /// extrapolate the same two points as f ~ L^-1.32.
    pub fn clock_hz(self) -> f64 {
        let exponent = (250.0f64 / 100.0).ln() / (180.0f64 / 90.0).ln();
        100e6 * (180.0 / self.feature_nm()).powf(exponent)
    }

    /// Energy relative to 45 nm: C V^2 with C proportional to feature size.
    pub fn energy_scale(self) -> f64 {
        (self.feature_nm() / 45.0) * (self.vdd() / 0.9).powi(2)
    }
}

impl FromStr for Node {
    type Err = AccelError;

    fn from_str(text: &str) -> Result<Self> {
        match text.trim_end_matches("nm") {
            "45" => Ok(Self::Nm45),
            "65" => Ok(Self::Nm65),
            "90" => Ok(Self::Nm90),
            "180" => Ok(Self::Nm180),
            other => Err(AccelError::Config(format!(
                "process node `{other}`: choose 45, 65, 90 or 180 (nm)"
            ))),
        }
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} nm", self.feature_nm())
    }
}

/// Per-action energies in pJ at one node.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct EnergyTable {
    pub node: Node,
    /// 16-bit multiply + 40-bit accumulate. Horowitz 45 nm: 8-bit mult 0.2 pJ, 32-bit 3.1 pJ,
    /// i.e. ~bits^2, so 16-bit 0.8 pJ; 32-bit add 0.1 pJ, so 40-bit 0.125 pJ.
    pub mac_pj: f64,
    /// An adder of the column accumulator (40-bit): 0.125 pJ as above.
    pub add_pj: f64,
    /// One division of the divider stage. Assumption: a restoring divider does one 40-bit
    /// subtract-and-shift per quotient bit, 16 bits x 0.125 pJ = 2 pJ.
    pub divide_pj: f64,
    /// Writing a 16-bit pipeline register. Assumption: a flip-flop bit costs about one adder
    /// bit (0.1 pJ / 32), so 16 bits ~ 0.05 pJ.
    pub register_write_pj: f64,
    /// A PE clocked through a cycle without work (no clock gating). Assumption: 30% of an
    /// active MAC -- register clocking and clock tree, the low end of the 30-50% clock share
    /// usually reported for synthesised logic.
    pub idle_clocked_pj: f64,
    /// A clock-gated PE's cycle. Assumption: 2% of a MAC (gating cell, enable logic).
    pub gated_pj: f64,
    /// DRAM per 16-bit word. Horowitz: 1.3-2.6 nJ per 64 bits; midpoint 2 nJ / 4.
    pub dram_word_pj: f64,
}

impl EnergyTable {
    pub fn at(node: Node) -> Self {
        let s = node.energy_scale();
        let mac = 0.8 + 0.125;
        Self {
            node,
            mac_pj: mac * s,
            add_pj: 0.125 * s,
            divide_pj: 16.0 * 0.125 * s,
            register_write_pj: 0.05 * s,
            idle_clocked_pj: 0.3 * mac * s,
            gated_pj: 0.02 * mac * s,
            // DRAM interface energy is dominated by I/O, not the logic node: left unscaled.
            dram_word_pj: 2000.0 / 4.0,
        }
    }

    /// One 16-bit SRAM access in a buffer of `bytes`. Horowitz 45 nm, per 64 bits: 8 KB 10 pJ,
    /// 32 KB 20 pJ, 1 MB 100 pJ; linear in log2(size) between (and beyond) those points, and a
    /// quarter of that for 16 bits.
    pub fn sram_word_pj(&self, bytes: u64) -> f64 {
        let points = [(13.0, 10.0), (15.0, 20.0), (20.0, 100.0)];
        let x = (bytes.max(1) as f64).log2();
        let (lo, hi) = if x <= points[1].0 {
            (points[0], points[1])
        } else {
            (points[1], points[2])
        };
        let per_64 = lo.1 + (x - lo.0) * (hi.1 - lo.1) / (hi.0 - lo.0);
        per_64.max(1.0) / 4.0 * self.node.energy_scale()
    }
}

/// Events to price.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Activity {
    pub mac_pe_cycles: u64,
    pub idle_pe_cycles: u64,
    pub register_writes: u64,
    pub adds: u64,
    pub divisions: u64,
    pub sram_words: u64,
    pub dram_words: u64,
}

impl Activity {
    pub fn add(&mut self, other: &Activity) {
        self.mac_pe_cycles += other.mac_pe_cycles;
        self.idle_pe_cycles += other.idle_pe_cycles;
        self.register_writes += other.register_writes;
        self.adds += other.adds;
        self.divisions += other.divisions;
        self.sram_words += other.sram_words;
        self.dram_words += other.dram_words;
    }
}

/// Energy in pJ by action, for one design choice (gated or not).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Energy {
    pub compute_pj: f64,
    pub idle_pj: f64,
    pub registers_pj: f64,
    pub sram_pj: f64,
    pub dram_pj: f64,
}

impl Energy {
    pub fn total_pj(&self) -> f64 {
        self.compute_pj + self.idle_pj + self.registers_pj + self.sram_pj + self.dram_pj
    }

    /// Everything but DRAM: what the chip itself dissipates.
    pub fn on_chip_pj(&self) -> f64 {
        self.total_pj() - self.dram_pj
    }
}

/// Prices `activity`; `sram_bytes` is the size of the buffer the words come from.
pub fn price(table: &EnergyTable, activity: &Activity, sram_bytes: u64, gated: bool) -> Energy {
    let idle = if gated {
        table.gated_pj
    } else {
        table.idle_clocked_pj
    };
    Energy {
        compute_pj: activity.mac_pe_cycles as f64 * table.mac_pj
            + activity.adds as f64 * table.add_pj
            + activity.divisions as f64 * table.divide_pj,
        idle_pj: activity.idle_pe_cycles as f64 * idle,
        registers_pj: activity.register_writes as f64 * table.register_write_pj,
        sram_pj: activity.sram_words as f64 * table.sram_word_pj(sram_bytes),
        dram_pj: activity.dram_words as f64 * table.dram_word_pj,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_clocks_and_sram_points() {
        assert!((Node::Nm180.clock_hz() - 100e6).abs() < 1.0);
        assert!((Node::Nm90.clock_hz() - 250e6).abs() < 1.0);
        let t = EnergyTable::at(Node::Nm45);
        assert!((t.sram_word_pj(8 << 10) - 2.5).abs() < 1e-9);
        assert!((t.sram_word_pj(32 << 10) - 5.0).abs() < 1e-9);
        assert!((t.sram_word_pj(1 << 20) - 25.0).abs() < 1e-9);
    }

    #[test]
    fn older_nodes_cost_more_and_gating_never_costs_more() {
        let (a, b) = (EnergyTable::at(Node::Nm45), EnergyTable::at(Node::Nm180));
        assert!(b.mac_pj > 10.0 * a.mac_pj);
        let activity = Activity {
            mac_pe_cycles: 10,
            idle_pe_cycles: 90,
            ..Activity::default()
        };
        let gated = price(&a, &activity, 1 << 15, true).total_pj();
        let ungated = price(&a, &activity, 1 << 15, false).total_pj();
        assert!(gated < ungated);
    }
}
