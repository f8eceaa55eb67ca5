//! An `--input` safetensors file: parse the tensors transformers would take, then run a tiny
//! model (the first byte picks which) on them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let Ok(inputs) = edgerun_store::parse_inputs(std::path::Path::new("input"), bytes) else {
        return;
    };
    let tiny = edgerun_fuzz::pick(which);
    let source = edgerun_store::ModelSource::open(&tiny.folder()).expect("the tiny model opens");
    edgerun_fuzz::forward(&source, inputs);
});
