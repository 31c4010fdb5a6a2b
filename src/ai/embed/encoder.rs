//! The BERT encoder of all-MiniLM-L6-v2 for CPU inference on packed sequences: the tokens of
//! a batch's texts sit one after another (no padding), so the dense layers run one matrix
//! product over exactly the real tokens and attention runs per text. Same weights and same
//! arithmetic as candle-transformers' `BertModel` (and torch's), in fewer passes over memory;
//! see kernels.rs for why.

use super::kernels::{attention, fill_rows, gelu, layer_norm, matmul_add};
use candle_core::Tensor;
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{Config, HiddenAct};
use gemm::Parallelism;
use rayon::prelude::*;

/// A dense layer with its weight stored `inputs × outputs` row-major (transposed from the
/// file's `outputs × inputs`), the layout gemm reads fastest.
struct Dense {
    weight: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
}

impl Dense {
    fn load(vb: &VarBuilder, names: &[&str]) -> candle_core::Result<Self> {
        let weights = names
            .iter()
            .map(|name| vb.pp(*name).get_unchecked("weight"))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let biases = names
            .iter()
            .map(|name| vb.pp(*name).get_unchecked("bias"))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let weight = Tensor::cat(&weights, 0)?.t()?.contiguous()?;
        let inputs = weight.dim(0)?;
        Ok(Self {
            weight: weight.flatten_all()?.to_vec1()?,
            bias: Tensor::cat(&biases, 0)?.to_vec1()?,
            inputs,
        })
    }

    fn outputs(&self) -> usize {
        self.bias.len()
    }

    /// `x · W + b` for `rows` rows of `x`.
    fn forward(&self, x: &[f32], rows: usize, par: Parallelism) -> Vec<f32> {
        let mut out = vec![0.0; rows * self.outputs()];
        fill_rows(&mut out, &self.bias);
        matmul_add(
            &mut out,
            x,
            &self.weight,
            rows,
            self.inputs,
            self.outputs(),
            par,
        );
        out
    }

    /// `residual += x · W + b`.
    fn add_to(&self, residual: &mut [f32], x: &[f32], rows: usize, par: Parallelism) {
        super::kernels::add_rows(residual, &self.bias);
        matmul_add(
            residual,
            x,
            &self.weight,
            rows,
            self.inputs,
            self.outputs(),
            par,
        );
    }
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

impl Norm {
    fn load(vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            gamma: vb.get_unchecked("weight")?.to_vec1()?,
            beta: vb.get_unchecked("bias")?.to_vec1()?,
        })
    }
}

struct Layer {
    /// Query, key and value in one product.
    qkv: Dense,
    attention_out: Dense,
    attention_norm: Norm,
    up: Dense,
    down: Dense,
    out_norm: Norm,
}

impl Layer {
    fn load(vb: VarBuilder) -> candle_core::Result<Self> {
        let attention = vb.pp("attention");
        Ok(Self {
            qkv: Dense::load(&attention.pp("self"), &["query", "key", "value"])?,
            attention_out: Dense::load(&attention, &["output.dense"])?,
            attention_norm: Norm::load(attention.pp("output.LayerNorm"))?,
            up: Dense::load(&vb, &["intermediate.dense"])?,
            down: Dense::load(&vb, &["output.dense"])?,
            out_norm: Norm::load(vb.pp("output.LayerNorm"))?,
        })
    }
}

pub struct Encoder {
    /// `vocab × hidden`, `positions × hidden`.
    words: Vec<f32>,
    positions: Vec<f32>,
    /// Token type 0's row: every token here is of type 0 (one text per sequence).
    token_type: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    eps: f32,
}

