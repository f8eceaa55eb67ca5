//! The ARAP machine: its ISA round-trips, each instruction on small cases, the handshake
//! checker, and a compiled encoder against an exact f64 encoder within the derived bound.

use edgerun_accel::arap::bound::{gelu, LAMBDA};
use edgerun_accel::arap::compiler::{compile, EncoderWeights, LayerWeights};
use edgerun_accel::arap::isa::{assemble, disassemble, Instruction, Opcode, Peg, NONE};
use edgerun_accel::arap::machine::{run, Descriptor, Program, Space};
use edgerun_accel::arap::trace;
use edgerun_accel::{AccelError, HazardKind};
use edgerun_tensor::fixed::{self, FixedPoint, QFormat};
use proptest::prelude::*;

fn fp() -> FixedPoint {
    FixedPoint {
        format: QFormat::new(6, 10).unwrap(),
        ..FixedPoint::q8_8()
    }
}

fn field() -> impl Strategy<Value = u16> {
    prop_oneof![0u16..4095, Just(NONE)]
}

fn instruction() -> impl Strategy<Value = Instruction> {
    (0usize..Opcode::ALL.len(), 0u8..4, field(), field(), field()).prop_map(|(op, peg, a, b, c)| {
        let op = Opcode::ALL[op];
        match op {
            Opcode::Signal | Opcode::Wait => Instruction::handshake(op, Peg(peg), a.min(4094)),
            Opcode::Nop => Instruction::new(op, Peg(peg), NONE, NONE, NONE),
            _ => Instruction::new(op, Peg(peg), a, b, c),
        }
    })
}

proptest! {
    #[test]
    fn isa_round_trips(program in prop::collection::vec(instruction(), 1..40)) {
        for ins in &program {
            prop_assert!(ins.encode() < 1 << 44);
            prop_assert_eq!(Instruction::decode(ins.encode()).unwrap(), *ins);
        }
        let text = disassemble(&program);
        prop_assert_eq!(assemble(&text).unwrap(), program);
    }
}

/// A tiny machine image: weights and activations, descriptors over both.
struct Image {
    descriptors: Vec<Descriptor>,
    weights: Vec<i16>,
    activations: Vec<i16>,
    inputs: Vec<(Descriptor, Vec<f64>)>,
}

impl Image {
    fn new() -> Self {
        Self {
            descriptors: Vec::new(),
            weights: Vec::new(),
            activations: Vec::new(),
            inputs: Vec::new(),
        }
    }

    fn weight(&mut self, values: &[f32], rows: usize, cols: usize) -> u16 {
        let base = self.weights.len();
        self.weights.extend(fp().quantize_all(values));
        self.descriptors.push(Descriptor {
            space: Space::Weights,
            base,
            rows,
            cols,
            stride: cols,
        });
        (self.descriptors.len() - 1) as u16
    }

    /// An activation matrix; `values` given means the host writes it before the run.
    fn activation(&mut self, values: Option<&[f32]>, rows: usize, cols: usize) -> u16 {
        let base = self.activations.len();
        let d = Descriptor {
            space: Space::Activations,
            base,
            rows,
            cols,
            stride: cols,
        };
        match values {
            Some(v) => {
                self.activations.extend(fp().quantize_all(v));
                self.inputs.push((d, vec![0.0; rows * cols]));
            }
            None => self.activations.extend(vec![0i16; rows * cols]),
        }
        self.descriptors.push(d);
        (self.descriptors.len() - 1) as u16
    }

    fn program(&self, text: &str) -> Program {
        Program {
            descriptors: self.descriptors.clone(),
            weights: self.weights.clone(),
            weight_error: 0.0,
            activations: self.activations.clone(),
            inputs: self.inputs.clone(),
            instructions: assemble(text).unwrap(),
        }
    }

    fn read(&self, result: &[i16], d: u16) -> Vec<i16> {
        let d = self.descriptors[d as usize];
        (0..d.rows)
            .flat_map(|r| (0..d.cols).map(move |c| result[d.base + r * d.stride + c]))
            .collect()
    }
}

fn values(n: usize, seed: f32) -> Vec<f32> {
    (0..n)
        .map(|i| (i as f32 * 0.731 + seed).sin() * 1.5)
        .collect()
}

