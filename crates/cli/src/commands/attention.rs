//! `--attention` and `--fixed-point`: which attention a model runs, parsed once into an
//! [`AttentionAlgorithm`].

use anyhow::{bail, Result};
use clap::Args;
use edgerun_models::Model;
use edgerun_tensor::fixed::{AccumulatorBits, FixedPoint, QFormat, Rounding};
use edgerun_tensor::kernels::{AttentionAlgorithm, AttentionVariant};

#[derive(Args, Clone, Debug)]
pub struct AttentionArgs {
    /// Attention of every layer: softmax; taylor (ViTALiTy first-order Taylor, keys centred
    /// over tokens); taylor-features (centred over features); sima (softmax-free, L1-normalised
    /// Q and K); shift-softmax (divider-free, powers of two by shift-and-add).
    #[arg(long, default_value = "softmax", value_parser = AttentionVariant::NAMES)]
    pub attention: String,
    #[command(flatten)]
    pub fixed: FixedPointArgs,
}

#[derive(Args, Clone, Debug)]
pub struct FixedPointArgs {
    /// Run attention in 16-bit fixed point of this Q-format (integer bits with the sign, then
    /// fraction bits), e.g. Q8.8. Taylor and shift-softmax only; the rest of the model stays f32.
    #[arg(long, value_name = "QM.N")]
    pub fixed_point: Option<String>,
    /// Accumulator width of --fixed-point, in bits; it saturates on every addition.
    #[arg(long, default_value = "40", value_parser = ["32", "40"])]
    pub accumulator: String,
    /// How --fixed-point drops bits in shifts and divisions.
    #[arg(long, default_value = "half-up", value_parser = ["half-up", "floor"])]
    pub rounding: String,
}

impl FixedPointArgs {
    /// The arithmetic asked for; `default` when --fixed-point is absent.
    pub fn parse(&self, default: Option<QFormat>) -> Result<Option<FixedPoint>> {
        let format = match (&self.fixed_point, default) {
            (Some(text), _) => QFormat::parse(text)?,
            (None, Some(format)) => format,
            (None, None) => return Ok(None),
        };
        Ok(Some(FixedPoint {
            format,
            accumulator: AccumulatorBits::parse(&self.accumulator)?,
            rounding: Rounding::parse(&self.rounding)?,
        }))
    }
}

impl AttentionArgs {
    /// The algorithm, refused in words when `model` cannot run it.
    pub fn algorithm(&self, model: &dyn Model) -> Result<AttentionAlgorithm> {
        let variant = AttentionVariant::parse(&self.attention)?;
        let algorithm = AttentionAlgorithm::new(variant, self.fixed.parse(None)?)?;
        if algorithm != AttentionAlgorithm::default() && !model.has_attention() {
            bail!(
                "{} has no attention layers; --attention and --fixed-point apply to BERT, ViT, \
                 GPT-2 and GPT-J",
                model.architecture()
            );
        }
        algorithm.check_causal(model.causal().is_some())?;
        Ok(algorithm)
    }
}
