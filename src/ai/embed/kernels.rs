//! The numeric kernels of the encoder's forward pass on plain `f32` slices: matrix products on
//! candle's own gemm (the same AVX-512 kernels candle calls), and the element-wise steps
//! (layer norm, GELU, soft-max) written so the compiler vectorises them.
//!
//! Why not candle's ops: its soft-max is five passes, its GELU calls a scalar `erff` per element
//! on one core, and every bias or residual add is another pass over memory. These kernels fuse
//! what can be fused (bias and residual into the product, scale into the scores) and evaluate
//! `erf` and `exp` with branch-free polynomials (errors ~1e-7, below f32's own rounding of the
//! model's activations).

use gemm::Parallelism;

/// `out[rows × n] += x[rows × k] · w[k × n]`, all row-major. `out` holds what the product is
/// added to (bias, residual), so the sums cost no extra pass.
pub fn matmul_add(
    out: &mut [f32],
    x: &[f32],
    w: &[f32],
    rows: usize,
    k: usize,
    n: usize,
    par: Parallelism,
) {
    assert!(out.len() == rows * n && x.len() == rows * k && w.len() == k * n);
    // SAFETY: the asserted lengths bound every index gemm computes from these dimensions and
    // strides; `out` does not alias `x` or `w` (one is `&mut`).
    unsafe {
        gemm::gemm(
            rows,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            true,
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            1,
            n as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// Self-attention of one sequence, all heads. `qkv` is `len × 3·hidden` (queries, keys, values
/// side by side, heads `head_dim` wide within each); writes `ctx` (`len × hidden`). `scores` is
/// scratch. Padding never exists here: each sequence attends only to its own tokens.
pub fn attention(
    qkv: &[f32],
    ctx: &mut [f32],
    len: usize,
    heads: usize,
    head_dim: usize,
    scores: &mut Vec<f32>,
) {
    let hidden = heads * head_dim;
    let stride = 3 * hidden;
    assert!(qkv.len() == len * stride && ctx.len() == len * hidden);
    scores.clear();
    scores.resize(len * len, 0.0);
    let scale = 1.0 / (head_dim as f32).sqrt();
    for head in 0..heads {
        let q = head * head_dim;
        let k = hidden + q;
        let v = 2 * hidden + q;
        // SAFETY: rows `0..len` of `qkv` at columns `q..q+head_dim`, `k..` and `v..` (all
        // below `stride`) are inside `qkv`; `scores` is `len × len`; `ctx` columns
        // `q..q+head_dim` of `len` rows are inside `ctx`.
        unsafe {
            // scores = scale · Q·Kᵀ
            gemm::gemm(
                len,
                len,
                head_dim,
                scores.as_mut_ptr(),
                1,
                len as isize,
                false,
                qkv.as_ptr().add(q),
                1,
                stride as isize,
                qkv.as_ptr().add(k),
                stride as isize,
                1,
                0.0,
                scale,
                false,
                false,
                false,
                Parallelism::None,
            );
        }
        scores.chunks_exact_mut(len).for_each(softmax);
        // SAFETY: as above.
        unsafe {
            // ctx[:, head] = softmax(scores) · V
            gemm::gemm(
                len,
                head_dim,
                len,
                ctx.as_mut_ptr().add(q),
                1,
                hidden as isize,
                false,
                scores.as_ptr(),
                1,
                len as isize,
                qkv.as_ptr().add(v),
                1,
                stride as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                Parallelism::None,
            );
        }
    }
}

/// Adds `bias` to every row of `out` (`out` is rows of `bias.len()`).
pub fn add_rows(out: &mut [f32], bias: &[f32]) {
    for row in out.chunks_exact_mut(bias.len()) {
        row.iter_mut().zip(bias).for_each(|(o, b)| *o += b);
    }
}

/// Fills every row of `out` with `bias`.
pub fn fill_rows(out: &mut [f32], bias: &[f32]) {
    for row in out.chunks_exact_mut(bias.len()) {
        row.copy_from_slice(bias);
    }
}

/// Defines `pub fn $name` running `$body` compiled for AVX-512 or AVX2+FMA where the CPU has
/// them (picked at run time, so the binary still runs on any x86-64), else the baseline build.
macro_rules! multiversion {
    ($(#[$doc:meta])* pub fn $name:ident($($arg:ident: $ty:ty),*) => $body:ident) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vl") {
                    // SAFETY: this CPU has the features the copy was compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

multiversion! {
    /// Layer norm of every row in place (`gamma`, `beta` one per column).
    pub fn layer_norm(xs: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) => layer_norm_rows
}

multiversion! {
    /// GELU (erf form, as BERT and torch's default) in place.
    pub fn gelu(xs: &mut [f32]) => gelu_all
}

multiversion! {
    /// Soft-max of one row in place.
    pub fn softmax(row: &mut [f32]) => softmax_row
}

#[inline(always)]
fn layer_norm_rows(xs: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = gamma.len() as f32;
    for row in xs.chunks_exact_mut(gamma.len()) {
        let mean = sum(row) / n;
        let mut lanes = [0.0f32; LANES];
        for chunk in row.chunks_exact(LANES) {
            for (l, x) in lanes.iter_mut().zip(chunk) {
                let d = x - mean;
                *l += d * d;
            }
        }
        let tail: f32 = row
            .chunks_exact(LANES)
            .remainder()
            .iter()
            .map(|x| (x - mean) * (x - mean))
            .sum();
        let var = (lanes.iter().sum::<f32>() + tail) / n;
        let inv = 1.0 / (var + eps).sqrt();
        for ((x, g), b) in row.iter_mut().zip(gamma).zip(beta) {
            *x = (*x - mean) * inv * g + b;
        }
    }
}

#[inline(always)]
fn gelu_all(xs: &mut [f32]) {
    for x in xs.iter_mut() {
        *x = 0.5 * *x * (1.0 + erf(*x * std::f32::consts::FRAC_1_SQRT_2));
    }
}

#[inline(always)]
fn softmax_row(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for x in row.iter_mut() {
        *x = exp(*x - max);
    }
    let inv = 1.0 / sum(row);
    row.iter_mut().for_each(|x| *x *= inv);
}

/// Width of the partial sums: lets the compiler keep one vector register of sums (a plain
/// running sum must stay sequential in f32).
const LANES: usize = 16;

#[inline(always)]
fn sum(xs: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        lanes.iter_mut().zip(chunk).for_each(|(l, x)| *l += x);
    }
    lanes.iter().sum::<f32>() + tail
}

/// erf(x) as x·P(x²)/Q(x²) on x clamped to [-4, 4] (beyond, erf is ±1 in f32): the rational
/// approximation Eigen and XLA use for f32, a few ulp from the exact value.
#[inline(always)]
#[allow(clippy::excessive_precision)] // the coefficients as published
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.72614225801306e-10f32;
    for c in [
        2.77068142495902e-08,
        -2.10102402082508e-06,
        -5.69250639462346e-05,
        -7.34990630326855e-04,
        -2.95459980854025e-03,
        -1.60960333262415e-02,
    ] {
        p = p * x2 + c;
    }
    let mut q = -1.45660718464996e-05f32;
    for c in [
        -2.13374055278905e-04,
        -1.68282697438203e-03,
        -7.37332916720468e-03,
        -1.42647390514189e-02,
    ] {
        q = q * x2 + c;
    }
    (x * p / q).clamp(-1.0, 1.0)
}

/// e^x for x <= 0 (soft-max's shifted scores): 2^n · e^r with r in [-ln2/2, ln2/2], e^r by its
/// degree-6 Taylor polynomial (error < 2e-7 relative); underflows to 0 below -87.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.max(-87.0);
    // Round to nearest by adding and removing 1.5·2^23 (vectorises, unlike `round`).
    const SHIFT: f32 = 12_582_912.0;
    let n = (x * std::f32::consts::LOG2_E + SHIFT) - SHIFT;
    // ln 2 in two parts (Cody-Waite): n·LN2_HI is exact, so r keeps its low bits.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0f32 / 720.0;
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = p * r + c;
    }
    // 2^n by building the float's exponent field directly (n in [-126, 0] here).
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    p * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_is_within_a_few_ulp_of_libm() {
        let worst = (-6000..=6000)
            .map(|i| i as f32 / 1000.0)
            .map(|x| (erf(x) - candle_core::cpu::erf::erf_f32(x)).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-6, "erf off by {worst}");
    }

    #[test]
    fn exp_is_within_a_few_ulp_of_std() {
        for i in 0..=9000 {
            let x = -(i as f32) / 100.0;
            let (got, want) = (exp(x), x.exp());
            assert!(
                (got - want).abs() <= want * 1e-6 + 1e-37,
                "exp({x}) = {got}, want {want}"
            );
        }
        assert!(exp(-200.0) < 1e-37);
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let mut row = vec![1.0, 2.0, 3.0, -1e9];
        softmax(&mut row);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(row[0] < row[1] && row[1] < row[2] && row[3] < 1e-30);
    }

    #[test]
    fn layer_norm_centres_and_scales_each_row() {
        let mut xs: Vec<f32> = (0..40).map(|i| i as f32).collect();
        let (gamma, beta) = (vec![2.0; 20], vec![1.0; 20]);
        layer_norm(&mut xs, &gamma, &beta, 1e-12);
        for row in xs.chunks(20) {
            let mean = row.iter().sum::<f32>() / 20.0;
            let var = row.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / 20.0;
            assert!((mean - 1.0).abs() < 1e-5 && (var - 4.0).abs() < 1e-3);
        }
    }

    #[test]
    fn matmul_adds_the_product_to_what_out_holds() {
        // [1 2; 3 4] · [1 0 1; 0 1 1] + 10
        let mut out = vec![10.0; 6];
        matmul_add(
            &mut out,
            &[1.0, 2.0, 3.0, 4.0],
            &[1.0, 0.0, 1.0, 0.0, 1.0, 1.0],
            2,
            2,
            3,
            Parallelism::None,
        );
        assert_eq!(out, vec![11.0, 12.0, 13.0, 13.0, 14.0, 17.0]);
    }
}
