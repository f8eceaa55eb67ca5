//! A checkpoint's model.safetensors (header and data) under a tiny config of the family the
//! first byte picks: open the folder, build and bind the model, run one pass.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let tiny = edgerun_fuzz::pick(which);
    let dir = edgerun_fuzz::scratch().join(format!("safetensors-{}", tiny.name));
    std::fs::create_dir_all(&dir).expect("a folder");
    std::fs::write(dir.join("config.json"), tiny.config).expect("a config");
    std::fs::write(dir.join("model.safetensors"), bytes).expect("a checkpoint");
    if let Ok(source) = edgerun_store::ModelSource::open(&dir) {
        edgerun_fuzz::forward(&source, tiny.inputs());
    }
});
