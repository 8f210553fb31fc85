/*
 * vgc_codec.c -- the wire format, version 1 (docs/format.md).
 *
 *   message = header (12 bytes) + S segments + trailer (4 bytes, CRC-32)
 *   segment = header (20 bytes) + count x u32 words
 *
 * Every integer is unsigned little-endian; we read and write bytes one by one, so the
 * code does not depend on the host's byte order or on alignment.
 *
 * The decoder follows "What a decoder rejects" to the letter: framing (checks 1-7),
 * then the checksum (8), then the content of each segment in message order (9-19),
 * and reports the first problem with its `field` and byte `offset`.
 * The encoder applies the content rules too (format.md: "Checks 9 and 13 to 19 are the
 * content rules of a packet. The encoder applies them too ... together with the
 * uniqueness of segment ids"), so it never writes a message the decoder would reject.
 */
#include <stdlib.h>
#include <string.h>

#include "vgc.h"

/* ------------------------------------------------------------------------------------ */
/* little-endian access                                                                 */

static uint32_t rd16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static void wr16(uint8_t *p, uint32_t x) { p[0] = (uint8_t)x; p[1] = (uint8_t)(x >> 8); }
static void wr32(uint8_t *p, uint32_t x) {
    p[0] = (uint8_t)x; p[1] = (uint8_t)(x >> 8); p[2] = (uint8_t)(x >> 16); p[3] = (uint8_t)(x >> 24);
}

/* ------------------------------------------------------------------------------------ */
/* layout constants (format.md "Message header", "Segment", "Codecs")                   */

#define HEADER_LEN 12
#define SEGMENT_HEADER_LEN 20
#define TRAILER_LEN 4

#define VGC_INDEX_SHIFT 5      /* VGC_Q4 word: index << 5 | sign << 4 | k   */
#define VGC_SIGN_BIT 4
#define VGC_K_MASK 0xFu
#define STROM_INDEX_SHIFT 1    /* STROM word:  index << 1 | sign            */
#define F32_EXP_ALL_ONES 0x7F800000u

static int format_error(vgc_error *err, const char *field, uint64_t offset, const char *reason) {
    err->status = VGC_ERR_FORMAT;
    err->name = field;
    err->index = offset;
    err->reason = reason;
    return VGC_ERR_FORMAT;
}

/* Word value (format.md "Codecs"); *index receives the element index. The packet is
 * assumed valid. */
