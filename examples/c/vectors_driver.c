/*
 * vectors_driver.c -- runs the C port on a golden-vectors directory
 * (docs/conformance.md, "Quick start, other languages: golden vectors").
 *
 *     python -m vgc_ref.vectors export DIR     # the reference writes in/ and expected/
 *     build/vectors_driver DIR [CASE ...]      # this program writes every case's out/
 *     python -m vgc_ref.vectors check DIR      # compares out/ with expected/
 *
 * It reads DIR/index.json for the case list and DIR/<case>/case.json for each case,
 * and writes DIR/<case>/out/ with the files "File layout" lists for the case's kind:
 * steps, aggregate, decode, dense, and calls (vectors_calls.c). Exit status 0 when every
 * case ran.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "json.h"
#include "vectors_io.h"
#include "vgc.h"

/* ------------------------------------------------------------------------------------ */
/* files                                                                                 */

static char err_msg[512];

int fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_msg, sizeof err_msg, fmt, ap);
    va_end(ap);
    return -1;
}

char *path_of(const char *fmt, ...) {
    static char buf[4][1024];
    static int which = 0;
    char *p = buf[which++ & 3];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p, 1024, fmt, ap);
    va_end(ap);
    return p;
}

/* reads a whole file (plus a NUL so that JSON can be parsed in place) */
uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = malloc((size_t)size + 1);
    if (data && fread(data, 1, (size_t)size, f) != (size_t)size) { free(data); data = NULL; }
    fclose(f);
    if (data) { data[size] = 0; *len = (size_t)size; }
    return data;
}

int write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return fail("cannot write %s", path);
    size_t w = len ? fwrite(data, 1, len, f) : 0;
    fclose(f);
    return w == len ? 0 : fail("short write to %s", path);
}

int mkdirs(const char *path) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') { *p = 0; if (mkdir(tmp, 0777) && errno != EEXIST) return fail("mkdir %s", tmp); *p = '/'; }
    }
    if (mkdir(tmp, 0777) && errno != EEXIST) return fail("mkdir %s", tmp);
    return 0;
}

static json *read_json(const char *path) {
    size_t len;
    char *text = (char *)read_file(path, &len);
    if (!text) return NULL;
    json *j = json_parse(text);
    free(text);
    return j;
}

/* float32[n] from NAME.f32, or from NAME.idx.u32 + NAME.val.f32 when sparse (elements
 * not listed are +0.0) */
static float *load_f32(const char *base, size_t n, int sparse) {
    size_t len;
    float *x = calloc(n ? n : 1, sizeof *x);
    if (!x) return NULL;
    if (!sparse) {
        uint8_t *data = read_file(path_of("%s.f32", base), &len);
        if (!data || len != 4 * n) { free(data); free(x); return NULL; }
        memcpy(x, data, len);
        free(data);
        return x;
    }
    size_t li, lv;
    uint8_t *idx = read_file(path_of("%s.idx.u32", base), &li);
    uint8_t *val = read_file(path_of("%s.val.f32", base), &lv);
    if (!idx || !val || li != lv) { free(idx); free(val); free(x); return NULL; }
    for (size_t m = 0; m < li / 4; m++) {
        uint32_t i;
        memcpy(&i, idx + 4 * m, 4);
        if (i < n) memcpy(&x[i], val + 4 * m, 4);
    }
    free(idx);
    free(val);
    return x;
}

/* the inverse: every element whose bits are not those of +0.0 is listed (so -0.0 is) */
static int save_f32(const char *base, const float *x, size_t n, int sparse) {
    if (!sparse) return write_file(path_of("%s.f32", base), x, 4 * n);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) { uint32_t b; memcpy(&b, &x[i], 4); m += b != 0; }
    uint32_t *idx = malloc((m ? m : 1) * 4);
    float *val = malloc((m ? m : 1) * 4);
    if (!idx || !val) { free(idx); free(val); return fail("out of memory"); }
    m = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &x[i], 4);
        if (b != 0) { idx[m] = (uint32_t)i; val[m] = x[i]; m++; }
    }
    int rc = write_file(path_of("%s.idx.u32", base), idx, 4 * m);
    if (!rc) rc = write_file(path_of("%s.val.f32", base), val, 4 * m);
    free(idx);
    free(val);
    return rc;
}

static const char *codec_name(uint32_t codec) {
    return codec == VGC_CODEC_DENSE ? "DENSE" : codec == VGC_CODEC_VGC_Q4 ? "VGC_Q4" : "STROM";
}

/* a float32 hyperparameter: {"value": float, "bits": "0x........"} -- use the bits */
float param_f32(const json *params, const char *name) {
    const json *p = json_get(params, name);
    const char *bits = json_str(p, "bits");
    uint32_t b = bits ? (uint32_t)strtoul(bits, NULL, 16) : 0;
    float f;
    memcpy(&f, &b, 4);
    return f;
}

