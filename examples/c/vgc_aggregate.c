/*
 * vgc_aggregate.c -- aggregation across P workers (algorithm.md section 7):
 *
 *     acc <- +0.0 everywhere
 *     for w = 0 .. P-1 (rank order):  acc[i] <- acc[i] + q_{w,i}   (for each i sent by w)
 *     g_hat <- acc / float32(P)
 *
 * Every message is fully validated before any output is written; every message must
 * carry each segment id 0 .. S-1 exactly once with the agreed n (decision 9); the order
 * of segments inside a message is free.
 *
 * Which error wins when several messages are bad is not spelled out by the docs. As
 * the reference does (found by running it, see README.md): first the format of every
 * message in rank order (FormatError with the lowest bad rank), then the layout of
 * every message in rank order (SegmentMismatchError).
 */
#include <stdlib.h>
#include <string.h>

#include "vgc.h"

static int mismatch(vgc_error *err, size_t rank, const char *reason, uint64_t detail) {
    err->status = VGC_ERR_SEGMENT_MISMATCH;
    err->rank = (int64_t)rank;
    err->reason = reason;
    err->detail = detail;
    return VGC_ERR_SEGMENT_MISMATCH;
}

int vgc_decode_accumulate(const uint8_t *const *messages, const size_t *lengths, size_t P,
                          const uint32_t *sizes, size_t S, float *const *out, vgc_error *err) {
    err->rank = err->packet = err->word = -1;
    if (P == 0) {
        err->status = VGC_ERR_INPUT;
        err->name = "messages";
        err->reason = "no messages";
        return VGC_ERR_INPUT;
    }
    /* Pass 1a: every message's format, rank by rank (FormatError names the rank). */
    int rc = VGC_OK;
    for (size_t w = 0; w < P && rc == VGC_OK; w++) {
        size_t n_seg = 0;
        rc = vgc_decode_message(messages[w], lengths[w], NULL, NULL, &n_seg, err);
        if (rc == VGC_ERR_FORMAT) err->rank = (int64_t)w;
    }
    if (rc != VGC_OK) return rc;

    /* Pass 1b: every message's layout, rank by rank: each segment id 0 .. S-1 exactly
     * once with the agreed n. (The reference decodes all messages before it compares
     * any layout: found with the kit's black box, not stated in the docs.) */
    unsigned char *seen = malloc(S ? S : 1);
    if (!seen) { err->status = VGC_ERR_NOMEM; return VGC_ERR_NOMEM; }
    for (size_t w = 0; w < P && rc == VGC_OK; w++) {
        size_t len = lengths[w], n_seg = 0;
        vgc_packet *packets = malloc((len / 20 + 1) * sizeof *packets);
        uint32_t *words = malloc((len / 4 + 1) * sizeof *words);
        if (!packets || !words || vgc_decode_message(messages[w], len, packets, words, &n_seg, err)) {
            free(packets); free(words); err->status = rc = VGC_ERR_NOMEM; break;
        }
        memset(seen, 0, S);
        for (size_t j = 0; j < n_seg && rc == VGC_OK; j++) {
            uint32_t id = packets[j].segment_id;
            if (id >= S) rc = mismatch(err, w, "unexpected segment id", id);
            else if (packets[j].n != sizes[id]) rc = mismatch(err, w, "segment length differs from sizes", id);
            else seen[id] = 1;   /* the decoder already rejected a repeated id (check 12) */
        }
        for (size_t id = 0; id < S && rc == VGC_OK; id++) {
            if (!seen[id]) rc = mismatch(err, w, "segment missing from the message", id);
        }
        free(packets);
        free(words);
    }
    free(seen);
    if (rc != VGC_OK) return rc;

    /* Pass 2: nothing can fail any more. acc starts at +0.0 (never -0.0). */
    for (size_t j = 0; j < S; j++) {
        for (uint32_t i = 0; i < sizes[j]; i++) out[j][i] = 0.0f;
    }
    for (size_t w = 0; w < P; w++) {
        size_t len = lengths[w], n_seg = 0;
        vgc_packet *packets = malloc((len / 20 + 1) * sizeof *packets);
        uint32_t *words = malloc((len / 4 + 1) * sizeof *words);
        if (!packets || !words || vgc_decode_message(messages[w], len, packets, words, &n_seg, err)) {
            free(packets); free(words); err->status = VGC_ERR_NOMEM; return VGC_ERR_NOMEM;
        }
        for (size_t j = 0; j < n_seg; j++) {
            const vgc_packet *p = &packets[j];
            float *acc = out[p->segment_id];
            for (uint32_t c = 0; c < p->count; c++) {
                uint32_t i = c;                              /* DENSE: word c is element c */
                float q = vgc_word_value(p->codec, p->param, p->words[c], &i);
                acc[i] = acc[i] + q;
            }
        }
        free(packets);
        free(words);
    }
    /* g_hat <- acc / float32(P): one division, not a multiplication by 1/P */
    const float Pf = (float)P;
    for (size_t j = 0; j < S; j++) {
        for (uint32_t i = 0; i < sizes[j]; i++) out[j][i] = out[j][i] / Pf;
    }
    return VGC_OK;
}
