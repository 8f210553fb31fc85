/*
 * vectors_calls.c -- kind "calls" of the golden vectors (docs/conformance.md, "Cases" and
 * "File layout"): one call of one operation per entry of case.json's "calls", its
 * arguments in in/call<i>/, its outcome written to out/call<i>/ (result.json, and the
 * arrays or message it returns, and r, v after a step).
 *
 * What a Python caller gets from its types, a C caller gets from values: the shapes in
 * case.json. So the checks of "Which error wins" (docs/conformance.md) that concern
 * shapes, lengths, integer ranges and the form string are made here, in their documented
 * order, before the library (which checks values) runs.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "vgc.h"
#include "vectors_io.h"

/* ------------------------------------------------------------------------------------ */
/* inputs                                                                                */

typedef struct {
    float *x;        /* the values, C order */
    size_t size;     /* number of elements */
    size_t ndim;
    size_t dim[4];
} array;

/* in/call<i>/NAME.f32 with the shape case.json gives under NAME */
static int load_array(const char *idir, const json *call, const char *name, array *a) {
    const json *shape = json_get(call, name);
    memset(a, 0, sizeof *a);
    if (!shape || shape->type != JSON_ARRAY || shape->len > 4) return fail("%s: no usable shape", name);
    a->ndim = shape->len;
    a->size = 1;
    for (size_t d = 0; d < a->ndim; d++) {
        a->dim[d] = (size_t)json_at(shape, d)->integer;
        a->size *= a->dim[d];
    }
    size_t len;
    uint8_t *data = read_file(path_of("%s/%s.f32", idir, name), &len);
    if (!data || len != 4 * a->size) { free(data); return fail("%s.f32: missing or not %zu floats", name, a->size); }
    a->x = malloc(len ? len : 4);
    if (!a->x) { free(data); return fail("out of memory"); }
    memcpy(a->x, data, len);
    free(data);
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* outcomes                                                                              */

/* The error object of docs/conformance.md: {"ok": false, "error": CLASS, attributes}. */
static int write_input_error(const char *odir, const char *name) {
    char doc[512];
    snprintf(doc, sizeof doc, "{\"ok\": false, \"error\": \"InputError\", \"name\": \"%s\"}\n", name);
    return write_file(path_of("%s/result.json", odir), doc, strlen(doc));
}

static int write_step_error(const char *odir, const vgc_error *err, uint32_t segment) {
    const char *cls = err->status == VGC_ERR_NONFINITE ? "NonFiniteError"
                      : err->status == VGC_ERR_NEGATIVE_VARIANCE ? "NegativeVarianceError"
                      : "AccumulatorOverflowError";
    char doc[512];
    snprintf(doc, sizeof doc,
             "{\"ok\": false, \"error\": \"%s\", \"name\": \"%s\", \"segment\": %u, \"index\": %llu}\n", cls,
             err->name, segment, (unsigned long long)err->index);
    return write_file(path_of("%s/result.json", odir), doc, strlen(doc));
}

static int write_format_error(const char *odir, const vgc_error *err, long long rank) {
    char doc[512];
    int k = snprintf(doc, sizeof doc, "{\"ok\": false, \"error\": \"FormatError\", \"field\": \"%s\", \"offset\": %llu",
                     err->name, (unsigned long long)err->index);
    if (rank >= 0) k += snprintf(doc + k, sizeof doc - (size_t)k, ", \"rank\": %lld", rank);
    snprintf(doc + k, sizeof doc - (size_t)k, "}\n");
    return write_file(path_of("%s/result.json", odir), doc, strlen(doc));
}

static int write_text(const char *odir, const char *doc) {
    return write_file(path_of("%s/result.json", odir), doc, strlen(doc));
}

/* ------------------------------------------------------------------------------------ */
/* vgc_step, strom_step                                                                  */

/* g (or s) must be a 1-D vector of length n (docs/conformance.md, "Which error wins") */
static int is_vector(const array *a, size_t n) { return a->ndim == 1 && a->dim[0] == n; }

static int run_step(const char *idir, const char *odir, const json *call, int strom) {
    array r, v, g, s = {0};
    int rc = load_array(idir, call, "r", &r);
    if (!rc) rc = load_array(idir, call, "v", &v);
    if (!rc) rc = load_array(idir, call, "g", &g);
    if (!rc && !strom) rc = load_array(idir, call, "s", &s);
    if (rc) return rc;
    const uint32_t segment = (uint32_t)json_int(call, "segment_id", 0);
    const json *params = json_get(call, "params");
    const size_t n = r.size;
    /* the state is not an argument that can be refused: a SegmentState holds r and v of
       one length n, so a vector with other shapes is a broken vector, not a call error */
    if (r.ndim != 1 || v.ndim != 1 || v.size != n) {
        free(r.x); free(v.x); free(g.x); free(s.x);
        return fail("r and v are not float32[n] of one n");
    }
    uint32_t *words = malloc((n ? n : 1) * sizeof *words);
    if (!words) { free(r.x); free(v.x); free(g.x); free(s.x); return fail("out of memory"); }
    size_t count = 0;
    uint32_t param = 0;
    vgc_error err = {0};
    int status = VGC_OK;
    const char *bad = NULL; /* the InputError's name, when a shape is wrong */
    if (!is_vector(&g, n)) bad = "g";
    else if (!strom && !is_vector(&s, n)) {
        size_t i = vgc_first_nonfinite(g.x, n); /* g's finiteness is checked before s's shape */
        if (i < n) {
            status = VGC_ERR_NONFINITE;
            err.name = "g";
            err.index = i;
        } else bad = "s";
    } else if (strom) {
        float tau = param_f32(params, "tau");
        status = vgc_strom_step(r.x, g.x, n, tau, words, &count, &err);
        memcpy(&param, &tau, 4);
    } else {
        const char *residual = json_str(params, "residual");
        status = vgc_step(r.x, v.x, g.x, s.x, n, param_f32(params, "alpha"), param_f32(params, "zeta"),
                          param_f32(params, "tau"), residual && !strcmp(residual, "reset"), words, &count,
                          &param, &err);
    }
    rc = mkdirs(odir);
    if (!rc) rc = write_file(path_of("%s/r.f32", odir), r.x, 4 * n);
    if (!rc) rc = write_file(path_of("%s/v.f32", odir), v.x, 4 * n);
    if (!rc) {
        if (bad) rc = write_input_error(odir, bad);
        else if (status == VGC_ERR_NOMEM) rc = fail("out of memory");
        else if (status != VGC_OK) rc = write_step_error(odir, &err, segment);
        else {
            char doc[512];
            snprintf(doc, sizeof doc,
                     "{\"ok\": true, \"packet\": {\"segment_id\": %u, \"n\": %zu, \"codec\": \"%s\", "
                     "\"param\": %u, \"count\": %zu}}\n",
                     segment, n, strom ? "STROM" : "VGC_Q4", param, count);
            rc = write_text(odir, doc);
            if (!rc) rc = write_file(path_of("%s/words.u32", odir), words, 4 * count);
        }
    }
    free(r.x); free(v.x); free(g.x); free(s.x); free(words);
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* encode_message                                                                        */

static uint32_t codec_of(const char *name) {
    return !strcmp(name, "DENSE") ? VGC_CODEC_DENSE : !strcmp(name, "VGC_Q4") ? VGC_CODEC_VGC_Q4 : VGC_CODEC_STROM;
}

static int write_encode_error(const char *odir, const vgc_error *err) {
    char name[256];
    int k = snprintf(name, sizeof name, "packets[%lld].%s", (long long)err->packet, err->name);
    if (err->word >= 0) snprintf(name + k, sizeof name - (size_t)k, "[%lld]", (long long)err->word);
    return write_input_error(odir, name);
}

static int run_encode(const char *idir, const char *odir, const json *call) {
    const json *list = json_get(call, "packets");
    const size_t S = list ? list->len : 0;
    vgc_packet *packets = calloc(S ? S : 1, sizeof *packets);
    uint32_t **words = calloc(S ? S : 1, sizeof *words);
    int rc = mkdirs(odir), done = 0;
    vgc_error err = {0};
    for (size_t j = 0; j < S && !rc && !done; j++) {
        const json *p = json_at(list, j);
        static const char *fields[] = {"segment_id", "n", "param"};
        int64_t value[3];
        for (int f = 0; f < 3; f++) value[f] = json_int(p, fields[f], -1);
        size_t len;
        uint8_t *data = read_file(path_of("%s/packet%zu.words.u32", idir, j), &len);
        if (!data) { rc = fail("packet%zu.words.u32: missing", j); break; }
        words[j] = malloc(len ? len : 4);
        if (!words[j]) { free(data); rc = fail("out of memory"); break; }
        memcpy(words[j], data, len);
        free(data);
        /* a field out of 0 .. 2^32 - 1: the earlier packets' own errors come first */
        for (int f = 0; f < 3 && !done; f++) {
            if (value[f] >= 0 && value[f] <= (int64_t)UINT32_MAX) continue;
            done = 1;
            if (vgc_check_packets(packets, j, &err) == VGC_ERR_INPUT) rc = write_encode_error(odir, &err);
            else {
                char name[64];
                snprintf(name, sizeof name, "packets[%zu].%s", j, fields[f]);
                rc = write_input_error(odir, name);
            }
        }
        packets[j] = (vgc_packet){(uint32_t)value[0], (uint32_t)value[1], codec_of(json_str(p, "codec")),
                                  (uint32_t)value[2], (uint32_t)(len / 4), words[j]};
    }
    if (!rc && !done) {
        size_t L = vgc_message_length(packets, S);
        uint8_t *out = malloc(L);
        int status = vgc_encode_message(packets, S, out, &err);
        if (status == VGC_ERR_INPUT) rc = write_encode_error(odir, &err);
        else if (status != VGC_OK) rc = fail("encode: status %d", status);
        else {
            rc = write_text(odir, "{\"ok\": true}\n");
            if (!rc) rc = write_file(path_of("%s/message.bin", odir), out, L);
        }
        free(out);
    }
    for (size_t j = 0; j < S; j++) free(words[j]);
    free(words); free(packets);
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* decode_message, decode_accumulate                                                      */

static int run_decode_call(const char *idir, const char *odir) {
    size_t len;
    uint8_t *data = read_file(path_of("%s/data.bin", idir), &len);
    if (!data) return fail("data.bin: missing");
    vgc_packet *packets = malloc((len / 20 + 1) * sizeof *packets);
    uint32_t *words = malloc((len / 4 + 1) * sizeof *words);
    size_t S = 0;
    vgc_error err = {0};
    int status = vgc_decode_message(data, len, packets, words, &S, &err);
    int rc = mkdirs(odir);
    if (!rc && status == VGC_ERR_FORMAT) rc = write_format_error(odir, &err, -1);
    else if (!rc && status != VGC_OK) rc = fail("decode: status %d", status);
    else if (!rc) {
        FILE *f = fopen(path_of("%s/result.json", odir), "w");
        if (!f) rc = fail("cannot write result.json");
        else {
            write_packets_json(f, packets, S);
            fclose(f);
        }
    }
    free(data); free(packets); free(words);
    return rc;
}

static int run_accumulate(const char *idir, const char *odir, const json *call) {
    const size_t P = (size_t)json_int(call, "ranks", 0);
    const json *sz = json_get(call, "sizes");
    const size_t S = sz ? sz->len : 0;
    int rc = mkdirs(odir);
    if (rc) return rc;
    if (P == 0) return write_input_error(odir, "messages");
    uint8_t **msgs = calloc(P, sizeof *msgs);
    size_t *lens = calloc(P, sizeof *lens);
    uint32_t *sizes = calloc(S ? S : 1, sizeof *sizes);
    float **out = calloc(S ? S : 1, sizeof *out);
    int done = 0;
    /* every message decoded, in rank order, before anything else */
    for (size_t w = 0; w < P && !rc && !done; w++) {
        msgs[w] = read_file(path_of("%s/rank%zu.bin", idir, w), &lens[w]);
        if (!msgs[w]) { rc = fail("rank%zu.bin: missing", w); break; }
        size_t n_packets = 0;
        vgc_error err = {0};
        vgc_packet *packets = malloc((lens[w] / 20 + 1) * sizeof *packets);
        uint32_t *words = malloc((lens[w] / 4 + 1) * sizeof *words);
        if (vgc_decode_message(msgs[w], lens[w], packets, words, &n_packets, &err) == VGC_ERR_FORMAT) {
            rc = write_format_error(odir, &err, (long long)w);
            done = 1;
        }
        free(packets); free(words);
    }
    /* then sizes: integers in 0 .. 2^27 */
    for (size_t j = 0; j < S && !rc && !done; j++) {
        int64_t n = json_at(sz, j)->integer;
        if (n < 0 || n > (int64_t)VGC_MAX_SEGMENT_LEN) {
            char name[64];
            snprintf(name, sizeof name, "sizes[%zu]", j);
            rc = write_input_error(odir, name);
            done = 1;
        } else sizes[j] = (uint32_t)n;
    }
    for (size_t j = 0; j < S && !rc && !done; j++) out[j] = calloc(sizes[j] ? sizes[j] : 1, 4);
    if (!rc && !done) {
        vgc_error err = {0};
        int status = vgc_decode_accumulate((const uint8_t *const *)msgs, lens, P, sizes, S, out, &err);
        if (status == VGC_ERR_FORMAT) rc = write_format_error(odir, &err, (long long)err.rank);
        else if (status == VGC_ERR_SEGMENT_MISMATCH)
            rc = write_text(odir, "{\"ok\": false, \"error\": \"SegmentMismatchError\"}\n");
        else if (status == VGC_ERR_INPUT) rc = write_input_error(odir, err.name);
        else if (status != VGC_OK) rc = fail("decode_accumulate: status %d", status);
        else {
            rc = write_text(odir, "{\"ok\": true}\n");
            for (size_t j = 0; j < S && !rc; j++)
                rc = write_file(path_of("%s/g_hat%zu.f32", odir, j), out[j], 4 * (size_t)sizes[j]);
        }
    }
    for (size_t w = 0; w < P; w++) free(msgs[w]);
    for (size_t j = 0; j < S; j++) free(out[j]);
    free(msgs); free(lens); free(sizes); free(out);
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* dense_grad_var, conv_grad_var                                                          */

static int write_layer_outputs(const char *odir, const float *gW, const float *sW, const float *gb,
                               const float *sb, size_t rows, size_t out) {
    int rc = write_text(odir, "{\"ok\": true}\n");
    if (!rc) rc = write_file(path_of("%s/g_W.f32", odir), gW, 4 * rows * out);
    if (!rc) rc = write_file(path_of("%s/s_W.f32", odir), sW, 4 * rows * out);
    if (!rc) rc = write_file(path_of("%s/g_b.f32", odir), gb, 4 * out);
    if (!rc) rc = write_file(path_of("%s/s_b.f32", odir), sb, 4 * out);
    return rc;
}

static int run_layer(const char *idir, const char *odir, const json *call, int conv) {
    const char *first = conv ? "patches" : "x";
    const size_t rank = conv ? 3 : 2;
    array x, d;
    int rc = load_array(idir, call, first, &x);
    if (!rc) rc = load_array(idir, call, "delta", &d);
    if (!rc) rc = mkdirs(odir);
    if (rc) return rc;
    const char *form = conv ? json_str(call, "form") : NULL;
    const char *bad = NULL;
    if (x.ndim != rank) bad = first;
    else if (d.ndim != rank) bad = "delta";
    else if (d.dim[0] != x.dim[0] || (conv && d.dim[1] != x.dim[1])) bad = "delta";
    else if (x.dim[0] == 0 || (conv && x.dim[1] == 0)) bad = first;
    else if (conv && (!form || (strcmp(form, "exact") && strcmp(form, "approx")))) bad = "form";
    if (bad) rc = write_input_error(odir, bad);
    else {
        const size_t B = x.dim[0], P = conv ? x.dim[1] : 1, K = x.dim[rank - 1], out = d.dim[rank - 1];
        float *gW = calloc(K * out + 1, 4), *sW = calloc(K * out + 1, 4);
        float *gb = calloc(out + 1, 4), *sb = calloc(out + 1, 4);
        if (!gW || !sW || !gb || !sb) rc = fail("out of memory");
        else if (conv) {
            if (vgc_conv_grad_var(x.x, d.x, B, P, K, out, !strcmp(form, "approx"), gW, sW, gb, sb))
                rc = fail("out of memory");
        } else vgc_dense_grad_var(x.x, d.x, B, K, out, gW, sW, gb, sb);
        if (!rc) rc = write_layer_outputs(odir, gW, sW, gb, sb, K, out);
        free(gW); free(sW); free(gb); free(sb);
    }
    free(x.x); free(d.x);
    return rc;
}

/* ------------------------------------------------------------------------------------ */

int run_calls(const char *cdir, const json *cj) {
    const json *calls = json_get(cj, "calls");
    if (!calls || calls->type != JSON_ARRAY) return fail("no calls in case.json");
    for (size_t i = 0; i < calls->len; i++) {
        const json *call = json_at(calls, i);
        const char *op = json_str(call, "op");
        char idir[600], odir[600];
        snprintf(idir, sizeof idir, "%s/in/call%zu", cdir, i);
        snprintf(odir, sizeof odir, "%s/out/call%zu", cdir, i);
        int rc;
        if (!op) rc = fail("call %zu: no op", i);
        else if (!strcmp(op, "vgc_step")) rc = run_step(idir, odir, call, 0);
        else if (!strcmp(op, "strom_step")) rc = run_step(idir, odir, call, 1);
        else if (!strcmp(op, "encode_message")) rc = run_encode(idir, odir, call);
        else if (!strcmp(op, "decode_message")) rc = run_decode_call(idir, odir);
        else if (!strcmp(op, "decode_accumulate")) rc = run_accumulate(idir, odir, call);
        else if (!strcmp(op, "dense_grad_var")) rc = run_layer(idir, odir, call, 0);
        else if (!strcmp(op, "conv_grad_var")) rc = run_layer(idir, odir, call, 1);
        else rc = fail("call %zu: unknown op %s", i, op);
        if (rc) return rc;
    }
    return 0;
}
