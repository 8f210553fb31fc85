/*
 * json.h -- a minimal JSON reader for the golden-vector files (index.json, case.json).
 * It parses a whole document into a tree; numbers keep both their double value and,
 * when they are integers, their exact 64-bit value. Not a general-purpose parser:
 * no \u escapes beyond the ASCII range, no streaming, errors give up (NULL).
 */
#ifndef VGC_JSON_H
#define VGC_JSON_H

#include <stddef.h>
#include <stdint.h>

enum json_type { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

typedef struct json {
    enum json_type type;
    int boolean;
    double number;
    int64_t integer;         /* exact when the number has no fraction or exponent */
    char *string;            /* JSON_STRING */
    size_t len;              /* JSON_ARRAY / JSON_OBJECT: number of items */
    struct json *items;      /* array items, or object values */
    char **keys;             /* object keys */
} json;

json *json_parse(const char *text);           /* NULL on a syntax error */
void json_free(json *j);
const json *json_get(const json *obj, const char *key);      /* NULL when absent */
const json *json_at(const json *arr, size_t i);
int64_t json_int(const json *j, const char *key, int64_t dflt);
const char *json_str(const json *j, const char *key);

#endif