#[test]
fn each_instruction_computes_its_definition() {
    let f = fp();
    let mut m = Image::new();
    let a = m.activation(Some(&values(12, 0.3)), 3, 4);
    let w = m.weight(&values(8, 1.1), 4, 2);
    let bias = m.weight(&[0.25, -0.5], 1, 2);
    let k = m.weight(&[0.5], 1, 1);
    let mm = m.activation(None, 3, 2);
    let added = m.activation(None, 3, 2);
    let scaled = m.activation(None, 3, 4);
    let gelu_out = m.activation(None, 3, 4);
    let relu_out = m.activation(None, 3, 4);
    let scores = m.activation(None, 3, 3);
    let probs = m.activation(None, 3, 3);
    let attended = m.activation(None, 3, 4);
    let norm = m.weight(&[1.0, 0.5, 2.0, 1.0, 0.0, 0.1, -0.1, 0.0], 2, 4);
    let normed = m.activation(None, 3, 4);
    let text = format!(
        "matmul p00 d{a}, d{w} -> d{mm}\n\
         add p00 d{mm}, d{bias} -> d{added}\n\
         mulc p01 d{a}, d{k} -> d{scaled}\n\
         gelu p10 d{a}, - -> d{gelu_out}\n\
         relu p11 d{a}, - -> d{relu_out}\n\
         matmul.bt p01 d{a}, d{a} -> d{scores}\n\
         softmax p01 d{scores}, - -> d{probs}\n\
         smv p01 d{scores}, d{a} -> d{attended}\n\
         layernorm p11 d{a}, d{norm} -> d{normed}\n"
    );
    let program = m.program(&text);
    let result = run(&program, &f).unwrap();
    let out = |d| m.read(&result.activations, d);
    let (av, wv) = (m.read(&program.activations, a), m.weights[..8].to_vec());
    let expected_mm = fixed::matmul(&f, &av, &wv, [3, 4, 2], 10).unwrap();
    assert_eq!(out(mm), expected_mm);
    let bias_raw = [f.quantize(0.25), f.quantize(-0.5)];
    let expected_add: Vec<i16> = expected_mm
        .iter()
        .enumerate()
        .map(|(i, &x)| x + bias_raw[i % 2])
        .collect();
    assert_eq!(out(added), expected_add);
    assert_eq!(
        out(scaled),
        av.iter()
            .map(|&x| f.narrow(x as i64 * 512, 10))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        out(relu_out),
        av.iter().map(|&x| x.max(0)).collect::<Vec<_>>()
    );
    for (g, &x) in out(gelu_out).iter().zip(&av) {
        let x = f.format.to_f32(x) as f64;
        assert!(
            (f.format.to_f32(*g) as f64 - gelu(x)).abs() < 0.2,
            "gelu({x})"
        );
    }
    let expected_scores =
        fixed::matmul(&f, &av, &fixed::transpose(&av, 3, 4), [3, 4, 3], 10).unwrap();
    assert_eq!(out(scores), expected_scores);
    let mut expected_probs = vec![0i16; 9];
    for (row, o) in expected_scores.chunks(3).zip(expected_probs.chunks_mut(3)) {
        fixed::shift_softmax_row(&f, row, &[true; 3], o);
    }
    assert_eq!(out(probs), expected_probs);
    assert_eq!(
        out(attended),
        fixed::matmul(&f, &expected_probs, &av, [3, 3, 4], 10).unwrap()
    );
    let gamma = [1.0, 0.5, 2.0, 1.0];
    let beta = [0.0, 0.1, -0.1, 0.0];
    for (r, row) in out(normed).chunks(4).enumerate() {
        let x: Vec<f64> = av[r * 4..r * 4 + 4]
            .iter()
            .map(|&v| f.format.to_f32(v) as f64)
            .collect();
        let mean = x.iter().sum::<f64>() / 4.0;
        let sd = (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 4.0).sqrt();
        for j in 0..4 {
            let want = (x[j] - mean) / sd * gamma[j] + beta[j];
            assert!(
                (f.format.to_f32(row[j]) as f64 - want).abs() < 4e-3,
                "layernorm row {r}"
            );
        }
    }
    assert!(trace::check(&result.records).is_ok());
}

