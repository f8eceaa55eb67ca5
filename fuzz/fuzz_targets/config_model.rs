//! A config.json of any family: build the model against a checkpoint that claims every tensor
//! (up to a few hundred of them), list its stages and start a pass on a small input of the
//! kind it takes.
#![no_main]

use edgerun_models::{build_model, Checkpoint, ModelKind, RunOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(config) = std::str::from_utf8(data) else {
        return;
    };
    let checkpoint = Checkpoint {
        has_tensor: &|_| true,
        tensors: Some(512),
    };
    let Ok(model) = build_model(config, checkpoint) else {
        return;
    };
    let elements: usize = model
        .stages()
        .iter()
        .flat_map(|s| &s.tensors)
        .map(|t| t.elements())
        .fold(0, usize::saturating_add);
    let _ = elements;
    let tiny = match model.kind() {
        ModelKind::Vision => edgerun_fuzz::pick(3),
        _ => edgerun_fuzz::pick(0),
    };
    if let Ok(state) = model.start(tiny.inputs(), RunOptions::default()) {
        let _ = model.activation_bytes(&state);
    }
});
