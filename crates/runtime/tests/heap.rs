//! Measured memory against the governor's accounting: a counting allocator shows the heap a
//! streamed pass really uses stays within the budget the governor enforced (so the activation
//! reserve is a true upper bound), and a freed unit buffer leaves the process.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{fixtures, FIXTURES};
use edgerun_models::RunOptions;
use edgerun_runtime::{Executor, Governor, MemorySample, StreamExecutor};
use edgerun_store::packed::PackOptions;
use edgerun_store::{read_inputs, ModelSource, ReadOptions};
use edgerun_tensor::quant::QuantFormat;
use edgerun_tensor::FillBuffer;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The allocator is process-wide and tests run on parallel threads: the two tests here take
/// turns so one's 64 MiB buffer never lands in the other's peak.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn streamed_heap_stays_within_the_minimum_budget() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(root) = fixtures() else { return };
    // One thread: the reserve's per-thread score buffers are then exact for this process.
    edgerun_tensor::parallel::set_threads(1);
    let yolo = common::repo_fixtures().join("yolov3-tiny");
    let dirs = FIXTURES
        .iter()
        .map(|name| (name.to_string(), root.join(name)))
        .chain(std::iter::once(("yolov3-tiny".to_string(), yolo)));
    let formats = [None, Some(QuantFormat::Int8), Some(QuantFormat::Q4)];
    for ((name, dir), quant) in dirs.flat_map(|d| formats.map(|f| (d.clone(), f))) {
        let pack = PackOptions {
            quant,
            ..PackOptions::default()
        };
        let tag = format!("heap-{name}-{}", quant.map_or("f32", |q| q.name()));
        let store = common::pack_fixture_with(&dir, &tag, &pack);
        let source = std::sync::Arc::new(ModelSource::open(&store).unwrap());
        let inputs = read_inputs(&dir.join("inputs.safetensors")).unwrap();
        let options = RunOptions {
            hidden_states: true,
            ..RunOptions::default()
        };
        let probe = StreamExecutor::new(
            source.clone(),
            ReadOptions::default(),
            Governor::new(u64::MAX),
        )
        .unwrap();
        let minimum = probe.minimum_bytes(
            &probe
                .model()
                .start(inputs.clone(), options.clone())
                .unwrap(),
        );
        // AlignedBufs from 2 MiB up are mapped, not allocated, so this allocator would miss
        // them: every unit here must be smaller for the count to be whole.
        let largest_unit = probe
            .model()
            .stages()
            .iter()
            .map(|s| s.tensors.iter().map(|t| t.elements() * 4).sum::<usize>())
            .max()
            .unwrap_or(0);
        assert!(
            largest_unit < 2 << 20,
            "{name}: a {largest_unit}-byte unit would be mapped"
        );
        let executor = StreamExecutor::new(
            source.clone(),
            ReadOptions::default(),
            Governor::new(minimum),
        )
        .unwrap();
        // gemm keeps a per-thread packing workspace after its first call; warm it up so the
        // measurement sees the pass, not that one-time cache.
        probe.forward(inputs.clone(), options.clone()).unwrap();

        let baseline = LIVE.load(Ordering::Relaxed);
        PEAK.store(baseline, Ordering::Relaxed);
        let outputs = executor.forward(inputs, options).unwrap();
        let used = PEAK.load(Ordering::Relaxed) - baseline;
        drop(outputs);
        assert!(
            used as u64 <= minimum,
            "{name} {quant:?}: the pass allocated {used} bytes at peak, over its budget of {minimum}"
        );
        std::fs::remove_dir_all(store).unwrap();
    }
}

#[test]
fn a_freed_unit_buffer_leaves_the_process() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // What the binary sets at start-up: large blocks get their own mappings.
    // SAFETY: mallopt only tunes glibc's allocator.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
    const SIZE: usize = 64 << 20;
    let before = MemorySample::now().rss_anon_bytes;
    let mut buf = edgerun_tensor::AlignedBuf::zeroed(SIZE).unwrap();
    buf.as_mut_slice()
        .iter_mut()
        .step_by(4096)
        .for_each(|b| *b = 1);
    let held = MemorySample::now().rss_anon_bytes;
    assert!(
        held >= before + (SIZE as u64) * 9 / 10,
        "the buffer was not resident: {before} -> {held}"
    );
    drop(buf);
    let after = MemorySample::now().rss_anon_bytes;
    assert!(
        after < held - (SIZE as u64) * 9 / 10,
        "the freed buffer stayed in the process: {held} -> {after}"
    );
}
