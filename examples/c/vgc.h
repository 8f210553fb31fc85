/*
 * vgc.h -- a plain C11 port of vgc_ref's variance-based gradient compression,
 * written from the documentation alone:
 *
 *   docs/algorithm.md   the arithmetic (sections 2, 2.1, 3, 4, 7; "Errors")
 *   docs/format.md      the bytes of a message ("What a decoder rejects", checks 1-19)
 *   docs/conformance.md the adapter protocol and the golden vectors
 *
 * One file per part:
 *   vgc_crc32.c      CRC-32 (zlib / PNG / Ethernet)                       format.md "Trailer"
 *   vgc_codec.c      encode_message / decode_message                      format.md
 *   vgc_step.c       the VGC (and hybrid) step, Strom's step              algorithm.md 3, 4
 *   vgc_aggregate.c  decode_accumulate                                    algorithm.md 7
 *   vgc_variance.c   dense_grad_var, conv_grad_var, im2col                algorithm.md 2, 2.1
 *
 * Every function validates first and writes its outputs only when nothing can fail
 * any more ("After any error, state and outputs are exactly as before the call").
 * Errors come back as a status code plus a vgc_error describing them; the Python
 * adapter (vgc_c_adapter.py) turns that into the vgc_ref.errors classes.
 *
 * Build with -ffp-contract=off and without -ffast-math: every float operation below
 * must be one IEEE-754 binary32 operation rounded to nearest-even (no FMA, no
 * reassociation, no flush of subnormals). See the Makefile.
 */
#ifndef VGC_H
#define VGC_H

#include <float.h>
#include <stddef.h>
#include <stdint.h>

/* The arithmetic must be plain binary32 (algorithm.md decision 3, demo.md "Arithmetic
 * of one step"): refuse to build where the compiler is told otherwise. */
#ifdef __FAST_MATH__
#error "vgc: do not build with -ffast-math / -Ofast: it reassociates sums and flushes subnormals"
#endif
#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "vgc: float expressions must be evaluated in float (FLT_EVAL_METHOD 0; on x87 use -msse2 -mfpmath=sse)"
#endif

/* ------------------------------------------------------------------------------------ */
/* constants (format.md, algorithm.md "Symbols")                                        */

#define VGC_MAX_SEGMENT_LEN (1u << 27)     /* n <= 2^27: the 27-bit index field        */
#define VGC_SQRT2_MANTISSA 0x3504F3u       /* mantissa field of float32(sqrt 2)         */
#define VGC_MAX_EXPONENT 254u              /* e clamped to 254 (decision 4)             */
#define VGC_MAX_K 15u                      /* 4-bit exponent code (decision 5)          */

enum vgc_codec { VGC_CODEC_DENSE = 0, VGC_CODEC_VGC_Q4 = 1, VGC_CODEC_STROM = 2 };

/* ------------------------------------------------------------------------------------ */
/* errors (algorithm.md "Errors"; conformance.md "Error behaviour")                     */

enum vgc_status {
    VGC_OK = 0,
    VGC_ERR_NONFINITE = 1,         /* NonFiniteError: name "g"/"s", index              */
    VGC_ERR_NEGATIVE_VARIANCE = 2, /* NegativeVarianceError: name "s", index           */
    VGC_ERR_OVERFLOW = 3,          /* AccumulatorOverflowError: "r + g"/"v + s", index */
    VGC_ERR_FORMAT = 4,            /* FormatError: field, offset (rank)                */
    VGC_ERR_SEGMENT_MISMATCH = 5,  /* SegmentMismatchError                             */
    VGC_ERR_INPUT = 6,             /* InputError: name                                 */
    VGC_ERR_NOMEM = 7              /* out of memory (not a vgc_ref error)              */
};

typedef struct {
    int status;          /* enum vgc_status                                             */
    const char *name;    /* error's name (step, input) or field (format); static string */
    uint64_t index;      /* first bad element (step) or byte offset (format)            */
    float value;         /* the offending value (step errors)                           */
    const char *reason;  /* a short human-readable reason; static string                */
    int64_t rank;        /* decode_accumulate: the message's rank; else -1              */
    int64_t packet;      /* encoder: position of the bad packet; else -1                */
    int64_t word;        /* encoder: position of the bad word in it; else -1            */
    uint64_t detail;     /* segment mismatch: the offending segment id or n             */
} vgc_error;

/* ------------------------------------------------------------------------------------ */
/* a packet (format.md "Segment"): one segment's header fields and its words            */

typedef struct {
    uint32_t segment_id;
    uint32_t n;
    uint32_t codec;      /* enum vgc_codec (any byte value when decoding fails)         */
    uint32_t param;      /* E (VGC_Q4), bits of float32 tau (STROM), 0 (DENSE)          */
    uint32_t count;      /* number of words                                             */
    const uint32_t *words;
} vgc_packet;

/* ------------------------------------------------------------------------------------ */
/* vgc_crc32.c                                                                          */

uint32_t vgc_crc32(const uint8_t *data, size_t len);

/* ------------------------------------------------------------------------------------ */
/* vgc_codec.c                                                                          */

