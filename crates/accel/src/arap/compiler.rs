//! Lowers a ViT encoder (weights in f32, any size) into an ARAP program: descriptors, memory
//! images and the instruction stream with its handshakes.
//!
//! Schedule of one layer:
//! - **phase A, heads in parallel**: head h runs on PEG h mod 4 (more than four heads are
//!   time-multiplexed): its slices of the Q, K and V projections (the survey's eq. 1-3),
//!   `Q_h / sqrt(d)`, `S = Q_h K_h^T`, then `smv` (softmax overlapped with `S V_h`) into its
//!   columns of the context. Each of PEG01, PEG10 and PEG11 signals PEG00 when its heads are
//!   done.
//! - **phase B, attention and FFN groups**: over tiles of token rows, PEG00 computes the
//!   output projection, the residual and layernorm_after of tile t and signals PEG10, which
//!   runs the FFN, the second residual and the next layer's layernorm_before on tile t while
//!   PEG00 already works on tile t+1 (and reconfigures in between). When all tiles are done
//!   PEG10 releases the other three groups into the next layer.
//!
//! A prologue on PEG10 computes the first layernorm_before; the last layer's PEG10 applies the
//! final layernorm instead. Activations ping-pong between two hidden-state buffers, so a group
//! never overwrites rows another still reads.

use edgerun_tensor::fixed::FixedPoint;

use super::bound;
use super::isa::{Instruction, Opcode, Peg, FIELD_MAX, NONE};
use super::machine::{Descriptor, Program, Space};
use crate::{AccelError, Result};

/// One encoder layer of a Hugging Face ViT; matrices are `[in, out]`, row-major.
#[derive(Clone, Debug)]
pub struct LayerWeights {
    pub ln_before: (Vec<f32>, Vec<f32>),
    pub query: (Vec<f32>, Vec<f32>),
    pub key: (Vec<f32>, Vec<f32>),
    pub value: (Vec<f32>, Vec<f32>),
    pub output: (Vec<f32>, Vec<f32>),
    pub ln_after: (Vec<f32>, Vec<f32>),
    pub intermediate: (Vec<f32>, Vec<f32>),
    pub ffn_output: (Vec<f32>, Vec<f32>),
}

#[derive(Clone, Debug)]
pub struct EncoderWeights {
    pub hidden: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub layers: Vec<LayerWeights>,
    /// The encoder's final layernorm, applied after the last layer when present.
    pub final_ln: Option<(Vec<f32>, Vec<f32>)>,
}

/// A compiled encoder and where its output lands.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub program: Program,
    pub output: Descriptor,
}

struct Builder {
    fp: FixedPoint,
    descriptors: Vec<Descriptor>,
    weights: Vec<i16>,
    activations: usize,
    instructions: Vec<Instruction>,
    semaphores: u16,
}

impl Builder {
    fn descriptor(&mut self, d: Descriptor) -> Result<u16> {
        if self.descriptors.len() >= FIELD_MAX as usize {
            return Err(AccelError::Config(format!(
                "the program needs more than {} descriptors (12-bit fields); compile fewer layers with --layers",
                FIELD_MAX
            )));
        }
        self.descriptors.push(d);
        Ok((self.descriptors.len() - 1) as u16)
    }

    fn weight(&mut self, values: &[f32], rows: usize, cols: usize) -> Result<u16> {
        let base = self.weights.len();
        self.weights.extend(self.fp.quantize_all(values));
        self.descriptor(Descriptor {
            space: Space::Weights,
            base,
            rows,
            cols,
            stride: cols,
        })
    }

    fn activation(&mut self, rows: usize, cols: usize) -> Result<u16> {
        let base = self.activations;
        self.activations += rows * cols;
        self.descriptor(Descriptor {
            space: Space::Activations,
            base,
            rows,
            cols,
            stride: cols,
        })
    }

    /// Rows `row0..row0+rows`, columns `col0..col0+cols` of descriptor `of`.
    fn view(&mut self, of: u16, row0: usize, rows: usize, col0: usize, cols: usize) -> Result<u16> {
        let d = self.descriptors[of as usize];
        self.descriptor(Descriptor {
            base: d.base + row0 * d.stride + col0,
            rows,
            cols,
            ..d
        })
    }

    fn emit(&mut self, op: Opcode, peg: Peg, a: u16, b: u16, c: u16) {
        self.instructions.push(Instruction::new(op, peg, a, b, c));
    }

    fn semaphore(&mut self) -> Result<u16> {
        if self.semaphores >= FIELD_MAX {
            return Err(AccelError::Config(
                "the program needs more than 4095 semaphores".into(),
            ));
        }
        self.semaphores += 1;
        Ok(self.semaphores - 1)
    }

    fn signal(&mut self, peg: Peg, s: u16) {
        self.instructions
            .push(Instruction::handshake(Opcode::Signal, peg, s));
    }

