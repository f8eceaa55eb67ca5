//! Attention in O(n d^2): ViTALiTy's first-order Taylor attention and SimA, one head at a time
//! on dense `rows x dim` slices.
//!
//! Taylor, with `c = 1 / scale` (`sqrt(d)`), the visible keys K, V (`n` rows) and K^ the
//! centred keys: `k_sum = K^^T 1`, `v_sum = V^T 1`, `G = K^^T V`, `t_D = n c + Q k_sum`,
//! `T_N = c v_sum^T + Q G`, `Z = diag(t_D)^-1 T_N` -- equal to
//! `row_normalise(1 1^T + Q K^^T / c) V`. With a causal mask each query sees a prefix of the
//! keys, so the sums become prefix sums (the centring mean too); the cost stays O(n d^2).

use super::matmul::{matmul_strided, MatRef};
use super::Centre;

/// One head's dense operands; `visible[j]` says whether key `j` is padding.
pub(crate) struct Head<'a> {
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub queries: usize,
    pub keys: usize,
    pub dim: usize,
    pub visible: &'a [bool],
}

/// Running sums over a set of keys: enough to answer any query against that set.
struct KeySums {
    count: f32,
    k: Vec<f32>,
    v: Vec<f32>,
    kv: Vec<f32>,
}

impl KeySums {
    fn new(d: usize) -> Self {
        Self {
            count: 0.0,
            k: vec![0.0; d],
            v: vec![0.0; d],
            kv: vec![0.0; d * d],
        }
    }

    /// Adds one key row (already feature-centred when the centring is over features).
    fn add(&mut self, k: &[f32], v: &[f32]) {
        let d = k.len();
        self.count += 1.0;
        for (i, &ki) in k.iter().enumerate() {
            self.k[i] += ki;
            self.v[i] += v[i];
            let row = &mut self.kv[i * d..(i + 1) * d];
            row.iter_mut().zip(v).for_each(|(g, &vj)| *g += ki * vj);
        }
    }

    /// `(k_sum, G)` of the centred keys: token centring subtracts `mu = k / count`.
    fn centred(&self, centre: Centre) -> (Vec<f32>, Vec<f32>) {
        match centre {
            Centre::Features => (self.k.clone(), self.kv.clone()),
            Centre::Tokens => {
                let d = self.k.len();
                let mu: Vec<f32> = self.k.iter().map(|&s| s / self.count.max(1.0)).collect();
                let k_sum = self
                    .k
                    .iter()
                    .zip(&mu)
                    .map(|(&s, &m)| s - self.count * m)
                    .collect();
                let mut g = self.kv.clone();
                for (i, &m) in mu.iter().enumerate() {
                    let row = &mut g[i * d..(i + 1) * d];
                    row.iter_mut()
                        .zip(&self.v)
                        .for_each(|(x, &vs)| *x -= m * vs);
                }
                (k_sum, g)
            }
        }
    }
}

fn feature_centred(row: &[f32]) -> Vec<f32> {
    let mean = row.iter().sum::<f32>() / row.len().max(1) as f32;
    row.iter().map(|&x| x - mean).collect()
}

/// Taylor attention of one head into `out` (`queries x dim`). `causal_past` is `Some(past)`
/// when query `i` may see keys `0..=past + i` only.
pub(crate) fn taylor_head(
    head: &Head,
    centre: Centre,
    c: f32,
    causal_past: Option<usize>,
    out: &mut [f32],
) {
    let d = head.dim;
    let mut sums = KeySums::new(d);
    let mut added = 0;
    let mut add_until = |sums: &mut KeySums, limit: usize| {
        while added < limit.min(head.keys) {
            if head.visible[added] {
                let k = &head.k[added * d..(added + 1) * d];
                let v = &head.v[added * d..(added + 1) * d];
                match centre {
                    Centre::Features => sums.add(&feature_centred(k), v),
                    Centre::Tokens => sums.add(k, v),
                }
            }
            added += 1;
        }
    };
    let Some(past) = causal_past else {
        let (k_sum, g, sums) = all_keys(head, centre);
        let qm = MatRef::row_major(head.q, head.queries, d);
        matmul_strided(out, d, qm, MatRef::row_major(&g, d, d), false);
        for (i, row) in out.chunks_exact_mut(d.max(1)).enumerate() {
            let q = &head.q[i * d..(i + 1) * d];
            finish_row(row, q, &k_sum, &sums, c);
        }
        return;
    };
    for (i, row) in out.chunks_exact_mut(d.max(1)).enumerate() {
        add_until(&mut sums, past + i + 1);
        let (k_sum, g) = sums.centred(centre);
        let q = &head.q[i * d..(i + 1) * d];
        row.fill(0.0);
        for (a, &qa) in q.iter().enumerate() {
            let g_row = &g[a * d..(a + 1) * d];
            row.iter_mut().zip(g_row).for_each(|(o, &x)| *o += qa * x);
        }
        finish_row(row, q, &k_sum, &sums, c);
    }
}