/* L = 12 + sum (20 + 4 count) + 4 (format.md "Trailer"). */
size_t vgc_message_length(const vgc_packet *packets, size_t n_packets);

/* The packet checks of vgc_encode_message alone, packet by packet in list order:
 * for each, 9 (n), 10 (codec), 13 (param), 14-19 (count and words), and last 12 (its
 * segment id repeats an earlier packet's; docs/conformance.md "Which error wins", not
 * the decoder's order, where 12 comes before 13). Writes nothing. */
int vgc_check_packets(const vgc_packet *packets, size_t n_packets, vgc_error *err);

/* Checks every packet against the content rules (9, 13-19), the uniqueness of segment
 * ids (12) and the codec byte (10); on success writes vgc_message_length() bytes to
 * out. Nothing is written on error (err->packet, err->word say where). */
int vgc_encode_message(const vgc_packet *packets, size_t n_packets, uint8_t *out,
                       vgc_error *err);

/* Decodes and fully validates a message (checks 1-19 in order). On success stores the
 * segment count in *n_packets and, when packets != NULL, fills packets[0 .. S-1] and
 * words[] (every packet's words pointer points into words). A message of L bytes has
 * at most L / 20 segments and L / 4 words, so buffers of those sizes always suffice. */
int vgc_decode_message(const uint8_t *data, size_t len, vgc_packet *packets,
                       uint32_t *words, size_t *n_packets, vgc_error *err);

/* The value a valid packet's word stands for (format.md "Codecs"). */
float vgc_word_value(uint32_t codec, uint32_t param, uint32_t word, uint32_t *index);

/* ------------------------------------------------------------------------------------ */
/* vgc_step.c                                                                           */

/* Step 0 of algorithm.md section 3 (and the validation of section 4 when s == NULL):
 * g finite, s finite, s >= 0, r + g finite, v + s finite, in that order; the first bad
 * index of the first broken rule. Writes nothing. */
int vgc_check_step(const float *r, const float *v, const float *g, const float *s, size_t n,
                   vgc_error *err);

/* Index of the first non-finite element of x, or n when all are finite. */
size_t vgc_first_nonfinite(const float *x, size_t n);

/* One VGC step on one segment (algorithm.md section 3; hybrid when tau > 0).
 * words must hold n entries; on success *count words were written and *E is the
 * packet's param. reset != 0 selects the reset residual mode. */
int vgc_step(float *r, float *v, const float *g, const float *s, size_t n, float alpha,
             float zeta, float tau, int reset, uint32_t *words, size_t *count, uint32_t *E,
             vgc_error *err);

/* One step of Strom's threshold baseline (algorithm.md section 4). v is not touched. */
int vgc_strom_step(float *r, const float *g, size_t n, float tau, uint32_t *words,
                   size_t *count, vgc_error *err);

/* ------------------------------------------------------------------------------------ */
/* vgc_aggregate.c                                                                      */

/* algorithm.md section 7: decodes P messages (rank order), checks each against the
 * layout sizes[0 .. S-1], and only then writes g_hat into out[j][0 .. sizes[j]-1]. */
int vgc_decode_accumulate(const uint8_t *const *messages, const size_t *lengths, size_t P,
                          const uint32_t *sizes, size_t S, float *const *out,
                          vgc_error *err);

/* ------------------------------------------------------------------------------------ */
/* vgc_variance.c                                                                       */

/* algorithm.md section 2: x float32[B, in], delta float32[B, out] (row-major);
 * g_W, s_W float32[in, out]; g_b, s_b float32[out]. */
void vgc_dense_grad_var(const float *x, const float *delta, size_t B, size_t in, size_t out,
                        float *g_W, float *s_W, float *g_b, float *s_b);

enum vgc_conv_form { VGC_CONV_EXACT = 0, VGC_CONV_APPROX = 1 };

/* algorithm.md section 2.1: patches float32[B, P, K], delta float32[B, P, out];
 * g_W, s_W float32[K, out]; g_b, s_b float32[out]. Returns VGC_ERR_NOMEM or VGC_OK. */
int vgc_conv_grad_var(const float *patches, const float *delta, size_t B, size_t P, size_t K,
                      size_t out, int form, float *g_W, float *s_W, float *g_b, float *s_b);

/* im2col, channels last (algorithm.md 2.1): column k*C + c of row p is the input the
 * filter's tap k sees at output position p; taps outside the (zero-)padded input are 0.
 * 1-D: x float32[B, L, C] -> patches float32[B, P, kernel*C], P = (L + 2 pad - kernel)/stride + 1.
 * 2-D: x float32[B, H, W, C] -> patches float32[B, Ho*Wo, kh*kw*C], tap k = ki*kw + kj. */
size_t vgc_conv_out_len(size_t len, size_t kernel, size_t stride, size_t padding);
void vgc_im2col1d(const float *x, size_t B, size_t L, size_t C, size_t kernel, size_t stride,
                  size_t padding, float *patches);
void vgc_im2col2d(const float *x, size_t B, size_t H, size_t W, size_t C, size_t kh, size_t kw,
                  size_t stride, size_t padding, float *patches);

#endif /* VGC_H */
