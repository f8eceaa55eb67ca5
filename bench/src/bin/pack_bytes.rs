//! Peak heap bytes gemm allocates inside one `linear` call, for shapes where the runtime's
//! reserve needs a bound on it: `pack_bytes [--threads 2]`. Prints one JSON line per shape.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use edgerun_bench::arg;
use edgerun_tensor::kernels::{linear, matmul_strided, MatRef};
use edgerun_tensor::Tensor;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
        PEAK.fetch_max(live, Ordering::SeqCst);
        // SAFETY: forwarded to the system allocator with the caller's layout.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        // SAFETY: forwarded to the system allocator with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn main() {
    let threads: usize = arg("--threads", 2);
    edgerun_tensor::parallel::set_threads(threads);
    // (m, k, n, what)
    let shapes = [
        (1, 25088, 4096, "VGG-19 classifier.0, batch 1"),
        (8, 25088, 4096, "VGG-19 classifier.0, batch 8"),
        (1, 4096, 4096, "VGG-19 classifier.3"),
        (128, 768, 50257, "GPT-2 tied LM head, 128 tokens"),
        (1, 768, 50257, "GPT-2 LM head, one token"),
        (128, 1024, 4096, "BERT-large FFN up"),
    ];
    for (m, k, n, what) in shapes {
        let x = Tensor::from_vec(&[m, k], vec![0.5; m * k]).unwrap();
        let w = Tensor::from_vec(&[k, n], vec![0.25; k * n]).unwrap();
        // Warm up once: gemm keeps a per-thread packing cache after its first call.
        let _ = linear(&x, &w, None).unwrap();
        let before = LIVE.load(Ordering::SeqCst);
        PEAK.store(before, Ordering::SeqCst);
        let y = linear(&x, &w, None).unwrap();
        let transient = PEAK.load(Ordering::SeqCst) - before - y.len() * 4;
        println!(
            "{}",
            serde_json::json!({"shape": what, "m": m, "k": k, "n": n, "weight_bytes": k * n * 4,
                "transient_bytes": transient, "share_of_weight": transient as f64 / (k * n * 4) as f64})
        );
    }
    // A tied LM head: logits = x @ E^T with E stored [vocab, hidden], read as a transposed view.
    for m in [1usize, 128] {
        let (k, n) = (768, 50257);
        let x = vec![0.5f32; m * k];
        let table = vec![0.25f32; n * k];
        let mut out = vec![0.0f32; m * n];
        let product = |out: &mut [f32]| {
            matmul_strided(
                out,
                n,
                MatRef::row_major(&x, m, k),
                MatRef::row_major(&table, n, k).t(),
                false,
            )
        };
        product(&mut out);
        let before = LIVE.load(Ordering::SeqCst);
        PEAK.store(before, Ordering::SeqCst);
        product(&mut out);
        let transient = PEAK.load(Ordering::SeqCst) - before;
        println!(
            "{}",
            serde_json::json!({"shape": format!("GPT-2 tied head as x @ E^T, {m} tokens"), "m": m, "k": k, "n": n,
                "weight_bytes": k * n * 4, "transient_bytes": transient, "share_of_weight": transient as f64 / (k * n * 4) as f64})
        );
    }
}
