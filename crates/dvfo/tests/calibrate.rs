//! A calibration measured on real fixtures: uncompressed splits leave the outputs as they are,
//! compressed ones are smaller and move them a little; a calibration round-trips through its
//! file. And every shipped board parses.

use std::path::{Path, PathBuf};

use edgerun_dvfo::{Board, Calibration};
use edgerun_runtime::{Session, SessionOptions};
use edgerun_serve::Compression;

fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("EDGERUN_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
        });
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("EDGERUN_REQUIRE_FIXTURES").is_none(),
        "EDGERUN_REQUIRE_FIXTURES is set but {} does not exist",
        dir.display()
    );
    eprintln!("skipping: no fixtures at {}", dir.display());
    None
}

#[test]
fn every_shipped_board_parses_and_rises() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../boards");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let board = Board::load(&path).unwrap();
            assert!(board.cpu_flops_per_s(board.top_cpu()) > board.cpu_flops_per_s(0));
            assert!(board.busy_w(board.top_cpu(), board.top_memory()) > board.busy_w(0, 0));
            count += 1;
        }
    }
    assert!(count >= 2, "at least two boards ship, found {count}");
}

#[test]
fn splits_of_the_fixtures_are_measured_as_they_run() {
    let Some(root) = fixtures() else { return };
    for name in ["bert-tiny", "resnet-tiny"] {
        let dir = root.join(name);
        let out =
            std::env::temp_dir().join(format!("edgerun-dvfo-cal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let folder = edgerun_store::HfFolder::open(&dir).unwrap();
        edgerun_store::packed::pack(&folder, &out, None, &mut |_, _| {}).unwrap();
        let session = Session::open(&out, SessionOptions::default()).unwrap();
        let inputs = edgerun_store::read_inputs(&dir.join("inputs.safetensors")).unwrap();
        let compressions = [Compression::None, Compression::F16, Compression::Int8];
        let mut calls = 0;
        let c =
            Calibration::measure(&session, &inputs, &compressions, 1, |_, _| calls += 1).unwrap();
        let n = session.model().stages().len();
        assert_eq!(c.stages.len(), n, "{name}");
        assert_eq!(calls, (n - 1) * 3, "{name}");
        for split in 1..n {
            let (none, f16, int8) = (
                c.boundary(split, 0),
                c.boundary(split, 1),
                c.boundary(split, 2),
            );
            assert!(
                none.cosine > 1.0 - 1e-12,
                "{name} split {split}: {}",
                none.cosine
            );
            assert!(
                f16.bytes < none.bytes && int8.bytes < f16.bytes,
                "{name} split {split}"
            );
            assert!(
                int8.cosine > 0.99 && int8.cosine < 1.0 + 1e-9,
                "{name} split {split}: {}",
                int8.cosine
            );
        }
        let file = out.join("calibration.json");
        c.save(&file).unwrap();
        assert_eq!(Calibration::load(&file).unwrap(), c);
        let _ = std::fs::remove_dir_all(&out);
    }
}
