//! CPU kernels. Each file owns one family of operations; all compute in f32 on dense rows
//! unless a signature says it takes strides.

pub mod activation;
pub mod attention;
pub mod attention_variant;
pub mod conv;
pub mod conv_packed;
pub mod elementwise;
pub mod embedding;
pub mod gemm;
mod linear_attention;
pub mod matmul;
pub mod norm;
pub mod pool;
pub mod resize;
pub mod rotary;
pub mod shift_softmax;
pub mod softmax;
pub(crate) mod wide;

pub use activation::Activation;
pub use attention::{attention, attention_flops, attention_with, AttentionMask, HeadLayout, KvRef};
pub use attention_variant::{AttentionAlgorithm, AttentionVariant, Centre};
pub use conv::{conv2d, conv2d_then, im2col_elements, Conv2dParams, COLUMN_BUDGET};
pub use conv_packed::{
    conv2d_nhwc, nchw_to_nhwc, nhwc_to_nchw, pack_conv, packed_conv_shape, PackedConv,
};
pub use elementwise::{add, add_then};
pub use embedding::{embedding, embedding_packed, embedding_quantised};
pub use gemm::matmul_flops;
pub use matmul::{
    linear, linear_fused, linear_many, matmul, matmul_into, matmul_strided, pack_linear,
    pack_linear_reporting, LinearLayer, MatRef, Weight,
};
pub use norm::{add_and_layer_norm, add_layer_norm, batch_norm, layer_norm, ChannelAffine};
pub use pool::{adaptive_avg_pool2d, global_avg_pool_nhwc, max_pool2d, max_pool2d_nhwc};
pub use resize::{
    concat_channels, concat_channels_nhwc, resize_bilinear, upsample_nearest, upsample_nearest_nhwc,
};
pub use rotary::{rotary_interleaved, RotaryTable};
pub use shift_softmax::shift_softmax_rows;
pub use softmax::softmax_rows;

/// Whether two runs of values are the same bits (the tests' check that two paths agree exactly).
#[cfg(test)]
pub(crate) fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}
