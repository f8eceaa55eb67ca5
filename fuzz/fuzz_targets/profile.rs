//! A `--profile` JSON: parsed, validated, checked against a tiny BERT, then given (whichever model it names) to the
//! Pipeline Planner and to SwapNet's delay models and partitioner at a few budgets.
#![no_main]

use edgerun_runtime::delay::fit_profiles;
use edgerun_runtime::partition::partition;
use edgerun_runtime::planner::plan_with;
use edgerun_runtime::profile::Profile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(profile) = serde_json::from_slice::<Profile>(data) else {
        return;
    };
    if profile.validate().is_err() {
        return;
    }
    let tiny = edgerun_fuzz::pick(0);
    let source = edgerun_store::ModelSource::open(&tiny.folder()).expect("the tiny model opens");
    let model = source.model().expect("the tiny model builds");
    let _ = profile.check_model(model.as_ref());
    let units = profile.unit_costs();
    let parts = profile.part_units();
    let delays = fit_profiles(std::slice::from_ref(&profile));
    for budget in [1 << 20, 64 << 20, u64::MAX] {
        let plan = plan_with(
            &units,
            profile.reserve_bytes,
            budget,
            8,
            &profile.throughput,
            &profile.slowdowns(),
        );
        if let Some(plan) = plan {
            assert!(
                plan.predicted_peak_bytes <= budget,
                "{plan:?} over {budget}"
            );
        }
        if let Ok(delays) = &delays {
            let _ = partition(&parts, delays, budget, profile.reserve_bytes, true);
        }
    }
});
