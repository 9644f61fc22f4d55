/* Fused selective scan of Mamba for the CPU (forward and backward), built on demand by scan_cpu.py.
 *
 * One loop over time per batch row, with the state h (n, d) of that row held in a small buffer that
 * stays in L1/L2 cache, and every per-element operation of a time step (decay exp(delta A), input
 * delta u B, state update, readout C . h) fused into one pass over n. The same recurrence as
 * selective_scan_ref in selective_scan.py; all layouts batch first: u, delta, y (b, L, d); B, C (b, L, n);
 * A (d, n). Compiled once per scalar type with -DSCALAR_BITS=32|64.
 *
 * The backward recomputes the states and decays of one batch row at a time (a scratch of 2 L n d
 * scalars per thread) instead of storing all of them in the forward: far less memory traffic than
 * saving (b, L, d, n) states, at the cost of one more forward pass.
 */
#include <stdint.h>
#include <string.h>

#if SCALAR_BITS == 32
typedef float T;
typedef int32_t I;
#define MANT_BITS 23
#define EXP_BIAS 127
#define X_LO -87.0f /* exp(-87) = 1.6e-38, the smallest normal float is 1.2e-38 */
#define X_HI 88.0f
#define SHIFTER 12582912.0f /* 1.5 * 2^23: x + SHIFTER rounds x to an integer held in the low mantissa bits */
#define LN2_HI 0.693359375f
#define LN2_LO -2.12194440e-4f
#define N_TERMS 8 /* Taylor terms of e^r, |r| <= ln2 / 2: truncation error 5e-9 < float's 6e-8 */
#define N_LOG 9   /* atanh series terms in log1p, s <= 1/3: truncation error 9^-9 < float's 6e-8 */
#else
typedef double T;
typedef int64_t I;
#define MANT_BITS 52
#define EXP_BIAS 1023
#define X_LO -708.0
#define X_HI 709.0
#define SHIFTER 6755399441055744.0 /* 1.5 * 2^52 */
#define LN2_HI 6.93147180369123816490e-01
#define LN2_LO 1.90821492927058770002e-10
#define N_TERMS 14 /* truncation error 4e-18 < double's 1.1e-16 */
#define N_LOG 19   /* 9^-19 < double's 1.1e-16 */
#endif

/* exp(x) inlined so that the loops vectorize without a vector math library: exp(x) = 2^k e^r with
 * k = round(x / ln 2) and e^r a Taylor polynomial. Within a few ulp of libm's exp on [X_LO, X_HI];
 * below X_LO it returns exp(X_LO) (< 1.7e-38 in float, < 3.4e-308 in double) where libm underflows to 0. */
static inline T exp_inline(T x) {
    x = x < X_LO ? X_LO : x;
    x = x > X_HI ? X_HI : x;
    const T shifted = x * (T)1.44269504088896340736 + SHIFTER;
    const T kf = shifted - SHIFTER;
    const T r = (x - kf * LN2_HI) - kf * LN2_LO;
    /* Horner on sum_{i < N_TERMS} r^i / i!, one fused multiply-add per term; the coefficients 1/i! are
     * compile-time constants (the nested form 1 + r/i (...) costs a multiply and an add per term). */
    T c[N_TERMS];
    c[0] = 1;
    for (int i = 1; i < N_TERMS; ++i) c[i] = c[i - 1] / (T)i;
    T p = c[N_TERMS - 1];
    for (int i = N_TERMS - 2; i >= 0; --i) p = p * r + c[i];
    I k, s;
    const T shifter = SHIFTER;
    memcpy(&k, &shifted, sizeof k);
    memcpy(&s, &shifter, sizeof s);
    const I bits = (k - s + EXP_BIAS) << MANT_BITS; /* 2^k */
    T scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}
#define EXP exp_inline

static inline T sigmoid(T x) { return 1 / (1 + EXP(-x)); }

/* softplus as torch.nn.functional.softplus (beta 1, threshold 20): max(x, 0) + log1p(exp(-|x|)), with
 * log1p(e) = 2 atanh(e / (2 + e)) summed as a series (s <= 1/3), inlined so the loop vectorizes. */
