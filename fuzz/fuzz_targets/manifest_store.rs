//! A packed store's manifest.json beside the real data file of a tiny model the first byte
//! picks. A manifest that parses is re-signed, so that validation past the checksum (layout,
//! tensors against the model's stages, dtypes) is what the fuzzer explores; then the store is
//! opened, bound and run, its units read and verified.
#![no_main]

use edgerun_store::packed::{Manifest, MANIFEST_FILE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let tiny = edgerun_fuzz::pick(which);
    let original = tiny.store();
    let dir = edgerun_fuzz::scratch().join(format!("manifest-{}", tiny.name));
    if !dir.exists() {
        std::fs::create_dir_all(&dir).expect("a folder");
        std::fs::copy(original.join("weights.bin"), dir.join("weights.bin")).expect("a copy");
    }
    let manifest = match serde_json::from_slice::<Manifest>(bytes) {
        Ok(mut m) => {
            m.checksum = m.compute_checksum();
            serde_json::to_vec(&m).expect("a manifest serialises")
        }
        Err(_) => bytes.to_vec(),
    };
    std::fs::write(dir.join(MANIFEST_FILE), manifest).expect("a manifest");
    if let Ok(source) = edgerun_store::ModelSource::open(&dir) {
        edgerun_fuzz::forward(&source, tiny.inputs());
    }
});
