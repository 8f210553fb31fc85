/*
 * vgc_variance.c -- the gradient g and the variance term s of a layer
 * (algorithm.md sections 2 and 2.1; decisions 11 and 14).
 *
 * The results are bit-exact because the order of float32 operations is fixed:
 * every product and every addition rounded on its own (no FMA), each accumulator
 * starting at +0.0, terms added in increasing index (docs/demo.md "Ordered product").
 * Squares are rounded before their product: (x (x) x) (x) (D (x) D).
 * Outside the normal range the result is whatever IEEE float32 gives in that order
 * (+0.0, +inf, NaN): defined, not refused (section 2.1, "Range of the two forms").
 */
#include <stdlib.h>

#include "vgc.h"

/* ------------------------------------------------------------------------------------ */
/* Section 2: a dense layer y = x W + b, x: (B, in), D: (B, out), D carrying 1/B.        */
/*   g_W[i,j] = sum_b x[b,i] (x) D[b,j]                 s_W[i,j] = sum_b (x^2) (x) (D^2) */
/*   g_b[j]   = sum_b D[b,j]                             s_b[j]   = sum_b D[b,j] (x) D[b,j]*/

void vgc_dense_grad_var(const float *x, const float *D, size_t B, size_t in, size_t out,
                        float *g_W, float *s_W, float *g_b, float *s_b) {
    for (size_t i = 0; i < in; i++) {
        for (size_t j = 0; j < out; j++) {
            float g = 0.0f, s = 0.0f;
            for (size_t b = 0; b < B; b++) {
                float xv = x[b * in + i], dv = D[b * out + j];
                g = g + xv * dv;
                float xx = xv * xv, dd = dv * dv;
                s = s + xx * dd;
            }
            g_W[i * out + j] = g;
            s_W[i * out + j] = s;
        }
    }
    for (size_t j = 0; j < out; j++) {
        float g = 0.0f, s = 0.0f;
        for (size_t b = 0; b < B; b++) {
            float dv = D[b * out + j];
            g = g + dv;
            s = s + dv * dv;
        }
        g_b[j] = g;
        s_b[j] = s;
    }
}

/* ------------------------------------------------------------------------------------ */
/* Section 2.1: a convolution as a dense layer at every output position.                 */
/* patches X: (B, P, K), channels last (column k*C + c); D: (B, P, out).                  */
/*                                                                                       */
/*   g_W = matmul_tn(X.reshape(B*P, K), D.reshape(B*P, out))     rows b-major, then p     */
/*   g_b = column_sums(D.reshape(B*P, out))                                              */
/*   exact:  G_b = matmul_tn(X_b, D_b)  (p increasing);  s_W = sum_b G_b (x) G_b          */
/*           e_b = column_sums(D_b);                     s_b = sum_b e_b (x) e_b          */
/*   approx: s_W = matmul_tn((X (x) X), (D (x) D));      s_b = column_sums(D (x) D)       */