/// `(k_sum, G, sums)` over every visible key, with `G = K^^T V` as one gemm: the non-causal
/// path, where no prefix is needed.
fn all_keys(head: &Head, centre: Centre) -> (Vec<f32>, Vec<f32>, KeySums) {
    let d = head.dim;
    let visible: Vec<usize> = (0..head.keys).filter(|&j| head.visible[j]).collect();
    let n = visible.len();
    let mut k_hat = Vec::with_capacity(n * d);
    let mut v = Vec::with_capacity(n * d);
    for &j in &visible {
        let row = &head.k[j * d..(j + 1) * d];
        match centre {
            Centre::Features => k_hat.extend(feature_centred(row)),
            Centre::Tokens => k_hat.extend_from_slice(row),
        }
        v.extend_from_slice(&head.v[j * d..(j + 1) * d]);
    }
    if centre == Centre::Tokens && n > 0 {
        let mut mu = vec![0.0f32; d];
        for row in k_hat.chunks_exact(d.max(1)) {
            mu.iter_mut().zip(row).for_each(|(m, &x)| *m += x);
        }
        mu.iter_mut().for_each(|m| *m /= n as f32);
        for row in k_hat.chunks_exact_mut(d.max(1)) {
            row.iter_mut().zip(&mu).for_each(|(x, &m)| *x -= m);
        }
    }
    let mut sums = KeySums::new(d);
    sums.count = n as f32;
    for (kr, vr) in k_hat.chunks_exact(d.max(1)).zip(v.chunks_exact(d.max(1))) {
        sums.k.iter_mut().zip(kr).for_each(|(s, &x)| *s += x);
        sums.v.iter_mut().zip(vr).for_each(|(s, &x)| *s += x);
    }
    let mut g = vec![0.0f32; d * d];
    let km = MatRef::row_major(&k_hat, n, d);
    matmul_strided(&mut g, d, km.t(), MatRef::row_major(&v, n, d), false);
    (sums.k.clone(), g, sums)
}

/// `row` holds `q G`; turns it into `(c v_sum + q G) / (n c + q k_sum)`.
fn finish_row(row: &mut [f32], q: &[f32], k_sum: &[f32], sums: &KeySums, c: f32) {
    if sums.count == 0.0 {
        row.fill(0.0);
        return;
    }
    let qk: f32 = q.iter().zip(k_sum).map(|(a, b)| a * b).sum();
    let inv = 1.0 / (sums.count * c + qk);
    row.iter_mut()
        .zip(&sums.v)
        .for_each(|(o, &vs)| *o = (c * vs + *o) * inv);
}

/// SimA of one head: Q and K divided per channel by their L1 norm over the (visible) tokens,
/// then `Q^ (K^^T V)` or `(Q^ K^^T) V`, whichever costs less. No scale, no mask beyond padding.
pub(crate) fn sima_head(head: &Head, out: &mut [f32]) {
    const EPS: f32 = 1e-12;
    let d = head.dim;
    let keys: Vec<usize> = (0..head.keys).filter(|&j| head.visible[j]).collect();
    let self_attention = head.queries == head.keys;
    let queries_counted: Vec<usize> = (0..head.queries)
        .filter(|&i| !self_attention || head.visible[i])
        .collect();
    let l1 = |x: &[f32], rows: &[usize]| -> Vec<f32> {
        (0..d)
            .map(|f| {
                let norm: f32 = rows.iter().map(|&r| x[r * d + f].abs()).sum();
                1.0 / norm.max(EPS)
            })
            .collect()
    };
    let (q_inv, k_inv) = (l1(head.q, &queries_counted), l1(head.k, &keys));
    let q_hat: Vec<f32> = head
        .q
        .iter()
        .enumerate()
        .map(|(i, &x)| x * q_inv[i % d])
        .collect();
    let mut k_hat = Vec::with_capacity(keys.len() * d);
    let mut v_vis = Vec::with_capacity(keys.len() * d);
    for &j in &keys {
        let row = &head.k[j * d..(j + 1) * d];
        k_hat.extend(row.iter().zip(&k_inv).map(|(&x, &s)| x * s));
        v_vis.extend_from_slice(&head.v[j * d..(j + 1) * d]);
    }
    let n = keys.len();
    let qm = MatRef::row_major(&q_hat, head.queries, d);
    let km = MatRef::row_major(&k_hat, n, d);
    let vm = MatRef::row_major(&v_vis, n, d);
    let (nq, n64, d64) = (head.queries as u64, n as u64, d as u64);
    if n64 * d64 * d64 + nq * d64 * d64 <= 2 * nq * n64 * d64 {
        let mut g = vec![0.0f32; d * d];
        matmul_strided(&mut g, d, km.t(), vm, false);
        matmul_strided(out, d, qm, MatRef::row_major(&g, d, d), false);
    } else {
        let mut scores = vec![0.0f32; head.queries * n];
        matmul_strided(&mut scores, n, qm, km.t(), false);
        matmul_strided(
            out,
            d,
            MatRef::row_major(&scores, head.queries, n),
            vm,
            false,
        );
    }
}