/* the ok result of a decode: {"ok": true, "packets": [..., "words": [...]]} */
void write_packets_json(FILE *f, const vgc_packet *packets, size_t S) {
    fprintf(f, "{\"ok\": true, \"packets\": [");
    for (size_t j = 0; j < S; j++) {
        const vgc_packet *p = &packets[j];
        fprintf(f, "%s\n {\"segment_id\": %u, \"n\": %u, \"codec\": \"%s\", \"param\": %u, \"count\": %u, \"words\": [",
                j ? "," : "", p->segment_id, p->n, codec_name(p->codec), p->param, p->count);
        for (uint32_t i = 0; i < p->count; i++) fprintf(f, "%s%u", i ? ", " : "", p->words[i]);
        fprintf(f, "]}");
    }
    fprintf(f, "\n]}\n");
}

/* ------------------------------------------------------------------------------------ */
/* kind "steps": every segment from r = v = +0.0, T steps, segment by segment             */

typedef struct {
    uint32_t id, n;
    enum { M_VGC, M_STROM, M_DENSE } method;
    float alpha, zeta, tau;
    int reset;
    float *r, *v;
    uint32_t *words;
} segment;

static int run_steps(const char *cdir, const json *cj) {
    const json *segs = json_get(cj, "segments");
    const int64_t T = json_int(cj, "steps", 0);
    const json *sp = json_get(cj, "sparse");
    const int sparse = sp && sp->type == JSON_BOOL && sp->boolean;
    const size_t S = segs ? segs->len : 0;
    segment *seg = calloc(S ? S : 1, sizeof *seg);
    vgc_packet *packets = calloc(S ? S : 1, sizeof *packets);
    int rc = 0;
    for (size_t j = 0; j < S; j++) {
        const json *sj = json_at(segs, j), *params = json_get(sj, "params");
        const char *method = json_str(sj, "method");
        seg[j].id = (uint32_t)json_int(sj, "segment_id", 0);
        seg[j].n = (uint32_t)json_int(sj, "n", 0);
        seg[j].method = !strcmp(method, "vgc") ? M_VGC : !strcmp(method, "strom") ? M_STROM : M_DENSE;
        if (seg[j].method == M_VGC) {
            seg[j].alpha = param_f32(params, "alpha");
            seg[j].zeta = param_f32(params, "zeta");
            seg[j].tau = param_f32(params, "tau");
            const char *res = json_str(params, "residual");
            seg[j].reset = res && !strcmp(res, "reset");
        } else if (seg[j].method == M_STROM) {
            seg[j].tau = param_f32(params, "tau");
        }
        seg[j].r = calloc(seg[j].n ? seg[j].n : 1, 4);
        seg[j].v = calloc(seg[j].n ? seg[j].n : 1, 4);
        seg[j].words = calloc(seg[j].n ? seg[j].n : 1, 4);
        if (!seg[j].r || !seg[j].v || !seg[j].words) { rc = fail("out of memory"); goto done; }
    }
    for (int64_t t = 0; t < T && !rc; t++) {
        char *out = path_of("%s/out/step%lld", cdir, (long long)t);
        char odir[1024];
        snprintf(odir, sizeof odir, "%s", out);
        if ((rc = mkdirs(odir))) break;
        for (size_t j = 0; j < S && !rc; j++) {
            segment *sg = &seg[j];
            char gbase[1024], sbase[1024];
            snprintf(gbase, sizeof gbase, "%s/in/step%lld/seg%u.g", cdir, (long long)t, sg->id);
            snprintf(sbase, sizeof sbase, "%s/in/step%lld/seg%u.s", cdir, (long long)t, sg->id);
            float *g = load_f32(gbase, sg->n, sparse);
            float *s = sg->method == M_VGC ? load_f32(sbase, sg->n, sparse) : NULL;
            if (!g || (sg->method == M_VGC && !s)) { free(g); free(s); rc = fail("cannot read %s", gbase); break; }
            vgc_error err = {0};
            size_t count = 0;
            uint32_t E = 0;
            vgc_packet *p = &packets[j];
            p->segment_id = sg->id;
            p->n = sg->n;
            p->words = sg->words;
            if (sg->method == M_VGC) {
                if (vgc_step(sg->r, sg->v, g, s, sg->n, sg->alpha, sg->zeta, sg->tau, sg->reset,
                             sg->words, &count, &E, &err))
                    rc = fail("step of segment %u: error %d at %llu", sg->id, err.status, (unsigned long long)err.index);
                p->codec = VGC_CODEC_VGC_Q4;
                p->param = E;
            } else if (sg->method == M_STROM) {
                if (vgc_strom_step(sg->r, g, sg->n, sg->tau, sg->words, &count, &err))
                    rc = fail("strom step of segment %u: error %d", sg->id, err.status);
                p->codec = VGC_CODEC_STROM;
                memcpy(&p->param, &sg->tau, 4);
            } else {
                /* a dense segment's packet is g's bit patterns (codec DENSE, param 0) */
                memcpy(sg->words, g, 4 * (size_t)sg->n);
                count = sg->n;
                p->codec = VGC_CODEC_DENSE;
                p->param = 0;
            }
            p->count = (uint32_t)count;
            free(g);
            free(s);
            if (rc) break;
            /* seg<j>.words.u32, seg<j>.r.f32 (vgc, strom), seg<j>.v.f32 (vgc) */
            rc = write_file(path_of("%s/seg%u.words.u32", odir, sg->id), sg->words, 4 * count);
            if (!rc && sg->method != M_DENSE) rc = save_f32(path_of("%s/seg%u.r", odir, sg->id), sg->r, sg->n, sparse);
            if (!rc && sg->method == M_VGC) rc = save_f32(path_of("%s/seg%u.v", odir, sg->id), sg->v, sg->n, sparse);
        }
        if (rc) break;
        /* packets.json, one entry per segment in `segments` order */
        FILE *f = fopen(path_of("%s/packets.json", odir), "w");
        if (!f) { rc = fail("cannot write packets.json"); break; }
        fprintf(f, "[");
        for (size_t j = 0; j < S; j++) {
            fprintf(f, "%s\n {\"segment_id\": %u, \"n\": %u, \"codec\": \"%s\", \"param\": %u, \"count\": %u}",
                    j ? "," : "", packets[j].segment_id, packets[j].n, codec_name(packets[j].codec),
                    packets[j].param, packets[j].count);
        }
        fprintf(f, "\n]\n");
        fclose(f);
        /* message.bin: encode_message of the step's packets, in `segments` order */
        size_t L = vgc_message_length(packets, S);
        uint8_t *msg = malloc(L);
        vgc_error err = {0};
        if (!msg || vgc_encode_message(packets, S, msg, &err)) { free(msg); rc = fail("encode failed: %s", err.reason); break; }
        rc = write_file(path_of("%s/message.bin", odir), msg, L);
        free(msg);
    }
done:
    for (size_t j = 0; j < S; j++) { free(seg[j].r); free(seg[j].v); free(seg[j].words); }
    free(seg);
    free(packets);
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* kind "aggregate": in/rank<w>.bin -> out/seg<j>.g_hat.f32                              */

static int run_aggregate(const char *cdir, const json *cj) {
    const size_t P = (size_t)json_int(cj, "ranks", 0);
    const json *sz = json_get(cj, "sizes");
    const size_t S = sz ? sz->len : 0;
    uint8_t **msgs = calloc(P ? P : 1, sizeof *msgs);
    size_t *lens = calloc(P ? P : 1, sizeof *lens);
    uint32_t *sizes = calloc(S ? S : 1, sizeof *sizes);
    float **out = calloc(S ? S : 1, sizeof *out);
    int rc = 0;
    for (size_t j = 0; j < S; j++) {
        sizes[j] = (uint32_t)json_at(sz, j)->integer;
        out[j] = calloc(sizes[j] ? sizes[j] : 1, 4);
    }
    for (size_t w = 0; w < P && !rc; w++) {
        msgs[w] = read_file(path_of("%s/in/rank%zu.bin", cdir, w), &lens[w]);
        if (!msgs[w]) rc = fail("cannot read rank%zu.bin", w);
    }
    vgc_error err = {0};
    if (!rc && vgc_decode_accumulate((const uint8_t *const *)msgs, lens, P, sizes, S, out, &err))
        rc = fail("decode_accumulate: error %d (%s)", err.status, err.reason ? err.reason : "");
    if (!rc) rc = mkdirs(path_of("%s/out", cdir));
    for (size_t j = 0; j < S && !rc; j++)
        rc = write_file(path_of("%s/out/seg%zu.g_hat.f32", cdir, j), out[j], 4 * (size_t)sizes[j]);
    for (size_t w = 0; w < P; w++) free(msgs[w]);
    for (size_t j = 0; j < S; j++) free(out[j]);
    free(msgs); free(lens); free(sizes); free(out);
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* kind "decode": in/<name>.bin -> out/<name>.json (the packets, or the FormatError)      */

static int run_decode(const char *cdir, const json *cj) {
    const json *names = json_get(cj, "messages");
    int rc = mkdirs(path_of("%s/out", cdir));
    for (size_t m = 0; names && m < names->len && !rc; m++) {
        const char *name = json_at(names, m)->string;
        size_t len;
        uint8_t *data = read_file(path_of("%s/in/%s.bin", cdir, name), &len);
        if (!data) { rc = fail("cannot read %s.bin", name); break; }
        vgc_packet *packets = malloc((len / 20 + 1) * sizeof *packets);
        uint32_t *words = malloc((len / 4 + 1) * sizeof *words);
        size_t S = 0;
        vgc_error err = {0};
        int drc = vgc_decode_message(data, len, packets, words, &S, &err);
        FILE *f = fopen(path_of("%s/out/%s.json", cdir, name), "w");
        if (!f) rc = fail("cannot write %s.json", name);
        else if (drc == VGC_ERR_FORMAT) {
            fprintf(f, "{\"ok\": false, \"error\": \"FormatError\", \"field\": \"%s\", \"offset\": %llu}\n",
                    err.name, (unsigned long long)err.index);
        } else if (drc != VGC_OK) {
            rc = fail("decode %s: error %d", name, drc);
        } else {
            write_packets_json(f, packets, S);
        }
        if (f) fclose(f);
        free(data); free(packets); free(words);
    }
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* kind "dense": in/x.f32, in/delta.f32 -> out/g_W.f32, s_W.f32, g_b.f32, s_b.f32         */

static int run_dense(const char *cdir, const json *cj) {
    const size_t B = (size_t)json_int(cj, "batch", 0), in = (size_t)json_int(cj, "in", 0);
    const size_t out = (size_t)json_int(cj, "out", 0);
    char xb[1024], db[1024];
    snprintf(xb, sizeof xb, "%s/in/x", cdir);
    snprintf(db, sizeof db, "%s/in/delta", cdir);
    float *x = load_f32(xb, B * in, 0), *D = load_f32(db, B * out, 0);
    float *gW = calloc(in * out + 1, 4), *sW = calloc(in * out + 1, 4);
    float *gb = calloc(out + 1, 4), *sb = calloc(out + 1, 4);
    int rc = 0;
    if (!x || !D || !gW || !sW || !gb || !sb) rc = fail("cannot read the inputs");
    if (!rc) {
        vgc_dense_grad_var(x, D, B, in, out, gW, sW, gb, sb);
        rc = mkdirs(path_of("%s/out", cdir));
    }
    if (!rc) rc = write_file(path_of("%s/out/g_W.f32", cdir), gW, 4 * in * out);
    if (!rc) rc = write_file(path_of("%s/out/s_W.f32", cdir), sW, 4 * in * out);
    if (!rc) rc = write_file(path_of("%s/out/g_b.f32", cdir), gb, 4 * out);
    if (!rc) rc = write_file(path_of("%s/out/s_b.f32", cdir), sb, 4 * out);
    free(x); free(D); free(gW); free(sW); free(gb); free(sb);
    return rc;
}

/* ------------------------------------------------------------------------------------ */

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s VECTORS_DIR [CASE ...]\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    json *index = read_json(path_of("%s/index.json", dir));
    const json *cases = json_get(index, "cases");
    if (!cases || cases->type != JSON_ARRAY) {
        fprintf(stderr, "%s: no usable index.json\n", dir);
        json_free(index);
        return 2;
    }
    int failed = 0;
    for (size_t c = 0; c < cases->len; c++) {
        const char *name = json_str(json_at(cases, c), "name");
        int wanted = argc == 2;
        for (int a = 2; a < argc; a++) wanted |= !strcmp(argv[a], name);
        if (!wanted) continue;
        char cdir[512];
        if (snprintf(cdir, sizeof cdir, "%s/%s", dir, name) >= (int)sizeof cdir) { printf("error %s: path too long\n", name); failed = 1; continue; }
        json *cj = read_json(path_of("%s/case.json", cdir));
        const char *kind = json_str(cj, "kind");
        int rc;
        err_msg[0] = 0;
        if (!kind) rc = fail("no usable case.json");
        else if (!strcmp(kind, "steps")) rc = run_steps(cdir, cj);
        else if (!strcmp(kind, "aggregate")) rc = run_aggregate(cdir, cj);
        else if (!strcmp(kind, "decode")) rc = run_decode(cdir, cj);
        else if (!strcmp(kind, "dense")) rc = run_dense(cdir, cj);
        else if (!strcmp(kind, "calls")) rc = run_calls(cdir, cj);
        else rc = fail("unknown kind %s", kind);
        if (rc) { printf("error %s: %s\n", name, err_msg); failed = 1; }
        else printf("ran %s\n", name);
        json_free(cj);
    }
    json_free(index);
    return failed;
}
