/*
 * vgc_step.c -- one step on one segment: VGC and its hybrid (algorithm.md section 3)
 * and Strom's threshold baseline (section 4).
 *
 * All arithmetic is float32, one IEEE operation at a time, rounded to nearest-even;
 * no fused multiply-add anywhere (decision 3: the Makefile passes -ffp-contract=off).
 * alpha, zeta and tau arrive as float32 already (converted once, by VGCParams).
 */
#include <math.h>
#include <string.h>

#include "vgc.h"

static uint32_t f32_bits(float x) { uint32_t b; memcpy(&b, &x, sizeof b); return b; }
static float f32_from_bits(uint32_t b) { float x; memcpy(&x, &b, sizeof x); return x; }

static int step_error(vgc_error *err, int status, const char *name, size_t index, float value,
                      const char *reason) {
    err->status = status;
    err->name = name;
    err->index = index;
    err->value = value;
    err->reason = reason;
    return status;
}

size_t vgc_first_nonfinite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) if (!isfinite(x[i])) return i;
    return n;
}

/* ------------------------------------------------------------------------------------ */
/* Step 0. Validate before any state changes (decision 2: g, then s, then the sums; the */
/* first bad index is the lowest). The array type checks (ndarray, float32, 1-D, length)*/
/* belong to the caller; in the adapter they interleave as: g's type, g finite, s's     */
/* type, s finite, s >= 0, r + g, v + s (conformance.md "Error behaviour").             */

int vgc_check_step(const float *r, const float *v, const float *g, const float *s, size_t n,
                   vgc_error *err) {
    size_t i;
    err->rank = err->packet = err->word = -1;
    /* every g_i finite */
    if ((i = vgc_first_nonfinite(g, n)) < n) return step_error(err, VGC_ERR_NONFINITE, "g", i, g[i], "non-finite");
    if (s) {
        /* every s_i finite, then every s_i >= 0 (-0.0 is >= 0) */
        if ((i = vgc_first_nonfinite(s, n)) < n) return step_error(err, VGC_ERR_NONFINITE, "s", i, s[i], "non-finite");
        for (i = 0; i < n; i++) {
            if (s[i] < 0.0f) return step_error(err, VGC_ERR_NEGATIVE_VARIANCE, "s", i, s[i], "negative");
        }
    }
    /* r_i + g_i finite (the value reported is the state element before the addition) */
    for (i = 0; i < n; i++) {
        float sum = r[i] + g[i];
        if (!isfinite(sum)) return step_error(err, VGC_ERR_OVERFLOW, "r + g", i, r[i], "overflows float32");
    }
    if (s) {
        for (i = 0; i < n; i++) {
            float sum = v[i] + s[i];
            if (!isfinite(sum)) return step_error(err, VGC_ERR_OVERFLOW, "v + s", i, v[i], "overflows float32");
        }
    }
    return VGC_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Step 3. Round |r| to a power of two in the log domain (decision 4):                  */
/*   ef == 0 (zero, subnormal): not sendable;                                           */
/*   e = ef + 1 if mf >= 0x3504F3 else ef, clamped to 254.                              */
/* Returns e (1..254), or 0 when not sendable.                                          */

static uint32_t round_exponent(float r) {
    uint32_t bits = f32_bits(r) & 0x7FFFFFFFu;     /* |r| */
    uint32_t ef = bits >> 23, mf = bits & 0x7FFFFFu;
    if (ef == 0) return 0;
    uint32_t e = mf >= VGC_SQRT2_MANTISSA ? ef + 1 : ef;
    return e > VGC_MAX_EXPONENT ? VGC_MAX_EXPONENT : e;
}

/* ------------------------------------------------------------------------------------ */
/* The VGC step.                                                                         */

int vgc_step(float *r, float *v, const float *g, const float *s, size_t n, float alpha,
             float zeta, float tau, int reset, uint32_t *words, size_t *count, uint32_t *E,
             vgc_error *err) {
    /* 0. Validate: on error r and v are unchanged. */
    int rc = vgc_check_step(r, v, g, s, n, err);
    if (rc != VGC_OK) return rc;

    /* 1. Accumulate: r_i <- r_i + g_i; v_i <- v_i + s_i (finite: checked above). */
    for (size_t i = 0; i < n; i++) {
        r[i] = r[i] + g[i];
        v[i] = v[i] + s[i];
    }

    /* 2.-4. Criterion, rounding, exponent base. E = max e_i over sendable candidates.
     *   candidate_i <=> (r_i * r_i) > (alpha * v_i) and |r_i| >= tau
     * both products rounded separately (float32 locals, -ffp-contract=off); strict >.
     * r*r overflowing to +inf compares greater unless alpha*v is +inf too; r*r
     * underflowing to 0 never compares greater. */
    uint32_t E_max = 0;
    for (size_t i = 0; i < n; i++) {
        float rr = r[i] * r[i];
        float av = alpha * v[i];
        if (rr > av && fabsf(r[i]) >= tau) {
            uint32_t e = round_exponent(r[i]);
            if (e > E_max) E_max = e;
        }
    }

    /* 5. Update. An element is sent when it is a sendable candidate with k = E - e <= 15
     *    (decision 5). The criterion is evaluated again on the same values, with the
     *    same operations, so it gives the same answer as in the pass above. */
    size_t c = 0;
    for (size_t i = 0; i < n; i++) {
        float rr = r[i] * r[i];
        float av = alpha * v[i];
        uint32_t e = (rr > av && fabsf(r[i]) >= tau) ? round_exponent(r[i]) : 0;
        if (e != 0 && E_max - e <= VGC_MAX_K) {
            uint32_t sign = f32_bits(r[i]) >> 31;
            uint32_t k = E_max - e;
            float q = f32_from_bits(sign << 31 | e << 23);       /* sign(r) * 2^(e - 127) */
            words[c++] = (uint32_t)i << 5 | sign << 4 | k;        /* increasing index     */
            v[i] = 0.0f;
            r[i] = reset ? 0.0f : r[i] - q;   /* feedback: exact, q/2 <= |r| <= 2q (decision 7) */
        } else {
            v[i] = zeta * v[i];               /* held: one rounded multiply; r unchanged */
        }
    }
    *count = c;
    *E = E_max;          /* 0 exactly when nothing is sent (format.md: empty packet, E = 0) */
    return VGC_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Strom's threshold baseline (section 4; decision 8): r <- r + g; sent when |r| >= tau,  */
/* as q = sign(r) * tau, r <- r - q (one rounded subtraction). v is never touched.      */

int vgc_strom_step(float *r, const float *g, size_t n, float tau, uint32_t *words,
                   size_t *count, vgc_error *err) {
    int rc = vgc_check_step(r, NULL, g, NULL, n, err);
    if (rc != VGC_OK) return rc;
    size_t c = 0;
    for (size_t i = 0; i < n; i++) {
        r[i] = r[i] + g[i];
        if (fabsf(r[i]) >= tau) {
            uint32_t sign = f32_bits(r[i]) >> 31;
            float q = f32_from_bits(sign << 31 | f32_bits(tau));
            words[c++] = (uint32_t)i << 1 | sign;
            r[i] = r[i] - q;
        }
    }
    *count = c;
    return VGC_OK;
}
