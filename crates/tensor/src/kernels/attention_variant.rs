//! Which attention a model runs: the softmax of the papers' baseline, ViTALiTy's Taylor
//! attention, SimA, or the divider-free shift-and-add softmax, in f32 or in 16-bit fixed point.

use std::fmt;

use crate::fixed::FixedPoint;
use crate::{Result, TensorError};

/// The axis ViTALiTy's mean-centring of K runs over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Centre {
    /// Subtract each feature's mean over the tokens (the paper's choice): `K^^T 1 = 0`, so the
    /// Taylor denominator is the constant `n sqrt(d)`.
    #[default]
    Tokens,
    /// Subtract each token's mean over its features.
    Features,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttentionVariant {
    /// `softmax(Q K^T / sqrt(d)) V`, O(n^2 d).
    #[default]
    Softmax,
    /// First-order Taylor of the softmax with mean-centred keys, O(n d^2).
    Taylor(Centre),
    /// Softmax-free: Q and K L1-normalised per channel over tokens, O(n d^2).
    Sima,
    /// Softmax with powers of two by shift-and-add and no divider (see `fixed::softmax`).
    ShiftSoftmax,
}

impl AttentionVariant {
    pub const NAMES: [&'static str; 5] = [
        "softmax",
        "taylor",
        "taylor-features",
        "sima",
        "shift-softmax",
    ];

    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "softmax" => Ok(Self::Softmax),
            "taylor" => Ok(Self::Taylor(Centre::Tokens)),
            "taylor-features" => Ok(Self::Taylor(Centre::Features)),
            "sima" => Ok(Self::Sima),
            "shift-softmax" => Ok(Self::ShiftSoftmax),
            other => Err(TensorError::Unsupported(format!(
                "unknown attention `{other}`; choose one of {}",
                Self::NAMES.join(", ")
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Softmax => "softmax",
            Self::Taylor(Centre::Tokens) => "taylor",
            Self::Taylor(Centre::Features) => "taylor-features",
            Self::Sima => "sima",
            Self::ShiftSoftmax => "shift-softmax",
        }
    }

    /// Arithmetic operations of one head (a multiply-add counts 2, each elementwise step 1).
    pub fn flops(self, queries: usize, keys: usize, dim: usize) -> u64 {
        let (q, k, d) = (queries as u64, keys as u64, dim as u64);
        let quadratic = 4 * q * k * d;
        match self {
            // scale, max, subtract, exp, sum, divide per score.
            Self::Softmax => quadratic + 6 * q * k,
            // y*log2e is 2 shifts + 2 adds; two Mitchell powers of 2 (add, shift) and the sum.
            Self::ShiftSoftmax => quadratic + 11 * q * k,
            // centring 2kd, two column sums 2kd, K^T V 2kd^2, Q G 2qd^2, Q k_sum 2qd,
            // numerator and denominator adds 2qd, division qd.
            Self::Taylor(_) => 4 * k * d + 2 * k * d * d + 2 * q * d * d + 5 * q * d,
            // two L1 norms and scalings 3(q+k)d, then the cheaper association.
            Self::Sima => 3 * (q + k) * d + (2 * k * d * d + 2 * q * d * d).min(quadratic),
        }
    }
}

impl fmt::Display for AttentionVariant {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A variant and, optionally, the fixed-point arithmetic it runs in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttentionAlgorithm {
    pub variant: AttentionVariant,
    pub fixed_point: Option<FixedPoint>,
}

impl AttentionAlgorithm {
    pub fn new(variant: AttentionVariant, fixed_point: Option<FixedPoint>) -> Result<Self> {
        if fixed_point.is_some()
            && matches!(variant, AttentionVariant::Softmax | AttentionVariant::Sima)
        {
            return Err(TensorError::Unsupported(format!(
                "{variant} has no fixed-point form here (it needs an exponential unit or a \
                 divider per entry); fixed point runs taylor, taylor-features or shift-softmax"
            )));
        }
        Ok(Self {
            variant,
            fixed_point,
        })
    }

    /// Refuses masks a variant cannot honour, before any work.
    pub fn check_causal(&self, causal: bool) -> Result<()> {
        if !causal {
            return Ok(());
        }
        match (self.variant, self.fixed_point) {
            (AttentionVariant::Sima, _) => Err(TensorError::Unsupported(
                "sima normalises the queries over all tokens, which a causal model may not \
                 see; use taylor, shift-softmax or softmax"
                    .into(),
            )),
            (AttentionVariant::Taylor(_), Some(_)) => Err(TensorError::Unsupported(
                "fixed-point taylor models the SAMM encoder datapath, which has no causal \
                 mask; use f32 taylor (prefix sums) or fixed-point shift-softmax"
                    .into(),
            )),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for AttentionAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match &self.fixed_point {
            Some(fp) => write!(f, "{} in {fp}", self.variant),
            None => write!(f, "{} in f32", self.variant),
        }
    }
}