float vgc_word_value(uint32_t codec, uint32_t param, uint32_t word, uint32_t *index) {
    uint32_t bits;
    if (codec == VGC_CODEC_VGC_Q4) {
        uint32_t sign = (word >> VGC_SIGN_BIT) & 1u, k = word & VGC_K_MASK;
        *index = word >> VGC_INDEX_SHIFT;
        bits = sign << 31 | (param - k) << 23;           /* +-2^(E - k - 127) */
    } else if (codec == VGC_CODEC_STROM) {
        *index = word >> STROM_INDEX_SHIFT;
        bits = (word & 1u) << 31 | param;                /* +-tau             */
    } else {
        bits = word;                                      /* DENSE: the bits   */
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* ------------------------------------------------------------------------------------ */
/* duplicate segment ids (check 12): dup[j] = 1 when segment j repeats an earlier id.    */
/* Sorting (id, position) pairs keeps this O(S log S): a corrupted message can hold up   */
/* to L/20 segments.                                                                    */

typedef struct { uint32_t id; size_t pos; } id_pos;

static int cmp_id_pos(const void *a, const void *b) {
    const id_pos *x = a, *y = b;
    if (x->id != y->id) return x->id < y->id ? -1 : 1;
    return x->pos < y->pos ? -1 : (x->pos > y->pos);
}

static int find_duplicates(const uint32_t *ids, size_t S, unsigned char *dup) {
    memset(dup, 0, S);
    if (S < 2) return 0;
    id_pos *pairs = malloc(S * sizeof *pairs);
    if (!pairs) return -1;
    for (size_t j = 0; j < S; j++) { pairs[j].id = ids[j]; pairs[j].pos = j; }
    qsort(pairs, S, sizeof *pairs, cmp_id_pos);
    for (size_t j = 1; j < S; j++) {
        if (pairs[j].id == pairs[j - 1].id) dup[pairs[j].pos] = 1;   /* not the first one */
    }
    free(pairs);
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* the content rules shared by the encoder and the decoder: check 13 (param, one rule   */
/* per codec, in the table's order) and checks 14-19 (count and words). Checks 9-12 are */
/* done by the callers: 11 and 12 need the raw bytes and the other segments.            */

/* check 13: returns 1 when param breaks its codec's rule */
static int content_rule_param(uint32_t codec, uint32_t param, uint32_t count) {
    if (codec == VGC_CODEC_VGC_Q4) {
        uint32_t E = param & 0xFFu;
        if (param >> 8 != 0) return 1;           /* bits 31..8 reserved          */
        if (E == 255) return 1;                  /* E = 255                      */
        if (E == 0 && count > 0) return 1;       /* E = 0 with words             */
        if (E > 0 && count == 0) return 1;       /* E > 0 for an empty packet    */
    } else if (codec == VGC_CODEC_STROM) {
        /* tau (as float32) finite and > 0: exponent not all ones, sign clear, not +-0 */
        if ((param & F32_EXP_ALL_ONES) == F32_EXP_ALL_ONES) return 1;
        if (param >> 31) return 1;
        if (param == 0) return 1;
    } else {
        if (param != 0) return 1;                /* DENSE: param 0               */
    }
    return 0;
}

/* checks 14 to 19: returns the failing check number (0 if none), its field, and the
 * position of the offending word (-1 for 14 and 18, which name a header field).
 * word(ctx, i) reads the i-th word (from the message bytes or from an array). */
typedef uint32_t (*word_reader)(const void *ctx, size_t i);

static int content_rules_words(uint32_t n, uint32_t codec, uint32_t param, uint32_t count,
                               word_reader word, const void *ctx, const char **field,
                               int64_t *bad_word) {
    *bad_word = -1;
    /* 14: VGC_Q4, STROM: count > n.  DENSE: count != n */
    if (codec == VGC_CODEC_DENSE ? count != n : count > n) { *field = "count"; return 14; }
    if (codec != VGC_CODEC_DENSE) {
        uint32_t shift = codec == VGC_CODEC_VGC_Q4 ? VGC_INDEX_SHIFT : STROM_INDEX_SHIFT;
        /* 15: a word's index >= n (each rule runs over all words before the next one) */
        for (size_t i = 0; i < count; i++) {
            if ((word(ctx, i) >> shift) >= n) { *field = "words"; *bad_word = (int64_t)i; return 15; }
        }
        /* 16: indices strictly increasing */
        for (size_t i = 1; i < count; i++) {
            if ((word(ctx, i) >> shift) <= (word(ctx, i - 1) >> shift)) {
                *field = "words"; *bad_word = (int64_t)i; return 16;
            }
        }
    }
    if (codec == VGC_CODEC_VGC_Q4) {
        /* 17: k >= E (E - k < 1 would not be a normal float32) */
        int has_k0 = 0;
        for (size_t i = 0; i < count; i++) {
            uint32_t k = word(ctx, i) & VGC_K_MASK;
            if (k >= param) { *field = "words"; *bad_word = (int64_t)i; return 17; }
        }
        /* 18: a non-empty packet has a word with k = 0 (decision 12) */
        for (size_t i = 0; i < count; i++) has_k0 |= (word(ctx, i) & VGC_K_MASK) == 0;
        if (count > 0 && !has_k0) { *field = "param"; return 18; }
    }
    if (codec == VGC_CODEC_DENSE) {
        /* 19: no inf or NaN (exponent field all ones) */
        for (size_t i = 0; i < count; i++) {
            if ((word(ctx, i) & F32_EXP_ALL_ONES) == F32_EXP_ALL_ONES) {
                *field = "words"; *bad_word = (int64_t)i; return 19;
            }
        }
    }
    return 0;
}

static uint32_t read_message_word(const void *ctx, size_t i) {
    return rd32((const uint8_t *)ctx + 4 * i);
}
static uint32_t read_array_word(const void *ctx, size_t i) { return ((const uint32_t *)ctx)[i]; }

/* ------------------------------------------------------------------------------------ */
/* encoder                                                                               */

size_t vgc_message_length(const vgc_packet *packets, size_t n_packets) {
    size_t L = HEADER_LEN + TRAILER_LEN;
    for (size_t j = 0; j < n_packets; j++) L += SEGMENT_HEADER_LEN + 4 * (size_t)packets[j].count;
    return L;
}

static int encode_error(vgc_error *err, const char *field, size_t packet, int64_t word,
                        const char *reason) {
    err->status = VGC_ERR_INPUT;
    err->name = field;
    err->packet = (int64_t)packet;
    err->word = word;
    err->reason = reason;
    return VGC_ERR_INPUT;
}

int vgc_check_packets(const vgc_packet *packets, size_t S, vgc_error *err) {
    err->packet = err->word = err->rank = -1;
    uint32_t *ids = calloc(S ? S : 1, sizeof *ids);
    unsigned char *dup = malloc(S ? S : 1);
    if (!ids || !dup) { free(ids); free(dup); err->status = VGC_ERR_NOMEM; return VGC_ERR_NOMEM; }
    for (size_t j = 0; j < S; j++) ids[j] = packets[j].segment_id;
    int bad = find_duplicates(ids, S, dup);
    free(ids);
    if (bad) { free(dup); err->status = VGC_ERR_NOMEM; return VGC_ERR_NOMEM; }

    for (size_t j = 0; j < S; j++) {
        const vgc_packet *p = &packets[j];
        const char *field;
        int64_t w;
        /* 9, 10, (11: no reserved bytes in a packet), 13, 14-19: the decoder's content
           order, except that 12 (a repeated id) comes last, below */
        if (p->n > VGC_MAX_SEGMENT_LEN) { free(dup); return encode_error(err, "n", j, -1, "n > 2^27"); }
        if (p->codec > VGC_CODEC_STROM) { free(dup); return encode_error(err, "codec", j, -1, "unknown codec"); }
        if (content_rule_param(p->codec, p->param, p->count)) {
            free(dup); return encode_error(err, "param", j, -1, "param breaks its codec's rule");
        }
        if (content_rules_words(p->n, p->codec, p->param, p->count, read_array_word, p->words,
                                &field, &w)) {
            free(dup); return encode_error(err, field, j, w, "breaks a content rule of format.md");
        }
        /* a repeated segment id last, after the packet's own rules
           (docs/conformance.md, "Which error wins": encode_message) */
        if (dup[j]) { free(dup); return encode_error(err, "segment_id", j, -1, "repeats an earlier segment id"); }
    }
    free(dup);
    return VGC_OK;
}

int vgc_encode_message(const vgc_packet *packets, size_t S, uint8_t *out, vgc_error *err) {
    /* validate every packet first: nothing is written for an invalid list */
    int rc = vgc_check_packets(packets, S, err);
    if (rc != VGC_OK) return rc;

    /* message header: magic "VGCM", version 1, reserved 0, segment_count S */
    uint8_t *o = out;
    memcpy(o, "VGCM", 4);
    wr16(o + 4, 1);
    wr16(o + 6, 0);
    wr32(o + 8, (uint32_t)S);
    o += HEADER_LEN;
    /* segments in list order (format.md "Canonical encoding": the encoder does not sort) */
    for (size_t j = 0; j < S; j++) {
        const vgc_packet *p = &packets[j];
        wr32(o + 0, p->segment_id);
        wr32(o + 4, p->n);
        o[8] = (uint8_t)p->codec;
        o[9] = o[10] = o[11] = 0;
        wr32(o + 12, p->param);
        wr32(o + 16, p->count);
        for (size_t i = 0; i < p->count; i++) wr32(o + SEGMENT_HEADER_LEN + 4 * i, p->words[i]);
        o += SEGMENT_HEADER_LEN + 4 * (size_t)p->count;
    }
    /* trailer: CRC-32 of every byte before it */
    wr32(o, vgc_crc32(out, (size_t)(o - out)));
    return VGC_OK;
}

/* ------------------------------------------------------------------------------------ */
/* decoder                                                                               */

int vgc_decode_message(const uint8_t *data, size_t len, vgc_packet *packets, uint32_t *words,
                       size_t *n_packets, vgc_error *err) {
    err->packet = err->word = err->rank = -1;
    /* 1. Framing. The last 4 bytes are always the trailer: every field must end at or
     *    before limit = L - 4. Each field is checked to fit, then (2-4) compared. */
    const int64_t limit = (int64_t)len - TRAILER_LEN;
#define FITS(off, width) ((int64_t)(off) + (int64_t)(width) <= limit)
    if (!FITS(0, 4)) return format_error(err, "magic", 0, "truncated: magic does not fit");
    if (memcmp(data, "VGCM", 4) != 0) return format_error(err, "magic", 0, "magic is not VGCM");  /* 2 */
    if (!FITS(4, 2)) return format_error(err, "version", 4, "truncated: version does not fit");
    if (rd16(data + 4) != 1) return format_error(err, "version", 4, "version is not 1");          /* 3 */
    if (!FITS(6, 2)) return format_error(err, "reserved", 6, "truncated: reserved does not fit");
    if (rd16(data + 6) != 0) return format_error(err, "reserved", 6, "reserved is not 0");        /* 4 */
    if (!FITS(8, 4)) return format_error(err, "segment_count", 8, "truncated: segment_count does not fit");
    const uint32_t S = rd32(data + 8);

    /* 5, 6: each segment's header fields, then its words, must fit. A huge S or count
     * fails here after at most L/20 segments, before anything is allocated. */
    static const struct { const char *name; int off, width; } seg_fields[] = {
        {"segment_id", 0, 4}, {"n", 4, 4}, {"codec", 8, 1}, {"reserved", 9, 3},
        {"param", 12, 4}, {"count", 16, 4},
    };
    uint64_t pos = HEADER_LEN;
    for (uint32_t j = 0; j < S; j++) {
        for (int f = 0; f < 6; f++) {
            if (!FITS(pos + seg_fields[f].off, seg_fields[f].width)) {
                return format_error(err, seg_fields[f].name, pos + seg_fields[f].off,
                                    "truncated: segment header field does not fit");
            }
        }
        uint64_t count = rd32(data + pos + 16);
        if (!FITS(pos + SEGMENT_HEADER_LEN, 4 * count)) {
            return format_error(err, "words", pos + SEGMENT_HEADER_LEN, "truncated: words do not fit");
        }
        pos += SEGMENT_HEADER_LEN + 4 * count;
    }
    /* 7: more than 4 bytes remain after the last segment (fewer cannot: see above) */
    if ((int64_t)pos < limit) return format_error(err, "crc32", pos, "trailing bytes after the last segment");
#undef FITS

    /* 8. Checksum over bytes 0 .. L - 5. */
    if (rd32(data + limit) != vgc_crc32(data, (size_t)limit)) {
        return format_error(err, "crc32", (uint64_t)limit, "CRC-32 mismatch");
    }

    /* 3. Content, segment by segment in message order. S <= L / 20 now. */
    uint32_t *ids = calloc(S ? S : 1, sizeof *ids);
    unsigned char *dup = malloc(S ? S : 1);
    if (!ids || !dup) { free(ids); free(dup); err->status = VGC_ERR_NOMEM; return VGC_ERR_NOMEM; }
    pos = HEADER_LEN;
    for (uint32_t j = 0; j < S; j++) {
        ids[j] = rd32(data + pos);
        pos += SEGMENT_HEADER_LEN + 4 * (uint64_t)rd32(data + pos + 16);
    }
    int nomem = find_duplicates(ids, S, dup);
    free(ids);
    if (nomem) { free(dup); err->status = VGC_ERR_NOMEM; return VGC_ERR_NOMEM; }

    int rc = VGC_OK;
    size_t n_words = 0;
    pos = HEADER_LEN;
    for (uint32_t j = 0; j < S && rc == VGC_OK; j++) {
        const uint8_t *seg = data + pos;
        const uint32_t id = rd32(seg), n = rd32(seg + 4), codec = seg[8];
        const uint32_t param = rd32(seg + 12), count = rd32(seg + 16);
        const char *field;
        int64_t w;
        int rule;
        if (n > VGC_MAX_SEGMENT_LEN) {                                                       /* 9 */
            rc = format_error(err, "n", pos + 4, "n > 2^27");
        } else if (codec > VGC_CODEC_STROM) {                                                /* 10 */
            rc = format_error(err, "codec", pos + 8, "unknown codec");
        } else if (seg[9] || seg[10] || seg[11]) {                                           /* 11 */
            rc = format_error(err, "reserved", pos + 9, "segment reserved bytes are not 0");
        } else if (dup[j]) {                                                                 /* 12 */
            rc = format_error(err, "segment_id", pos, "segment id repeats an earlier one");
        } else if (content_rule_param(codec, param, count)) {                                /* 13 */
            rc = format_error(err, "param", pos + 12, "param breaks its codec's rule");
        } else if ((rule = content_rules_words(n, codec, param, count, read_message_word,  /* 14-19 */
                                               seg + SEGMENT_HEADER_LEN, &field, &w))) {
            /* 14 is reported at `count` (+16), 18 at `param` (+12), the others at the word */
            uint64_t off = rule == 14 ? pos + 16
                         : rule == 18 ? pos + 12
                         : pos + SEGMENT_HEADER_LEN + 4 * (uint64_t)w;
            rc = format_error(err, field, off, "breaks a content rule of format.md");
        } else if (packets) {
            packets[j].segment_id = id;
            packets[j].n = n;
            packets[j].codec = codec;
            packets[j].param = param;
            packets[j].count = count;
            packets[j].words = words + n_words;
            for (uint32_t i = 0; i < count; i++) words[n_words++] = rd32(seg + SEGMENT_HEADER_LEN + 4 * i);
        }
        pos += SEGMENT_HEADER_LEN + 4 * (uint64_t)count;
    }
    free(dup);
    if (rc == VGC_OK) *n_packets = S;
    return rc;
}
