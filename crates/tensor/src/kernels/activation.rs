//! Element-wise activations, named as Hugging Face configs name them.

use rayon::prelude::*;

/// The activations edgerun's families use, parsed from `hidden_act` / `activation_function`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// GELU with the exact erf (`gelu`).
    GeluErf,
    /// GELU's tanh approximation (`gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`).
    GeluTanh,
    Relu,
    Tanh,
    Identity,
}

const PAR_CHUNK: usize = 1 << 14;

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

    pub fn apply(self, x: f32) -> f32 {
        match self {
            Self::GeluErf => 0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2)),
            Self::GeluTanh => {
                const C: f32 = 0.797_884_6; // sqrt(2 / pi)
                0.5 * x * (1.0 + (C * (x + 0.044715 * x * x * x)).tanh())
            }
            Self::Relu => x.max(0.0),
            Self::Tanh => x.tanh(),
            Self::Identity => x,
        }
    }

    pub fn apply_in_place(self, values: &mut [f32]) {
        if self == Self::Identity {
            return;
        }
        values
            .par_chunks_mut(PAR_CHUNK)
            .for_each(|chunk| chunk.iter_mut().for_each(|v| *v = self.apply(*v)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
