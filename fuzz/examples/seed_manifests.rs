//! Rewrites the manifest_store seeds (`corpus/manifest_store/NAME`: the picking byte, then the
//! manifest of the tiny model's store as this edgerun packs it). Run after a change to the
//! packed format: `cargo run --release --example seed_manifests` from `fuzz/`.

use edgerun_fuzz::TINY;

fn main() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/manifest_store");
    for (which, tiny) in TINY.iter().enumerate() {
        let manifest = std::fs::read(tiny.store().join("manifest.json")).expect("a manifest");
        let mut seed = vec![which as u8];
        seed.extend_from_slice(&manifest);
        std::fs::write(corpus.join(tiny.name), seed).expect("a seed written");
        println!("{}: {} bytes", tiny.name, manifest.len() + 1);
    }
}