static inline T softplus(T x) {
    const T e = EXP(x < 0 ? x : -x), s = e / (2 + e), s2 = s * s;
    T p = (T)1 / (T)(2 * N_LOG - 1);
    for (int m = N_LOG - 2; m >= 0; --m) p = p * s2 + (T)1 / (T)(2 * m + 1);
    return x > 20 ? x : (x > 0 ? x : 0) + 2 * s * p;
}

/* delta of one row: softplus(delta_raw + bias) (either optional) into buf, or the row itself. */
static inline const T *delta_row(const T *raw, const T *bias, int sp, T *buf, long d) {
    if (!bias && !sp) return raw;
#pragma omp simd
    for (long j = 0; j < d; ++j) {
        const T v = raw[j] + (bias ? bias[j] : 0);
        buf[j] = sp ? softplus(v) : v;
    }
    return buf;
}

/* The loops run over the channels d innermost (long, contiguous, vectorized), so the state and A are
 * kept transposed: h and AT are (n, d).
 * Optional fused prologue and epilogue, as in mamba_ssm's kernel: delta = softplus(delta + delta_bias)
 * (delta_bias may be NULL, sp = 0 skips the softplus) and out = (y + D u) * silu(z). D (d) and z may be
 * NULL; z's rows (one per (batch, time)) are zs scalars apart, so a chunk of in_proj's output needs no copy. */

/* out (rows b0..b1). AT: A transposed (n, d); h: scratch of (n + 2) d. */
void scan_fwd(const T *u, const T *delta, const T *delta_bias, int sp, const T *AT, const T *B, const T *C,
              const T *D, const T *z, long zs, T *out, T *h, long b0, long b1, long L, long d, long n) {
    T *du = h + n * d, *dbuf = du + d;
    for (long bi = b0; bi < b1; ++bi) {
        memset(h, 0, sizeof(T) * n * d);
        for (long t = 0; t < L; ++t) {
            const long r = bi * L + t;
            const T *ut = u + r * d, *Bt = B + r * n, *Ct = C + r * n;
            const T *dt = delta_row(delta + r * d, delta_bias, sp, dbuf, d);
            T *yt = out + r * d;
            for (long j = 0; j < d; ++j) {
                du[j] = dt[j] * ut[j];
                yt[j] = D ? D[j] * ut[j] : 0;
            }
            for (long k = 0; k < n; ++k) {
                const T bk = Bt[k], ck = Ct[k];
                const T *Ak = AT + k * d;
                T *hk = h + k * d;
#pragma omp simd
                for (long j = 0; j < d; ++j) {
                    const T hj = EXP(dt[j] * Ak[j]) * hk[j] + du[j] * bk;
                    hk[j] = hj;
                    yt[j] += hj * ck;
                }
            }
            if (z) {
                const T *zt = z + r * zs;
#pragma omp simd
                for (long j = 0; j < d; ++j) yt[j] *= zt[j] * sigmoid(zt[j]);
            }
        }
    }
}

/* Gradients of sum(out * gout) for rows b0..b1: gu, gdelta (b, L, d; for the raw delta), gB, gC (b, L, n)
 * and gz (b, L, d) written for those rows; gAT (n, d), gD (d) and gdelta_bias (d) accumulated (the caller
 * gives each thread its own). scratch: (2 L + 1) n d + (2 L + 4) d scalars.
 * Adjoint g_t = dL/dh_t = gy_t C_t + exp(delta_{t+1} A) g_{t+1}, run backwards in time. */