#[test]
fn reading_a_result_still_in_flight_is_a_hazard() {
    let mut m = Image::new();
    let a = m.activation(Some(&values(64 * 64, 0.1)), 64, 64);
    let big = m.activation(None, 64, 64);
    let copy = m.activation(None, 64, 64);
    let program = m.program(&format!(
        "matmul p00 d{a}, d{a} -> d{big}\ncopy p01 d{big}, - -> d{copy}\n"
    ));
    let err = run(&program, &fp()).unwrap_err();
    assert!(
        matches!(
            err,
            AccelError::Hazard {
                kind: HazardKind::ReadBeforeValid,
                index: 1,
                writer: Some(0),
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("before it is valid"), "{err}");
}

#[test]
fn a_handshake_orders_groups_and_the_checker_sees_its_absence() {
    let mut m = Image::new();
    let a = m.activation(Some(&values(4, 0.1)), 2, 2);
    let b = m.activation(None, 2, 2);
    let c = m.activation(None, 2, 2);
    let with = m.program(&format!(
        "copy p00 d{a}, - -> d{b}\nsignal p00 s0\nwait p01 s0\ncopy p01 d{b}, - -> d{c}\n"
    ));
    let result = run(&with, &fp()).unwrap();
    assert!(trace::check(&result.records).is_ok());
    assert_eq!(m.read(&result.activations, c), m.read(&with.activations, a));
    // Without the handshake the consumer happens to start late enough (queued behind nops),
    // so the machine runs, but the checker rejects the unordered read.
    let without = m.program(&format!(
        "copy p00 d{a}, - -> d{b}\nnop p01\nnop p01\nnop p01\ncopy p01 d{b}, - -> d{c}\n"
    ));
    let result = run(&without, &fp()).unwrap();
    let err = trace::check(&result.records).unwrap_err();
    assert!(err.contains("no handshake"), "{err}");
}

#[test]
fn waiting_for_a_signal_nobody_sends_is_a_deadlock_error() {
    let mut m = Image::new();
    let a = m.activation(Some(&values(4, 0.1)), 2, 2);
    let b = m.activation(None, 2, 2);
    let program = m.program(&format!("wait p00 s7\ncopy p00 d{a}, - -> d{b}\n"));
    let err = run(&program, &fp()).unwrap_err();
    assert!(matches!(err, AccelError::Deadlock { .. }), "{err}");
}

#[test]
fn bad_programs_are_refused_before_running() {
    let mut m = Image::new();
    let a = m.activation(Some(&values(6, 0.1)), 2, 3);
    let w = m.weight(&values(6, 0.2), 2, 3);
    let c = m.activation(None, 2, 3);
    for text in [
        format!("matmul p00 d{a}, d{w} -> d{c}"),
        format!("copy p00 d{a}, - -> d{w}"),
        format!("copy p00 d{a}, - -> d99"),
    ] {
        assert!(run(&m.program(&text), &fp()).is_err(), "{text}");
    }
}

/// A deterministic pseudo-random stream.
struct Lcg(u64);

impl Lcg {
    fn normal(&mut self) -> f32 {
        let mut uniform = || {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let (u, v) = (uniform(), uniform());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }

    fn matrix(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.normal() * scale).collect()
    }
}

fn random_encoder(
    hidden: usize,
    heads: usize,
    inter: usize,
    layers: usize,
    seed: u64,
) -> EncoderWeights {
    let mut r = Lcg(seed);
    let mut linear =
        |i: usize, o: usize| (r.matrix(i * o, (1.0 / i as f32).sqrt()), r.matrix(o, 0.05));
    let layers = (0..layers)
        .map(|_| LayerWeights {
            ln_before: (vec![1.0; hidden], vec![0.0; hidden]),
            query: linear(hidden, hidden),
            key: linear(hidden, hidden),
            value: linear(hidden, hidden),
            output: linear(hidden, hidden),
            ln_after: (vec![1.0; hidden], vec![0.0; hidden]),
            intermediate: linear(hidden, inter),
            ffn_output: linear(inter, hidden),
        })
        .collect();
    EncoderWeights {
        hidden,
        heads,
        intermediate: inter,
        layers,
        final_ln: Some((vec![1.0; hidden], vec![0.0; hidden])),
    }
}

/// The exact encoder in f64 (exact softmax, GELU, layer norm): the reference.
fn reference(w: &EncoderWeights, input: &[f32], tokens: usize) -> Vec<f64> {
    let h = w.hidden;
    let dh = h / w.heads;
    let ln = |x: &[f64], (g, b): &(Vec<f32>, Vec<f32>)| -> Vec<f64> {
        x.chunks(h)
            .flat_map(|row| {
                let mean = row.iter().sum::<f64>() / h as f64;
                let sd =
                    (row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / h as f64 + 1e-12).sqrt();
                row.iter()
                    .enumerate()
                    .map(move |(j, v)| (v - mean) / sd * g[j] as f64 + b[j] as f64)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let linear = |x: &[f64], (wm, b): &(Vec<f32>, Vec<f32>), i: usize, o: usize| -> Vec<f64> {
        x.chunks(i)
            .flat_map(|row| {
                (0..o).map(move |c| {
                    b[c] as f64 + (0..i).map(|k| row[k] * wm[k * o + c] as f64).sum::<f64>()
                })
            })
            .collect()
    };
    let mut x: Vec<f64> = input.iter().map(|&v| v as f64).collect();
    for layer in &w.layers {
        let n1 = ln(&x, &layer.ln_before);
        let (q, k, v) = (
            linear(&n1, &layer.query, h, h),
            linear(&n1, &layer.key, h, h),
            linear(&n1, &layer.value, h, h),
        );
        let mut ctx = vec![0.0; tokens * h];
        for head in 0..w.heads {
            for i in 0..tokens {
                let s: Vec<f64> = (0..tokens)
                    .map(|j| {
                        (0..dh)
                            .map(|d| q[i * h + head * dh + d] * k[j * h + head * dh + d])
                            .sum::<f64>()
                            / (dh as f64).sqrt()
                    })
                    .collect();
                let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|v| (v - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                for d in 0..dh {
                    ctx[i * h + head * dh + d] = (0..tokens)
                        .map(|j| e[j] / sum * v[j * h + head * dh + d])
                        .sum();
                }
            }
        }
        let att = linear(&ctx, &layer.output, h, h);
        let x1: Vec<f64> = x.iter().zip(&att).map(|(a, b)| a + b).collect();
        let n2 = ln(&x1, &layer.ln_after);
        let ff: Vec<f64> = linear(&n2, &layer.intermediate, h, w.intermediate)
            .into_iter()
            .map(gelu)
            .collect();
        let ff2 = linear(&ff, &layer.ffn_output, w.intermediate, h);
        x = x1.iter().zip(&ff2).map(|(a, b)| a + b).collect();
    }
    match &w.final_ln {
        Some(p) => ln(&x, p),
        None => x,
    }
}

#[test]
fn compiled_encoder_stays_within_its_derived_bound() {
    for (hidden, heads, tokens, layers, tile) in
        [(32, 4, 20, 2, 8), (24, 6, 13, 1, 16), (16, 2, 9, 3, 4)]
    {
        let weights = random_encoder(hidden, heads, 2 * hidden, layers, hidden as u64);
        let input = Lcg(7).matrix(tokens * hidden, 1.0);
        let f = fp();
        let compiled = compile(&weights, &input, tokens, &f, tile).unwrap();
        let result = run(&compiled.program, &f).unwrap();
        trace::check(&result.records).unwrap();
        let want = reference(&weights, &input, tokens);
        let out = compiled.output;
        let (mut err2, mut bound2, mut norm2) = (0.0, 0.0, 0.0);
        for (i, w) in want.iter().enumerate() {
            let word = out.base + (i / hidden) * out.stride + i % hidden;
            let got = f.format.to_f32(result.activations[word]) as f64;
            err2 += (got - w).powi(2);
            let bound = LAMBDA * result.activation_error[word];
            bound2 += bound * bound;
            norm2 += w * w;
            assert!(
                (got - w).abs() <= bound,
                "element {i}: {got} vs {w}, bound {bound}"
            );
        }
        let (rel, rel_bound) = ((err2 / norm2).sqrt(), (bound2 / norm2).sqrt());
        eprintln!("hidden {hidden} heads {heads} tokens {tokens} layers {layers}: rel error {rel:.3e}, bound {rel_bound:.3e}");
        assert!(rel <= rel_bound);
        assert!(rel < 0.1, "{rel}");
        assert!(result.pegs.iter().all(|p| p.utilization > 0.0));
    }
}