    fn wait(&mut self, peg: Peg, s: u16) {
        self.instructions
            .push(Instruction::handshake(Opcode::Wait, peg, s));
    }

    /// A layernorm's parameters as one 2 x H descriptor (gamma, beta).
    fn norm(&mut self, (gamma, beta): &(Vec<f32>, Vec<f32>)) -> Result<u16> {
        let both: Vec<f32> = gamma.iter().chain(beta).copied().collect();
        self.weight(&both, 2, gamma.len())
    }
}

const PEG00: Peg = Peg(0);
const PEG01: Peg = Peg(1);
const PEG10: Peg = Peg(2);
const PEG11: Peg = Peg(3);

/// Compiles `weights` for an input of `tokens x hidden` values (the embeddings' output).
pub fn compile(
    weights: &EncoderWeights,
    input: &[f32],
    tokens: usize,
    fp: &FixedPoint,
    tile_rows: usize,
) -> Result<Compiled> {
    let (h, heads, inter) = (weights.hidden, weights.heads, weights.intermediate);
    if heads == 0 || h % heads != 0 || input.len() != tokens * h || tokens == 0 {
        return Err(AccelError::Shape {
            what: "ARAP encoder input",
            expected: format!("{tokens} x {h} values, {h} divisible by {heads} heads"),
            got: format!("{} values", input.len()),
        });
    }
    let dh = h / heads;
    let tile_rows = tile_rows.max(1);
    let mut b = Builder {
        fp: *fp,
        descriptors: Vec::new(),
        weights: Vec::new(),
        activations: 0,
        instructions: Vec::new(),
        semaphores: 0,
    };

    // Activations, shared by every layer.
    let x = [b.activation(tokens, h)?, b.activation(tokens, h)?];
    let ln1 = b.activation(tokens, h)?;
    let (q, k, v, ctx) = (
        b.activation(tokens, h)?,
        b.activation(tokens, h)?,
        b.activation(tokens, h)?,
        b.activation(tokens, h)?,
    );
    let scores: Vec<u16> = (0..4)
        .map(|_| b.activation(tokens, tokens))
        .collect::<Result<_>>()?;
    let (att, x1, ln2) = (
        b.activation(tokens, h)?,
        b.activation(tokens, h)?,
        b.activation(tokens, h)?,
    );
    let (ff1, ff2) = (b.activation(tokens, inter)?, b.activation(tokens, h)?);
    let out = b.activation(tokens, h)?;
    let head_cols = |b: &mut Builder, of: u16, head: usize| b.view(of, 0, tokens, head * dh, dh);
    let (qh, kh, vh, ch): (Vec<u16>, Vec<u16>, Vec<u16>, Vec<u16>) = {
        let mut views = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
        for head in 0..heads {
            for (slot, of) in [q, k, v, ctx].into_iter().enumerate() {
                views[slot].push(head_cols(&mut b, of, head)?);
            }
        }
        let [a, bb, c, d] = views;
        (a, bb, c, d)
    };
    struct Tile {
        rows: [u16; 2],
        ln1: u16,
        ctx: u16,
        att: u16,
        x1: u16,
        ln2: u16,
        ff1: u16,
        ff2: u16,
        out: u16,
    }
    let mut tiles = Vec::new();
    for row0 in (0..tokens).step_by(tile_rows) {
        let n = tile_rows.min(tokens - row0);
        tiles.push(Tile {
            rows: [b.view(x[0], row0, n, 0, h)?, b.view(x[1], row0, n, 0, h)?],
            ln1: b.view(ln1, row0, n, 0, h)?,
            ctx: b.view(ctx, row0, n, 0, h)?,
            att: b.view(att, row0, n, 0, h)?,
            x1: b.view(x1, row0, n, 0, h)?,
            ln2: b.view(ln2, row0, n, 0, h)?,
            ff1: b.view(ff1, row0, n, 0, inter)?,
            ff2: b.view(ff2, row0, n, 0, h)?,
            out: b.view(out, row0, n, 0, h)?,
        });
    }
    let scale = b.weight(&[1.0 / (dh as f32).sqrt()], 1, 1)?;

    // Prologue: PEG10 normalises the input, then releases the other groups.
    let first_ln = match weights.layers.first() {
        Some(layer) => Some(b.norm(&layer.ln_before)?),
        None => None,
    };
    let release = b.semaphore()?;
    if let Some(norm) = first_ln {
        for tile in &tiles {
            b.emit(Opcode::LayerNorm, PEG10, tile.rows[0], norm, tile.ln1);
        }
    }
    for _ in 0..3 {
        b.signal(PEG10, release);
    }
    let mut release = release;

    for (l, layer) in weights.layers.iter().enumerate() {
        let (cur, next) = (l % 2, (l + 1) % 2);
        for peg in [PEG00, PEG01, PEG11] {
            b.wait(peg, release);
        }
        // Phase A: heads in parallel.
        let heads_done = b.semaphore()?;
        for head in 0..heads {
            let peg = Peg((head % 4) as u8);
            let pe_scores = scores[head % 4];
            for (proj, target) in [
                (&layer.query, qh[head]),
                (&layer.key, kh[head]),
                (&layer.value, vh[head]),
            ] {
                let w = slice_columns(&proj.0, h, head * dh, dh);
                let wd = b.weight(&w, h, dh)?;
                let bd = b.weight(&proj.1[head * dh..(head + 1) * dh], 1, dh)?;
                b.emit(Opcode::Matmul, peg, ln1, wd, target);
                b.emit(Opcode::Add, peg, target, bd, target);
            }
            b.emit(Opcode::MulC, peg, qh[head], scale, qh[head]);
            b.emit(Opcode::MatmulBt, peg, qh[head], kh[head], pe_scores);
            b.emit(Opcode::SoftmaxMv, peg, pe_scores, vh[head], ch[head]);
        }
        for peg in [PEG01, PEG10, PEG11] {
            b.signal(peg, heads_done);
        }
        for _ in 0..3 {
            b.wait(PEG00, heads_done);
        }
        // Phase B: PEG00 attention output, PEG10 FFN, tile by tile.
        let wo = b.weight(&layer.output.0, h, h)?;
        let bo = b.weight(&layer.output.1, 1, h)?;
        let ln_after = b.norm(&layer.ln_after)?;
        let w1 = b.weight(&layer.intermediate.0, h, inter)?;
        let b1 = b.weight(&layer.intermediate.1, 1, inter)?;
        let w2 = b.weight(&layer.ffn_output.0, inter, h)?;
        let b2 = b.weight(&layer.ffn_output.1, 1, h)?;
        let last = l + 1 == weights.layers.len();
        let next_ln = match (last, weights.layers.get(l + 1), &weights.final_ln) {
            (false, Some(n), _) => Some(b.norm(&n.ln_before)?),
            (true, _, Some(f)) => Some(b.norm(f)?),
            _ => None,
        };
        let tile_ready = b.semaphore()?;
        for tile in &tiles {
            b.emit(Opcode::Matmul, PEG00, tile.ctx, wo, tile.att);
            b.emit(Opcode::Add, PEG00, tile.att, bo, tile.att);
            b.emit(Opcode::Add, PEG00, tile.att, tile.rows[cur], tile.x1);
            b.emit(Opcode::LayerNorm, PEG00, tile.x1, ln_after, tile.ln2);
            b.signal(PEG00, tile_ready);
        }
        for tile in &tiles {
            b.wait(PEG10, tile_ready);
            b.emit(Opcode::Matmul, PEG10, tile.ln2, w1, tile.ff1);
            b.emit(Opcode::Add, PEG10, tile.ff1, b1, tile.ff1);
            b.emit(Opcode::Gelu, PEG10, tile.ff1, NONE, tile.ff1);
            b.emit(Opcode::Matmul, PEG10, tile.ff1, w2, tile.ff2);
            b.emit(Opcode::Add, PEG10, tile.ff2, b2, tile.ff2);
            b.emit(Opcode::Add, PEG10, tile.ff2, tile.x1, tile.rows[next]);
            match (last, next_ln) {
                (false, Some(norm)) => {
                    b.emit(Opcode::LayerNorm, PEG10, tile.rows[next], norm, tile.ln1)
                }
                (true, Some(norm)) => {
                    b.emit(Opcode::LayerNorm, PEG10, tile.rows[next], norm, tile.out)
                }
                (true, None) => b.emit(Opcode::Copy, PEG10, tile.rows[next], NONE, tile.out),
                (false, None) => {}
            }
        }
        release = b.semaphore()?;
        for _ in 0..3 {
            b.signal(PEG10, release);
        }
    }
    if weights.layers.is_empty() {
        for tile in &tiles {
            b.emit(Opcode::Copy, PEG10, tile.rows[0], NONE, tile.out);
        }
    }

    let mut activations = vec![0i16; b.activations];
    let input_desc = b.descriptors[x[0] as usize];
    let quantised = fp.quantize_all(input);
    let input_error = quantised
        .iter()
        .zip(input)
        .map(|(&q, &x)| (fp.format.to_f32(q) as f64 - x as f64).abs())
        .collect();
    for (i, value) in quantised.into_iter().enumerate() {
        activations[input_desc.base + i] = value;
    }
    let output = b.descriptors[out as usize];
    Ok(Compiled {
        program: Program {
            descriptors: b.descriptors,
            weights: b.weights,
            weight_error: bound::rho(fp),
            activations,
            inputs: vec![(input_desc, input_error)],
            instructions: b.instructions,
        },
        output,
    })
}

fn slice_columns(matrix: &[f32], rows: usize, col0: usize, cols: usize) -> Vec<f32> {
    let stride = matrix.len() / rows.max(1);
    (0..rows)
        .flat_map(|r| {
            matrix[r * stride + col0..r * stride + col0 + cols]
                .iter()
                .copied()
        })
        .collect()
}