void scan_bwd(const T *u, const T *delta, const T *delta_bias, int sp, const T *AT, const T *B, const T *C,
              const T *D, const T *z, long zs, const T *gout, T *gu, T *gdelta, T *gAT, T *gB, T *gC, T *gD,
              T *gdelta_bias, T *gz, T *scratch, long b0, long b1, long L, long d, long n) {
    const long nd = n * d;
    T *hs = scratch, *dec = hs + L * nd, *g = dec + L * nd, *du = g + nd, *acc_dl = du + d, *gyt = acc_dl + d;
    T *ys = gyt + d;      /* (L, d): y_t + D u_t, before the gate */
    T *dls = ys + L * d;  /* (L, d): delta after bias and softplus */
    const int raw = !delta_bias && !sp;
    for (long bi = b0; bi < b1; ++bi) {
        /* recompute h_t, exp(delta_t A) and y_t of this row, (L, n, d) */
        for (long t = 0; t < L; ++t) {
            const long r = bi * L + t;
            const T *ut = u + r * d, *Bt = B + r * n, *Ct = C + r * n;
            const T *dt = delta_row(delta + r * d, delta_bias, sp, dls + t * d, d);
            T *yt = ys + t * d;
            for (long j = 0; j < d; ++j) yt[j] = D ? D[j] * ut[j] : 0;
            for (long k = 0; k < n; ++k) {
                const T bk = Bt[k], ck = Ct[k];
                const T *Ak = AT + k * d;
                T *hk = hs + t * nd + k * d, *ek = dec + t * nd + k * d;
                if (t == 0) {
#pragma omp simd
                    for (long j = 0; j < d; ++j) {
                        ek[j] = EXP(dt[j] * Ak[j]);
                        hk[j] = dt[j] * ut[j] * bk;
                        yt[j] += hk[j] * ck;
                    }
                } else {
                    const T *hp = hk - nd;
#pragma omp simd
                    for (long j = 0; j < d; ++j) {
                        const T e = EXP(dt[j] * Ak[j]);
                        ek[j] = e;
                        hk[j] = e * hp[j] + dt[j] * ut[j] * bk;
                        yt[j] += hk[j] * ck;
                    }
                }
            }
        }
        memset(g, 0, sizeof(T) * nd);
        for (long t = L - 1; t >= 0; --t) {
            const long r = bi * L + t;
            const T *ut = u + r * d, *Bt = B + r * n, *Ct = C + r * n, *got = gout + r * d;
            const T *dt = raw ? delta + r * d : dls + t * d;
            T *gut = gu + r * d; /* accumulates dL/d(delta_t u_t) first */
            if (z) { /* through the gate: gy = gout silu(z), gz = gout y silu'(z) */
                const T *zt = z + r * zs, *yt = ys + t * d;
                T *gzt = gz + r * d;
#pragma omp simd
                for (long j = 0; j < d; ++j) {
                    const T sg = sigmoid(zt[j]);
                    gyt[j] = got[j] * zt[j] * sg;
                    gzt[j] = got[j] * yt[j] * sg * (1 + zt[j] * (1 - sg));
                }
            } else {
                memcpy(gyt, got, sizeof(T) * d);
            }
            for (long j = 0; j < d; ++j) {
                du[j] = dt[j] * ut[j];
                gut[j] = 0;
                acc_dl[j] = 0;
            }
            for (long k = 0; k < n; ++k) {
                const T bk = Bt[k], ck = Ct[k];
                const T *Ak = AT + k * d, *hk = hs + t * nd + k * d;
                T *gk = g + k * d, *gAk = gAT + k * d;
                T sum_c = 0, sum_b = 0;
                if (t > 0) {
                    const T *hp = hs + (t - 1) * nd + k * d, *ek = dec + t * nd + k * d;
#pragma omp simd reduction(+ : sum_c, sum_b)
                    for (long j = 0; j < d; ++j) {
                        const T gj = gk[j] + gyt[j] * ck; /* dL/dh_t */
                        sum_c += gyt[j] * hk[j];
                        sum_b += du[j] * gj;
                        gut[j] += gj * bk;
                        const T carry = gj * ek[j]; /* dL/dh_{t-1} through the decay */
                        const T gdA = carry * hp[j]; /* dL/d(delta_t A) */
                        acc_dl[j] += gdA * Ak[j];
                        gAk[j] += gdA * dt[j];
                        gk[j] = carry;
                    }
                } else { /* h_{-1} = 0: the first decay gets no gradient */
#pragma omp simd reduction(+ : sum_c, sum_b)
                    for (long j = 0; j < d; ++j) {
                        const T gj = gk[j] + gyt[j] * ck;
                        sum_c += gyt[j] * hk[j];
                        sum_b += du[j] * gj;
                        gut[j] += gj * bk;
                    }
                }
                gC[r * n + k] = sum_c;
                gB[r * n + k] = sum_b;
            }
            T *gdt = gdelta + r * d;
            const T *rawt = delta + r * d;
#pragma omp simd
            for (long j = 0; j < d; ++j) {
                const T g_du = gut[j];
                gut[j] = g_du * dt[j] + (D ? gyt[j] * D[j] : 0);
                const T gd = g_du * ut[j] + acc_dl[j]; /* dL/ddelta; softplus' = sigmoid (1 above threshold) */
                const T v = rawt[j] + (delta_bias ? delta_bias[j] : 0);
                gdt[j] = sp && v <= 20 ? gd * sigmoid(v) : gd;
            }
            if (delta_bias)
                for (long j = 0; j < d; ++j) gdelta_bias[j] += gdt[j];
            if (D)
                for (long j = 0; j < d; ++j) gD[j] += gyt[j] * ut[j];
        }
    }
}

