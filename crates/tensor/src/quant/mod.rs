//! Quantised weight matrices and the integer GEMM that multiplies by them.
//!
//! A weight matrix `B` (`k x n`: `k` inputs, `n` outputs) is stored in one of two formats:
//! - **int8**: one signed byte per weight, symmetric per output column: `w = q * s[j]`, `q` in
//!   `[-127, 127]`, one f32 scale per column.
//! - **q4**: four bits per weight in blocks of 32 along `k` (the shape of GGUF's Q4_0):
//!   `w = (q - 8) * d[b, j]`, `q` in `[0, 15]`, one f16 scale per block and column.
//!
//! Nothing is widened to f32 to compute. The left operand (activations) is quantised to
//! signed bytes as it arrives ([`rows`]): per row for int8, per row and block of 32 for q4,
//! and the products are integer dot products, four bytes at a time (AVX-512 VNNI
//! `vpdpbusd`, AVX2 `vpmaddubsw`, plain Rust elsewhere). Integer sums are exact, so every
//! kernel, thread count and split gives the same `i32` and then, through one fixed sequence
//! of f32 operations ([`qgemm::reference`]), the same bits.
//!
//! Byte layout ([`QuantMatrix`]): codes first, then scales, both in groups of 64 columns as
//! the f32 GEMM packs them. int8: group `g`, quad `t` (steps `4t..4t + 4`) holds 256 bytes,
//! column `c` of the group at `4c`, its four steps in order; so 16 columns (a panel) of one
//! quad are one 64-byte vector. q4: group `g`, block `b`, quad `r` of the block holds 128
//! bytes, two 64-byte halves `h`; byte `x` of half `h` carries the element `x` of panel `2h`'s
//! quad vector in its low nibble and of panel `2h + 1` in its high nibble. Rows past `k` and
//! columns past `n` are zero codes with zero scales.

#[cfg(target_arch = "x86_64")]
mod amx;
mod encode;
mod matrix;
mod micro;
pub mod qgemm;
pub mod rows;

#[cfg(test)]
mod tests;

pub use encode::{dequantize, dequantize_column, quantize};
pub use matrix::QuantMatrix;
pub use qgemm::qgemm;

/// Columns of a group: as the f32 GEMM's packing, so the same shapes address both.
pub const GROUP: usize = crate::kernels::gemm::GROUP;
/// Steps of `k` one 32-bit lane of a dot-product instruction sums.
pub const QUAD: usize = 4;
/// Steps of `k` per q4 scale.
pub const Q4_BLOCK: usize = 32;
/// The longest `k` a quantised matrix may have: the sum of `k` products of a byte (offset to
/// unsigned, up to 255) and a signed byte (up to 127) stays inside an `i32`.
pub const MAX_INNER: usize = 1 << 16;

/// How a matrix's weights are quantised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantFormat {
    Int8,
    Q4,
}

impl QuantFormat {
    pub fn name(self) -> &'static str {
        match self {
            QuantFormat::Int8 => "int8",
            QuantFormat::Q4 => "q4",
        }
    }

    /// Parses `int8` or `q4` (the command line's and the manifest's names).
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "int8" | "q8" => Some(QuantFormat::Int8),
            "q4" | "int4" | "q4_0" => Some(QuantFormat::Q4),
            _ => None,
        }
    }

    /// Steps of `k` that share a scale: all of them (int8, per column) or a block (q4).
    pub fn group_size(self, k: usize) -> usize {
        match self {
            QuantFormat::Int8 => k,
            QuantFormat::Q4 => Q4_BLOCK,
        }
    }

    /// `k` rounded up to what the codes hold (zero steps after the last).
    pub fn padded_inner(self, k: usize) -> usize {
        match self {
            QuantFormat::Int8 => k.next_multiple_of(QUAD),
            QuantFormat::Q4 => k.next_multiple_of(Q4_BLOCK),
        }
    }

    /// Bytes of the codes of a `k x n` matrix.
    pub fn codes_len(self, k: usize, n: usize) -> usize {
        let groups = n.div_ceil(GROUP);
        match self {
            QuantFormat::Int8 => groups * self.padded_inner(k) * GROUP,
            QuantFormat::Q4 => groups * self.padded_inner(k) * GROUP / 2,
        }
    }

    /// Bytes of the scales of a `k x n` matrix.
    pub fn scales_len(self, k: usize, n: usize) -> usize {
        let groups = n.div_ceil(GROUP);
        match self {
            QuantFormat::Int8 => groups * GROUP * 4,
            QuantFormat::Q4 => groups * (self.padded_inner(k) / Q4_BLOCK) * GROUP * 2,
        }
    }

    /// Bytes of a stored `k x n` matrix: codes, then scales.
    pub fn stored_len(self, k: usize, n: usize) -> usize {
        self.codes_len(k, n) + self.scales_len(k, n)
    }
}

impl std::fmt::Display for QuantFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
