//! Element-wise activations, named as Hugging Face configs name them.

use rayon::prelude::*;

use super::wide::{on, width, Width};

/// The activations edgerun's families use, parsed from `hidden_act` / `activation_function`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// GELU with the exact erf (`gelu`).
    GeluErf,
    /// GELU's tanh approximation (`gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`).
    GeluTanh,
    Relu,
    /// `x` where positive, `slope * x` elsewhere; the slope is stored as its f32 bits so the
    /// enum stays `Eq` (see [`Activation::leaky_relu`]).
    LeakyRelu(u32),
    Tanh,
    Identity,
}

const PAR_CHUNK: usize = 1 << 14;

/// erf as a branch-free rational function of x (Eigen's and XLA's float approximation), so the
/// activation loop vectorizes; libm's scalar erff cost ~5% of a BERT forward pass.
/// Absolute error below 2e-6 on all of f32 (tested against libm below).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    // Beyond |x| = 4, erf is +-1 in f32.
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_6e-3;
    p = p * x2 - 1.609_603_3e-2;
    let mut q = -1.456_607_2e-5f32;
    q = q * x2 - 2.133_740_5e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329e-3;
    q = q * x2 - 1.426_474e-2;
    x * p / q
}

/// tanh as a branch-free rational function of x (Eigen's float `ptanh`), for the same reason as
/// [`erf`]: libm's scalar tanhf (through expm1f) cost ~16% of a GPT-2 prompt pass. Absolute
/// error below 1e-6 on all of f32 (tested against libm below).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    // Beyond |x| = 7.9, tanh is +-1 in f32; the rational form is exact enough to that point.
    let x = x.clamp(-7.905_311, 7.905_311);
    let x2 = x * x;
    let mut p = -2.760_768_5e-16f32;
    p = p * x2 + 2.000_188e-13;
    p = p * x2 - 8.604_672e-11;
    p = p * x2 + 5.122_297e-8;
    p = p * x2 + 1.485_722_4e-5;
    p = p * x2 + 6.372_619_3e-4;
    p = p * x2 + 4.893_524_6e-3;
    let mut q = 1.198_258_4e-6f32;
    q = q * x2 + 1.185_347e-4;
    q = q * x2 + 2.268_434_6e-3;
    q = q * x2 + 4.893_525e-3;
    x * p / q
}

/// e^x as a branch-free polynomial (Cephes' `expf`: a degree-6 fit on [-ln2/2, ln2/2] scaled
/// by 2^n through the exponent bits), so softmax's loop vectorizes; libm's scalar expf cost
/// ~4% of a ViT pass. Relative error below 3e-7 where the result is a normal float; 0 below
/// -87.3 (where e^x is subnormal) and +inf above 88.7.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts, so `x - n ln 2` loses nothing to rounding.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding then subtracting 1.5 * 2^23 rounds to the nearest integer in plain SSE2.
    const ROUND: f32 = 12_582_912.0;
    let clamped = x.clamp(-87.3, 88.7);
    let n = (clamped * LOG2E + ROUND) - ROUND;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_2e-4f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // n is in [-126, 128]: 2^n as exponent bits (128 takes two steps so the bits stay valid).
    let n = n as i32;
    let half = n / 2;
    let scale = |e: i32| f32::from_bits(((e + 127) as u32) << 23);
    let value = y * scale(half) * scale(n - half);
    if x < -87.3 {
        0.0
    } else if x > 88.7 {
        f32::INFINITY
    } else {
        value
    }
}

impl Activation {
    pub fn from_hf(name: &str) -> Option<Self> {
        match name {
            "gelu" => Some(Self::GeluErf),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Some(Self::GeluTanh),
            "relu" => Some(Self::Relu),
            "tanh" => Some(Self::Tanh),
            "linear" | "identity" => Some(Self::Identity),
            _ => None,
        }
    }