/* Mamba's depthwise causal conv, silu and padding mask in one pass, for rows b0..b1:
 *     u_t = keep_t * silu(bias + sum_s w[K-1-s] * keep_{t-s} x_{t-s}).
 * x (b, L, d) with rows xs scalars apart; wT (K, d) (conv1d.weight transposed); bias (d) and keep (b, L)
 * (1 = real token) may be NULL. */
void conv_fwd(const T *x, long xs, const T *wT, const T *bias, const unsigned char *keep, T *u, long b0, long b1,
              long L, long d, long K) {
    for (long bi = b0; bi < b1; ++bi) {
        for (long t = 0; t < L; ++t) {
            const long r = bi * L + t;
            T *ut = u + r * d;
            if (keep && !keep[r]) {
                memset(ut, 0, sizeof(T) * d);
                continue;
            }
            for (long j = 0; j < d; ++j) ut[j] = bias ? bias[j] : 0;
            for (long s = 0; s < K && s <= t; ++s) {
                if (keep && !keep[r - s]) continue;
                const T *xr = x + (r - s) * xs, *ws = wT + (K - 1 - s) * d;
#pragma omp simd
                for (long j = 0; j < d; ++j) ut[j] += ws[j] * xr[j];
            }
#pragma omp simd
            for (long j = 0; j < d; ++j) ut[j] *= sigmoid(ut[j]);
        }
    }
}

/* Gradients of sum(u * gu) for rows b0..b1: gx (b, L, d, contiguous) written; gwT (K, d) and gbias (d)
 * accumulated (per thread). scratch: L d scalars (dL/d(pre-activation) of one row). */
void conv_bwd(const T *x, long xs, const T *wT, const T *bias, const unsigned char *keep, const T *gu, T *gx,
              T *gwT, T *gbias, T *scratch, long b0, long b1, long L, long d, long K) {
    for (long bi = b0; bi < b1; ++bi) {
        /* recompute the pre-activation p_t, then gp_t = gu_t silu'(p_t) (0 at padding) */
        for (long t = 0; t < L; ++t) {
            const long r = bi * L + t;
            T *gp = scratch + t * d;
            if (keep && !keep[r]) {
                memset(gp, 0, sizeof(T) * d);
                continue;
            }
            for (long j = 0; j < d; ++j) gp[j] = bias ? bias[j] : 0;
            for (long s = 0; s < K && s <= t; ++s) {
                if (keep && !keep[r - s]) continue;
                const T *xr = x + (r - s) * xs, *ws = wT + (K - 1 - s) * d;
#pragma omp simd
                for (long j = 0; j < d; ++j) gp[j] += ws[j] * xr[j];
            }
            const T *gut = gu + r * d;
#pragma omp simd
            for (long j = 0; j < d; ++j) {
                const T sg = sigmoid(gp[j]);
                gp[j] = gut[j] * sg * (1 + gp[j] * (1 - sg));
            }
            if (gbias)
                for (long j = 0; j < d; ++j) gbias[j] += gp[j];
        }
        for (long t = 0; t < L; ++t) {
            const long r = bi * L + t;
            T *gxt = gx + r * d;
            memset(gxt, 0, sizeof(T) * d);
            if (keep && !keep[r]) continue; /* masked inputs get no gradient */
            const T *xr = x + r * xs;
            for (long s = 0; s < K && t + s < L; ++s) { /* x_t feeds p_{t+s} through tap K-1-s */
                const T *gp = scratch + (t + s) * d, *ws = wT + (K - 1 - s) * d;
                T *gws = gwT + (K - 1 - s) * d;
#pragma omp simd
                for (long j = 0; j < d; ++j) {
                    gxt[j] += ws[j] * gp[j];
                    gws[j] += gp[j] * xr[j];
                }
            }
        }
    }
}