int vgc_conv_grad_var(const float *X, const float *D, size_t B, size_t P, size_t K, size_t out,
                      int form, float *g_W, float *s_W, float *g_b, float *s_b) {
    const size_t rows = B * P;
    /* g_W and g_b: the ordered product and sums over all B*P rows */
    for (size_t i = 0; i < K; i++) {
        for (size_t j = 0; j < out; j++) {
            float g = 0.0f;
            for (size_t row = 0; row < rows; row++) g = g + X[row * K + i] * D[row * out + j];
            g_W[i * out + j] = g;
        }
    }
    for (size_t j = 0; j < out; j++) {
        float g = 0.0f;
        for (size_t row = 0; row < rows; row++) g = g + D[row * out + j];
        g_b[j] = g;
    }

    if (form == VGC_CONV_APPROX) {
        /* every output position taken as a sample: the dense trick over B*P rows */
        for (size_t i = 0; i < K; i++) {
            for (size_t j = 0; j < out; j++) {
                float s = 0.0f;
                for (size_t row = 0; row < rows; row++) {
                    float xv = X[row * K + i], dv = D[row * out + j];
                    float xx = xv * xv, dd = dv * dv;
                    s = s + xx * dd;
                }
                s_W[i * out + j] = s;
            }
        }
        for (size_t j = 0; j < out; j++) {
            float s = 0.0f;
            for (size_t row = 0; row < rows; row++) {
                float dv = D[row * out + j];
                s = s + dv * dv;
            }
            s_b[j] = s;
        }
        return VGC_OK;
    }

    /* exact: per sample b, G_b = X_b^T D_b summed over p, then s_W += G_b (x) G_b */
    float *G = malloc((K * out > 0 ? K * out : 1) * sizeof *G);
    if (!G) return VGC_ERR_NOMEM;
    for (size_t k = 0; k < K * out; k++) s_W[k] = 0.0f;
    for (size_t j = 0; j < out; j++) s_b[j] = 0.0f;
    for (size_t b = 0; b < B; b++) {
        const float *Xb = X + b * P * K, *Db = D + b * P * out;
        for (size_t i = 0; i < K; i++) {
            for (size_t j = 0; j < out; j++) {
                float acc = 0.0f;
                for (size_t p = 0; p < P; p++) acc = acc + Xb[p * K + i] * Db[p * out + j];
                G[i * out + j] = acc;
            }
        }
        for (size_t k = 0; k < K * out; k++) s_W[k] = s_W[k] + G[k] * G[k];
        for (size_t j = 0; j < out; j++) {
            float e = 0.0f;
            for (size_t p = 0; p < P; p++) e = e + Db[p * out + j];
            s_b[j] = s_b[j] + e * e;
        }
    }
    free(G);
    return VGC_OK;
}

/* ------------------------------------------------------------------------------------ */
/* im2col, channels last. Output length of one spatial axis:                             */
/*   (len + 2 padding - kernel) / stride + 1   (0 when the kernel does not fit).          */

size_t vgc_conv_out_len(size_t len, size_t kernel, size_t stride, size_t padding) {
    if (stride == 0 || len + 2 * padding < kernel) return 0;
    return (len + 2 * padding - kernel) / stride + 1;
}

void vgc_im2col1d(const float *x, size_t B, size_t L, size_t C, size_t kernel, size_t stride,
                  size_t padding, float *patches) {
    const size_t P = vgc_conv_out_len(L, kernel, stride, padding), K = kernel * C;
    for (size_t b = 0; b < B; b++) {
        for (size_t p = 0; p < P; p++) {
            float *row = patches + (b * P + p) * K;
            for (size_t k = 0; k < kernel; k++) {
                /* input position of tap k at output p; the padding is zeros */
                long long t = (long long)(p * stride + k) - (long long)padding;
                for (size_t c = 0; c < C; c++) {
                    row[k * C + c] = (t >= 0 && t < (long long)L) ? x[(b * L + (size_t)t) * C + c] : 0.0f;
                }
            }
        }
    }
}

void vgc_im2col2d(const float *x, size_t B, size_t H, size_t W, size_t C, size_t kh, size_t kw,
                  size_t stride, size_t padding, float *patches) {
    const size_t Ho = vgc_conv_out_len(H, kh, stride, padding);
    const size_t Wo = vgc_conv_out_len(W, kw, stride, padding);
    const size_t P = Ho * Wo, K = kh * kw * C;
    for (size_t b = 0; b < B; b++) {
        for (size_t oy = 0; oy < Ho; oy++) {
            for (size_t ox = 0; ox < Wo; ox++) {
                float *row = patches + (b * P + oy * Wo + ox) * K;
                for (size_t ki = 0; ki < kh; ki++) {
                    long long y = (long long)(oy * stride + ki) - (long long)padding;
                    for (size_t kj = 0; kj < kw; kj++) {
                        long long xx = (long long)(ox * stride + kj) - (long long)padding;
                        int inside = y >= 0 && y < (long long)H && xx >= 0 && xx < (long long)W;
                        size_t k = ki * kw + kj;            /* tap index, row-major over the kernel */
                        for (size_t c = 0; c < C; c++) {
                            row[k * C + c] = inside ? x[((b * H + (size_t)y) * W + (size_t)xx) * C + c] : 0.0f;
                        }
                    }
                }
            }
        }
    }
}