    /// Leaky ReLU with `slope` below zero (0.1 in Darknet, 0.01 in PyTorch's default).
    pub fn leaky_relu(slope: f32) -> Self {
        Self::LeakyRelu(slope.to_bits())
    }

    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Self::GeluErf => 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2)),
            Self::GeluTanh => {
                const C: f32 = 0.797_884_6; // sqrt(2 / pi)
                0.5 * x * (1.0 + tanh(C * (x + 0.044715 * x * x * x)))
            }
            Self::Relu => x.max(0.0),
            Self::LeakyRelu(slope) => {
                if x > 0.0 {
                    x
                } else {
                    x * f32::from_bits(slope)
                }
            }
            Self::Tanh => tanh(x),
            Self::Identity => x,
        }
    }

    /// Activates a short run of values on the calling thread (a GEMM tile's row).
    pub fn apply_slice(self, values: &mut [f32]) {
        if self != Self::Identity {
            self.map_slice(values, |v| v);
        }
    }

    /// `v = self.apply(pre(v))` for every value, with the choice of activation made once
    /// outside the loop so each arm is a loop the compiler vectorizes (a `match` per element
    /// is not inlined and cost ~12% of a ResNet-50 pass).
    /// The loops are compiled for the CPU's widest vector unit ([`wide`](super::wide)).
    #[inline(always)]
    pub fn map_slice(self, values: &mut [f32], pre: impl Fn(f32) -> f32) {
        self.map_slice_on(width(), values, pre)
    }

    /// [`Activation::map_slice`] compiled for `width`.
    #[inline(always)]
    fn map_slice_on(self, width: Width, values: &mut [f32], pre: impl Fn(f32) -> f32) {
        macro_rules! each {
            ($activation:expr) => {
                values
                    .iter_mut()
                    .for_each(|v| *v = $activation.apply(pre(*v)))
            };
        }
        on(
            width,
            #[inline(always)]
            || match self {
                Self::Identity => each!(Self::Identity),
                Self::Relu => each!(Self::Relu),
                Self::GeluErf => each!(Self::GeluErf),
                Self::GeluTanh => each!(Self::GeluTanh),
                Self::Tanh => each!(Self::Tanh),
                Self::LeakyRelu(slope) => {
                    let slope = f32::from_bits(slope);
                    values.iter_mut().for_each(|v| {
                        let x = pre(*v);
                        *v = if x > 0.0 { x } else { x * slope };
                    })
                }
            },
        )
    }

    pub fn apply_in_place(self, values: &mut [f32]) {
        if self == Self::Identity {
            return;
        }
        values
            .par_chunks_mut(PAR_CHUNK)
            .for_each(|chunk| self.map_slice(chunk, |v| v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::wide::available;

    #[test]
    fn erf_matches_libm() {
        let mut worst = 0.0f32;
        for i in -80_000..=80_000 {
            let x = i as f32 * 1e-4;
            worst = worst.max((erf(x) - libm::erff(x)).abs());
        }
        assert!(worst < 2e-6, "max |erf - erff| = {worst}");
        assert!((erf(100.0) - 1.0).abs() < 2e-6 && (erf(-100.0) + 1.0).abs() < 2e-6);
    }

    #[test]
    fn exp_matches_libm() {
        let mut worst = 0.0f32;
        for i in -873_000..=887_000 {
            let x = i as f32 * 1e-4;
            let want = libm::expf(x);
            worst = worst.max(((exp(x) - want) / want).abs());
        }
        assert!(worst < 3e-7, "max relative |exp - expf| = {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-200.0), 0.0);
        assert_eq!(exp(200.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn tanh_matches_libm() {
        let mut worst = 0.0f32;
        for i in -120_000..=120_000 {
            let x = i as f32 * 1e-4;
            worst = worst.max((tanh(x) - libm::tanhf(x)).abs());
        }
        assert!(worst < 1e-6, "max |tanh - tanhf| = {worst}");
        for x in [
            1e-30f32,
            -1e-30,
            1e-8,
            20.0,
            -20.0,
            1e30,
            -1e30,
            f32::MAX,
            f32::MIN,
        ] {
            assert!((tanh(x) - libm::tanhf(x)).abs() <= 1e-6 * libm::tanhf(x).abs().max(1e-30));
        }
        assert_eq!(tanh(0.0), 0.0);
    }

    /// On every vector width the CPU has, and through `map_slice`'s own choice of width.
    #[test]
    fn map_slice_equals_apply_per_element() {
        let values: Vec<f32> = (0..1000)
            .map(|i| (i as f32 - 500.0) * 0.013)
            .chain((0..1003).map(|i| ((i * 7919) % 4001) as f32 / 250.0 - 8.0))
            .chain([0.0, -0.0, 1e-30, -1e30, f32::INFINITY, f32::NEG_INFINITY])
            .collect();
        for activation in [
            Activation::GeluErf,
            Activation::GeluTanh,
            Activation::Relu,
            Activation::leaky_relu(0.1),
            Activation::Tanh,
            Activation::Identity,
        ] {
            let mut results = Vec::new();
            for width in available() {
                let mut got = values.clone();
                activation.map_slice_on(width, &mut got, |v| v * 1.5 - 0.25);
                results.push((format!("{width:?}"), got));
            }
            let mut got = values.clone();
            activation.map_slice(&mut got, |v| v * 1.5 - 0.25);
            results.push(("map_slice".into(), got));
            for (path, got) in &results {
                for (g, &v) in got.iter().zip(&values) {
                    let want = activation.apply(v * 1.5 - 0.25);
                    assert_eq!(
                        g.to_bits(),
                        want.to_bits(),
                        "{activation:?} at {v} on {path}"
                    );
                }
            }
        }
    }

    #[test]
    fn known_values() {
        // torch.nn.functional.gelu(torch.tensor([1.0, -1.0])) and the tanh form.
        assert!((Activation::GeluErf.apply(1.0) - 0.841_344_7).abs() < 1e-6);
        assert!((Activation::GeluErf.apply(-1.0) + 0.158_655_26).abs() < 1e-6);
        assert!((Activation::GeluTanh.apply(1.0) - 0.841_192).abs() < 1e-6);
        assert_eq!(Activation::Relu.apply(-3.0), 0.0);
        assert_eq!(Activation::from_hf("gelu_new"), Some(Activation::GeluTanh));
        assert_eq!(Activation::from_hf("swish"), None);
    }
}
