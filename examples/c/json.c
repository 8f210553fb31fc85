/* json.c -- see json.h. A recursive-descent parser over a NUL-terminated string. */
#include "json.h"

#include <stdlib.h>
#include <string.h>

typedef struct { const char *p; } cursor;

static void skip_ws(cursor *c) {
    while (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t') c->p++;
}

static int parse_value(cursor *c, json *out);

static char *parse_string_raw(cursor *c) {
    if (*c->p != '"') return NULL;
    c->p++;
    size_t cap = 16, n = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    while (*c->p && *c->p != '"') {
        char ch = *c->p++;
        if (ch == '\\') {
            char e = *c->p++;
            switch (e) {
                case 'n': ch = '\n'; break;
                case 't': ch = '\t'; break;
                case 'r': ch = '\r'; break;
                case 'b': ch = '\b'; break;
                case 'f': ch = '\f'; break;
                case 'u': {   /* keep it simple: ASCII code points only */
                    unsigned v = 0;
                    for (int k = 0; k < 4; k++) {
                        char h = *c->p++;
                        v = v * 16 + (unsigned)(h >= '0' && h <= '9' ? h - '0' : (h | 32) - 'a' + 10);
                    }
                    ch = v < 128 ? (char)v : '?';
                    break;
                }
                default: ch = e; break;   /* \" \\ \/ */
            }
        }
        if (n + 1 >= cap) {
            char *t = realloc(s, cap *= 2);
            if (!t) { free(s); return NULL; }
            s = t;
        }
        s[n++] = ch;
    }
    if (*c->p != '"') { free(s); return NULL; }
    c->p++;
    s[n] = 0;
    return s;
}

static int parse_container(cursor *c, json *out, int is_object) {
    char close = is_object ? '}' : ']';
    c->p++;
    size_t cap = 4;
    out->type = is_object ? JSON_OBJECT : JSON_ARRAY;
    out->items = calloc(cap, sizeof *out->items);
    out->keys = is_object ? calloc(cap, sizeof *out->keys) : NULL;
    if (!out->items || (is_object && !out->keys)) return -1;
    skip_ws(c);
    if (*c->p == close) { c->p++; return 0; }
    for (;;) {
        if (out->len == cap) {
            cap *= 2;
            json *items = realloc(out->items, cap * sizeof *items);
            if (!items) return -1;
            out->items = items;
            if (is_object) {
                char **keys = realloc(out->keys, cap * sizeof *keys);
                if (!keys) return -1;
                out->keys = keys;
            }
        }
        skip_ws(c);
        if (is_object) {
            char *key = parse_string_raw(c);
            if (!key) return -1;
            out->keys[out->len] = key;
            skip_ws(c);
            if (*c->p++ != ':') { out->len++; return -1; }
        }
        memset(&out->items[out->len], 0, sizeof out->items[0]);
        int rc = parse_value(c, &out->items[out->len]);
        out->len++;
        if (rc) return -1;
        skip_ws(c);
        if (*c->p == ',') { c->p++; continue; }
        if (*c->p == close) { c->p++; return 0; }
        return -1;
    }
}

static int parse_value(cursor *c, json *out) {
    skip_ws(c);
    const char *p = c->p;
    if (*p == '{' || *p == '[') return parse_container(c, out, *p == '{');
    if (*p == '"') {
        out->type = JSON_STRING;
        out->string = parse_string_raw(c);
        return out->string ? 0 : -1;
    }
    if (!strncmp(p, "true", 4)) { out->type = JSON_BOOL; out->boolean = 1; c->p += 4; return 0; }
    if (!strncmp(p, "false", 5)) { out->type = JSON_BOOL; out->boolean = 0; c->p += 5; return 0; }
    if (!strncmp(p, "null", 4)) { out->type = JSON_NULL; c->p += 4; return 0; }
    if (*p == '-' || (*p >= '0' && *p <= '9')) {
        char *end;
        out->type = JSON_NUMBER;
        out->number = strtod(p, &end);
        if (end == p) return -1;
        int integral = 1;
        for (const char *q = p; q < end; q++) if (*q == '.' || *q == 'e' || *q == 'E') integral = 0;
        out->integer = integral ? strtoll(p, NULL, 10) : (int64_t)out->number;
        c->p = end;
        return 0;
    }
    return -1;
}

json *json_parse(const char *text) {
    json *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    cursor c = {text};
    if (parse_value(&c, j)) { json_free(j); return NULL; }
    skip_ws(&c);
    if (*c.p) { json_free(j); return NULL; }
    return j;
}

static void json_free_inner(json *j) {
    free(j->string);
    for (size_t i = 0; i < j->len; i++) {
        json_free_inner(&j->items[i]);
        if (j->keys) free(j->keys[i]);
    }
    free(j->items);
    free(j->keys);
}

void json_free(json *j) {
    if (!j) return;
    json_free_inner(j);
    free(j);
}

const json *json_get(const json *obj, const char *key) {
    if (!obj || obj->type != JSON_OBJECT) return NULL;
    for (size_t i = 0; i < obj->len; i++) if (!strcmp(obj->keys[i], key)) return &obj->items[i];
    return NULL;
}

const json *json_at(const json *arr, size_t i) {
    if (!arr || arr->type != JSON_ARRAY || i >= arr->len) return NULL;
    return &arr->items[i];
}

int64_t json_int(const json *j, const char *key, int64_t dflt) {
    const json *v = json_get(j, key);
    return v && v->type == JSON_NUMBER ? v->integer : dflt;
}

const char *json_str(const json *j, const char *key) {
    const json *v = json_get(j, key);
    return v && v->type == JSON_STRING ? v->string : NULL;
}
