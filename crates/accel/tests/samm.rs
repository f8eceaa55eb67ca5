//! The SAMM datapath as an attention engine: bit for bit the fixed-point Taylor kernel, with
//! each array's counts those of its GEMM.

use edgerun_accel::samm::{SammConfig, SammEngine};
use edgerun_accel::systolic::closed_form_stats;
use edgerun_accel::{ArrayShape, Dataflow, GemmDims};
use edgerun_tensor::fixed::FixedPoint;
use edgerun_tensor::kernels::{
    attention_with, AttentionAlgorithm, AttentionMask, AttentionVariant, Centre, HeadLayout, KvRef,
};
use edgerun_tensor::Tensor;
use proptest::prelude::*;

fn attention(
    values: &[Vec<f32>; 3],
    [heads, dim, tokens]: [usize; 3],
    centre: Centre,
    engine: Option<&SammEngine>,
) -> Vec<f32> {
    let width = heads * dim;
    let q = Tensor::from_vec(&[1, tokens, width], values[0].clone()).unwrap();
    let algorithm =
        AttentionAlgorithm::new(AttentionVariant::Taylor(centre), Some(FixedPoint::q8_8()))
            .unwrap();
    let k = KvRef::dense(&values[1], tokens, width);
    let v = KvRef::dense(&values[2], tokens, width);
    let layout = HeadLayout {
        heads,
        head_dim: dim,
    };
    let scale = 1.0 / (dim as f32).sqrt();
    let engine = engine.map(|e| e as &dyn edgerun_tensor::fixed::TaylorEngine);
    attention_with(
        &q,
        k,
        v,
        layout,
        AttentionMask::default(),
        scale,
        &algorithm,
        engine,
    )
    .unwrap()
    .values()
    .to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn samm_heads_equal_the_fixed_point_kernel(
        heads in 1usize..4, dim in 1usize..40, tokens in 1usize..60,
        dataflow in 0usize..3, features in any::<bool>(), seed in prop::collection::vec(-2.0f32..2.0, 3),
    ) {
        let width = heads * dim;
        let values: [Vec<f32>; 3] = std::array::from_fn(|op| {
            (0..tokens * width)
                .map(|i| (i as f32 * 0.37 + op as f32).sin() * seed[op])
                .collect()
        });
        let centre = if features { Centre::Features } else { Centre::Tokens };
        let config = SammConfig { dataflow: Dataflow::ALL[dataflow], ..SammConfig::default() };
        let engine = SammEngine::new(config.clone());
        let simulated = attention(&values, [heads, dim, tokens], centre, Some(&engine));
        let kernel = attention(&values, [heads, dim, tokens], centre, None);
        prop_assert_eq!(simulated, kernel);

        let ledger = engine.ledger();
        prop_assert_eq!(ledger.heads.len(), heads);
        let qg = closed_form_stats(config.qg_array, config.dataflow, GemmDims { m: tokens, k: dim, n: dim });
        let kv = closed_form_stats(config.kv_array, config.dataflow, GemmDims { m: dim, k: tokens, n: dim });
        prop_assert_eq!(ledger.qg.busy_cycles, heads as u64 * qg.busy_cycles);
        prop_assert_eq!(ledger.kv.mac_pe_cycles, heads as u64 * kv.mac_pe_cycles);
        for head in &ledger.heads {
            prop_assert_eq!(
                head.critical_path,
                head.column_accumulator + head.kv_array.max(head.qk_array) + head.qg_array + head.divider
            );
        }
    }
}

#[test]
fn paper_arrays_are_the_default() {
    let c = SammConfig::default();
    assert_eq!(c.qg_array, ArrayShape { rows: 17, cols: 32 });
    assert_eq!(c.kv_array, ArrayShape { rows: 16, cols: 32 });
    assert_eq!(c.qk_array, ArrayShape { rows: 17, cols: 1 });
}

proptest! {
    /// Clock gating never costs energy, whatever the activity and node.
    #[test]
    fn gating_never_costs_more(
        macs in 0u64..1_000_000, idle in 0u64..1_000_000, writes in 0u64..1_000_000,
        sram in 0u64..1_000_000, node in 0usize..4, sram_kib in 1u64..4096,
    ) {
        use edgerun_accel::energy::{price, Activity, EnergyTable, Node};
        let node = [Node::Nm45, Node::Nm65, Node::Nm90, Node::Nm180][node];
        let activity = Activity {
            mac_pe_cycles: macs,
            idle_pe_cycles: idle,
            register_writes: writes,
            sram_words: sram,
            ..Activity::default()
        };
        let table = EnergyTable::at(node);
        let gated = price(&table, &activity, sram_kib << 10, true).total_pj();
        let ungated = price(&table, &activity, sram_kib << 10, false).total_pj();
        prop_assert!(gated <= ungated);
        prop_assert!(gated >= 0.0);
    }
}
