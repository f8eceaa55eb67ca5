//! The packed store and the strategies: every fixture packed and run under full, mmap and
//! stream with each reader gives outputs bit-identical to the HF folder; budgets hold at
//! exactly the minimum and fail one byte below it; corrupt and truncated stores fail clearly.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{fixtures, FIXTURES};
use edgerun_models::RunOptions;
use edgerun_runtime::{Executor, FullExecutor, Governor, Outputs, RuntimeError, StreamExecutor};
use edgerun_store::packed::PackedStore;
use edgerun_store::{read_inputs, HfFolder, IoMode, ModelSource, ReadOptions, StoreError};

fn packed_copy(fixture: &Path, tag: &str) -> PathBuf {
    common::pack_fixture(fixture, &format!("packed-{tag}"))
}

fn outputs(executor: &dyn Executor, fixture: &Path) -> Outputs {
    let inputs = read_inputs(&fixture.join("inputs.safetensors")).unwrap();
    executor
        .forward(
            inputs,
            RunOptions {
                hidden_states: true,
                ..RunOptions::default()
            },
        )
        .unwrap()
}

fn assert_identical(a: &Outputs, b: &Outputs, what: &str) {
    assert_eq!(a.tensors.len(), b.tensors.len(), "{what}: output count");
    for ((na, ta), (nb, tb)) in a.tensors.iter().zip(&b.tensors) {
        assert_eq!(na, nb, "{what}");
        assert_eq!(ta.shape(), tb.shape(), "{what}: {na}");
        let same = ta
            .contiguous()
            .values()
            .iter()
            .zip(tb.contiguous().values())
            .all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{what}: {na} differs");
    }
}

#[test]
fn every_strategy_and_reader_is_bit_identical_to_the_hf_folder() {
    let Some(root) = fixtures() else { return };
    for name in FIXTURES {
        let dir = root.join(name);
        let reference = outputs(
            &FullExecutor::load(&ModelSource::Hf(HfFolder::open(&dir).unwrap())).unwrap(),
            &dir,
        );
        let store = packed_copy(&dir, name);
        let source = Arc::new(ModelSource::open(&store).unwrap());
        assert!(matches!(*source, ModelSource::Packed(_)));
        for io in [IoMode::Pread, IoMode::Direct, IoMode::Mmap] {
            let read = ReadOptions { io, verify: true };
            let full = FullExecutor::load_with(&source, read, Governor::new(u64::MAX)).unwrap();
            assert_identical(
                &reference,
                &outputs(&full, &dir),
                &format!("{name} full {io:?}"),
            );
            let stream =
                StreamExecutor::new(source.clone(), read, Governor::new(u64::MAX)).unwrap();
            assert_identical(
                &reference,
                &outputs(&stream, &dir),
                &format!("{name} stream {io:?}"),
            );
        }
        std::fs::remove_dir_all(store).unwrap();
    }
}

#[test]
fn stream_runs_at_exactly_its_minimum_budget_and_not_one_byte_less() {
    let Some(root) = fixtures() else { return };
    for name in FIXTURES {
        let dir = root.join(name);
        let store = packed_copy(&dir, &format!("budget-{name}"));
        let source = Arc::new(ModelSource::open(&store).unwrap());
        let read = ReadOptions::default();
        let probe = StreamExecutor::new(source.clone(), read, Governor::new(u64::MAX)).unwrap();
        let inputs = read_inputs(&dir.join("inputs.safetensors")).unwrap();
        let options = RunOptions {
            hidden_states: true,
            ..RunOptions::default()
        };
        let state = probe
            .model()
            .start(inputs.clone(), options.clone())
            .unwrap();
        let minimum = probe.minimum_bytes(&state);

        let governor = Governor::new(minimum);
        let exact = StreamExecutor::new(source.clone(), read, governor.clone()).unwrap();
        exact.forward(inputs.clone(), options.clone()).unwrap();
        assert!(
            governor.peak() <= minimum,
            "{name}: peak {} > budget {minimum}",
            governor.peak()
        );
        assert_eq!(governor.leased(), 0, "{name}: leases leaked");

        let short = StreamExecutor::new(source.clone(), read, Governor::new(minimum - 1)).unwrap();
        let err = short.forward(inputs, options).unwrap_err();
        assert!(
            matches!(err, RuntimeError::BelowMinimum { budget, minimum: m } if budget == minimum - 1 && m == minimum),
            "{name}: {err}"
        );
        std::fs::remove_dir_all(store).unwrap();
    }
}

#[test]
fn bound_f32_tensors_point_into_the_unit_buffer() {
    let Some(root) = fixtures() else { return };
    let store = packed_copy(&root.join("bert-tiny"), "zero-copy");
    let packed = PackedStore::open(&store).unwrap();
    let unit = packed.read_unit(1, IoMode::Direct, true).unwrap();
    let weights = packed.bind_unit(1, &unit).unwrap();
    let range = unit.bytes().as_ptr_range();
    assert!(!weights.is_empty());
    for (name, tensor) in weights.iter() {
        assert!(tensor.is_borrowed(), "{name} was copied");
        let ptr = tensor.values().as_ptr().cast::<u8>();
        assert!(range.contains(&ptr), "{name} lies outside the unit buffer");
    }
    std::fs::remove_dir_all(store).unwrap();
}

#[test]
fn a_flipped_byte_fails_its_unit_checksum_unless_verification_is_off() {
    let Some(root) = fixtures() else { return };
    let store = packed_copy(&root.join("gpt2-tiny"), "crc");
    let data = store.join("weights.bin");
    let mut bytes = std::fs::read(&data).unwrap();
    let packed = PackedStore::open(&store).unwrap();
    let unit = &packed.manifest().units[1];
    bytes[unit.offset as usize + 100] ^= 0x40;
    std::fs::write(&data, bytes).unwrap();
    let packed = PackedStore::open(&store).unwrap();
    let err = packed.read_unit(1, IoMode::Pread, true).err().unwrap();
    assert!(matches!(err, StoreError::BadTensor { .. }));
    assert!(
        err.to_string().contains("unit h.0") && err.to_string().contains("checksum mismatch"),
        "{err}"
    );
    assert!(packed.read_unit(1, IoMode::Pread, false).is_ok());
    std::fs::remove_dir_all(store).unwrap();
}

#[test]
fn a_truncated_data_file_fails_at_open() {
    let Some(root) = fixtures() else { return };
    let store = packed_copy(&root.join("vit-tiny"), "truncated");
    let data = store.join("weights.bin");
    let len = std::fs::metadata(&data).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&data)
        .unwrap()
        .set_len(len - 4096)
        .unwrap();
    let err = PackedStore::open(&store).err().unwrap();
    assert!(err.to_string().contains("truncated"), "{err}");
    std::fs::remove_dir_all(store).unwrap();
}
