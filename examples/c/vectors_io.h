/*
 * vectors_io.h -- the files of a golden-vectors directory, shared by the driver's kinds
 * (vectors_driver.c: steps, aggregate, decode, dense; vectors_calls.c: calls).
 */
#ifndef VGC_VECTORS_IO_H
#define VGC_VECTORS_IO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "json.h"
#include "vgc.h"

int fail(const char *fmt, ...);                              /* sets the error text; -1 */
char *path_of(const char *fmt, ...);                         /* one of 4 rotating buffers */
uint8_t *read_file(const char *path, size_t *len);           /* NULL when unreadable */
int write_file(const char *path, const void *data, size_t len);
int mkdirs(const char *path);
float param_f32(const json *params, const char *name);       /* {"value", "bits"}: the bits */
void write_packets_json(FILE *f, const vgc_packet *packets, size_t S); /* {"ok": true, "packets"} */
int run_calls(const char *cdir, const json *cj);             /* kind "calls" */

#endif