impl Encoder {
    /// Reads the weights (names as in the Hugging Face checkpoint, with or without `bert.`).
    pub fn load(vb: VarBuilder, config: &Config) -> candle_core::Result<Self> {
        if config.hidden_act != HiddenAct::Gelu {
            candle_core::bail!("only the erf GELU activation is implemented");
        }
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") {
            vb
        } else {
            vb.pp("bert")
        };
        let embeddings = vb.pp("embeddings");
        let table = |name: &str| -> candle_core::Result<Vec<f32>> {
            embeddings
                .pp(name)
                .get_unchecked("weight")?
                .flatten_all()?
                .to_vec1()
        };
        let token_types = embeddings
            .pp("token_type_embeddings")
            .get_unchecked("weight")?;
        let encoder = Self {
            words: table("word_embeddings")?,
            positions: table("position_embeddings")?,
            token_type: token_types.get(0)?.to_vec1()?,
            embedding_norm: Norm::load(embeddings.pp("LayerNorm"))?,
            layers: (0..config.num_hidden_layers)
                .map(|i| Layer::load(vb.pp(format!("encoder.layer.{i}"))))
                .collect::<candle_core::Result<_>>()?,
            hidden: config.hidden_size,
            heads: config.num_attention_heads,
            eps: config.layer_norm_eps as f32,
        };
        let h = encoder.hidden;
        if !encoder.words.len().is_multiple_of(h)
            || !encoder.positions.len().is_multiple_of(h)
            || encoder.token_type.len() != h
        {
            candle_core::bail!("the embedding tables do not match hidden_size {h}");
        }
        Ok(encoder)
    }

    /// The mean of each sequence's last hidden states (not yet normalised), one per sequence.
    /// `threads > 1` splits the matrix products over the current rayon pool.
    pub fn mean_pooled(
        &self,
        sequences: &[&[u32]],
        threads: usize,
    ) -> candle_core::Result<Vec<Vec<f32>>> {
        let par = if threads > 1 {
            Parallelism::Rayon(threads)
        } else {
            Parallelism::None
        };
        let lens: Vec<usize> = sequences.iter().map(|s| s.len()).collect();
        let rows: usize = lens.iter().sum();
        let mut x = self.embed(sequences)?;
        let mut scores = Vec::new();
        for layer in &self.layers {
            let qkv = layer.qkv.forward(&x, rows, par);
            let ctx = self.attend(&qkv, &lens, threads, &mut scores);
            layer.attention_out.add_to(&mut x, &ctx, rows, par);
            self.norm(&mut x, &layer.attention_norm, threads);
            let mut up = layer.up.forward(&x, rows, par);
            for_chunks(&mut up, layer.up.outputs(), threads, gelu);
            layer.down.add_to(&mut x, &up, rows, par);
            self.norm(&mut x, &layer.out_norm, threads);
        }
        Ok(self.pool(&x, &lens))
    }

    /// Word + position + token type embeddings, layer-normed.
    fn embed(&self, sequences: &[&[u32]]) -> candle_core::Result<Vec<f32>> {
        let h = self.hidden;
        let vocab = self.words.len() / h;
        let max_positions = self.positions.len() / h;
        let mut x = Vec::with_capacity(sequences.iter().map(|s| s.len()).sum::<usize>() * h);
        for sequence in sequences {
            if sequence.len() > max_positions {
                candle_core::bail!(
                    "{} tokens, the model takes at most {max_positions}",
                    sequence.len()
                );
            }
            for (position, &id) in sequence.iter().enumerate() {
                let id = id as usize;
                if id >= vocab {
                    candle_core::bail!("token id {id} outside the vocabulary ({vocab})");
                }
                let word = &self.words[id * h..(id + 1) * h];
                let place = &self.positions[position * h..(position + 1) * h];
                x.extend(
                    word.iter()
                        .zip(place)
                        .zip(&self.token_type)
                        .map(|((w, p), t)| w + p + t),
                );
            }
        }
        layer_norm(
            &mut x,
            &self.embedding_norm.gamma,
            &self.embedding_norm.beta,
            self.eps,
        );
        Ok(x)
    }

    /// Self-attention per sequence (in parallel over sequences when `threads > 1`).
    fn attend(
        &self,
        qkv: &[f32],
        lens: &[usize],
        threads: usize,
        scores: &mut Vec<f32>,
    ) -> Vec<f32> {
        let h = self.hidden;
        let head_dim = h / self.heads;
        let mut ctx = vec![0.0; qkv.len() / 3];
        let pieces = split_rows(qkv, &mut ctx, lens, h);
        if threads > 1 {
            pieces
                .into_par_iter()
                .for_each_init(Vec::new, |scores, (len, qkv, ctx)| {
                    attention(qkv, ctx, len, self.heads, head_dim, scores)
                });
        } else {
            for (len, qkv, ctx) in pieces {
                attention(qkv, ctx, len, self.heads, head_dim, scores);
            }
        }
        ctx
    }

    fn norm(&self, x: &mut [f32], norm: &Norm, threads: usize) {
        for_chunks(x, self.hidden, threads, |rows| {
            layer_norm(rows, &norm.gamma, &norm.beta, self.eps)
        });
    }

    fn pool(&self, x: &[f32], lens: &[usize]) -> Vec<Vec<f32>> {
        let h = self.hidden;
        let mut start = 0;
        lens.iter()
            .map(|&len| {
                let mut mean = vec![0.0f32; h];
                for row in x[start * h..(start + len) * h].chunks_exact(h) {
                    mean.iter_mut().zip(row).for_each(|(m, v)| *m += v);
                }
                start += len;
                mean.iter_mut().for_each(|m| *m /= len.max(1) as f32);
                mean
            })
            .collect()
    }
}

/// Each sequence's rows of `qkv` (3·hidden wide) and of `ctx` (hidden wide).
fn split_rows<'a>(
    mut qkv: &'a [f32],
    mut ctx: &'a mut [f32],
    lens: &[usize],
    hidden: usize,
) -> Vec<(usize, &'a [f32], &'a mut [f32])> {
    let mut pieces = Vec::with_capacity(lens.len());
    for &len in lens {
        let (q, q_rest) = qkv.split_at(len * 3 * hidden);
        let (c, c_rest) = std::mem::take(&mut ctx).split_at_mut(len * hidden);
        pieces.push((len, q, c));
        qkv = q_rest;
        ctx = c_rest;
    }
    pieces
}

/// Runs `kernel` over whole rows of `xs`, split over the rayon pool when `threads > 1`.
fn for_chunks(
    xs: &mut [f32],
    row: usize,
    threads: usize,
    kernel: impl Fn(&mut [f32]) + Sync + Send,
) {
    if threads > 1 {
        let rows = (xs.len() / row).div_ceil(threads * 4).max(1);
        xs.par_chunks_mut(rows * row).for_each(kernel);
    } else {
        kernel(xs);
    }
}
